#include "../linear_act.h"
#include "../aggregate_rows.h"

#include <ATen/Parallel.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/mm.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define LINKEXIT_LINEAR_AVX2 1
#define LINKEXIT_AVX2_FN __attribute__((target("avx2,fma")))
#endif

namespace linkexit_fast {
namespace ops {
namespace {

// Why this op exists: torch's addmm into a preallocated out first copies the broadcast bias into
// it (a pass over [k, N]), MKL then reads and writes it, and GELU reads and writes it once more.
// On the engine's first layer (5,593 x 64 -> 256 on the 20k-node benchmark graph) that is four
// passes over a 5.7 MB buffer that starts cold. Here each task's rows are computed into their
// part of out, which stays in cache for the bias and GELU: one write.
//
// Register tile: kTileRows rows x kPanel columns, 12 ymm accumulators, the 2 weight vectors of a
// step and the broadcast input: 15 of AVX2's 16 registers.
constexpr int64_t kPanel = 16;
constexpr int kTileRows = 6;
// Input bytes per parallel task: its rows of x (kept in L1 across the panels, next to one
// 16-column panel of weights) and of out (in L1/L2 between the product and the GELU pass):
// 64 rows at K = 64, 12 at K = 256.
constexpr int64_t kTaskBytes = 16 << 10;
// Packed weights kept per thread between calls, at most (4 MB).
constexpr size_t kKeepFloats = size_t{1} << 20;

#ifdef LINKEXIT_LINEAR_AVX2
// Abramowitz & Stegun 7.1.26: erfc(z) ~ t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-z^2),
// t = 1 / (1 + p z), z >= 0, |error| <= 1.5e-7; torch's AVX2 GELU uses the same approximation
// of erf. GELU(x) = x Phi(x) is taken as x (1 - q / 2) for x >= 0 and x q / 2 for x < 0,
// q = erfc(|x| / sqrt 2), which avoids the 1 + erf(x) cancellation for negative x.
// tests/test_cpu_ops.py compares it with scipy's erf in float64.
constexpr float kP = 0.3275911f, kA1 = 0.254829592f, kA2 = -0.284496736f, kA3 = 1.421413741f,
                kA4 = -1.453152027f, kA5 = 1.061405429f;
constexpr float kSqrtHalf = 0.70710678118654752f;
// exp(-z^2) below exp(-80) is taken as 0, which makes GELU(x) 0 for x < -12.6 (where it is about
// -6e-36 or smaller): the products below stay normal floats. Denormal intermediates (exp(-87) is
// one) cost a microcode assist each, and made the op 4x slower on inputs of a few tens.
// x = -inf gives -inf * 0 = NaN, as torch's.
constexpr float kMaxSquare = 80.f;

// exp(y) for y in [-kMaxSquare, 0]: y = n ln 2 + r, |r| <= ln 2 / 2 (Cody-Waite, ln 2 in two
// parts), e^r by its Taylor polynomial of degree 7 (relative error < 6e-9), times 2^n built in
// the exponent bits (n >= -126: a normal float).
LINKEXIT_AVX2_FN inline __m256 exp_neg(__m256 y) {
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), y);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.f / 5040.f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 720.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  const __m256i scale =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

LINKEXIT_AVX2_FN inline __m256 gelu8(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  const __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(kSqrtHalf));
  const __m256 t =
      _mm256_div_ps(_mm256_set1_ps(1.f), _mm256_fmadd_ps(_mm256_set1_ps(kP), z, _mm256_set1_ps(1.f)));
  __m256 poly = _mm256_set1_ps(kA5);
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kA4));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kA3));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kA2));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kA1));
  const __m256 z2 = _mm256_mul_ps(z, z);
  const __m256 tiny = _mm256_cmp_ps(z2, _mm256_set1_ps(kMaxSquare), _CMP_GT_OQ);
  const __m256 e = exp_neg(_mm256_max_ps(_mm256_xor_ps(z2, sign), _mm256_set1_ps(-kMaxSquare)));
  const __m256 half_q =
      _mm256_andnot_ps(tiny, _mm256_mul_ps(_mm256_mul_ps(t, poly), _mm256_mul_ps(e, _mm256_set1_ps(0.5f))));
  // x >= 0: 1 - q / 2; otherwise (NaN included: t, hence q, is NaN then) q / 2.
  const __m256 phi = _mm256_blendv_ps(half_q, _mm256_sub_ps(_mm256_set1_ps(1.f), half_q),
                                      _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
  return _mm256_mul_ps(x, phi);
}

