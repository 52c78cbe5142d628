// score_pairs_bf16 on x86-64 CPUs with AMX-BF16 or AVX512-BF16, chosen at run time.
//
// One pass per block of kRows pairs, all in the thread's L1/L2: gather z[u] * z[v] in fp32,
// split it into bf16 parts, each hidden layer's products on AMX tiles (tdpbf16ps) or with
// vdpbf16ps, fp32 accumulation, bias + ReLU in fp32, the last layer as an fp32 dot product,
// and the bound's magnitude dot products m_l . |h_l| on the same fp32 values.
// The file is compiled for baseline x86-64 like the rest of csrc/; only the functions carrying
// LINKEXIT_BF16_TARGET / LINKEXIT_AMX_TARGET use the newer instructions, and they run only
// after bf16_cpu_isa() found them.
#include "../score_pairs_bf16.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LINKEXIT_HAVE_X86_BF16 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define LINKEXIT_BF16_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define LINKEXIT_AMX_TARGET                                                                  \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,amx-tile,amx-bf16")))
#endif

namespace linkexit_fast {
namespace ops {

#ifdef LINKEXIT_HAVE_X86_BF16
namespace {

// Pairs per block: two AMX row tiles of 16. The block's bf16 inputs (2 x 32 x 768 bytes at
// width 256... 3 products) and fp32 outputs (32 KB) stay in L1/L2 between the layers.
constexpr int64_t kRows = 32;
// Width granularity: one AMX tile row holds 32 bf16 (K) and two C tiles 32 fp32 columns (N).
constexpr int64_t kAlign = 32;
// Blocks per dynamically scheduled chunk: a block is ~10 us of AMX work at width 256.
constexpr int kBlocksPerChunk = 4;

inline int64_t round_up(int64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// Linux: a process must ask for the AMX tile state before its first tile instruction.
bool request_amx_permission() {
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

std::string probe_isa() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return "none";
  const bool avx512f = b & (1u << 16), avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
  unsigned a1 = 0, b1, c1, d1;
  __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
  const bool avx512bf16 = a1 & (1u << 5);
  // The OS must save the state: XCR0 bits 1-2 (SSE, AVX), 5-7 (AVX-512), 17-18 (AMX tiles).
  __get_cpuid(1, &a, &b, &c, &d);
  if (!(c & (1u << 27))) return "none";  // no OSXSAVE
  unsigned lo, hi;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const uint64_t xcr0 = (uint64_t(hi) << 32) | lo;
  const bool os_avx512 = (xcr0 & 0xE6) == 0xE6, os_amx = (xcr0 & 0x60000) == 0x60000;
  if (!(avx512f && avx512bw && avx512vl && avx512bf16 && os_avx512)) return "none";
  if (amx_bf16 && amx_tile && os_amx && request_amx_permission()) return "amx-bf16";
  return "avx512-bf16";
}

// W^T of a hidden layer part in the VNNI layout both ISAs read: packed[k / 2][n][k % 2] for
// k < kpad, n < npad, zero outside [d_in, d_out). One packed row (k pair) of 32 n is an AMX B
// tile row pair of 16 columns, or a vdpbf16ps operand.
std::vector<uint16_t> pack_vnni(const at::BFloat16* w, int64_t d_out, int64_t d_in) {
  const int64_t kpad = round_up(d_in), npad = round_up(d_out);
  std::vector<uint16_t> packed(kpad * npad, 0);
  for (int64_t n = 0; n < d_out; ++n) {
    for (int64_t k = 0; k < d_in; ++k) {
      uint16_t bits;
      std::memcpy(&bits, w + n * d_in + k, 2);
      packed[(k / 2) * npad * 2 + n * 2 + (k % 2)] = bits;
    }
  }
  return packed;
}

struct Layer {
  std::vector<uint16_t> w_hi, w_lo;  // packed; w_lo empty for one product per multiply-add
  const float* bias;
  int64_t d_in, d_out, kpad, npad;
};

// Per thread: the bf16 input parts [kRows, kpad] (zero beyond the width) and fp32 outputs.
struct Scratch {
  std::unique_ptr<uint16_t[]> hi, lo;
  std::unique_ptr<float[]> acc;
  int64_t ld_in, ld_out;
  Scratch(int64_t width_in, int64_t width_out)
      : hi(new uint16_t[kRows * width_in]()), lo(new uint16_t[kRows * width_in]()),
        acc(new float[kRows * width_out]()), ld_in(width_in), ld_out(width_out) {}
};

LINKEXIT_BF16_TARGET inline __mmask16 tail_mask(int64_t j, int64_t width) {
  const int64_t left = width - j;
  return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max<int64_t>(left, 0)) - 1);
}

// Splits 16 fp32 values into hi = bf16(x) and lo = bf16(x - hi) (both round to nearest even).
LINKEXIT_BF16_TARGET inline void split_store(__m512 x, uint16_t* hi, uint16_t* lo) {
  const __m256bh h = _mm512_cvtneps_pbh(x);
  __m256i h_bits;
  std::memcpy(&h_bits, &h, 32);
  const __m512 h32 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h_bits), 16));
  const __m256bh l = _mm512_cvtneps_pbh(_mm512_sub_ps(x, h32));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi), h_bits);
  if (lo) {
    __m256i l_bits;
    std::memcpy(&l_bits, &l, 32);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo), l_bits);
  }
}

