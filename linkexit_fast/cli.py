"""Command line: ``linkexit-fast datasets|train|eval|compare|predict|heart-negatives|pareto|demo``.

Every metric printed or saved names the negatives it was scored against (HeaRT's official hard
negatives, HeaRT-style ones from this package's sampler, or random ones) and the exit threshold.
Data is read from --data, else $LINKEXIT_DATA, else ../shared/data (`linkexit-fast datasets`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


# Where --make-heart-negatives caches what it generates (relative to the working directory).
NEGATIVES_DIR = Path("runs/negatives")


def heart_negatives_path(split, which: str) -> Path:
    """The cache file of ``split``'s generated HeaRT-style ``which`` negatives, e.g.
    ``runs/negatives/citeseer_test_heart.npy`` for ``heart:citeseer``."""
    stem = split.name.removeprefix("heart:").replace(":", "_").replace("-", "_")
    return NEGATIVES_DIR / f"{stem}_{which}_heart.npy"


def use_heart_style_negatives(split, which: str) -> None:
    """Give ``split`` 500 HeaRT-style ``which`` negatives per positive from this package's sampler
    (seed 0), read from their cache file (:func:`heart_negatives_path`) or made and cached there."""
    from .heart import generate_negatives, load_negatives, save_negatives
    path = heart_negatives_path(split, which)
    if not path.exists():
        print(f"generating HeaRT-style {which} negatives for {split.name} with "
              f"linkexit_fast's sampler -> {path}", file=sys.stderr, flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_negatives(generate_negatives(split, which=which, k=500, seed=0), path)
    else:
        print(f"using cached HeaRT-style {which} negatives {path} (delete it to regenerate)",
              file=sys.stderr, flush=True)
    split.set_negatives(which, load_negatives(path), "heart-sampler", path)


def _warn(text: str) -> None:
    print(f"linkexit-fast: WARNING: {text}", file=sys.stderr, flush=True)


def _load_split(args, warn: bool = True):
    """The dataset of ``args.dataset`` (under ``args.data``), with ``--test-negatives`` applied
    and, with ``--make-heart-negatives``, HeaRT-style negatives generated (or read from their
    cache, :func:`heart_negatives_path`) for every split of a ``heart:*`` dataset that lacks
    official ones. With ``warn``, says on stderr which splits of a ``heart:*`` dataset are still
    scored against random negatives, and the command that fixes it."""
    from .datasets import _file_negatives, load_dataset
    from .heart import load_negatives
    split = load_dataset(args.dataset, getattr(args, "data", None))
    tn = getattr(args, "test_negatives", None)
    if tn:
        split.set_negatives("test", load_negatives(tn), _file_negatives(tn), tn)
    if not split.has_heart_protocol:
        if getattr(args, "make_heart_negatives", False):
            _warn(f"--make-heart-negatives applies to heart:* datasets; {split.name} keeps its negatives "
                  f"(make some with `linkexit-fast heart-negatives` and pass --test-negatives)")
        return split
    for which in ("valid", "test"):
        desc = split.negatives_of(which)
        if desc is not None and desc.kind in ("heart", "heart-sampler"):
            continue
        path = heart_negatives_path(split, which)
        if getattr(args, "make_heart_negatives", False):
            use_heart_style_negatives(split, which)
        elif warn:
            now = desc.label() if desc else "no negatives at all"
            use = f"pass --test-negatives {path}, or " if which == "test" else ""
            _warn(f"{split.name} has no HeaRT {which} negatives here (heart_{which}_samples.npy), so "
                  f"its {which} metrics are NOT HeaRT results: they use {now}.\nMake HeaRT-style ones "
                  f"with this package's sampler (5 s for CiteSeer in benchmarks/results/heart_sampler.md):"
                  f"\n  linkexit-fast heart-negatives --dataset {args.dataset} --which {which} --out {path}\nthen "
                  f"{use}rerun with --make-heart-negatives (it reads that file, or makes it).")
    return split


def _negatives_args(p) -> None:
    p.add_argument("--test-negatives", default=None, metavar="NPY",
                   help="[P, K, 2] .npy of test negatives replacing the dataset's (`linkexit-fast "
                        "heart-negatives` writes one); labelled HeaRT-style from linkexit_fast's sampler "
                        "unless named like HeaRT's official heart_test_samples.npy")
    p.add_argument("--make-heart-negatives", action="store_true",
                   help=f"for a heart:* dataset without official HeaRT valid/test negatives, generate "
                        f"HeaRT-style ones with linkexit_fast's sampler (500 per positive, seed 0; "
                        f"5 s for CiteSeer in benchmarks/results/heart_sampler.md) and cache them in {NEGATIVES_DIR}/")


def _data_args(p, dataset_default=None) -> None:
    if dataset_default is None:
        p.add_argument("--dataset", required=True, help="heart:<name>, planetoid:<name>, ogbl:<name>, "
                       "synthetic[:N] or a dataset folder (`linkexit-fast datasets` lists them)")
    else:
        p.add_argument("--dataset", default=dataset_default, help="heart:<name>, planetoid:<name>, "
                       "ogbl:<name>, synthetic[:N] or a dataset folder (`linkexit-fast datasets` lists them)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="data root; when not given: $LINKEXIT_DATA, else ../shared/data from the working "
                        "directory, else beside the repository")


def _train_args(p):
    _data_args(p, dataset_default="synthetic")
    p.add_argument("--backbone", default="gcn", choices=["gcn", "resgcn", "sas"],
                   help="message passing: GCN, GCN with residuals, or SAS-GNN")
    p.add_argument("--exit", default="node", choices=["none", "node", "subgraph"],
                   help="early exit per node, per pair subgraph, or none (fixed depth)")
    p.add_argument("--semantics", default="freeze", choices=["freeze", "readout"],
                   help="freeze: an exited node's state stays constant; readout: every node keeps "
                        "updating and the exit only picks the output layer")
    p.add_argument("--layers", type=int, default=8, help="message-passing layers (maximum depth)")
    dflt = "None: the dataset's default (train.dataset_defaults)"
    p.add_argument("--hidden", type=int, default=None, help=f"hidden width; {dflt}")
    p.add_argument("--dropout", type=float, default=None, help=f"dropout; {dflt}")
    p.add_argument("--predictor-layers", type=int, default=None, help=f"MLP layers of the pair scorer; {dflt}")
    p.add_argument("--lr", type=_lr_grid, default=None,
                   help="Adam learning rate, or a comma-separated grid (one model each, the best on "
                        "validation kept, as the paper tunes); None: the dataset's grid "
                        "(train.dataset_defaults: 0.0005,0.001,0.002 on real datasets)")
    p.add_argument("--exit-train-mode", default="gumbel", choices=["gumbel", "gumbel-soft", "random-depth"],
                   help="how exits train: straight-through Gumbel-Softmax (the paper's method), the soft "
                        "relaxation, or random depths with untrained heads (the paper's GCN code, a baseline)")
    p.add_argument("--exit-warmup", type=int, default=0,
                   help="first epochs with exits off (every node to full depth) before the heads decide")
    p.add_argument("--num-negatives", type=int, default=None,
                   help="random training negatives per positive (HeaRT and the paper: 1); None: 1")
    p.add_argument("--weight-decay", type=float, default=None, help=f"Adam weight decay; {dflt}")
    p.add_argument("--batch-size", type=int, default=None, help=f"training positives per step; {dflt}")
    p.add_argument("--epochs", type=int, default=500, help="maximum epochs")
    p.add_argument("--patience", type=int, default=None,
                   help=f"validation evaluations without improvement before stopping; {dflt}")
    p.add_argument("--eval-every", type=int, default=None, help=f"epochs between validation evaluations; {dflt}")
    p.add_argument("--max-minutes", type=float, default=None, help="training time cap (None: no cap)")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, batches and training negatives")
    _negatives_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _lr_grid(text: str):
    """``--lr``: one learning rate or a comma-separated grid, each a positive number."""
    try:
        lrs = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or comma-separated numbers: {text!r}") from None
    if not all(lr > 0 and lr < float("inf") for lr in lrs):
        raise argparse.ArgumentTypeError(f"learning rates must be positive and finite: {text!r}")
    return lrs


def cmd_train(args):
    from dataclasses import asdict
    from . import distributed
    from .checkpoint import save
    from .report import DEFAULT_THRESHOLD, metrics_line
    from .train_args import train_checkpoint
    if distributed.launch_cli(cmd_train, args):
        return
    split = _load_split(args)
    model, result, test, cfg = train_checkpoint(args, split)  # data-parallel inside a process group
    if distributed.rank() != 0:
        return  # one checkpoint, written by rank 0
    out = Path(args.out)
    negatives = {w: d.to_dict() for w in ("valid", "test") if (d := split.negatives_of(w)) is not None}
    # Training validates (and tests) at TrainConfig.eval_threshold; eval/predict default elsewhere.
    note = (f"threshold {cfg.eval_threshold}: training's validation threshold (TrainConfig.eval_threshold, "
            f"the exit policy's mode); `eval` and `predict` default to {DEFAULT_THRESHOLD}")
    metrics = {"valid": result.best_valid, "test": test, "negatives": negatives,
               "threshold": cfg.eval_threshold, "threshold_note": note,
               "best_epoch": result.best_epoch, "lr_grid": result.lr_grid,
               "epochs_run": result.epochs_run, "seconds": result.seconds, "stopped": result.stopped,
               "dataset": split.name, "train_config": asdict(cfg), "missing": split.missing}
    save(model, out, graph=split.graph, metrics=metrics, extra={"dataset": split.name})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "history.json").write_text(json.dumps(result.history))
    print(f"saved {out} ({split.name}, best epoch {result.best_epoch}; {note})")
    print("  " + metrics_line("valid", result.best_valid, split.negatives_of("valid")))
    if test:
        print("  " + metrics_line("test", test, split.negatives_of("test")))


def cmd_eval(args):
    from .checkpoint import load
    from .report import eval_report, metrics_line, write_report
    pred = load(args.checkpoint)
    split = _load_split(args)
    report = eval_report(pred, split, threshold=args.threshold, backend=args.backend, precision=args.precision)
    paths = write_report(report, Path(args.out))
    print(f"{split.name}, exit threshold {report['threshold']}, backend {args.backend}, {args.precision} scores:")
    for part in ("valid", "test"):
        if part in report:
            print("  " + metrics_line(part, report[part]["metrics"], report[part]["negatives"]))
            if "rescored" in report[part]:
                r = report[part]["rescored"]
                print(f"    {r['rescored']:,} of the negatives re-scored in fp32 ({100 * r['rescored_share']:.2f} %; "
                      f"{r['refined_bf16x3']:,} by a second, three-product bf16 pass first)")
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
    so memory is bounded by the graph and the batch, not by the file. With ``--nproc N`` (or
    under torchrun) every rank reads the file and scores its share of each batch; rank 0 writes."""
    from . import distributed
    if distributed.launch_cli(cmd_predict, args):
        return
    if args.shards:
        return _predict_partitioned(args)
    from .checkpoint import load
    from .engine import PAIR_CHUNK, EngineStats
    from .pairs_io import iter_pair_chunks
    pred = load(args.checkpoint)
    st = EngineStats(backend=args.backend, threshold=args.threshold)
    batch = args.batch_size or PAIR_CHUNK
    parts = distributed.predict_chunks(pred, lambda: iter_pair_chunks(args.pairs, batch), threshold=args.threshold,
                                       backend=args.backend, stats=st, plan=args.plan)
    writer, world = distributed.rank() == 0, distributed.world_size()
    for pairs, scores in parts:
        if writer:
            sys.stdout.write("".join(f"{u}\t{v}\t{s:.6f}\n" for (u, v), s in zip(pairs.tolist(), scores.tolist())))
    share = f" (rank 0's share, of {world} ranks)" if world > 1 else ""
    if writer:
        print(f"# engine {st.backend} at threshold {args.threshold}{share}: {st.flops:.3g} MACs vs dense "
              f"{st.flops_dense:.3g}; gnn {st.time_gnn * 1e3:.1f} ms, decoder {st.time_decoder * 1e3:.1f} ms; "
              f"plan {st.plan or 'dense reference'}", file=sys.stderr)


