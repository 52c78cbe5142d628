"""Input checks at the public boundary. Each error names the argument and the offending value."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch


def as_tensor(value, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, list, tuple)):
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"{name} must be numeric, got a ragged or object array")
        return torch.from_numpy(np.ascontiguousarray(arr))
    raise TypeError(f"{name} must be a torch.Tensor, numpy array or list, got {type(value).__name__}")


def check_index_tensor(value, name: str, shape: Sequence[Optional[int]],
                       num_nodes: Optional[int] = None) -> torch.Tensor:
    """An int64 CPU/CUDA tensor of node ids with the given shape (``None`` = any size).

    Empty lists are accepted with the expected trailing shape.
    """
    t = as_tensor(value, name)
    if t.numel() == 0:
        return torch.empty(*[0 if s is None else s for s in shape], dtype=torch.int64, device=t.device)
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        if t.dtype.is_floating_point and bool(torch.all(t == torch.round(t))):
            pass  # integral values in a float array are accepted, e.g. from np.loadtxt
        else:
            raise TypeError(f"{name} must hold integer node ids, got dtype {t.dtype}")
    if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(t.shape)}")
    t = t.to(torch.int64)
    lo, hi = torch.stack(torch.aminmax(t)).tolist()  # one pass, and one device sync on a GPU
    if lo < 0:
        raise ValueError(f"{name} holds negative node id {lo}")
    if num_nodes is not None:
        if hi >= num_nodes:
            raise ValueError(f"{name} holds node id {hi}, out of range for num_nodes={num_nodes}")
    return t.contiguous()


def check_features(x, num_nodes: int) -> torch.Tensor:
    """Float32 ``[num_nodes, F]`` features with finite values."""
    if hasattr(x, "toarray") and hasattr(x, "nnz"):  # scipy sparse
        x = x.toarray()
    t = as_tensor(x, "x")
    if not (t.dtype.is_floating_point or t.dtype in (torch.int8, torch.int16, torch.int32,
                                                      torch.int64, torch.uint8, torch.bool)):
        raise TypeError(f"x must be numeric, got dtype {t.dtype}")
    if t.dim() != 2:
        raise ValueError(f"x must have shape [num_nodes, num_features], got {list(t.shape)}")
    if t.shape[0] != num_nodes:
        raise ValueError(f"x has {t.shape[0]} feature rows but the graph has num_nodes={num_nodes}")
    t = t.to(torch.float32).contiguous()
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        r, c = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"x holds a non-finite value ({float(t[r, c])}) at row {r}, column {c}")
    return t


def check_pairs(pairs, num_nodes: int, name: str = "pairs") -> torch.Tensor:
    """``[P, 2]`` int64 node pairs within ``[0, num_nodes)``."""
    return check_index_tensor(pairs, name, shape=(None, 2), num_nodes=num_nodes)