// One 16-wide slice v of a row's layer input (masked by k): m . |v| into mag, and either its bf16
// parts into the scratch (a hidden layer follows) or the last layer's fp32 dot product into dot.
LINKEXIT_BF16_TARGET inline void emit_slice(__m512 v, __mmask16 k, int64_t j, const float* m,
                                            uint16_t* hi, uint16_t* lo, const float* last,
                                            __m512& mag, __m512& dot) {
  mag = _mm512_fmadd_ps(_mm512_abs_ps(v), _mm512_maskz_loadu_ps(k, m + j), mag);
  if (hi) {
    split_store(v, hi + j, lo ? lo + j : nullptr);
  } else {
    dot = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k, last + j), dot);
  }
}

// The row's totals: writes the score when no hidden layer follows, returns m . |input|.
LINKEXIT_BF16_TARGET inline float finish_row(__m512 mag, __m512 dot, const uint16_t* hi,
                                             float last_bias, float* score) {
  if (!hi) *score = _mm512_reduce_add_ps(dot) + last_bias;
  return _mm512_reduce_add_ps(mag);
}

// Row r of the block: x = z[a] * z[b] (fp32, the same rounding as the fp32 scorers), its bf16
// parts into the scratch (hidden layers follow), or the last layer on x itself (none follow).
// Returns m_0 . |x| and, without hidden layers, writes the score.
LINKEXIT_BF16_TARGET float gather_row(const float* za, const float* zb, int64_t m, int64_t kpad,
                                      const float* m0, uint16_t* hi, uint16_t* lo,
                                      const float* last, float last_bias, float* score) {
  __m512 mag = _mm512_setzero_ps(), dot = _mm512_setzero_ps();
  for (int64_t j = 0; j < kpad; j += 16) {
    const __mmask16 k = tail_mask(j, m);
    const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, za + j), _mm512_maskz_loadu_ps(k, zb + j));
    emit_slice(x, k, j, m0, hi, lo, last, mag, dot);
  }
  return finish_row(mag, dot, hi, last_bias, score);
}

