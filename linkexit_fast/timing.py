"""Wall-clock medians: the one timing helper of the CLI, the Pareto sweep and the benchmarks."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict, Mapping, Tuple


def median_time(fn: Callable[[], Any], repeats: int = 3) -> Tuple[float, Any]:
    """Median wall-clock seconds of ``repeats`` calls of ``fn`` (machines here are shared and
    noisy, so a median, not a mean), and the last call's result."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def interleaved_medians(fns: Mapping[str, Callable[[], Any]], rounds: int,
                        warmup: bool = True) -> Dict[str, float]:
    """Median wall-clock seconds of each callable over ``rounds`` rounds of one call each, in
    turn, so that the shared machine's drifting speed hits every variant alike; the order is
    rotated each round, so that no variant always follows the same one (cache state). With
    ``warmup`` each callable is first called once, uncounted (lazy builds, allocator warm-up)."""
    for fn in fns.values() if warmup else ():
        fn()
    times: Dict[str, list] = {name: [] for name in fns}
    names = list(fns)
    for r in range(max(1, rounds)):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}
