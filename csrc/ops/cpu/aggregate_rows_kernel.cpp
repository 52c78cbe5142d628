#include "../aggregate_rows.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>

#include "target_clones.h"

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define LINKEXIT_AVX512_BLOCKS 1
#endif

namespace linkexit_fast {
namespace ops {
namespace {

// Output columns accumulated in registers while a row's edges stream past: 64 floats are
// 4 zmm (AVX-512) or 8 ymm (AVX2) accumulators, leaving registers for the loads.
constexpr int64_t kColBlock = 64;
// Output rows per dynamically scheduled task. Hub rows (degree ~1000 next to a mean of ~10)
// make static splits uneven; 32 rows keep scheduling overhead negligible.
constexpr int64_t kRowsPerTask = 32;
// Look-ahead of the software prefetch, in edges, and lines prefetched (into L2) per gathered
// row: the L2 streamer fetches the rest of the row. On the 1M-node benchmark graph (m = 256)
// software prefetch gathers ~15% faster than none; 4 to 16 edges ahead and 1 to 16 lines,
// into L1 or L2, measured within noise of each other there.
constexpr int64_t kPrefetchEdges = 8;
constexpr int64_t kPrefetchLines = 4;
constexpr int64_t kFloatsPerLine = 16;  // 64-byte cache lines
// Gathers per h row (on average) from which column passes pay: see pass_columns.
constexpr int64_t kMinGathersPerRow = 16;

// Asks the kernel to back a fresh output with 2 MB pages (transparent huge pages in
// "madvise" mode, as on the benchmark machine): first-touch page faults drop 512-fold.
// On the 1M-node, m = 256 benchmark graph the advice made the op 12% faster on all rows
// (1 GB output) and 16% on a random 10% of them. Only whole 2 MB pages inside the buffer
// are advised.
void advise_huge_pages(const at::Tensor& out) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + out.nbytes()) & ~(kHuge - 1);
  // Only a hint: where it fails the output keeps 4 kB pages.
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

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
  int64_t out_first = 0;  // the output row of out[0] (AggregateBlocks: a block's first row)
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
  bool any() const { return row >= 0 || self_row >= 0 || edge_range >= 0 || edge >= 0; }
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
      for (int64_t j = 0; j < end; j += kFloatsPerLine) __builtin_prefetch(row + j, 0, 2);
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

#ifdef LINKEXIT_AVX512_BLOCKS
// The same block with kVecs AVX-512 registers (16 floats each) as accumulators: up to 256
// columns, i.e. a whole m = 256 row, in one walk over the row's edges. The portable loop
// cannot go wider than kColBlock (GCC spills a wider `acc` and runs ~2x slower), so it walks
// the edges m / 64 times and leaves the L2 streamer to fetch the rest of each gathered row
// while the first pass reads its head. One pass asks for every line of a gathered row at
// once. Head to head on the 1M-node, m = 256 benchmark graph (before the huge-page advice):
// as fast as the 64-wide loop on all rows, 13% faster on a random 10% of them.
template <int kVecs>
__attribute__((target("avx512f"))) inline void aggregate_block_avx512(
    const AggregateArgs& a, int64_t r, int64_t begin, int64_t end, int64_t c0,
    float* __restrict__ dst, PrefetchCursor* cursor) {
  __m512 acc[kVecs];
#pragma GCC unroll 16
  for (int j = 0; j < kVecs; ++j) acc[j] = _mm512_setzero_ps();
  const float* __restrict__ h = a.h + c0;
  for (int64_t e = begin; e < end; ++e) {
    if (cursor) cursor->advance();
    const __m512 we = _mm512_set1_ps(a.weight[e]);
    const float* __restrict__ src = h + a.col[e] * a.m;
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) acc[j] = _mm512_fmadd_ps(we, _mm512_loadu_ps(src + 16 * j), acc[j]);
  }
  if (a.self_weight) {
    const __m512 we = _mm512_set1_ps(a.self_weight[r]);
    const float* __restrict__ src = h + r * a.m;
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) acc[j] = _mm512_fmadd_ps(we, _mm512_loadu_ps(src + 16 * j), acc[j]);
  }
  if (a.cache) {
    const float* __restrict__ src = a.cache + r * a.m + c0;
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) acc[j] = _mm512_add_ps(acc[j], _mm512_loadu_ps(src + 16 * j));
  }
#pragma GCC unroll 16
  for (int j = 0; j < kVecs; ++j) _mm512_storeu_ps(dst + 16 * j, acc[j]);
}

#endif