def _predict_partitioned(args):
    """``predict --shards DIR``: this rank's shard of DIR (``linkexit-fast partition``), every pair
    of the file at once (each rank reads it; pairs are small beside the graph), rank 0 writes."""
    from . import distributed, partitioned
    from .checkpoint import load
    from .pairs_io import read_pairs
    r, world = distributed.rank(), distributed.world_size()
    shard = partitioned.Shard.load(Path(args.shards) / f"rank{r}.safetensors")
    model = load(args.checkpoint).model
    pairs = read_pairs(args.pairs)
    st = partitioned.PartitionStats(world, args.threshold)
    scores = partitioned.predict(shard, pairs, args.threshold, model=model, backend=args.backend,
                                 batch_size=args.batch_size, stats=st)
    if r == 0:
        sys.stdout.write("".join(f"{u}\t{v}\t{s:.6f}\n" for (u, v), s in zip(pairs.tolist(), scores.tolist())))
        mb = lambda b: f"{sum(b) / 1e6:.2f}"  # noqa: E731
        print(f"# partitioned over {world} ranks at threshold {args.threshold}: halo states {mb(st.state_bytes)} MB "
              f"sent (a full-graph exchange: {mb(st.full_graph_bytes)} MB), control {mb(st.control_bytes)} MB, "
              f"outputs {st.output_bytes / 1e6:.2f} MB", file=sys.stderr)


