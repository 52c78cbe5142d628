"""The measured Pareto frontier: test quality against the engine's wall-clock time and Eq. 6 FLOPs.

Trains (or reuses cached checkpoints of) fixed-depth models at each depth and node/subgraph-exit
models at the largest depth under both exit semantics, sweeps the inference threshold of the
early-exit models, and times the engine's full test evaluation for every point. The threshold is
swept by design (a list, not ``linkexit_fast.predict``'s single default). Every output (pareto.json,
pareto.md, the plot's title) names the test negatives the MRR was measured against.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from tqdm.auto import tqdm

from .checkpoint import load, save
from .datasets import LinkSplit
from .engine import predict
from .evaluate import flatten_eval_pairs, split_scores
from .metrics import evaluate_scores
from .timing import median_time
from .train_args import train_checkpoint

__all__ = ["run_pareto", "frontier", "model_grid", "table_runs"]


def model_grid(backbones: Sequence[str], layers: Sequence[int]) -> List[dict]:
    """Fixed depth at every depth; node and subgraph exit at the largest depth, both semantics."""
    grid = []
    for b in backbones:
        grid += [dict(backbone=b, exit="none", semantics="freeze", layers=l) for l in layers]
        grid += [dict(backbone=b, exit=e, semantics=s, layers=max(layers))
                 for e in ("node", "subgraph") for s in ("freeze", "readout")]
    return grid


def table_runs(runs: Path) -> List[Tuple[dict, int, Path]]:
    """``(spec, seed, checkpoint folder)`` of the runs in a ``benchmarks/table1.py`` runs folder
    (one sub-folder per cell, seed and learning rate, each with ``record.json`` and the model):
    per cell and seed the run with the best validation MRR, as the table selects. ``spec`` is the
    saved model's own (backbone, exit, semantics, layers). Raises FileNotFoundError if none."""
    best: Dict[tuple, Tuple[float, Path]] = {}
    for record in sorted(Path(runs).glob("*/record.json")):
        r = json.loads(record.read_text())
        key, mrr = (r["backbone"], r["exit"], r["layers"], r["seed"]), r["valid"].get("mrr", -1.0)
        if key not in best or mrr > best[key][0]:
            best[key] = (mrr, record.parent)
    if not best:
        raise FileNotFoundError(f"no table1 runs (*/record.json) under {runs}")
    out = []
    for (_, _, _, seed), (_, folder) in sorted(best.items()):
        c = load(folder).model.config
        out.append((dict(backbone=c.backbone, exit=c.exit, semantics=c.semantics, layers=c.layers), seed, folder))
    return out


def family(spec: dict) -> str:
    return f"{spec['backbone']} fixed" if spec["exit"] == "none" else \
        f"{spec['backbone']} {spec['exit']}-exit ({spec['semantics']})"


def frontier(points: List[dict], cost: str) -> List[bool]:
    """On the frontier: no other point has at least its MRR at no more cost, and is better in one."""
    flags = []
    for p in points:
        dominated = any(q is not p and q["mrr"] >= p["mrr"] and q[cost] <= p[cost]
                        and (q["mrr"] > p["mrr"] or q[cost] < p[cost]) for q in points)
        flags.append(not dominated)
    return flags


def eval_pairs(split: LinkSplit, eval_positives: Optional[int] = None):
    """(positives, negatives, all pairs) of the test evaluation, optionally on a seeded subsample
    of ``eval_positives`` positives (with their own HeaRT negatives)."""
    pos, neg = split.test_pos, split.test_neg
    if eval_positives is not None and eval_positives < len(pos):
        keep = torch.randperm(len(pos), generator=torch.Generator().manual_seed(0))[:eval_positives]
        pos = pos[keep]
        neg = neg[keep] if neg.dim() == 3 else neg
    return pos, neg, flatten_eval_pairs(pos, neg)


