"""Public ops, so other packages can call the engine's kernels or swap their backend onto them.

Each op validates its inputs here, once, the same way for every backend, then dispatches to a
backend from :mod:`linkexit_fast.backends` (``"auto"``: Triton for CUDA tensors, the C++ ops on the
CPU when built, else plain torch). Validation covers index *values* too (a ``col`` entry past the
rows of ``h``, a falling ``rowptr``): the Triton kernels trust them and would read out of bounds.
That costs a device sync per call; the engine, which builds its indices itself, calls the
backends directly. A bad tensor raises ``ValueError`` naming the argument; a ``threshold`` or
``tau0`` that is no real number, ``TypeError``.
Semantics are those of :mod:`linkexit_fast.backends.torch_ops`.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .backends import get_backend
from .graph import entry_rows
from .validation import check_threshold

__all__ = ["aggregate_rows", "exit_decision", "score_pairs", "gcn_aggregate"]


# ---------------------------------------------------------------------- validation
def _check_tensor(name: str, t, dtype: torch.dtype, shape: Sequence[Optional[int]],
                  device: Optional[torch.device] = None) -> None:
    """``t`` is a ``dtype`` tensor with ``shape`` (``None``: any size), on ``device`` if given."""
    if (not isinstance(t, torch.Tensor) or t.dtype != dtype or t.dim() != len(shape)
            or any(s is not None and s != d for s, d in zip(shape, t.shape))):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        got = f"{t.dtype} {list(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
        kind = str(dtype).replace("torch.", "")
        raise ValueError(f"{name} must be {'an' if kind[0] == 'i' else 'a'} {kind} tensor of shape "
                         f"{want}; got {got}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device}, the other inputs on {device}: all must share one device")


def _check_index(name: str, t: torch.Tensor, upper: int) -> None:
    """Every value of the int64 tensor ``t`` lies in ``[0, upper)``."""
    if t.numel():
        lo, hi = torch.stack(torch.aminmax(t)).tolist()  # one pass, one device sync
        if lo < 0 or hi >= upper:
            raise ValueError(f"{name} holds an index outside [0, {upper}): min {lo}, max {hi}")


def _check_csr(rowptr, col, device: torch.device) -> int:
    """``rowptr [R+1]``, ``col [nnz]``: int64 on ``device``, rows bounding valid entry ranges.
    Returns ``R``. (``col``'s values are the caller's to check: their bound depends on the op.)"""
    _check_tensor("rowptr", rowptr, torch.int64, (None,), device)
    _check_tensor("col", col, torch.int64, (None,), device)
    if rowptr.numel() == 0:
        raise ValueError("rowptr must hold R + 1 >= 1 offsets; got an empty tensor")
    # torch's sparse kernels (the torch backend) and the Triton kernels trust row ranges: a
    # falling rowptr crashed the process with a segmentation fault before this check.
    first, last, falls = int(rowptr[0]), int(rowptr[-1]), bool((rowptr.diff() < 0).any())
    if first != 0 or last != col.numel() or falls:
        raise ValueError(f"rowptr must rise from 0 to the number of entries ({col.numel()}) without "
                         f"falling; got {first} ... {last}{' (falling somewhere)' if falls else ''}")
    return rowptr.numel() - 1


def _check_finite(name: str, value) -> float:
    """A finite real number (numpy scalars included, ``bool`` not) as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        x = float(value)
    except OverflowError:  # an int beyond float range
        x = math.inf
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x


def _check_aggregate_rows(rowptr, col, weight, h, rows, self_weight, cache) -> None:
    _check_tensor("h", h, torch.float32, (None, None))
    n, m = h.shape
    num_rows = _check_csr(rowptr, col, h.device)
    _check_tensor("weight", weight, torch.float32, (col.numel(),), h.device)
    _check_tensor("rows", rows, torch.int64, (None,), h.device)
    if self_weight is not None:
        _check_tensor("self_weight", self_weight, torch.float32, (num_rows,), h.device)
    if cache is not None:
        _check_tensor("cache", cache, torch.float32, (num_rows, m), h.device)
    _check_index("col", col, n)
    # With the self term, out[i] also reads h[rows[i]], so each row must be a row of h too.
    _check_index("rows", rows, num_rows if self_weight is None else min(num_rows, n))


