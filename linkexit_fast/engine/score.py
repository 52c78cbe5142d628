"""Pair scoring in chunks: the pairs are scored a chunk at a time into one preallocated output, so
memory beyond the output is bounded by the graph's size, never by the number of pairs."""
from __future__ import annotations

import time
from types import ModuleType
from typing import Callable, List, Optional

import torch

from ..backends.bf16 import score_pairs_bf16
from ..models import EarlyExitLinkPredictor
from .indexing import at
from .stats import EngineStats


def score_chunks(pairs: torch.Tensor, chunk: int, logits_of: Callable[[torch.Tensor], torch.Tensor],
                 layers_of: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
    """``sigmoid(logits_of(part))`` for each ``part`` of ``chunk`` pairs, written into one ``[P]``
    output (and ``layers_of(part)`` into one ``[P, 2]``, when given): nothing else grows with P."""
    out = torch.empty(pairs.shape[0], device=pairs.device)
    layers = None if layers_of is None else torch.empty(pairs.shape[0], 2, dtype=torch.int64, device=pairs.device)
    for s in range(0, pairs.shape[0], chunk):
        part = pairs[s:s + chunk]
        torch.sigmoid(logits_of(part), out=out[s:s + chunk])
        if layers is not None:
            layers[s:s + chunk] = layers_of(part)
    return out, layers


def engine_scores(model: EarlyExitLinkPredictor, ops: ModuleType, z: torch.Tensor,
                  key: Callable[[torch.Tensor], torch.Tensor], pairs: torch.Tensor, chunk: int,
                  stats: EngineStats, layer: Optional[torch.Tensor] = None, precision: str = "fp32"):
    """Scores ``[P]`` of ``pairs`` from the GNN stage's output (:func:`.run.gnn_stage`), and with
    ``layer`` their endpoints' exit layers ``[P, 2]``. ``precision="bf16"`` also sets
    ``stats.score_bound``."""
    t0 = time.perf_counter()
    weights = [lin.weight for lin in model.predictor.lins]
    biases = [lin.bias for lin in model.predictor.lins]
    bounds: List[torch.Tensor] = []

    def logits_of(part):
        # [2, C]: each endpoint column contiguous, as the scorers take it, in one copy (not two)
        keys = key(part.t().contiguous())
        if precision == "fp32":
            return ops.score_pairs(z, keys[0], keys[1], weights, biases)
        logits, bound = score_pairs_bf16(z, keys[0], keys[1], weights, biases, fp32_scorer=ops.score_pairs)
        bounds.append(bound)
        return logits
    out = score_chunks(pairs, chunk, logits_of, None if layer is None else (lambda part: at(layer, key(part))))
    if bounds:
        stats.score_bound = torch.cat(bounds)
    stats.time_decoder += time.perf_counter() - t0
    stats.flops_decoder += float(pairs.shape[0] * model.predictor.flops_per_pair())
    return out


def resolved_per_layer(layers: torch.Tensor, ran: int, L: int, chunk: int) -> List[int]:
    """Pairs resolved after each of the ``ran`` layers that ran: a pair resolves at the later
    of its endpoints' exit layers; pairs still open when the layers ran out count at the last."""
    counts = torch.zeros(L + 1, dtype=torch.int64, device=layers.device)
    for s in range(0, layers.shape[0], chunk):
        counts += torch.bincount(layers[s:s + chunk].amax(1), minlength=L + 1)
    counts = counts.tolist()
    return counts[:ran - 1] + [sum(counts[ran - 1:])] if ran else []