def cmd_partition(args):
    """Partition a saved predictor's graph into one shard file per rank, for ``predict --shards``."""
    from . import partitioned
    from .checkpoint import load, save
    pred = load(args.checkpoint)
    if pred.graph is None:
        raise ValueError(f"checkpoint {args.checkpoint} was saved without its graph: nothing to partition")
    t0 = time.time()
    parts = partitioned.partition(pred.graph, args.parts, args.method)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    halo = []
    for shard in partitioned.build_shards(pred.graph, parts):
        shard.save(out / f"rank{shard.rank}.safetensors")
        halo.append(shard.halo.numel())
    save(pred.model, out / "model")
    print(f"wrote {args.parts} shards and the model to {out} in {time.time() - t0:.1f} s; halo rows per rank "
          f"{halo} of {pred.graph.num_nodes} nodes. Run on every rank: linkexit-fast predict {out / 'model'} "
          f"PAIRS --shards {out} (under torchrun, or --nproc {args.parts})")


def cmd_calibrate(args):
    """Measure the planner's costs (engine/plan.py) again for this machine and cache them."""
    import torch
    from .backends import get_backend
    from .engine.plan import cache_file, calibrate
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ops = get_backend(args.backend, device)
    for m in args.hidden:
        c = calibrate(ops, device, m, force=True)
        print(f"{c.key}: {c.mac * 1e12:.2f} ps/MAC, {c.entry * 1e12:.1f} ps per aggregated entry x feature "
              f"({c.entry_hot * 1e12:.1f} with the states in cache), "
              f"copy {c.copy * 1e12:.1f} ps and select {c.select * 1e12:.1f} ps per row x feature, "
              f"scan {c.scan * 1e9:.2f} ns/node, {c.op * 1e6:.1f} us/op, {c.sync * 1e6:.1f} us/sync")
    print(f"cached in {cache_file()} ($LINKEXIT_CACHE moves it)")


