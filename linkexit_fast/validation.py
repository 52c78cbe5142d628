"""Input checks at the public boundary. Each error names the argument and the offending value."""
from __future__ import annotations

import numbers
from typing import Optional, Sequence

import numpy as np
import torch


def as_tensor(value, name: str) -> torch.Tensor:
    """``value`` as a tensor, without a copy when it is a tensor or a contiguous numpy array."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError:  # numpy >= 1.24 refuses ragged nested lists
            raise ValueError(f"{name} must be a rectangular array, got a ragged sequence") from None
        if arr.dtype == object:
            raise TypeError(f"{name} must be numeric, got an object array (mixed types, or "
                            f"integers beyond 64 bits)")
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
        return torch.from_numpy(np.ascontiguousarray(arr))
    raise TypeError(f"{name} must be a torch.Tensor, numpy array or list, got {type(value).__name__}")


# Elements per step of the value checks on float ids: their temporaries stay a few MB whatever
# the size of the array.
CHECK_CHUNK = 1 << 20


def check_index_tensor(value, name: str, shape: Sequence[Optional[int]],
                       num_nodes: Optional[int] = None) -> torch.Tensor:
    """An int64 CPU/CUDA tensor of node ids with the given shape (``None`` = any size).

    Integer dtypes and floats holding integral values (e.g. from ``np.loadtxt``) are accepted;
    values are checked (finite, integral, in ``[0, num_nodes)``) before the conversion, so an
    error names the value as given. An int64 contiguous input is returned as is, not copied.
    Empty inputs are accepted with the expected trailing shape.

    Raises:
        TypeError: not an array of numbers, or a bool/complex dtype, or a non-integral float.
        ValueError: a wrong shape, or an id that is negative or out of range.
    """
    t = as_tensor(value, name)
    if t.numel() == 0:
        return torch.empty(*[0 if s is None else s for s in shape], dtype=torch.int64, device=t.device)
    if t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer node ids, got dtype {t.dtype}")
    if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(t.shape)}")
    if t.dtype.is_floating_point:
        flat = t.reshape(-1)
        for s in range(0, flat.numel(), CHECK_CHUNK):
            part = flat[s:s + CHECK_CHUNK]
            bad = ~torch.isfinite(part) | (part != part.round())
            if bool(bad.any()):
                raise TypeError(f"{name} must hold integer node ids, got {part[bad][0].item()!r} "
                                f"(dtype {t.dtype})")
    if t.dtype in (torch.uint16, torch.uint32):  # exact in int64, and torch cannot reduce these
        t = t.to(torch.int64)
    wrapped = t.dtype == torch.uint64
    if wrapped:  # not reducible either: read as int64, where values >= 2**63 turn negative
        t = t.view(torch.int64)
    lo, hi = torch.stack(torch.aminmax(t)).tolist()  # one pass, and one device sync on a GPU
    if wrapped and lo < 0:
        lo, hi = 0, lo + 2 ** 64
    elif t.dtype.is_floating_point:
        lo, hi = _as_given(lo), _as_given(hi)
    if lo < 0:
        raise ValueError(f"{name} holds negative node id {lo}")
    if hi >= (num_nodes if num_nodes is not None else 2 ** 63):
        where = f"num_nodes={num_nodes}" if num_nodes is not None else "int64"
        raise ValueError(f"{name} holds node id {hi}, out of range for {where}")
    return t.to(torch.int64).contiguous()


def _as_given(v: float):
    """An integral float shown as an int where that is exact (1e20 stays 1e+20)."""
    return int(v) if abs(v) < 2 ** 53 else v


def check_threshold(value, name: str = "threshold") -> float:
    """A real number in ``(0, 1]`` (Python, numpy scalar, or 0-d tensor/array) as a Python float.

    Raises:
        TypeError: not a real number (bool included).
        ValueError: NaN or outside ``(0, 1]``.
    """
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        value = value.item()  # a bool or complex item is refused below
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in (0, 1], got {type(value).__name__} {value!r}")
    v = float(value)
    if not 0 < v <= 1:  # NaN fails this too
        raise ValueError(f"{name} must be a number in (0, 1], got {value}")
    return v


def check_count(value, name: str, minimum: int = 0) -> int:
    """A whole number ``>= minimum`` (a Python or numpy int) as a Python int.

    Raises:
        TypeError: not an integer (bool and integral floats such as 25.0 included).
        ValueError: below ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def check_features(x, num_nodes: int) -> torch.Tensor:
    """``x`` (tensor, array, list or scipy sparse; any real dtype) as contiguous float32
    ``[num_nodes, F]``. TypeError for a non-numeric dtype; ValueError for another shape, a
    non-finite value, or a value beyond float32's range (it would become inf)."""
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
    f32 = t.to(torch.float32).contiguous()
    bad = ~torch.isfinite(f32)
    if bool(bad.any()):
        r, c = (int(i) for i in bad.nonzero()[0])
        v = float(t[r, c])
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"x holds a non-finite value ({v}) at row {r}, column {c}")
        raise ValueError(f"x holds {v:g} at row {r}, column {c}, beyond float32's range")
    return f32


def check_pairs(pairs, num_nodes: int, name: str = "pairs") -> torch.Tensor:
    """``[P, 2]`` int64 node pairs within ``[0, num_nodes)``."""
    return check_index_tensor(pairs, name, shape=(None, 2), num_nodes=num_nodes)
