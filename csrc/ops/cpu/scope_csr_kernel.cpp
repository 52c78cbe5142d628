#include "../scope_csr.h"
#include "row_walk.h"


#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

namespace linkexit_fast {
namespace ops {
namespace {

constexpr int64_t kUnreached = int64_t{1} << 30;  // engine/scope.py's UNREACHED

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> scope_csr_cpu(
    const at::Tensor& rowptr_t, const at::Tensor& col_t, const at::Tensor& ends_t, int64_t hops,
    double max_fraction, const std::optional<at::Tensor>& boundary_t) {
  check_scope_csr_args(rowptr_t, col_t, ends_t, hops, max_fraction, boundary_t);
  const at::Tensor rowptr_c = rowptr_t.contiguous(), col_c = col_t.contiguous(), ends_c = ends_t.contiguous();
  const at::Tensor boundary_c = boundary_t.has_value() ? boundary_t->contiguous() : at::Tensor();
  const int64_t n = rowptr_c.numel() - 1, nnz = col_c.numel();
  const int64_t* rowptr = rowptr_c.data_ptr<int64_t>();
  const int64_t* col = col_c.data_ptr<int64_t>();

  // During the walk map[v] is v's hop distance (>= 0: reached), then v's local id.
  std::vector<int32_t>& map = thread_row_map(n);
  std::vector<int64_t> queue;
  Unmark unmark{map, queue};
  walk_rows("scope_csr", "ends", ends_c.data_ptr<int64_t>(), ends_c.numel(), rowptr, col, n, nnz, nullptr, hops,
            map, queue, boundary_c.defined() ? boundary_c.data_ptr<int64_t>() : nullptr,
            boundary_c.defined() ? boundary_c.numel() : 0);

  const int64_t k = static_cast<int64_t>(queue.size());
  if (!(static_cast<double>(k) < max_fraction * static_cast<double>(n))) {  // not compacted
    at::Tensor dist_t = rowptr_c.new_full({n}, kUnreached);
    int64_t* dist = dist_t.data_ptr<int64_t>();
    for (const int64_t v : queue) dist[v] = map[v];
    return {rowptr_c.new_empty({0}), dist_t, rowptr_c.new_empty({0}), rowptr_c.new_empty({0}),
            rowptr_c.new_empty({0})};
  }
  at::Tensor nodes_t = rowptr_c.new_empty({k}), dist_t = rowptr_c.new_empty({k});
  int64_t* nodes = nodes_t.data_ptr<int64_t>();
  int64_t* dist = dist_t.data_ptr<int64_t>();
  sorted_rows(queue, n, nodes);
  for (int64_t i = 0; i < k; ++i) dist[i] = map[nodes[i]];
  for (int64_t i = 0; i < k; ++i) map[nodes[i]] = static_cast<int32_t>(i);  // now global -> local

  at::Tensor rowptr_l_t = rowptr_c.new_empty({k + 1});
  int64_t* rowptr_l = rowptr_l_t.data_ptr<int64_t>();
  rowptr_l[0] = 0;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t v = nodes[i];
    rowptr_l[i + 1] = rowptr_l[i] + (dist[i] < hops ? rowptr[v + 1] - rowptr[v] : 0);
  }
  const int64_t entries = rowptr_l[k];
  at::Tensor col_l_t = rowptr_c.new_empty({entries}), row_l_t = rowptr_c.new_empty({entries});
  int64_t* col_l = col_l_t.data_ptr<int64_t>();
  int64_t* row_l = row_l_t.data_ptr<int64_t>();
  for (int64_t i = 0; i < k; ++i) {  // global ids first, then local: two passes of independent loads
    if (dist[i] >= hops) continue;
    const int64_t v = nodes[i];
    std::copy(col + rowptr[v], col + rowptr[v + 1], col_l + rowptr_l[i]);
    std::fill(row_l + rowptr_l[i], row_l + rowptr_l[i + 1], i);
  }
  for (int64_t e = 0; e < entries; ++e) {
    if (e + static_cast<int64_t>(kAhead) < entries) __builtin_prefetch(&map[col_l[e + kAhead]]);
    const int32_t c = map[col_l[e]];  // reached: the row is within hops - 1 of an endpoint
    TORCH_CHECK(c >= 0, "scope_csr: internal error, column ", col_l[e], " was not reached");
    col_l[e] = c;
  }
  return {nodes_t, dist_t, rowptr_l_t, col_l_t, row_l_t};
}

}  // namespace ops
}  // namespace linkexit_fast
