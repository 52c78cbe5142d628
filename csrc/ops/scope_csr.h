#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace linkexit_fast {
namespace ops {

// The engine's scope compaction in one pass (see linkexit_fast/engine/scope.py, compact, whose
// torch path is the specification it is tested against). From `ends` (int64 [s], rows in [0, R),
// repeats allowed) a BFS of at most `hops` hops over the CSR rowptr [R+1], col [nnz] (int64,
// symmetric as the engine's graphs are); k rows are reached.
//   k < max_fraction * R: the scope is compacted. Returns (nodes [k], dist [k], rowptr_l [k+1],
//     col_l [e], row_l [e]): the reached rows in increasing order (local row i is global row
//     nodes[i]), their hop distances, and the CSR of the rows with dist < hops in local ids (rows
//     at dist == hops are read, never updated: they get no entries), with the row of each entry
//     (what the engine otherwise expands from rowptr_l). Every entry keeps its global order.
//   otherwise: returns (empty, dist [R], empty, empty, empty), dist the hop distance of every row
//     (1 << 30, the engine's UNREACHED, beyond `hops`), as hop_distance gives it.
// `boundary` (int64 [b], rows in [0, R), or none): rows put in the scope at dist == hops whatever
// their distance from `ends`, and never walked through (a row in both lists is a boundary one):
// the engine's probe leaves out the neighbourhoods of the endpoints it sees exit.
// Work O(reached rows + their entries): no O(R) pass and no O(R) allocation per call when the
// scope is compacted. A per-thread map of R int32 (kept between calls, all -1 between calls,
// grown to the largest R seen) gives global -> local ids.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> scope_csr(const at::Tensor& rowptr,
                                                                     const at::Tensor& col,
                                                                     const at::Tensor& ends,
                                                                     int64_t hops, double max_fraction,
                                                                     const std::optional<at::Tensor>& boundary);

void check_scope_csr_args(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& ends,
                          int64_t hops, double max_fraction, const std::optional<at::Tensor>& boundary);

// The CPU kernel (cpu/scope_csr_kernel.cpp), registered for the CPU by scope_csr.cpp.
decltype(scope_csr) scope_csr_cpu;

}  // namespace ops
}  // namespace linkexit_fast