def _nproc_arg(p, what: str) -> None:
    p.add_argument("--nproc", type=_positive_int, default=None,
                   help=f"local processes (torch.distributed, gloo), {what}; None: one process, or under "
                        f"torchrun the ranks it started (multi-machine runs: README, Scale-out)")


def _positive_int(text: str) -> int:
    """argparse type of a count option: a whole number >= 1."""
    from .validation import check_count
    try:
        return check_count(int(text), "value", minimum=1)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None


def cmd_heart_negatives(args):
    from .heart import generate_negatives, save_negatives
    split = _load_split(args, warn=False)
    t0 = time.time()
    neg = generate_negatives(split, which=args.which, k=args.k, seed=args.seed)
    save_negatives(neg, args.out)
    use = f"; use them with --test-negatives {args.out}" if args.which == "test" else ""
    print(f"wrote {args.out}: {tuple(neg.shape)} HeaRT-style {args.which} negatives of {split.name} "
          f"from linkexit_fast's sampler in {time.time() - t0:.1f} s{use}")


def cmd_datasets(args):
    from .datasets import data_resolution, data_root, find_datasets
    root = data_root(args.data)
    print(data_resolution(args.data))
    if not root.is_dir():
        print("\nno data root found; only the built-in synthetic dataset is available")
    print()
    for d in find_datasets(args.data):
        print(f"{d['spec']:<22} {d['folder']}")
        print(f"{'':<22} {d['facts']}")
        for lack in d["lacks"]:
            print(f"{'':<22} lacks: {lack}")


def cmd_pareto(args):
    from .pareto import run_pareto, table_runs
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
               eval_positives=args.eval_positives,
               checkpoints=table_runs(Path(args.from_table)) if args.from_table else None)
    print((Path(args.out) / "pareto.md").read_text())


