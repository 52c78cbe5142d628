"""``linkexit-fast demo``: train a small early-exit GCN on a synthetic graph, say how far above
chance it ranks, then time the engine against the dense reference where the engine pays.

Two workloads, each timed against ``predict(..., backend="reference")`` (every node at every
layer, then gather-then-MLP scoring: what the paper's code does) with the same weights and
threshold, as medians of interleaved rounds:

* **query batch** (the headline): ``queries`` (100) candidate pairs on a large graph
  (``serve_nodes``, 200,000, built by :func:`~linkexit_fast.datasets.synthetic`). A feature GCN's weights do
  not depend on the node count, so the model trained on the small graph serves the large one.
  Here the scope (only what the query pairs need) and the exits both cut work.
* **full evaluation**: every valid and test pair of the training split, the pairs its quality
  is measured on. Every node is in scope; only the exits and the fused scoring cut work.

Quality is measured on the synthetic split's own negatives: as many uniformly random non-edges as
positives, shared by all positives (the "existing setting"), not HeaRT's hard negatives.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping

import torch

from .engine import EngineStats, predict, predict_chunks
from .models import EarlyExitLinkPredictor
from .report import DEFAULT_THRESHOLD
from .timing import cpu_model, interleaved_medians

__all__ = ["DemoConfig", "run_demo", "chance_metrics", "interleaved_medians"]


@dataclass
class DemoConfig:
    """Sizes of the demo. Defaults fit about two minutes of training on a 2-core CPU.

    train_nodes: nodes of the synthetic training graph (its split gives the quality numbers).
    serve_nodes: nodes of the synthetic graph the query batch is served on.
    queries: query pairs in the batch (half test positives, half random negatives of that graph).
    layers: GCN depth; epochs: the most training epochs; max_minutes: training's time cap.
    rounds: interleaved timing rounds per workload (after one uncounted warm-up call each).
    threshold: exit threshold, by default ``predict``'s (0.9).
    """
    train_nodes: int = 5000
    serve_nodes: int = 200_000
    queries: int = 100
    layers: int = 4
    epochs: int = 40
    max_minutes: float = 1.5
    rounds: int = 5
    threshold: float = DEFAULT_THRESHOLD
    seed: int = 0
    quiet: bool = False


def chance_metrics(num_negatives: int, ks=(10, 20, 50, 100)) -> Dict[str, float]:
    """Expected metrics of random (i.i.d. continuous) scores when every positive is ranked against
    one shared set of ``num_negatives`` (Q) negatives, as :func:`~linkexit_fast.metrics.existing_metrics`
    ranks them.

    A positive's rank among the Q + 1 scores is then uniform on 1..Q+1, so
    ``mrr = H_{Q+1} / (Q+1)`` (H_n the n-th harmonic number), ``hits@K = min(K, Q+1) / (Q+1)`` (it
    beats the K-th largest negative iff at most K-1 negatives lie above it; 1 when Q < K) and
    ``auc = 0.5``. The same formulas hold for HeaRT's setting with K per-positive negatives.
    """
    q1 = num_negatives + 1
    harmonic = sum(1.0 / r for r in range(1, q1 + 1))
    out = {f"hits@{k}": 1.0 if num_negatives < k else k / q1 for k in ks}
    out.update(mrr=harmonic / q1, auc=0.5)
    return out


def _machine() -> str:
    return f"{cpu_model()}, {torch.get_num_threads()} torch threads"


def _fmt(metrics: Mapping[str, float], keys) -> str:
    return ", ".join(f"{k} {metrics[k]:.4f}" for k in keys)


def _time_workload(out, title: str, graph, pairs, model, threshold: float, rounds: int,
                   what: str) -> float:
    """Times engine vs reference on ``pairs``, prints the lines and returns the speed-up."""
    # The warm-up calls, uncounted: they also check that both give the same scores.
    eng, st = predict(graph, pairs, threshold, model=model, return_stats=True)
    ref = predict(graph, pairs, threshold, model=model, backend="reference")
    t = interleaved_medians({
        "engine": lambda: predict(graph, pairs, threshold, model=model),
        "reference": lambda: predict(graph, pairs, threshold, model=model, backend="reference"),
    }, rounds, warmup=False)
    speedup = t["reference"] / t["engine"]
    planned = EngineStats(backend="auto", threshold=threshold)  # the plan the timed calls took
    for _ in predict_chunks(graph, lambda: [pairs], threshold, model=model, stats=planned):
        pass
    out(f"{title}: engine ({st.backend}, plan {planned.plan.split(' (')[0]}) {1e3 * t['engine']:.1f} ms vs dense reference "
        f"{1e3 * t['reference']:.1f} ms -> speed-up {speedup:.2f}x "
        f"(median of {rounds} interleaved rounds; dense/engine multiply-accumulates "
        f"{st.flops_dense / st.flops:.2f}x)")
    out(f"  reading: {what}, on this machine ({_machine()}), at exit threshold {threshold}: the "
        f"engine took {1 / speedup:.2f} of the wall-clock time of the dense reference (every node "
        f"through every layer, then gather-then-MLP scoring: the paper's code), same weights, "
        f"scores equal within {(eng - ref).abs().max().item():.1e}.")
    dist = torch.bincount(st.exit_layer.flatten(), minlength=model.config.layers + 1).double()
    out("  exit layer of the queried endpoints: " + " ".join(
        f"L{layer}:{100 * f:.0f}%" for layer, f in enumerate((dist / dist.sum()).tolist()) if layer or f)
        + f"; layer updates {sum(st.nodes_updated):,} vs dense {model.config.layers * graph.num_nodes:,}")
    return speedup


def run_demo(cfg: DemoConfig = DemoConfig(), out: Callable[[str], None] = print) -> Dict[str, Any]:
    """Runs the demo, printing through ``out``; returns its figures (seconds, ratios, metrics)."""
    from argparse import Namespace

    from .datasets import synthetic
    from .evaluate import flatten_eval_pairs, split_scores
    from .metrics import evaluate_scores
    from .train_args import train_checkpoint

    thr = cfg.threshold
    synth = dict(avg_degree=10, num_features=32, num_communities=8)
    split = synthetic(num_nodes=cfg.train_nodes, seed=cfg.seed, **synth)
    out(split.describe())
    targs = Namespace(hidden=64, layers=cfg.layers, backbone="gcn", exit="node", semantics="freeze",
                      dropout=0.1, predictor_layers=2, lr=0.01, weight_decay=0.0, batch_size=4096,
                      patience=5, eval_every=2, epochs=cfg.epochs, seed=cfg.seed,
                      max_minutes=cfg.max_minutes, quiet=cfg.quiet, test_negatives=None)
    model, result, _, _ = train_checkpoint(targs, split, test=False)
    out(f"trained {result.epochs_run} epochs in {result.seconds:.0f} s ({result.stopped}); best "
        f"validation epoch {result.best_epoch}")

    # Quality: engine scores of every valid and test pair at the serving threshold.
    q = len(split.test_neg)
    chance = chance_metrics(q)
    keys = ("mrr", "hits@20", "hits@100", "auc")
    out(f"quality on the synthetic split's random negatives (not HeaRT): each test positive ranked "
        f"against {q:,} shared uniformly random non-edges (1 negative per positive; valid: "
        f"{len(split.valid_neg):,}), engine scores at exit threshold {thr}")
    out(f"  chance (random scores, exact) for the test's {q:,} negatives: {_fmt(chance, keys)}")
    res: Dict[str, Any] = {"threshold": thr, "chance": chance, "train_seconds": result.seconds}
    eval_pairs = {}
    for part, pos, neg in (("valid", split.valid_pos, split.valid_neg),
                           ("test", split.test_pos, split.test_neg)):
        eval_pairs[part] = flatten_eval_pairs(pos, neg)
        met = evaluate_scores(*split_scores(predict(split.graph, eval_pairs[part], thr, model=model),
                                            pos, neg))
        res[part] = met
        out(f"  trained model, {part}: {_fmt(met, keys)} (chance mrr "
            f"{chance_metrics(len(neg))['mrr']:.4f})")
    torch.manual_seed(12345)
    rnd = EarlyExitLinkPredictor(model.config).eval()
    untrained = evaluate_scores(*split_scores(predict(split.graph, eval_pairs["test"], thr, model=rnd),
                                              split.test_pos, split.test_neg))
    out(f"  untrained (random weights), test: {_fmt(untrained, keys)}")
    t, c = res["test"], chance
    out(f"  reading: test MRR {t['mrr']:.4f} is {t['mrr'] / c['mrr']:.0f}x chance ({c['mrr']:.5f}), "
        f"Hits@20 {t['hits@20']:.3f} is {t['hits@20'] / c['hits@20']:.0f}x chance "
        f"({c['hits@20']:.5f}), AUC {t['auc']:.3f} vs 0.5")

    # (a) Query batch on a large graph: the headline.
    t0 = time.perf_counter()
    big = synthetic(num_nodes=cfg.serve_nodes, seed=cfg.seed + 1, **synth)
    build_s = time.perf_counter() - t0
    out(f"serving graph: synthetic, {big.graph.num_nodes:,} nodes, "
        f"{big.graph.num_undirected_edges:,} undirected edges, built in {build_s:.1f} s; same trained weights (a feature GCN does not depend on the "
        f"node count)")
    half = cfg.queries // 2
    queries = flatten_eval_pairs(big.test_pos[:cfg.queries - half], big.test_neg[:half])
    res["query_speedup"] = _time_workload(
        out, f"HEADLINE: {len(queries):,} query pairs on {big.graph.num_nodes:,} nodes", big.graph,
        queries, model, thr, cfg.rounds,
        f"scoring {len(queries):,} candidate pairs of a {big.graph.num_nodes:,}-node graph")

    # (b) Full evaluation of the training split.
    everything = torch.cat([eval_pairs["valid"], eval_pairs["test"]])
    res["eval_speedup"] = _time_workload(
        out, f"full evaluation: {len(everything):,} valid+test pairs on {split.graph.num_nodes:,} nodes",
        split.graph, everything, model, thr, cfg.rounds,
        f"scoring every valid and test pair of the {split.graph.num_nodes:,}-node training split "
        f"(every node in scope)")
    res["serve_build_seconds"] = build_s
    return res
