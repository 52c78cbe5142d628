#include "../hop_distance.h"
#include "row_walk.h"


#include <algorithm>
#include <cstdint>
#include <vector>

namespace linkexit_fast {
namespace ops {
namespace {

constexpr int64_t kUnreached = int64_t{1} << 30;  // engine/scope.py's UNREACHED

// A queue walk (row_walk.h): the torch version needs tens of ops per hop (a query of 100 pairs on
// a 5k-node graph spent a quarter of its time in two walks); here a walk costs its reached entries.
}  // namespace

std::tuple<at::Tensor, at::Tensor> hop_distance_cpu(const at::Tensor& rowptr_t,
                                                       const at::Tensor& col_t,
                                                       const at::Tensor& sources_t,
                                                       int64_t max_hops,
                                                       const std::optional<at::Tensor>& passable_t,
                                                       bool return_reached) {
  check_hop_distance_args(rowptr_t, col_t, sources_t, max_hops, passable_t);
  const at::Tensor rowptr_c = rowptr_t.contiguous(), col_c = col_t.contiguous(),
                   sources_c = sources_t.contiguous();
  const int64_t n = rowptr_c.numel() - 1;
  at::Tensor passable_c;
  const bool* passable = nullptr;
  if (passable_t.has_value()) {
    passable_c = passable_t->contiguous();
    passable = passable_c.data_ptr<bool>();
  }
  std::vector<int32_t>& map = thread_row_map(n);
  std::vector<int64_t> queue;
  Unmark unmark{map, queue};
  walk_rows("hop_distance", "sources", sources_c.data_ptr<int64_t>(), sources_c.numel(),
            rowptr_c.data_ptr<int64_t>(), col_c.data_ptr<int64_t>(), n, col_c.numel(), passable, max_hops, map,
            queue);
  at::Tensor dist_t = rowptr_c.new_full({n}, kUnreached);
  int64_t* dist = dist_t.data_ptr<int64_t>();
  for (const int64_t v : queue) dist[v] = map[v];
  at::Tensor reached = rowptr_c.new_empty({return_reached ? static_cast<int64_t>(queue.size()) : 0});
  if (return_reached) sorted_rows(queue, n, reached.data_ptr<int64_t>());
  return {dist_t, reached};
}

}  // namespace ops
}  // namespace linkexit_fast
