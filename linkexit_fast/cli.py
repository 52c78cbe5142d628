"""Command line: ``linkexit-fast demo|train|eval|compare|predict|heart-negatives``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def _load_split(args):
    from .datasets import load_dataset
    split = load_dataset(args.dataset, getattr(args, "data", None))
    tn = getattr(args, "test_negatives", None)
    if tn:
        from .heart import load_negatives
        split.test_neg = load_negatives(tn)
        split.missing.pop("heart_test_samples.npy", None)
    return split


def _train_args(p):
    p.add_argument("--dataset", default="synthetic", help="heart:<name>, planetoid:<name>, ogbl:<name>, "
                   "synthetic[:N] or a dataset folder (named datasets live under $LINKEXIT_DATA)")
    p.add_argument("--data", default=None, help="data root (default: $LINKEXIT_DATA or ../shared/data)")
    p.add_argument("--backbone", default="gcn", choices=["gcn", "resgcn", "sas"])
    p.add_argument("--exit", default="node", choices=["none", "node", "subgraph"])
    p.add_argument("--semantics", default="freeze", choices=["freeze", "readout"])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--predictor-layers", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-negatives", default=None, help=".npy of [P, K, 2] test negatives (HeaRT sampler)")
    p.add_argument("--quiet", action="store_true")


def train_checkpoint(args, split=None, test: bool = True):
    """Train one model from CLI-style arguments; returns (model, split, result, test_metrics, cfg).

    ``test=False`` skips the test evaluation (the Pareto sweep measures test quality itself)."""
    from .evaluate import evaluate
    from .train import TrainConfig, build_model, dataset_defaults, train
    split = split or _load_split(args)
    torch.manual_seed(args.seed)
    model = build_model(split, hidden=args.hidden, layers=args.layers, backbone=args.backbone,
                        exit=args.exit, semantics=args.semantics, dropout=args.dropout,
                        predictor_layers=args.predictor_layers)
    tcfg = dataset_defaults(split.name)["train"]
    for key in ("lr", "weight_decay", "batch_size", "patience", "eval_every"):
        if getattr(args, key, None) is not None:
            tcfg[key] = getattr(args, key)
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, max_minutes=args.max_minutes, **tcfg)
    result = train(model, split, cfg, progress=not args.quiet)
    test = evaluate(model, split.graph, split.test_pos, split.test_neg, cfg.eval_threshold) \
        if test and split.test_neg is not None else {}
    return model, split, result, test, cfg


def cmd_train(args):
    from dataclasses import asdict
    from .checkpoint import save
    model, split, result, test, cfg = train_checkpoint(args)
    out = Path(args.out)
    metrics = {"valid": result.best_valid, "test": test, "best_epoch": result.best_epoch,
               "epochs_run": result.epochs_run, "seconds": result.seconds, "stopped": result.stopped,
               "dataset": split.name, "train_config": asdict(cfg),
               "test_negatives": args.test_negatives or "dataset default",
               "missing": split.missing}
    save(model, out, graph=split.graph, metrics=metrics, extra={"dataset": split.name})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "history.json").write_text(json.dumps(result.history))
    print(f"saved {out}: valid {json.dumps(result.best_valid)}\n  test {json.dumps(test)}")


def cmd_eval(args):
    from .checkpoint import load
    from .report import eval_report, write_report
    pred = load(args.checkpoint)
    split = _load_split(args)
    report = eval_report(pred, split, threshold=args.threshold, backend=args.backend)
    paths = write_report(report, Path(args.out))
    for part in ("valid", "test"):
        if part in report:
            print(part, json.dumps(report[part]["metrics"]))
    print("wrote", ", ".join(map(str, paths)))


def cmd_compare(args):
    from .report import compare
    reports = {Path(p).parent.name if Path(p).name == "report.json" else Path(p).name:
               json.loads((Path(p) if Path(p).suffix == ".json" else Path(p) / "report.json").read_text())
               for p in args.reports}
    print("wrote", ", ".join(map(str, compare(reports, Path(args.out)))))


def cmd_predict(args):
    """Scores every pair of the file, streaming: the file is read ``--batch-size`` lines at a
    time (twice: the endpoints first, then the scores) and the scores are written as they come,
    so memory is bounded by the graph and the batch, not by the file."""
    from .checkpoint import load
    from .engine import PAIR_CHUNK, EngineStats, predict_chunks
    from .pairs_io import iter_pair_chunks
    pred = load(args.checkpoint)
    st = EngineStats(backend=args.backend, threshold=args.threshold)
    batch = args.batch_size or PAIR_CHUNK
    parts = predict_chunks(pred, lambda: iter_pair_chunks(args.pairs, batch), threshold=args.threshold,
                           backend=args.backend, stats=st)
    for pairs, scores in parts:
        sys.stdout.write("".join(f"{u}\t{v}\t{s:.6f}\n" for (u, v), s in zip(pairs.tolist(), scores.tolist())))
    print(f"# engine {st.backend}: {st.flops:.3g} MACs vs dense {st.flops_dense:.3g}; "
          f"gnn {st.time_gnn * 1e3:.1f} ms, decoder {st.time_decoder * 1e3:.1f} ms", file=sys.stderr)


def _positive_int(text: str) -> int:
    """argparse type of a count option: a whole number >= 1."""
    from .validation import check_count
    try:
        return check_count(int(text), "value", minimum=1)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None


def cmd_heart_negatives(args):
    from .heart import generate_negatives, save_negatives
    split = _load_split(args)
    t0 = time.time()
    neg = generate_negatives(split, which=args.which, k=args.k, seed=args.seed)
    save_negatives(neg, args.out)
    print(f"wrote {args.out}: {tuple(neg.shape)} in {time.time() - t0:.1f} s")


def cmd_pareto(args):
    from .pareto import run_pareto
    split = _load_split(args)
    if split.name.startswith("synthetic"):  # the embedded default finishes within minutes
        args.layers = args.layers or "1,2,4"
        args.epochs = args.epochs or 12
    args.layers = args.layers or "1,2,4,8"
    overrides = {k: getattr(args, k) for k in ("hidden", "epochs", "max_minutes", "lr") if getattr(args, k) is not None}
    run_pareto(split, Path(args.out), backbones=args.backbones.split(","),
               layers=[int(x) for x in args.layers.split(",")],
               thresholds=[float(x) for x in args.thresholds.split(",")], seeds=args.seeds,
               repeats=args.repeats, backend=args.backend, train_overrides=overrides,
               eval_positives=args.eval_positives)
    print((Path(args.out) / "pareto.md").read_text())


def cmd_demo(args):
    """Train a small early-exit model on the synthetic default, then serve its test pairs."""
    from .datasets import synthetic
    from .engine import predict
    from .evaluate import flatten_eval_pairs, split_scores
    from .metrics import evaluate_scores
    from .timing import median_time
    split = synthetic(num_nodes=args.nodes, avg_degree=10, num_features=32, num_communities=8, seed=0)
    print(split.describe())
    targs = argparse.Namespace(hidden=64, layers=args.layers, backbone="gcn", exit="node",
                               semantics="freeze", dropout=0.1, predictor_layers=2, lr=0.01,
                               weight_decay=0.0, batch_size=4096, patience=4, eval_every=2,
                               epochs=args.epochs, seed=0, max_minutes=1.5, quiet=False,
                               test_negatives=None)
    model, split, result, test, _ = train_checkpoint(targs, split)
    print(f"trained {result.epochs_run} epochs in {result.seconds:.0f} s ({result.stopped})")
    pairs = flatten_eval_pairs(split.test_pos, split.test_neg)
    rnd = build_random_like(model)
    for name, mdl in (("trained", model), ("untrained", rnd)):
        s = predict(split.graph, pairs, threshold=args.threshold, model=mdl)
        met = evaluate_scores(*split_scores(s, split.test_pos, split.test_neg))
        print(f"{name:>9} model: test " + ", ".join(f"{k} {v:.4f}" for k, v in met.items()))
    scores, st = predict(split.graph, pairs, threshold=args.threshold, model=model, return_stats=True)
    L = model.config.layers
    layers = st.exit_layer.flatten()
    dist = torch.bincount(layers, minlength=L + 1).float() / layers.numel()
    print("exit-layer distribution of queried endpoints: " +
          " ".join(f"L{l}:{100 * f:.0f}%" for l, f in enumerate(dist.tolist())))
    t_eng = median_time(lambda: predict(split.graph, pairs, threshold=args.threshold, model=model), 5)[0]
    t_ref = median_time(lambda: predict(split.graph, pairs, threshold=args.threshold, model=model,
                                         backend="reference"), 5)[0]
    small = pairs[:100]
    t_eng_small = median_time(lambda: predict(split.graph, small, threshold=args.threshold, model=model), 5)[0]
    t_ref_small = median_time(lambda: predict(split.graph, small, threshold=args.threshold, model=model,
                                               backend="reference"), 5)[0]
    print(f"engine backend {st.backend}: {st.flops:.3g} MACs vs dense reference {st.flops_dense:.3g} "
          f"(FLOP ratio {st.flops_dense / st.flops:.2f}x)")
    print(f"all {len(pairs):,} test pairs: engine {1e3 * t_eng:.1f} ms vs dense reference "
          f"{1e3 * t_ref:.1f} ms (median of 5) -> speed-up {t_ref / t_eng:.2f}x")
    print(f"100 pairs: engine {1e3 * t_eng_small:.1f} ms vs dense reference {1e3 * t_ref_small:.1f} ms "
          f"-> speed-up {t_ref_small / t_eng_small:.2f}x")


def build_random_like(model):
    from .models import EarlyExitLinkPredictor
    torch.manual_seed(12345)
    return EarlyExitLinkPredictor(model.config).eval()


def main(argv=None):
    from .backends import BackendUnavailable
    parser = argparse.ArgumentParser(prog="linkexit-fast", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("demo", help="train on the synthetic default, then predict and time the engine")
    p.add_argument("--nodes", type=int, default=20000)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threshold", type=float, default=0.9)
    p.set_defaults(fn=cmd_demo)
    p = sub.add_parser("train", help="train a model and save a self-contained checkpoint")
    _train_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("eval", help="evaluate a checkpoint: JSON + PNG report")
    p.add_argument("checkpoint")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data", default=None)
    p.add_argument("--test-negatives", default=None)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--backend", default="auto")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_eval)
    p = sub.add_parser("compare", help="several eval reports side by side")
    p.add_argument("reports", nargs="+", help="report.json files or eval output folders")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_compare)
    p = sub.add_parser("predict", help="score node pairs from a file with a saved predictor")
    p.add_argument("checkpoint")
    p.add_argument("pairs", help="text file of 'u v' lines (read twice, so not a pipe)")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--backend", default="auto")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="pairs read and scored at a time (bounds the memory; default engine.PAIR_CHUNK)")
    p.set_defaults(fn=cmd_predict)
    p = sub.add_parser("pareto", help="measured Pareto frontier: test MRR vs wall-clock and FLOPs")
    p.add_argument("--dataset", default="synthetic:5000")
    p.add_argument("--data", default=None)
    p.add_argument("--test-negatives", default=None)
    p.add_argument("--backbones", default="gcn")
    p.add_argument("--layers", default=None, help="default 1,2,4,8 (synthetic: 1,2,4)")
    p.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.9,0.95,0.99")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backend", default="auto")
    p.add_argument("--eval-positives", type=int, default=None, help="subsample test positives (large sets)")
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--max-minutes", type=float, default=None, help="training time cap per model")
    p.add_argument("--out", default="runs/pareto")
    p.set_defaults(fn=cmd_pareto)
    p = sub.add_parser("heart-negatives", help="HeaRT hard negatives (HRST) for a split")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data", default=None)
    p.add_argument("--which", default="test", choices=["valid", "test"])
    p.add_argument("--k", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_heart_negatives)
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, FileNotFoundError, TypeError, BackendUnavailable) as e:
        parser.exit(2, f"linkexit-fast {args.cmd}: error: {e}\n")


if __name__ == "__main__":
    main()