def _check_exit_decision(h, w1, b1, w2, b2, threshold, w_nu, b_nu, tau0) -> Tuple[float, float]:
    _check_tensor("h", h, torch.float32, (None, None))
    k = h.shape[1]
    _check_tensor("w1", w1, torch.float32, (None, k), h.device)
    hidden = w1.shape[0]
    _check_tensor("b1", b1, torch.float32, (hidden,), h.device)
    _check_tensor("w2", w2, torch.float32, (2, hidden), h.device)
    _check_tensor("b2", b2, torch.float32, (2,), h.device)
    if (w_nu is None) != (b_nu is None):
        raise ValueError("w_nu and b_nu must be given together (the temperature head needs both); "
                         f"got only {'w_nu' if b_nu is None else 'b_nu'}")
    if w_nu is not None:
        _check_tensor("w_nu", w_nu, torch.float32, (k,), h.device)
        _check_tensor("b_nu", b_nu, torch.float32, (1,), h.device)
    return check_threshold(threshold), _check_finite("tau0", tau0)


def _check_score_pairs(z, u, v, weights, biases) -> None:
    _check_tensor("z", z, torch.float32, (None, None))
    _check_tensor("u", u, torch.int64, (None,), z.device)
    _check_tensor("v", v, torch.int64, (u.numel(),), z.device)
    if not isinstance(weights, (list, tuple)) or not isinstance(biases, (list, tuple)):
        raise ValueError(f"weights and biases must be lists of tensors; got {type(weights).__name__} "
                         f"and {type(biases).__name__}")
    if not weights or len(weights) != len(biases):
        raise ValueError(f"score_pairs needs one bias per weight and at least one layer; got "
                         f"{len(weights)} weights and {len(biases)} biases")
    width = z.shape[1]  # each layer's input is the previous layer's output, the first's z[u] * z[v]
    for i, (w, b) in enumerate(zip(weights, biases)):
        out = 1 if i == len(weights) - 1 else None  # the last layer gives the logit
        _check_tensor(f"weights[{i}]", w, torch.float32, (out, width), z.device)
        _check_tensor(f"biases[{i}]", b, torch.float32, (w.shape[0],), z.device)
        width = w.shape[0]
    _check_index("u", u, z.shape[0])
    _check_index("v", v, z.shape[0])


# ---------------------------------------------------------------------- ops
def aggregate_rows(rowptr: torch.Tensor, col: torch.Tensor, weight: torch.Tensor, h: torch.Tensor,
                   rows: torch.Tensor, self_weight: Optional[torch.Tensor] = None,
                   cache: Optional[torch.Tensor] = None, backend: str = "auto") -> torch.Tensor:
    r"""Weighted CSR aggregation over a subset of rows:
    ``out[i] = sum_e weight[e] h[col[e]] + self_weight[r] h[r] + cache[r]`` over the CSR row
    ``r = rows[i]`` (``rows`` may repeat).

    Shapes: ``rowptr [R+1]``, ``col [nnz]`` (int64, values in ``[0, n)``), ``weight [nnz]``,
    ``h [n, m]`` (float32), ``rows [k]`` (int64, values in ``[0, R)``, and in ``[0, n)`` too with
    ``self_weight``), ``self_weight [R]``, ``cache [R, m]`` (float32, both optional), all on one
    device; returns float32 ``[k, m]``. ``backend``: ``"auto"`` or a name from
    :func:`~linkexit_fast.backends.available_backends`.

    Raises ``ValueError`` for a wrong dtype, shape, device or index value, before any kernel runs.
    """
    _check_aggregate_rows(rowptr, col, weight, h, rows, self_weight, cache)
    return get_backend(backend, h.device).aggregate_rows(rowptr, col, weight, h, rows, self_weight, cache)


