#include "scatter_rows.h"

#include <ATen/TensorUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace linkexit_fast {
namespace ops {

at::Tensor& scatter_rows(at::Tensor& dst, const at::Tensor& rows, const at::Tensor& src) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::scatter_rows", "")
                       .typed<decltype(scatter_rows)>();
  return op.call(dst, rows, src);
}

void check_scatter_rows_args(const at::Tensor& dst, const at::Tensor& rows, const at::Tensor& src) {
  at::CheckedFrom c = "scatter_rows";
  at::TensorArg dst_arg{dst, "dst", 1}, rows_arg{rows, "rows", 2}, src_arg{src, "src", 3};
  at::checkAllDefined(c, {dst_arg, rows_arg, src_arg});
  at::checkScalarType(c, dst_arg, at::kFloat);
  at::checkScalarType(c, src_arg, at::kFloat);
  at::checkScalarType(c, rows_arg, at::kLong);
  at::checkDim(c, dst_arg, 2);
  at::checkDim(c, src_arg, 2);
  at::checkDim(c, rows_arg, 1);
  at::checkContiguous(c, dst_arg);
  at::checkContiguous(c, src_arg);
  at::checkContiguous(c, rows_arg);
  at::checkSize(c, src_arg, {rows.size(0), dst.size(1)});
}

TORCH_LIBRARY_FRAGMENT(linkexit_fast, m) {
  m.def("scatter_rows(Tensor(a!) dst, Tensor rows, Tensor src) -> Tensor(a!)");
}

// The CPU kernel (cpu/scatter_rows_kernel.cpp), registered here so that its file need not include
// torch/library.h, several seconds of compile for each file that does.
TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("scatter_rows", TORCH_FN(scatter_rows_cpu));
}

}  // namespace ops
}  // namespace linkexit_fast
