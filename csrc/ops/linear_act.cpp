#include "linear_act.h"

#include <ATen/TensorUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace linkexit_fast {
namespace ops {

at::Tensor& linear_act(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       bool gelu, at::Tensor& out) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::linear_act", "")
                       .typed<decltype(linear_act)>();
  return op.call(x, weight, bias, gelu, out);
}

void check_linear_act_args(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           const at::Tensor& out) {
  at::CheckedFrom c = "linear_act";
  at::TensorArg x_arg{x, "x", 1}, w_arg{weight, "weight", 2}, out_arg{out, "out", 5};
  at::checkAllDefined(c, {x_arg, w_arg, out_arg});
  for (const at::TensorArg* a : {&x_arg, &w_arg, &out_arg}) {
    at::checkScalarType(c, *a, at::kFloat);
    at::checkDim(c, *a, 2);
    at::checkContiguous(c, *a);
  }
  at::checkSize(c, w_arg, 1, x.size(1));
  at::checkSize(c, out_arg, {x.size(0), weight.size(0)});
  if (bias.has_value()) {
    at::TensorArg b_arg{*bias, "bias", 3};
    at::checkScalarType(c, b_arg, at::kFloat);
    at::checkContiguous(c, b_arg);
    at::checkSize(c, b_arg, {weight.size(0)});
  }
  // The kernel writes out while it reads x row block by row block: overlapping memory would
  // read values already overwritten.
  const auto* xb = static_cast<const char*>(x.data_ptr());
  const auto* ob = static_cast<const char*>(out.data_ptr());
  TORCH_CHECK(out.numel() == 0 || x.numel() == 0 || ob + out.nbytes() <= xb || xb + x.nbytes() <= ob,
              "linear_act: out must not overlap x");
}

TORCH_LIBRARY_FRAGMENT(linkexit_fast, m) {
  m.def("linear_act(Tensor x, Tensor weight, Tensor? bias, bool gelu, Tensor(a!) out) -> Tensor(a!)");
}

// The CPU kernel (cpu/linear_act_kernel.cpp), registered here so that its file need not include
// torch/library.h, several seconds of compile for each file that does.
TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("linear_act", TORCH_FN(linear_act_cpu));
}

}  // namespace ops
}  // namespace linkexit_fast
