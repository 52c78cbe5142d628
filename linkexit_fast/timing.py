"""Wall-clock medians, and torch ops and host syncs per call: the measuring helpers of the CLI,
the Pareto sweep, the benchmarks and the tests."""
from __future__ import annotations

import collections
import os
import platform
import random
import statistics
import time
from typing import Any, Callable, Counter, Dict, List, Mapping, Sequence, Tuple

import torch
from torch.overrides import TorchFunctionMode

# Aten ops that touch no data (views, reshapes, dtype no-ops, scalar reads): not counted as ops.
NO_DATA_OPS = {"aten::view", "aten::reshape", "aten::squeeze", "aten::unsqueeze", "aten::to",
               "aten::lift_fresh", "aten::select", "aten::slice", "aten::flatten", "aten::contiguous",
               "aten::as_strided", "aten::detach", "aten::t", "aten::alias", "aten::empty",
               "aten::item", "aten::numpy_T", "aten::narrow", "aten::expand", "aten::_local_scalar_dense"}
# Device-to-host reads: nonzero (boolean-mask indexing included) and int(t) / bool(t) / t.item().
SYNC_OPS = {"aten::nonzero", "aten::_local_scalar_dense"}


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (machines here are sometimes an Intel Xeon,
    sometimes an AMD EPYC: "x86_64" does not tell them apart), else the platform's word for it."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine_label() -> str:
    """What a benchmark ran on, for its results file: CPU model, cores, torch, threads, load."""
    return (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")


class _CountToList(TorchFunctionMode):
    """Counts ``Tensor.tolist`` calls: a device-to-host copy on a GPU, no aten op on the CPU."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += func is torch.Tensor.tolist
        return func(*args, **(kwargs or {}))


def ops_and_syncs(fn: Callable[[], Any]) -> Tuple[Counter, int]:
    """One call of ``fn`` under torch.profiler: its top-level aten ops that touch data, by name
    (a backend's own op counts once, whatever it calls inside), and its device-to-host reads
    (:data:`SYNC_OPS` at any depth, plus ``Tensor.tolist`` calls). On a GPU each op is at least one
    kernel launch and each read stalls the host until the device drains."""
    with torch.profiler.profile() as prof, _CountToList() as tolist:
        fn()
    events = prof.events()
    ops = collections.Counter(e.name for e in events if e.cpu_parent is None and e.name not in NO_DATA_OPS)
    return ops, sum(e.name in SYNC_OPS for e in events) + tolist.calls


def median_time(fn: Callable[[], Any], repeats: int = 3) -> Tuple[float, Any]:
    """Median wall-clock seconds of ``repeats`` calls of ``fn`` (machines here are shared and
    noisy, so a median, not a mean), and the last call's result."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def round_order(names: Sequence[str], r: int) -> List[str]:
    """The order of timing round ``r``: a permutation of ``names`` drawn from a generator seeded
    with ``r`` (the same schedule in every run). Each variant then follows a different one from
    round to round. Rotating a fixed order, as these helpers once did, keeps the cyclic order, so
    every variant always followed the same predecessor and inherited its cache and allocator
    state: on the 5,000-node, 100-pair planner cell that put ``auto`` 8-12 % behind the
    identical engine path in 41 rounds, and level with it once the order was shuffled."""
    order = list(names)
    random.Random(r).shuffle(order)
    return order


def interleaved_times(fns: Mapping[str, Callable[[], Any]], rounds: int,
                      warmup: bool = True) -> Dict[str, List[float]]:
    """Wall-clock seconds of each callable in each of ``rounds`` rounds of one call each, in the
    order :func:`round_order` gives, so that the shared machine's drifting speed hits every variant
    alike and no variant always follows the same one. With ``warmup`` each callable is first
    called once, uncounted (lazy builds, allocator warm-up)."""
    for fn in fns.values() if warmup else ():
        fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for r in range(max(1, rounds)):
        for name in round_order(list(fns), r):
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def interleaved_medians(fns: Mapping[str, Callable[[], Any]], rounds: int,
                        warmup: bool = True) -> Dict[str, float]:
    """Median seconds of each callable over the rounds of :func:`interleaved_times`."""
    return {name: statistics.median(t) for name, t in interleaved_times(fns, rounds, warmup).items()}
