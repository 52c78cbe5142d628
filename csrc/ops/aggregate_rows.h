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

// The CPU kernel's rows a block at a time, for kernels that fuse the aggregation with what follows
// (aggregate_linear_act): the inputs as aggregate_rows takes them, checked by the caller with
// check_aggregate_rows_args and contiguous, alive while the object is used.
class AggregateBlocks {
 public:
  AggregateBlocks(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight, const at::Tensor& h,
                  const at::Tensor& rows, const std::optional<at::Tensor>& self_weight,
                  const std::optional<at::Tensor>& cache);
  // Output rows [i_begin, i_end) into out ([i_end - i_begin, m], row-major), every column in one
  // pass, each row's indices checked first, the gathered rows prefetched. False when a row has an
  // index out of range (such rows are left unwritten). Raises nothing (it runs on OpenMP
  // workers): aggregate_rows_cpu on the same inputs raises the op's error.
  bool run(int64_t i_begin, int64_t i_end, float* out) const;

 private:
  const int64_t *rowptr_, *col_, *rows_;
  const float *weight_, *h_, *self_weight_, *cache_;
  int64_t num_rows_, n_, m_, nnz_;
};

}  // namespace ops
}  // namespace linkexit_fast
