"""The C++ ops against the baselines users would otherwise run, side by side in one process.

    python -m pytest benchmarks/test_ops_bench.py --benchmark-only   # pytest-benchmark table
    python benchmarks/test_ops_bench.py [--rounds 7] [--threads N]   # medians, ratios, results files

The script mode interleaves the cases of a group round by round, so that load from other
processes on a shared machine hits every case alike, and writes
``benchmarks/results/ops_cpu.{json,md}``.

Inputs: ``synthetic(1_000_000, 10, 64, 50, 0).graph`` with GCN weights ``d_r^{-1/2} d_c^{-1/2}``
(``d`` = degree + 1), ``h = z`` float32 ``[1_000_000, 256]``, 228k uniformly random pairs.

* ``aggregate_rows`` on every row and on a sorted random 10% of the rows, against
  ``torch.sparse.mm`` with a CSR tensor of exactly those rows (built outside the timing) and
  against ``torch_ops``. Throughput: ``GB/s = (nnz_sel * (4 m + 12) + 4 k m) / t`` (gathered
  rows, col and weight, written output) and ``GFLOP/s = 2 nnz_sel m / t``.
* ``score_pairs`` with HeaRT's predictor, 2 layers (Linear(256, 256) + ReLU, Linear(256, 1)) and
  3 layers, against ``mlp(z[u] * z[v])`` ("naive") and against plain ``torch.mm`` of the same
  shapes on pre-materialised inputs into preallocated outputs (the GEMM floor).
  Throughput: ``GFLOP/s = 2 P sum_l(in_l out_l) / t`` for every case, so GFLOP/s ratios are
  time ratios.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List, Tuple

import pytest
import torch

from linkexit_fast.backends import cpu, torch_ops
from linkexit_fast.datasets import synthetic
from linkexit_fast.timing import cpu_model, round_order

NUM_NODES, AVG_DEGREE, M, NUM_PAIRS = 1_000_000, 10, 256, 228_000
RESULTS = Path(__file__).resolve().parent / "results"

# (group, case): the first case of each group is the C++ op.
CASES: List[Tuple[str, str]] = [
    ("aggregate_rows all rows", "cpu"),
    ("aggregate_rows all rows", "torch.sparse.mm"),
    ("aggregate_rows all rows", "torch_ops"),
    ("aggregate_rows 10% rows", "cpu"),
    ("aggregate_rows 10% rows", "torch.sparse.mm"),
    ("aggregate_rows 10% rows", "torch_ops"),
    ("score_pairs 2-layer", "cpu"),
    ("score_pairs 2-layer", "naive"),
    ("score_pairs 2-layer", "dense GEMMs"),
    ("score_pairs 3-layer", "cpu"),
    ("score_pairs 3-layer", "naive"),
    ("score_pairs 3-layer", "dense GEMMs"),
]
# (group, baseline, target): the C++ op's speed-up t(baseline) / t(cpu) that the design aims for.
TARGETS = [
    ("aggregate_rows all rows", "torch.sparse.mm", ">= 2"),
    ("aggregate_rows all rows", "torch_ops", ""),
    ("aggregate_rows 10% rows", "torch.sparse.mm", ">= 2"),
    ("aggregate_rows 10% rows", "torch_ops", ""),
    ("score_pairs 2-layer", "dense GEMMs", ">= 0.8 (time <= 1.25x)"),
    ("score_pairs 2-layer", "naive", ">= 1.6"),
    ("score_pairs 3-layer", "dense GEMMs", ">= 0.8 (time <= 1.25x)"),
    ("score_pairs 3-layer", "naive", ">= 1.6"),
]


@functools.lru_cache(maxsize=None)
def graph_inputs() -> SimpleNamespace:
    g = synthetic(NUM_NODES, AVG_DEGREE, 64, 50, 0).graph
    dinv = g.dinv(self_loops=True)
    weight = dinv[g.row] * dinv[g.col]
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(g.num_nodes, M, generator=gen)
    subset = torch.randperm(g.num_nodes, generator=gen)[: g.num_nodes // 10].sort().values
    return SimpleNamespace(rowptr=g.rowptr, col=g.col, weight=weight, h=h, deg=g.deg,
                           rows={"all rows": torch.arange(g.num_nodes), "10% rows": subset})


def csr_of_rows(x: SimpleNamespace, rows: torch.Tensor) -> torch.Tensor:
    """The ``[k, n]`` sparse CSR matrix of the given rows, for the ``torch.sparse.mm`` baseline."""
    counts = x.deg[rows]
    rowptr = torch.zeros(rows.numel() + 1, dtype=torch.int64)
    rowptr[1:] = torch.cumsum(counts, 0)
    edge = torch.repeat_interleave(x.rowptr[rows] - rowptr[:-1], counts) + torch.arange(int(rowptr[-1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(rowptr, x.col[edge], x.weight[edge], (rows.numel(), x.h.shape[0]))


@functools.lru_cache(maxsize=None)
def pair_inputs(layers: int) -> SimpleNamespace:
    z = graph_inputs().h
    gen = torch.Generator().manual_seed(1)
    u, v = torch.randint(0, z.shape[0], (2, NUM_PAIRS), generator=gen)
    dims = [M] * layers + [1]
    torch.manual_seed(layers)
    mlp = torch.nn.Sequential(*[mod for i, o in zip(dims[:-2], dims[1:-1])
                                for mod in (torch.nn.Linear(i, o), torch.nn.ReLU())],
                              torch.nn.Linear(dims[-2], 1)).requires_grad_(False)
    linears = [mod for mod in mlp if isinstance(mod, torch.nn.Linear)]
    # The GEMM floor: same shapes, inputs already gathered, outputs preallocated.
    dense_in = [torch.randn(NUM_PAIRS, i, generator=gen) for i in dims[:-1]]
    dense_w = [lin.weight.T.contiguous() for lin in linears]
    dense_out = [torch.empty(NUM_PAIRS, o) for o in dims[1:]]
    return SimpleNamespace(z=z, u=u, v=v, mlp=mlp, weights=[lin.weight for lin in linears],
                           biases=[lin.bias for lin in linears], dense=(dense_in, dense_w, dense_out),
                           flop=2 * NUM_PAIRS * sum(i * o for i, o in zip(dims[:-1], dims[1:])))


def make_case(group: str, case: str) -> Tuple[Callable[[], object], Dict[str, float]]:
    """The callable to time and its work (``GB`` and/or ``GFLOP``) for the throughput formulas."""
    if group.startswith("aggregate_rows"):
        x = graph_inputs()
        rows = x.rows[group.split(" ", 1)[1]]
        nnz = int(x.deg[rows].sum())
        work = {"GB": (nnz * (4 * M + 12) + 4 * rows.numel() * M) / 1e9, "GFLOP": 2 * nnz * M / 1e9}
        if case == "cpu":
            return (lambda: cpu.aggregate_rows(x.rowptr, x.col, x.weight, x.h, rows)), work
        if case == "torch_ops":
            return (lambda: torch_ops.aggregate_rows(x.rowptr, x.col, x.weight, x.h, rows)), work
        a = csr_of_rows(x, rows)
        return (lambda: torch.sparse.mm(a, x.h)), work

    p = pair_inputs(int(group.split(" ")[1][0]))
    work = {"GFLOP": p.flop / 1e9}
    if case == "cpu":
        return (lambda: cpu.score_pairs(p.z, p.u, p.v, p.weights, p.biases)), work
    if case == "naive":
        return (lambda: p.mlp(p.z[p.u] * p.z[p.v])), work
    dense_in, dense_w, dense_out = p.dense

    def dense():
        for xin, w, out in zip(dense_in, dense_w, dense_out):
            torch.mm(xin, w, out=out)
    return dense, work


def throughput(work: Dict[str, float], seconds: float) -> Dict[str, float]:
    return {f"{unit}/s": round(amount / seconds, 2) for unit, amount in work.items()}


# ---------------------------------------------------------------------- pytest-benchmark
@pytest.mark.parametrize("group,case", CASES,
                         ids=[f"{g}-{c}".replace(" ", "_").replace("%", "pct") for g, c in CASES])
def test_ops(benchmark, group, case):
    if case == "cpu" and not cpu.available():
        pytest.skip("C++ extension unavailable")
    fn, work = make_case(group, case)
    benchmark.group = group
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(throughput(work, benchmark.stats.stats.median))


# ---------------------------------------------------------------------- script mode
def run(rounds: int) -> Tuple[Dict[str, dict], List[dict]]:
    results: Dict[str, dict] = {}
    for group in dict.fromkeys(g for g, _ in CASES):
        names = [c for g, c in CASES if g == group]
        made = {name: make_case(group, name) for name in names}
        times: Dict[str, List[float]] = {name: [] for name in names}
        cpu_times: Dict[str, List[float]] = {name: [] for name in names}
        for r in range(rounds + 1):  # round 0 warms up caches, page tables and thread pools
            for name in round_order(names, r):
                start, start_cpu = time.perf_counter(), time.process_time()
                made[name][0]()
                if r:
                    times[name].append(time.perf_counter() - start)
                    cpu_times[name].append(time.process_time() - start_cpu)
        for name in names:
            median = statistics.median(times[name])
            # CPU seconds of all our threads: about 2x the wall time when both cores were ours.
            cpu_median = statistics.median(cpu_times[name])
            results[f"{group} | {name}"] = {"group": group, "case": name, "median_s": median,
                                            "median_cpu_s": cpu_median, "times_s": times[name],
                                            **throughput(made[name][1], median)}
            print(f"{group:26s} {name:16s} {median * 1e3:9.1f} ms (cpu {cpu_median * 1e3:7.1f} ms)  "
                  + "  ".join(f"{v} {k}" for k, v in throughput(made[name][1], median).items()), flush=True)
        made.clear()
    ratios = []
    for group, baseline, target in TARGETS:
        speedup = results[f"{group} | {baseline}"]["median_s"] / results[f"{group} | cpu"]["median_s"]
        ratios.append({"group": group, "baseline": baseline, "speedup": round(speedup, 3), "target": target})
        print(f"{group:26s} cpu vs {baseline:16s} speed-up {speedup:5.2f}x  target {target}")
    return results, ratios


def write_results(command: str, results: Dict[str, dict], ratios: List[dict], context: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ops_cpu.json").write_text(json.dumps(
        {"command": command, "context": context, "results": results, "speedups": ratios}, indent=1))
    lines = ["# C++ ops vs baselines (CPU)", "", f"Command: `{command}`", "",
             "Context: " + ", ".join(f"{k} {v}" for k, v in context.items()), "",
             "Speed-up = t(baseline) / t(cpu), medians over interleaved rounds. Median CPU ms "
             "counts all threads: about twice the wall time when both cores were free, about "
             "equal when other processes held one of them.", "",
             "| op | baseline | speed-up | target |", "|---|---|---|---|"]
    lines += [f"| {r['group']} | {r['baseline']} | {r['speedup']:.2f}x | {r['target']} |" for r in ratios]
    lines += ["", "| op | case | median ms | median CPU ms | throughput |", "|---|---|---|---|---|"]
    for r in results.values():
        rate = ", ".join(f"{v} {k}" for k, v in r.items() if k.endswith("/s"))
        lines.append(f"| {r['group']} | {r['case']} | {r['median_s'] * 1e3:.1f} | "
                     f"{r['median_cpu_s'] * 1e3:.1f} | {rate} |")
    (RESULTS / "ops_cpu.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not cpu.available():
        sys.exit(f"C++ extension unavailable: {cpu._load_error()}")
    command = "python benchmarks/test_ops_bench.py" + "".join(f" {a}" for a in sys.argv[1:])
    load_before = os.getloadavg()
    results, ratios = run(args.rounds)
    context = {"cpu": cpu_model(), "cores": os.cpu_count(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}
    write_results(command, results, ratios, context)
    print(f"wrote {RESULTS / 'ops_cpu.json'} and {RESULTS / 'ops_cpu.md'}")


if __name__ == "__main__":
    main()
