"""Training from command-line-style arguments: the one recipe that ``linkexit-fast train``, the
Pareto sweep and the demo share (the dataset's defaults, overridden by the arguments given)."""
from __future__ import annotations

from dataclasses import replace

import torch

from . import distributed
from .datasets import LinkSplit
from .evaluate import evaluate
from .train import TrainConfig, build_model, dataset_defaults, train_lr_grid


def train_checkpoint(args, split: LinkSplit, test: bool = True):
    """Train one model on ``split`` from CLI-style arguments (a namespace with ``linkexit-fast
    train``'s options); returns ``(model, result, test_metrics, cfg)``.

    ``test=False`` skips the test evaluation (the Pareto sweep measures test quality itself)."""
    defaults = dataset_defaults(split.name)

    def make_model():
        torch.manual_seed(args.seed)
        return build_model(split, hidden=args.hidden, layers=args.layers, backbone=args.backbone,
                           exit=args.exit, semantics=args.semantics, dropout=args.dropout,
                           predictor_layers=args.predictor_layers)
    tcfg = defaults["train"]
    for key in ("weight_decay", "batch_size", "patience", "eval_every", "exit_train_mode", "exit_warmup",
                "num_negatives"):
        if getattr(args, key, None) is not None:
            tcfg[key] = getattr(args, key)
    lrs = args.lr if args.lr is not None else defaults["lr_grid"]
    lrs = lrs if isinstance(lrs, (list, tuple)) else [lrs]
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, max_minutes=args.max_minutes, **tcfg)
    # distributed.train is train.train but inside a process group (linkexit-fast train --nproc N)
    model, result = train_lr_grid(make_model, split, cfg, lrs, progress=not args.quiet, train_fn=distributed.train)
    cfg = replace(cfg, lr=result.lr)
    test = evaluate(model, split.graph, split.test_pos, split.test_neg, cfg.eval_threshold) \
        if test and split.test_neg is not None else {}
    return model, result, test, cfg
