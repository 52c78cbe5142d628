"""Which rows one engine pass touches: the pairs' endpoints, their hop distances, compaction.

At layer ``l`` a node is updated only if it lies within ``L - l - 1`` hops of an endpoint that
still needs its embedding. A query whose L-hop field is a small part of the graph runs on a
compacted subgraph (local ids, full-graph degrees); its (L - 1)-hop field when gcn's first layer
reads the raw input from the whole graph (:func:`.inputs.aggregates_input`).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Iterable, Optional

import torch

from ..graph import Graph, entry_rows
from .indexing import any_at, at, csr_gather, host, nonzero, sync_free

UNREACHED = 1 << 30
# Below this fraction of the rows, a BFS frontier (or its neighbour list) is deduplicated by
# sorting it instead of marking then scanning all N rows: one query pair on the 1M-node graph
# spent 6.7 of its 12 ms in such O(N) passes.
SPARSE_FRONTIER = 1 / 64
# Endpoints are sorted rather than marked below this many ids whatever the graph's size: one sort
# against three ops and two O(N) passes. On the CPU (hot, 20k nodes) 200 ids took 11 against 35 us
# and 2,000 took 38 against 49; at 10,000 ids marking wins at every size tried (5k-200k nodes).
SORT_IDS_BELOW = 2048
# A scope walk (hop_distance) costs tens of launches and a few syncs, and pays only where it leaves
# rows out. It is skipped when its sources, at the scope CSR's mean degree, would cover the rows
# this many times over within the hops that matter (see walk_pays). On ogbl-ddi's full evaluation
# (H100) the two walks took 4.3 of a 19.6 ms profiled call and spared 71 of 4,267 row updates:
# 1,737 endpoints of mean degree 500 reached 4,197 rows in one hop, and at layer 1 the 1,269
# endpoints still needed reached 4,141 (benchmarks/results/gpu_notes.md, second lease).
SATURATED = 8
# Whether compact uses the backend's scope_csr op where it has one (False: the torch path, its
# specification; benchmarks/engine_variants.py times the two side by side).
NATIVE_COMPACT = True
# A scope of at least this fraction of the rows runs on the graph's own CSR: a local copy would
# spare few rows for the cost of building it.
COMPACT_BELOW = 0.8


def hop_distance(rowptr: torch.Tensor, col: torch.Tensor, sources: torch.Tensor, max_hops: int,
                 passable: Optional[torch.Tensor] = None,
                 row_of: Optional[Callable[[], torch.Tensor]] = None, symmetric: bool = False,
                 return_reached: bool = False, ops: Optional[ModuleType] = None):
    """Multi-source BFS: hop distance (``UNREACHED`` beyond ``max_hops``) of every row, and with
    ``return_reached`` also the sorted rows reached (collected from the frontiers when they are
    few, so a small query never scans all N rows).

    When the backend ``ops`` has a ``hop_distance`` op (the C++ one: a serial queue BFS, no
    per-hop launches) and the engine is on the CPU's index path (:func:`.indexing.sync_free`
    False), that op walks; else the torch walk below, the specification it is tested against,
    whose per-hop ops suit a GPU.

    With ``passable`` (bool per node), the walk expands only from passable nodes; impassable nodes
    are still reached, so their (frozen) state can be read. A narrow frontier pushes along its own
    edges. A wide one walks whichever edge set is smaller: into the rows not yet reached (pull,
    only when the CSR is ``symmetric``; on ogbl-ddi, where the endpoints leave few rows
    unreached, that is a small part of the 2.1M entries), or one masked pass over all entries,
    which needs the row of every entry: ``row_of`` returns it from the caller's cache.
    """
    native = None if sync_free(rowptr) else getattr(ops, "hop_distance", None)
    if native is not None:
        dist, reached = native(rowptr, col, sources, max_hops, passable, return_reached)
        return (dist, reached) if return_reached else dist
    n = rowptr.numel() - 1
    dev = rowptr.device
    dist = torch.full((n,), UNREACHED, dtype=torch.int64, device=dev)
    dist.scatter_(0, sources, 0)
    sparse = SPARSE_FRONTIER * n
    frontier = torch.unique(sources) if sources.numel() < sparse else (dist == 0).nonzero().squeeze(1)
    found = [frontier]
    row = deg = None
    for hop in range(1, max_hops + 1):
        if frontier.numel() > n // 8:  # a wide frontier: pull, or one masked pass over all edges
            open_ = dist == UNREACHED
            if deg is None:
                deg = rowptr.diff()
            front_deg, expand = at(deg, frontier), True
            if passable is not None:  # impassable nodes leave by mask: their count needs no sync
                expand = at(passable, frontier)
                front_deg = front_deg * expand
            n_open, e_open, e_front = host(open_.sum(), (deg * open_).sum(), front_deg.sum())
            if n_open == 0:
                break
            fmask = torch.zeros(n, dtype=torch.bool, device=dev)
            fmask.scatter_(0, frontier, expand)
            if symmetric and e_open < e_front:
                unreached = nonzero(open_, n_open)
                pos, seg = csr_gather(rowptr, unreached, e_open)
                seen = any_at(n, at(unreached, seg), at(fmask, at(col, pos)))
            else:
                if row is None:
                    row = row_of() if row_of is not None else entry_rows(rowptr)
                seen = any_at(n, col, at(fmask, row))
        else:
            if passable is not None:
                frontier = frontier[at(passable, frontier)]
            if frontier.numel() == 0:
                break
            pos, _ = csr_gather(rowptr, frontier)
            nbrs = at(col, pos)
            if nbrs.numel() < sparse:  # a few neighbours: sort them rather than scan every row
                nbrs = torch.unique(nbrs)
                frontier = nbrs[at(dist, nbrs) == UNREACHED]
                dist.scatter_(0, frontier, hop)
                found.append(frontier)
                continue
            seen = torch.zeros(n, dtype=torch.bool, device=dev)
            seen.scatter_(0, nbrs, True)
        # mark-then-scan instead of unique(): O(n) per hop rather than a sort of the neighbour list
        seen &= dist == UNREACHED
        frontier = seen.nonzero().squeeze(1)
        dist.scatter_(0, frontier, hop)
        found.append(frontier)
    if not return_reached:
        return dist
    if sum(f.numel() for f in found) < sparse:
        return dist, torch.sort(torch.cat(found)).values
    return dist, (dist != UNREACHED).nonzero().squeeze(1)


def walk_pays(sources: int, hops: int, rows: int, entries: int) -> bool:
    """Whether a ``hops``-hop walk from ``sources`` may leave a useful share of ``rows`` out: its
    expected reach at the mean degree (``entries / rows``) stays under ``SATURATED`` x ``rows``."""
    return sources * (entries / max(rows, 1)) ** hops < SATURATED * rows


@dataclass
class Scope:
    """The rows of one engine pass, as local ids, and their CSR (normalised by full-graph degrees).

    Local row ``i`` is global node ``nodes[i]``; ``nodes`` None: not compacted, local ids are global."""

    graph: Graph
    rowptr: torch.Tensor
    col: torch.Tensor
    weight: torch.Tensor  # [nnz] edge weights
    nodes: Optional[torch.Tensor]
    ends: torch.Tensor  # the endpoints, sorted local ids
    dist: torch.Tensor  # [n] hops from the nearest endpoint (a lower bound: see compact)
    radius: Optional[int]  # no row's dist exceeds it (None: not known on the host)
    deg: torch.Tensor  # [n] full-graph degrees
    self_weight: Optional[torch.Tensor]  # [n] self-loop weights (models with self-loops)
    ops: Optional[ModuleType] = None  # the backend, whose hop_distance op walks if it has one
    # The row of every CSR entry: compact gives it for a compacted scope (scope_csr returns it on
    # the CPU), else the graph's own, read on first use.
    row: Optional[torch.Tensor] = None

    def entry_rows(self) -> torch.Tensor:
        """The row of every entry of the scope CSR (for wide-frontier walks), built once."""
        if self.row is None:
            self.row = self.graph.row if self.nodes is None else entry_rows(self.rowptr)
        return self.row

    def walk(self, sources: torch.Tensor, hops: int, passable: Optional[torch.Tensor]) -> torch.Tensor:
        """Hop distances of the rows from ``sources`` (local ids), walking through ``passable``
        rows only. The scope CSR is the graph's own (symmetric) unless it was compacted."""
        return hop_distance(self.rowptr, self.col, sources, hops, passable, self.entry_rows, self.nodes is None,
                            ops=self.ops)