// Row r after a hidden layer: h = relu(acc + bias) (NaN kept), m . h, and either the next
// layer's bf16 parts or the last layer's fp32 dot product.
LINKEXIT_BF16_TARGET float epilogue_row(const float* acc, const float* bias, int64_t width,
                                        int64_t kpad_next, const float* m_next, uint16_t* hi,
                                        uint16_t* lo, const float* last, float last_bias,
                                        float* score) {
  __m512 mag = _mm512_setzero_ps(), dot = _mm512_setzero_ps();
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t j = 0; j < kpad_next; j += 16) {
    const __mmask16 k = tail_mask(j, width);
    // max(0, NaN) is the second operand, NaN: a NaN pre-activation reaches the score.
    const __m512 h = _mm512_max_ps(
        zero, _mm512_add_ps(_mm512_maskz_loadu_ps(k, acc + j), _mm512_maskz_loadu_ps(k, bias + j)));
    emit_slice(h, k, j, m_next, hi, lo, last, mag, dot);  // |h| = h: h is >= 0 or NaN
  }
  return finish_row(mag, dot, hi, last_bias, score);
}

// acc[kRows, npad] = hi W_hi^T (+ lo W_hi^T + hi W_lo^T) with vdpbf16ps: 8 rows x 32 columns
// of fp32 accumulators in 16 registers, one broadcast bf16 pair of the input per row.
LINKEXIT_BF16_TARGET void layer_avx512(const Scratch& s, const Layer& w, float* acc) {
  const uint16_t* inputs[3] = {s.hi.get(), s.lo.get(), s.hi.get()};
  const uint16_t* weights[3] = {w.w_hi.data(), w.w_hi.data(), w.w_lo.data()};
  const int parts = w.w_lo.empty() ? 1 : 3;
  for (int64_t r0 = 0; r0 < kRows; r0 += 8) {
    for (int64_t n0 = 0; n0 < w.npad; n0 += 32) {
      __m512 c[8][2];
      for (auto& row : c) row[0] = row[1] = _mm512_setzero_ps();
      for (int p = 0; p < parts; ++p) {
        const uint16_t* a = inputs[p] + r0 * s.ld_in;
        const uint16_t* b = weights[p] + n0 * 2;
        for (int64_t kp = 0; kp < w.kpad / 2; ++kp) {
          const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + kp * w.npad * 2);
          const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + kp * w.npad * 2 + 32);
          for (int r = 0; r < 8; ++r) {
            int32_t pair;
            std::memcpy(&pair, a + r * s.ld_in + 2 * kp, 4);
            const __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
            c[r][0] = _mm512_dpbf16_ps(c[r][0], x, b0);
            c[r][1] = _mm512_dpbf16_ps(c[r][1], x, b1);
          }
        }
      }
      for (int r = 0; r < 8; ++r) {
        _mm512_storeu_ps(acc + (r0 + r) * s.ld_out + n0, c[r][0]);
        _mm512_storeu_ps(acc + (r0 + r) * s.ld_out + n0 + 16, c[r][1]);
      }
    }
  }
}

