"""Query-sharded inference throughput: ``linkexit_fast.distributed.predict`` on 1 and 2 ranks
(local processes, gloo, 1 thread each) against the same pairs, on the 1M-node synthetic graph
with 100k uniformly random pairs (``test_engine_bench.case("synthetic1M-100k")``: the node-exit
GCN, L = 3, m = 256, trained on a 20k-node synthetic graph, served on the 1M-node one).

Each rank loads the checkpoint (model + graph) itself; a timed call is a barrier, then one
``distributed.predict`` (split, the rank's engine run, the all-gather of the scores), then a
barrier; one warm-up call, then ``--rounds`` timed calls, median. Throughput = pairs / median
seconds. Each rank then runs the single-process engine on its share alone (no collectives), for
its wall and CPU seconds and its multiply-accumulates (MACs, ``EngineStats.flops``): the MACs do
not depend on what else runs on the machine, so they show the balance and the work a rank is
spared even when the cores are oversubscribed.

    python benchmarks/distributed_throughput.py   # -> benchmarks/results/distributed_throughput.{json,md}
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import linkexit_fast as lf
from linkexit_fast import distributed
from linkexit_fast.engine import EngineStats, predict_chunks
from linkexit_fast.timing import cpu_model

OUT = Path("benchmarks/results")
COMMAND = "python benchmarks/distributed_throughput.py"


def _prepare(folder: str) -> dict:
    """In its own process (its 1M-node build's memory goes when it exits): the checkpoint and pairs."""
    sys.path.insert(0, "benchmarks")
    from test_engine_bench import case
    graph, pairs, model = case("synthetic1M-100k")
    lf.save(model, Path(folder) / "ckpt", graph=graph)
    torch.save(pairs, Path(folder) / "pairs.pt")
    return {"nodes": graph.num_nodes, "undirected_edges": graph.num_undirected_edges,
            "features": graph.num_features, "pairs": int(pairs.shape[0]),
            "model": {k: getattr(model.config, k) for k in ("backbone", "exit", "semantics", "layers", "hidden",
                                                            "predictor_layers")}}


def _barrier():
    if distributed.world_size() > 1:
        torch.distributed.barrier()


def _barrier_time(fn) -> float:
    """Seconds from every rank starting ``fn`` to every rank done."""
    _barrier()
    t0 = time.perf_counter()
    fn()
    _barrier()
    return time.perf_counter() - t0


def _rank(folder: str, thresholds, rounds: int) -> dict:
    pred = lf.load(Path(folder) / "ckpt")
    pairs = torch.load(Path(folder) / "pairs.pt")
    world, out = distributed.world_size(), {}
    for t in thresholds:
        scores = distributed.predict(pred, pairs, t)  # warm-up
        times = [_barrier_time(lambda: distributed.predict(pred, pairs, t)) for _ in range(rounds)]
        order, bounds = distributed.split_pairs(pairs, pred.graph, pred.model, world)
        me = distributed.rank()
        share = pairs[order[bounds[me]:bounds[me + 1]]]
        st = EngineStats(backend="auto", threshold=t)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in predict_chunks(pred, lambda: [share], t, stats=st):
            pass
        mine = {"pairs": int(share.shape[0]), "engine_seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0, "macs": st.flops, "macs_gnn": st.flops_gnn,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        every = [mine] * world
        if world > 1:
            torch.distributed.all_gather_object(every, mine)
        out[t] = {"seconds": times, "scores": scores, "ranks": every}
    return out


def _machine() -> dict:
    mem = next(int(line.split()[1]) // 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_mib": mem, "python": platform.python_version(),
            "torch": torch.__version__, "load_average_before": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--thresholds", default="0.9,1.0", help="exit thresholds (1.0: no exits)")
    ap.add_argument("--rounds", type=int, default=2, help="timed calls per threshold and rank count")
    args = ap.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    machine = _machine()
    with tempfile.TemporaryDirectory(prefix="dist_bench_") as folder:
        case = distributed.launch(_prepare, 1, folder)
        runs = {world: distributed.launch(_rank, world, folder, thresholds, args.rounds, threads=1)
                for world in (1, 2)}
    machine["load_average_after"] = os.getloadavg()
    rows = []
    for t in thresholds:
        one, two = runs[1][t], runs[2][t]
        diff = (one["scores"] - two["scores"]).abs()
        row = {"threshold": t}
        for world, run in runs.items():
            med = statistics.median(run[t]["seconds"])
            row[f"{world}_ranks"] = {"seconds": run[t]["seconds"], "median_seconds": med,
                                     "pairs_per_second": case["pairs"] / med, "ranks": run[t]["ranks"]}
        row["speedup"] = row["1_ranks"]["median_seconds"] / row["2_ranks"]["median_seconds"]
        # The speedup the work allows on idle cores: all MACs over the busiest rank's.
        row["mac_bound_speedup"] = one["ranks"][0]["macs"] / max(r["macs"] for r in two["ranks"])
        row["max_abs_score_difference"] = float(diff.max())
        row["scores_bitwise_equal"] = int((diff == 0).sum())
        rows.append(row)
    result = {"command": COMMAND, "machine": machine, "case": case, "threads_per_rank": 1, "rounds": args.rounds,
              "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "distributed_throughput.json").write_text(json.dumps(result, indent=1))
    render(result)


def render(result: dict) -> None:
    """``distributed_throughput.md`` from the results (rerun it alone after a change of format)."""
    machine, case, rows, m = result["machine"], result["case"], result["rows"], result["case"]["model"]
    lines = ["# Query-sharded inference: 1 and 2 ranks, 1 thread each",
             "",
             f"`{COMMAND}` on {machine['cpu']} ({machine['cores']} cores, {machine['memory_mib']:,} MiB; "
             f"load average {machine['load_average_before'][0]:.1f} before, {machine['load_average_after'][0]:.1f} "
             f"after: other jobs share these cores), torch {machine['torch']}, gloo on 127.0.0.1.",
             f"Graph: synthetic, {case['nodes']:,} nodes, {case['undirected_edges']:,} undirected edges, "
             f"{case['features']} features. Model: {m['backbone']} {m['exit']}-exit ({m['semantics']}), "
             f"L = {m['layers']}, m = {m['hidden']}, {m['predictor_layers']}-layer scorer. "
             f"{case['pairs']:,} uniformly random pairs. Median of {result['rounds']} timed calls after a warm-up.",
             "",
             "| threshold | ranks | median s | pairs/s | speedup (MAC bound) | per-rank pairs | per-rank GMACs (GNN) | "
             "per-rank engine s (CPU s) | peak RSS MiB per rank |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for world in (1, 2):
            r = row[f"{world}_ranks"]
            speedup = f"{row['speedup']:.2f}x ({row['mac_bound_speedup']:.2f}x)" if world == 2 else "1"
            per_rank = [" / ".join(f"{x['pairs']:,}" for x in r["ranks"]),
                        " / ".join(f"{x['macs'] / 1e9:.1f} ({x['macs_gnn'] / 1e9:.1f})" for x in r["ranks"]),
                        " / ".join(f"{x['engine_seconds']:.2f} ({x['cpu_seconds']:.2f})" for x in r["ranks"]),
                        " / ".join(f"{x['peak_rss_mib']:,.0f}" for x in r["ranks"])]
            lines.append(f"| {row['threshold']} | {world} | {r['median_seconds']:.2f} | {r['pairs_per_second']:,.0f} | "
                         f"{speedup} | " + " | ".join(per_rank) + " |")
    lines += ["", "Scores, 2 ranks against 1: " + "; ".join(
        f"threshold {r['threshold']}: max |difference| {r['max_abs_score_difference']:.2g}, "
        f"{r['scores_bitwise_equal']:,} of {case['pairs']:,} bitwise equal" for r in rows) + ".",
              "",
              "Reading: the MAC bound (all the work over the busiest rank's, from `EngineStats.flops`) is "
              "the speedup the split allows on idle cores; the wall-clock speedup is what this shared "
              "machine gave: there a rank's wall seconds are about twice its CPU seconds (the cores "
              "are oversubscribed), and its CPU seconds fall less than its MACs. A rank's GNN stage covers its endpoints' 3-hop fields, which for random "
              "pairs on this graph are most of it, so query sharding saves mostly the scoring and the "
              "last layers; the GNN work is shared only by partitioning the graph (not implemented)."]
    (OUT / "distributed_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
