"""The frozen-neighbour cache (``freeze`` semantics).

A frozen node's state never changes, so once enough nodes have frozen, their contribution to each
active neighbour's aggregate is added once into a cache and their edges leave the CSR that later
layers aggregate over.
"""
from __future__ import annotations

from types import ModuleType
from typing import Optional

import torch

from .indexing import at, csr_gather

# Cost of a frozen-neighbour cache rebuild per edge of the kept rows, in multiply-accumulates:
# its index passes (gather, mask, recount, two prefix sums) took ~37 ns per edge on the 2-core
# benchmark machine, about 300 MACs of aggregation there. On ogbl-ddi (L = 3) a rebuild that
# spared 15 % of one layer's edges cost 91 ms against the 10 ms it saved.
CACHE_EDGE_COST = 300


class FrozenCache:
    """The CSR that the layers aggregate over (the scope's, less the edges into cached nodes) and
    ``sums [n, m]``, what the cached nodes contribute to each row (None until the first rebuild).
    Readiness (subgraph exits) still needs every neighbour: it reads the scope's CSR."""

    def __init__(self, rowptr: torch.Tensor, col: torch.Tensor, weight: torch.Tensor, m: int):
        self.rowptr, self.col, self.weight, self.m = rowptr, col, weight, m
        self.n = rowptr.numel() - 1
        self.deg = rowptr.diff()  # entries per row, for the FLOP counts
        self.sums: Optional[torch.Tensor] = None
        self.in_cache: Optional[torch.Tensor] = None  # [n] the nodes in the cache (None: none yet)

    def pays(self, exited: torch.Tensor, keep: torch.Tensor, later_updates: int) -> bool:
        """Whether moving the newly frozen neighbours into the cache saves more than it costs.

        It spares ``later_updates`` aggregations of the edges from kept rows to newly frozen nodes
        (``m`` MACs each), and costs index passes over every kept row's edges. Edge counts come
        from the current aggregation CSR's degrees, which is symmetric up to what earlier
        rebuilds dropped.
        """
        newly = exited if self.in_cache is None else exited & ~self.in_cache
        frozen_edges = (self.deg * newly).sum()
        row_edges = (self.deg * keep).sum()
        return bool(frozen_edges * (self.m * later_updates) > CACHE_EDGE_COST * row_edges)  # one sync

    def rebuild(self, h: torch.Tensor, exited: torch.Tensor, keep_rows: torch.Tensor, ops: ModuleType) -> None:
        """Move the contributions of the ``exited`` neighbours of rows ``keep_rows`` (a mask) into
        the cache and drop their edges."""
        dev = self.rowptr.device
        rows = keep_rows.nonzero().squeeze(1)
        pos, seg = csr_gather(self.rowptr, rows)
        cols = at(self.col, pos)
        frozen = at(exited, cols)
        if self.sums is None:
            self.sums = torch.zeros(self.n, self.m, device=dev)

        def sub_csr(keep: torch.Tensor) -> torch.Tensor:
            counts = torch.zeros(rows.numel(), dtype=torch.int64, device=dev)
            counts.index_add_(0, seg[keep], torch.ones(int(keep.sum()), dtype=torch.int64, device=dev))
            rowptr = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=dev)
            torch.cumsum(counts, 0, out=rowptr[1:])
            return rowptr
        # The frozen part goes through the aggregation op itself: no [edges, m] intermediate.
        f_rowptr = sub_csr(frozen)
        local_rows = torch.arange(rows.numel(), device=dev)
        self.sums[rows] += ops.aggregate_rows(f_rowptr, cols[frozen], self.weight[pos[frozen]], h, local_rows)
        live = ~frozen
        counts = torch.zeros(self.n, dtype=torch.int64, device=dev)
        counts.scatter_(0, rows, sub_csr(live).diff())
        rowptr = torch.zeros(self.n + 1, dtype=torch.int64, device=dev)
        torch.cumsum(counts, 0, out=rowptr[1:])
        self.rowptr, self.col, self.weight = rowptr, cols[live], self.weight[pos[live]]
        self.deg = counts
        self.in_cache = exited.clone()
