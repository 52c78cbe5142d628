"""Graph-partitioned inference on the 1M-node synthetic graph: the bytes each layer exchanges, as
exits shrink the scope, and a model of the time at 8, 32 and 64 machines.

Workload: ``test_engine_bench.case("synthetic1M-100k")``: the node-exit GCN (L = 3, m = 256,
freeze semantics, trained on a 20k-node synthetic graph) on the 1M-node degree-corrected SBM
(50 communities), 100k uniformly random pairs. The graph is partitioned with METIS (pymetis)
into 2, 4 and 8 shards; each shard is written to disk and each rank (a local process, gloo,
1 thread) loads only its own. At thresholds 0.5 and 0.9 and with exits off (1.0, which never
exits), one call of :func:`linkexit_fast.partitioned.predict` per threshold records
:class:`~linkexit_fast.partitioned.PartitionStats` (bytes per layer by kind, summed over the
ranks) and its scores, checked against the single-process engine. With 4 and 8 ranks the 2 cores
are oversubscribed: bytes are exact whatever the load, times are not (reported for 2 ranks only).

The scaling model (written out in the .md): per layer, the bytes a machine sends over the
network's bandwidth plus one latency per message of each collective, plus the single-process
compute time (1 thread, measured here) shared evenly; the early-exit system's bytes at P
machines are the full-graph bytes at P (every halo row, from METIS partitions into P parts,
counted exactly) times the fraction of them the 8-rank run measured.

    python benchmarks/partitioned_bytes.py   # -> benchmarks/results/partitioned_bytes.{json,md,png}
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import linkexit_fast as lf
from linkexit_fast import distributed, partitioned
from linkexit_fast.timing import cpu_model, interleaved_medians

OUT = Path("benchmarks/results")
COMMAND = "python benchmarks/partitioned_bytes.py"
THRESHOLDS = (0.5, 0.9, 1.0)
NETWORK = {"bandwidth_bytes_per_s": 25e9 / 8, "latency_s": 20e-6, "name": "25 Gb/s, 20 us per message"}


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), MB. Not getrusage: a spawned rank's ru_maxrss
    carries its parent's peak across the exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _on_rank(folder: str, model, pairs) -> dict:
    shard = partitioned.Shard.load(Path(folder) / f"rank{distributed.rank()}.safetensors")
    out = {}
    for t in THRESHOLDS:
        st = partitioned.PartitionStats(shard.world, t)
        torch.distributed.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        scores = partitioned.predict(shard, pairs, t, model=model, stats=st)
        torch.distributed.barrier()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        cpus = [None] * shard.world
        torch.distributed.all_gather_object(cpus, cpu)
        st.endpoints = st.exit_layer = None
        out[t] = {"scores": scores, "stats": st.__dict__.copy(), "wall_s": wall, "cpu_s_per_rank": cpus}
    rss = [None] * shard.world
    torch.distributed.all_gather_object(rss, _peak_rss_mb())
    out["peak_rss_mb_per_rank"] = rss
    return out


def _compute_s(run: dict) -> float:
    """Seconds of computing (the halo bookkeeping included) summed over a run's ranks: each rank's
    wall-clock less its time inside the collectives (which includes waiting for the others)."""
    return run["stats"]["world"] * run["wall_s"] - run["stats"]["exchange_s"]


def _model_time(compute_s: float, per_layer_bytes, exchanges, machines: int) -> dict:
    """Seconds at ``machines``: compute shared evenly, each machine sending its share of the bytes
    at the bandwidth, each collective costing one latency per peer (no overlap: pessimistic)."""
    net = sum(b / machines / NETWORK["bandwidth_bytes_per_s"] for b in per_layer_bytes)
    lat = sum(exchanges) * (machines - 1) * NETWORK["latency_s"]
    return {"compute_s": compute_s / machines, "bandwidth_s": net, "latency_s": lat,
            "total_s": compute_s / machines + net + lat}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--model-machines", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--nodes", type=int, default=None, help="a smaller synthetic graph (a dry run); default: the 1M case")
    ap.add_argument("--pairs", type=int, default=10_000, help="random pairs with --nodes")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the single-process timings")
    ap.add_argument("--out", default=str(OUT / "partitioned_bytes"))
    ap.add_argument("--report-only", action="store_true", help="redraw the .md and .png from the .json")
    args = ap.parse_args()
    out = Path(args.out)
    if args.report_only:
        result = _keys_back(json.loads(out.with_suffix(".json").read_text()))
        out.with_suffix(".md").write_text(_markdown(result))
        _plot(result, out.with_suffix(".png"))
        return
    sys.path.insert(0, "benchmarks")
    from test_engine_bench import case, synthetic_model
    torch.set_num_threads(1)
    if args.nodes is None:
        graph, pairs, model = case("synthetic1M-100k")
    else:
        from linkexit_fast.datasets import synthetic
        graph, model = synthetic(args.nodes, 10, 64, 50, 0).graph, synthetic_model()
        pairs = torch.randint(0, args.nodes, (args.pairs, 2), generator=torch.Generator().manual_seed(0))
    m = model.config.hidden
    print(f"graph {graph.num_nodes} nodes, {graph.num_undirected_edges} edges; {pairs.shape[0]} pairs", flush=True)
    # single-process, 1 thread: the scores to match, and the compute of a full-graph system (the
    # dense forward at exits off) against the engine's, in interleaved rounds
    single = {}
    for t in THRESHOLDS:
        scores, st = lf.predict(graph, pairs, t, model=model, plan="engine", return_stats=True)
        single[t] = {"scores": scores, "endpoints_exited": int((st.exit_layer < model.config.layers).sum()),
                     "endpoint_slots": int(st.exit_layer.numel()), "nodes_updated": st.nodes_updated}
    fns = {f"engine t={t}": (lambda t=t: lf.predict(graph, pairs, t, model=model, plan="engine")) for t in THRESHOLDS}
    fns["dense t=1.0"] = lambda: lf.predict(graph, pairs, 1.0, model=model, plan="dense")
    times = interleaved_medians(fns, args.rounds)
    for t in THRESHOLDS:
        single[t]["wall_s"] = times[f"engine t={t}"]
    full_graph_compute = times["dense t=1.0"]
    print("single process (1 thread), medians:", {k: round(v, 2) for k, v in times.items()}, flush=True)
    runs, halo = {}, {}
    for world in sorted(set(args.ranks) | set(args.model_machines)):
        t0 = time.perf_counter()
        parts = partitioned.partition(graph, world, "metis")
        shards = partitioned.build_shards(graph, parts)
        prep = time.perf_counter() - t0
        halo[world] = {"halo_rows": sum(s.halo.numel() for s in shards),
                       "largest_part": max(s.nodes.numel() for s in shards), "partition_s": prep}
        print(f"{world} parts: halo rows {halo[world]['halo_rows']}, {prep:.1f} s", flush=True)
        if world not in args.ranks:
            continue
        with tempfile.TemporaryDirectory(prefix="linkexit_shards_") as folder:
            for s in shards:
                s.save(Path(folder) / f"rank{s.rank}.safetensors")
            del shards
            got = distributed.launch(_on_rank, world, folder, model, pairs, threads=1, timeout=3600)
        runs[world] = {"peak_rss_mb_per_rank": got.pop("peak_rss_mb_per_rank")}
        for t in THRESHOLDS:
            r = got[t]
            r["max_abs_diff_vs_single"] = float((r.pop("scores") - single[t]["scores"]).abs().max())
            runs[world][t] = r
            s = r["stats"]
            print(f"  t={t}: states {[round(b / 1e6, 1) for b in s['state_bytes']]} MB, full "
                  f"{[round(b / 1e6, 1) for b in s['full_graph_bytes']]} MB, max diff {r['max_abs_diff_vs_single']:.1e}, "
                  f"{r['wall_s']:.1f} s", flush=True)
    # the scaling model: bytes from the largest measured run, compute from the 2-rank one (each rank
    # on its own core: its CPU seconds are not inflated by sharing one)
    ref, ref_compute = max(runs), min(runs)
    L = model.config.layers
    model_rows = []
    for P in args.model_machines:
        full = [halo[P]["halo_rows"] * m * 4] * L
        row = {"machines": P, "halo_rows": halo[P]["halo_rows"],
               "full_graph": _model_time(full_graph_compute, full, [1] * L, P)}
        for t in THRESHOLDS:
            s = runs[ref][t]["stats"]
            share = [(a + c) / f if f else 0.0 for a, c, f in zip(s["state_bytes"], s["control_bytes"],
                                                                  s["full_graph_bytes"])]
            ee = [f * x for f, x in zip(full, share)]
            row[t] = _model_time(_compute_s(runs[ref_compute][t]), ee, s["exchanges"], P)
        model_rows.append(row)
    result = {
        "command": COMMAND, "machine": cpu_model(), "cpus": os.cpu_count(), "threads_per_process": 1,
        "workload": {"nodes": graph.num_nodes, "undirected_edges": graph.num_undirected_edges, "pairs": int(pairs.shape[0]),
                     "model": {k: getattr(model.config, k) for k in ("backbone", "exit", "semantics", "layers", "hidden")}},
        "single": {t: {k: v for k, v in d.items() if k != "scores"} for t, d in single.items()},
        "single_rounds": args.rounds,
        "full_graph_compute_s": full_graph_compute, "halo": halo, "runs": runs, "network": NETWORK,
        "model_reference_ranks": ref, "model_compute_ranks": ref_compute, "scaling_model": model_rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    out.with_suffix(".md").write_text(_markdown(result))
    _plot(result, out.with_suffix(".png"))
    print("wrote", out.with_suffix(".md"))


def _keys_back(r: dict) -> dict:
    """The result as written (rank counts and thresholds as keys), from its JSON (keys as text)."""
    def num(k):
        return int(k) if k.isdigit() else float(k) if k.replace(".", "", 1).isdigit() else k
    r["runs"] = {int(w): {num(k): v for k, v in run.items()} for w, run in r["runs"].items()}
    r["single"] = {float(t): v for t, v in r["single"].items()}
    r["scaling_model"] = [{num(k): v for k, v in row.items()} for row in r["scaling_model"]]
    return r


def _markdown(r: dict) -> str:
    w = r["workload"]
    mb = lambda b: f"{b / 1e6:.1f}"  # noqa: E731
    lines = ["# Graph-partitioned inference: bytes exchanged per layer\n",
             f"`{r['command']}`, on {r['machine']} ({r['cpus']} CPUs, {r['threads_per_process']} torch thread per "
             f"process). Workload: "
             f"{w['nodes']:,} nodes, {w['undirected_edges']:,} undirected edges, {w['pairs']:,} uniformly random "
             f"pairs; model {w['model']}. METIS partitions (pymetis); each rank a local process (gloo) holding only "
             f"its shard. Bytes are summed over the ranks and are exact whatever the load; 'full graph' is what a "
             f"system without scope or exits sends (every halo row's state, every layer). Layer l's bytes are "
             f"the input of layer l's aggregation.\n",
             "| ranks | threshold | endpoints exited | states sent per layer (MB) | full graph per layer (MB) | "
             "states / full | control (MB) | frozen rows not resent | outputs (MB) | collectives per rank | "
             "max abs score diff vs 1 process |", "|" + "---|" * 11]
    for world, run in r["runs"].items():
        for t in (0.5, 0.9, 1.0):
            x = run[t]
            s = x["stats"]
            sent, full = sum(s["state_bytes"]), sum(s["full_graph_bytes"])
            frozen = sum(s["frozen_rows"])
            share = frozen / (frozen + sum(s["rows_sent"])) if frozen else 0.0
            single = r["single"][t]
            lines.append(f"| {world} | {t} | {single['endpoints_exited'] / single['endpoint_slots']:.1%} | "
                         f"{' / '.join(mb(b) for b in s['state_bytes'])} | {' / '.join(mb(b) for b in s['full_graph_bytes'])} | "
                         f"{sent / full:.2f} | {mb(sum(s['control_bytes']))} | {frozen:,} ({share:.1%} of the halo rows read) | "
                         f"{mb(s['output_bytes'])} | {sum(s['exchanges'])} | {x['max_abs_diff_vs_single']:.1e} |")
    lines += ["", "Seconds per call, 2 ranks (each on its own core): " + "; ".join(
        f"t={t}: wall {x['wall_s']:.2f}, in collectives {x['stats']['exchange_s'] / 2:.2f} per rank, computing "
        f"{_compute_s(x):.2f} over both" for t, x in ((t, r["runs"][min(r["runs"])][t])
                                                      for t in (0.5, 0.9, 1.0))) + ".",
        "", "Peak RSS per rank (MB): " + "; ".join(
        f"{world} ranks: {', '.join(f'{v:.0f}' for v in run['peak_rss_mb_per_rank'])}" for world, run in r["runs"].items()),
        "", "Wall-clock per call (s; 2 ranks on the 2 cores, 1 thread each, is the only unshared case): " + "; ".join(
        f"{world} ranks: " + ", ".join(f"t={t} {run[t]['wall_s']:.1f}" for t in (0.5, 0.9, 1.0))
        for world, run in r["runs"].items()),
        "; single process (1 thread, plan engine): " + ", ".join(
            f"t={t} {r['single'][t]['wall_s']:.1f}" for t in (0.5, 0.9, 1.0))
        + f"; full-graph dense forward at exits off: {r['full_graph_compute_s']:.1f}.", ""]
    net = r["network"]
    lines += [f"## Scaling model: {net['name']}\n",
              "Per call: `T(P) = C / P + sum_l B_l(P) / P / bandwidth + X (P - 1) latency`, with `C` the compute: "
              f"for the early-exit engine the seconds all ranks of the {r['model_compute_ranks']}-rank run spent "
              "outside the collectives (each rank on its own core; its halo bookkeeping included), for the full-graph system the single-process dense forward at "
              "exits off (1 thread, no partitioning overhead at all: favourable to it), `B_l(P)` the bytes of layer l over all machines and `X` the collectives each "
              "machine runs per call. Assumptions: the compute shares out evenly (the METIS parts are balanced to "
              "3 %) and scales linearly; each machine sends `1/P` of the bytes, full duplex, without contention in "
              "the switch; every collective pays one latency per peer, none overlapped with compute (pessimistic "
              "for large P, where a real all-to-all pipelines its messages). `B_l(P)` for the full-graph system "
              f"is exact (every halo row of a METIS partition into P parts, m = {w['model']['hidden']} float32); "
              f"for the early-exit engine it is that times the fraction (states plus control) measured with "
              f"{r['model_reference_ranks']} ranks, layer by layer: the assumption is that exits shrink the "
              "exchange by the same fraction at any P.\n",
              "| machines | halo rows | full graph: compute + bandwidth + latency = total (ms) | "
              "early exit t=0.9 (ms) | early exit t=0.5 (ms) | engine, exits off (ms) | speed-up vs full graph: t=0.9 / t=0.5 |",
              "|---|---|---|---|---|---|---|"]
    fmt = lambda d: f"{d['compute_s'] * 1e3:.0f} + {d['bandwidth_s'] * 1e3:.1f} + {d['latency_s'] * 1e3:.1f} = {d['total_s'] * 1e3:.0f}"  # noqa: E731
    for row in r["scaling_model"]:
        g = row.__getitem__
        lines.append(f"| {row['machines']} | {row['halo_rows']:,} | {fmt(row['full_graph'])} | {fmt(g(0.9))} | "
                     f"{fmt(g(0.5))} | {fmt(g(1.0))} | {row['full_graph']['total_s'] / g(0.9)['total_s']:.2f}x / "
                     f"{row['full_graph']['total_s'] / g(0.5)['total_s']:.2f}x |")
    return "\n".join(lines) + "\n"


def _plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(r["runs"]), figsize=(4.2 * len(r["runs"]), 3.4), sharey=False)
    axes = [axes] if len(r["runs"]) == 1 else axes
    for ax, (world, run) in zip(axes, r["runs"].items()):
        layers = None
        for t, style in ((1.0, "k-o"), (0.9, "C0-s"), (0.5, "C1-^")):
            s = run[t]["stats"]
            layers = range(len(s["full_graph_bytes"]))
            sent = s["state_bytes"] + [0] * (len(s["full_graph_bytes"]) - len(s["state_bytes"]))
            ax.plot(layers, [b / 1e6 for b in sent], style, label=f"early exit, t={t}" if t < 1 else "exits off (t=1.0)")
        ax.plot(layers, [b / 1e6 for b in s["full_graph_bytes"]], "k:", label="full graph (every halo row)")
        ax.set_title(f"{world} ranks (METIS)")
        ax.set_xlabel("layer (input of its aggregation)")
        ax.set_xticks(list(layers))
    axes[0].set_ylabel("halo states sent, MB (all ranks)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"1M-node synthetic graph, {r['workload']['pairs']:,} random pairs, node-exit GCN L=3 m=256", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
