#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

namespace linkexit_fast {
namespace ops {

// A GNN layer's transform, written once: out = act(x W^T + b), act = GELU in its erf form
// (x Phi(x), to within 3e-7 |x|) when `gelu`, else the identity. x [k, K], weight [N, K] (nn.Linear's
// layout), bias [N] or none, out [k, N], all float32, contiguous, on the CPU; out must not
// overlap x. Its specification is torch's F.gelu(F.linear(x, weight, bias)) (see
// linkexit_fast/backends/cpu.py, linear_act). Returns out.
at::Tensor& linear_act(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       bool gelu, at::Tensor& out);

// Shape, dtype and layout checks, called first by every kernel.
void check_linear_act_args(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           const at::Tensor& out);

// The CPU kernel (cpu/linear_act_kernel.cpp), registered for the CPU by linear_act.cpp.
decltype(linear_act) linear_act_cpu;

// Its tiles on raw pointers, for other CPU kernels' products (exit_decision's first layer):
// out [rows, n] = act(x [rows, k] W^T + b), W [n, k] and x, out row-major, bias nullable, out not
// overlapping x; with ids (nullable), the rows of x are x's rows ids[0..rows), read in place.
// Returns false, writing nothing, on a CPU without AVX2 and FMA: the caller then runs torch's GEMM.
bool linear_rows(const float* x, int64_t rows, int64_t k, const float* w, int64_t n, const float* bias,
                 bool gelu, float* out, const int64_t* ids = nullptr);

// linear_rows in two steps, for kernels that make x a block of rows at a time
// (aggregate_linear_act): the weights packed once, then blocks of rows on any thread.
class LinearTiles {
 public:
  // Packs weight [n, k] and bias [n] (nullable) in the calling thread's kept buffer (valid until
  // that thread packs again) or, above 4 MB, in one of this object's. False, packing nothing, on
  // a CPU without AVX2 and FMA.
  bool pack(const float* w, int64_t n, int64_t k, const float* bias);
  // out [rows, n] = act(x [rows, k] W^T + b), x and out row-major and not overlapping; with ids
  // (nullable), x's rows ids[0..rows) instead of its first rows.
  void rows(const float* x, int64_t rows, float* out, bool gelu, const int64_t* ids = nullptr) const;
  // Rows per parallel task: 16 kB of x (64 rows at k = 64, 12 at k = 256).
  int64_t task_rows() const;

 private:
  std::vector<float> fresh_;
  const float* wpack_ = nullptr;
  const float* bpad_ = nullptr;
  int64_t n_ = 0, k_ = 0;
};

// A layer's aggregation and transform in one pass over its rows: out = act(A W^T + b) with
// A = aggregate_rows(rowptr, col, weight, h, rows, self_weight, cache) (see aggregate_rows.h), each
// block of A made in cache and never written out. lin_weight [N, m] (m = h's width), lin_bias [N]
// or none, out [k, N]: float32, contiguous; out must not overlap h, cache or the weights. The
// result is the same bits as linear_act on aggregate_rows' output (which is the specification:
// see linkexit_fast/backends/cpu.py, aggregate_linear_act). Index values are checked as
// aggregate_rows checks them, and raise its errors. Returns out.
at::Tensor& aggregate_linear_act(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
                                 const at::Tensor& h, const at::Tensor& rows,
                                 const std::optional<at::Tensor>& self_weight, const std::optional<at::Tensor>& cache,
                                 const at::Tensor& lin_weight, const std::optional<at::Tensor>& lin_bias, bool gelu,
                                 at::Tensor& out);

// Its checks beyond aggregate_rows' (check_aggregate_rows_args), called first by every kernel.
void check_aggregate_linear_act_args(const at::Tensor& h, const at::Tensor& rows, const std::optional<at::Tensor>& cache,
                                     const at::Tensor& lin_weight, const std::optional<at::Tensor>& lin_bias,
                                     const at::Tensor& out);

// The CPU kernel (cpu/linear_act_kernel.cpp), registered for the CPU by linear_act.cpp.
decltype(aggregate_linear_act) aggregate_linear_act_cpu;

}  // namespace ops
}  // namespace linkexit_fast
