r"""Row-subset CSR aggregation in Triton, atomic-free and balanced over hub rows.

.. math::
    out_i = \sum_{e = rowptr[r]}^{rowptr[r+1]-1} weight_e \, h_{col_e}
            + self\_weight_r \, h_r + cache_r, \qquad r = rows_i

Each active row's edge range is cut into chunks of ``E`` edges, so a hub row (degree far above the
edge block) is spread over many programs instead of serialising one. Program ``i < k`` reduces
chunk ``0`` of row ``i`` and writes ``out[i]`` directly (with the self and cache terms); each
further ("extra") chunk of a row has a slot ``s`` of a ``[S, m]`` partial buffer, reduced by
program ``k + s``. A second pass, one program per slot, lets the first slot of each hub row add
all of that row's partials into ``out`` (gather-style, no atomics, so results are deterministic).

Nothing goes back to the host: the launch sizes come from sizes the host already knows. With
``S = ceil(nnz / edges_per_chunk)`` slots, rows listed once have at most ``S`` extra chunks at
``E = edges_per_chunk``; when ``rows`` repeats rows the device raises ``E`` to
``ceil(edges of rows / S)``, which keeps every chunk within the ``S`` slots. (A host read of the
chunk count cost two device syncs per call, and the engine calls this op every layer.)

The chunk map is ``E`` and ``extra_ptr`` (row ``i``'s extra chunks own slots
``[extra_ptr[i], extra_ptr[i + 1])``); a program finds the row of its slot by binary search. For
up to ``MAP_ONE_PROGRAM_ROWS`` rows one program builds the map (two passes over the rows); above,
torch ops do, which spread over the GPU. Those are about 15 launches, a few microseconds of
device work each, but host time: in a profiled ogbl-ddi evaluation on an H100, where the whole
call is host-bound, each launcher call spent ~0.65 of its ~0.9 ms before its first kernel launch
(benchmarks/results/gpu_notes.md, second lease).

This module also holds :func:`block_size`, the one block-size helper of ``linkexit_fast.kernels``.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

__all__ = ["aggregate_rows", "block_size", "EDGES_PER_CHUNK"]

# Edges one program reduces. At m = 256 a chunk of 512 edges gathers 512 KB of h, about fifty
# average rows of a degree-10 graph, so hubs spread over the SMs like ordinary rows; its partial
# (m floats) is under 0.2% of those reads. A reasoned starting value: benchmarks/gpu_check.py
# times alternatives on the 1M-node graph.
EDGES_PER_CHUNK = 512
# Edges gathered per loop step: a [4, 256] fp32 tile is 8 accumulators per thread at 4 warps, so
# many programs fit an SM and many independent row gathers are in flight. On an H100 (1M nodes,
# degree 8.5, m = 256) 4 reached 2336 GB/s, 8 2117 and 16 1670 (benchmarks/results/gpu_check.json,
# tiling sweep).
BLOCK_E = 4
# 4 warps: 8 warps on the same tile ran 1.4x slower on an H100 (fewer programs per SM).
NUM_WARPS = 4
# Feature columns per program: a whole m = 256 row, so col/weight are read once per edge; wider
# rows are split over a second grid axis rather than spilling registers.
MAX_BLOCK_M = 256
# Partial slots summed per step of the second pass.
BLOCK_S = 16
# Rows up to which one program builds the chunk map, in blocks of MAP_BLOCK rows: at most four
# blocks per pass, each a few dependent loads (rows, then rowptr), so by estimate a few tens of
# microseconds on one SM, less than the torch ops' launches cost the host.
MAP_BLOCK = 4096
MAP_ONE_PROGRAM_ROWS = 4 * MAP_BLOCK


def block_size(n: int, *, cap: int, floor: int = 1, name: str = "size") -> int:
    """The smallest power of two ``>= n`` (and ``>= floor``); raises ``ValueError`` above ``cap``.

    ``floor`` is 16 where the block feeds ``tl.dot``, which needs every dimension ``>= 16``.
    """
    block = max(triton.next_power_of_2(max(int(n), 1)), floor)
    if block > cap:
        raise ValueError(f"{name} needs a block of {block}, above this kernel's cap of {cap}; "
                         f"got {name}={n}")
    return block


@triton.jit
def _edge_counts(rowptr_ptr, rows_ptr, offs, k):
    """Edges of ``rows[offs]`` (0 past ``k``)."""
    mask = offs < k
    r = tl.load(rows_ptr + offs, mask=mask, other=0)
    return tl.load(rowptr_ptr + r + 1, mask=mask, other=0) - tl.load(rowptr_ptr + r, mask=mask, other=0)


@triton.jit
def _chunk_map_kernel(rowptr_ptr, rows_ptr, extra_ptr_ptr, chunk_edges_ptr, k, slots, min_edges,
                      BLOCK: tl.constexpr):
    """One program: the chunk width ``E`` (needs every row's count first) and ``extra_ptr``
    (see the module docstring)."""
    total = tl.zeros((), dtype=tl.int64)
    for i0 in range(0, k, BLOCK):
        total += tl.sum(_edge_counts(rowptr_ptr, rows_ptr, i0 + tl.arange(0, BLOCK), k))
    width = tl.maximum((total + slots - 1) // slots, min_edges)
    tl.store(chunk_edges_ptr, width)
    tl.store(extra_ptr_ptr, tl.zeros((), dtype=tl.int64))
    start = tl.zeros((), dtype=tl.int64)
    for i0 in range(0, k, BLOCK):
        offs = i0 + tl.arange(0, BLOCK)
        extra = tl.maximum(_edge_counts(rowptr_ptr, rows_ptr, offs, k) - 1, 0) // width  # 0 past k
        tl.store(extra_ptr_ptr + 1 + offs, start + tl.cumsum(extra, 0), mask=offs < k)
        start += tl.sum(extra)


@triton.jit
def _slot_row(s, k, extra_ptr_ptr, active):
    """The row owning slot ``s``: the ``i`` with ``extra_ptr[i] <= s < extra_ptr[i + 1]``, by
    binary search; ``k`` for a slot past the last used one, or where ``active`` is false (no
    search: one in each of the 1M first-chunk programs took the 1M-node graph's aggregation from
    4.4 to 5.3 ms on an H100)."""
    used = active & (s < tl.load(extra_ptr_ptr + k))
    lo = tl.zeros((), dtype=tl.int64)
    hi = tl.where(used, k, 0).to(tl.int64)  # an unused slot skips the search
    while lo < hi:  # the first i with extra_ptr[i + 1] > s lies in [lo, hi]
        mid = (lo + hi) // 2
        right = tl.load(extra_ptr_ptr + mid + 1) <= s
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(right, hi, mid)
    return tl.where(used, lo, k)


@triton.jit
def _chunk_row(c, k, extra_ptr_ptr):
    """(row position i, chunk index j, slot s) of program ``c``; ``i == k`` for an unused slot."""
    is_extra = c >= k
    s = tl.where(is_extra, c - k, 0)
    i_extra = _slot_row(s, k, extra_ptr_ptr, is_extra)
    i = tl.where(is_extra, i_extra, c)
    j = tl.where(is_extra, s - tl.load(extra_ptr_ptr + tl.minimum(i_extra, k - 1)) + 1, 0)
    return i, j, s


@triton.jit
def _aggregate_chunks_kernel(
    # pointers: CSR graph, features, active rows, chunk map, optional terms, outputs
    rowptr_ptr, col_ptr, weight_ptr, h_ptr, rows_ptr, extra_ptr_ptr, chunk_edges_ptr,
    self_weight_ptr, cache_ptr, out_ptr, partial_ptr,
    # sizes and strides
    k, m, stride_hn, stride_hm, stride_cn, stride_cm, stride_on, stride_om, stride_pn, stride_pm,
    # meta-parameters
    BLOCK_E: tl.constexpr, BLOCK_M: tl.constexpr, HAS_SELF: tl.constexpr, HAS_CACHE: tl.constexpr,
):
    c = tl.program_id(0).to(tl.int64)
    offs_m = tl.program_id(1).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < m

    i, j, s = _chunk_row(c, k, extra_ptr_ptr)
    valid = i < k
    r = tl.load(rows_ptr + tl.minimum(i, k - 1))  # clamped: an unused slot reads a row, sums nothing
    chunk_edges = tl.load(chunk_edges_ptr)
    row_end = tl.load(rowptr_ptr + r + 1)
    e_lo = tl.load(rowptr_ptr + r) + j * chunk_edges
    e_hi = tl.where(valid, tl.minimum(e_lo + chunk_edges, row_end), e_lo)

    # A 2-D accumulator defers the cross-lane reduction to one tl.sum after the loop.
    acc = tl.zeros((BLOCK_E, BLOCK_M), dtype=tl.float32)
    for e0 in range(e_lo, e_hi, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        mask_e = offs_e < e_hi
        nbr = tl.load(col_ptr + offs_e, mask=mask_e, other=0)
        w = tl.load(weight_ptr + offs_e, mask=mask_e, other=0.0)
        x = tl.load(h_ptr + nbr[:, None] * stride_hn + offs_m[None, :] * stride_hm,
                    mask=mask_e[:, None] & mask_m[None, :], other=0.0)
        acc += x.to(tl.float32) * w[:, None].to(tl.float32)
    total = tl.sum(acc, axis=0)

    # Chunk 0 writes out[i] with the self and cache terms; extra chunks write their partial slot.
    # The choice is folded into scalar column limits (a scalar bool mask broadcast against a
    # vector one is mis-typed by some Triton interpreters).
    m_first = tl.where(c < k, m, 0)
    m_extra = tl.where(valid & (c >= k), m, 0)
    if HAS_SELF:
        sw = tl.load(self_weight_ptr + r)
        hr = tl.load(h_ptr + r * stride_hn + offs_m * stride_hm, mask=offs_m < m_first, other=0.0)
        total += sw.to(tl.float32) * hr.to(tl.float32)
    if HAS_CACHE:
        total += tl.load(cache_ptr + r * stride_cn + offs_m * stride_cm, mask=offs_m < m_first,
                         other=0.0).to(tl.float32)
    tl.store(out_ptr + i * stride_on + offs_m * stride_om, total, mask=offs_m < m_first)
    tl.store(partial_ptr + s * stride_pn + offs_m * stride_pm, total, mask=offs_m < m_extra)


@triton.jit
def _add_partials_kernel(
    # pointers
    extra_ptr_ptr, partial_ptr, out_ptr,
    # sizes and strides
    k, m, stride_pn, stride_pm, stride_on, stride_om,
    # meta-parameters
    BLOCK_S: tl.constexpr, BLOCK_M: tl.constexpr,
):
    s = tl.program_id(0).to(tl.int64)
    offs_m = tl.program_id(1).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)

    i = _slot_row(s, k, extra_ptr_ptr, s >= 0)  # every program of this pass is a slot
    i_safe = tl.minimum(i, k - 1)
    s_lo = tl.load(extra_ptr_ptr + i_safe)
    # Only the program of a hub row's first slot works; every other one has no columns.
    m_own = tl.where((i < k) & (s == s_lo), m, 0)
    mask_m = offs_m < m_own
    s_hi = tl.where(m_own > 0, tl.load(extra_ptr_ptr + i_safe + 1), s_lo)
    acc = tl.zeros((BLOCK_S, BLOCK_M), dtype=tl.float32)
    for s0 in range(s_lo, s_hi, BLOCK_S):
        offs_s = s0 + tl.arange(0, BLOCK_S)
        mask_s = offs_s < s_hi
        acc += tl.load(partial_ptr + offs_s[:, None] * stride_pn + offs_m[None, :] * stride_pm,
                       mask=mask_s[:, None] & mask_m[None, :], other=0.0)
    out_ptrs = out_ptr + i_safe * stride_on + offs_m * stride_om
    first = tl.load(out_ptrs, mask=mask_m, other=0.0)
    tl.store(out_ptrs, first + tl.sum(acc, axis=0), mask=mask_m)


def aggregate_rows(rowptr: torch.Tensor, col: torch.Tensor, weight: torch.Tensor, h: torch.Tensor,
                   rows: torch.Tensor, self_weight: Optional[torch.Tensor] = None,
                   cache: Optional[torch.Tensor] = None, *,
                   edges_per_chunk: int = EDGES_PER_CHUNK, block_e: int = BLOCK_E,
                   num_warps: int = NUM_WARPS, map_one_program_rows: int = MAP_ONE_PROGRAM_ROWS,
                   map_block: int = MAP_BLOCK) -> torch.Tensor:
    """Launch the chunked aggregation; inputs are trusted (``backends/triton.py`` validates them).

    ``rowptr``/``col``/``rows`` int64, ``weight``/``h``/``self_weight``/``cache`` float32, all on
    one device; returns float32 ``[rows.numel(), h.shape[1]]``. ``edges_per_chunk`` only changes
    the work split (tests shrink it to force many chunks per row); ``block_e`` and ``num_warps``
    only change the tiling (``benchmarks/gpu_check.py`` sweeps all three); ``map_one_program_rows``
    and ``map_block`` only choose how the chunk map is built (tests take both ways).
    """
    if edges_per_chunk < 1:
        raise ValueError(f"edges_per_chunk must be >= 1; got {edges_per_chunk}")
    k, m = rows.numel(), h.shape[1]
    out = torch.empty(k, m, dtype=torch.float32, device=h.device)
    if k == 0 or m == 0:
        return out
    rowptr, col, weight, rows = (t.contiguous() for t in (rowptr, col, weight, rows))

    # Chunk map, on the device: row i has extra chunks in slots [extra_ptr[i], extra_ptr[i + 1]).
    slots = max(triton.cdiv(col.numel(), edges_per_chunk), 1)
    extra_ptr = torch.empty(k + 1, dtype=torch.int64, device=h.device)
    if k <= map_one_program_rows:
        chunk_edges = torch.empty(1, dtype=torch.int64, device=h.device)
        _chunk_map_kernel[(1,)](rowptr, rows, extra_ptr, chunk_edges, k, slots, edges_per_chunk,
                                BLOCK=map_block, num_warps=8)
    else:
        counts = rowptr[rows + 1] - rowptr[rows]
        chunk_edges = torch.clamp((counts.sum() + slots - 1) // slots, min=edges_per_chunk).reshape(1)
        extra_ptr[0] = 0
        torch.cumsum((counts - 1).clamp(min=0) // chunk_edges, 0, out=extra_ptr[1:])
    partial = torch.empty(slots, m, dtype=torch.float32, device=h.device)

    dummy = out  # stands in for absent optional tensors; never read (HAS_* is False)
    sw = self_weight.contiguous() if self_weight is not None else dummy
    ca = cache if cache is not None else dummy
    BLOCK_M = block_size(min(m, MAX_BLOCK_M), cap=MAX_BLOCK_M, name="m")
    grid = lambda META: (k + slots, triton.cdiv(m, META["BLOCK_M"]))  # noqa: E731
    _aggregate_chunks_kernel[grid](
        rowptr, col, weight, h, rows, extra_ptr, chunk_edges, sw, ca, out, partial,
        k, m, h.stride(0), h.stride(1), ca.stride(0), ca.stride(1), out.stride(0), out.stride(1),
        partial.stride(0), partial.stride(1),
        BLOCK_E=block_e, BLOCK_M=BLOCK_M, HAS_SELF=self_weight is not None,
        HAS_CACHE=cache is not None, num_warps=num_warps,
    )
    grid = lambda META: (slots, triton.cdiv(m, META["BLOCK_M"]))  # noqa: E731
    _add_partials_kernel[grid](
        extra_ptr, partial, out,
        k, m, partial.stride(0), partial.stride(1), out.stride(0), out.stride(1),
        BLOCK_S=BLOCK_S, BLOCK_M=BLOCK_M,
    )
    return out
