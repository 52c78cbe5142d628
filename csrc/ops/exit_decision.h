#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace linkexit_fast {
namespace ops {

// Deterministic exit rule (see linkexit_fast/backends/torch_ops.py): with the confidence MLP
// logits l = relu(h w1^T + b1) w2^T + b2 over {CONTINUE, EXIT},
//   exit = l_1 - l_0 >= margin_bound,  p_exit = sigmoid(l_1 - l_0),
// decided on the float32 margin because the float32 sigmoid saturates. margin_bound is
// logit(threshold) rounded up to a float32 (+inf for threshold 1: no exits), computed by the
// caller (torch_ops.exit_margin_bound) so every backend compares with the same value;
// and with the temperature head (w_nu [k], b_nu [1]) the SAS step size
//   step = sigmoid((l_0 - l_1) / nu),  nu = max(softplus(h w_nu + b_nu) + tau0, 0.1).
// h [n, k], w1 [hidden, k], b1 [hidden], w2 [2, hidden], b2 [2], all float32. With rows (int64
// [n'], values in [0, n)), the rows judged are h[rows], read in place (no gather): n' of them.
// Returns (p_exit [n] float32, exit [n] bool, step [n] float32 or an empty tensor without
// the temperature head), n' long with rows.
std::tuple<at::Tensor, at::Tensor, at::Tensor> exit_decision(
    const at::Tensor& h, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
    const at::Tensor& b2, double margin_bound, const std::optional<at::Tensor>& w_nu,
    const std::optional<at::Tensor>& b_nu, double tau0, const std::optional<at::Tensor>& rows);

// Shape and dtype checks; every kernel calls them first (Python reaches the kernel through
// the dispatcher, not through `exit_decision` above).
void check_exit_decision_args(const at::Tensor& h, const at::Tensor& w1, const at::Tensor& b1,
                              const at::Tensor& w2, const at::Tensor& b2,
                              const std::optional<at::Tensor>& w_nu,
                              const std::optional<at::Tensor>& b_nu, const std::optional<at::Tensor>& rows);

// The CPU kernel (cpu/exit_decision_kernel.cpp), registered for the CPU by exit_decision.cpp.
decltype(exit_decision) exit_decision_cpu;

}  // namespace ops
}  // namespace linkexit_fast
