r"""Link-prediction metrics for the two evaluation settings.

HeaRT setting (per-positive negatives): positive :math:`i` with score :math:`p_i` is ranked
against its own :math:`K` negatives :math:`n_{i1}, \dots, n_{iK}`; ties are split between the
optimistic and the pessimistic rank, exactly as HeaRT's (and OGB's) evaluator does:

.. math::
    \mathrm{rank}_i = 1 + \tfrac12\big(|\{j: n_{ij} \ge p_i\}| + |\{j: n_{ij} > p_i\}|\big),
    \qquad \mathrm{MRR} = \tfrac1P \sum_i 1/\mathrm{rank}_i,
    \qquad \mathrm{Hits@}K = \tfrac1P |\{i: \mathrm{rank}_i \le K\}|.

Existing setting (OGB style, one negative set shared by all positives): Hits@K counts the
positives scoring strictly above the :math:`K`-th largest negative score (1 when there are fewer
than :math:`K` negatives); MRR ranks each positive against all shared negatives with the tie
rule above; AUC is the probability that a random positive outscores a random negative (ties
count one half):

.. math::
    \mathrm{AUC} = 1 - \frac{1}{PQ} \sum_i \tfrac12\big(|\{j: n_j \ge p_i\}|
    + |\{j: n_j > p_i\}|\big);

AP is the step-wise area under the precision-recall curve,
:math:`\sum_t (R_t - R_{t-1}) P_t` over the distinct score thresholds :math:`t` from the
highest down (scikit-learn's ``average_precision_score``).
"""
from __future__ import annotations

from typing import Dict, Iterable, Tuple

import torch

__all__ = ["HEART_KS", "EXISTING_KS", "heart_ranks", "heart_metrics", "existing_metrics",
           "evaluate_scores"]

HEART_KS = (1, 3, 10, 20, 50, 100)
EXISTING_KS = (10, 20, 50, 100)

# Positives per slice in heart_ranks, so the [slice, K] comparison masks stay near 4M elements.
_SLICE_ELEMENTS = 1 << 22


def _as_scores(value, name: str) -> torch.Tensor:
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if not (t.dtype.is_floating_point or t.dtype in (torch.int8, torch.int16, torch.int32,
                                                      torch.int64, torch.uint8, torch.bool)):
        raise TypeError(f"{name} must hold real scores, got dtype {t.dtype}")
    t = t.detach()
    if t.dtype.is_floating_point and bool(torch.isnan(t).any()):
        raise ValueError(f"{name} contains NaN scores (shape {list(t.shape)})")
    return t