def compact(graph: Graph, ends: torch.Tensor, hops: int, self_loops: bool, walk: bool = True,
            ops: Optional[ModuleType] = None, exiting: Optional[torch.Tensor] = None) -> Scope:
    """The scope of endpoints ``ends`` (sorted unique global ids): every row within ``hops`` of
    one, compacted when that is under ``COMPACT_BELOW`` of the rows. ``walk=False``: every row, no
    walk. ``ops``: the backend; its ``scope_csr`` op (the C++ one) walks and compacts in one pass
    on the CPU's index path, else the torch path below, the specification it is tested against.

    ``exiting`` (bool ``[E]`` over ``ends``; a mask index, so a host sync on a GPU): endpoints that
    the probe saw exit after the first layer (:meth:`.run._Run._probe`). They are in the scope, at
    distance 0, but their neighbourhoods are not: the walk starts from the other endpoints and
    does not pass through them, and they get no CSR entries."""
    n_glob = graph.num_nodes
    dev = graph.rowptr.device
    native = getattr(ops, "scope_csr", None) if NATIVE_COMPACT and not sync_free(graph.rowptr) else None
    nodes = row = None
    walks = walk and walk_pays(ends.numel(), 1, n_glob, graph.col.numel())
    if walks and native is not None:
        # The walk, compaction, the exiting ends and the local normalisation in one op.
        nodes, dist, rowptr, col, row, local_ends, weight, deg, self_weight = native(
            graph.rowptr, graph.col, ends, hops, COMPACT_BELOW, exiting, graph.dinv(self_loops), graph.deg,
            graph.self_loop_weight() if self_loops else None)
        if rowptr.numel():  # compacted (k + 1 offsets, even for k = 0)
            return Scope(graph, rowptr, col, weight, nodes, local_ends, dist, hops, deg,
                         self_weight if self_loops else None, ops, row)
        # Not compacted: dist is over every row, already 0 at the exiting ends.
        nodes = row = exiting = radius = None
    elif not walks:
        # One hop would reach every row: all rows count as within one hop (a superset of the
        # true scope, so nothing changes but possibly a few more updates), none is compacted.
        dist = torch.ones(n_glob, dtype=torch.int64, device=dev).scatter_(0, ends, 0)
        radius = 1
    else:
        sources, boundary = (ends, None) if exiting is None else (ends[~exiting], ends[exiting])
        passable = None if boundary is None else \
            torch.ones(n_glob, dtype=torch.bool, device=dev).index_fill_(0, boundary, False)
        dist, scope = hop_distance(graph.rowptr, graph.col, sources, hops, passable, row_of=lambda: graph.row,
                                   symmetric=True, return_reached=True, ops=ops)
        if boundary is not None:  # at the boundary: read, never updated through this CSR
            dist.index_fill_(0, boundary, hops)
            scope = torch.unique(torch.cat([scope, boundary]))
        radius = None
        if scope.numel() < COMPACT_BELOW * n_glob:
            g2l = torch.full((n_glob,), -1, dtype=torch.int64, device=dev)
            g2l.scatter_(0, scope, torch.arange(scope.numel(), device=dev))
            inner = scope[at(dist, scope) < hops]  # boundary rows are read, never updated
            pos, seg = csr_gather(graph.rowptr, inner)
            counts = torch.zeros(scope.numel(), dtype=torch.int64, device=dev)
            counts.scatter_(0, at(g2l, inner), at(graph.rowptr, inner + 1) - at(graph.rowptr, inner))
            rowptr = torch.zeros(scope.numel() + 1, dtype=torch.int64, device=dev)
            torch.cumsum(counts, 0, out=rowptr[1:])
            col, row = at(g2l, at(graph.col, pos)), at(g2l, at(inner, seg))
            nodes, local_ends, radius, dist = scope, at(g2l, ends), hops, at(dist, scope)
    if nodes is None:
        rowptr, col, local_ends = graph.rowptr, graph.col, ends
        weight = graph.edge_weight(self_loops)
        deg = graph.deg
        self_weight = graph.self_loop_weight() if self_loops else None
    else:
        dinv = at(graph.dinv(self_loops), nodes)
        weight = at(dinv, row) * at(dinv, col)
        deg = at(graph.deg, nodes)
        self_weight = at(graph.self_loop_weight(), nodes) if self_loops else None
    if exiting is not None:
        dist = dist.index_fill(0, local_ends[exiting], 0)
    return Scope(graph, rowptr, col, weight, nodes, local_ends, dist, radius, deg, self_weight, ops, row)


