#include "aggregate_rows.h"

#include "csr_checks.h"

#include <ATen/TensorUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace linkexit_fast {
namespace ops {

at::Tensor aggregate_rows(const at::Tensor& rowptr, const at::Tensor& col,
                          const at::Tensor& weight, const at::Tensor& h,
                          const at::Tensor& rows,
                          const std::optional<at::Tensor>& self_weight,
                          const std::optional<at::Tensor>& cache,
                          std::optional<int64_t> pass_cols) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::aggregate_rows", "")
                       .typed<decltype(aggregate_rows)>();
  return op.call(rowptr, col, weight, h, rows, self_weight, cache, pass_cols);
}

void check_aggregate_rows_args(const at::Tensor& rowptr, const at::Tensor& col,
                               const at::Tensor& weight, const at::Tensor& h,
                               const at::Tensor& rows,
                               const std::optional<at::Tensor>& self_weight,
                               const std::optional<at::Tensor>& cache,
                               std::optional<int64_t> pass_cols) {
  at::CheckedFrom c = "aggregate_rows";
  at::TensorArg rowptr_arg{rowptr, "rowptr", 1}, col_arg{col, "col", 2},
      weight_arg{weight, "weight", 3}, h_arg{h, "h", 4}, rows_arg{rows, "rows", 5};
  at::checkAllDefined(c, {rowptr_arg, col_arg, weight_arg, h_arg, rows_arg});
  check_csr(c, rowptr_arg, col_arg);
  at::checkDim(c, weight_arg, 1);
  at::checkDim(c, h_arg, 2);
  at::checkDim(c, rows_arg, 1);
  at::checkSameType(c, rowptr_arg, rows_arg);
  at::checkScalarType(c, h_arg, at::kFloat);
  at::checkSameType(c, h_arg, weight_arg);
  at::checkSameNumel(c, col_arg, weight_arg);

  const int64_t num_rows = rowptr.numel() - 1, m = h.size(1);
  if (self_weight.has_value()) {
    at::TensorArg arg{*self_weight, "self_weight", 6};
    at::checkSameType(c, h_arg, arg);
    at::checkDim(c, arg, 1);
    at::checkSize(c, arg, {num_rows});
  }
  if (cache.has_value()) {
    at::TensorArg arg{*cache, "cache", 7};
    at::checkSameType(c, h_arg, arg);
    at::checkDim(c, arg, 2);
    at::checkSize(c, arg, {num_rows, m});
  }
  TORCH_CHECK(!pass_cols.has_value() || *pass_cols >= 1,
              "aggregate_rows: pass_cols must be >= 1 (or None); got ", pass_cols.value_or(0));
}

TORCH_LIBRARY_FRAGMENT(linkexit_fast, m) {
  m.def(
      "aggregate_rows(Tensor rowptr, Tensor col, Tensor weight, Tensor h, Tensor rows, "
      "Tensor? self_weight=None, Tensor? cache=None, int? pass_cols=None) -> Tensor");
}

// The CPU kernel (cpu/aggregate_rows_kernel.cpp), registered here so that its file need not include
// torch/library.h, several seconds of compile for each file that does.
TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("aggregate_rows", TORCH_FN(aggregate_rows_cpu));
}

}  // namespace ops
}  // namespace linkexit_fast
