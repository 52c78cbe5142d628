#pragma once

#include <ATen/core/Tensor.h>

namespace linkexit_fast {
namespace ops {

// Row scatter (see linkexit_fast/engine/indexing.py, scatter_rows, and torch's index_copy_, its
// specification): dst[rows[i]] = src[i] for every i, in place. dst [R, m], src [k, m] (float32,
// contiguous), rows [k] (int64, values in [0, R), unique: with repeats, which row lands is
// unspecified, as for index_copy_). dst and src must not overlap. Returns dst.
at::Tensor& scatter_rows(at::Tensor& dst, const at::Tensor& rows, const at::Tensor& src);

// Shape and dtype checks, called first by every kernel. Row values are checked as they are read
// (one outside [0, R) raises after the pass, the rows in range written).
void check_scatter_rows_args(const at::Tensor& dst, const at::Tensor& rows, const at::Tensor& src);

// The CPU kernel (cpu/scatter_rows_kernel.cpp), registered for the CPU by scatter_rows.cpp.
decltype(scatter_rows) scatter_rows_cpu;

}  // namespace ops
}  // namespace linkexit_fast
