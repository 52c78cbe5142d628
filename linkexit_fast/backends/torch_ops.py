"""The engine's three ops in plain torch: the specification every other backend must match.

All three work on a *row subset* so the engine only pays for the rows it still needs.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ..graph import csr_tensor
from ..validation import check_threshold


def aggregate_rows(rowptr: torch.Tensor, col: torch.Tensor, weight: torch.Tensor, h: torch.Tensor,
                   rows: torch.Tensor, self_weight: Optional[torch.Tensor] = None,
                   cache: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Weighted CSR aggregation over a subset of rows.

    .. math::
        out_i = \sum_{e = rowptr[r]}^{rowptr[r+1]-1} weight_e \, h_{col_e}
                + self\_weight_r \, h_r + cache_r, \qquad r = rows_i

    Shapes: ``rowptr [R+1]``, ``col``/``weight [nnz]``, ``h [n, m]`` (float32), ``rows [k]``
    (int64, values in ``[0, R)``), ``self_weight [R]``, ``cache [R, m]``; returns ``[k, m]``.
    """
    n_rows, n = rowptr.numel() - 1, h.shape[0]
    k = rows.numel()
    # cuSPARSE refuses a CSR with more entries than cells, which only repeated (row, col) entries
    # can cause; such inputs take the gather path below.
    if k >= n_rows // 2 and 0 < col.numel() <= n_rows * n:
        # Most rows wanted: one sparse product over all rows beats slicing out a sub-CSR.
        full = torch.sparse.mm(csr_tensor(rowptr, col, weight.to(h.dtype), (n_rows, n)), h)
        everything = k == n_rows and torch.equal(rows, torch.arange(n_rows, device=rows.device))
        return _epilogue(full if everything else full[rows], rows, h, self_weight, cache)
    # Slice the selected rows into a CSR of their own and let torch's sparse kernel do the sums.
    start = rowptr[rows]
    counts = rowptr[rows + 1] - start
    sub_rowptr = torch.zeros(k + 1, dtype=torch.int64, device=h.device)
    torch.cumsum(counts, 0, out=sub_rowptr[1:])
    total = int(sub_rowptr[-1])
    out = torch.zeros(k, h.shape[1], dtype=torch.float32, device=h.device)
    if total:
        seg = torch.repeat_interleave(torch.arange(k, device=h.device), counts, output_size=total)
        e = torch.arange(total, device=h.device) - sub_rowptr[seg] + start[seg]
        if total <= k * n:
            out = torch.sparse.mm(csr_tensor(sub_rowptr, col[e], weight[e].to(h.dtype), (k, n)), h)
        else:
            out.index_add_(0, seg, weight[e, None].to(h.dtype) * h[col[e]])
    return _epilogue(out, rows, h, self_weight, cache)


def _epilogue(out, rows, h, self_weight, cache):
    if self_weight is not None:
        out = out + self_weight[rows, None] * h[rows]
    if cache is not None:
        out = out + cache[rows]
    return out


def exit_logits(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                b2: torch.Tensor) -> torch.Tensor:
    """The 2-layer confidence MLP: ``relu(h w1^T + b1) w2^T + b2`` → logits ``[n, 2]`` over {CONTINUE, EXIT}."""
    return torch.relu(h @ w1.T + b1) @ w2.T + b2


def exit_margin_bound(threshold: float) -> float:
    r"""The bound on the logit margin that ``threshold`` sets: a node exits iff ``l_1 - l_0 >= bound``.

    ``bound = logit(threshold) = log(threshold / (1 - threshold))``: the rule
    ``sigmoid(l_1 - l_0) >= threshold`` without the float32 sigmoid, which saturates (1.0 from a
    margin of about 17, so ``threshold = 1.0`` used to exit nodes). ``threshold = 1.0`` gives
    ``+inf``: no node exits. Computed in float64, then rounded *up* to a float32, so that for a
    float32 margin ``m``, ``m >= bound`` holds exactly when ``m >= logit(threshold)`` does; every
    backend then compares the same float32 margin with the same float32 bound, which any cast to
    float32 keeps unchanged. Raises ``TypeError`` for a non-number, ``ValueError`` unless
    ``0 < threshold <= 1``.
    """
    return _margin_bound(check_threshold(threshold))


@functools.lru_cache(maxsize=256)
def _margin_bound(threshold: float) -> float:
    """:func:`exit_margin_bound` of a checked threshold, kept: the engine asks once per exit head
    and layer, and the numpy rounding cost about 10 us a time, a few % of a 100-pair call."""
    if threshold == 1:
        return math.inf
    exact = math.log(threshold) - math.log1p(-threshold)
    bound = np.float32(exact)  # round to nearest, which may land below
    if float(bound) < exact:  # compared in float64 (numpy would compare in float32)
        bound = np.nextafter(bound, np.float32(np.inf))
    return float(bound)


def exit_decision(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                  b2: torch.Tensor, threshold: float, w_nu: Optional[torch.Tensor] = None,
                  b_nu: Optional[torch.Tensor] = None, tau0: float = 0.0
                  ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    r"""Deterministic exit rule on rows ``h [n, k]``.

    ``exit = l_1 - l_0 >= logit(threshold)`` on the logit margin (see :func:`exit_margin_bound`;
    ``threshold = 1.0`` never exits), ``p_exit = softmax(logits)[EXIT] = sigmoid(l_1 - l_0)`` for
    reporting. Raises ``ValueError`` unless ``0 < threshold <= 1``, before any work.
    With the temperature head (``w_nu [k]``, ``b_nu [1]``), also returns the noise-free CONTINUE
    probability ``softmax(logits / nu)[CONTINUE] = sigmoid((l_0 - l_1) / nu)`` with
    :math:`\nu = \max(\mathrm{softplus}(h w_\nu + b_\nu) + \tau_0, 0.1)` (Eq. 7), used as SAS step size.
    Returns ``(p_exit [n], exit [n] bool, step [n] or None)``.
    """
    bound = exit_margin_bound(threshold)
    logits = exit_logits(h, w1, b1, w2, b2)
    diff = logits[:, 1] - logits[:, 0]
    p_exit = torch.sigmoid(diff)
    step = None
    if w_nu is not None:
        nu = torch.clamp(torch.nn.functional.softplus(h @ w_nu + b_nu) + tau0, min=0.1)
        step = torch.sigmoid(-diff / nu)
    return p_exit, diff >= bound, step


def score_pairs(z: torch.Tensor, u: torch.Tensor, v: torch.Tensor, weights: Sequence[torch.Tensor],
                biases: Sequence[torch.Tensor], chunk: Optional[int] = None) -> torch.Tensor:
    """HeaRT's MLP link scorer on gathered pairs: ``x = z[u] * z[v]``, then Linear+ReLU layers and a
    final Linear to one logit. ``weights[i]`` is ``[out, in]`` (nn.Linear layout); returns logits ``[P]``.

    Pairs are processed in chunks so the ``[chunk, m]`` intermediates stay in cache: 4096 on a
    CPU; 65536 on a GPU, where smaller products leave the GPU idle between launches.
    """
    chunk = chunk or (4096 if z.device.type == "cpu" else 65536)
    out = torch.empty(u.numel(), dtype=torch.float32, device=z.device)
    for s in range(0, u.numel(), chunk):
        x = z[u[s:s + chunk]] * z[v[s:s + chunk]]
        for w, b in zip(weights[:-1], biases[:-1]):
            x = torch.relu(torch.addmm(b, x, w.T))
        out[s:s + chunk] = torch.addmm(biases[-1], x, weights[-1].T).squeeze(1)
    return out