// The same product on AMX: C tiles 0-3 hold the block's 2 x 2 tiles of 16 rows x 16 columns,
// tiles 4-5 the two row tiles of the input (16 x 32 bf16), 6-7 two column tiles of W^T.
LINKEXIT_AMX_TARGET void layer_amx(const Scratch& s, const Layer& w, float* acc) {
  const uint16_t* inputs[3] = {s.hi.get(), s.lo.get(), s.hi.get()};
  const uint16_t* weights[3] = {w.w_hi.data(), w.w_hi.data(), w.w_lo.data()};
  const int parts = w.w_lo.empty() ? 1 : 3;
  const int64_t a_stride = s.ld_in * 2, b_stride = w.npad * 4, c_stride = s.ld_out * 4;
  for (int64_t n0 = 0; n0 < w.npad; n0 += 32) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int p = 0; p < parts; ++p) {
      for (int64_t k0 = 0; k0 < w.kpad; k0 += 32) {
        const uint16_t* a = inputs[p] + k0;
        const uint16_t* b = weights[p] + (k0 / 2) * w.npad * 2 + n0 * 2;
        _tile_loadd(4, a, a_stride);
        _tile_loadd(5, a + 16 * s.ld_in, a_stride);
        _tile_loadd(6, b, b_stride);
        _tile_loadd(7, b + 32, b_stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
    _tile_stored(0, acc + n0, c_stride);
    _tile_stored(1, acc + n0 + 16, c_stride);
    _tile_stored(2, acc + 16 * s.ld_out + n0, c_stride);
    _tile_stored(3, acc + 16 * s.ld_out + n0 + 16, c_stride);
  }
}

struct alignas(64) TileConfig {
  uint8_t palette_id = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

LINKEXIT_AMX_TARGET void amx_begin() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  // GCC 12's ldtilecfg builtin does not tell the optimiser it reads cfg: without this barrier
  // the stores above are dropped and every tile stays unconfigured (#UD at the first tile op).
  __asm__ volatile("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}

LINKEXIT_AMX_TARGET void amx_end() { _tile_release(); }

inline bool in_range(int64_t value, int64_t size) {
  return static_cast<uint64_t>(value) < static_cast<uint64_t>(size);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> score_pairs_bf16_cpu(
    const at::Tensor& z, const at::Tensor& u, const at::Tensor& v, at::TensorList hidden,
    at::TensorList biases, const at::Tensor& last, at::TensorList bound_vectors,
    double bound_scale, double bound_const, c10::string_view isa_arg) {
  check_score_pairs_bf16_args(z, u, v, hidden, biases, last, bound_vectors);
  const std::string have = bf16_cpu_isa();
  const std::string isa = isa_arg == "auto" ? have : std::string(isa_arg);
  TORCH_CHECK(isa == "amx-bf16" || isa == "avx512-bf16", "score_pairs_bf16: isa must be 'auto', "
              "'amx-bf16' or 'avx512-bf16'; got '", isa_arg, "' (this CPU has: ", have, ")");
  TORCH_CHECK(have == isa || (isa == "avx512-bf16" && have == "amx-bf16"), "score_pairs_bf16: "
              "this CPU lacks ", isa, " (it has: ", have, ")");
  const bool amx = isa == "amx-bf16";

  const auto z_c = z.expect_contiguous(), u_c = u.expect_contiguous(), v_c = v.expect_contiguous();
  const int64_t num_pairs = u.numel(), n = z.size(0), m = z.size(1);
  at::Tensor scores = z.new_empty({num_pairs}), bound = z.new_empty({num_pairs});
  if (num_pairs == 0) return {scores, bound};

  const size_t num_hidden = hidden.size();
  std::vector<at::Tensor> keep;  // contiguous copies the raw pointers below point into
  auto ptr = [&keep](const at::Tensor& t) {
    keep.push_back(t.contiguous());
    return keep.back().data_ptr<float>();
  };
  std::vector<Layer> layers(num_hidden);
  int64_t width_in = round_up(m), width_out = kAlign;
  for (size_t l = 0; l < num_hidden; ++l) {
    const at::Tensor w = hidden[l].contiguous();
    Layer& layer = layers[l];
    layer.d_out = w.size(1);
    layer.d_in = w.size(2);
    layer.kpad = round_up(layer.d_in);
    layer.npad = round_up(layer.d_out);
    const at::BFloat16* w_p = w.data_ptr<at::BFloat16>();
    layer.w_hi = pack_vnni(w_p, layer.d_out, layer.d_in);
    if (w.size(0) == 2) layer.w_lo = pack_vnni(w_p + layer.d_out * layer.d_in, layer.d_out, layer.d_in);
    layer.bias = ptr(biases[l]);
    width_in = std::max(width_in, layer.npad);
    width_out = std::max(width_out, layer.npad);
  }
  std::vector<const float*> m_vec(num_hidden + 1);
  for (size_t l = 0; l <= num_hidden; ++l) m_vec[l] = ptr(bound_vectors[l]);
  const float* last_p = ptr(last);
  const float last_bias = *biases.back().data_ptr<float>();  // no aten::item: a plain CPU read
  const bool split = num_hidden && !layers[0].w_lo.empty();

  const float* z_p = z_c->data_ptr<float>();
  const int64_t* u_p = u_c->data_ptr<int64_t>();
  const int64_t* v_p = v_c->data_ptr<int64_t>();
  float* score_p = scores.data_ptr<float>();
  float* bound_p = bound.data_ptr<float>();
  const float scale = static_cast<float>(bound_scale), konst = static_cast<float>(bound_const);
  const int64_t num_blocks = (num_pairs + kRows - 1) / kRows;
  std::atomic<int64_t> bad_pair{-1};

#pragma omp parallel num_threads(at::get_num_threads())
  {
    Scratch s(width_in, width_out);
    if (amx && num_hidden) amx_begin();
    float mag[kRows];
#pragma omp for schedule(dynamic, kBlocksPerChunk)
    for (int64_t blk = 0; blk < num_blocks; ++blk) {
      const int64_t i0 = blk * kRows, rows = std::min(kRows, num_pairs - i0);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t a = u_p[i0 + r], b = v_p[i0 + r];
        if (!in_range(a, n) || !in_range(b, n)) {
          int64_t none = -1;
          bad_pair.compare_exchange_strong(none, i0 + r, std::memory_order_relaxed);
          mag[r] = 0.f;
          score_p[i0 + r] = 0.f;
          continue;
        }
        if (r + 1 < rows) {  // the next pair's rows: random rows of z come from L2/L3 or DRAM
          const int64_t na = u_p[i0 + r + 1], nb = v_p[i0 + r + 1];
          if (in_range(na, n) && in_range(nb, n)) {
            __builtin_prefetch(z_p + na * m);
            __builtin_prefetch(z_p + nb * m);
          }
        }
        mag[r] = gather_row(z_p + a * m, z_p + b * m, m, round_up(m), m_vec[0],
                            num_hidden ? s.hi.get() + r * s.ld_in : nullptr,
                            split ? s.lo.get() + r * s.ld_in : nullptr, last_p, last_bias,
                            score_p + i0 + r);
      }
      for (size_t l = 0; l < num_hidden; ++l) {
        const Layer& w = layers[l];
        if (amx) {
          layer_amx(s, w, s.acc.get());
        } else {
          layer_avx512(s, w, s.acc.get());
        }
        const bool more = l + 1 < num_hidden;
        const int64_t kpad_next = more ? layers[l + 1].kpad : w.npad;
        for (int64_t r = 0; r < rows; ++r) {
          mag[r] += epilogue_row(s.acc.get() + r * s.ld_out, w.bias, w.d_out, kpad_next,
                                 m_vec[l + 1], more ? s.hi.get() + r * s.ld_in : nullptr,
                                 more && split ? s.lo.get() + r * s.ld_in : nullptr, last_p,
                                 last_bias, score_p + i0 + r);
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const float bnd = konst + scale * mag[r];
        const bool finite = std::isfinite(bnd) && std::isfinite(score_p[i0 + r]);
        bound_p[i0 + r] = finite ? bnd : INFINITY;
      }
    }
    if (amx && num_hidden) amx_end();
  }
  const int64_t bad = bad_pair.load();
  if (bad >= 0) {
    const bool u_ok = in_range(u_p[bad], n);
    TORCH_CHECK(false, "score_pairs_bf16: ", u_ok ? "v[" : "u[", bad, "] = ",
                u_ok ? v_p[bad] : u_p[bad], " is out of range for z with ", n, " rows");
  }
  return {scores, bound};
}

std::string bf16_cpu_isa() {
  static const std::string isa = probe_isa();
  return isa;
}

#else  // not x86-64 with GCC / Clang: no bf16 kernel; the Python layer scores in fp32

std::string bf16_cpu_isa() { return "none"; }

#endif

}  // namespace ops
}  // namespace linkexit_fast