// Whether the indices output row i reads are in range; records the first offence otherwise.
inline bool valid_row(const AggregateArgs& a, int64_t i, ErrorSlots& errors) {
  const int64_t r = a.rows[i];
  if (!in_range(r, a.num_rows)) {
    ErrorSlots::record(errors.row, i);
    return false;
  }
  if (a.self_weight && !in_range(r, a.n)) {
    ErrorSlots::record(errors.self_row, i);
    return false;
  }
  const int64_t begin = a.rowptr[r], end = a.rowptr[r + 1];
  if (!valid_edge_range(a, begin, end)) {
    ErrorSlots::record(errors.edge_range, r);
    return false;
  }
  for (int64_t e = begin; e < end; ++e) {
    if (!in_range(a.col[e], a.n)) {
      ErrorSlots::record(errors.edge, e);
      return false;
    }
  }
  return true;
}

// The columns [Pass::c_begin, Pass::c_end) of the output rows of one pass; `validate` checks
// every row's indices first (the first pass over a row set), `prefetch` runs the software
// prefetch of gathered rows (worth it when they come from DRAM, not when h sits in L2).
struct Pass {
  int64_t c_begin, c_end;
  bool validate, prefetch;
};

// The rows [i_begin, i_end) of one task: validates each row if asked, then aggregates the
// pass's columns in blocks, AVX-512 ones first where kAvx512 (which must then run inside an
// avx512f-targeted caller that flattens it, so that the blocks and the prefetch cursor
// inline there and the cursor's state stays in registers).
template <bool kAvx512>
inline void aggregate_rows_impl(const AggregateArgs& a, int64_t i_begin, int64_t i_end,
                                const Pass& pass, ErrorSlots& errors) {
  PrefetchCursor cursor(a, i_begin, i_end);
  if (pass.prefetch)
    for (int64_t p = 0; p < kPrefetchEdges; ++p) cursor.advance();
  const int64_t c_begin = pass.c_begin, c_end = pass.c_end;
  const int64_t full_end = c_end - (c_end - c_begin) % kColBlock;
  PrefetchCursor* first = pass.prefetch ? &cursor : nullptr;  // advanced by the first block only
  for (int64_t i = i_begin; i < i_end; ++i) {
    if (pass.validate && !valid_row(a, i, errors)) continue;
    const int64_t r = a.rows[i];
    const int64_t begin = a.rowptr[r], end = a.rowptr[r + 1];
    float* dst = a.out + (i - a.out_first) * a.m;
    int64_t c0 = c_begin;
#ifdef LINKEXIT_AVX512_BLOCKS
    if constexpr (kAvx512) {
      for (; c0 + 256 <= c_end; c0 += 256)
        aggregate_block_avx512<16>(a, r, begin, end, c0, dst + c0, c0 == c_begin ? first : nullptr);
      if (c0 + 128 <= c_end) {
        aggregate_block_avx512<8>(a, r, begin, end, c0, dst + c0, c0 == c_begin ? first : nullptr);
        c0 += 128;
      }
      if (c0 + 64 <= c_end) {
        aggregate_block_avx512<4>(a, r, begin, end, c0, dst + c0, c0 == c_begin ? first : nullptr);
        c0 += 64;
      }
    }
#endif
    for (; c0 < full_end; c0 += kColBlock) {
      aggregate_block<true>(a, r, begin, end, c0, kColBlock, dst + c0, c0 == c_begin ? first : nullptr);
    }
    if (c0 < c_end) {
      aggregate_block<false>(a, r, begin, end, c0, c_end - c0, dst + c0, c0 == c_begin ? first : nullptr);
    }
  }
}

LINKEXIT_TARGET_CLONES
void aggregate_row_range(const AggregateArgs& a, int64_t i_begin, int64_t i_end, const Pass& pass,
                         ErrorSlots& errors) {
  aggregate_rows_impl<false>(a, i_begin, i_end, pass, errors);
}

#ifdef LINKEXIT_AVX512_BLOCKS
__attribute__((target("avx512f"), flatten)) void aggregate_row_range_avx512(
    const AggregateArgs& a, int64_t i_begin, int64_t i_end, const Pass& pass, ErrorSlots& errors) {
  aggregate_rows_impl<true>(a, i_begin, i_end, pass, errors);
}
#endif

// aggregate_rows_cpu's row range for the calling CPU.
void aggregate_range(const AggregateArgs& a, int64_t i_begin, int64_t i_end, const Pass& pass, ErrorSlots& errors) {
#ifdef LINKEXIT_AVX512_BLOCKS
  static const bool has_avx512 = __builtin_cpu_supports("avx512f");
  if (has_avx512) return aggregate_row_range_avx512(a, i_begin, i_end, pass, errors);
#endif
  aggregate_row_range(a, i_begin, i_end, pass, errors);
}

