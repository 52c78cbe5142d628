"""Scoring positives against negatives, in the HeaRT or the existing setting."""
from __future__ import annotations

from typing import Optional

import torch

from .backends.torch_ops import score_pairs
from .graph import Graph
from .models import EarlyExitLinkPredictor


def predictor_params(model: EarlyExitLinkPredictor):
    lins = model.predictor.lins
    return [l.weight.detach() for l in lins], [l.bias.detach() for l in lins]


@torch.no_grad()
def reference_scores(model: EarlyExitLinkPredictor, graph: Graph, pairs: torch.Tensor,
                     threshold: float = 0.5, mode: str = "threshold",
                     generator: Optional[torch.Generator] = None):
    """Reference: full forward over every node, then the chunked scorer. Returns (logits, forward)."""
    was = model.training
    model.eval()
    res = model(graph, mode=mode, threshold=threshold, generator=generator)
    model.train(was)
    w, b = predictor_params(model)
    return score_pairs(res.z, pairs[:, 0], pairs[:, 1], w, b), res


def flatten_eval_pairs(pos: torch.Tensor, neg: torch.Tensor):
    """All pairs to score: positives then negatives (``[P,K,2]`` or ``[Q,2]``), flattened."""
    return torch.cat([pos, neg.reshape(-1, 2)])


def split_scores(scores: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor):
    p = scores[:len(pos)]
    n = scores[len(pos):]
    return p, n.view(neg.shape[0], neg.shape[1]) if neg.dim() == 3 else n


@torch.no_grad()
def evaluate(model: EarlyExitLinkPredictor, graph: Graph, pos: torch.Tensor, neg: torch.Tensor,
             threshold: float = 0.5) -> dict:
    """Metrics of ``model`` on one evaluation set with the reference forward (used in training)."""
    from .metrics import evaluate_scores
    logits, res = reference_scores(model, graph, flatten_eval_pairs(pos, neg), threshold)
    out = evaluate_scores(*split_scores(logits, pos, neg))
    out["mean_exit_layer"] = float(res.exit_layer.float().mean())
    return out