def run_pareto(split: LinkSplit, out: Path, backbones=("gcn",), layers=(1, 2, 4, 8),
               thresholds=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99), seeds: int = 1, repeats: int = 3,
               backend: str = "auto", train_overrides: Optional[dict] = None,
               eval_positives: Optional[int] = None, progress: bool = True,
               checkpoints: Optional[Sequence[Tuple[dict, int, Path]]] = None) -> dict:
    """Run (or resume) the sweep and write ``pareto.{json,md,png}`` into ``out``.

    ``checkpoints``: sweep these ``(spec, seed, folder)`` models (e.g. :func:`table_runs`)
    instead of training ``backbones`` x ``layers``. Cached points measured against other test
    negatives (or before negatives were recorded) are measured again, so one sweep never mixes
    negatives."""
    out = Path(out)
    (out / "points").mkdir(parents=True, exist_ok=True)
    if split.test_neg is None:
        raise ValueError(f"{split.name} has no test negatives; pass --test-negatives")
    pos, neg, pairs = eval_pairs(split, eval_positives)
    negatives = split.negatives_of("test").to_dict()
    if len(pos) < len(split.test_pos):
        negatives["label"] += f"; a seeded subsample of {len(pos):,} of {len(split.test_pos):,} positives"
    if checkpoints is None:
        jobs = [(spec, seed, out / "checkpoints" / checkpoint_name(spec, seed))
                for spec in model_grid(backbones, layers) for seed in range(seeds)]
    else:
        jobs = list(checkpoints)
        seeds = len({seed for _, seed, _ in jobs})
    raw: List[dict] = []
    bar = tqdm(jobs, desc="pareto", disable=not progress)
    for spec, seed, ckpt in bar:
        name = checkpoint_name(spec, seed)
        bar.set_postfix_str(name)
        if not (ckpt / "model.safetensors").exists():
            args = argparse.Namespace(seed=seed, quiet=True, hidden=None, dropout=None,
                                      predictor_layers=None, lr=None, weight_decay=None,
                                      batch_size=None, patience=None, eval_every=None,
                                      epochs=200, max_minutes=None, test_negatives=None, **spec)
            for k, v in (train_overrides or {}).items():
                setattr(args, k, v)
            model, result, _, _ = train_checkpoint(args, split, test=False)
            save(model, ckpt, metrics={"valid": result.best_valid, "epochs_run": result.epochs_run})
        model = load(ckpt).model
        for thr in (thresholds if spec["exit"] != "none" else (1.0,)):
            cache = out / "points" / f"{name}_t{thr}.json"
            if cache.exists():
                point = json.loads(cache.read_text())
                if point.get("negatives") == negatives["label"]:
                    raw.append(point)
                    continue
            seconds, scores = median_time(lambda: predict(split.graph, pairs, threshold=thr, model=model,
                                                          backend=backend), repeats)
            # Timed as a user calls it (plan "auto"); the MACs are the engine path's, whatever
            # the planner picked for speed.
            _, stats = predict(split.graph, pairs, threshold=thr, model=model, backend=backend,
                               return_stats=True, plan="engine")
            met = evaluate_scores(*split_scores(scores, pos, neg))
            point = dict(spec, seed=seed, family=family(spec), threshold=thr, seconds=seconds,
                         mrr=met.get("mrr"), hits10=met.get("hits@10"), flops=stats.flops,
                         flops_gnn=stats.flops_gnn, flops_paper=stats.flops_paper,
                         flops_dense=stats.flops_dense, time_gnn=stats.time_gnn,
                         time_decoder=stats.time_decoder, backend=stats.backend,
                         mean_exit_layer=float(stats.exit_layer.float().mean()),
                         negatives=negatives["label"])
            cache.write_text(json.dumps(point))
            raw.append(point)
    points = _average_over_seeds(raw)
    for cost in ("seconds", "flops_gnn"):
        for p, f in zip(points, frontier(points, cost)):
            p[f"frontier_{cost}"] = f
    result = {"dataset": split.name, "negatives": negatives, "thresholds_swept": list(thresholds),
              "test_pairs": len(pairs), "test_positives": len(pos),
              "seeds": seeds, "repeats": repeats, "points": points, "runs": raw,
              "dominance": dominance(points)}
    (out / "pareto.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, out / "pareto.md")
    plot(result, out / "pareto.png")
    return result


def _average_over_seeds(raw: List[dict]) -> List[dict]:
    groups: Dict[tuple, List[dict]] = {}
    for p in raw:
        groups.setdefault((p["family"], p["layers"], p["threshold"]), []).append(p)
    points = []
    for (fam, layers, thr), ps in groups.items():
        q = {k: ps[0][k] for k in ("family", "backbone", "exit", "semantics", "layers", "threshold")}
        for k in ("mrr", "hits10", "seconds", "flops", "flops_gnn", "flops_paper", "mean_exit_layer", "time_gnn",
                  "time_decoder"):
            q[k] = statistics.mean(p[k] for p in ps)
        q["mrr_std"] = statistics.stdev([p["mrr"] for p in ps]) if len(ps) > 1 else 0.0
        q["seeds"] = len(ps)
        points.append(q)
    return points


def dominance(points: List[dict]) -> dict:
    """Does an early-exit point have at least the best fixed-depth model's MRR at no more time?"""
    fixed = [p for p in points if p["exit"] == "none"]
    early = [p for p in points if p["exit"] != "none"]
    if not fixed or not early:
        return {}
    best = max(fixed, key=lambda p: p["mrr"])
    winners = [p for p in early if p["mrr"] >= best["mrr"] and p["seconds"] <= best["seconds"]]
    top = max(winners, key=lambda p: p["mrr"]) if winners else max(early, key=lambda p: p["mrr"])
    return {"best_fixed": best, "dominates": bool(winners), "best_early_exit": top}


def checkpoint_name(spec: dict, seed: int) -> str:
    """The sweep's folder name for ``spec``'s checkpoint of ``seed`` (under ``<out>/checkpoints``)."""
    return f"{spec['backbone']}_{spec['exit']}_{spec['semantics']}_L{spec['layers']}_s{seed}"


def label(p: dict) -> str:
    return f"{p['family']} L={p['layers']}" + (f" t={p['threshold']}" if p["exit"] != "none" else "")


def write_markdown(result: dict, path: Path) -> None:
    neg = result.get("negatives", {}).get("label", "negatives not recorded; NOT known to be HeaRT")
    lines = [f"# Pareto frontier on {result['dataset']}", "",
             f"Test MRR against: **{neg}**.", "",
             f"{result['test_positives']:,} test positives, {result['test_pairs']:,} pairs scored per "
             f"evaluation; {result['seeds']} seed(s); wall-clock is the median of {result['repeats']} "
             "full test evaluations by the engine. Early-exit models are swept over exit thresholds "
             f"{', '.join(map(str, result.get('thresholds_swept', [])))}; fixed-depth models run at 1.0.", "",
             "MACs: `engine GNN` is what the engine computed in the GNN stage (Eq. 6 over the nodes and "
             "edges it touched, plus exit heads and input transform), `total` adds the decoder, `paper` is "
             "the paper's Eq. 6 for the same forward (all non-exited nodes). The FLOPs frontier uses engine GNN MACs.", "",
             "| point | test MRR | Hits@10 | wall-clock (s) | engine GNN MACs | total MACs | Eq. 6 MACs (paper) | mean exit layer | frontier (time) | frontier (FLOPs) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in sorted(result["points"], key=lambda p: p["seconds"]):
        lines.append(f"| {label(p)} | {100 * p['mrr']:.2f} ± {100 * p['mrr_std']:.2f} | "
                     f"{100 * p['hits10']:.2f} | {p['seconds']:.3f} | {p['flops_gnn']:.3g} | {p['flops']:.3g} | "
                     f"{p['flops_paper']:.3g} | {p['mean_exit_layer']:.2f} | "
                     f"{'yes' if p['frontier_seconds'] else ''} | {'yes' if p['frontier_flops_gnn'] else ''} |")
    d = result.get("dominance")
    if d:
        b, e = d["best_fixed"], d["best_early_exit"]
        verdict = "dominates" if d["dominates"] else "does NOT dominate"
        lines += ["", f"Best fixed-depth model: {label(b)}, MRR {100 * b['mrr']:.2f} in {b['seconds']:.3f} s. "
                  f"Best early-exit point {'at no more time' if d['dominates'] else 'overall'}: "
                  f"{label(e)}, MRR {100 * e['mrr']:.2f} in {e['seconds']:.3f} s: early exit {verdict} "
                  "the best fixed-depth model."]
    path.write_text("\n".join(lines) + "\n")


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pts = result["points"]
    fams = sorted({p["family"] for p in pts})
    colors = {f: plt.cm.tab10(i % 10) for i, f in enumerate(fams)}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, cost, xlabel in ((axes[0], "seconds", "wall-clock of the full test evaluation (s)"),
                             (axes[1], "flops_gnn", "GNN MACs computed by the engine (Eq. 6)")):
        for f in fams:
            fp = sorted((p for p in pts if p["family"] == f), key=lambda p: p[cost])
            ax.plot([p[cost] for p in fp], [100 * p["mrr"] for p in fp], "o-" if len(fp) > 1 else "o",
                    color=colors[f], label=f, alpha=0.8)
        front = sorted((p for p in pts if p[f"frontier_{cost}"]), key=lambda p: p[cost])
        ax.step([p[cost] for p in front], [100 * p["mrr"] for p in front], "k--", where="post",
                label="frontier", linewidth=1)
        ax.set(xlabel=xlabel, ylabel="test MRR (%)", xscale="log")
        ax.grid(alpha=0.3)
    neg = result.get("negatives", {}).get("label", "negatives not recorded; NOT known to be HeaRT")
    axes[0].set_title(f"{result['dataset']}: quality vs measured time")
    axes[1].set_title("quality vs compute")
    fig.suptitle(f"test MRR against {neg}", fontsize=8)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
