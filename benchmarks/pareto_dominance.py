"""Re-time the points that decide a Pareto verdict, interleaved and many times over.

    python benchmarks/pareto_dominance.py --dataset ogbl:ddi --test-negatives runs/negatives/ogbl_ddi_test_heart.npy \\
        --eval-positives 400 --sweep runs/pareto_ddi --out benchmarks/results/pareto_ddi

A sweep times each point on its own (median of a few runs), so on a shared machine two points
that do the same work can differ by a third. This script takes the best fixed-depth model and
every early-exit point with at least its MRR (from the sweep's ``pareto.json``, seed 0's
checkpoints), times them in interleaved rounds (load changes hit all alike), and reports medians
with quartiles. Writes ``dominance.{md,json}`` into ``--out``.

``--table runs/table1/heart_citeseer`` takes the points from ``benchmarks/table1.py``'s runs
instead: each cell's test MRR is its mean over seeds (threshold 0.5, training's validation
threshold; fixed depth at 1.0), and seed 0's checkpoint is timed. With both, the points are a
``pareto --from-table`` sweep's (every threshold) and their checkpoints the table's runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Optional

import linkexit_fast as lf
from linkexit_fast.cli import _load_split
from linkexit_fast.pareto import checkpoint_name, eval_pairs, label, table_runs
from linkexit_fast.timing import round_order


def sweep_points(sweep: Path, table: Optional[Path] = None):
    """The points of a ``pareto`` sweep, each with its seed-0 checkpoint: from the sweep's own
    ``checkpoints/``, or for a ``pareto --from-table`` sweep from that table's runs folder."""
    points = json.loads((sweep / "pareto.json").read_text())["points"]
    if table is None:
        return [dict(p, label=label(p), checkpoint=sweep / "checkpoints" / checkpoint_name(p, 0)) for p in points]
    key = ("backbone", "exit", "semantics", "layers")
    seed0 = {tuple(spec[k] for k in key): folder for spec, seed, folder in table_runs(table) if seed == 0}
    return [dict(p, label=label(p), checkpoint=seed0[tuple(p[k] for k in key)]) for p in points]


def table_points(runs: Path):
    """One point per ``table1.py`` cell: mean test MRR over its seeds (each seed's run with the
    best validation MRR, as the table selects), seed 0's checkpoint."""
    cells = {}
    for spec, seed, folder in table_runs(runs):
        record = json.loads((folder / "record.json").read_text())
        cells.setdefault((spec["backbone"], spec["exit"], spec["layers"]), []).append((record, seed, folder))
    points = []
    for (backbone, exit, layers), recs in cells.items():
        seed0 = next((folder for _, seed, folder in recs if seed == 0), None)
        if seed0 is None:
            continue
        threshold = 1.0 if exit == "none" else 0.5
        points.append({"label": f"{backbone} {'fixed' if exit == 'none' else exit + '-exit'} L={layers} "
                                f"t={threshold} ({len(recs)} seeds)",
                       "exit": exit, "threshold": threshold, "checkpoint": seed0,
                       "mrr": statistics.mean(r["test"]["mrr"] for r, _, _ in recs)})
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--test-negatives", default=None)
    ap.add_argument("--eval-positives", type=int, default=None)
    ap.add_argument("--sweep", help="the pareto --out folder (pareto.json, and checkpoints/ unless --table)")
    ap.add_argument("--table", help="a benchmarks/table1.py runs folder (one sub-folder per run): alone, one "
                                    "point per cell; with --sweep, where a pareto --from-table sweep's checkpoints are")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not (args.sweep or args.table):
        ap.error("give --sweep, --table, or both")
    table = Path(args.table) if args.table else None
    points = sweep_points(Path(args.sweep), table) if args.sweep else table_points(table)
    best = max((p for p in points if p["exit"] == "none"), key=lambda p: p["mrr"])
    rivals = [p for p in points if p["exit"] != "none" and p["mrr"] >= best["mrr"]]
    split = _load_split(argparse.Namespace(dataset=args.dataset, data=None,
                                           test_negatives=args.test_negatives))
    _, _, pairs = eval_pairs(split, args.eval_positives)
    runs = [(p, lf.load(p["checkpoint"]).model) for p in [best] + rivals]
    times = {p["label"]: [] for p, _ in runs}
    for r in range(args.rounds + 1):  # the first round warms caches and is dropped
        for i in round_order(range(len(runs)), r):
            p, model = runs[i]
            t0 = time.perf_counter()
            lf.predict(split.graph, pairs, threshold=p["threshold"], model=model)
            times[p["label"]].append(time.perf_counter() - t0)
    rows = []
    for p, _ in runs:
        t = sorted(times[p["label"]][1:])
        q1, med, q3 = statistics.quantiles(t, n=4)
        rows.append({"point": p["label"], "mrr": p["mrr"], "median_s": med, "q1_s": q1, "q3_s": q3})
    ref = rows[0]
    lines = [f"# Dominance check on {split.name}", "",
             f"Command: `python benchmarks/pareto_dominance.py --dataset {args.dataset}"
             + (f" --test-negatives {args.test_negatives}" if args.test_negatives else "")
             + (f" --eval-positives {args.eval_positives}" if args.eval_positives else "")
             + (f" --sweep {args.sweep}" if args.sweep else "") + (f" --table {args.table}" if args.table else "")
             + f" --rounds {args.rounds} --out {args.out}`", "",
             f"{len(pairs):,} pairs per evaluation; {args.rounds} interleaved rounds after one warm-up round; "
             "seed 0's checkpoints; engine backend `auto` at each point's exit threshold (t=...).", "",
             f"Test MRR against: {split.negatives_of('test').label()}.", "",
             "| point | test MRR | median s | quartiles s | median vs best fixed | MRR >= and median <= best fixed |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "(best fixed)" if r is ref else ("yes" if r["median_s"] <= ref["median_s"] else "no")
        lines.append(f"| {r['point']} | {100 * r['mrr']:.2f} | {r['median_s']:.3f} | {r['q1_s']:.3f}–{r['q3_s']:.3f} | "
                     f"{r['median_s'] / ref['median_s']:.2f}x | {verdict} |")
    if not rivals:
        lines += ["", "No early-exit point reaches the best fixed-depth model's MRR: nothing to re-time."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dominance.md").write_text("\n".join(lines) + "\n")
    (out / "dominance.json").write_text(json.dumps({"rows": rows, "rounds": args.rounds}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
