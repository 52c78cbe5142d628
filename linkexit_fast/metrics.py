"""Ranking metrics: the HeaRT setting (each positive against its own negatives) and the existing
OGB setting (one shared negative set), vectorised."""
from __future__ import annotations

from typing import Dict, Sequence

import torch

HEART_KS = (1, 3, 10, 20, 50, 100)
EXISTING_KS = (10, 20, 50, 100)


def heart_ranks(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    r"""Rank of each positive among its own negatives, ties split as in HeaRT's evaluator:
    :math:`1 + \tfrac12(\#\{n \ge p\} + \#\{n > p\})`. Shapes: ``[P]``, ``[P, K]`` → ``[P]``."""
    if pos_scores.dim() != 1 or neg_scores.dim() != 2 or neg_scores.shape[0] != pos_scores.shape[0]:
        raise ValueError(f"expected pos_scores [P] and neg_scores [P, K], got {list(pos_scores.shape)} "
                         f"and {list(neg_scores.shape)}")
    p = pos_scores[:, None]
    ge = (neg_scores >= p).sum(1)
    gt = (neg_scores > p).sum(1)
    return 1.0 + 0.5 * (ge + gt).to(torch.float64)


def heart_metrics(pos_scores, neg_scores, ks: Sequence[int] = HEART_KS) -> Dict[str, float]:
    """MRR and Hits@K (share of positives with rank <= K against their own negatives)."""
    ranks = heart_ranks(pos_scores, neg_scores)
    out = {"mrr": float((1.0 / ranks).mean())}
    out.update({f"hits@{k}": float((ranks <= k).to(torch.float64).mean()) for k in ks})
    return out


def existing_metrics(pos_scores, neg_scores, ks: Sequence[int] = EXISTING_KS) -> Dict[str, float]:
    """OGB-style Hits@K against one shared negative set (a positive counts when it scores strictly
    above the K-th highest negative), MRR against all shared negatives, AUC and AP."""
    if pos_scores.dim() != 1 or neg_scores.dim() != 1:
        raise ValueError(f"expected pos_scores [P] and neg_scores [Q], got {list(pos_scores.shape)} "
                         f"and {list(neg_scores.shape)}")
    pos, neg = pos_scores.to(torch.float64), neg_scores.to(torch.float64)
    out = {}
    sorted_neg = torch.sort(neg, descending=True).values
    for k in ks:
        out[f"hits@{k}"] = 1.0 if len(neg) < k else float((pos > sorted_neg[k - 1]).to(torch.float64).mean())
    asc = torch.sort(neg).values
    n_ge = len(neg) - torch.searchsorted(asc, pos, right=False)  # negatives >= positive
    n_gt = len(neg) - torch.searchsorted(asc, pos, right=True)  # negatives > positive
    ranks = 1.0 + 0.5 * (n_ge + n_gt).to(torch.float64)
    out["mrr"] = float((1.0 / ranks).mean())
    # AUC: probability a positive outscores a negative, ties counted half (Mann-Whitney U).
    out["auc"] = float(1.0 - (0.5 * (n_ge + n_gt)).sum() / max(len(pos) * len(neg), 1))
    scores = torch.cat([pos, neg])
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).to(torch.float64)
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], labels[order]
    tp = torch.cumsum(y, 0)
    last = torch.ones(len(s), dtype=torch.bool)  # evaluate precision at the end of each tie group
    last[:-1] = s[1:] != s[:-1]
    precision = tp[last] / (torch.nonzero(last).squeeze(1) + 1).to(torch.float64)
    recall_gain = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), tp[last]])) / max(len(pos), 1)
    out["ap"] = float((precision * recall_gain).sum())
    return out


def evaluate_scores(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> Dict[str, float]:
    """HeaRT metrics when ``neg_scores`` is ``[P, K]``, existing-setting metrics when it is ``[Q]``."""
    if neg_scores.dim() == 2:
        return heart_metrics(pos_scores, neg_scores)
    return existing_metrics(pos_scores, neg_scores)
