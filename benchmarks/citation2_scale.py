"""A graph at ogbl-citation2 scale on one machine: build, store and query it, with peak memory.

A synthetic graph of 3M nodes, ~30M undirected edges and 128 float32 features (the size of
ogbl-citation2: 2,927,963 nodes, 30,561,187 edges, 128 features) is built by
``linkexit_fast.datasets.synthetic`` (its 85 % training graph is the one stored) and written to
disk: the CSR as int32 ``.npy`` files, the features as one ``.npy``. A fresh process then loads
the CSR (as int64: ``Graph`` holds int64 indices), maps the features with
``np.load(mmap_mode="r")`` (the ``Graph`` takes them without a copy: checked), and scores 10,000
uniformly random pairs with the engine (``predict_chunks``, ``predict``'s path, for its work
counts) at L = 3. Each phase runs in its own
process; peak RSS is ``resource.getrusage`` (the whole process) and, for the query call alone,
``VmHWM`` after a reset through ``/proc/self/clear_refs``. The model (GCN, node exits, m = 128)
is trained for at most a minute on a 20k-node synthetic graph with the same feature size.

    python benchmarks/citation2_scale.py   # -> benchmarks/results/citation2_scale.{json,md}
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

OUT = Path("benchmarks/results")
COMMAND = "python benchmarks/citation2_scale.py"
NODES, FEATURES, LAYERS, HIDDEN, PAIRS = 3_000_000, 128, 3, 128, 10_000
# synthetic() keeps 85 % of its edges for training: 30M training edges need this mean degree.
AVG_DEGREE = 2 * 30_000_000 / 0.85 / NODES


def _status_mib(key: str) -> float:
    """A ``/proc/self/status`` memory figure (``VmRSS``, ``VmHWM``, ``RssFile``...) in MiB."""
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(folder: Path) -> dict:
    import linkexit_fast as lf
    from linkexit_fast.datasets import synthetic
    from linkexit_fast.train import TrainConfig, build_model, train
    t0 = time.perf_counter()
    small = synthetic(20_000, AVG_DEGREE, FEATURES, 50, seed=1)
    torch.manual_seed(0)
    model = build_model(small, hidden=HIDDEN, layers=LAYERS, exit="node", semantics="freeze")
    train(model, small, TrainConfig(epochs=50, batch_size=8192, eval_every=2, patience=5, max_minutes=1.0),
          progress=False)
    lf.save(model.eval(), folder / "model")
    seconds_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = synthetic(NODES, AVG_DEGREE, FEATURES, 50, seed=0).graph
    seconds_graph = time.perf_counter() - t0
    t0 = time.perf_counter()
    np.save(folder / "rowptr.npy", graph.rowptr.numpy().astype(np.int32))  # 60M entries fit int32
    np.save(folder / "col.npy", graph.col.numpy().astype(np.int32))
    np.save(folder / "x.npy", graph.x.numpy())
    return {"nodes": graph.num_nodes, "undirected_edges": graph.num_undirected_edges, "features": graph.num_features,
            "seconds_train_model": seconds_model, "seconds_build_graph": seconds_graph,
            "seconds_write": time.perf_counter() - t0, "peak_rss_mib": _peak_mib(),
            "bytes_on_disk": {p.name: p.stat().st_size for p in sorted(folder.glob("*.npy"))}}


def query(folder: Path, threshold: float) -> dict:
    import linkexit_fast as lf
    from linkexit_fast.engine import EngineStats, predict_chunks
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rowptr = torch.from_numpy(np.load(folder / "rowptr.npy").astype(np.int64))  # Graph holds int64
    col = torch.from_numpy(np.load(folder / "col.npy").astype(np.int64))
    with warnings.catch_warnings():  # a read-only map: torch warns that it may not be written
        warnings.simplefilter("ignore", UserWarning)
        x = torch.from_numpy(np.load(folder / "x.npy", mmap_mode="r"))
    graph = lf.Graph(rowptr, col, int(rowptr.numel() - 1), x)  # the full structure check
    load = {"seconds_load": time.perf_counter() - t0, "features_not_copied": graph.x.data_ptr() == x.data_ptr(),
            "rss_after_load_mib": _status_mib("VmRSS"), "rss_file_after_load_mib": _status_mib("RssFile"),
            "peak_rss_load_mib": _peak_mib()}
    model = lf.load(folder / "model").model
    pairs = torch.randint(0, graph.num_nodes, (PAIRS, 2), generator=torch.Generator().manual_seed(0))
    calls = []
    for _ in range(2):  # the first call also builds the graph's caches (degrees, edge weights)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        before = _status_mib("VmRSS")
        stats = EngineStats(backend="auto", threshold=threshold)
        t0 = time.perf_counter()
        # predict's own path, with its work counted (return_stats would add a dense reference pass)
        scores = torch.cat([s for _, s in predict_chunks(graph, lambda: [pairs], threshold, model=model, stats=stats)])
        calls.append({"seconds": time.perf_counter() - t0, "rss_before_mib": before,
                      "peak_rss_mib": _status_mib("VmHWM"), "rss_file_mib": _status_mib("RssFile"),
                      "time_gnn": stats.time_gnn, "time_decoder": stats.time_decoder, "macs": stats.flops,
                      "macs_dense": stats.flops_dense})
    return {**load, "threshold": threshold, "pairs": PAIRS, "calls": calls, "peak_rss_mib": _peak_mib(),
            "finite_scores": bool(torch.isfinite(scores).all())}


def _phase(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{args[1]} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phase", choices=["build", "query"], default=None, help="(internal) run one phase")
    ap.add_argument("--dir", default="/tmp/citation2_synth", help="where the graph is stored")
    ap.add_argument("--threshold", type=float, default=0.9, help="exit threshold of the query")
    args = ap.parse_args()
    folder = Path(args.dir)
    if args.phase == "build":
        folder.mkdir(parents=True, exist_ok=True)
        print(json.dumps(build(folder)))
        return
    if args.phase == "query":
        print(json.dumps(query(folder, args.threshold)))
        return
    from linkexit_fast.timing import cpu_model  # the parent loads the package only for this (its phases run in child processes)
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(),
               "memory_mib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20,
               "torch": torch.__version__, "load_average_before": os.getloadavg()}
    built = _phase("--phase", "build", "--dir", str(folder))
    queried = _phase("--phase", "query", "--dir", str(folder), "--threshold", str(args.threshold))
    machine["load_average_after"] = os.getloadavg()
    result = {"command": COMMAND, "machine": machine, "build": built, "query": queried,
              "model": {"backbone": "gcn", "exit": "node", "semantics": "freeze", "layers": LAYERS, "hidden": HIDDEN}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "citation2_scale.json").write_text(json.dumps(result, indent=1))
    q, b = queried, built
    warm = q["calls"][-1]
    lines = ["# A graph at ogbl-citation2 scale on one machine",
             "",
             f"`{COMMAND}` on {machine['cores']} cores, {machine['memory_mib']:,.0f} MiB (load average "
             f"{machine['load_average_before'][0]:.1f}: other jobs share the machine), torch {machine['torch']}, 1 thread.",
             f"Graph: synthetic, {b['nodes']:,} nodes, {b['undirected_edges']:,} undirected edges, {b['features']} "
             f"float32 features; model GCN node-exit (freeze), L = {LAYERS}, m = {HIDDEN}; {q['pairs']:,} random pairs "
             f"at threshold {q['threshold']}.",
             "",
             "| phase | seconds | peak RSS MiB | notes |",
             "|---|---|---|---|",
             f"| build (generate, {b['seconds_build_graph']:.0f} s; write, {b['seconds_write']:.0f} s) | "
             f"{b['seconds_build_graph'] + b['seconds_write']:.0f} | {b['peak_rss_mib']:,.0f} | on disk: "
             + ", ".join(f"{k} {v / 2**20:,.0f} MiB" for k, v in b["bytes_on_disk"].items()) + " |",
             f"| load (int32 CSR -> int64, features mapped, full Graph check) | {q['seconds_load']:.1f} | "
             f"{q['peak_rss_load_mib']:,.0f} | features not copied: {q['features_not_copied']}; RSS after "
             f"{q['rss_after_load_mib']:,.0f} MiB, of which file-backed (the mapped features) {q['rss_file_after_load_mib']:,.0f} |"]
    for i, c in enumerate(q["calls"]):
        lines.append(f"| predict, call {i + 1} | {c['seconds']:.1f} (GNN {c['time_gnn']:.1f}) | {c['peak_rss_mib']:,.0f} | "
                     f"RSS before {c['rss_before_mib']:,.0f}; {c['macs'] / 1e9:.0f} GMACs vs dense "
                     f"{c['macs_dense'] / 1e9:.0f} |")
    lines += ["", f"Whole query process peak RSS (getrusage): **{q['peak_rss_mib']:,.0f} MiB**; warm predict call "
              f"{warm['seconds']:.1f} s for {q['pairs']:,} pairs."]
    (OUT / "citation2_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
