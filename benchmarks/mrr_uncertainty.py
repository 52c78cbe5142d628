"""How precisely a Table 1 cell's MRR is known: per seed, a bootstrap confidence interval over the
evaluation set's positives; for the cell, the seeds' spread and an interval for their mean.

    python benchmarks/mrr_uncertainty.py --cell resgcn:node:8 --lrs 0.0005 0.001 0.002 --dropouts 0 0.1 0.2
    # -> benchmarks/results/mrr_uncertainty.{md,json}

Reads the runs ``benchmarks/table1.py`` trained (``--runs``, default ``runs/table1``), picks each
seed's run on validation MRR as the table does (:func:`table1.best_run`), scores its validation and
test sets with the reference forward at exit threshold 0.5 (the table's), and resamples the
positives, each with its own 500 negatives (scipy.stats.bootstrap, percentile intervals, 10,000
resamples, seeded). The cell's interval resamples positives jointly across seeds (the seeds share
the positives), so it covers the evaluation set's sampling noise of the 3-seed mean, not the
seeds' own: that is the seeds' standard deviation beside it. Trains nothing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import bootstrap

sys.path.insert(0, str(Path(__file__).resolve().parent))
import table1  # noqa: E402

import linkexit_fast as lf  # noqa: E402
from linkexit_fast.evaluate import flatten_eval_pairs, reference_scores, split_scores  # noqa: E402
from linkexit_fast.metrics import heart_ranks  # noqa: E402

THRESHOLD = 0.5  # Table 1's test threshold (training's validation threshold)


@torch.no_grad()
def reciprocal_ranks(model, graph, pos, neg) -> np.ndarray:
    """1 / rank of each positive among its own negatives ``[P]`` (HeaRT's MRR is their mean)."""
    logits, _ = reference_scores(model, graph, flatten_eval_pairs(pos, neg), THRESHOLD)
    return (1.0 / heart_ranks(*split_scores(logits, pos, neg))).numpy()


def interval(values: np.ndarray, seed: int = 0) -> tuple:
    res = bootstrap((values,), np.mean, n_resamples=10_000, confidence_level=0.95,
                    method="percentile", random_state=seed)
    return float(res.confidence_interval.low), float(res.confidence_interval.high), float(res.standard_error)


def main(argv=None):
    from linkexit_fast.cli import _load_split
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="heart:citeseer")
    ap.add_argument("--cell", default="resgcn:node:8", help="backbone:exit:L")
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.0005, 0.001, 0.002])
    ap.add_argument("--dropouts", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--num-negatives", type=int, default=1, help="the runs' training negatives per positive")
    ap.add_argument("--runs", default="runs/table1")
    ap.add_argument("--target", type=float, default=24.5, help="an MRR (%%) to place against the intervals")
    ap.add_argument("--out", default="benchmarks/results/mrr_uncertainty")
    args = ap.parse_args(argv)
    backbone, exit, layers = args.cell.split(":")
    split = _load_split(argparse.Namespace(dataset=args.dataset, data=None, test_negatives=None,
                                           make_heart_negatives=args.dataset.startswith("heart:")))
    run_args = argparse.Namespace(runs=args.runs, cached_only=True, num_negatives=args.num_negatives)
    seeds, rr = [], {"valid": [], "test": []}
    for seed in args.seeds:
        best = table1.best_run(split, args.dataset, backbone, exit, int(layers), seed, args.lrs, args.dropouts, run_args)
        if best is None:
            sys.exit(f"no runs of {args.cell} seed {seed} under {args.runs}: train them with benchmarks/table1.py")
        model = lf.load(best["run_dir"]).model
        row = {"seed": seed, "run": best["run_dir"], "lr": best["lr"], "dropout": best["dropout"]}
        for which in ("valid", "test"):
            values = reciprocal_ranks(model, split.graph, getattr(split, f"{which}_pos"), getattr(split, f"{which}_neg"))
            rr[which].append(values)
            low, high, se = interval(values, seed)
            row[which] = {"mrr": float(values.mean()), "ci95": [low, high], "standard_error": se,
                          "positives": int(values.size)}
        seeds.append(row)
        print(json.dumps(row), flush=True)
    cell = {}
    for which in ("valid", "test"):
        per_positive = np.mean(rr[which], axis=0)  # the 3-seed mean's terms, positive by positive
        low, high, se = interval(per_positive)
        mrrs = [float(v.mean()) for v in rr[which]]
        cell[which] = {"mean_mrr": float(per_positive.mean()), "ci95": [low, high], "standard_error": se,
                       "seed_std": statistics.stdev(mrrs) if len(mrrs) > 1 else 0.0}
    negatives = {w: split.negatives_of(w).label() for w in ("valid", "test")}
    result = {"command": "python benchmarks/mrr_uncertainty.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "dataset": args.dataset, "cell": args.cell, "threshold": THRESHOLD, "negatives": negatives,
              "seeds": seeds, "cell_summary": cell, "target": args.target}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))

    def pct(x):
        return f"{100 * x:.2f}"
    lines = [f"# How precisely {args.dataset}'s {args.cell} MRR is known", "",
             f"Command: `{result['command']}`", "",
             f"Each seed's run picked on validation MRR over lr {args.lrs} x dropout {args.dropouts} "
             f"(as `benchmarks/table1.py`); reference forward at exit threshold {THRESHOLD}; 95 % percentile "
             f"bootstrap intervals over the positives (each with its own negatives), 10,000 resamples "
             f"(scipy.stats.bootstrap). Validation negatives: {negatives['valid']}. Test negatives: "
             f"{negatives['test']}.", "",
             "| seed | lr | dropout | valid MRR | 95 % interval | test MRR | 95 % interval | test standard error |",
             "|---|---|---|---|---|---|---|---|"]
    for r in seeds:
        v, t = r["valid"], r["test"]
        lines.append(f"| {r['seed']} | {r['lr']} | {r['dropout']} | {pct(v['mrr'])} | {pct(v['ci95'][0])}-{pct(v['ci95'][1])} | "
                     f"{pct(t['mrr'])} | {pct(t['ci95'][0])}-{pct(t['ci95'][1])} | {pct(t['standard_error'])} |")
    lines += ["", "| set | mean over seeds | 95 % interval (positives resampled jointly) | standard error | seeds' std |",
              "|---|---|---|---|---|"]
    for which, c in cell.items():
        lines.append(f"| {which} ({seeds[0][which]['positives']} positives) | {pct(c['mean_mrr'])} | "
                     f"{pct(c['ci95'][0])}-{pct(c['ci95'][1])} | {pct(c['standard_error'])} | {pct(c['seed_std'])} |")
    t = cell["test"]
    inside = t["ci95"][0] * 100 <= args.target <= t["ci95"][1] * 100
    lines += ["", f"The target {args.target} is {'inside' if inside else 'outside'} the test mean's 95 % interval "
              f"({pct(t['ci95'][0])}-{pct(t['ci95'][1])}): on these negatives the test set "
              f"{'cannot' if inside else 'can'} tell the mean from the target by its own sampling noise alone."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
