"""Where the planner grid's small calls go, and why their cells sit where they do (#17): the
figures behind the README's account of the grid's misses.

    python benchmarks/small_calls.py                 # -> benchmarks/results/small_calls.{md,json} (~5 min)
    python benchmarks/small_calls.py --parts order,profile --out /tmp/small

Parts (models and pairs as in planner_grid.py: the synthetic node-exit GCN, L = 3, hidden 256;
random pairs drawn as the grid draws them; CiteSeer's L = 8 GCN on its HeaRT-style test pairs):

* ``order``: 5k nodes / 100 pairs / t=0.5. The dense reference and the engine path, each timed
  called alone (``--calls`` calls in a row) and right after another variant's call: a call's
  time depends on what ran before it (caches, the allocator's free lists).
* ``profile``: 20k nodes / 100 pairs / t=0.5, the engine path under torch.profiler (10 calls):
  the operator time of the layer updates (GEMMs, aggregations, GELU, exit heads, scorer) against
  the rest (the engine's bookkeeping), the top-level op count, and the first layer's share of the
  engine's MACs.
* ``variants``: two changes tried on that call and the 5k one, interleaved against the shipped
  engine: smaller row chunks in the layer update (``engine.run.ROW_CHUNK_BYTES``), and GELU
  through ATen's own kernel instead of oneDNN for inputs under 64k elements (a transposed view
  keeps oneDNN out).
* ``scorer``: CiteSeer's full test evaluation, t=0.5 / 0.9 / 1.0: the GNN stage's and the
  scorer's seconds on the dense and engine paths (``EngineStats.time_gnn``, ``time_decoder``),
  interleaved.
* ``same-path``: 5k nodes / 10k pairs / t=0.9, where auto takes the dense path: auto, dense and
  engine over ``--rounds`` interleaved rounds, and the median of per-round auto / dense ratios.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import linkexit_fast as lf
import linkexit_fast.models as models
from linkexit_fast.datasets import synthetic
from linkexit_fast.engine import EngineStats, predict_chunks, run
from linkexit_fast.timing import interleaved_times, machine_label, ops_and_syncs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402
from test_engine_bench import case, synthetic_model  # noqa: E402

# Operators that do the layer updates' arithmetic; the rest of a call's operator time is bookkeeping.
COMPUTE_OPS = {"aten::addmm", "aten::mm", "aten::gelu", "linkexit_fast::aggregate_rows",
               "linkexit_fast::exit_decision", "linkexit_fast::score_pairs"}


def grid_cell(n: int, label: str):
    """(graph, pairs) of the planner grid's synthetic cell: the same generator and draw order."""
    split = synthetic(n, 10, 64, 50, 0)
    g = torch.Generator().manual_seed(0)
    hundred = torch.randint(0, n, (100, 2), generator=g)
    ten_k = torch.randint(0, n, (10_000, 2), generator=g)
    return split.graph, {"100": hundred, "10k": ten_k}[label]


def ms(seconds) -> float:
    return round(1e3 * statistics.median(seconds), 3)


def order(model, calls: int) -> dict:
    graph, pairs = grid_cell(5000, "100")
    f = {p: (lambda p=p: lf.predict(graph, pairs, 0.5, model=model, plan=p)) for p in ("dense", "engine")}
    f["reference"] = lambda: lf.predict(graph, pairs, 0.5, model=model, backend="reference")

    def alone(name):
        f[name]()
        out = []
        for _ in range(calls):
            t0 = time.perf_counter()
            f[name]()
            out.append(time.perf_counter() - t0)
        return ms(out)

    def after(first, name):
        out = []
        for _ in range(calls):
            f[first]()
            t0 = time.perf_counter()
            f[name]()
            out.append(time.perf_counter() - t0)
        return ms(out)
    return {"cell": "synthetic 5,000 / 100 pairs / t=0.5", "calls": calls,
            "reference alone": alone("reference"), "engine alone": alone("engine"),
            "reference alone, again": alone("reference"),
            "reference after dense": after("dense", "reference"),
            "reference after engine": after("engine", "reference"),
            "engine after reference": after("reference", "engine"),
            "engine after dense": after("dense", "engine")}


def profile(model) -> dict:
    graph, pairs = grid_cell(20_000, "100")
    call = lambda: lf.predict(graph, pairs, 0.5, model=model, plan="engine")  # noqa: E731
    for _ in range(3):
        call()
    wall = []
    for _ in range(10):
        t0 = time.perf_counter()
        call()
        wall.append(time.perf_counter() - t0)
    with torch.profiler.profile() as prof:
        for _ in range(10):
            call()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 10
    compute = sum(e.self_cpu_time_total for e in events if e.key in COMPUTE_OPS) / 10
    rest = sorted((e for e in events if e.key not in COMPUTE_OPS), key=lambda e: -e.self_cpu_time_total)
    ops, syncs = ops_and_syncs(call)
    _, st = lf.predict(graph, pairs, 0.5, model=model, plan="engine", return_stats=True)
    first = st.nodes_updated[0] * graph.x.shape[1] * model.config.hidden
    return {"cell": "synthetic 20,000 / 100 pairs / t=0.5, engine path", "wall ms (median of 10)": ms(wall),
            "operator ms": round(total / 1e3, 3), "compute operator ms": round(compute / 1e3, 3),
            "bookkeeping operator ms": round((total - compute) / 1e3, 3),
            "largest bookkeeping ops (ms per call)": {e.key: round(e.self_cpu_time_total / 1e4, 3) for e in rest[:6]},
            "top-level ops": sum(ops.values()), "host reads": syncs,
            "nodes updated per layer": st.nodes_updated,
            "first layer's product MACs (M)": round(first / 1e6, 1),
            "GNN-stage MACs (M)": round(st.flops_gnn / 1e6, 1)}


