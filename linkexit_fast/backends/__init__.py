"""Registry of op backends. Each backend provides ``aggregate_rows``, ``exit_decision`` and
``score_pairs`` with the signatures of :mod:`linkexit_fast.backends.torch_ops`.

* ``reference``: not an op set; ``predict`` runs the dense masked forward instead of the engine.
* ``torch``: the engine on plain torch ops (always available).
* ``cpu``: the engine on the C++ ops in ``csrc/`` (built by setup.py or just-in-time).
* ``triton``: the engine on the Triton kernels in ``kernels/`` (CUDA, or ``TRITON_INTERPRET=1``).

``auto`` picks ``triton`` for CUDA tensors when Triton imports, else ``cpu`` when the extension is
available, else ``torch``. A missing fast path falls back with one warning.
"""
from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Dict

import torch

__all__ = ["get_backend", "available_backends", "BACKENDS", "register_backend"]

BACKENDS: Dict[str, str] = {
    "torch": "linkexit_fast.backends.torch_ops",
    "cpu": "linkexit_fast.backends.cpu",
    "triton": "linkexit_fast.backends.triton",
}
_warned: set = set()
_probed: Dict[str, bool] = {}


def register_backend(name: str, module: str) -> None:
    """Make ``module`` (an importable path providing the three ops) selectable as ``backend=name``."""
    BACKENDS[name] = module
    _probed.pop(name, None)


def _available(name: str) -> bool:
    if name not in _probed:
        try:
            mod = importlib.import_module(BACKENDS[name])
            _probed[name] = bool(getattr(mod, "available", lambda: True)())
        except Exception:  # an optional dependency (triton, a compiler) is missing or broken
            _probed[name] = False
    return _probed[name]


def available_backends() -> list:
    return ["reference"] + [n for n in BACKENDS if _available(n)]


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        warnings.warn(msg, stacklevel=3)


def get_backend(name: str = "auto", device: torch.device = torch.device("cpu")) -> ModuleType:
    """The op module for ``name``; falls back (with one warning) when it is unavailable."""
    if name == "auto":
        if device.type == "cuda" and _available("triton"):
            name = "triton"
        elif device.type == "cpu" and _available("cpu"):
            name = "cpu"
        else:
            name = "torch"
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {['auto', 'reference', *BACKENDS]}")
    if not _available(name):
        _warn_once(f"backend {name!r} is not available here; falling back to the 'torch' backend")
        name = "torch"
    return importlib.import_module(BACKENDS[name])
