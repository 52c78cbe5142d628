"""Registry of op backends. Each backend provides ``aggregate_rows``, ``exit_decision`` and
``score_pairs`` with the signatures of :mod:`linkexit_fast.backends.torch_ops`, and may provide
``unavailable_reason() -> Optional[str]`` (``None`` when it can run here, else why not) or a
plain ``available() -> bool``, and ``hop_distance``, ``scope_csr`` and ``scatter_rows`` ops for
the engine's scope walk, compaction and scatter of updated rows on the CPU
(:func:`linkexit_fast.backends.cpu.hop_distance`, :func:`linkexit_fast.backends.cpu.scope_csr`,
:func:`linkexit_fast.backends.cpu.scatter_rows`; without them the engine does these in torch). A
backend whose ``exit_decision`` also takes ``rows`` (judging ``h[rows]`` without a gather) says so
with ``JUDGES_ROWS_IN_PLACE = True``.

* ``reference``: not an op set; ``predict`` runs the dense masked forward instead of the engine.
* ``torch``: the engine on plain torch ops (always available).
* ``cpu``: the engine on the C++ ops in ``csrc/`` (built by setup.py or just-in-time).
* ``triton``: the engine on the Triton kernels in ``kernels/`` (CUDA, or ``TRITON_INTERPRET=1``).

``auto`` picks ``triton`` for CUDA tensors when Triton imports, else ``cpu`` when the extension is
available, else ``torch``; a missing fast path costs one warning. A backend named explicitly that
cannot run here is an error that says why: a silent substitute would mislead a benchmark.
"""
from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Dict, Optional

import torch

__all__ = ["get_backend", "check_backend_name", "BackendUnavailable", "available_backends", "BACKENDS",
           "register_backend"]

BACKENDS: Dict[str, str] = {
    "torch": "linkexit_fast.backends.torch_ops",
    "cpu": "linkexit_fast.backends.cpu",
    "triton": "linkexit_fast.backends.triton",
}
_warned: set = set()
_probed: Dict[str, Optional[str]] = {}  # name -> None when it runs here, else why it does not


class BackendUnavailable(RuntimeError):
    """A backend named explicitly cannot run here (the message says why)."""


def register_backend(name: str, module: str) -> None:
    """Make ``module`` (an importable path providing the three ops) selectable as ``backend=name``."""
    BACKENDS[name] = module
    _probed.pop(name, None)


def _why_unavailable(name: str) -> Optional[str]:
    """``None`` when backend ``name`` can run here, else the reason (probed once)."""
    if name not in _probed:
        try:
            mod = importlib.import_module(BACKENDS[name])
            # A backend may say why it cannot run (unavailable_reason), or only whether it can.
            reason = getattr(mod, "unavailable_reason", None)
            if reason is not None:
                _probed[name] = reason()
            else:
                ok = bool(getattr(mod, "available", lambda: True)())
                _probed[name] = None if ok else f"{mod.__name__}.available() is False"
        except Exception as e:  # an optional dependency (triton, a compiler) is missing or broken
            _probed[name] = f"{type(e).__name__}: {e}"
    return _probed[name]


def _available(name: str) -> bool:
    return _why_unavailable(name) is None


def available_backends() -> list:
    return ["reference"] + [n for n in BACKENDS if _available(n)]


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        warnings.warn(msg, stacklevel=3)


def check_backend_name(name) -> str:
    """``name`` if it names a backend (``auto``, ``reference`` or a registered one).

    Raises:
        TypeError: not a string. ValueError: an unknown name.
    """
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__} {name!r}")
    if name not in ("auto", "reference", *BACKENDS):
        raise ValueError(f"unknown backend {name!r}; choose from {['auto', 'reference', *BACKENDS]}")
    return name


def get_backend(name: str = "auto", device: torch.device = torch.device("cpu")) -> ModuleType:
    """The op module for ``name``.

    ``auto`` takes the fastest backend for ``device`` that runs here, warning once when that is
    not the fast path (triton on CUDA, cpu on the CPU).

    Raises:
        TypeError / ValueError: ``name`` is not a backend name (``reference`` has no op module).
        BackendUnavailable (a RuntimeError): the backend named cannot run here; the message
            gives the probe's reason.
    """
    if check_backend_name(name) == "reference":
        raise ValueError("backend 'reference' is the dense forward of predict(), not an op set")
    if name == "auto":
        name = "triton" if device.type == "cuda" else "cpu" if device.type == "cpu" else "torch"
        why = _why_unavailable(name)
        if why is not None:
            _warn_once(f"backend {name!r} is not available here ({why}); 'auto' uses the slower 'torch' backend")
            name = "torch"
    else:
        why = _why_unavailable(name)
        if why is not None:
            raise BackendUnavailable(f"backend {name!r} was requested but cannot run here: {why}")
    return importlib.import_module(BACKENDS[name])