def _gelu_small_native(x, out):
    """GELU through ATen's kernel for inputs under 64k elements: oneDNN takes only contiguous ones."""
    if out is not None and x.dim() == 2 and x.shape[0] > 1 and x.numel() < 65536:
        torch.ops.aten.gelu.out(x.t(), out=out.t())
        return out
    return _GELU(x, out)


_GELU = models.gelu_into


def variants(model, rounds: int) -> list:
    rows = []
    for n in (5000, 20_000):
        graph, pairs = grid_cell(n, "100")

        def with_knobs(chunk, gelu):
            def call():
                run.ROW_CHUNK_BYTES, models.gelu_into = chunk, gelu
                try:
                    return lf.predict(graph, pairs, 0.5, model=model, plan="engine")
                finally:
                    run.ROW_CHUNK_BYTES, models.gelu_into = SHIPPED_CHUNK, _GELU
            return call
        fns = {"shipped": with_knobs(SHIPPED_CHUNK, _GELU),
               "chunks 1 MB": with_knobs(1 << 20, _GELU), "chunks 256 KB": with_knobs(256 << 10, _GELU),
               "GELU off oneDNN under 64k elements": with_knobs(SHIPPED_CHUNK, _gelu_small_native)}
        times = interleaved_times(fns, rounds)
        base = statistics.median(times["shipped"])
        rows.append({"cell": f"synthetic {n:,} / 100 pairs / t=0.5, engine path", "rounds": rounds,
                     **{k: {"ms": ms(v), "speed-up vs shipped": round(base / statistics.median(v), 3)}
                        for k, v in times.items()}})
    return rows


SHIPPED_CHUNK = run.ROW_CHUNK_BYTES


def scorer(rounds: int) -> list:
    graph, pairs, model = case("citeseer-test")
    rows = []
    for t in (0.5, 0.9, 1.0):
        parts = {p: {"gnn": [], "scorer": []} for p in ("dense", "engine")}
        for p in parts:  # warm-up, and the exit profile learnt
            lf.predict(graph, pairs, t, model=model, plan=p)
        for r in range(rounds):
            for p in (("dense", "engine") if r % 2 else ("engine", "dense")):
                st = EngineStats(backend="auto", threshold=t)
                list(predict_chunks(graph, lambda: [pairs], t, model=model, stats=st, plan=p))
                parts[p]["gnn"].append(st.time_gnn)
                parts[p]["scorer"].append(st.time_decoder)
        rows.append({"cell": f"citeseer HeaRT test ({pairs.shape[0]:,} pairs) / t={t}", "rounds": rounds,
                     **{f"{p} {k} ms": ms(v) for p, d in parts.items() for k, v in d.items()}})
    return rows


def same_path(model, rounds: int) -> dict:
    graph, pairs = grid_cell(5000, "10k")
    fns = {p: (lambda p=p: lf.predict(graph, pairs, 0.9, model=model, plan=p)) for p in ("auto", "dense", "engine")}
    times = interleaved_times(fns, rounds)
    return {"cell": "synthetic 5,000 / 10k pairs / t=0.9", "rounds": rounds,
            **{f"{p} ms": ms(v) for p, v in times.items()},
            "auto / dense (medians)": round(statistics.median(times["auto"]) / statistics.median(times["dense"]), 3),
            "median of per-round auto / dense": round(statistics.median(
                a / d for a, d in zip(times["auto"], times["dense"])), 3)}


def render(rows, meta) -> str:
    lines = ["# Small calls: where the planner grid's short calls go (#17)", "",
             f"Command: `{meta['command']}`", "", f"Machine: {meta['machine']}.", "",
             "Milliseconds are medians of wall-clock calls (the profile's operator times: torch.profiler "
             "self time per call, 10 calls). Baselines: the dense reference (`backend=\"reference\"`), "
             "the dense path, and the shipped engine; pairs random as in planner_grid.py (CiteSeer: "
             "its HeaRT-style test pairs, 500 sampler negatives per positive). See the module "
             "docstring for each part.", ""]
    for part, value in rows:
        lines += [f"## {part}", "", "```json", json.dumps(value, indent=1), "```", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="order,profile,variants,scorer,same-path")
    ap.add_argument("--calls", type=int, default=15, help="calls per timing of the order part")
    ap.add_argument("--rounds", type=int, default=21, help="interleaved rounds of the variants and same-path parts")
    ap.add_argument("--scorer-rounds", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/small_calls")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    model = synthetic_model()
    run_part = {"order": lambda: order(model, args.calls), "profile": lambda: profile(model),
                "variants": lambda: variants(model, args.rounds), "scorer": lambda: scorer(args.scorer_rounds),
                "same-path": lambda: same_path(model, 2 * args.rounds - 1)}
    unknown = set(parts) - set(run_part)
    if unknown:
        ap.error(f"--parts: unknown {sorted(unknown)}; choose from {sorted(run_part)}")
    rows = []
    for p in parts:
        rows.append([p, run_part[p]()])
        print(json.dumps(rows[-1]), flush=True)
    meta = {"command": results_file.command("small_calls.py", argv), "machine": machine_label()}
    results_file.write(Path(args.out), meta, rows, render(rows, meta))


if __name__ == "__main__":
    main()
