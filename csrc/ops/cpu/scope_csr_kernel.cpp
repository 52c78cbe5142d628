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

ScopeTensors scope_csr_cpu(const at::Tensor& rowptr_t, const at::Tensor& col_t, const at::Tensor& ends_t,
                           int64_t hops, double max_fraction, const std::optional<at::Tensor>& exiting_t,
                           const std::optional<at::Tensor>& dinv_t, const std::optional<at::Tensor>& deg_t,
                           const std::optional<at::Tensor>& self_t) {
  check_scope_csr_args(rowptr_t, col_t, ends_t, hops, max_fraction, exiting_t, dinv_t, deg_t, self_t);
  const at::Tensor rowptr_c = rowptr_t.contiguous(), col_c = col_t.contiguous(), ends_c = ends_t.contiguous();
  const int64_t n = rowptr_c.numel() - 1, nnz = col_c.numel(), s = ends_c.numel();
  const int64_t* rowptr = rowptr_c.data_ptr<int64_t>();
  const int64_t* col = col_c.data_ptr<int64_t>();
  const int64_t* ends = ends_c.data_ptr<int64_t>();
  const bool* exiting = exiting_t.has_value() ? exiting_t->data_ptr<bool>() : nullptr;

  for (int64_t i = 0; i < s; ++i)
    TORCH_CHECK(ends[i] >= 0 && ends[i] < n, "scope_csr: ends[", i, "] = ", ends[i], " is outside [0, ", n, ")");
  // The walk's sources and its boundary (the exiting ends, at `hops`, never walked through).
  std::vector<int64_t> sources, boundary;
  if (exiting != nullptr) {
    for (int64_t i = 0; i < s; ++i) (exiting[i] ? boundary : sources).push_back(ends[i]);
  }
  // During the walk map[v] is v's hop distance (>= 0: reached), then v's local id.
  std::vector<int32_t>& map = thread_row_map(n);
  std::vector<int64_t> queue;
  Unmark unmark{map, queue};
  walk_rows("scope_csr", "ends", exiting ? sources.data() : ends, exiting ? static_cast<int64_t>(sources.size()) : s,
            rowptr, col, n, nnz, nullptr, hops, map, queue, boundary.data(), static_cast<int64_t>(boundary.size()));

  auto none = [&] { return rowptr_c.new_empty({0}); };
  const int64_t k = static_cast<int64_t>(queue.size());
  if (!(static_cast<double>(k) < max_fraction * static_cast<double>(n))) {  // not compacted
    at::Tensor dist_t = rowptr_c.new_full({n}, kUnreached);
    int64_t* dist = dist_t.data_ptr<int64_t>();
    for (const int64_t v : queue) dist[v] = map[v];
    for (const int64_t v : boundary) dist[v] = 0;  // endpoints
    return {none(), dist_t, none(), none(), none(), none(), none(), none(), none()};
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
  // GCN's normalisation of each entry, read while its global column id is at hand.
  at::Tensor weight_t = none();
  if (dinv_t.has_value()) {
    const float* dinv = dinv_t->data_ptr<float>();
    weight_t = dinv_t->new_empty({entries});
    float* weight = weight_t.data_ptr<float>();
    for (int64_t e = 0; e < entries; ++e) weight[e] = dinv[nodes[row_l[e]]] * dinv[col_l[e]];
  }
  for (int64_t e = 0; e < entries; ++e) {
    if (e + static_cast<int64_t>(kAhead) < entries) __builtin_prefetch(&map[col_l[e + kAhead]]);
    const int32_t c = map[col_l[e]];  // reached: the row is within hops - 1 of an endpoint
    TORCH_CHECK(c >= 0, "scope_csr: internal error, column ", col_l[e], " was not reached");
    col_l[e] = c;
  }
  at::Tensor ends_l_t = rowptr_c.new_empty({s});
  int64_t* ends_l = ends_l_t.data_ptr<int64_t>();
  for (int64_t i = 0; i < s; ++i) ends_l[i] = map[ends[i]];  // every end was reached (or fixed)
  for (const int64_t v : boundary) dist[map[v]] = 0;        // endpoints
  at::Tensor deg_l_t = none(), self_l_t = none();
  if (deg_t.has_value()) {
    const int64_t* deg = deg_t->data_ptr<int64_t>();
    deg_l_t = deg_t->new_empty({k});
    int64_t* deg_l = deg_l_t.data_ptr<int64_t>();
    for (int64_t i = 0; i < k; ++i) deg_l[i] = deg[nodes[i]];
  }
  if (self_t.has_value()) {
    const float* self_w = self_t->data_ptr<float>();
    self_l_t = self_t->new_empty({k});
    float* self_l = self_l_t.data_ptr<float>();
    for (int64_t i = 0; i < k; ++i) self_l[i] = self_w[nodes[i]];
  }
  return {nodes_t, dist_t, rowptr_l_t, col_l_t, row_l_t, ends_l_t, weight_t, deg_l_t, self_l_t};
}

}  // namespace ops
}  // namespace linkexit_fast
