"""Engine benchmarks: (a) the engine, (b) the dense masked reference (what the paper's code does),
(c) a PyG GCNConv stack at fixed depth, (d) the engine at threshold 1.0 — identical weights.

    pytest benchmarks/test_engine_bench.py --benchmark-only      # pytest-benchmark timings
    python benchmarks/test_engine_bench.py                        # side-by-side ratios -> results/engine_cpu.{md,json}

Models are trained once and cached in runs/bench/ (a CiteSeer node-exit GCN, an ogbl-ddi
node-exit GCN, and a node-exit GCN trained on a 20k-node synthetic graph that is then served on
the 1M-node synthetic graph: the weights do not depend on the node count).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import torch

import linkexit_fast as lf
from linkexit_fast.datasets import data_root, load_heart, load_ogbl, synthetic
from linkexit_fast.evaluate import flatten_eval_pairs
from linkexit_fast.timing import machine_label, median_time, round_order

RUNS = Path(os.environ.get("LINKEXIT_BENCH_RUNS", "runs/bench"))
THRESHOLD = 0.9


def _train(name, split, layers, hidden, minutes, **kw):
    from linkexit_fast.train_args import train_checkpoint
    out = RUNS / name
    if not (out / "model.safetensors").exists():
        args = argparse.Namespace(seed=0, quiet=True, hidden=hidden, layers=layers, backbone="gcn",
                                  exit="node", semantics="freeze", dropout=None, predictor_layers=None,
                                  lr=None, weight_decay=None, batch_size=None, patience=None,
                                  eval_every=None, epochs=200, max_minutes=minutes, test_negatives=None)
        for k, v in kw.items():
            setattr(args, k, v)
        model, *_ = train_checkpoint(args, split)
        lf.save(model, out)
    return lf.load(out).model


@lru_cache(maxsize=None)
def case(name):
    """(graph, pairs, model) for a named case."""
    if name in ("citeseer-valid", "citeseer-test"):  # test: the evaluation timed in the engine issue
        split = load_heart("citeseer", data_root())
        table = Path("runs/table/gcn_node_freeze_L8_s0")
        model = lf.load(table).model if (table / "model.safetensors").exists() else \
            _train("citeseer", split, 8, 256, 1.5, lr=0.002)
        if name == "citeseer-valid":
            return split.graph, flatten_eval_pairs(split.valid_pos, split.valid_neg), model
        return split.graph, flatten_eval_pairs(split.test_pos, _heart_test_negatives(split)), model
    if name == "ddi-valid":
        split = load_ogbl("ogbl-ddi", data_root())
        model = _train("ddi", split, 3, 256, 2.0, batch_size=65536)
        return split.graph, flatten_eval_pairs(split.valid_pos, split.valid_neg), model
    model = synthetic_model()
    big = _big()
    g = torch.Generator().manual_seed(0)
    n_pairs = {"synthetic1M-100k": 100_000, "synthetic1M-10000": 10_000, "synthetic1M-100": 100,
               "synthetic1M-1": 1}[name]
    return big.graph, torch.randint(0, big.graph.num_nodes, (n_pairs, 2), generator=g), model


def synthetic_model():
    """The node-exit GCN (L = 3, hidden 256) trained on the 20k-node synthetic graph: its weights
    do not depend on the node count, so it serves the synthetic graphs of every size."""
    return _train("synthetic", synthetic(20_000, 10, 64, 50, 0), 3, 256, 1.5, batch_size=8192)


def _heart_test_negatives(split):
    """HeaRT's 500 hard negatives per CiteSeer test positive. The shared data has only the
    validation file, so they are generated with this package's sampler once (~5 s) and cached."""
    from linkexit_fast.heart import generate_negatives, load_negatives, save_negatives
    path = RUNS / "citeseer_test_heart.npy"
    if not path.exists():
        save_negatives(generate_negatives(split, which="test", k=500, progress=False), path)
    return load_negatives(path)


@lru_cache(maxsize=None)
def _big():
    return synthetic(1_000_000, 10, 64, 50, 0)


# ------------------------------------------------------------------------- the four methods
@lru_cache(maxsize=None)
def _pyg_stack(model, graph):
    from torch_geometric.nn import GCNConv
    convs = []
    for lin in model.convs:
        conv = GCNConv(lin.in_features, lin.out_features, cached=True).to(lin.weight.device)
        conv.lin.weight.data.copy_(lin.weight.data)
        conv.bias.data.copy_(lin.bias.data)
        convs.append(conv.eval())
    return convs, graph.edge_index


