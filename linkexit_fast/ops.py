"""Public ops, so other packages can call the engine's kernels or swap their backend onto them.

Each op validates its inputs once, then dispatches to a backend from
:mod:`linkexit_fast.backends` (``"auto"``: Triton for CUDA tensors, the C++ ops on the CPU when
built, else plain torch). Semantics are those of :mod:`linkexit_fast.backends.torch_ops`.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .backends import get_backend
from .graph import entry_rows

__all__ = ["aggregate_rows", "exit_decision", "score_pairs", "gcn_aggregate"]


def _check_float(name: str, t: torch.Tensor, dim: int) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.dim() != dim:
        got = type(t).__name__ if not isinstance(t, torch.Tensor) else f"{t.dtype} with {t.dim()} dims"
        raise ValueError(f"{name} must be a float32 tensor with {dim} dims; got {got}")


def _check_index(name: str, t: torch.Tensor, upper: int) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.dim() != 1:
        raise ValueError(f"{name} must be a 1-D int64 tensor")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= upper):
        raise ValueError(f"{name} holds an index outside [0, {upper}): min {int(t.min())}, max {int(t.max())}")


def _check_rowptr(rowptr: torch.Tensor, nnz: int) -> None:
    # torch's sparse kernels (the torch backend) and the Triton kernels trust row ranges: a
    # falling rowptr crashed the process with a segmentation fault before this check.
    if not isinstance(rowptr, torch.Tensor) or rowptr.dtype != torch.int64 or rowptr.dim() != 1 or not rowptr.numel():
        raise ValueError("rowptr must be a non-empty 1-D int64 tensor")
    if int(rowptr[0]) != 0 or int(rowptr[-1]) != nnz or bool((rowptr.diff() < 0).any()):
        raise ValueError(f"rowptr must rise from 0 to the number of entries ({nnz}) without falling; "
                         f"got {int(rowptr[0])} ... {int(rowptr[-1])}")


def aggregate_rows(rowptr: torch.Tensor, col: torch.Tensor, weight: torch.Tensor, h: torch.Tensor,
                   rows: torch.Tensor, self_weight: Optional[torch.Tensor] = None,
                   cache: Optional[torch.Tensor] = None, backend: str = "auto") -> torch.Tensor:
    r"""``out[i] = sum_e weight[e] h[col[e]] + self_weight[r] h[r] + cache[r]`` over the CSR row
    ``r = rows[i]``. Shapes: ``rowptr [R+1]``, ``col``/``weight [nnz]``, ``h [n, m]``, ``rows [k]``
    → ``[k, m]``."""
    _check_float("h", h, 2)
    _check_float("weight", weight, 1)
    _check_index("rows", rows, rowptr.numel() - 1)
    _check_index("col", col, h.shape[0])
    if weight.numel() != col.numel():
        raise ValueError(f"col ({col.numel()}) and weight ({weight.numel()}) must have one entry each")
    _check_rowptr(rowptr, col.numel())
    return get_backend(backend, h.device).aggregate_rows(rowptr, col, weight, h, rows, self_weight, cache)


def exit_decision(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                  threshold: float, w_nu: Optional[torch.Tensor] = None, b_nu: Optional[torch.Tensor] = None,
                  tau0: float = 0.0, backend: str = "auto"):
    """Fused exit head: returns ``(p_exit [n], exit [n] bool, step [n] or None)`` (see torch_ops)."""
    _check_float("h", h, 2)
    if w1.shape[1] != h.shape[1] or w2.shape != (2, w1.shape[0]):
        raise ValueError(f"head weights do not fit: h {list(h.shape)}, w1 {list(w1.shape)}, w2 {list(w2.shape)}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    return get_backend(backend, h.device).exit_decision(h, w1, b1, w2, b2, threshold, w_nu, b_nu, tau0)


def score_pairs(z: torch.Tensor, u: torch.Tensor, v: torch.Tensor, weights: Sequence[torch.Tensor],
                biases: Sequence[torch.Tensor], backend: str = "auto") -> torch.Tensor:
    """Fused HeaRT scorer: ``MLP(z[u] * z[v])`` logits ``[P]``; ``weights[i]`` in nn.Linear layout."""
    _check_float("z", z, 2)
    _check_index("u", u, z.shape[0])
    _check_index("v", v, z.shape[0])
    if len(weights) != len(biases) or not weights or weights[-1].shape[0] != 1:
        raise ValueError("score_pairs needs matching weights/biases ending in a 1-output layer")
    return get_backend(backend, z.device).score_pairs(z, u, v, list(weights), list(biases))


def gcn_aggregate(rowptr: torch.Tensor, col: torch.Tensor, h: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    r""":math:`D^{-1/2}(A+I)D^{-1/2} h` for a symmetric CSR adjacency — a drop-in for the propagation
    step of a GCN layer in another package (see ``docs/backend_swap.md``)."""
    _check_rowptr(rowptr, col.numel())
    n = rowptr.numel() - 1
    dinv = (rowptr[1:] - rowptr[:-1] + 1).to(torch.float32).pow(-0.5)
    row = entry_rows(rowptr)
    return aggregate_rows(rowptr, col, dinv[row] * dinv[col], h, torch.arange(n, device=h.device),
                          dinv * dinv, backend=backend)
