#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace linkexit_fast {
namespace ops {

// A GNN layer's transform, written once: out = act(x W^T + b), act = GELU in its erf form
// (x Phi(x), to within 3e-7 |x|) when `gelu`, else the identity. x [k, K], weight [N, K] (nn.Linear's
// layout), bias [N] or none, out [k, N], all float32, contiguous, on the CPU; out must not
// overlap x. Its specification is torch's F.gelu(F.linear(x, weight, bias)) (see
// linkexit_fast/backends/cpu.py, linear_act). Returns out.
at::Tensor& linear_act(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       bool gelu, at::Tensor& out);

// Shape, dtype and layout checks, called first by every kernel.
void check_linear_act_args(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           const at::Tensor& out);

// The CPU kernel (cpu/linear_act_kernel.cpp), registered for the CPU by linear_act.cpp.
decltype(linear_act) linear_act_cpu;

// Its tiles on raw pointers, for other CPU kernels' products (exit_decision's first layer):
// out [rows, n] = act(x [rows, k] W^T + b), W [n, k] and x, out row-major, bias nullable, out not
// overlapping x. Returns false, writing nothing, on a CPU without AVX2 and FMA: the caller then
// runs torch's GEMM.
bool linear_rows(const float* x, int64_t rows, int64_t k, const float* w, int64_t n, const float* bias,
                 bool gelu, float* out);

}  // namespace ops
}  // namespace linkexit_fast
