#include "../exit_decision.h"
#include "../linear_act.h"

#include <ATen/Parallel.h>
#include <ATen/ops/mm_ops.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "target_clones.h"

namespace linkexit_fast {
namespace ops {
namespace {

// Rows per block: one first-layer GEMM and one epilogue region each. On the shared 2-core
// benchmark machine every GEMM call or fork/join can wait a scheduler time slice for a
// descheduled thread: 1M x 256 rows took 1.0 s with 16k-row blocks, 0.45 s with 64k,
// 0.37 s with 128k and 0.35 s with 256k (torch_ops: 0.53 s). 128k rows keep the block's
// [rows, hidden + 1] scratch at 17 MB.
constexpr int64_t kRowBlock = 131072;
// Rows per dynamically scheduled epilogue chunk.
constexpr int64_t kChunk = 512;

struct EpilogueArgs {
  const float* pre;  // [rows, ld]: h w1^T, then h w_nu in column `hidden`; no biases yet
  int64_t ld, hidden;
  const float* b1;  // [hidden]
  const float* w2;  // [2, hidden]
  const float* b2;  // [2]
  float b_nu, margin_bound, tau0;
  bool temperature;
  float* p_exit;
  bool* exit;
  float* step;
};

inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

// torch.nn.functional.softplus with its defaults (beta 1, threshold 20).
inline float softplus(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }

LINKEXIT_TARGET_CLONES
void exit_epilogue(const EpilogueArgs& a, int64_t i_begin, int64_t i_end) {
  const float* __restrict__ b1 = a.b1;
  const float* __restrict__ w_continue = a.w2;
  const float* __restrict__ w_exit = a.w2 + a.hidden;
  for (int64_t i = i_begin; i < i_end; ++i) {
    const float* __restrict__ pre = a.pre + i * a.ld;
    float l_continue = 0.f, l_exit = 0.f;
#pragma omp simd reduction(+ : l_continue, l_exit)
    for (int64_t j = 0; j < a.hidden; ++j) {
      const float r = std::max(pre[j] + b1[j], 0.f);  // keeps NaN, like torch.relu
      l_continue += r * w_continue[j];
      l_exit += r * w_exit[j];
    }
    const float diff = (l_exit + a.b2[1]) - (l_continue + a.b2[0]);
    a.p_exit[i] = sigmoid(diff);
    a.exit[i] = diff >= a.margin_bound;  // NaN never exits
    if (a.temperature) {
      const float nu = softplus(pre[a.hidden] + a.b_nu) + a.tau0;
      a.step[i] = sigmoid(-diff / (nu < 0.1f ? 0.1f : nu));  // NaN passes, like torch.clamp
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> exit_decision_cpu(
    const at::Tensor& h, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
    const at::Tensor& b2, double margin_bound, const std::optional<at::Tensor>& w_nu,
    const std::optional<at::Tensor>& b_nu, double tau0, const std::optional<at::Tensor>& rows) {
  check_exit_decision_args(h, w1, b1, w2, b2, w_nu, b_nu, rows);
  const bool temperature = w_nu.has_value();
  // With rows, the rows judged are h[rows], read where they are (the engine's judge reads a few
  // hundred rows of a larger h: a gather would write and read them once more).
  const at::Tensor ids_t = rows.has_value() ? rows->contiguous() : at::Tensor();
  const int64_t* ids = rows.has_value() ? ids_t.data_ptr<int64_t>() : nullptr;
  const int64_t n = rows.has_value() ? ids_t.numel() : h.size(0), hidden = w1.size(0);
  for (int64_t i = 0; ids != nullptr && i < n; ++i)
    TORCH_CHECK(ids[i] >= 0 && ids[i] < h.size(0), "exit_decision: rows[", i, "] = ", ids[i],
                " is out of range for h with ", h.size(0), " rows");
  at::Tensor p_exit = h.new_empty({n});
  at::Tensor exit = h.new_empty({n}, at::kBool);
  at::Tensor step = h.new_empty({temperature ? n : 0});
  if (n == 0) return {p_exit, exit, step};

  // The temperature head's projection rides along as one more output column of the
  // first-layer GEMM instead of a separate pass over h. Biases are added in the epilogue:
  // addmm would broadcast them in a parallel region of its own.
  at::Tensor w_first = w1.contiguous();
  if (temperature) {  // [w1; w_nu]
    w_first = w1.new_empty({w1.size(0) + 1, w1.size(1)});
    w_first.narrow(0, 0, w1.size(0)).copy_(w1);
    w_first.select(0, w1.size(0)).copy_(*w_nu);
  }
  const at::Tensor h_c = h.contiguous(), b1_c = b1.contiguous(), w2_c = w2.contiguous(), b2_c = b2.contiguous();
  const int64_t ld = w_first.size(0);
  const int64_t block = std::min(n, kRowBlock);
  at::Tensor pre = h.new_empty({block, ld});

  // Python floats become float32 scalars in torch's `diff >= bound` and `+ tau0`; margin_bound
  // is float32-representable (rounded up by the caller), so its cast is exact.
  EpilogueArgs args{pre.data_ptr<float>(), ld, hidden, b1_c.data_ptr<float>(),
                    w2_c.data_ptr<float>(), b2_c.data_ptr<float>(),
                    temperature ? *b_nu->data_ptr<float>() : 0.f, static_cast<float>(margin_bound),
                    static_cast<float>(tau0), temperature, nullptr, nullptr, nullptr};
  const int num_threads = at::get_num_threads();
  for (int64_t s = 0; s < n; s += block) {
    const int64_t count = std::min(block, n - s);
    at::Tensor pre_block = pre.narrow(0, 0, count);
    // linear_act's register tiles where the CPU has AVX2: on 43 to 1,922 rows of 256 against 32
    // outputs, 0.94x to 1.25x torch's mm on the benchmark machine, hot or cold; and the same bits
    // for a row whatever the batch (the engine's probe and its layer judge a row in different
    // batches).
    if (!linear_rows(h_c.data_ptr<float>() + (ids ? 0 : s * h_c.size(1)), count, h_c.size(1),
                     w_first.data_ptr<float>(), ld, nullptr, false, pre_block.data_ptr<float>(),
                     ids ? ids + s : nullptr))
      at::_ops::mm_out::call(ids ? h_c.index_select(0, ids_t.narrow(0, s, count)) : h_c.narrow(0, s, count),
                             w_first.t(), pre_block);
    args.p_exit = p_exit.data_ptr<float>() + s;
    args.exit = exit.data_ptr<bool>() + s;
    args.step = temperature ? step.data_ptr<float>() + s : nullptr;
    const int64_t chunks = (count + kChunk - 1) / kChunk;
    // One chunk runs on this thread: a fork/join for it can wait a time slice for a descheduled
    // worker (see kRowBlock), and a layer's exit heads often judge a few hundred rows.
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      exit_epilogue(args, c * kChunk, std::min(count, (c + 1) * kChunk));
    }
  }
  return {p_exit, exit, step};
}

}  // namespace ops
}  // namespace linkexit_fast
