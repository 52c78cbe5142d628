"""The demo: chance levels computed exactly, and the CLI run end to end on a tiny setting."""
import inspect
import re
import subprocess
import sys
from fractions import Fraction

import torch

from linkexit_fast.demo import chance_metrics
from linkexit_fast.report import DEFAULT_THRESHOLD
from linkexit_fast.engine import predict
from linkexit_fast.metrics import existing_metrics


def _enumerated_chance(q: int, k: int):
    """Exact expectation by enumeration: a positive's rank among q + 1 i.i.d. scores is uniform."""
    ranks = range(1, q + 2)
    mrr = sum(Fraction(1, r) for r in ranks) / (q + 1)
    hits = Fraction(sum(r <= k for r in ranks), q + 1)
    return float(mrr), float(hits)


def test_chance_metrics_exact():
    for q, k in ((1, 1), (3, 2), (9, 10), (500, 20)):
        mrr, hits = _enumerated_chance(q, k)
        got = chance_metrics(q, ks=(k,))
        assert abs(got["mrr"] - mrr) < 1e-12 and abs(got[f"hits@{k}"] - hits) < 1e-12
        assert got["auc"] == 0.5


def test_chance_metrics_match_random_scores():
    """Random scores ranked by the package's own metric land on the formula (Monte Carlo)."""
    gen = torch.Generator().manual_seed(0)
    q, trials = 30, 400
    runs = [existing_metrics(torch.rand(50, generator=gen), torch.rand(q, generator=gen), ks=(5,))
            for _ in range(trials)]
    chance = chance_metrics(q, ks=(5,))
    for key, tol in (("mrr", 0.01), ("hits@5", 0.01), ("auc", 0.01)):
        mean = sum(r[key] for r in runs) / trials
        assert abs(mean - chance[key]) < tol, (key, mean, chance[key])


def test_demo_threshold_is_predicts_default():
    from linkexit_fast.demo import DemoConfig
    assert DemoConfig.threshold == inspect.signature(predict).parameters["threshold"].default == 0.9


def test_demo_cli_tiny():
    cmd = [sys.executable, "-m", "linkexit_fast.cli", "demo", "--nodes", "600", "--serve-nodes", "3000",
           "--queries", "40", "--epochs", "1", "--layers", "2", "--rounds", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    # Quality: labelled negatives and an exact chance line.
    q = int(re.search(r"against ([\d,]+) shared uniformly random non-edges", out).group(1).replace(",", ""))
    assert "random negatives (not HeaRT)" in out and "1 negative per positive" in out
    mrr = float(re.search(rf"chance \(random scores, exact\) for the test's {q:,} negatives: mrr ([\d.]+)",
                          out).group(1))
    assert abs(mrr - _enumerated_chance(q, 1)[0]) < 1e-4
    for part in ("valid", "test"):
        assert re.search(rf"trained model, {part}: mrr [\d.]+, hits@20 [\d.]+", out)
    assert re.search(r"test MRR [\d.]+ is \d+x chance", out)
    # Both timed workloads, each against the dense reference at the stated threshold.
    head = re.search(r"HEADLINE: 40 query pairs on 3,000 nodes: engine \(\w+, plan (?:engine|dense)\) [\d.]+ ms vs dense "
                     r"reference [\d.]+ ms -> speed-up ([\d.]+)x", out)
    full = re.search(r"full evaluation: [\d,]+ valid\+test pairs on 600 nodes: engine \(\w+, plan (?:engine|dense)\) [\d.]+ ms "
                     r"vs dense reference [\d.]+ ms -> speed-up ([\d.]+)x", out)
    assert head and full, out
    assert out.count(f"at exit threshold {DEFAULT_THRESHOLD}:") == 2
