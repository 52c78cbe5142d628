"""Where nodes exit and what the computation costs per layer (the paper's Fig. 4), for trained
checkpoints: per layer, the share of nodes already resolved (exited) and the cumulative Eq. 6
message-passing cost of the still-active nodes, against a fixed-depth model of the same L.

    python benchmarks/exit_profile.py --dataset heart:citeseer --checkpoints runs/table1/heart_citeseer/*_L8_s0

Each checkpoint runs the reference forward on the dataset's full graph at exit threshold 0.5
(training's validation threshold). Writes ``benchmarks/results/exit_profile_<dataset>.{md,png}``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def profile(model, graph, threshold: float) -> dict:
    """Per layer l = 0..L-1: the share of nodes resolved before layer l's update (exit layer
    <= l: judged at l or earlier, so they skip it) and the cumulative Eq. 6 cost of the updates,
    ``m * (k m + deg + self-loop)`` MACs per updating node (k = 2 for SAS-GNN's two m x m
    products, else 1), against every node updating."""
    model.eval()
    with torch.no_grad():
        exit_layer = model(graph, mode="threshold", threshold=threshold).exit_layer
    from linkexit_fast.engine.stats import layer_k
    m, n = model.config.hidden, graph.num_nodes
    deg1 = graph.deg.to(torch.float64) + (1.0 if model.self_loops else 0.0)
    per_node = m * (layer_k(model) * m + deg1)  # Eq. 6 per node, as engine.stats.paper_flops
    cost = [float(per_node[exit_layer > l].sum()) for l in range(model.config.layers)]
    full = float(per_node.sum())
    return {"resolved": [float((exit_layer <= l).sum()) / n for l in range(model.config.layers)],
            "cumulative": [sum(cost[:i + 1]) for i in range(len(cost))],
            "cumulative_fixed": [full * (i + 1) for i in range(len(cost))],
            "mean_exit_layer": float(exit_layer.float().mean())}


def main(argv=None):
    from linkexit_fast.checkpoint import load
    from linkexit_fast.datasets import load_dataset
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="heart:citeseer")
    ap.add_argument("--checkpoints", nargs="+", required=True)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    split = load_dataset(args.dataset)
    rows = {}
    for path in args.checkpoints:
        pred = load(path)
        if pred.model.config.exit == "none":
            continue
        rows[Path(path).name] = profile(pred.model, split.graph, args.threshold)
    if not rows:
        sys.exit("no early-exit checkpoint among --checkpoints")
    stem = args.out or f"benchmarks/results/exit_profile_{args.dataset.replace(':', '_')}"
    lines = [f"# Exit profile on {args.dataset} (threshold {args.threshold}, reference forward, all "
             f"{split.graph.num_nodes:,} nodes)", "",
             f"Command: `python benchmarks/exit_profile.py {' '.join(sys.argv[1:] if argv is None else argv)}`", "",
             "Per layer: share of nodes resolved before its update (exit layer <= l) / cumulative Eq. 6 "
             "MACs of the updates so far as a share of the same-depth fixed model's (exit heads not counted).", "",
             "| model | mean exit layer | " + " | ".join(f"layer {l}" for l in range(len(next(iter(rows.values()))["resolved"]))) + " |",
             "|---|---|" + "---|" * len(next(iter(rows.values()))["resolved"])]
    for name, p in rows.items():
        cells = [f"{100 * r:.0f}% / {100 * c / f:.0f}%" for r, c, f in
                 zip(p["resolved"], p["cumulative"], p["cumulative_fixed"])]
        lines.append(f"| {name} | {p['mean_exit_layer']:.2f} | " + " | ".join(cells) + " |")
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    Path(stem + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, p in rows.items():
        layers = range(len(p["resolved"]))
        a.plot(layers, [100 * r for r in p["resolved"]], marker="o", label=name)
        b.plot(layers, [100 * c / f for c, f in zip(p["cumulative"], p["cumulative_fixed"])], marker="o", label=name)
    a.set(xlabel="layer", ylabel="nodes resolved (%)", title=f"{args.dataset}: nodes exited before each layer")
    b.set(xlabel="layer", ylabel="cumulative cost (% of fixed depth)", title="Eq. 6 MACs, cumulative")
    a.legend(fontsize=7)
    fig.suptitle(f"threshold {args.threshold}, reference forward on the full graph", fontsize=9)
    fig.tight_layout()
    fig.savefig(stem + ".png", dpi=110)


if __name__ == "__main__":
    main()
