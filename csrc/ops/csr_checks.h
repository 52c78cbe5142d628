#pragma once

#include <ATen/TensorUtils.h>

namespace linkexit_fast {
namespace ops {

// The CSR contract every graph op shares: rowptr and col are 1-D int64, and rowptr holds R + 1 >= 1
// offsets. Ops add their own checks (other index tensors, features) on top.
inline void check_csr(at::CheckedFrom c, const at::TensorArg& rowptr_arg, const at::TensorArg& col_arg) {
  at::checkDim(c, rowptr_arg, 1);
  at::checkDim(c, col_arg, 1);
  at::checkScalarType(c, rowptr_arg, at::kLong);
  at::checkSameType(c, rowptr_arg, col_arg);
  TORCH_CHECK(rowptr_arg->numel() >= 1, c, ": rowptr must hold R + 1 >= 1 offsets; got an empty tensor");
}

}  // namespace ops
}  // namespace linkexit_fast