// GELU in place on count floats; the tail goes through the same instructions (masked), so a
// value never depends on its position.
LINKEXIT_AVX2_FN void gelu_inplace(float* o, int64_t count) {
  const int64_t body = count - count % 8;
  for (int64_t j = 0; j < body; j += 8) _mm256_storeu_ps(o + j, gelu8(_mm256_loadu_ps(o + j)));
  if (body < count) {
    alignas(32) int32_t lanes[8];
    for (int i = 0; i < 8; ++i) lanes[i] = body + i < count ? -1 : 0;
    const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
    _mm256_maskstore_ps(o + body, mask, gelu8(_mm256_maskload_ps(o + body, mask)));
  }
}

// Rows [0, MR) x the panel's columns [0, cols) of out (row stride n): the rows xr[0..MR) of x
// (k floats each, anywhere: a gathered row is read in place) times the packed panel wp [k][kPanel],
// plus the panel's bias. Each output is one FMA chain over k from
// zero, then the bias: the same arithmetic for every row and column, whatever the batch.
// Named accumulators: GCC stores an array of them to the stack at every step.
#define LINKEXIT_TILE_INIT(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
#define LINKEXIT_TILE_STEP(i)                                     \
  if constexpr (MR > i) {                                         \
    const __m256 a = _mm256_broadcast_ss(x##i + s);               \
    c##i##0 = _mm256_fmadd_ps(a, w0, c##i##0);                    \
    c##i##1 = _mm256_fmadd_ps(a, w1, c##i##1);                    \
  }
#define LINKEXIT_TILE_STORE(i)                                    \
  if constexpr (MR > i) {                                         \
    _mm256_storeu_ps(dst + i * ld, _mm256_add_ps(c##i##0, b0));   \
    _mm256_storeu_ps(dst + i * ld + 8, _mm256_add_ps(c##i##1, b1)); \
  }

template <int MR>
LINKEXIT_AVX2_FN void tile(const float* const* xr, int64_t k, const float* __restrict wp,
                           const float* __restrict bias, float* __restrict out, int64_t n, int64_t cols) {
  // Rows past MR alias row 0 and are never read.
  const float *__restrict x0 = xr[0], *__restrict x1 = xr[MR > 1 ? 1 : 0], *__restrict x2 = xr[MR > 2 ? 2 : 0],
              *__restrict x3 = xr[MR > 3 ? 3 : 0], *__restrict x4 = xr[MR > 4 ? 4 : 0], *__restrict x5 = xr[MR > 5 ? 5 : 0];
  LINKEXIT_TILE_INIT(0) LINKEXIT_TILE_INIT(1) LINKEXIT_TILE_INIT(2)
  LINKEXIT_TILE_INIT(3) LINKEXIT_TILE_INIT(4) LINKEXIT_TILE_INIT(5)
  for (int64_t s = 0; s < k; ++s) {
    const __m256 w0 = _mm256_loadu_ps(wp + s * kPanel), w1 = _mm256_loadu_ps(wp + s * kPanel + 8);
    LINKEXIT_TILE_STEP(0) LINKEXIT_TILE_STEP(1) LINKEXIT_TILE_STEP(2)
    LINKEXIT_TILE_STEP(3) LINKEXIT_TILE_STEP(4) LINKEXIT_TILE_STEP(5)
  }
  const __m256 b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
  // A partial panel (the last, when n is not a multiple of kPanel) goes through a local tile.
  alignas(32) float part[kTileRows * kPanel];
  const bool whole = cols == kPanel;
  float* dst = whole ? out : part;
  const int64_t ld = whole ? n : kPanel;
  LINKEXIT_TILE_STORE(0) LINKEXIT_TILE_STORE(1) LINKEXIT_TILE_STORE(2)
  LINKEXIT_TILE_STORE(3) LINKEXIT_TILE_STORE(4) LINKEXIT_TILE_STORE(5)
  if (!whole)
    for (int i = 0; i < MR; ++i) std::memcpy(out + i * n, part + i * kPanel, cols * sizeof(float));
}

#undef LINKEXIT_TILE_INIT
#undef LINKEXIT_TILE_STEP
#undef LINKEXIT_TILE_STORE

// rows rows of x into out [rows, n]: x's rows 0, 1, ... (row stride k), or with ids its rows
// ids[0], ids[1], ... read in place; panel by panel (its weights stay in L1 across the row tiles),
// then the GELU pass over the rows just written, still in cache.
LINKEXIT_AVX2_FN void rows_task(const float* x, int64_t k, const int64_t* ids, const float* wpack, const float* bias,
                                float* out, int64_t n, int64_t rows, bool gelu) {
  for (int64_t j = 0; j < n; j += kPanel) {
    const float* wp = wpack + j * k;
    const int64_t cols = std::min(kPanel, n - j);
    for (int64_t r = 0; r < rows; r += kTileRows) {
      const int64_t mr = std::min<int64_t>(kTileRows, rows - r);
      const float* xr[kTileRows];
      for (int64_t i = 0; i < mr; ++i) xr[i] = x + (ids ? ids[r + i] : r + i) * k;
      float* o = out + r * n + j;
      switch (mr) {
        case 6: tile<6>(xr, k, wp, bias + j, o, n, cols); break;
        case 5: tile<5>(xr, k, wp, bias + j, o, n, cols); break;
        case 4: tile<4>(xr, k, wp, bias + j, o, n, cols); break;
        case 3: tile<3>(xr, k, wp, bias + j, o, n, cols); break;
        case 2: tile<2>(xr, k, wp, bias + j, o, n, cols); break;
        default: tile<1>(xr, k, wp, bias + j, o, n, cols); break;
      }
    }
  }
  if (gelu) gelu_inplace(out, rows * n);
}

// Packs weight [n, k] into column panels [n / kPanel][k][kPanel] (the last one zero-padded):
// 8 x 8 blocks transposed in registers, the edges one float at a time. A scalar loop took ~50 us
// for 256 x 256, more than a 16-row product.
LINKEXIT_AVX2_FN void pack_panels(const float* w, int64_t n, int64_t k, float* wpack) {
  const int64_t panels = (n + kPanel - 1) / kPanel;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t cols = std::min(kPanel, n - p * kPanel);
    float* dst = wpack + p * kPanel * k;
    int64_t s = 0;
    if (cols == kPanel) {
      for (; s + 8 <= k; s += 8) {
        for (int64_t half = 0; half < kPanel; half += 8) {
          const float* src = w + (p * kPanel + half) * k + s;
          __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + k), r2 = _mm256_loadu_ps(src + 2 * k),
                 r3 = _mm256_loadu_ps(src + 3 * k), r4 = _mm256_loadu_ps(src + 4 * k),
                 r5 = _mm256_loadu_ps(src + 5 * k), r6 = _mm256_loadu_ps(src + 6 * k),
                 r7 = _mm256_loadu_ps(src + 7 * k);
          const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
                       t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
                       t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                       t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
          const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                       u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                       u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                       u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
          r0 = _mm256_permute2f128_ps(u0, u4, 0x20);
          r1 = _mm256_permute2f128_ps(u1, u5, 0x20);
          r2 = _mm256_permute2f128_ps(u2, u6, 0x20);
          r3 = _mm256_permute2f128_ps(u3, u7, 0x20);
          r4 = _mm256_permute2f128_ps(u0, u4, 0x31);
          r5 = _mm256_permute2f128_ps(u1, u5, 0x31);
          r6 = _mm256_permute2f128_ps(u2, u6, 0x31);
          r7 = _mm256_permute2f128_ps(u3, u7, 0x31);
          float* d = dst + s * kPanel + half;
          _mm256_storeu_ps(d, r0);
          _mm256_storeu_ps(d + kPanel, r1);
          _mm256_storeu_ps(d + 2 * kPanel, r2);
          _mm256_storeu_ps(d + 3 * kPanel, r3);
          _mm256_storeu_ps(d + 4 * kPanel, r4);
          _mm256_storeu_ps(d + 5 * kPanel, r5);
          _mm256_storeu_ps(d + 6 * kPanel, r6);
          _mm256_storeu_ps(d + 7 * kPanel, r7);
        }
      }
    }
    for (; s < k; ++s) {
      for (int64_t c = 0; c < cols; ++c) dst[s * kPanel + c] = w[(p * kPanel + c) * k + s];
      for (int64_t c = cols; c < kPanel; ++c) dst[s * kPanel + c] = 0.f;
    }
  }
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

}  // namespace

bool LinearTiles::pack(const float* w, int64_t n, int64_t k, const float* bias) {
#ifdef LINKEXIT_LINEAR_AVX2
  if (!has_avx2()) return false;
  // Weights packed into column panels [n / kPanel][k][kPanel], the last one zero-padded, and
  // the bias padded likewise: a tile reads kPanel consecutive floats per step. The packing
  // buffer is kept by the calling thread between calls (up to kKeepFloats): a fresh 256 kB
  // one (K = N = 256) came as new pages each call, and its page faults cost more than a
  // 64-row product.
  const int64_t panels = (n + kPanel - 1) / kPanel;
  const size_t size = static_cast<size_t>(panels * kPanel * (k + 1));
  thread_local std::vector<float> kept;
  std::vector<float>& buf = size <= kKeepFloats ? kept : fresh_;
  if (buf.size() < size) buf.resize(size);
  float* wpack = buf.data();
  float* bpad = wpack + panels * kPanel * k;
  pack_panels(w, n, k, wpack);
  std::fill(bpad, bpad + panels * kPanel, 0.f);
  if (bias) std::memcpy(bpad, bias, n * sizeof(float));
  wpack_ = wpack, bpad_ = bpad, n_ = n, k_ = k;
  return true;
#else
  return false;
#endif
}

void LinearTiles::rows(const float* x, int64_t rows, float* out, bool gelu, const int64_t* ids) const {
#ifdef LINKEXIT_LINEAR_AVX2
  if (rows > 0 && n_ > 0) rows_task(x, k_, ids, wpack_, bpad_, out, n_, rows, gelu);
#endif
}

int64_t LinearTiles::task_rows() const {
  const int64_t fit = kTaskBytes / static_cast<int64_t>(sizeof(float) * std::max<int64_t>(k_, 1));
  return std::clamp<int64_t>(fit - fit % kTileRows, kTileRows, 64);
}

bool linear_rows(const float* x, int64_t rows, int64_t k, const float* w, int64_t n, const float* bias, bool gelu,
                 float* out, const int64_t* ids) {
  LinearTiles tiles;
  if (!tiles.pack(w, n, k, bias)) return false;
  const int64_t task = tiles.task_rows();
  at::parallel_for(0, (rows + task - 1) / task, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r = t * task;
      if (ids)
        tiles.rows(x, std::min(task, rows - r), out + r * n, gelu, ids + r);
      else
        tiles.rows(x + r * k, std::min(task, rows - r), out + r * n, gelu);
    }
  });
  return true;
}

at::Tensor& linear_act_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           bool gelu, at::Tensor& out) {
  check_linear_act_args(x, weight, bias, out);
  if (linear_rows(x.data_ptr<float>(), x.size(0), x.size(1), weight.data_ptr<float>(), weight.size(0),
                  bias.has_value() ? bias->data_ptr<float>() : nullptr, gelu, out.data_ptr<float>()))
    return out;
  // Without AVX2 and FMA: torch's own kernels (values may differ from the tiles above by
  // rounding).
  if (bias.has_value()) {
    at::addmm_out(out, *bias, x, weight.t());
  } else {
    at::mm_out(out, x, weight.t());
  }
  if (gelu) at::gelu_out(out, out);
  return out;
}

