#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <tuple>

namespace linkexit_fast {
namespace ops {

// HeaRT's MLP link scorer (score_pairs.h) with its hidden layers' products in bfloat16 and fp32
// accumulation, plus each pair's error-bound magnitude term (linkexit_fast/backends/bf16.py
// derives the bound and computes the arguments below).
//   z [n, m] float32; u, v [P] int64 in [0, n);
//   hidden[l] bfloat16 [t, d_{l+1}, d_l] for the L - 1 hidden layers, d_0 = m: t = 1 holds
//     W_l's bf16 rounding W_hi (one product per multiply-add), t = 2 holds W_hi and
//     W_lo = bf16(W_l - W_hi) (three: x_hi W_hi + x_lo W_hi + x_hi W_lo, x = x_hi + x_lo);
//   biases[l] float32 [d_{l+1}] for all L layers, the last [1];
//   last float32 [1, d_{L-1}]: the last layer, applied in fp32;
//   bound_vectors[l] float32 [d_l], non-negative: the magnitude weights m_l;
//   isa: "auto", "amx-bf16" or "avx512-bf16" (an ISA this CPU lacks raises).
// Returns (scores [P], bound [P]) float32: the logits, and
// bound_const + bound_scale * sum_l m_l . |h_l| with h_0 = z[u] * z[v] (fp32) and h_l the fp32
// hidden activations; inf where a score or the bound is not finite.
std::tuple<at::Tensor, at::Tensor> score_pairs_bf16(
    const at::Tensor& z, const at::Tensor& u, const at::Tensor& v, at::TensorList hidden,
    at::TensorList biases, const at::Tensor& last, at::TensorList bound_vectors,
    double bound_scale, double bound_const, c10::string_view isa);

// The bf16 hardware this CPU and OS offer: "amx-bf16" (AMX tiles; AVX512-BF16 comes with
// them), "avx512-bf16" (vdpbf16ps) or "none". Probed once, from cpuid, XCR0 and Linux's AMX
// permission request (arch_prctl ARCH_REQ_XCOMP_PERM).
std::string bf16_cpu_isa();

// Shape and dtype checks; the kernel calls them first.
void check_score_pairs_bf16_args(const at::Tensor& z, const at::Tensor& u, const at::Tensor& v,
                                 at::TensorList hidden, at::TensorList biases,
                                 const at::Tensor& last, at::TensorList bound_vectors);

// The CPU kernel (cpu/score_pairs_bf16_kernel.cpp, x86-64 only), registered for the CPU dispatch key
// by score_pairs_bf16.cpp.
decltype(score_pairs_bf16) score_pairs_bf16_cpu;

}  // namespace ops
}  // namespace linkexit_fast