def cmd_demo(args):
    """Train a small early-exit model on a synthetic graph, then time the engine where it pays."""
    from .demo import DemoConfig, run_demo
    run_demo(DemoConfig(train_nodes=args.nodes, serve_nodes=args.serve_nodes, queries=args.queries,
                        layers=args.layers, epochs=args.epochs, max_minutes=args.max_minutes,
                        rounds=args.rounds, threshold=args.threshold))


class _Parser(argparse.ArgumentParser):
    """Every (sub)parser shows each option's default in its help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help; none for required options, which have none."""

    def _get_help_string(self, action):
        return action.help if action.required else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The ``linkexit-fast`` parser (tests parse the README's command lines with it)."""
    from .report import DEFAULT_THRESHOLD
    parser = _Parser(prog="linkexit-fast", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                                title="commands (linkexit-fast COMMAND --help for its options)")
    from .demo import DemoConfig
    p = sub.add_parser("demo", help="train on a synthetic graph, then time the engine against the "
                       "dense reference on a query batch and a full evaluation")
    p.add_argument("--nodes", type=_positive_int, default=DemoConfig.train_nodes,
                   help="nodes of the synthetic training graph (its split gives the quality numbers)")
    p.add_argument("--serve-nodes", type=_positive_int, default=DemoConfig.serve_nodes,
                   help="nodes of the synthetic graph the query batch is served on")
    p.add_argument("--queries", type=_positive_int, default=DemoConfig.queries,
                   help="query pairs in the timed batch (half positives, half random negatives)")
    p.add_argument("--layers", type=_positive_int, default=DemoConfig.layers, help="GCN layers")
    p.add_argument("--epochs", type=_positive_int, default=DemoConfig.epochs,
                   help="most training epochs (the time cap may stop it sooner)")
    p.add_argument("--max-minutes", type=float, default=DemoConfig.max_minutes, help="training time cap")
    p.add_argument("--rounds", type=_positive_int, default=DemoConfig.rounds,
                   help="interleaved engine/reference timing rounds per workload")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="exit threshold (predict's default)")
    p.set_defaults(fn=cmd_demo)
    backends = '"auto" (best available, falls back to "torch" with a warning), "reference", "torch", ' \
        '"cpu" (C++ ops) or "triton" (GPU); a named backend that cannot run here is an error'
    threshold_help = ("exit threshold: a node exits at the first layer whose EXIT probability is >= it; "
                      "1.0 = no early exit; the default is linkexit_fast.predict's")
    p = sub.add_parser("train", help="train a model and save a self-contained checkpoint")
    _train_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoint folder (model, graph, metrics.json)")
    _nproc_arg(p, "each training on a shard of every batch (DistributedDataParallel)")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("eval", help="evaluate a checkpoint: JSON + PNG report, metrics with their negatives")
    p.add_argument("checkpoint", help="checkpoint folder or .safetensors file")
    _data_args(p)
    _negatives_args(p)
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help=threshold_help)
    p.add_argument("--backend", default="auto", help=backends)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="fp32 (default): score every pair in fp32; bf16: MRR and Hits@K from bf16 scores with "
                        "fp32 re-scoring of the pairs their error bound leaves undecided (the same values, "
                        "faster; HeaRT negatives only; no AUROC per layer)")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder (report.json, report.png)")
    p.set_defaults(fn=cmd_eval)
    p = sub.add_parser("compare", help="several eval reports side by side (table + figure)")
    p.add_argument("reports", nargs="+", help="report.json files or eval output folders")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for compare.md and compare.png")
    p.set_defaults(fn=cmd_compare)
    p = sub.add_parser("predict", help="score node pairs from a file with a saved predictor")
    p.add_argument("checkpoint", help="checkpoint folder or .safetensors file (saved with its graph)")
    p.add_argument("pairs", help="text file of 'u v' lines (read twice, so not a pipe)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help=threshold_help)
    p.add_argument("--backend", default="auto", help=backends)
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="pairs read and scored at a time (bounds the memory; None: engine.PAIR_CHUNK)")
    p.add_argument("--plan", default="auto", choices=["auto", "dense", "engine"],
                   help="the GNN stage's path: auto (the planner's choice per call, from costs measured "
                        "on this machine: see 'calibrate'), dense (every node, every layer) or engine "
                        "(only what the pairs need); every plan gives the same scores")
    p.add_argument("--shards", default=None, metavar="DIR",
                   help="graph-partitioned: rank r holds only DIR/rank{r}.safetensors (from 'partition', "
                        "one shard per rank) and the checkpoint needs no graph; the pairs file is read whole")
    _nproc_arg(p, "each scoring its share of every batch of pairs (with --shards: each holding its shard)")
    p.set_defaults(fn=cmd_predict)
    p = sub.add_parser("partition", help="split a saved predictor's graph into one shard per rank "
                       "(for predict --shards: graphs that do not fit one machine)")
    p.add_argument("checkpoint", help="checkpoint folder or .safetensors file (saved with its graph)")
    p.add_argument("--parts", type=_positive_int, required=True, help="ranks (one shard each)")
    p.add_argument("--method", default="auto", choices=["auto", "metis", "range"],
                   help="metis (pymetis; small halo), range (contiguous id ranges of equal work), auto: "
                        "metis when pymetis is installed")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for rank{r}.safetensors and model/")
    p.set_defaults(fn=cmd_partition)
    p = sub.add_parser("calibrate", help="measure the execution planner's costs on this machine again "
                       "(cached; predict's plan='auto' reads them)")
    p.add_argument("--backend", default="auto", help=backends)
    p.add_argument("--hidden", type=_positive_int, nargs="+", default=[64, 128, 256],
                   help="hidden widths to calibrate (a model's width is calibrated on its first call otherwise)")
    p.set_defaults(fn=cmd_calibrate)
    p = sub.add_parser("pareto", help="measured Pareto frontier: test MRR vs wall-clock and FLOPs")
    _data_args(p, dataset_default="synthetic:5000")
    _negatives_args(p)
    p.add_argument("--backbones", default="gcn", help="comma-separated backbones (gcn, resgcn, sas)")
    p.add_argument("--layers", default=None, help="comma-separated depths; None: 1,2,4,8 (synthetic: 1,2,4)")
    p.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.9,0.95,0.99",
                   help="comma-separated exit thresholds swept for the early-exit models, by design a "
                        f"list (predict's single default is {DEFAULT_THRESHOLD}); fixed-depth models run at 1.0")
    p.add_argument("--seeds", type=int, default=1, help="models per grid point (results are averaged)")
    p.add_argument("--repeats", type=int, default=3, help="timed evaluations per point (median)")
    p.add_argument("--backend", default="auto", help=backends)
    p.add_argument("--eval-positives", type=int, default=None,
                   help="score a seeded subsample of this many test positives (large sets); None: all")
    p.add_argument("--hidden", type=int, default=None, help="hidden width; None: the dataset's default")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs; None: 200 (synthetic: 12)")
    p.add_argument("--lr", type=float, default=None, help="learning rate; None: the dataset's default")
    p.add_argument("--max-minutes", type=float, default=None, help="training time cap per model; None: no cap")
    p.add_argument("--from-table", default=None, metavar="DIR",
                   help="sweep the models of a benchmarks/table1.py runs folder (per cell and seed, the "
                        "best on validation) instead of training --backbones x --layers")
    p.add_argument("--out", default="runs/pareto", metavar="DIR",
                   help="sweep folder: checkpoints/ and points/ are reused on a rerun")
    p.set_defaults(fn=cmd_pareto)
    p = sub.add_parser("heart-negatives", help="HeaRT-style hard negatives (HRST) for a split, from this "
                       "package's sampler")
    _data_args(p)
    p.add_argument("--which", default="test", choices=["valid", "test"],
                   help="test also excludes the validation positives")
    p.add_argument("--k", type=int, default=500, help="negatives per positive (even)")
    p.add_argument("--seed", type=int, default=0, help="seeds the random fill of zero-score candidates")
    p.add_argument("--out", required=True, metavar="NPY", help="output .npy, int64 [P, K, 2]")
    p.set_defaults(fn=cmd_heart_negatives)
    p = sub.add_parser("datasets", help="list the datasets under the data root and what each lacks")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="data root; when not given: $LINKEXIT_DATA, else ../shared/data from the working "
                        "directory, else beside the repository")
    p.set_defaults(fn=cmd_datasets)
    return parser


def main(argv=None):
    """Run one command. Bad input (ValueError, TypeError, a missing file) and a named backend that
    cannot run (BackendUnavailable) exit with status 2 and one ``error:`` message, no traceback."""
    from .backends import BackendUnavailable
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, TypeError, OSError, BackendUnavailable) as e:
        parser.exit(2, f"linkexit-fast {args.cmd}: error: {e}\n")


if __name__ == "__main__":
    main()
