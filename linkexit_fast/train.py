"""Training under the HeaRT protocol (as in HeaRT's ``HeaRT_small`` loop and the paper's code).

Each step hides the batch's positives from the message-passing graph, runs a full-graph forward
with Gumbel-Softmax exits, and takes binary cross-entropy of those positives against as many
uniformly random negatives. Exits are learned from this loss alone: no budget term.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .datasets import EdgeSet, LinkSplit, sample_negatives
from .evaluate import evaluate
from .graph import Graph
from .models import EarlyExitLinkPredictor, ModelConfig

__all__ = ["TrainConfig", "TrainResult", "train", "build_model", "dataset_defaults", "TrainingDiverged",
           "negative_sampler"]


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


def dataset_defaults(name: str) -> Dict[str, dict]:
    """HeaRT's tuned GCN settings where they exist: ``{"model": {...}, "train": {...}}``."""
    if "ddi" in name:
        return {"model": dict(hidden=256, dropout=0.0, predictor_layers=3),
                "train": dict(lr=0.01, weight_decay=0.0, batch_size=65536, eval_every=1, patience=10)}
    if name.startswith("synthetic"):
        return {"model": dict(hidden=64, dropout=0.1, predictor_layers=2),
                "train": dict(lr=0.01, weight_decay=0.0, batch_size=4096, eval_every=2, patience=5)}
    return {"model": dict(hidden=256, dropout=0.5, predictor_layers=2),
            "train": dict(lr=0.01, weight_decay=1e-7, batch_size=1024, eval_every=5, patience=10)}


@dataclass
class TrainResult:
    best_valid: dict
    best_epoch: int
    epochs_run: int
    seconds: float
    history: List[dict] = field(default_factory=list)
    stopped: str = ""

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


def train(model: EarlyExitLinkPredictor, split: LinkSplit, cfg: TrainConfig = TrainConfig(),
          progress: bool = True) -> TrainResult:
    """Train in place; on return ``model`` holds the weights with the best validation metric."""
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
    bar = tqdm(range(1, cfg.epochs + 1), disable=not progress, desc="train", unit="epoch")
    valid_metrics: dict = {}
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(train_pos), generator=gen)
        total, count, exit_sum = 0.0, 0, 0.0
        for s in range(0, len(perm), cfg.batch_size):
            batch = train_pos[perm[s:s + cfg.batch_size]]
            step_graph = graph.remove_edges(batch)  # the model never sees the edge it predicts
            res = model(step_graph, generator=gen)
            neg = sample_neg(len(batch))
            pos_out, neg_out = model.score(res.z, batch), model.score(res.z, neg)
            loss = (F.binary_cross_entropy_with_logits(pos_out, torch.ones_like(pos_out))
                    + F.binary_cross_entropy_with_logits(neg_out, torch.zeros_like(neg_out)))
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} at epoch {epoch}; training stopped "
                                       f"(try a lower learning rate than {cfg.lr})")
            opt.zero_grad()
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if not torch.isfinite(norm):
                raise TrainingDiverged(f"gradient norm became {norm.item()} at epoch {epoch}; "
                                       f"training stopped")
            opt.step()
            total += loss.item() * len(batch)
            count += len(batch)
            exit_sum += float(res.exit_layer.float().mean())
        record = {"epoch": epoch, "loss": total / max(count, 1)}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            valid_metrics = evaluate(model, graph, split.valid_pos, split.valid_neg, cfg.eval_threshold)
            record.update({f"valid_{k}": v for k, v in valid_metrics.items()})
            score = _selection_metric(valid_metrics)
            if score > best:
                best, best_epoch, bad = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}",
                        val=f"{_selection_metric(valid_metrics):.4f}" if valid_metrics else "-",
                        exit=f"{valid_metrics.get('mean_exit_layer', float('nan')):.2f}")
        if bad >= cfg.patience:
            stopped = f"early stop after {cfg.patience} evaluations without improvement"
            break
        if cfg.max_minutes is not None:
            elapsed, cap = time.time() - start, 60 * cfg.max_minutes
            if elapsed > cap:
                stopped = f"time limit of {cfg.max_minutes} min"
                break
            # Size the bar to the epochs the time cap allows (another epoch starts while under the
            # cap), so its total and ETA show where training will really stop, not cfg.epochs.
            bar.total = min(cfg.epochs, epoch + 1 + int((cap - elapsed) / (elapsed / epoch)))
            bar.refresh()
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    best_valid = next((h for h in history if h["epoch"] == best_epoch), {})
    best_valid = {k[len("valid_"):]: v for k, v in best_valid.items() if k.startswith("valid_")}
    return TrainResult(best_valid, best_epoch, len(history), time.time() - start, history, stopped)


def build_model(split: LinkSplit, **overrides) -> EarlyExitLinkPredictor:
    """A model sized for ``split`` with the dataset's defaults, overridden by keyword."""
    defaults = dataset_defaults(split.name)["model"]
    defaults.update({k: v for k, v in overrides.items() if v is not None})
    cfg = ModelConfig(in_channels=split.graph.num_features, num_nodes=split.graph.num_nodes, **defaults)
    return EarlyExitLinkPredictor(cfg)