def exit_decision(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                  threshold: float, w_nu: Optional[torch.Tensor] = None, b_nu: Optional[torch.Tensor] = None,
                  tau0: float = 0.0, backend: str = "auto"
                  ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Fused exit head on rows ``h [n, k]``: the confidence MLP ``w1 [H, k]``, ``b1 [H]``,
    ``w2 [2, H]``, ``b2 [2]`` and, optionally, the temperature head ``w_nu [k]``, ``b_nu [1]``
    (both or neither), all float32 on one device. ``threshold`` is a real in ``(0, 1]`` (numpy
    scalars and 0-d tensors too), ``tau0`` a finite real (default 0.0). Returns
    ``(p_exit [n], exit [n] bool, step [n] or None)``; see
    :func:`linkexit_fast.backends.torch_ops.exit_decision`.

    Raises, before any kernel runs, ``ValueError`` for a wrong dtype, shape or device, a
    threshold outside ``(0, 1]`` (NaN included) or a non-finite ``tau0``, and ``TypeError`` for a
    threshold or ``tau0`` that is not a real number (``bool`` included; see
    :func:`linkexit_fast.validation.check_threshold`).
    """
    threshold, tau0 = _check_exit_decision(h, w1, b1, w2, b2, threshold, w_nu, b_nu, tau0)
    return get_backend(backend, h.device).exit_decision(h, w1, b1, w2, b2, threshold, w_nu, b_nu, tau0)


def score_pairs(z: torch.Tensor, u: torch.Tensor, v: torch.Tensor, weights: Sequence[torch.Tensor],
                biases: Sequence[torch.Tensor], backend: str = "auto") -> torch.Tensor:
    """Fused HeaRT scorer: ``MLP(z[u] * z[v])`` logits ``[P]``, ReLU between layers.

    ``z [n, m]`` float32; ``u``, ``v [P]`` int64 in ``[0, n)``; ``weights`` and ``biases`` lists of
    float32 tensors in nn.Linear layout: ``weights[0] [d_1, m]``, ``weights[i] [d_{i+1}, d_i]``,
    the last ``[1, d_L]``, ``biases[i] [d_{i+1}]``; all on one device.

    Raises ``ValueError`` for a wrong dtype, shape, device or index value, before any kernel runs.
    """
    _check_score_pairs(z, u, v, weights, biases)
    return get_backend(backend, z.device).score_pairs(z, u, v, list(weights), list(biases))


def gcn_aggregate(rowptr: torch.Tensor, col: torch.Tensor, h: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    r""":math:`D^{-1/2}(A+I)D^{-1/2} h` for a symmetric CSR adjacency — a drop-in for the propagation
    step of a GCN layer in another package (see ``docs/backend_swap.md``).

    Shapes: ``rowptr [n+1]``, ``col [nnz]`` (int64, values in ``[0, n)``), ``h [n, m]`` (float32,
    one row per node), on one device; returns ``[n, m]``. Raises ``ValueError`` like
    :func:`aggregate_rows`.
    """
    _check_tensor("h", h, torch.float32, (None, None))
    n = _check_csr(rowptr, col, h.device)
    if h.shape[0] != n:
        raise ValueError(f"h must have one row per node of the n x n adjacency: rowptr gives "
                         f"n = {n}, h has {h.shape[0]} rows")
    _check_index("col", col, n)
    dinv = (rowptr.diff() + 1).to(torch.float32).pow(-0.5)
    weight = dinv[entry_rows(rowptr)] * dinv[col]
    rows = torch.arange(n, device=h.device)
    return get_backend(backend, h.device).aggregate_rows(rowptr, col, weight, h, rows, dinv * dinv, None)