at::Tensor& aggregate_linear_act_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
                                     const at::Tensor& h, const at::Tensor& rows,
                                     const std::optional<at::Tensor>& self_weight,
                                     const std::optional<at::Tensor>& cache, const at::Tensor& lin_weight,
                                     const std::optional<at::Tensor>& lin_bias, bool gelu, at::Tensor& out) {
  check_aggregate_rows_args(rowptr, col, weight, h, rows, self_weight, cache, std::nullopt);
  check_aggregate_linear_act_args(h, rows, cache, lin_weight, lin_bias, out);
  const at::Tensor rowptr_c = rowptr.contiguous(), col_c = col.contiguous(), weight_c = weight.contiguous(),
                   h_c = h.contiguous(), rows_c = rows.contiguous();
  const std::optional<at::Tensor> self_c = self_weight.has_value() ? std::optional(self_weight->contiguous())
                                                                   : std::nullopt;
  const std::optional<at::Tensor> cache_c = cache.has_value() ? std::optional(cache->contiguous()) : std::nullopt;
  const int64_t k = rows.numel(), m = h.size(1), n = lin_weight.size(0);
  LinearTiles tiles;
  if (k == 0 || n == 0) return out;
  if (m == 0 || !tiles.pack(lin_weight.data_ptr<float>(), n, m,
                            lin_bias.has_value() ? lin_bias->data_ptr<float>() : nullptr)) {
    // No AVX2 (or nothing to aggregate): the two ops, as specified.
    at::Tensor agg = aggregate_rows_cpu(rowptr_c, col_c, weight_c, h_c, rows_c, self_c, cache_c, std::nullopt);
    return linear_act_cpu(agg, lin_weight, lin_bias, gelu, out);
  }
  const AggregateBlocks blocks(rowptr_c, col_c, weight_c, h_c, rows_c, self_c, cache_c);
  const int64_t task = tiles.task_rows();
  std::atomic<bool> bad{false};
  float* out_p = out.data_ptr<float>();
  at::parallel_for(0, (k + task - 1) / task, 1, [&](int64_t begin, int64_t end) {
    // A task's aggregated rows: 16 kB, made and consumed in L1.
    thread_local std::vector<float> block;
    if (block.size() < static_cast<size_t>(task * m)) block.resize(task * m);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r = t * task, count = std::min(task, k - r);
      if (!blocks.run(r, r + count, block.data())) {
        bad = true;
        continue;
      }
      tiles.rows(block.data(), count, out_p + r * n, gelu);
    }
  });
  if (bad) {  // the plain op on the same inputs raises the error naming the index
    aggregate_rows_cpu(rowptr_c, col_c, weight_c, h_c, rows_c, self_c, cache_c, std::nullopt);
    TORCH_CHECK(false, "aggregate_linear_act: an index out of range that aggregate_rows accepted");
  }
  return out;
}

}  // namespace ops
}  // namespace linkexit_fast