def endpoints(ids: torch.Tensor, n: int) -> torch.Tensor:
    """Sorted unique node ids of ``ids`` (any shape): by sorting when they are few, else by
    marking (:func:`marked_endpoints`)."""
    if ids.numel() < max(SPARSE_FRONTIER * n, SORT_IDS_BELOW):
        return torch.unique(ids)
    return marked_endpoints([ids], n)


def marked_endpoints(parts: Iterable[torch.Tensor], n: int) -> torch.Tensor:
    """Sorted unique node ids in ``parts`` by marking: O(N + P), no sort of the 2P ids of P pairs,
    memory O(N) whatever P."""
    mark = None
    for part in parts:
        if mark is None:
            mark = torch.zeros(n, dtype=torch.bool, device=part.device)
        mark.scatter_(0, part.reshape(-1), True)
    return torch.empty(0, dtype=torch.int64) if mark is None else mark.nonzero().squeeze(1)


def row_key(ends: torch.Tensor, rows: Optional[torch.Tensor], n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``key(ids)``: the row of each id of ``ends`` (sorted unique), ``rows[i]`` being that of
    ``ends[i]``, for ids of any shape; ``rows`` None: the rows are the ids. Few ids (or few
    endpoints) are found by binary search; many, through an O(N) map built on first use."""
    if rows is None:
        return lambda ids: ids
    if ends.numel() < SPARSE_FRONTIER * n:  # a few endpoints: no O(N) map
        return lambda ids: at(rows, torch.searchsorted(ends, ids))
    row_of = None

    def key(ids: torch.Tensor) -> torch.Tensor:
        nonlocal row_of
        if ids.numel() < SORT_IDS_BELOW:  # a few ids: searched, without building the map
            return at(rows, torch.searchsorted(ends, ids))
        if row_of is None:
            row_of = torch.zeros(n, dtype=torch.int64, device=ends.device).scatter_(0, ends, rows)
        return at(row_of, ids)
    return key
