"""The engine's index ops, and the host syncs they cost.

Index ops go through index_select (gathers) and scatter_ (marking x[idx] = value): on the
2-core CPU, torch's advanced indexing took two to eight times as long for the same result
(e.g. marking 227k endpoints in a 3,327-node mask: 1.76 ms by x[idx] = True, 0.19 ms by scatter_).

Host syncs. On a GPU each read of a device value stalls the host until the device drains, and
ogbl-ddi's full evaluation on an H100 was host-bound (benchmarks/results/gpu_notes.md). So the
layer loop reads the counts it needs together, once, and sizes index lists from them.
:func:`nonzero` and :func:`any_at` take a sync-free path on GPUs; :data:`SYNC_FREE` None picks it
by device, True forces it on the CPU too (tests check it there; benchmarks/engine_op_count.py
counts a GPU's syncs with it).
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch

SYNC_FREE: Optional[bool] = None
# Whether scatter_rows uses the backend's scatter_rows op where it has one (False: index_copy_,
# its specification; benchmarks/engine_variants.py --compare scatter times the two side by side).
NATIVE_SCATTER = True


def at(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[idx]`` for an integer index tensor of any shape (rows of a 20k x 64 ``h``: 0.26 against
    1.02 ms by ``x[idx]``; of a 1M x 256 one: 290 against 642 ms)."""
    if idx.dim() == 1:  # most calls: no reshape and view to pay for
        return x.index_select(0, idx)
    return x.index_select(0, idx.reshape(-1)).view(*idx.shape, *x.shape[1:])


def scatter_rows(ops, dst: torch.Tensor, rows: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``dst[rows] = src`` in place for unique ``rows`` (returns ``dst``): the backend's
    ``scatter_rows`` op where it has one and the tensors are its contiguous float32 (the C++ op:
    1,922 rows of 256 floats in a third of ``index_copy_``'s time), else ``index_copy_``."""
    native = getattr(ops, "scatter_rows", None) if NATIVE_SCATTER else None
    if (native is not None and dst.dtype == src.dtype == torch.float32 and dst.is_contiguous()
            and src.is_contiguous()):
        return native(dst, rows, src)
    return dst.index_copy_(0, rows, src)


def sync_free(t: Union[torch.Tensor, torch.device]) -> bool:
    """Whether indexing on ``t``'s device (or on device ``t``) takes the sync-free path."""
    device = t if isinstance(t, torch.device) else t.device
    return device.type != "cpu" if SYNC_FREE is None else SYNC_FREE


def host(*values: Union[int, torch.Tensor]) -> List[int]:
    """Integer device scalars (and ints, passed through) as Python ints, in one transfer: none
    when every value is an int already. On the CPU's index path they are read one by one: no
    stack to build, and no sync to save."""
    if not any(isinstance(v, torch.Tensor) and sync_free(v) for v in values):
        return [int(v) for v in values]
    scalars = [v.reshape(()).to(torch.int64) for v in values if isinstance(v, torch.Tensor)]
    read = iter(torch.stack(scalars).tolist() if scalars else ())
    return [next(read) if isinstance(v, torch.Tensor) else v for v in values]


def nonzero(mask: torch.Tensor, count: int) -> torch.Tensor:
    """``mask.nonzero()`` as a 1-D index, for a mask with ``count`` True entries already known
    on the host: no sync on a GPU. (On the CPU plain nonzero is faster: 2.5 against 4.1 ms for
    1M entries.)"""
    if not sync_free(mask):
        return mask.nonzero().squeeze(1)
    return torch.nonzero_static(mask, size=count).squeeze(1)


def any_at(n: int, idx: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
    """Bool ``[n]``: whether ``flag[e]`` holds for some entry ``e`` with ``idx[e] == i``.

    On a GPU by counting, without the sync of a boolean selection (a scatter of mixed True and
    False to one place would keep an arbitrary one). On the CPU select then mark: 26 against
    37 ms for 8.5M entries."""
    idx, flag = idx.reshape(-1), flag.reshape(-1)
    if not sync_free(idx):
        return torch.zeros(n, dtype=torch.bool, device=idx.device).scatter_(0, idx[flag], True)
    hits = torch.zeros(n, dtype=torch.int32, device=idx.device)
    return hits.index_add_(0, idx, flag.to(torch.int32)) > 0


def csr_gather(rowptr: torch.Tensor, rows: torch.Tensor,
               total: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Positions of all CSR entries of ``rows`` and, for each, its index into ``rows``
    (``total``, their number, when the caller already knows it: saves a sync)."""
    start = at(rowptr, rows)
    counts = at(rowptr, rows + 1) - start
    if total is None:
        total = int(counts.sum()) if rows.numel() else 0
    seg = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), counts, output_size=total)
    first = torch.cumsum(counts, 0) - counts
    pos = torch.arange(total, device=rows.device) - at(first, seg) + at(start, seg)
    return pos, seg
