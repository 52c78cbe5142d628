#include "../aggregate_rows.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "target_clones.h"

namespace linkexit_fast {
namespace ops {
namespace {

// Output columns accumulated in registers while a row's edges stream past: 64 floats are
// 4 zmm (AVX-512) or 8 ymm (AVX2) accumulators, leaving registers for the loads.
constexpr int64_t kColBlock = 64;
// Output rows per dynamically scheduled task. Hub rows (degree ~1000 next to a mean of ~10)
// make static splits uneven; 32 rows keep scheduling overhead negligible.
constexpr int64_t kRowsPerTask = 32;
// Look-ahead of the software prefetch, in edges, and lines prefetched per gathered row:
// two lines start the L2 streamer, which fetches the rest of the row. On the 1M-node
// benchmark graph (m = 256) this gathers ~15% faster than no software prefetch; longer
// look-aheads or whole-row prefetches measured slower (fill buffers run out).
constexpr int64_t kPrefetchEdges = 4;
constexpr int64_t kPrefetchLines = 2;
constexpr int64_t kFloatsPerLine = 16;  // 64-byte cache lines

struct AggregateArgs {
  const int64_t* rowptr;
  const int64_t* col;
  const float* weight;
  const float* h;
  const int64_t* rows;
  const float* self_weight;  // nullptr when absent
  const float* cache;        // nullptr when absent
  float* out;
  int64_t num_rows, n, m, nnz;
};

// First offending position of each kind of bad index, -1 while none was seen. Threads cannot
// throw out of an OpenMP region: they record, skip the row, and the kernel raises afterwards.
struct ErrorSlots {
  std::atomic<int64_t> row{-1};        // i with rows[i] outside [0, R)
  std::atomic<int64_t> self_row{-1};   // i with rows[i] outside [0, n) while h[r] is needed
  std::atomic<int64_t> edge_range{-1}; // r with rowptr[r], rowptr[r + 1] not a range of col
  std::atomic<int64_t> edge{-1};       // e with col[e] outside [0, n)
  static void record(std::atomic<int64_t>& slot, int64_t value) {
    int64_t none = -1;
    slot.compare_exchange_strong(none, value, std::memory_order_relaxed);
  }
};

inline bool in_range(int64_t value, int64_t size) {
  return static_cast<uint64_t>(value) < static_cast<uint64_t>(size);
}

inline bool valid_edge_range(const AggregateArgs& a, int64_t begin, int64_t end) {
  return 0 <= begin && begin <= end && end <= a.nnz;
}

// Walks the edges of a task's rows ahead of the compute loop and prefetches the h rows they
// will gather: the next rows' first edges are prefetched too, which matters at average
// degree ~10 where a within-row look-ahead would miss half of them.
class PrefetchCursor {
 public:
  PrefetchCursor(const AggregateArgs& a, int64_t i_begin, int64_t i_end)
      : a_(a), i_(i_begin - 1), i_end_(i_end), e_(0), end_(0) {}

  void advance() {
    while (e_ == end_) {
      if (++i_ >= i_end_) return;
      const int64_t r = a_.rows[i_];
      e_ = end_ = 0;
      if (in_range(r, a_.num_rows) && valid_edge_range(a_, a_.rowptr[r], a_.rowptr[r + 1])) {
        e_ = a_.rowptr[r];
        end_ = a_.rowptr[r + 1];
      }
    }
    const int64_t c = a_.col[e_++];
    if (in_range(c, a_.n)) {
      const float* row = a_.h + c * a_.m;
      const int64_t end = std::min(a_.m, kPrefetchLines * kFloatsPerLine);
      for (int64_t j = 0; j < end; j += kFloatsPerLine) __builtin_prefetch(row + j);
    }
  }

