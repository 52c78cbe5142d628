"""Build time, peak memory and determinism of the 1M-node synthetic default.

    pytest benchmarks/test_synthetic_bench.py --benchmark-only
    python benchmarks/test_synthetic_bench.py          # -> benchmarks/results/synthetic_1m.json
"""
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

from linkexit_fast.datasets import synthetic

ARGS = (1_000_000, 10, 64, 50, 0)


def test_synthetic_1m(benchmark):
    first = benchmark.pedantic(synthetic, args=ARGS, rounds=1, iterations=1)
    second = synthetic(*ARGS)
    assert torch.equal(first.graph.col, second.graph.col) and torch.equal(first.graph.x, second.graph.x)
    assert first.graph.num_nodes == 1_000_000


def main():
    t0 = time.perf_counter()
    a = synthetic(*ARGS)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = synthetic(*ARGS)
    second = time.perf_counter() - t0
    same = all(torch.equal(x, y) for x, y in ((a.graph.col, b.graph.col), (a.graph.rowptr, b.graph.rowptr),
                                              (a.graph.x, b.graph.x), (a.test_pos, b.test_pos),
                                              (a.test_neg, b.test_neg)))
    out = {"command": "python benchmarks/test_synthetic_bench.py", "seconds": [first, second],
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "identical": same,
           "edges": a.graph.num_undirected_edges, "load": os.getloadavg()[0]}
    Path("benchmarks/results/synthetic_1m.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
