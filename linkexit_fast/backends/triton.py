"""Triton backend: the engine's three ops as the Triton kernels of ``linkexit_fast.kernels``.

Same signatures and return conventions as :mod:`linkexit_fast.backends.torch_ops`, the
specification these ops are tested against. Inputs are validated here, once, with errors naming
the offending argument; the kernel launchers behind them trust their inputs. Index *values*
(``rows`` within ``[0, R)``, ``col`` within ``[0, n)``, a non-decreasing ``rowptr``) are not
checked, since that costs a device sync per call: the engine builds them itself.

Triton is optional: importing this module never imports it. :func:`available` probes once.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence, Tuple

import torch

from . import torch_ops

__all__ = ["available", "aggregate_rows", "exit_decision", "score_pairs"]


def _interpreting() -> bool:
    """``TRITON_INTERPRET`` is set: kernels run on the CPU through Triton's interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> Optional[str]:
    """``None`` when the kernels can run here: Triton imports, and there is a CUDA device or
    ``TRITON_INTERPRET=1`` (the CPU interpreter); else why not."""
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed (pip install triton)"
    try:
        import triton  # noqa: F401
    except Exception as e:  # a broken install counts as absent
        return f"Triton does not import: {type(e).__name__}: {e}"
    if not (torch.cuda.is_available() or _interpreting()):
        return "no CUDA device (set TRITON_INTERPRET=1 before importing triton to run the kernels on the CPU, slowly)"
    return None


def available() -> bool:
    """Whether :func:`unavailable_reason` finds nothing in the way."""
    return unavailable_reason() is None


