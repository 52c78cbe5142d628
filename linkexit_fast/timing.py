"""Wall-clock medians: the one timing helper of the CLI, the Pareto sweep and the benchmarks."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Tuple


def median_time(fn: Callable[[], Any], repeats: int = 3) -> Tuple[float, Any]:
    """Median wall-clock seconds of ``repeats`` calls of ``fn`` (machines here are shared and
    noisy, so a median, not a mean), and the last call's result."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out
