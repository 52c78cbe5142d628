#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace linkexit_fast {
namespace ops {

// Multi-source BFS over a CSR (see linkexit_fast/engine/scope.py, hop_distance, the torch
// version it is tested against): dist[v] is the fewest hops from any of `sources` to v, or
// kUnreached (1 << 30) beyond `max_hops`. With `passable` (bool [R]) a row is reached like any
// other but expanded only when passable[row] holds. rowptr [R+1], col [nnz], sources [s]
// (int64, values in [0, R); repeats allowed). Returns (dist [R] int64, reached) where reached
// holds the reached rows in increasing order when `return_reached`, else it is empty.
// Serial, with a queue: O(rows reached + their entries), no O(R) pass but dist's fill.
std::tuple<at::Tensor, at::Tensor> hop_distance(const at::Tensor& rowptr, const at::Tensor& col,
                                                const at::Tensor& sources, int64_t max_hops,
                                                const std::optional<at::Tensor>& passable,
                                                bool return_reached);

// Shape and dtype checks, called first by every kernel. Index values are checked as they are
// read (a row or column outside [0, R), a rowptr range that runs backwards or past nnz).
void check_hop_distance_args(const at::Tensor& rowptr, const at::Tensor& col,
                             const at::Tensor& sources, int64_t max_hops,
                             const std::optional<at::Tensor>& passable);

// The CPU kernel (cpu/hop_distance_kernel.cpp), registered for the CPU by hop_distance.cpp.
decltype(hop_distance) hop_distance_cpu;

}  // namespace ops
}  // namespace linkexit_fast
