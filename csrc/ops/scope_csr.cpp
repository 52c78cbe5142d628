#include "scope_csr.h"

#include "csr_checks.h"

#include <ATen/TensorUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>

namespace linkexit_fast {
namespace ops {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> scope_csr(const at::Tensor& rowptr,
                                                                     const at::Tensor& col,
                                                                     const at::Tensor& ends,
                                                                     int64_t hops, double max_fraction,
                                                                     const std::optional<at::Tensor>& boundary) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::scope_csr", "")
                       .typed<decltype(scope_csr)>();
  return op.call(rowptr, col, ends, hops, max_fraction, boundary);
}

void check_scope_csr_args(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& ends,
                          int64_t hops, double max_fraction, const std::optional<at::Tensor>& boundary) {
  at::CheckedFrom c = "scope_csr";
  at::TensorArg rowptr_arg{rowptr, "rowptr", 1}, col_arg{col, "col", 2}, ends_arg{ends, "ends", 3};
  at::checkAllDefined(c, {rowptr_arg, col_arg, ends_arg});
  check_csr(c, rowptr_arg, col_arg);
  at::checkDim(c, ends_arg, 1);
  at::checkSameType(c, rowptr_arg, ends_arg);
  if (boundary.has_value()) {
    at::TensorArg boundary_arg{*boundary, "boundary", 6};
    at::checkDim(c, boundary_arg, 1);
    at::checkSameType(c, rowptr_arg, boundary_arg);
  }
  TORCH_CHECK(hops >= 0, "scope_csr: hops must be >= 0; got ", hops);
  TORCH_CHECK(max_fraction >= 0.0 && max_fraction <= 1.0, "scope_csr: max_fraction must be in [0, 1]; got ",
              max_fraction);
  TORCH_CHECK(rowptr.numel() - 1 < std::numeric_limits<int32_t>::max(),
              "scope_csr: at most 2^31 - 2 rows; got ", rowptr.numel() - 1);
}

TORCH_LIBRARY_FRAGMENT(linkexit_fast, m) {
  m.def("scope_csr(Tensor rowptr, Tensor col, Tensor ends, int hops, float max_fraction, Tensor? boundary=None) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

// The CPU kernel (cpu/scope_csr_kernel.cpp), registered here so that its file need not include
// torch/library.h, several seconds of compile for each file that does.
TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("scope_csr", TORCH_FN(scope_csr_cpu));
}

}  // namespace ops
}  // namespace linkexit_fast
