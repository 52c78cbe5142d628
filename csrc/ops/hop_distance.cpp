#include "hop_distance.h"

#include "csr_checks.h"

#include <ATen/TensorUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>

namespace linkexit_fast {
namespace ops {

std::tuple<at::Tensor, at::Tensor> hop_distance(const at::Tensor& rowptr, const at::Tensor& col,
                                                const at::Tensor& sources, int64_t max_hops,
                                                const std::optional<at::Tensor>& passable,
                                                bool return_reached) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::hop_distance", "")
                       .typed<decltype(hop_distance)>();
  return op.call(rowptr, col, sources, max_hops, passable, return_reached);
}

void check_hop_distance_args(const at::Tensor& rowptr, const at::Tensor& col,
                             const at::Tensor& sources, int64_t max_hops,
                             const std::optional<at::Tensor>& passable) {
  at::CheckedFrom c = "hop_distance";
  at::TensorArg rowptr_arg{rowptr, "rowptr", 1}, col_arg{col, "col", 2},
      sources_arg{sources, "sources", 3};
  at::checkAllDefined(c, {rowptr_arg, col_arg, sources_arg});
  check_csr(c, rowptr_arg, col_arg);
  at::checkDim(c, sources_arg, 1);
  at::checkSameType(c, rowptr_arg, sources_arg);
  TORCH_CHECK(max_hops >= 0, "hop_distance: max_hops must be >= 0; got ", max_hops);
  TORCH_CHECK(rowptr.numel() - 1 < std::numeric_limits<int32_t>::max(),
              "hop_distance: at most 2^31 - 2 rows; got ", rowptr.numel() - 1);
  if (passable.has_value()) {
    at::TensorArg arg{*passable, "passable", 5};
    at::checkScalarType(c, arg, at::kBool);
    at::checkDim(c, arg, 1);
    at::checkSize(c, arg, {rowptr.numel() - 1});
  }
}

TORCH_LIBRARY_FRAGMENT(linkexit_fast, m) {
  m.def(
      "hop_distance(Tensor rowptr, Tensor col, Tensor sources, int max_hops, "
      "Tensor? passable=None, bool return_reached=False) -> (Tensor, Tensor)");
}

// The CPU kernel (cpu/hop_distance_kernel.cpp), registered here so that its file need not include
// torch/library.h, several seconds of compile for each file that does.
TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("hop_distance", TORCH_FN(hop_distance_cpu));
}

}  // namespace ops
}  // namespace linkexit_fast