@functools.lru_cache(maxsize=None)
def _kernels(name: str) -> ModuleType:
    """``linkexit_fast.kernels.<name>``, importing Triton on first use.

    An installed package maps ``<repo>/kernels`` to ``linkexit_fast.kernels`` (setup.py's
    ``package_dir``); a source checkout used in place has no such mapping, so it is made here.
    """
    if not available():
        raise RuntimeError("the Triton backend needs triton and a CUDA device (or "
                           "TRITON_INTERPRET=1 for the CPU interpreter); use the torch backend")
    package = "linkexit_fast.kernels"
    if package not in sys.modules and importlib.util.find_spec(package) is None:
        init = Path(__file__).resolve().parents[2] / "kernels" / "__init__.py"
        if not init.is_file():
            raise ImportError(f"{package} is not installed and {init} does not exist")
        spec = importlib.util.spec_from_file_location(package, init,
                                                      submodule_search_locations=[str(init.parent)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
        setattr(sys.modules["linkexit_fast"], "kernels", module)
    return importlib.import_module(f"{package}.{name}")


# ---------------------------------------------------------------------- validation
def _check(t, name: str, dtype: torch.dtype, shape: Sequence[Optional[int]],
           device: torch.device) -> None:
    """``t`` is a tensor of ``dtype`` on ``device`` with ``shape`` (``None`` = any size)."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
    if t.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}; got {t.dtype}")
    if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}; got {list(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name} must be on {device} like the features; got {t.device}")


def _check_device(device: torch.device, name: str) -> None:
    if device.type != "cuda" and not _interpreting():
        raise ValueError(f"{name} must be a CUDA tensor for the Triton backend (CPU tensors need "
                         f"TRITON_INTERPRET=1); got device {device}")


def _check_features(t, name: str) -> torch.device:
    """The float32 ``[rows, width]`` tensor whose device every other argument must share."""
    device = getattr(t, "device", None)
    _check(t, name, torch.float32, (None, None), device)
    _check_device(device, name)
    return device


# ---------------------------------------------------------------------- ops
def aggregate_rows(rowptr: torch.Tensor, col: torch.Tensor, weight: torch.Tensor, h: torch.Tensor,
                   rows: torch.Tensor, self_weight: Optional[torch.Tensor] = None,
                   cache: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Weighted CSR aggregation over a subset of rows; see :func:`torch_ops.aggregate_rows`.

    Shapes: ``rowptr [R+1]``, ``col``/``weight [nnz]``, ``h [n, m]`` (float32), ``rows [k]``
    (int64), ``self_weight [R]``, ``cache [R, m]``; returns ``[k, m]``.
    """
    device = _check_features(h, "h")
    _check(rowptr, "rowptr", torch.int64, (None,), device)
    if rowptr.numel() == 0:
        raise ValueError("rowptr must have R + 1 >= 1 entries; got 0")
    num_rows = rowptr.numel() - 1
    _check(col, "col", torch.int64, (None,), device)
    _check(weight, "weight", torch.float32, (col.numel(),), device)
    _check(rows, "rows", torch.int64, (None,), device)
    if self_weight is not None:
        _check(self_weight, "self_weight", torch.float32, (num_rows,), device)
    if cache is not None:
        _check(cache, "cache", torch.float32, (num_rows, h.shape[1]), device)
    return _kernels("aggregate").aggregate_rows(rowptr, col, weight, h, rows, self_weight, cache)


def exit_decision(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                  b2: torch.Tensor, threshold: float, w_nu: Optional[torch.Tensor] = None,
                  b_nu: Optional[torch.Tensor] = None, tau0: float = 0.0
                  ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Deterministic exit rule on rows ``h [n, k]``; see :func:`torch_ops.exit_decision`
    (``exit = l_1 - l_0 >= logit(threshold)``; ``threshold = 1.0`` never exits).

    Returns ``(p_exit [n], exit [n] bool, step [n] or None)``; ``step`` needs both ``w_nu [k]``
    and ``b_nu [1]``.
    """
    bound = torch_ops.exit_margin_bound(threshold)
    device = _check_features(h, "h")
    k = h.shape[1]
    _check(w1, "w1", torch.float32, (None, k), device)
    hidden = w1.shape[0]
    _check(b1, "b1", torch.float32, (hidden,), device)
    _check(w2, "w2", torch.float32, (2, hidden), device)
    _check(b2, "b2", torch.float32, (2,), device)
    if (w_nu is None) != (b_nu is None):
        raise ValueError(f"w_nu and b_nu must be given together; got w_nu "
                         f"{'None' if w_nu is None else 'a tensor'} and b_nu "
                         f"{'None' if b_nu is None else 'a tensor'}")
    if w_nu is not None:
        _check(w_nu, "w_nu", torch.float32, (k,), device)
        _check(b_nu, "b_nu", torch.float32, (1,), device)
    return _kernels("exit_head").exit_decision(h, w1, b1, w2, b2, bound, w_nu, b_nu, tau0)


def score_pairs(z: torch.Tensor, u: torch.Tensor, v: torch.Tensor, weights: Sequence[torch.Tensor],
                biases: Sequence[torch.Tensor], chunk: Optional[int] = None) -> torch.Tensor:
    """HeaRT's MLP link scorer on gathered pairs; see :func:`torch_ops.score_pairs`.

    ``z [n, m]`` float32, ``u``/``v [P]`` int64, ``weights[i] [out, in]`` (nn.Linear layout) with
    ``weights[-1]`` of shape ``[1, in]``, ``biases[i] [out]``; returns logits ``[P]``.
    """
    device = _check_features(z, "z")
    _check(u, "u", torch.int64, (None,), device)
    _check(v, "v", torch.int64, (u.numel(),), device)
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(f"weights and biases must be non-empty and of equal length; got "
                         f"{len(weights)} weights and {len(biases)} biases")
    width = z.shape[1]
    for i, (w, b) in enumerate(zip(weights, biases)):
        out = 1 if i == len(weights) - 1 else None
        _check(w, f"weights[{i}]", torch.float32, (out, width), device)
        _check(b, f"biases[{i}]", torch.float32, (w.shape[0],), device)
        width = w.shape[0]
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
    kernels = _kernels("score_pairs")
    return kernels.score_pairs(z, u, v, weights, biases, chunk or kernels.CHUNK)
