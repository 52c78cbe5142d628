#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace linkexit_fast {
namespace ops {

// One layer's exit bookkeeping of the engine under freeze, in one pass (see
// linkexit_fast/engine/run.py, _Run.run, whose torch path is the specification it is tested
// against). rows [k] (int64, unique, in [0, R)): the rows judged at `layer`, none exited yet;
// flag [k] (bool): their exit decisions; forced [R] (bool, or none): rows that exit at this layer
// whatever their decision (the probe's). exited [R] (bool) and exit_layer [R] (int64) are updated
// in place: rows[i] is marked exited at `layer` where flag[i] or forced[rows[i]] holds (the other
// rows, not exited, keep their entries). Returns (open [e'], stay [k']): the entries of open_ends
// [e] (int64, in [0, R)) not exited afterwards, and the rows of `rows` that did not exit, both in
// their given order. Index values are checked before anything is written.
std::tuple<at::Tensor, at::Tensor> exit_update(const at::Tensor& rows, const at::Tensor& flag,
                                               const std::optional<at::Tensor>& forced, at::Tensor& exited,
                                               at::Tensor& exit_layer, const at::Tensor& open_ends, int64_t layer);

// The rows a layer judges and updates (the engine's live_rows, linkexit_fast/engine/run.py; its
// torch path, nonzero of `(dist <= bound) & ~exited`, is the specification): the i in [0, R) with
// dist[i] <= bound (dist [R], int64) and, when exited [R] (bool) is given, !exited[i], in
// increasing order, as int64 [k]. One pass, where the torch path takes four ops.
at::Tensor live_rows(const at::Tensor& dist, int64_t bound, const std::optional<at::Tensor>& exited);

// Shape and dtype checks, called first by every kernel.
void check_live_rows_args(const at::Tensor& dist, const std::optional<at::Tensor>& exited);

// Shape and dtype checks, called first by every kernel.
void check_exit_update_args(const at::Tensor& rows, const at::Tensor& flag, const std::optional<at::Tensor>& forced,
                            const at::Tensor& exited, const at::Tensor& exit_layer, const at::Tensor& open_ends);

// The CPU kernels (cpu/exit_update_kernel.cpp), registered for the CPU by exit_update.cpp.
decltype(exit_update) exit_update_cpu;
decltype(live_rows) live_rows_cpu;

}  // namespace ops
}  // namespace linkexit_fast
