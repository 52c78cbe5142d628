#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace linkexit_fast {
namespace ops {

// Weighted CSR aggregation over a row subset (see linkexit_fast/backends/torch_ops.py):
//   out[i] = sum_{e in rowptr[r]..rowptr[r+1]} weight[e] * h[col[e]]
//            + self_weight[r] * h[r] + cache[r],   r = rows[i].
// rowptr [R+1], col [nnz] (int64); weight [nnz], h [n, m], self_weight [R], cache [R, m]
// (float32); rows [k] (int64, values in [0, R)). Returns out [k, m]. pass_cols: output columns
// per pass over the rows, a tuning knob that never changes the result (None: chosen by the
// kernel from h's size and the cache sizes).
at::Tensor aggregate_rows(const at::Tensor& rowptr, const at::Tensor& col,
                          const at::Tensor& weight, const at::Tensor& h,
                          const at::Tensor& rows,
                          const std::optional<at::Tensor>& self_weight,
                          const std::optional<at::Tensor>& cache,
                          std::optional<int64_t> pass_cols);

// Shape and dtype checks. Every kernel calls them first: Python reaches the kernel through
// the dispatcher without passing through `aggregate_rows` above. Index values (`rows`, and
// `rowptr` and `col` where the selected rows touch them) are checked by the kernel in the
// pass that reads them, and raise after it.
void check_aggregate_rows_args(const at::Tensor& rowptr, const at::Tensor& col,
                               const at::Tensor& weight, const at::Tensor& h,
                               const at::Tensor& rows,
                               const std::optional<at::Tensor>& self_weight,
                               const std::optional<at::Tensor>& cache,
                               std::optional<int64_t> pass_cols);

// The CPU kernel (cpu/aggregate_rows_kernel.cpp), registered for the CPU by aggregate_rows.cpp.
decltype(aggregate_rows) aggregate_rows_cpu;

}  // namespace ops
}  // namespace linkexit_fast
