import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Triton kernels run through the interpreter on CPU; must be set before triton is imported.
    os.environ.setdefault("TRITON_INTERPRET", "1")

DATA = Path(os.environ.get("LINKEXIT_DATA", "../shared/data"))


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