@torch.no_grad()
def pyg_fixed_depth(graph, pairs, model):
    """What users run today: a PyG GCNConv stack at fixed depth, then the MLP scorer."""
    convs, ei = _pyg_stack(model, graph)
    h = model.input_features(graph.x)
    for i, conv in enumerate(convs):
        h = conv(h, ei)
        if i < len(convs) - 1:
            h = torch.nn.functional.gelu(h)
    return torch.cat([model.score(h, pairs[s:s + 65536]) for s in range(0, len(pairs), 65536)]).sigmoid()


METHODS = {
    "engine": lambda g, p, m: lf.predict(g, p, threshold=THRESHOLD, model=m),
    "reference": lambda g, p, m: lf.predict(g, p, threshold=THRESHOLD, model=m, backend="reference"),
    "pyg": pyg_fixed_depth,
    "engine_t1": lambda g, p, m: lf.predict(g, p, threshold=1.0, model=m),
}
CASES = ["citeseer-valid", "ddi-valid", "synthetic1M-100k", "synthetic1M-10000", "synthetic1M-100",
         "synthetic1M-1"]


def _skip_without_data(name):
    if not name.startswith("synthetic") and not data_root().exists():
        pytest.skip(f"data folder {data_root()} not found")


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", [pytest.param(c, marks=pytest.mark.quick) if c == "citeseer-valid" else c
                                  for c in CASES])
def test_engine_case(benchmark, name, method):
    _skip_without_data(name)
    if method in ("reference", "pyg") and name in ("synthetic1M-100", "synthetic1M-1"):
        pytest.skip("whole-graph methods cost the same for any pair count; timed on the 10k case")
    if method == "pyg" and name.startswith("synthetic1M"):
        pytest.skip("PyG's [E, m] messages need ~20 GB on the 1M graph (OOM here); see engine_cpu.md")
    graph, pairs, model = case(name)
    benchmark.group = name
    _, stats = lf.predict(graph, pairs, threshold=1.0 if method == "engine_t1" else THRESHOLD,
                          model=model, backend="reference" if method in ("reference", "pyg") else "auto",
                          return_stats=True)
    benchmark.extra_info.update(flops=stats.flops, flops_dense=stats.flops_dense, pairs=len(pairs))
    benchmark.pedantic(METHODS[method], args=(graph, pairs, model), rounds=2, iterations=1, warmup_rounds=0)


