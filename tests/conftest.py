import math
import os
import tempfile
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Triton kernels run through the interpreter on CPU; must be set before triton is imported.
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The planner's calibration cache (engine/plan.py) goes to a fresh folder per session, not $HOME.
os.environ.setdefault("LINKEXIT_CACHE", tempfile.mkdtemp(prefix="linkexit-cache-"))

from linkexit_fast.datasets import data_root as package_data_root  # noqa: E402 (after the environment)

# The package's own data-root resolution ($LINKEXIT_DATA, else ../shared/data from here or beside
# the repository), made absolute: tests symlink files out of it, and a relative target would
# resolve against the link's folder, not the working directory.
DATA = package_data_root().resolve()


def require_data(*parts) -> Path:
    """The data path, or skip — except under CI, where missing data is a failure."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        msg = f"dataset not found: {path} (set LINKEXIT_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def require_optional(available: bool, what: str) -> None:
    """Skip when an optional part (C++ extension, triton, torch_geometric) is missing — except
    under CI, whose install includes them all, so a missing one there is a failure."""
    if not available:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is missing under CI")
        pytest.skip(f"{what} is missing")


@pytest.fixture
def data_root() -> Path:
    return require_data()


# Two float32 computations of one exit head (another backend, another summation order) may
# disagree on an exit whose logit margin l_EXIT - l_CONTINUE lies within this share of the terms
# summed into it of logit(threshold): a few hundred float32 ulps.
EXIT_NEAR_TIE = 1e-5


def logit64(threshold: float) -> float:
    """logit(t) = log(t / (1 - t)) in float64; +inf at t = 1 (the exit rule's bound)."""
    return math.inf if threshold == 1.0 else math.log(threshold / (1.0 - threshold))


def exit_decided(logits: torch.Tensor, threshold: float, tol: float = EXIT_NEAR_TIE) -> torch.Tensor:
    """Rows of exit-head ``logits [n, 2]`` whose exit every correct float32 backend must agree
    on: the margin is clear of ``logit(threshold)`` by more than ``tol * (1 + |l_0| + |l_1|)``."""
    margin = (logits[:, 1] - logits[:, 0]).double()
    return (margin - logit64(threshold)).abs() > tol * (1 + logits.abs().sum(1))
