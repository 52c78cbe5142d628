#include "exit_decision.h"

#include <ATen/TensorUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace linkexit_fast {
namespace ops {

std::tuple<at::Tensor, at::Tensor, at::Tensor> exit_decision(
    const at::Tensor& h, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
    const at::Tensor& b2, double margin_bound, const std::optional<at::Tensor>& w_nu,
    const std::optional<at::Tensor>& b_nu, double tau0, const std::optional<at::Tensor>& rows) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::exit_decision", "")
                       .typed<decltype(exit_decision)>();
  return op.call(h, w1, b1, w2, b2, margin_bound, w_nu, b_nu, tau0, rows);
}

void check_exit_decision_args(const at::Tensor& h, const at::Tensor& w1, const at::Tensor& b1,
                              const at::Tensor& w2, const at::Tensor& b2,
                              const std::optional<at::Tensor>& w_nu,
                              const std::optional<at::Tensor>& b_nu, const std::optional<at::Tensor>& rows) {
  at::CheckedFrom c = "exit_decision";
  at::TensorArg h_arg{h, "h", 1}, w1_arg{w1, "w1", 2}, b1_arg{b1, "b1", 3}, w2_arg{w2, "w2", 4},
      b2_arg{b2, "b2", 5};
  at::checkAllDefined(c, {h_arg, w1_arg, b1_arg, w2_arg, b2_arg});
  at::checkScalarType(c, h_arg, at::kFloat);
  at::checkAllSameType(c, {h_arg, w1_arg, b1_arg, w2_arg, b2_arg});
  at::checkDim(c, h_arg, 2);
  at::checkDim(c, w1_arg, 2);
  at::checkDim(c, w2_arg, 2);
  const int64_t k = h.size(1), hidden = w1.size(0);
  at::checkSize(c, w1_arg, {hidden, k});
  at::checkSize(c, b1_arg, {hidden});
  at::checkSize(c, w2_arg, {2, hidden});
  at::checkSize(c, b2_arg, {2});
  TORCH_CHECK(w_nu.has_value() == b_nu.has_value(), "exit_decision: the temperature head needs "
              "both w_nu and b_nu; got ", w_nu.has_value() ? "w_nu only" : "b_nu only");
  if (w_nu.has_value()) {
    at::TensorArg w_nu_arg{*w_nu, "w_nu", 7}, b_nu_arg{*b_nu, "b_nu", 8};
    at::checkAllSameType(c, {h_arg, w_nu_arg, b_nu_arg});
    at::checkSize(c, w_nu_arg, {k});
    at::checkSize(c, b_nu_arg, {1});
  }
  if (rows.has_value()) {
    at::TensorArg rows_arg{*rows, "rows", 10};
    at::checkScalarType(c, rows_arg, at::kLong);
    at::checkDim(c, rows_arg, 1);
  }
}

TORCH_LIBRARY_FRAGMENT(linkexit_fast, m) {
  m.def(
      "exit_decision(Tensor h, Tensor w1, Tensor b1, Tensor w2, Tensor b2, float margin_bound, "
      "Tensor? w_nu=None, Tensor? b_nu=None, float tau0=0.0, Tensor? rows=None) -> (Tensor, Tensor, Tensor)");
}

// The CPU kernel (cpu/exit_decision_kernel.cpp), registered here so that its file need not include
// torch/library.h, several seconds of compile for each file that does.
TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("exit_decision", TORCH_FN(exit_decision_cpu));
}

}  // namespace ops
}  // namespace linkexit_fast
