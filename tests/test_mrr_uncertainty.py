"""benchmarks/mrr_uncertainty.py's interval: a bootstrap of the mean, checked against the normal
approximation sigma / sqrt(n) computed with numpy."""
import importlib.util
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))  # the script imports table1 from beside it
SPEC = importlib.util.spec_from_file_location("mrr_uncertainty", BENCH / "mrr_uncertainty.py")
mod = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(mod)


def test_interval_of_reciprocal_ranks_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    rr = 1.0 / rng.integers(1, 500, size=2000)  # reciprocal ranks of 2,000 positives
    low, high, se = mod.interval(rr)
    want_se = rr.std(ddof=1) / np.sqrt(rr.size)
    assert abs(se - want_se) / want_se < 0.1
    assert low < rr.mean() < high
    assert abs((high - low) - 2 * 1.96 * want_se) / (2 * 1.96 * want_se) < 0.2


def test_interval_of_a_constant_is_that_constant():
    low, high, se = mod.interval(np.full(50, 0.25))
    assert low == high == 0.25 and se == 0.0
