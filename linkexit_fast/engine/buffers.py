"""Float32 buffers that one :func:`~linkexit_fast.engine.predict` call hands to the next in the
same thread, on a CPU.

A fresh ``[N, m]`` tensor pays a page fault per 4 KiB page on first touch whenever glibc's
malloc serves it with new pages, which depends on its adaptive mmap and trim thresholds, that
is on the process's history (``benchmarks/results/allocator_faults.md``). For a small call that
is much of its time: 100 pairs on the 5k-node synthetic graph took 4.1 ms with no faults and
7.5 ms with 2,468 (two fresh ``[5000, 256]`` results of the first layer) in the same process,
depending only on what ran before it. Within :func:`reuse`, :func:`empty` takes a kept buffer
when one is large enough; at the block's end every buffer it handed out is kept for the next
block, up to ``KEEP_BYTES`` per thread. Larger calls allocate as before: their faults are a
small part of their work, and keeping gigabytes between calls would not be.

Nothing handed out may outlive its block: ``predict`` returns only fresh tensors (scores, exit
layers), and the entry points that return or yield while states live (``embeddings``,
``predict_chunks``) open no block. A block opened inside another takes nothing, so it cannot
overwrite what the outer one still reads.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, List

import torch

KEEP_BYTES = 64 << 20  # kept per thread between calls; a buffer larger than this is never kept
KEEP_COUNT = 8


class _Local(threading.local):
    def __init__(self):
        self.depth = 0
        self.kept: List[torch.Tensor] = []  # flat float32 buffers, free
        self.taken: List[torch.Tensor] = []  # handed out in the open block


_local = _Local()


@contextmanager
def reuse() -> Iterator[None]:
    """The block (one ``predict`` call) within which :func:`empty` reuses kept buffers."""
    _local.depth += 1
    try:
        yield
    finally:
        _local.depth -= 1
        if _local.depth == 0:
            keep = sorted(_local.kept + _local.taken, key=torch.Tensor.numel, reverse=True)[:KEEP_COUNT]
            total, _local.kept, _local.taken = 0, [], []
            for buf in keep:
                if total + 4 * buf.numel() <= KEEP_BYTES:
                    _local.kept.append(buf)
                    total += 4 * buf.numel()


def empty(rows: int, m: int, device: torch.device) -> torch.Tensor:
    """An uninitialised float32 ``[rows, m]`` tensor on ``device``: a kept CPU buffer inside the
    outermost :func:`reuse` block when one is large enough (the smallest such), else a new one."""
    size = rows * m
    if _local.depth != 1 or torch.device(device).type != "cpu" or 4 * size > KEEP_BYTES:
        return torch.empty(rows, m, device=device)
    fits = [i for i, b in enumerate(_local.kept) if b.numel() >= size]
    if fits:
        buf = _local.kept.pop(min(fits, key=lambda i: _local.kept[i].numel()))
    else:
        buf = torch.empty(size)
    _local.taken.append(buf)
    return buf[:size].view(rows, m)


def release() -> None:
    """Drop this thread's kept buffers (they are freed once nothing else holds them)."""
    _local.kept = []
