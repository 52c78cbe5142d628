"""Training under the HeaRT protocol (as in HeaRT's ``HeaRT_small`` loop and the paper's code).

Each step hides the batch's positives from the message-passing graph, runs a full-graph forward
with Gumbel-Softmax exits, and takes binary cross-entropy of those positives against as many
uniformly random negatives. Exits are learned from this loss alone: no budget term.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .datasets import EdgeSet, LinkSplit, sample_negatives
from .evaluate import evaluate
from .graph import Graph
from .models import TRAIN_MODES, EarlyExitLinkPredictor, ModelConfig

__all__ = ["TrainConfig", "TrainResult", "train", "build_model", "dataset_defaults", "TrainingDiverged",
           "negative_sampler", "train_lr_grid", "PAPER_LR_GRID", "StepHooks", "step_loss"]


class TrainingDiverged(RuntimeError):
    """Raised when the loss or a gradient becomes NaN/inf."""


@dataclass
class TrainConfig:
    """Training settings. ``eval_threshold`` (0.5) is the exit threshold of the validation (and
    the CLI's test) evaluation during training: the mode of the exit policy whose Gumbel-Softmax
    samples training draws, so model selection does not depend on a serving choice. It differs on
    purpose from ``linkexit_fast.predict``'s default (0.9), the speed/quality knob of serving;
    ``linkexit-fast train`` prints and stores both."""

    lr: float = 0.01
    weight_decay: float = 1e-7
    epochs: int = 500
    batch_size: int = 1024
    eval_every: int = 5
    patience: int = 10  # evaluations without improvement before stopping
    grad_clip: float = 1.0
    seed: int = 0
    eval_threshold: float = 0.5  # the policy's mode, as the design asks for validation
    max_minutes: Optional[float] = None
    # Exit training (see models.TRAIN_MODES): how a Gumbel-Softmax sample becomes an exit, and
    # how many first epochs run every node to depth L so deep layers are useful before the heads
    # decide (straight-through heads otherwise learned to exit at layer 1 within 5-15 epochs on
    # CiteSeer, after which layers 2..L got no gradient).
    exit_train_mode: str = "gumbel"
    exit_warmup: int = 0
    # Random training negatives per positive (HeaRT and the paper: 1), each positive's own.
    num_negatives: int = 1

    def __post_init__(self):
        if self.exit_train_mode not in TRAIN_MODES:
            raise ValueError(f"exit_train_mode must be one of {TRAIN_MODES}, got {self.exit_train_mode!r}")
        if not 0 <= self.exit_warmup < self.epochs:
            raise ValueError(f"exit_warmup must be in [0, epochs={self.epochs}), got {self.exit_warmup}")
        if isinstance(self.num_negatives, bool) or not isinstance(self.num_negatives, int) \
                or not 1 <= self.num_negatives <= 1000:
            raise ValueError(f"num_negatives must be in [1, 1000], got {self.num_negatives}")


# The paper's recipe (Knyazhitskiy and Di Francesco, 2026, training details): the learning rate
# tuned over this grid on validation MRR, dropout 0.1, a 3-layer scorer, no weight decay, at most
# 500 epochs, early stopping after 50 evaluations without improvement.
PAPER_LR_GRID = (5e-4, 1e-3, 2e-3)


def dataset_defaults(name: str) -> Dict[str, dict]:
    """Default settings per dataset: ``{"model": {...}, "train": {...}, "lr_grid": (...)}``.

    Real datasets get the paper's recipe (:data:`PAPER_LR_GRID`; ogbl-ddi keeps HeaRT's tuned
    dropout 0 and full-batch-sized steps, as its 1M training edges need). ``synthetic`` graphs
    get a one-learning-rate quick setting sized for the demo's two minutes.
    """
    if name.startswith("synthetic"):
        return {"model": dict(hidden=64, dropout=0.1, predictor_layers=2),
                "train": dict(lr=0.01, weight_decay=0.0, batch_size=4096, eval_every=2, patience=5),
                "lr_grid": (0.01,)}
    ddi = "ddi" in name
    return {"model": dict(hidden=256, dropout=0.0 if ddi else 0.1, predictor_layers=3),
            "train": dict(lr=PAPER_LR_GRID[1], weight_decay=0.0, batch_size=65536 if ddi else 1024,
                          eval_every=1 if ddi else 5, patience=50),
            "lr_grid": PAPER_LR_GRID}


@dataclass
class TrainResult:
    best_valid: dict
    best_epoch: int
    epochs_run: int
    seconds: float
    history: List[dict] = field(default_factory=list)
    stopped: str = ""
    lr: Optional[float] = None  # the learning rate of these weights
    lr_grid: Dict[str, float] = field(default_factory=dict)  # learning rate -> best validation metric

    def to_dict(self) -> dict:
        return asdict(self)


def _selection_metric(metrics: dict) -> float:
    return metrics.get("mrr", metrics.get("hits@20", 0.0))


def negative_sampler(graph: Graph, seed: int) -> Callable[[int], torch.Tensor]:
    """Training negatives: ``sample(count)`` gives int64 ``[count, 2]`` distinct random pairs that
    are neither self-pairs nor edges of the training ``graph`` (see
    :func:`~linkexit_fast.datasets.sample_negatives`); successive calls continue one stream
    seeded by ``seed``.

    Validation and test positives are deliberately not excluded: the loss would then depend on
    which unseen pairs are edges (they alone would never be pushed towards 0), leaking the
    held-out labels into training. PyG's link-prediction examples exclude the training edges
    only, for the same reason.
    """
    edges = EdgeSet(graph.undirected_edges(), graph.num_nodes)  # sorted keys, built once per run
    rng = np.random.default_rng(seed)
    return lambda count: torch.from_numpy(sample_negatives(edges, count, rng))


def step_loss(model: EarlyExitLinkPredictor, graph: Graph, batch: torch.Tensor, neg: torch.Tensor,
              mode: str, generator: torch.Generator, shard: Optional[slice] = None,
              world: int = 1) -> torch.Tensor:
    """One training step's loss: the model runs on ``graph`` without the batch's edges (it never
    sees the edge it predicts), then BCE of the positives ``batch [B, 2]`` against ``k >= 1``
    negatives each, ``neg [B * k, 2]`` (positive ``i``'s at rows ``i k`` to ``i k + k - 1``):
    ``mean BCE(batch) + mean BCE(neg)`` (HeaRT's training loss, where ``k = 1``).

    With ``shard`` (a rank's part of the batch, of ``world`` ranks) it is
    ``world / B * (sum BCE(shard's positives) + sum BCE(their negatives) / k)``, so the ranks'
    averaged gradient is the whole batch's loss gradient whatever the shard sizes
    (:class:`linkexit_fast.distributed.ShardLoss`).
    """
    if len(batch) == 0 or len(neg) % len(batch):
        raise ValueError(f"neg must hold k >= 1 negatives per positive: {len(neg)} rows for {len(batch)} positives")
    B, k = len(batch), len(neg) // len(batch)
    res = model(graph.remove_edges(batch), mode=mode, generator=generator)
    if shard is not None:  # the shard's positives and their own negatives
        batch, neg = batch[shard], neg.view(B, k, 2)[shard].reshape(-1, 2)
    pos_out, neg_out = model.score(res.z, batch), model.score(res.z, neg)
    reduction = "mean" if shard is None else "sum"
    pos_loss = F.binary_cross_entropy_with_logits(pos_out, torch.ones_like(pos_out), reduction=reduction)
    neg_loss = F.binary_cross_entropy_with_logits(neg_out, torch.zeros_like(neg_out), reduction=reduction)
    return pos_loss + neg_loss if shard is None else world / B * (pos_loss + neg_loss / k)


class StepHooks:
    """What :func:`train` asks of the process it runs in; these are one process's answers.
    :func:`linkexit_fast.distributed.train` passes a rank's: a sharded, gradient-averaged loss,
    the epoch loss summed over ranks, and decisions taken on rank 0 and broadcast."""

    world = 1
    main = True  # shows the progress bar (and, with ranks, evaluates)

    def __init__(self, model: EarlyExitLinkPredictor):
        self.model = model

    def loss(self, graph, batch, neg, mode, generator) -> torch.Tensor:
        return step_loss(self.model, graph, batch, neg, mode, generator)

    def epoch_loss(self, total: float) -> float:
        return total

    def agree(self, decide: Callable[[], tuple]) -> tuple:
        return decide()


def train(model: EarlyExitLinkPredictor, split: LinkSplit, cfg: TrainConfig = TrainConfig(),
          progress: bool = True, hooks: Optional[StepHooks] = None) -> TrainResult:
    """Train in place; on return ``model`` holds the weights with the best validation metric.

    ``hooks``: the process's part (default: a single process, :class:`StepHooks`)."""
    hooks = hooks or StepHooks(model)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    graph = split.graph
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_pos = split.train_pos
    sample_neg = negative_sampler(graph, cfg.seed)
    best, best_state, best_epoch, bad = -math.inf, None, 0, 0
    history: List[dict] = []
    start = time.time()
    stopped = "max epochs"
    desc = "train" if hooks.world == 1 else f"train ({hooks.world} ranks)"
    bar = tqdm(range(1, cfg.epochs + 1), disable=not progress or not hooks.main, desc=desc, unit="epoch")
    valid_metrics: dict = {}
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(train_pos), generator=gen)
        mode = "full-depth" if epoch <= cfg.exit_warmup else cfg.exit_train_mode
        total = 0.0
        for s in range(0, len(perm), cfg.batch_size):
            batch = train_pos[perm[s:s + cfg.batch_size]]
            loss = hooks.loss(graph, batch, sample_neg(len(batch) * cfg.num_negatives), mode, gen)
            # With ranks a local loss check could stop one rank alone; the averaged gradient's
            # norm below is the same on every rank, so every rank stops there together.
            if hooks.world == 1 and not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} at epoch {epoch}; training stopped "
                                       f"(try a lower learning rate than {cfg.lr})")
            opt.zero_grad()
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if not torch.isfinite(norm):
                raise TrainingDiverged(f"gradient norm became {norm.item()} at epoch {epoch}; "
                                       f"training stopped (try a lower learning rate than {cfg.lr})")
            opt.step()
            total += loss.item() * len(batch) / hooks.world
        total = hooks.epoch_loss(total)

        def decide():
            """(the epoch's record, whether it is the best so far, why training stops or "")."""
            nonlocal best, bad
            record, improved, stop = {"epoch": epoch, "loss": total / max(len(train_pos), 1)}, False, ""
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                valid = evaluate(model, graph, split.valid_pos, split.valid_neg, cfg.eval_threshold)
                record.update({f"valid_{k}": v for k, v in valid.items()})
                score = _selection_metric(valid)
                if epoch <= cfg.exit_warmup:
                    pass  # the heads have not been trained yet: a warm-up state is never selected
                elif score > best:
                    best, improved, bad = score, True, 0
                else:
                    bad += 1
            if bad >= cfg.patience:
                stop = f"early stop after {cfg.patience} evaluations without improvement"
            elif cfg.max_minutes is not None and time.time() - start > 60 * cfg.max_minutes:
                stop = f"time limit of {cfg.max_minutes} min"
            return record, improved, stop
        record, improved, stop = hooks.agree(decide)
        history.append(record)
        if improved:
            best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
        if "valid_mrr" in record or "valid_hits@20" in record:
            valid_metrics = {k[len("valid_"):]: v for k, v in record.items() if k.startswith("valid_")}
        bar.set_postfix(loss=f"{record['loss']:.4f}",
                        val=f"{_selection_metric(valid_metrics):.4f}" if valid_metrics else "-",
                        exit=f"{valid_metrics.get('mean_exit_layer', float('nan')):.2f}")
        if stop:
            stopped = stop
            break
        if cfg.max_minutes is not None:
            # Size the bar to the epochs the time cap allows (another epoch starts while under the
            # cap), so its total and ETA show where training will really stop, not cfg.epochs.
            elapsed = time.time() - start
            bar.total = min(cfg.epochs, epoch + 1 + int((60 * cfg.max_minutes - elapsed) / (elapsed / epoch)))
            bar.refresh()
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    best_valid = next((h for h in history if h["epoch"] == best_epoch), {})
    best_valid = {k[len("valid_"):]: v for k, v in best_valid.items() if k.startswith("valid_")}
    return TrainResult(best_valid, best_epoch, len(history), time.time() - start, history, stopped, cfg.lr)


def train_lr_grid(make_model: Callable[[], EarlyExitLinkPredictor], split: LinkSplit, cfg: TrainConfig,
                  lrs, progress: bool = True, train_fn: Optional[Callable[..., TrainResult]] = None):
    """Train one model per learning rate in ``lrs`` (each from ``make_model()`` and ``cfg``'s
    seed) and keep the one with the best validation metric (MRR, else Hits@20): the paper's
    tuning protocol. Returns ``(model, result)``; ``result.lr_grid`` maps each learning rate to
    its best validation metric and ``result.seconds`` counts every run. ``train_fn`` trains
    each model (default :func:`train`; :func:`linkexit_fast.distributed.train` over ranks)."""
    lrs = [float(lr) for lr in lrs]
    if not lrs or not all(math.isfinite(lr) and lr > 0 for lr in lrs):
        raise ValueError(f"learning rates must be positive and finite, got {lrs}")
    best_model, best, grid, seconds = None, None, {}, 0.0
    for lr in lrs:
        model = make_model()
        result = (train_fn or train)(model, split, replace(cfg, lr=lr), progress=progress)
        grid[repr(lr)] = _selection_metric(result.best_valid) if result.best_valid else -math.inf
        seconds += result.seconds
        if best is None or grid[repr(lr)] > grid[repr(best.lr)]:
            best_model, best = model, result
    best.lr_grid, best.seconds = grid, seconds
    return best_model, best


def build_model(split: LinkSplit, **overrides) -> EarlyExitLinkPredictor:
    """A model sized for ``split`` with the dataset's defaults, overridden by keyword."""
    defaults = dataset_defaults(split.name)["model"]
    defaults.update({k: v for k, v in overrides.items() if v is not None})
    cfg = ModelConfig(in_channels=split.graph.num_features, num_nodes=split.graph.num_nodes, **defaults)
    return EarlyExitLinkPredictor(cfg)
