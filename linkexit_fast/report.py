"""Evaluation reports: metrics, exit-layer distribution, pair resolution, compute per layer (Eq. 6),
AUROC per resolution layer; JSON plus matplotlib figures."""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch

from .checkpoint import Predictor
from .datasets import LinkSplit, Negatives
from .engine import paper_flops, predict
from .evaluate import flatten_eval_pairs, split_scores
from .metrics import evaluate_scores
from .ranking import exact_heart_metrics

# The one default exit threshold of eval, reports and the CLI: linkexit_fast.predict's own.
DEFAULT_THRESHOLD: float = inspect.signature(predict).parameters["threshold"].default


def negatives_label(negatives: Union[Negatives, dict, None]) -> str:
    """The label of a :class:`~linkexit_fast.datasets.Negatives` (or its ``to_dict()``); reports
    written before negatives were recorded get an explicit "not recorded" label."""
    if isinstance(negatives, Negatives):
        return negatives.label()
    if isinstance(negatives, dict) and "label" in negatives:
        return negatives["label"]
    return "negatives not recorded; NOT known to be HeaRT"


def metrics_line(part: str, metrics: dict, negatives: Union[Negatives, dict, None]) -> str:
    """One console line: ``test MRR 0.3412, hits@10 ... (random negatives (...), 1 shared set of
    455; NOT HeaRT)``; MRR first, values as fractions."""
    keys = sorted(metrics, key=lambda k: k != "mrr")  # stable: the rest keep their order
    vals = ", ".join(f"{'MRR' if k == 'mrr' else k} {metrics[k]:.4f}" for k in keys
                     if isinstance(metrics[k], (int, float)))
    return f"{part} {vals} ({negatives_label(negatives)})"


def _auroc(pos: np.ndarray, neg: np.ndarray) -> Optional[float]:
    if len(pos) == 0 or len(neg) == 0:
        return None
    from .metrics import existing_metrics
    return float(existing_metrics(torch.from_numpy(pos), torch.from_numpy(neg))["auc"])


def eval_report(pred: Predictor, split: LinkSplit, threshold: float = DEFAULT_THRESHOLD,
                backend: str = "auto", which=("valid", "test"), precision: str = "fp32") -> dict:
    """Everything the ``eval`` command writes, as a JSON-able dict: per evaluated split its
    ``metrics`` beside the ``negatives`` they were scored against (a
    :meth:`~linkexit_fast.datasets.Negatives.to_dict`), at exit ``threshold`` (default:
    ``linkexit_fast.predict``'s).

    ``precision="bf16"`` computes MRR and Hits@K with
    :func:`~linkexit_fast.ranking.exact_heart_metrics` (bf16 scores, fp32 re-scoring of the
    negatives their error bound leaves undecided): the same values as ``"fp32"``, faster, plus
    ``rescored`` counts. It needs per-positive (HeaRT) negatives ``[P, K, 2]`` (ValueError
    otherwise, before anything runs) and, having no fp32 score for every pair, leaves out the
    AUROC per resolution layer (``None``) and the engine's per-layer counts."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    model, graph = pred.model, split.graph
    parts = [p for p in which if getattr(split, f"{p}_neg") is not None and len(getattr(split, f"{p}_pos"))]
    if precision == "bf16":
        shared = [p for p in parts if getattr(split, f"{p}_neg").dim() != 3]
        if shared:
            raise ValueError(f"precision='bf16' needs per-positive (HeaRT) negatives [P, K, 2]; the {shared} "
                             f"negatives of {split.name} are one shared set: use precision='fp32'")
    c = model.config
    out: Dict[str, object] = {"config": c.to_dict(), "threshold": threshold, "dataset": split.name}
    with torch.no_grad():
        fwd = model(graph, mode=model.eval_mode, threshold=threshold)
    L = c.layers
    counts = torch.bincount(fwd.exit_layer, minlength=L + 1).float()
    out["exit_distribution"] = (counts / counts.sum()).tolist()
    out["mean_exit_layer"] = float(fwd.exit_layer.float().mean())
    m = c.hidden
    k = 2 if c.backbone == "sas" else 1
    out["compute_per_layer_paper"] = [nv * k * m * m + ne * m for nv, ne in zip(fwd.active_nodes, fwd.active_edges)]
    e_full = graph.col.numel() + (graph.num_nodes if model.self_loops else 0)
    out["compute_per_layer_fixed_depth"] = [graph.num_nodes * k * m * m + e_full * m] * L
    out["flops_paper"] = paper_flops(model, fwd.active_nodes, fwd.active_edges)
    for part in parts:
        pos, neg = getattr(split, f"{part}_pos"), getattr(split, f"{part}_neg")
        pairs = flatten_eval_pairs(pos, neg)
        if precision == "bf16":
            exact = exact_heart_metrics(model, graph, pos, neg, threshold, backend=backend)
            metrics = {k_: v for k_, v in exact.items() if k_.startswith(("mrr", "hits@"))}
            # the engine's exit layers are the reference forward's (the engine contract)
            layer, auroc = fwd.exit_layer[pairs].max(1).values, None
            extra = {"rescored": {k_: exact[k_] for k_ in ("rescored", "rescored_share", "refined_bf16x3")}}
        else:
            # plan="engine": the report shows what the engine's scope and exits spare, whatever the
            # planner would pick for speed (the scores are the same on every plan).
            scores, st = predict(graph, pairs, threshold=threshold, model=model, backend=backend,
                                 return_stats=True, plan="engine")
            metrics = evaluate_scores(*split_scores(scores, pos, neg))
            layer = st.exit_layer.max(1).values  # a pair resolves when its later endpoint exits
            labels = torch.zeros(len(pairs), dtype=torch.bool)
            labels[:len(pos)] = True
            auroc = {l: _auroc(scores[(layer == l) & labels].numpy(), scores[(layer == l) & ~labels].numpy())
                     for l in range(L + 1)}
            extra = {"engine": {k_: v for k_, v in st.as_dict().items() if isinstance(v, (int, float, str, list))}}
        out[part] = {"metrics": metrics, "negatives": split.negatives_of(part).to_dict(), "pairs": len(pairs),
                     "precision": precision,
                     "resolved_fraction_per_layer": (torch.bincount(layer, minlength=L + 1).float() / len(layer)).tolist(),
                     "auroc_per_resolution_layer": auroc, **extra}
    return out


def plot_report(report: dict, out_dir: Path) -> List[Path]:
    """Write the report's figures as PNG files; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    L = report["config"]["layers"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ax.bar(range(L + 1), report["exit_distribution"], color="tab:blue")
    ax.set(xlabel="exit layer", ylabel="fraction of nodes", title=f"Exit layers (threshold {report['threshold']})")
    ax = axes[1]
    for part, color in (("valid", "tab:green"), ("test", "tab:red")):
        if part in report:
            ax.plot(range(L + 1), np.cumsum(report[part]["resolved_fraction_per_layer"]), "o-",
                    color=color, label=part)
    ax.set(xlabel="layer", ylabel="pairs resolved (cumulative)", title="Pair resolution", ylim=(0, 1.05))
    ax.legend()
    ax = axes[2]
    ax.plot(range(L), np.cumsum(report["compute_per_layer_fixed_depth"]), "k--", label="fixed depth")
    ax.plot(range(L), np.cumsum(report["compute_per_layer_paper"]), "o-", label="early exit (Eq. 6)")
    for part in ("valid", "test"):
        if "engine" in report.get(part, {}):  # bf16 reports have no engine counts
            eng = report[part]["engine"]
            m = report["config"]["hidden"]
            k = 2 if report["config"]["backbone"] == "sas" else 1
            per = [nv * k * m * m + ne * m for nv, ne in zip(eng["nodes_updated"], eng["edges_aggregated"])]
            ax.plot(range(len(per)), np.cumsum(per), "s-", label=f"engine ({part} pairs)")
    ax.set(xlabel="layer", ylabel="cumulative MACs", title="Compute per layer", yscale="log")
    ax.legend()
    fig.suptitle(f"{report.get('dataset', '')}, exit threshold {report['threshold']}:\n" + "\n".join(
        f"{part} MRR {report[part]['metrics'].get('mrr', float('nan')):.4f} vs "
        f"{negatives_label(report[part].get('negatives'))}" for part in ("valid", "test") if part in report),
        fontsize=8)
    fig.tight_layout()
    path = out_dir / "report.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def write_report(report: dict, out_dir: Path) -> List[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float))
    return [out_dir / "report.json", *plot_report(report, out_dir)]