int64_t l2_cache_bytes() {
#if defined(__linux__) && defined(_SC_LEVEL2_CACHE_SIZE)
  static const int64_t bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (bytes > 0) return bytes;
#endif
  return int64_t{1} << 20;
}

// Columns per pass over the rows. On large graphs the gathered rows come from DRAM: one pass
// walks each row's edges once with the whole output row in registers, and prefetches. On
// dense small graphs h misses L2 but is gathered many times over (ogbl-ddi: 4267 x 256 floats
// = 4.4 MB, ~500 gathers of each row per layer); there passes of kPassCols columns each read
// a slice that stays in the core's L2. benchmarks/aggregate_passes.py on ogbl-ddi (m = 256,
// 2 MB L2 per core; 2,700 rows / all 4,267): 64 columns per pass 11.3 / 17.9 ms, 128 14.2 /
// 22.6, whole rows 13.2 / 21.0, 32 18.3 / 29.4; the engine's GNN stage 69.9 against 77.9 ms.
int64_t pass_columns(const AggregateArgs& a, int64_t k, std::optional<int64_t> requested) {
  if (requested.has_value()) return std::min(a.m, *requested);
  constexpr int64_t kPassCols = 64;
  const int64_t l2 = l2_cache_bytes();
  if (a.m <= kPassCols || a.n * a.m * int64_t{sizeof(float)} <= l2 / 2 ||
      a.n * kPassCols * int64_t{sizeof(float)} > l2 * 3 / 4)
    return a.m;
  int64_t gathers = 0;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t r = a.rows[i];
    if (in_range(r, a.num_rows) && valid_edge_range(a, a.rowptr[r], a.rowptr[r + 1]))
      gathers += a.rowptr[r + 1] - a.rowptr[r];
  }
  return gathers >= kMinGathersPerRow * a.n ? kPassCols : a.m;
}

}  // namespace

at::Tensor aggregate_rows_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                                 const at::Tensor& weight, const at::Tensor& h,
                                 const at::Tensor& rows,
                                 const std::optional<at::Tensor>& self_weight,
                                 const std::optional<at::Tensor>& cache,
                                 std::optional<int64_t> pass_cols) {
  check_aggregate_rows_args(rowptr, col, weight, h, rows, self_weight, cache, pass_cols);
  const auto rowptr_c = rowptr.expect_contiguous(), col_c = col.expect_contiguous(),
             weight_c = weight.expect_contiguous(), h_c = h.expect_contiguous(),
             rows_c = rows.expect_contiguous();
  const at::Tensor self_c = self_weight.has_value() ? self_weight->contiguous() : at::Tensor();
  const at::Tensor cache_c = cache.has_value() ? cache->contiguous() : at::Tensor();

  const int64_t k = rows.numel(), m = h.size(1);
  at::Tensor out = h.new_empty({k, m});
  if (k == 0 || m == 0) return out;
  advise_huge_pages(out);

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
  const int64_t width = pass_columns(args, k, pass_cols);
  for (int64_t c0 = 0; c0 < m; c0 += width) {
    const Pass pass{c0, std::min(m, c0 + width), c0 == 0, width == m};
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
    for (int64_t task = 0; task < num_tasks; ++task) {
      const int64_t i_begin = task * kRowsPerTask, i_end = std::min(k, (task + 1) * kRowsPerTask);
      aggregate_range(args, i_begin, i_end, pass, errors);
    }
    if (errors.any()) break;  // the first pass skipped bad rows that later ones would read
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

AggregateBlocks::AggregateBlocks(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
                                 const at::Tensor& h, const at::Tensor& rows,
                                 const std::optional<at::Tensor>& self_weight, const std::optional<at::Tensor>& cache)
    : rowptr_(rowptr.data_ptr<int64_t>()), col_(col.data_ptr<int64_t>()), rows_(rows.data_ptr<int64_t>()),
      weight_(weight.data_ptr<float>()), h_(h.data_ptr<float>()),
      self_weight_(self_weight.has_value() ? self_weight->data_ptr<float>() : nullptr),
      cache_(cache.has_value() ? cache->data_ptr<float>() : nullptr), num_rows_(rowptr.numel() - 1),
      n_(h.size(0)), m_(h.size(1)), nnz_(col.numel()) {}

bool AggregateBlocks::run(int64_t i_begin, int64_t i_end, float* out) const {
  AggregateArgs args{rowptr_, col_, weight_, h_, rows_, self_weight_, cache_, out, num_rows_, n_, m_, nnz_, i_begin};
  ErrorSlots errors;
  aggregate_range(args, i_begin, i_end, Pass{0, m_, true, true}, errors);
  return !errors.any();
}

}  // namespace ops
}  // namespace linkexit_fast