def _pair(pos_scores, neg_scores, neg_dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Validate shapes and promote both score tensors to one dtype on one device."""
    pos = _as_scores(pos_scores, "pos_scores")
    neg = _as_scores(neg_scores, "neg_scores")
    if pos.dim() != 1 or pos.numel() == 0:
        raise ValueError(f"pos_scores must have shape [P] with P >= 1, got {list(pos.shape)}")
    if neg.dim() != neg_dim:
        want = "[P, K] (one row of negatives per positive)" if neg_dim == 2 else "[Q]"
        raise ValueError(f"neg_scores must have shape {want}, got {list(neg.shape)} "
                         f"for pos_scores of shape {list(pos.shape)}")
    if neg_dim == 2 and (neg.shape[0] != pos.shape[0] or neg.shape[1] == 0):
        raise ValueError(f"neg_scores must have shape [P, K] with P = {pos.shape[0]} and K >= 1, "
                         f"got {list(neg.shape)} for pos_scores of shape {list(pos.shape)}")
    if neg_dim == 1 and neg.numel() == 0:
        raise ValueError("neg_scores must hold at least one negative, got shape [0]")
    if pos.device != neg.device:
        raise ValueError(f"pos_scores on {pos.device} but neg_scores on {neg.device}")
    dtype = torch.promote_types(pos.dtype, neg.dtype)
    return pos.to(dtype), neg.to(dtype)


def _check_ks(ks: Iterable[int]) -> Tuple[int, ...]:
    ks = tuple(ks)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"ks must be positive integers, got {k!r} in {ks}")
    return ks


# ---------------------------------------------------------------------- HeaRT setting
def heart_ranks(pos_scores, neg_scores) -> torch.Tensor:
    r"""Rank of each positive among its own negatives, float ``[P]``.

    ``pos_scores`` ``[P]``, ``neg_scores`` ``[P, K]``;
    :math:`\mathrm{rank}_i = 1 + \frac12(|\{j: n_{ij} \ge p_i\}| + |\{j: n_{ij} > p_i\}|)`,
    so a positive tied with ``t`` negatives (and below none) ranks ``1 + t / 2``.
    Vectorised in slices of positives; float64 on the scores' device.
    """
    pos, neg = _pair(pos_scores, neg_scores, neg_dim=2)
    p, k = neg.shape
    ranks = torch.empty(p, dtype=torch.float64, device=pos.device)
    step = max(1, _SLICE_ELEMENTS // k)
    for s in range(0, p, step):
        n_s, p_s = neg[s:s + step], pos[s:s + step, None]
        ge_plus_gt = (n_s >= p_s).sum(1) + (n_s > p_s).sum(1)
        ranks[s:s + step] = 1.0 + 0.5 * ge_plus_gt.to(torch.float64)
    return ranks


def heart_metrics(pos_scores, neg_scores, ks: Iterable[int] = HEART_KS
                  ) -> Dict[str, float]:
    """MRR and Hits@K of the HeaRT setting (see :func:`heart_ranks`).

    ``pos_scores`` ``[P]``, ``neg_scores`` ``[P, K]``. Returns ``{"mrr": ..., "hits@K": ...}``
    with ``hits@K`` the share of positives whose rank is ``<= K`` (a half-tied rank such as 1.5
    does not count for Hits@1).
    """
    ks = _check_ks(ks)
    ranks = heart_ranks(pos_scores, neg_scores)
    out = {"mrr": float((1.0 / ranks).mean())}
    for k in ks:
        out[f"hits@{k}"] = float((ranks <= k).to(torch.float64).mean())
    return out


# ---------------------------------------------------------------------- existing setting
def _average_precision(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """Step-wise AP over distinct thresholds, from the highest score down."""
    scores = torch.cat([pos, neg]).to(torch.float64)
    labels = torch.cat([torch.ones(pos.numel(), dtype=torch.float64, device=pos.device),
                        torch.zeros(neg.numel(), dtype=torch.float64, device=pos.device)])
    values, inverse = torch.unique(scores, sorted=True, return_inverse=True)
    # Positives and total count at each distinct score, highest score first.
    n_pos = torch.zeros(values.numel(), dtype=torch.float64, device=pos.device)
    n_pos.index_add_(0, inverse, labels)
    n_all = torch.bincount(inverse, minlength=values.numel()).to(torch.float64)
    tp = torch.cumsum(n_pos.flip(0), 0)
    seen = torch.cumsum(n_all.flip(0), 0)
    precision = tp / seen
    recall_gain = n_pos.flip(0) / pos.numel()
    return float((recall_gain * precision).sum())


def existing_metrics(pos_scores, neg_scores, ks: Iterable[int] = EXISTING_KS
                     ) -> Dict[str, float]:
    """Hits@K (OGB definition), MRR, AUC and AP with one negative set shared by all positives.

    ``pos_scores`` ``[P]``, ``neg_scores`` ``[Q]``. ``hits@K`` is the share of positives scoring
    strictly above the ``K``-th largest negative score, or 1.0 when ``Q < K``; ``mrr`` ranks each
    positive against all ``Q`` negatives as :func:`heart_ranks` does; ``auc`` counts ties as one
    half; ``ap`` is scikit-learn's ``average_precision_score`` (no interpolation).
    """
    ks = _check_ks(ks)
    pos, neg = _pair(pos_scores, neg_scores, neg_dim=1)
    out: Dict[str, float] = {}
    if ks:
        top = torch.topk(neg, min(max(ks), neg.numel())).values
        for k in ks:
            if neg.numel() < k:
                out[f"hits@{k}"] = 1.0
            else:
                out[f"hits@{k}"] = float((pos > top[k - 1]).to(torch.float64).mean())
    asc = torch.sort(neg).values
    q = neg.numel()
    n_ge = q - torch.searchsorted(asc, pos, right=False)  # negatives >= each positive
    n_gt = q - torch.searchsorted(asc, pos, right=True)  # negatives > each positive
    above = 0.5 * (n_ge + n_gt).to(torch.float64)
    out["mrr"] = float((1.0 / (1.0 + above)).mean())
    out["auc"] = float(1.0 - above.sum() / (pos.numel() * q))
    out["ap"] = _average_precision(pos, neg)
    return out


def evaluate_scores(pos_scores, neg_scores) -> Dict[str, float]:
    """Metrics of the setting the negatives' shape implies, with each setting's default ``ks``.

    ``neg_scores`` ``[P, K]`` (HeaRT: a row of negatives per positive) gives
    :func:`heart_metrics`; ``[Q]`` (one shared set) gives :func:`existing_metrics`.
    """
    neg = _as_scores(neg_scores, "neg_scores")
    if neg.dim() == 2:
        return heart_metrics(pos_scores, neg)
    if neg.dim() == 1:
        return existing_metrics(pos_scores, neg)
    raise ValueError(f"neg_scores must have shape [P, K] (HeaRT) or [Q] (shared negatives), "
                     f"got {list(neg.shape)}")