def compare(reports: Dict[str, dict], out_dir: Path) -> List[Path]:
    """Several checkpoints side by side: a markdown table and one figure (test MRR vs Eq. 6 compute)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = ["| model | backbone | exit | semantics | L | threshold | test MRR | Hits@10 | negatives | "
            "mean exit layer | Eq. 6 MACs |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    fig, ax = plt.subplots(figsize=(6, 4))
    fixed = {n: r for n, r in reports.items() if r["config"]["exit"] == "none" and "valid" in r}
    if fixed:  # the oracle of the paper's Fig. 4: the fixed depth with the best validation MRR
        best = max(fixed, key=lambda n: fixed[n]["valid"]["metrics"].get("mrr", 0.0))
        reports = dict(reports, **{f"oracle (= {best})": fixed[best]})
    labels = set()
    for name, r in reports.items():
        c = r["config"]
        part = "test" if "test" in r else "valid"  # a report without a test split shows validation
        t = r.get(part, {}).get("metrics", {})
        neg = f"{part}: {negatives_label(r.get(part, {}).get('negatives'))}"
        labels.add(neg)
        mrr = t.get("mrr", float("nan"))
        rows.append(f"| {name} | {c['backbone']} | {c['exit']} | {c['semantics']} | {c['layers']} | "
                    f"{r.get('threshold', 'not recorded')} | {100 * mrr:.2f} | "
                    f"{100 * t.get('hits@10', float('nan')):.2f} | {neg} | "
                    f"{r['mean_exit_layer']:.2f} | {r['flops_paper']:.3g} |")
        ax.scatter(r["flops_paper"], 100 * mrr, label=name)
    title = labels.pop() if len(labels) == 1 else "MIXED negatives: see compare.md; not comparable"
    ax.set(xlabel="Eq. 6 MACs (GNN)", ylabel="test MRR (%)", xscale="log")
    ax.set_title(f"Checkpoints compared\n{title}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "compare.png", dpi=110)
    plt.close(fig)
    (out_dir / "compare.md").write_text("\n".join(rows) + "\n")
    return [out_dir / "compare.md", out_dir / "compare.png"]
