#include "../exit_update.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace linkexit_fast {
namespace ops {
namespace {

void check_ids(const char* name, const int64_t* ids, int64_t k, int64_t n) {
  for (int64_t i = 0; i < k; ++i)
    TORCH_CHECK(ids[i] >= 0 && ids[i] < n, "exit_update: ", name, "[", i, "] = ", ids[i],
                " is out of range for ", n, " rows");
}

}  // namespace

// Serial: the engine calls it once per layer on a few hundred to a few hundred thousand rows,
// where the ~17 small torch ops it replaces cost more in dispatch than the pass itself.
std::tuple<at::Tensor, at::Tensor> exit_update_cpu(const at::Tensor& rows_t, const at::Tensor& flag_t,
                                                   const std::optional<at::Tensor>& forced_t, at::Tensor& exited_t,
                                                   at::Tensor& exit_layer_t, const at::Tensor& open_t, int64_t layer) {
  check_exit_update_args(rows_t, flag_t, forced_t, exited_t, exit_layer_t, open_t);
  const int64_t k = rows_t.numel(), n = exited_t.numel(), e = open_t.numel();
  const int64_t* rows = rows_t.data_ptr<int64_t>();
  const int64_t* open = open_t.data_ptr<int64_t>();
  check_ids("rows", rows, k, n);
  check_ids("open_ends", open, e, n);
  const bool* flag = flag_t.data_ptr<bool>();
  const bool* forced = forced_t.has_value() ? forced_t->data_ptr<bool>() : nullptr;
  bool* exited = exited_t.data_ptr<bool>();
  int64_t* exit_layer = exit_layer_t.data_ptr<int64_t>();

  at::Tensor stay_t = rows_t.new_empty({k}), still_t = open_t.new_empty({e});
  int64_t* stay = stay_t.data_ptr<int64_t>();
  int64_t* still = still_t.data_ptr<int64_t>();
  int64_t n_stay = 0, n_still = 0;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t v = rows[i];
    if (flag[i] || (forced != nullptr && forced[v])) {
      exited[v] = true;
      exit_layer[v] = layer;
    } else {
      stay[n_stay++] = v;
    }
  }
  for (int64_t j = 0; j < e; ++j)
    if (!exited[open[j]]) still[n_still++] = open[j];
  return {still_t.narrow(0, 0, n_still), stay_t.narrow(0, 0, n_stay)};
}

// Rows per parallel chunk: below two chunks the pass runs on the calling thread, as the engine's
// small scopes (a few thousand rows) do, with no fork/join.
constexpr int64_t kLiveChunk = int64_t{1} << 15;

at::Tensor live_rows_cpu(const at::Tensor& dist_t, int64_t bound, const std::optional<at::Tensor>& exited_t) {
  check_live_rows_args(dist_t, exited_t);
  const int64_t n = dist_t.numel();
  const int64_t* dist = dist_t.data_ptr<int64_t>();
  const bool* exited = exited_t.has_value() ? exited_t->data_ptr<bool>() : nullptr;
  auto live = [&](int64_t i) { return dist[i] <= bound && (exited == nullptr || !exited[i]); };
  const int64_t chunks = (n + kLiveChunk - 1) / kLiveChunk;
  // Count per chunk, then each chunk writes its rows from its offset: the order stays increasing.
  std::vector<int64_t> offset(chunks + 1, 0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      int64_t count = 0;
      for (int64_t i = c * kLiveChunk, stop = std::min(n, i + kLiveChunk); i < stop; ++i) count += live(i);
      offset[c + 1] = count;
    }
  });
  for (int64_t c = 0; c < chunks; ++c) offset[c + 1] += offset[c];
  at::Tensor rows_t = dist_t.new_empty({offset[chunks]});
  int64_t* rows = rows_t.data_ptr<int64_t>();
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      int64_t* out = rows + offset[c];
      for (int64_t i = c * kLiveChunk, stop = std::min(n, i + kLiveChunk); i < stop; ++i)
        if (live(i)) *out++ = i;
    }
  });
  return rows_t;
}

}  // namespace ops
}  // namespace linkexit_fast
