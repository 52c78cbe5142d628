#include "../score_pairs.h"

#include <ATen/Parallel.h>
#include <ATen/ops/mm_ops.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "target_clones.h"

namespace linkexit_fast {
namespace ops {
namespace {

// Default pairs per block. Each block costs two OpenMP joins (ours and the GEMM's), and on
// the shared 2-core benchmark machine a join can wait a scheduler slice (~8 ms) for a
// descheduled thread; smaller blocks keep x and the hidden layer in cache. 228k pairs,
// m = 256, 2-layer MLP, time over the dense-GEMM floor, medians of 8 interleaved rounds on a
// quiet machine (after the gather prefetch below):
//   block      4096   8192   16384  32768
//   run 1      1.09   1.28   1.59   1.45
//   run 2      1.16   1.12   1.30   1.54
//   run 3      1.17   1.19   1.21   1.48
//   3-layer    1.05   1.06   1.11   1.45
// An earlier, loaded machine made 4096 twice as slow as 16384 (joins dominated there);
// 8192 (8 MB gather buffer at m = 256) is close to the best of both.
constexpr int64_t kDefaultBlock = 8192;
// Pairs per dynamically scheduled chunk inside a block: small enough that a thread which
// gets the core back late finds little left to do, large enough to amortise the scheduling.
constexpr int64_t kChunk = 256;

// Software prefetch of the z rows the gather will read kPairPrefetch pairs ahead: their
// first kPrefetchFloats floats (4 cache lines; the L2 streamer fetches the rest). The rows
// of random pairs on a large graph come from DRAM; on the 1M-node benchmark (228k pairs,
// m = 256, 2-layer MLP) this took the op from 1.42x to ~1.2x the dense-GEMM floor.
// 4, 8, 12 or 16 pairs ahead and 2 to 16 lines measured within noise of each other.
constexpr int64_t kPairPrefetch = 8;
constexpr int64_t kPrefetchFloats = 64;

inline bool in_range(int64_t value, int64_t size) {
  return static_cast<uint64_t>(value) < static_cast<uint64_t>(size);
}

// x[i] = z[u[i]] * z[v[i]] for the pairs [i_begin, i_end) of z's n rows. A pair with an
// index outside [0, n) is skipped and recorded in `bad_pair` (first one wins): threads cannot
// throw out of an OpenMP region, so the kernel raises after it.
LINKEXIT_TARGET_CLONES
void gather_hadamard(const float* __restrict__ z, int64_t n, const int64_t* u, const int64_t* v,
                     int64_t m, int64_t i_begin, int64_t i_end, float* __restrict__ x,
                     std::atomic<int64_t>& bad_pair) {
  for (int64_t i = i_begin; i < i_end; ++i) {
    if (i + kPairPrefetch < i_end) {
      const int64_t pu = u[i + kPairPrefetch], pv = v[i + kPairPrefetch];
      if (in_range(pu, n) && in_range(pv, n)) {
        for (int64_t j = 0; j < std::min(m, kPrefetchFloats); j += 16) {
          __builtin_prefetch(z + pu * m + j);
          __builtin_prefetch(z + pv * m + j);
        }
      }
    }
    if (!in_range(u[i], n) || !in_range(v[i], n)) {
      int64_t none = -1;
      bad_pair.compare_exchange_strong(none, i, std::memory_order_relaxed);
      continue;
    }
    const float* __restrict__ a = z + u[i] * m;
    const float* __restrict__ b = z + v[i] * m;
    float* __restrict__ dst = x + i * m;
    for (int64_t j = 0; j < m; ++j) dst[j] = a[j] * b[j];
  }
}

// x[i] = relu(x[i] + bias) in place, for an intermediate hidden layer.
LINKEXIT_TARGET_CLONES
void bias_relu(float* __restrict__ x, int64_t width, const float* __restrict__ bias,
               int64_t i_begin, int64_t i_end) {
  for (int64_t i = i_begin; i < i_end; ++i) {
    float* __restrict__ row = x + i * width;
    for (int64_t j = 0; j < width; ++j) row[j] = std::max(row[j] + bias[j], 0.f);  // NaN stays
  }
}

// The last layer, logits[i] = b_out + sum_j act(in[i, j]) * w_out[j]. `in` is the last hidden
// layer before its bias and ReLU, act(t) = relu(t + b_in[j]), or for a 1-layer MLP the
// gathered x itself, act(t) = t (b_in == nullptr).
LINKEXIT_TARGET_CLONES
void last_layer(const float* __restrict__ in, int64_t width, const float* __restrict__ b_in,
                const float* __restrict__ w_out, float b_out, int64_t i_begin, int64_t i_end,
                float* __restrict__ logits) {
  for (int64_t i = i_begin; i < i_end; ++i) {
    const float* __restrict__ row = in + i * width;
    float acc = 0.f;
    if (b_in) {
#pragma omp simd reduction(+ : acc)
      for (int64_t j = 0; j < width; ++j) acc += std::max(row[j] + b_in[j], 0.f) * w_out[j];
    } else {
#pragma omp simd reduction(+ : acc)
      for (int64_t j = 0; j < width; ++j) acc += row[j] * w_out[j];
    }
    logits[i] = acc + b_out;
  }
}

inline int64_t num_chunks(int64_t rows) { return (rows + kChunk - 1) / kChunk; }

}  // namespace

at::Tensor score_pairs_cpu(const at::Tensor& z, const at::Tensor& u, const at::Tensor& v,
                              at::TensorList weights, at::TensorList biases,
                              std::optional<int64_t> block_size) {
  check_score_pairs_args(z, u, v, weights, biases, block_size);
  const auto z_c = z.expect_contiguous(), u_c = u.expect_contiguous(), v_c = v.expect_contiguous();
  const int64_t num_pairs = u.numel(), n = z.size(0), m = z.size(1);
  const size_t num_hidden = weights.size() - 1;
  at::Tensor out = z.new_empty({num_pairs});
  if (num_pairs == 0) return out;

  const int64_t block = std::min(num_pairs, block_size.value_or(kDefaultBlock));
  const int64_t num_blocks = (num_pairs + block - 1) / block;
  // A 1-layer MLP's last layer reads the gather buffer of block b - 1 while block b is
  // gathered, so it needs a second one.
  std::array<at::Tensor, 2> x;
  x[0] = z.new_empty({block, m});
  x[1] = num_hidden ? x[0] : z.new_empty({block, m});
  std::vector<at::Tensor> hidden, bias_c;
  for (size_t l = 0; l < weights.size(); ++l) bias_c.push_back(biases[l].contiguous());
  for (size_t l = 0; l < num_hidden; ++l) {
    hidden.push_back(z.new_empty({block, weights[l].size(0)}));
  }
  const at::Tensor w_out = weights.back().contiguous();
  const float* w_out_p = w_out.data_ptr<float>();
  const float b_out = *bias_c.back().data_ptr<float>();  // no aten::item: a plain CPU read
  const float* b_in = num_hidden ? bias_c[num_hidden - 1].data_ptr<float>() : nullptr;
  const int64_t last_width = w_out.size(1);

  const float* z_p = z_c->data_ptr<float>();
  const int64_t* u_p = u_c->data_ptr<int64_t>();
  const int64_t* v_p = v_c->data_ptr<int64_t>();
  float* out_p = out.data_ptr<float>();
  const int num_threads = at::get_num_threads();

  // Per block: one OpenMP region of ours for block b - 1's last layer and block b's gather
  // together, the GEMMs, and one region per intermediate layer's bias + ReLU. Biases are
  // applied in our passes, not by addmm, whose bias broadcast is one more region per call.
  for (int64_t b = 0; b <= num_blocks; ++b) {
    const int64_t start = b * block, rows = b < num_blocks ? std::min(block, num_pairs - start) : 0;
    const int64_t prev_start = (b - 1) * block;
    const int64_t prev_rows = b > 0 ? std::min(block, num_pairs - prev_start) : 0;
    const float* last_in = num_hidden ? hidden.back().data_ptr<float>() : x[(b + 1) % 2].data_ptr<float>();
    float* x_next = x[b % 2].data_ptr<float>();
    const int64_t last_chunks = num_chunks(prev_rows), chunks = last_chunks + num_chunks(rows);
    std::atomic<int64_t> bad_pair{-1};
    // A single chunk runs on this thread: no fork/join, which on a shared machine can wait a
    // time slice for a descheduled worker (as in exit_decision_kernel.cpp).
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      if (c < last_chunks) {
        const int64_t i0 = c * kChunk;
        last_layer(last_in, last_width, b_in, w_out_p, b_out, i0,
                   std::min(prev_rows, i0 + kChunk), out_p + prev_start);
      } else {
        const int64_t i0 = (c - last_chunks) * kChunk;
        gather_hadamard(z_p, n, u_p + start, v_p + start, m, i0, std::min(rows, i0 + kChunk),
                        x_next, bad_pair);
      }
    }
    const int64_t bad = start + bad_pair.load();  // < start when every pair was valid
    TORCH_CHECK(bad < start, "score_pairs: ", in_range(u_p[bad], n) ? "v[" : "u[", bad, "] = ",
                in_range(u_p[bad], n) ? v_p[bad] : u_p[bad], " is out of range for z with ", n,
                " rows");
    if (rows == 0) continue;
    at::Tensor cur = x[b % 2].narrow(0, 0, rows);
    for (size_t l = 0; l < num_hidden; ++l) {
      at::Tensor pre = hidden[l].narrow(0, 0, rows);
      at::_ops::mm_out::call(cur, weights[l].t(), pre);
      if (l + 1 < num_hidden) {
        float* pre_p = pre.data_ptr<float>();
        const float* bias_p = bias_c[l].data_ptr<float>();
        const int64_t width = pre.size(1), pre_chunks = num_chunks(rows);
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads) if (pre_chunks > 1)
        for (int64_t c = 0; c < pre_chunks; ++c) {
          bias_relu(pre_p, width, bias_p, c * kChunk, std::min(rows, (c + 1) * kChunk));
        }
      }
      cur = pre;
    }
  }
  return out;
}

}  // namespace ops
}  // namespace linkexit_fast
