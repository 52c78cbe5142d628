r"""Exact HeaRT metrics at bf16 speed: score in bf16 with error bounds, re-score in fp32 only
the negatives whose bound leaves their comparison with the positive undecided.

MRR and Hits@K depend on the scores only through the counts
:math:`|\{j: n_{ij} \ge p_i\}|` and :math:`|\{j: n_{ij} > p_i\}|` (:mod:`linkexit_fast.metrics`).
Positives are scored in fp32 by the same scorer as the fp32 evaluation. Each negative gets a bf16
logit :math:`\hat s` and a bound :math:`B` (:mod:`linkexit_fast.backends.bf16`) with its fp32
logit in :math:`[lo, hi] \supseteq [\hat s - B, \hat s + B]` (endpoints rounded outwards). With
:math:`f` the metric's monotone score map (identity on logits, sigmoid on probabilities), the
negative is below its positive when :math:`f(hi) < f(p)`, above when :math:`f(lo) > f(p)`, and
otherwise re-scored in fp32. The counts, hence every metric, equal the all-fp32 evaluation's.

Assumptions, both checked by ``tests/test_bf16_ranking.py`` and the benchmark: the fp32 scorer
gives a pair the same bits whatever else is in its batch, which oneDNN / MKL GEMMs do for rows
away from a batch's tail (the re-scoring batch is padded to a multiple of
:data:`RESCORE_ALIGN` rows; a pair in the tail of one of the fp32 evaluation's own batches,
e.g. its last 3 rows, may still differ in its last bit), and torch's fp32 sigmoid is within :data:`SIGMOID_RTOL` (relative) plus
``2^-130`` of a monotone function, which the probability comparisons leave as margin.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch

from . import engine
from .backends import get_backend
from .backends.bf16 import bf16_isa, default_products, score_pairs_bf16
from .checkpoint import Predictor
from .metrics import heart_metrics
from .validation import check_index_tensor

__all__ = ["exact_heart_metrics", "heart_metrics_from_embeddings", "SIGMOID_RTOL"]

SIGMOID_RTOL = 2.0 ** -19  # 16 float32 ulps: torch's sigmoid (exp within 1 ulp, then 1 / (1 + e))
RESCORE_ALIGN = 64  # re-scoring batches are padded to a multiple of this (see below)
_SIGMOID_SLICE = 4096  # a multiple of every vector width, below torch's 32768 parallel grain


def _fp32_scorer(model, ops) -> Callable:
    """The fp32 scorer ``predict`` uses with ``ops`` (``None``: the reference's own predictor)."""
    if ops is None:
        return lambda z, u, v, w, b: model.predictor(z[u], z[v]).reshape(-1)
    return lambda z, u, v, w, b: ops.score_pairs(z, u, v, list(w), list(b))


def _sigmoid(t: torch.Tensor) -> torch.Tensor:
    """``torch.sigmoid`` with every element on its vectorised path: a tensor's scalar tail (its
    last ``numel % 32`` elements, per thread) uses ``std::exp`` instead of Sleef's ``exp`` and
    can differ by an ulp, which splits exact ties. Slices of ``_SIGMOID_SLICE`` elements stay
    on one thread; the last is padded to a multiple of it."""
    out = torch.empty_like(t)
    for s in range(0, t.numel(), _SIGMOID_SLICE):
        part = t[s:s + _SIGMOID_SLICE]
        padded = torch.zeros(_SIGMOID_SLICE, dtype=t.dtype, device=t.device)
        padded[:part.numel()] = part
        out[s:s + _SIGMOID_SLICE] = torch.sigmoid(padded)[:part.numel()]
    return out


def _next(t: torch.Tensor, direction: float) -> torch.Tensor:
    return torch.nextafter(t, torch.full_like(t, direction))


@torch.no_grad()
def exact_heart_metrics(model, graph, pos, neg, threshold: float = 0.9, *, scores: str = "probability",
                        backend: str = "auto", force_fp32: bool = False) -> Dict[str, object]:
    """HeaRT MRR and Hits@K identical to the fp32 evaluation's, scoring negatives in bf16.

    Args:
        model: an ``EarlyExitLinkPredictor``, or the predictor from ``linkexit_fast.load`` (then
            ``graph`` may be ``None`` to use its graph).
        graph: the :class:`~linkexit_fast.graph.Graph`.
        pos: positive pairs ``[P, 2]``; neg: per-positive negatives ``[P, K, 2]`` (the HeaRT
            setting). Shared negatives ``[Q, 2]`` raise a ValueError: their Hits@K, AUC and AP
            also compare negatives with each other, which the per-positive test does not decide.
        threshold: the exit threshold, as in :func:`linkexit_fast.predict`.
        scores: ``"probability"`` (default: ``predict``'s sigmoid outputs, ties included) or
            ``"logit"`` (the scorer's logits, as :func:`linkexit_fast.evaluate.evaluate` uses).
        backend: as in :func:`linkexit_fast.predict`: the embeddings and fp32 scorer are those of
            ``predict(..., backend=backend)`` (``"reference"``: the dense forward and the model's
            own predictor).
        force_fp32: score everything in fp32 (the fallback where the CPU has no bf16 hardware).

    Returns:
        ``heart_metrics``' keys (``mrr``, ``hits@1`` ... ``hits@100``) plus ``rescored`` (negative
        entries re-scored in fp32), ``rescored_share`` (of the ``P * K`` entries) and
        ``refined_bf16x3`` (entries the one-product bf16 pass left undecided and a three-product
        pass scored again, on CPUs with AMX; 0 elsewhere).
    """
    if scores not in ("probability", "logit"):
        raise ValueError(f"scores must be 'probability' or 'logit', got {scores!r}")
    if isinstance(model, Predictor):
        model, graph = model.model, (model.graph if graph is None else graph)
    pos = check_index_tensor(pos, "pos", shape=(None, 2))
    neg = torch.as_tensor(neg)
    if neg.dim() != 3 or neg.shape[0] != pos.shape[0] or neg.shape[2] != 2 or neg.shape[1] == 0:
        raise ValueError(f"neg must hold per-positive negatives [P, K, 2] with P = {pos.shape[0]} "
                         f"and K >= 1 (shared negatives [Q, 2] are not supported), got {list(neg.shape)}")
    P, K = neg.shape[:2]
    flat = check_index_tensor(neg.reshape(-1, 2), "neg", shape=(None, 2))
    # embeddings checks the rest (graph, model, threshold, backend, node ids) as predict does
    z, rows = engine.embeddings(graph, torch.cat([pos, flat]).reshape(-1), threshold, model=model, backend=backend)
    rows = rows.view(-1, 2)
    weights = [lin.weight.detach() for lin in model.predictor.lins]
    biases = [lin.bias.detach() for lin in model.predictor.lins]
    fp32 = _fp32_scorer(model, None if backend == "reference" else get_backend(backend, z.device))
    return heart_metrics_from_embeddings(z, rows[:P], rows[P:].view(P, K, 2), weights, biases, fp32,
                                         scores=scores, force_fp32=force_fp32)


@torch.no_grad()
def heart_metrics_from_embeddings(z: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, weights, biases,
                                  fp32_scorer: Callable, *, scores: str = "probability",
                                  force_fp32: bool = False, cascade: bool = True) -> Dict[str, object]:
    """The core of :func:`exact_heart_metrics` on given embeddings: ``z [n, m]`` float32, ``pos
    [P, 2]`` and ``neg [P, K, 2]`` int64 rows of ``z`` (trusted), the scorer's ``weights`` /
    ``biases`` and ``fp32_scorer(z, u, v, weights, biases) -> [N]`` logits. Returns the same dict
    as :func:`exact_heart_metrics`, whose metrics equal ``heart_metrics(f(fp32_scorer(pos)),
    f(fp32_scorer(neg)))`` with ``f`` the sigmoid (``scores="probability"``) or the identity.
    ``cascade=False``: one bf16 pass at the ISA's default products (:func:`default_products`)
    instead of one product then three for the undecided (the same metrics; for comparisons)."""
    P, K = neg.shape[:2]
    p_logit = fp32_scorer(z, pos[:, 0], pos[:, 1], weights, biases)
    flat = neg.reshape(-1, 2)
    f = _sigmoid if scores == "probability" else (lambda t: t)
    fp = f(p_logit)

    def side(idx: torch.Tensor, products: int) -> torch.Tensor:
        """+1 / -1 for the negatives ``idx`` that a bf16 pass with ``products`` proves above /
        below their positive, 0 where its bound leaves it undecided."""
        s_hat, bound = score_pairs_bf16(z, flat[idx, 0], flat[idx, 1], weights, biases, products=products,
                                        force_fp32=force_fp32, fp32_scorer=fp32_scorer)
        lo, hi = _next(s_hat - bound, -float("inf")), _next(s_hat + bound, float("inf"))
        p = fp[idx // K]  # each negative's positive
        if scores == "probability":
            p64 = p.double()
            below = f(hi).double() * (1 + SIGMOID_RTOL) + 2.0 ** -130 < p64
            above = f(lo).double() * (1 - SIGMOID_RTOL) - 2.0 ** -130 > p64
        else:
            below, above = hi < p, lo > p
        return above.to(torch.int8) - below.to(torch.int8)

    # No deduplication: torch.unique(return_inverse=True) of CiteSeer's 228k negatives took
    # ~200 ms on the loaded 2-core machine, the 14% duplicates ~10 ms of bf16 scoring.
    # A cascade where the CPU has AMX: one bf16 product per multiply-add for every negative, then
    # three (a ~160x tighter bound at 1.8-2.5x the kernel time) only for those one leaves
    # undecided (14 % of CiteSeer's HeaRT test negatives, 0.2 % after three), then fp32.
    every = torch.arange(P * K, device=flat.device)
    cascade = cascade and not force_fp32 and default_products(bf16_isa(z.device)) == 3
    decided = side(every, 1 if cascade else default_products(bf16_isa(z.device)))
    refined = 0
    if cascade:
        open_ = (decided == 0).nonzero().squeeze(1)
        refined = open_.numel()
        if refined:
            decided[open_] = side(open_, 3)
    # Decided entries become -inf / +inf; undecided ones get their fp32 score: heart_metrics
    # then counts exactly what the fp32 scores would.
    surrogate = torch.where(decided > 0, float("inf"), -float("inf")).to(torch.float32)
    need = (decided == 0).nonzero().squeeze(1)
    if need.numel():
        # GEMMs give a row different bits in a short batch or a batch's tail (gemv paths, masked
        # tails; tests saw it at 1-3, 7, 15, 31, 33 and 500 rows): score the pairs padded to a
        # multiple of RESCORE_ALIGN rows, as in the long batches of the fp32 evaluation.
        padded = flat[torch.cat([need, need[:1].expand(-need.numel() % RESCORE_ALIGN)])]
        exact = fp32_scorer(z, padded[:, 0], padded[:, 1], weights, biases)[:need.numel()]
        surrogate[need] = f(exact)
    surrogate = surrogate.view(P, K)
    out: Dict[str, object] = dict(heart_metrics(fp, surrogate))
    out["rescored"] = need.numel()
    out["rescored_share"] = out["rescored"] / (P * K)
    out["refined_bf16x3"] = refined
    return out
