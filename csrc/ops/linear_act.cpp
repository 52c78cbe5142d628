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

namespace {
// Whether the memory of a and b overlaps (empty tensors overlap nothing).
bool overlaps(const at::Tensor& a, const at::Tensor& b) {
  const auto* pa = static_cast<const char*>(a.data_ptr());
  const auto* pb = static_cast<const char*>(b.data_ptr());
  return a.numel() != 0 && b.numel() != 0 && pa < pb + b.nbytes() && pb < pa + a.nbytes();
}
}  // namespace

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
  TORCH_CHECK(!overlaps(out, x), "linear_act: out must not overlap x");
}

at::Tensor& aggregate_linear_act(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
                                 const at::Tensor& h, const at::Tensor& rows,
                                 const std::optional<at::Tensor>& self_weight, const std::optional<at::Tensor>& cache,
                                 const at::Tensor& lin_weight, const std::optional<at::Tensor>& lin_bias, bool gelu,
                                 at::Tensor& out) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::aggregate_linear_act", "")
                       .typed<decltype(aggregate_linear_act)>();
  return op.call(rowptr, col, weight, h, rows, self_weight, cache, lin_weight, lin_bias, gelu, out);
}

void check_aggregate_linear_act_args(const at::Tensor& h, const at::Tensor& rows, const std::optional<at::Tensor>& cache,
                                     const at::Tensor& lin_weight, const std::optional<at::Tensor>& lin_bias,
                                     const at::Tensor& out) {
  at::CheckedFrom c = "aggregate_linear_act";
  at::TensorArg w_arg{lin_weight, "lin_weight", 8}, out_arg{out, "out", 11};
  at::checkAllDefined(c, {w_arg, out_arg});
  for (const at::TensorArg* a : {&w_arg, &out_arg}) {
    at::checkScalarType(c, *a, at::kFloat);
    at::checkDim(c, *a, 2);
    at::checkContiguous(c, *a);
  }
  at::checkSize(c, w_arg, 1, h.size(1));
  at::checkSize(c, out_arg, {rows.numel(), lin_weight.size(0)});
  if (lin_bias.has_value()) {
    at::TensorArg b_arg{*lin_bias, "lin_bias", 9};
    at::checkScalarType(c, b_arg, at::kFloat);
    at::checkContiguous(c, b_arg);
    at::checkSize(c, b_arg, {lin_weight.size(0)});
  }
  // out is written while h, cache and the weights are still read.
  TORCH_CHECK(!overlaps(out, h) && !(cache.has_value() && overlaps(out, *cache)) && !overlaps(out, lin_weight) &&
                  !(lin_bias.has_value() && overlaps(out, *lin_bias)),
              "aggregate_linear_act: out must not overlap h, cache, lin_weight or lin_bias");
}

TORCH_LIBRARY_FRAGMENT(linkexit_fast, m) {
  m.def("linear_act(Tensor x, Tensor weight, Tensor? bias, bool gelu, Tensor(a!) out) -> Tensor(a!)");
  m.def(
      "aggregate_linear_act(Tensor rowptr, Tensor col, Tensor weight, Tensor h, Tensor rows, Tensor? self_weight, "
      "Tensor? cache, Tensor lin_weight, Tensor? lin_bias, bool gelu, Tensor(a!) out) -> Tensor(a!)");
}

// The CPU kernels (cpu/linear_act_kernel.cpp), registered here so that its file need not include
// torch/library.h, several seconds of compile for each file that does.
TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("linear_act", TORCH_FN(linear_act_cpu));
  m.impl("aggregate_linear_act", TORCH_FN(aggregate_linear_act_cpu));
}

}  // namespace ops
}  // namespace linkexit_fast
