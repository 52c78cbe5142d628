#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace linkexit_fast {
namespace ops {

// The engine's scope in one call (see linkexit_fast/engine/scope.py, compact, whose torch path
// is the specification it is tested against). From `ends` (int64 [s], rows in [0, R), repeats
// allowed) a BFS of at most `hops` hops over the CSR rowptr [R+1], col [nnz] (int64, symmetric as
// the engine's graphs are); k rows are reached. `exiting` (bool [s], or none): ends the engine's
// probe saw exit, whose neighbourhoods stay out: the walk starts from the other ends, and these
// rows join the scope at dist == hops whatever their distance (no CSR entries, never walked
// through; an end both exiting and not is an exiting one), then are returned at dist 0.
//   k < max_fraction * R: the scope is compacted. Returns (nodes [k], dist [k], rowptr_l [k+1],
//     col_l [e], row_l [e], ends_l [s], weight_l, deg_l, self_weight_l): the reached rows in
//     increasing order (local row i is global row nodes[i]), their hop distances, the CSR of the
//     rows with dist < hops in local ids (rows at dist == hops are read, never updated: they get no
//     entries) with the row of each entry, and the local id of each end. Every entry keeps its
//     global order. With dinv [R] (float32), weight_l [e] = dinv[nodes[row_l]] * dinv[nodes[col_l]]
//     (GCN's normalisation); with deg [R] (int64), deg_l [k] = deg[nodes]; with self_loop_weight [R]
//     (float32), self_weight_l [k] = self_loop_weight[nodes]; each empty when not given.
//   otherwise: returns (empty, dist [R], then seven empty tensors), dist the hop distance of every
//     row (1 << 30, the engine's UNREACHED, beyond `hops`), as hop_distance gives it.
// Work O(reached rows + their entries): no O(R) pass and no O(R) allocation per call when the
// scope is compacted. A per-thread map of R int32 (kept between calls, all -1 between calls,
// grown to the largest R seen) gives global -> local ids.
using ScopeTensors = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                at::Tensor, at::Tensor>;
ScopeTensors scope_csr(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& ends, int64_t hops,
                       double max_fraction, const std::optional<at::Tensor>& exiting,
                       const std::optional<at::Tensor>& dinv, const std::optional<at::Tensor>& deg,
                       const std::optional<at::Tensor>& self_loop_weight);

void check_scope_csr_args(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& ends, int64_t hops,
                          double max_fraction, const std::optional<at::Tensor>& exiting,
                          const std::optional<at::Tensor>& dinv, const std::optional<at::Tensor>& deg,
                          const std::optional<at::Tensor>& self_loop_weight);

// The CPU kernel (cpu/scope_csr_kernel.cpp), registered for the CPU by scope_csr.cpp.
decltype(scope_csr) scope_csr_cpu;

}  // namespace ops
}  // namespace linkexit_fast