 private:
  const AggregateArgs& a_;
  int64_t i_, i_end_, e_, end_;
};

// One column block of one output row, accumulated in registers: kFull blocks have the
// compile-time width kColBlock so the compiler keeps `acc` in vector registers.
template <bool kFull>
inline void aggregate_block(const AggregateArgs& a, int64_t r, int64_t begin, int64_t end,
                            int64_t c0, int64_t width, float* __restrict__ dst,
                            PrefetchCursor* cursor) {
  const int64_t w = kFull ? kColBlock : width;
  float acc[kColBlock];
  for (int64_t j = 0; j < w; ++j) acc[j] = 0.f;
  const float* __restrict__ h = a.h + c0;
  for (int64_t e = begin; e < end; ++e) {
    if (cursor) cursor->advance();
    const float we = a.weight[e];
    const float* __restrict__ src = h + a.col[e] * a.m;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) acc[j] += we * src[j];
  }
  if (a.self_weight) {
    const float we = a.self_weight[r];
    const float* __restrict__ src = h + r * a.m;
    for (int64_t j = 0; j < w; ++j) acc[j] += we * src[j];
  }
  if (a.cache) {
    const float* __restrict__ src = a.cache + r * a.m + c0;
    for (int64_t j = 0; j < w; ++j) acc[j] += src[j];
  }
  for (int64_t j = 0; j < w; ++j) dst[j] = acc[j];
}

LINKEXIT_TARGET_CLONES
void aggregate_row_range(const AggregateArgs& a, int64_t i_begin, int64_t i_end,
                         ErrorSlots& errors) {
  PrefetchCursor cursor(a, i_begin, i_end);
  for (int64_t p = 0; p < kPrefetchEdges; ++p) cursor.advance();
  const int64_t full_end = a.m - a.m % kColBlock;
  for (int64_t i = i_begin; i < i_end; ++i) {
    const int64_t r = a.rows[i];
    if (!in_range(r, a.num_rows)) {
      ErrorSlots::record(errors.row, i);
      continue;
    }
    if (a.self_weight && !in_range(r, a.n)) {
      ErrorSlots::record(errors.self_row, i);
      continue;
    }
    const int64_t begin = a.rowptr[r], end = a.rowptr[r + 1];
    if (!valid_edge_range(a, begin, end)) {
      ErrorSlots::record(errors.edge_range, r);
      continue;
    }
    bool ok = true;
    for (int64_t e = begin; e < end && ok; ++e) {
      ok = in_range(a.col[e], a.n);
      if (!ok) ErrorSlots::record(errors.edge, e);
    }
    if (!ok) continue;
    float* dst = a.out + i * a.m;
    // Only the first block pass gathers from memory; later ones hit rows now in L1/L2.
    for (int64_t c0 = 0; c0 < full_end; c0 += kColBlock) {
      aggregate_block<true>(a, r, begin, end, c0, kColBlock, dst + c0, c0 == 0 ? &cursor : nullptr);
    }
    if (full_end < a.m) {
      aggregate_block<false>(a, r, begin, end, full_end, a.m - full_end, dst + full_end,
                             full_end == 0 ? &cursor : nullptr);
    }
  }
}

at::Tensor aggregate_rows_kernel(const at::Tensor& rowptr, const at::Tensor& col,
                                 const at::Tensor& weight, const at::Tensor& h,
                                 const at::Tensor& rows,
                                 const std::optional<at::Tensor>& self_weight,
                                 const std::optional<at::Tensor>& cache) {
  check_aggregate_rows_args(rowptr, col, weight, h, rows, self_weight, cache);
  const auto rowptr_c = rowptr.expect_contiguous(), col_c = col.expect_contiguous(),
             weight_c = weight.expect_contiguous(), h_c = h.expect_contiguous(),
             rows_c = rows.expect_contiguous();
  const at::Tensor self_c = self_weight.has_value() ? self_weight->contiguous() : at::Tensor();
  const at::Tensor cache_c = cache.has_value() ? cache->contiguous() : at::Tensor();

  const int64_t k = rows.numel(), m = h.size(1);
  at::Tensor out = at::empty({k, m}, h.options());
  if (k == 0 || m == 0) return out;

  const AggregateArgs args{rowptr_c->data_ptr<int64_t>(),
                           col_c->data_ptr<int64_t>(),
                           weight_c->data_ptr<float>(),
                           h_c->data_ptr<float>(),
                           rows_c->data_ptr<int64_t>(),
                           self_c.defined() ? self_c.data_ptr<float>() : nullptr,
                           cache_c.defined() ? cache_c.data_ptr<float>() : nullptr,
                           out.data_ptr<float>(),
                           rowptr.numel() - 1,
                           h.size(0),
                           m,
                           col.numel()};
  const int64_t num_tasks = (k + kRowsPerTask - 1) / kRowsPerTask;
  ErrorSlots errors;
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
  for (int64_t task = 0; task < num_tasks; ++task) {
    aggregate_row_range(args, task * kRowsPerTask, std::min(k, (task + 1) * kRowsPerTask), errors);
  }
  const int64_t i = errors.row.load(), self_i = errors.self_row.load();
  const int64_t r = errors.edge_range.load(), e = errors.edge.load();
  TORCH_CHECK(i < 0, "aggregate_rows: rows[", i, "] = ", args.rows[i], " is out of range [0, R) ",
              "with R = ", args.num_rows, " (rowptr has ", args.num_rows + 1, " entries)");
  TORCH_CHECK(self_i < 0, "aggregate_rows: rows[", self_i, "] = ", args.rows[self_i], " with ",
              "self_weight indexes h, which has ", args.n, " rows");
  TORCH_CHECK(r < 0, "aggregate_rows: rowptr[", r, "] = ", args.rowptr[r], " and rowptr[", r + 1,
              "] = ", args.rowptr[r + 1], " do not bound a valid edge range of col, which has ",
              args.nnz, " entries");
  TORCH_CHECK(e < 0, "aggregate_rows: col[", e, "] = ", args.col[e], " is out of range for h ",
              "with ", args.n, " rows");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("aggregate_rows", TORCH_FN(aggregate_rows_kernel));
}

}  // namespace ops
}  // namespace linkexit_fast
