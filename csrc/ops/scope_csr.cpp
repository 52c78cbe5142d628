#include "scope_csr.h"

#include "csr_checks.h"

#include <ATen/TensorUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>

namespace linkexit_fast {
namespace ops {

ScopeTensors scope_csr(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& ends, int64_t hops,
                       double max_fraction, const std::optional<at::Tensor>& exiting,
                       const std::optional<at::Tensor>& dinv, const std::optional<at::Tensor>& deg,
                       const std::optional<at::Tensor>& self_loop_weight) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::scope_csr", "")
                       .typed<decltype(scope_csr)>();
  return op.call(rowptr, col, ends, hops, max_fraction, exiting, dinv, deg, self_loop_weight);
}

void check_scope_csr_args(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& ends, int64_t hops,
                          double max_fraction, const std::optional<at::Tensor>& exiting,
                          const std::optional<at::Tensor>& dinv, const std::optional<at::Tensor>& deg,
                          const std::optional<at::Tensor>& self_loop_weight) {
  at::CheckedFrom c = "scope_csr";
  at::TensorArg rowptr_arg{rowptr, "rowptr", 1}, col_arg{col, "col", 2}, ends_arg{ends, "ends", 3};
  at::checkAllDefined(c, {rowptr_arg, col_arg, ends_arg});
  check_csr(c, rowptr_arg, col_arg);
  at::checkDim(c, ends_arg, 1);
  at::checkSameType(c, rowptr_arg, ends_arg);
  if (exiting.has_value()) {
    at::TensorArg exiting_arg{*exiting, "exiting", 6};
    at::checkScalarType(c, exiting_arg, at::kBool);
    at::checkContiguous(c, exiting_arg);
    at::checkSize(c, exiting_arg, {ends.numel()});
  }
  const int64_t rows = rowptr.numel() - 1;
  auto check_per_row = [&](const std::optional<at::Tensor>& t, const char* name, int pos, at::ScalarType type) {
    if (!t.has_value()) return;
    at::TensorArg arg{*t, name, pos};
    at::checkScalarType(c, arg, type);
    at::checkContiguous(c, arg);
    at::checkSize(c, arg, {rows});
  };
  check_per_row(dinv, "dinv", 7, at::kFloat);
  check_per_row(deg, "deg", 8, at::kLong);
  check_per_row(self_loop_weight, "self_loop_weight", 9, at::kFloat);
  TORCH_CHECK(hops >= 0, "scope_csr: hops must be >= 0; got ", hops);
  TORCH_CHECK(max_fraction >= 0.0 && max_fraction <= 1.0, "scope_csr: max_fraction must be in [0, 1]; got ",
              max_fraction);
  TORCH_CHECK(rows < std::numeric_limits<int32_t>::max(), "scope_csr: at most 2^31 - 2 rows; got ", rows);
}

TORCH_LIBRARY_FRAGMENT(linkexit_fast, m) {
  m.def("scope_csr(Tensor rowptr, Tensor col, Tensor ends, int hops, float max_fraction, Tensor? exiting=None, "
        "Tensor? dinv=None, Tensor? deg=None, Tensor? self_loop_weight=None) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

// The CPU kernel (cpu/scope_csr_kernel.cpp), registered here so that its file need not include
// torch/library.h, several seconds of compile for each file that does.
TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("scope_csr", TORCH_FN(scope_csr_cpu));
}

}  // namespace ops
}  // namespace linkexit_fast