# ------------------------------------------------------------------------- script mode
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default="benchmarks/results/engine_cpu")
    ap.add_argument("--skip-pyg", action="store_true",
                    help="no PyG baseline (it materialises [E, m] messages: ~20 GB on the 1M graph)")
    ap.add_argument("--from-log", default=None,
                    help="render the rows a previous run printed (one JSON per line) instead of measuring")
    args = ap.parse_args()
    rows = []
    if args.from_log:
        rows = [json.loads(l) for l in open(args.from_log) if l.startswith("{")]
    for name in [] if args.from_log else args.cases.split(","):
        graph, pairs, model = case(name)
        whole_graph = name not in ("synthetic1M-100", "synthetic1M-1")
        _, st = lf.predict(graph, pairs, threshold=THRESHOLD, model=model, return_stats=True)
        methods = ["engine", "engine_t1", "reference"] if whole_graph or name == "synthetic1M-100" \
            else ["engine", "engine_t1"]
        if not args.skip_pyg and "reference" in methods:
            methods.append("pyg")
        times = {m: [] for m in methods}
        for r in range(args.rounds):  # interleaved rounds: load changes hit every method alike
            for m in round_order(methods, r):
                times[m].append(median_time(lambda: METHODS[m](graph, pairs, model), 1)[0])
        med = {m: statistics.median(v) for m, v in times.items()}
        # Stage times: medians over as many stats calls (untimed above: return_stats adds a
        # reference pass for flops_paper), interleaved like the timings.
        stages = {"engine": [], "reference": []}
        for r in range(args.rounds if "reference" in methods else 0):
            for m in round_order(list(stages), r):
                stages[m].append(lf.predict(graph, pairs, threshold=THRESHOLD, model=model, backend=
                                            "reference" if m == "reference" else "auto", return_stats=True)[1])

        def stage(m, key):
            return statistics.median(getattr(s, key) for s in stages[m]) if stages[m] else getattr(st, key)
        row = {"case": name, "pairs": len(pairs), "scope_nodes": st.scope_nodes, "backend": st.backend,
               "seconds": med, "flops": st.flops, "flops_gnn": st.flops_gnn, "flops_decoder": st.flops_decoder,
               "flops_dense": st.flops_dense, "flops_dense_gnn": st.flops_dense_gnn,
               "flops_paper": st.flops_paper, "time_gnn": stage("engine", "time_gnn"),
               "time_decoder": stage("engine", "time_decoder"),
               "mean_exit_layer": float(st.exit_layer.float().mean()),
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if "reference" in med:
            row["speedup_vs_reference"] = med["reference"] / med["engine"]
            row["flop_ratio"] = st.flops_dense / st.flops
            row["ref_time_gnn"] = stage("reference", "time_gnn")
            row["ref_time_decoder"] = stage("reference", "time_decoder")
            row["gnn_speedup"] = row["ref_time_gnn"] / max(row["time_gnn"], 1e-9)
            row["gnn_flop_ratio"] = st.flops_dense_gnn / st.flops_gnn
            row["t1_over_pyg"] = med["engine_t1"] / med["pyg"] if "pyg" in med else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    big = _big().graph
    m = 256
    bound = 2 * (big.rowptr.numel() * 8 + big.col.numel() * 8 + big.x.numel() * 4 + 2 * big.num_nodes * m * 4)
    meta = {"command": "python benchmarks/test_engine_bench.py " + " ".join(sys.argv[1:]),
            "rounds": args.rounds,
            "machine": machine_label(),
            "threshold": THRESHOLD, "memory_bound_mib_1M": bound / 2**20}
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# Engine benchmarks (CPU)", "", f"Command: `{meta['command']}`", "", f"Machine: {meta['machine']}.",
             f"Medians of {args.rounds} interleaved rounds; threshold {THRESHOLD}; FLOPs are multiply-accumulates (Eq. 6).", "",
             "| case | pairs | engine s | engine t=1.0 s | reference s | PyG s | speed-up vs ref | FLOP ratio | GNN s (engine / ref) | GNN speed-up | GNN FLOP ratio | (d)/(c) | mean exit layer |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(x, fmt="{:.3f}"):
        return "" if x is None else fmt.format(x)
    for r in rows:
        s = r["seconds"]
        lines.append(f"| {r['case']} | {r['pairs']:,} | {f(s['engine'])} | {f(s['engine_t1'])} | {f(s.get('reference'))} | "
                     f"{f(s.get('pyg'))} | {f(r.get('speedup_vs_reference'), '{:.2f}x')} | {f(r.get('flop_ratio'), '{:.2f}x')} | "
                     f"{f(r['time_gnn'], '{:.4f}')} / {f(r.get('ref_time_gnn'), '{:.4f}')} | "
                     f"{f(r.get('gnn_speedup'), '{:.2f}x')} | {f(r.get('gnn_flop_ratio'), '{:.2f}x')} | "
                     f"{f(r.get('t1_over_pyg'), '{:.2f}')} | {r['mean_exit_layer']:.2f} |")
    lines += ["", f"Peak RSS of the benchmark process: {rows[-1]['peak_rss_mib']:.0f} MiB; the 1M-node bound "
              f"2 x (CSR + features + two N x m float32 buffers) = {meta['memory_bound_mib_1M']:.0f} MiB."]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()


@pytest.mark.quick
def test_pareto_points_synthetic(benchmark, tmp_path):
    """The Pareto sweep of the small synthetic default: training, threshold sweep, timing."""
    from linkexit_fast.pareto import run_pareto
    split = synthetic(2000, 10, 32, 8, 0)
    res = benchmark.pedantic(run_pareto, args=(split, tmp_path), kwargs=dict(
        layers=(1, 2), thresholds=(0.5, 0.9), repeats=1, progress=False,
        train_overrides={"epochs": 5, "hidden": 32}), rounds=1, iterations=1)
    benchmark.extra_info.update({f"{p['family']} L={p['layers']} t={p['threshold']}": [p["mrr"], p["seconds"]]
                                 for p in res["points"]})
    assert res["points"] and all(p["seconds"] > 0 for p in res["points"])
