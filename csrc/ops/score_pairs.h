#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/TensorUtils.h>

#include <optional>

namespace linkexit_fast {
namespace ops {

// HeaRT's MLP link scorer on gathered pairs (see linkexit_fast/backends/torch_ops.py):
// x = z[u] * z[v], then Linear + ReLU for every layer but the last, which maps to one logit.
// z [n, m] float32; u, v [P] int64 in [0, n); weights[i] [out_i, in_i] (nn.Linear layout) with
// in_0 = m and out_last = 1; biases[i] [out_i]. `block` pairs are processed at a time
// (nullopt: the kernel's tuned default). Returns logits [P].
at::Tensor score_pairs(const at::Tensor& z, const at::Tensor& u, const at::Tensor& v,
                       at::TensorList weights, at::TensorList biases,
                       std::optional<int64_t> block);

// The checks every pair scorer makes of its gathered inputs: z [n, m] float32, u and v [P] int64
// (op names the scorer in the messages).
void check_pair_inputs(at::CheckedFrom op, const at::Tensor& z, const at::Tensor& u,
                       const at::Tensor& v);

// Shape and dtype checks; every kernel calls them first (Python reaches the kernel through
// the dispatcher, not through `score_pairs` above). The kernel checks the values of u and v
// in the pass that gathers them, and raises after it.
void check_score_pairs_args(const at::Tensor& z, const at::Tensor& u, const at::Tensor& v,
                            at::TensorList weights, at::TensorList biases,
                            std::optional<int64_t> block);

// The CPU kernel (cpu/score_pairs_kernel.cpp), registered for the CPU by score_pairs.cpp.
decltype(score_pairs) score_pairs_cpu;

}  // namespace ops
}  // namespace linkexit_fast
