#include "exit_update.h"

#include <ATen/TensorUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace linkexit_fast {
namespace ops {

std::tuple<at::Tensor, at::Tensor> exit_update(const at::Tensor& rows, const at::Tensor& flag,
                                               const std::optional<at::Tensor>& forced, at::Tensor& exited,
                                               at::Tensor& exit_layer, const at::Tensor& open_ends, int64_t layer) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::exit_update", "")
                       .typed<decltype(exit_update)>();
  return op.call(rows, flag, forced, exited, exit_layer, open_ends, layer);
}

at::Tensor live_rows(const at::Tensor& dist, int64_t bound, const std::optional<at::Tensor>& exited) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("linkexit_fast::live_rows", "")
                       .typed<decltype(live_rows)>();
  return op.call(dist, bound, exited);
}

void check_live_rows_args(const at::Tensor& dist, const std::optional<at::Tensor>& exited) {
  at::CheckedFrom c = "live_rows";
  at::TensorArg dist_arg{dist, "dist", 1};
  at::checkAllDefined(c, {dist_arg});
  at::checkScalarType(c, dist_arg, at::kLong);
  at::checkDim(c, dist_arg, 1);
  at::checkContiguous(c, dist_arg);
  if (exited.has_value()) {
    at::TensorArg exited_arg{*exited, "exited", 3};
    at::checkScalarType(c, exited_arg, at::kBool);
    at::checkContiguous(c, exited_arg);
    at::checkSize(c, exited_arg, {dist.size(0)});
  }
}

void check_exit_update_args(const at::Tensor& rows, const at::Tensor& flag, const std::optional<at::Tensor>& forced,
                            const at::Tensor& exited, const at::Tensor& exit_layer, const at::Tensor& open_ends) {
  at::CheckedFrom c = "exit_update";
  at::TensorArg rows_arg{rows, "rows", 1}, flag_arg{flag, "flag", 2}, exited_arg{exited, "exited", 4},
      layer_arg{exit_layer, "exit_layer", 5}, open_arg{open_ends, "open_ends", 6};
  at::checkAllDefined(c, {rows_arg, flag_arg, exited_arg, layer_arg, open_arg});
  at::checkScalarType(c, rows_arg, at::kLong);
  at::checkScalarType(c, flag_arg, at::kBool);
  at::checkScalarType(c, exited_arg, at::kBool);
  at::checkScalarType(c, layer_arg, at::kLong);
  at::checkScalarType(c, open_arg, at::kLong);
  for (const at::TensorArg* a : {&rows_arg, &flag_arg, &exited_arg, &layer_arg, &open_arg}) {
    at::checkDim(c, *a, 1);
    at::checkContiguous(c, *a);
  }
  at::checkSize(c, flag_arg, {rows.size(0)});
  at::checkSize(c, layer_arg, {exited.size(0)});
  if (forced.has_value()) {
    at::TensorArg forced_arg{*forced, "forced", 3};
    at::checkScalarType(c, forced_arg, at::kBool);
    at::checkContiguous(c, forced_arg);
    at::checkSize(c, forced_arg, {exited.size(0)});
  }
}

TORCH_LIBRARY_FRAGMENT(linkexit_fast, m) {
  m.def("exit_update(Tensor rows, Tensor flag, Tensor? forced, Tensor(a!) exited, Tensor(b!) exit_layer, "
        "Tensor open_ends, int layer) -> (Tensor, Tensor)");
  m.def("live_rows(Tensor dist, int bound, Tensor? exited=None) -> Tensor");
}

// The CPU kernels (cpu/exit_update_kernel.cpp), registered here so that its file need not include
// torch/library.h, several seconds of compile for each file that does.
TORCH_LIBRARY_IMPL(linkexit_fast, CPU, m) {
  m.impl("exit_update", TORCH_FN(exit_update_cpu));
  m.impl("live_rows", TORCH_FN(live_rows_cpu));
}

}  // namespace ops
}  // namespace linkexit_fast
