"""The inference engine: compute only what the still-unresolved candidate pairs need.

The contract: for every pair, the score and the exit layers of its endpoints equal those of the
dense reference forward (:meth:`EarlyExitLinkPredictor.forward` in deterministic mode, then the
predictor), within float32 summation-order noise. What the engine skips:

1. **Scope.** At layer ``l`` a node is updated only if it lies within ``L - l - 1`` hops of an
   endpoint that still needs its embedding (an endpoint of an unresolved pair that has not
   exited). Under ``freeze`` the walk passes through non-exited nodes only and exited nodes are
   never updated; under ``readout`` exited nodes still relay.
2. **Compaction.** A query whose L-hop field is a small part of the graph runs on a compacted
   subgraph (local ids, full-graph degrees), and each layer touches only its active rows.
3. **Frozen-neighbour cache** (``freeze``). Once enough nodes have frozen, their contribution to
   each active neighbour's aggregate is added once into a cache and their edges leave the CSR.
4. **Sparse input features.** Bag-of-words features are multiplied as a sparse matrix, and only
   over the rows in scope.
5. **Pair scoring in chunks.** The layer loop runs once, for the set of all endpoints (it stops
   when every endpoint has exited: then every pair is resolved), and the pairs are then scored
   ``PAIR_CHUNK`` at a time into the preallocated output: memory beyond the output is bounded by
   the graph's size, never by the number of pairs.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F

from .backends import check_backend_name, get_backend
from .backends.bf16 import score_pairs_bf16
from .graph import Graph, entry_rows, quiet_sparse
from .models import SPARSE_FEATURE_DENSITY, EarlyExitLinkPredictor
from .validation import check_count, check_index_tensor, check_pairs, check_threshold

__all__ = ["predict", "predict_chunks", "embeddings", "EngineStats", "csr_gather", "hop_distance", "PAIR_CHUNK"]

UNREACHED = 1 << 30
# Bytes per [rows, m] temporary of a chunked layer update on a CPU (see _Run._update). Below
# glibc's 32 MB ceiling for its adaptive mmap threshold, freed chunks come back from the heap
# instead of as fresh pages: on the 1M-node graph (m = 256) 16k-row chunks took a full evaluation
# from 1.2M page faults to 0.5M and its wall-clock from 5.1-6.2 s to 3.9-4.5 s, against 64k-row
# (64 MB) chunks. On a GPU a layer is one chunk: there launches cost more than memory.
ROW_CHUNK_BYTES = 16 << 20
# Below this fraction of the rows, a BFS frontier (or its neighbour list) is deduplicated by
# sorting it instead of marking then scanning all N rows: one query pair on the 1M-node graph
# spent 6.7 of its 12 ms in such O(N) passes.
SPARSE_FRONTIER = 1 / 64
# Cost of a frozen-neighbour cache rebuild per edge of the kept rows, in multiply-accumulates:
# its index passes (gather, mask, recount, two prefix sums) took ~37 ns per edge on the 2-core
# benchmark machine, about 300 MACs of aggregation there. On ogbl-ddi (L = 3) a rebuild that
# spared 15 % of one layer's edges cost 91 ms against the 10 ms it saved.
CACHE_EDGE_COST = 300
# Pairs scored per chunk (predict's default batch_size): bounds the per-chunk index and logit
# temporaries (~40 bytes a pair, 10 MB) whatever the number of pairs. The scoring ops split a chunk
# further for their [rows, m] intermediates; a scorer call is about ten launches of host time
# whatever its size, so on a GPU a chunk this large keeps that cost negligible.
PAIR_CHUNK = 1 << 18
# A scope walk (hop_distance) costs tens of launches and a few syncs, and pays only where it leaves
# rows out. It is skipped when its sources, at the scope CSR's mean degree, would cover the rows
# this many times over within the hops that matter (see _walk_pays). On ogbl-ddi's full evaluation
# (H100) the two walks took 4.3 of a 19.6 ms profiled call and spared 71 of 4,267 row updates:
# 1,737 endpoints of mean degree 500 reached 4,197 rows in one hop, and at layer 1 the 1,269
# endpoints still needed reached 4,141 (benchmarks/results/gpu_notes.md, second lease).
SATURATED = 8


# ---------------------------------------------------------------------------- CSR helpers
# Index ops go through index_select (gathers) and scatter_ (marking x[idx] = value): on the
# 2-core CPU, torch's advanced indexing took two to eight times as long for the same result
# (e.g. marking 227k endpoints in a 3,327-node mask: 1.76 ms by x[idx] = True, 0.19 ms by scatter_).
def _at(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[idx]`` for an integer index tensor of any shape (rows of a 20k x 64 ``h``: 0.26 against
    1.02 ms by ``x[idx]``; of a 1M x 256 one: 290 against 642 ms)."""
    return x.index_select(0, idx.reshape(-1)).view(*idx.shape, *x.shape[1:])


# Host syncs. On a GPU each read of a device value stalls the host until the device drains, and
# ogbl-ddi's full evaluation on an H100 was host-bound (benchmarks/results/gpu_notes.md). So the
# layer loop reads the counts it needs together, once, and sizes index lists from them. The two
# helpers below take a sync-free path on GPUs; None picks it by device, True forces it on the
# CPU too (tests check it there; benchmarks/engine_op_count.py counts a GPU's syncs with it).
SYNC_FREE: Optional[bool] = None


def _sync_free(t: torch.Tensor) -> bool:
    return t.device.type != "cpu" if SYNC_FREE is None else SYNC_FREE


def _host(*values: torch.Tensor) -> List[int]:
    """Integer device scalars as Python ints, in one transfer."""
    return torch.stack([v.reshape(()).to(torch.int64) for v in values]).tolist()


def _nonzero(mask: torch.Tensor, count: int) -> torch.Tensor:
    """``mask.nonzero()`` as a 1-D index, for a mask with ``count`` True entries already known
    on the host: no sync on a GPU. (On the CPU plain nonzero is faster: 2.5 against 4.1 ms for
    1M entries.)"""
    if not _sync_free(mask):
        return mask.nonzero().squeeze(1)
    return torch.nonzero_static(mask, size=count).squeeze(1)


def _any_at(n: int, idx: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
    """Bool ``[n]``: whether ``flag[e]`` holds for some entry ``e`` with ``idx[e] == i``.

    On a GPU by counting, without the sync of a boolean selection (a scatter of mixed True and
    False to one place would keep an arbitrary one). On the CPU select then mark: 26 against
    37 ms for 8.5M entries."""
    idx, flag = idx.reshape(-1), flag.reshape(-1)
    if not _sync_free(idx):
        return torch.zeros(n, dtype=torch.bool, device=idx.device).scatter_(0, idx[flag], True)
    hits = torch.zeros(n, dtype=torch.int32, device=idx.device)
    return hits.index_add_(0, idx, flag.to(torch.int32)) > 0


def csr_gather(rowptr: torch.Tensor, rows: torch.Tensor,
               total: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Positions of all CSR entries of ``rows`` and, for each, its index into ``rows``
    (``total``, their number, when the caller already knows it: saves a sync)."""
    start = _at(rowptr, rows)
    counts = _at(rowptr, rows + 1) - start
    if total is None:
        total = int(counts.sum()) if rows.numel() else 0
    seg = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), counts, output_size=total)
    first = torch.cumsum(counts, 0) - counts
    pos = torch.arange(total, device=rows.device) - _at(first, seg) + _at(start, seg)
    return pos, seg


def hop_distance(rowptr: torch.Tensor, col: torch.Tensor, sources: torch.Tensor, max_hops: int,
                 passable: Optional[torch.Tensor] = None,
                 row_of: Optional[Callable[[], torch.Tensor]] = None, symmetric: bool = False,
                 return_reached: bool = False):
    """Multi-source BFS: hop distance (``UNREACHED`` beyond ``max_hops``) of every row, and with
    ``return_reached`` also the sorted rows reached (collected from the frontiers when they are
    few, so a small query never scans all N rows).

    With ``passable`` (bool per node), the walk expands only from passable nodes; impassable nodes
    are still reached, so their (frozen) state can be read. A narrow frontier pushes along its own
    edges. A wide one walks whichever edge set is smaller: into the rows not yet reached (pull,
    only when the CSR is ``symmetric``; on ogbl-ddi, where the endpoints leave few rows
    unreached, that is a small part of the 2.1M entries), or one masked pass over all entries,
    which needs the row of every entry: ``row_of`` returns it from the caller's cache.
    """
    n = rowptr.numel() - 1
    dev = rowptr.device
    dist = torch.full((n,), UNREACHED, dtype=torch.int64, device=dev)
    dist.scatter_(0, sources, 0)
    sparse = SPARSE_FRONTIER * n
    frontier = torch.unique(sources) if sources.numel() < sparse else (dist == 0).nonzero().squeeze(1)
    found = [frontier]
    row = None
    for hop in range(1, max_hops + 1):
        if frontier.numel() > n // 8:  # a wide frontier: pull, or one masked pass over all edges
            open_ = dist == UNREACHED
            deg = rowptr.diff()
            front_deg, expand = _at(deg, frontier), True
            if passable is not None:  # impassable nodes leave by mask: their count needs no sync
                expand = _at(passable, frontier)
                front_deg = front_deg * expand
            n_open, e_open, e_front = _host(open_.sum(), (deg * open_).sum(), front_deg.sum())
            if n_open == 0:
                break
            fmask = torch.zeros(n, dtype=torch.bool, device=dev)
            fmask.scatter_(0, frontier, expand)
            if symmetric and e_open < e_front:
                unreached = _nonzero(open_, n_open)
                pos, seg = csr_gather(rowptr, unreached, e_open)
                seen = _any_at(n, _at(unreached, seg), _at(fmask, _at(col, pos)))
            else:
                if row is None:
                    row = row_of() if row_of is not None else entry_rows(rowptr)
                seen = _any_at(n, col, _at(fmask, row))
        else:
            if passable is not None:
                frontier = frontier[_at(passable, frontier)]
            if frontier.numel() == 0:
                break
            pos, _ = csr_gather(rowptr, frontier)
            nbrs = _at(col, pos)
            if nbrs.numel() < sparse:  # a few neighbours: sort them rather than scan every row
                nbrs = torch.unique(nbrs)
                frontier = nbrs[_at(dist, nbrs) == UNREACHED]
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


def _walk_pays(sources: int, hops: int, rows: int, entries: int) -> bool:
    """Whether a ``hops``-hop walk from ``sources`` may leave a useful share of ``rows`` out: its
    expected reach at the mean degree (``entries / rows``) stays under ``SATURATED`` x ``rows``."""
    return sources * (entries / max(rows, 1)) ** hops < SATURATED * rows


# ---------------------------------------------------------------------------- statistics
@dataclass
class EngineStats:
    """What one ``predict`` call computed. FLOPs are multiply-accumulates, as in Eq. 6 of the paper:
    a layer costs ``n_updated * k * m^2 + e_aggregated * m`` (k = 2 for SAS, which has two m x m
    products), plus the exit heads and the input transform; the decoder costs pairs x per-pair MACs."""

    backend: str
    threshold: float
    exit_layer: torch.Tensor = None  # [P, 2] exit layer of each pair's endpoints
    nodes_updated: List[int] = field(default_factory=list)
    edges_aggregated: List[int] = field(default_factory=list)
    nodes_decided: List[int] = field(default_factory=list)
    pairs_resolved: List[int] = field(default_factory=list)  # scored after each layer that ran
    scope_nodes: int = 0
    flops_gnn: float = 0.0
    flops_decoder: float = 0.0
    flops_dense_gnn: float = 0.0
    flops_dense_decoder: float = 0.0
    flops_paper: Optional[float] = None
    time_gnn: float = 0.0
    time_decoder: float = 0.0
    score_bound: Optional[torch.Tensor] = None  # [P] logit error bound (precision="bf16")

    @property
    def flops(self) -> float:
        return self.flops_gnn + self.flops_decoder

    @property
    def flops_dense(self) -> float:
        return self.flops_dense_gnn + self.flops_dense_decoder

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("exit_layer", "score_bound")}
        d.update(flops=self.flops, flops_dense=self.flops_dense)
        return d


def _head_macs(in_dim: int, hidden: int, temperature: bool) -> int:
    return in_dim * hidden + hidden * 2 + (in_dim if temperature else 0)


def _layer_k(model: EarlyExitLinkPredictor) -> int:
    return 2 if model.config.backbone == "sas" else 1


def dense_flops(model: EarlyExitLinkPredictor, graph: Graph, num_pairs: int) -> Tuple[float, float]:
    """MACs of the dense reference: every node at every layer, dense input transform, all pairs."""
    c = model.config
    n, m, L = graph.num_nodes, c.hidden, c.layers
    e = graph.col.numel() + (n if model.self_loops else 0)
    f_in = c.in_channels or m
    gnn = n * f_in * m + L * e * m + (L - (1 if c.backbone == "gcn" else 0)) * n * _layer_k(model) * m * m
    if c.exit != "none":
        per = _head_macs(m, c.exit_hidden, True)
        if c.exit == "subgraph":
            per += _head_macs(m + 1, c.exit_hidden, True) + graph.deg.float().mean().item()
        gnn += (L - model.first_exit) * n * per
    return float(gnn), float(num_pairs * model.predictor.flops_per_pair())


def paper_flops(model: EarlyExitLinkPredictor, active_nodes: List[int], active_edges: List[int]) -> float:
    """The paper's Eq. 6 for a reference forward: all non-exited nodes and their edges, per layer."""
    m, k = model.config.hidden, _layer_k(model)
    return float(sum(nv * k * m * m + ne * m for nv, ne in zip(active_nodes, active_edges)))


# ---------------------------------------------------------------------------- the engine
class _Run:
    """State of one engine pass over a (possibly compacted) graph."""

    def __init__(self, model: EarlyExitLinkPredictor, graph: Graph, ends: torch.Tensor,
                 threshold: float, ops: ModuleType, stats: EngineStats):
        """``ends``: the pairs' endpoints, sorted unique global node ids. The layer loop depends on
        the pairs only through this set: an endpoint not yet exited keeps every pair it is in open,
        so the endpoints still needed are exactly those not exited."""
        self.model, self.ops, self.stats, self.threshold = model, ops, stats, threshold
        c = self.c = model.config
        self.L, self.m = c.layers, c.hidden
        self.exits = c.exit != "none"
        self.freeze = self.exits and c.semantics == "freeze"
        self.sample = model.eval_mode == "sample"
        n_glob = graph.num_nodes
        # Scope: everything within L hops of an endpoint; compact when that is a small part.
        dev = self.dev = graph.rowptr.device
        if not _walk_pays(ends.numel(), 1, n_glob, graph.col.numel()):
            # One hop would reach every row: all rows count as within one hop (a superset of the
            # true scope, so nothing changes but possibly a few more updates), none is compacted.
            dist = torch.ones(n_glob, dtype=torch.int64, device=dev).scatter_(0, ends, 0)
            scope = None
        else:
            dist, scope = hop_distance(graph.rowptr, graph.col, ends, self.L, row_of=lambda: graph.row,
                                       symmetric=True, return_reached=True)
        dinv = graph.dinv(model.self_loops)
        if scope is not None and scope.numel() < 0.8 * n_glob:
            g2l = torch.full((n_glob,), -1, dtype=torch.int64, device=dev)
            g2l.scatter_(0, scope, torch.arange(scope.numel(), device=dev))
            inner = scope[_at(dist, scope) < self.L]  # boundary rows are read, never updated
            pos, seg = csr_gather(graph.rowptr, inner)
            row_g, col_g = _at(inner, seg), _at(graph.col, pos)
            counts = torch.zeros(scope.numel(), dtype=torch.int64, device=dev)
            counts.scatter_(0, _at(g2l, inner), _at(graph.rowptr, inner + 1) - _at(graph.rowptr, inner))
            self.rowptr = torch.zeros(scope.numel() + 1, dtype=torch.int64, device=dev)
            torch.cumsum(counts, 0, out=self.rowptr[1:])
            self.col = _at(g2l, col_g)
            self.weight = _at(dinv, row_g) * _at(dinv, col_g)
            self.nodes = scope
            self.ends = _at(g2l, ends)
        else:
            self.rowptr, self.col, self.nodes, self.ends = graph.rowptr, graph.col, None, ends
            self.weight = graph.edge_weight(model.self_loops)
        self.n = self.rowptr.numel() - 1
        self.dist = dist if self.nodes is None else _at(dist, scope)
        self.deg = graph.deg if self.nodes is None else _at(graph.deg, scope)
        self.self_weight = None
        if model.self_loops:
            d = dinv if self.nodes is None else _at(dinv, scope)
            self.self_weight = d * d
        self.graph = graph
        self.row: Optional[torch.Tensor] = None
        stats.scope_nodes = self.n
        # The aggregation CSR shrinks under freeze; readiness always needs all neighbours.
        self.agg_rowptr, self.agg_col, self.agg_weight = self.rowptr, self.col, self.weight
        self.csr_deg = self.agg_deg = self.rowptr.diff()  # entries per row, for the FLOP counts
        self.cache: Optional[torch.Tensor] = None
        self.scratch: Optional[torch.Tensor] = None
        self.in_cache = torch.zeros(self.n, dtype=torch.bool, device=dev)  # frozen, in the cache

    # -------------------------------------------------------------- pieces
    def _row(self) -> torch.Tensor:
        """The row of every entry of the scope CSR (for wide-frontier re-scoping), built once."""
        if self.row is None:
            self.row = self.graph.row if self.nodes is None else entry_rows(self.rowptr)
        return self.row

    def _rows(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.nonzero().squeeze(1)

    def _scratch(self, rows: int) -> torch.Tensor:
        """A ``[rows, m]`` view of the one scratch buffer that serves every layer: first the
        exit heads' row gather, then the layer's new states. A fresh tensor per use pays its
        first-touch page faults each time: on the 1M-node graph that was 1.66M faults (6.6 GB)
        per call, and the kernel's share of the engine's CPU time was about 40 %."""
        if self.scratch is None or self.scratch.shape[0] < rows:
            self.scratch = None  # release the smaller one before allocating
            self.scratch = torch.empty(rows, self.m, device=self.dev)
        return self.scratch[:rows]

    def _take(self, h: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``h[rows]`` for sorted unique ``rows`` (from :meth:`_rows`), in the scratch buffer, and
        without the copy when they are every row: on a full evaluation that gather is an [N, m]
        pass per use. Valid until the next use of the scratch."""
        if rows.numel() == h.shape[0]:
            return h
        return torch.index_select(h, 0, rows, out=self._scratch(rows.numel()))

    def _input(self) -> torch.Tensor:
        """H^0 over the scope rows (gcn: X W_0, the first layer's transform, done before aggregation)."""
        model, c, g = self.model, self.c, self.graph
        if c.backbone == "gcn":
            w, b = model.convs[0].weight, None
        else:
            w, b = model.input_proj.weight, model.input_proj.bias
        rows = self.nodes if self.nodes is not None else None
        if model.embedding is not None:
            x = model.embedding.weight if rows is None else _at(model.embedding.weight, rows)
            out = F.linear(x, w, b)
            self.stats.flops_gnn += x.shape[0] * x.shape[1] * w.shape[0]
            return out
        xs = _sparse_features(g)
        if xs is not None:
            rowptr, col, val = xs
            sel = torch.arange(g.num_nodes, device=self.dev) if rows is None else rows
            out = self.ops.aggregate_rows(rowptr, col, val, _transposed(w), sel)
            self.stats.flops_gnn += float((rowptr[sel + 1] - rowptr[sel]).sum()) * w.shape[0]
            return out if b is None else out + b
        x = g.x if rows is None else _at(g.x, rows)
        self.stats.flops_gnn += x.shape[0] * x.shape[1] * w.shape[0]
        return F.linear(x, w, b)

    def _decide(self, head, h_rows: torch.Tensor, l: int, head_id: int, ids: torch.Tensor):
        """(exit flag, step) for rows; deterministic via the fused op, or seeded Gumbel samples."""
        sas = self.c.backbone == "sas"
        self.stats.flops_gnn += h_rows.shape[0] * _head_macs(h_rows.shape[1], self.c.exit_hidden, sas)
        if not self.sample:
            _, flag, step = self.ops.exit_decision(
                h_rows, head.lin1.weight, head.lin1.bias, head.lin2.weight, head.lin2.bias,
                self.threshold, head.nu.weight[0] if sas else None, head.nu.bias if sas else None,
                head.tau0)
            return flag, step
        gids = ids if self.nodes is None else self.nodes[ids]
        e, step, _ = self.model._sample(head.logits(h_rows), head.temperature(h_rows), "sample",
                                        self.threshold, None, (self.model.sample_seed, l, head_id, gids))
        return e > 0.5, step

    def _cache_pays(self, exited: torch.Tensor, keep: torch.Tensor, later_updates: int) -> bool:
        """Whether moving the newly frozen neighbours into the cache saves more than it costs.

        It spares ``later_updates`` aggregations of the edges from kept rows to newly frozen nodes
        (``m`` MACs each), and costs index passes over every kept row's edges. Edge counts come
        from the current aggregation CSR's degrees, which is symmetric up to what earlier
        rebuilds dropped.
        """
        deg = self.agg_deg
        frozen_edges = (deg * (exited & ~self.in_cache)).sum()
        row_edges = (deg * keep).sum()
        return bool(frozen_edges * (self.m * later_updates) > CACHE_EDGE_COST * row_edges)  # one sync

    def _rebuild_cache(self, h: torch.Tensor, exited: torch.Tensor, keep_rows: torch.Tensor) -> None:
        """Move frozen neighbours' contributions into the cache and drop their edges (freeze only)."""
        rows = self._rows(keep_rows)
        pos, seg = csr_gather(self.agg_rowptr, rows)
        cols = _at(self.agg_col, pos)
        frozen = _at(exited, cols)
        if self.cache is None:
            self.cache = torch.zeros(self.n, self.m, device=self.dev)

        def sub_csr(keep: torch.Tensor) -> torch.Tensor:
            counts = torch.zeros(rows.numel(), dtype=torch.int64, device=self.dev)
            counts.index_add_(0, seg[keep], torch.ones(int(keep.sum()), dtype=torch.int64, device=self.dev))
            rowptr = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=self.dev)
            torch.cumsum(counts, 0, out=rowptr[1:])
            return rowptr
        # The frozen part goes through the aggregation op itself: no [edges, m] intermediate.
        f_rowptr = sub_csr(frozen)
        local_rows = torch.arange(rows.numel(), device=self.dev)
        self.cache[rows] += self.ops.aggregate_rows(f_rowptr, cols[frozen], self.agg_weight[pos[frozen]], h,
                                                   local_rows)
        live = ~frozen
        counts = torch.zeros(self.n, dtype=torch.int64, device=self.dev)
        counts.scatter_(0, rows, sub_csr(live).diff())
        rowptr = torch.zeros(self.n + 1, dtype=torch.int64, device=self.dev)
        torch.cumsum(counts, 0, out=rowptr[1:])
        self.agg_rowptr, self.agg_col, self.agg_weight = rowptr, cols[live], self.agg_weight[pos[live]]
        self.agg_deg = counts
        self.in_cache = exited.clone()

    def _update(self, l: int, h: torch.Tensor, upd: torch.Tensor, step: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """New states of rows ``upd`` at layer ``l`` and the edges aggregated for them (a device
        scalar: the statistics are read once, after the layer loop).

        Rows go in chunks into the scratch buffer, so a layer holds ``h``, the scratch and
        chunk-sized temporaries rather than four ``[N, m]`` tensors (aggregate, linear, activation,
        output): on the 1M-node graph that is the difference between 2 and 4 GB.
        """
        model, c, ops = self.model, self.c, self.ops
        first = c.backbone == "gcn" and l == 0  # aggregates X W_0 over the full CSR, no cache
        rowptr, col, weight, deg, cache = (
            (self.rowptr, self.col, self.weight, self.csr_deg, None) if first else
            (self.agg_rowptr, self.agg_col, self.agg_weight, self.agg_deg, self.cache))
        def rows_update(rows: torch.Tensor) -> torch.Tensor:
            agg = ops.aggregate_rows(rowptr, col, weight, h, rows, self.self_weight, cache)
            if first:
                agg += model.convs[0].bias
                return model.transform(0, agg, None, None)
            h_rows = None if c.backbone == "gcn" else _at(h, rows)  # gcn has no residual
            return model.transform(l, agg, h_rows, None if step is None else _at(step, rows))

        chunk = max(ROW_CHUNK_BYTES // (4 * self.m), 1) if self.dev.type == "cpu" else max(upd.numel(), 1)
        if upd.numel() <= chunk:
            out = rows_update(upd)
        else:
            out = self._scratch(upd.numel())
            for s in range(0, upd.numel(), chunk):
                out[s:s + chunk] = rows_update(upd[s:s + chunk])
        return out, _at(deg, upd).sum()

    # -------------------------------------------------------------- the layer loop
    def run(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The layer loop, until every endpoint has exited or the layers run out.

        Returns ``(z, rows, layer)``: the output states ``z [*, m]``, the row of ``z`` of each
        endpoint (``rows [E]``, in the order of ``ends``) and the exit layer of each row of ``z``
        (``L``: never exited). Pairs are scored from these afterwards, in chunks (:func:`_score`).
        Appends one ``st.pairs_resolved`` entry per layer that ran, filled in by the scoring.
        """
        model, c, ops, st = self.model, self.c, self.ops, self.stats
        L, m, n = self.L, self.m, self.n
        dev = self.dev
        k = _layer_k(model)
        exited = torch.zeros(n, dtype=torch.bool, device=dev)
        exit_layer = torch.full((n,), L, dtype=torch.int64, device=dev)
        ready = torch.zeros(n, device=dev)
        # Pairs read their endpoints' rows of h, except under readout: there exited nodes keep
        # updating, so their output states are copied into zsel, one row per endpoint. Under
        # freeze an exited state never changes and h itself is the output.
        readout = self.exits and not self.freeze
        if readout:
            zsel = torch.empty(self.ends.numel(), m, device=dev)
            end_pos = torch.full((n,), -1, dtype=torch.int64, device=dev)
            end_pos.scatter_(0, self.ends, torch.arange(self.ends.numel(), device=dev))
        open_ends = self.ends  # endpoints not yet exited (local ids, sorted); shrinks as they exit
        dist = self.dist
        sources_at_bfs, n_exited, exited_at_rebuild = self.ends.numel(), 0, 0
        edge_counts: List[torch.Tensor] = []  # per layer that ran, on the device

        h = self._input()
        for l in range(L):
            bound = L - l - 1
            step = None
            decided = 0
            upd = None  # rows to update at this layer, when the exit block already knows them
            st.pairs_resolved.append(0)
            if self.exits and l >= model.first_exit:
                if c.exit == "subgraph":
                    soft = (dist <= L - l) & (ready == 0)
                    if self.freeze:
                        soft &= ~exited
                    rows = self._rows(soft)
                    flag, _ = self._decide(model.head(l), self._take(h, rows), l, 0, rows)
                    ready.scatter_(0, rows[flag], 1.0)
                    decided += rows.numel()
                cand = dist <= bound
                if self.freeze:
                    cand &= ~exited
                rows = self._rows(cand)
                if c.exit == "subgraph":
                    nsum = ops.aggregate_rows(self.rowptr, self.col, torch.ones_like(self.weight),
                                              ready[:, None].contiguous(), rows)[:, 0]
                    d = _at(self.deg, rows).to(torch.float32)
                    r = torch.where(d > 0, nsum / d.clamp(min=1), torch.ones_like(nsum))
                    flag, step_rows = self._decide(model.hard_head(l), torch.cat([self._take(h, rows), r[:, None]], 1),
                                                   l, 1, rows)
                    flag = flag & (_at(ready, rows) > 0)
                else:
                    flag, step_rows = self._decide(model.head(l), self._take(h, rows), l, 0, rows)
                decided += rows.numel()
                if step_rows is not None:
                    step = torch.zeros(n, device=dev)
                    step.scatter_(0, rows, step_rows)
                # The rows judged are the rows this layer updates: under freeze less those exiting.
                if self.freeze:  # none of the rows has exited: mark by mask, count below
                    new_mask = flag
                    exited.scatter_(0, rows, flag)
                    exit_layer.scatter_(0, rows, torch.where(flag, l, L))
                else:
                    new_mask = flag & ~_at(exited, rows)
                    new, upd = rows[new_mask], rows
                    pos = _at(end_pos, new)
                    pos_ok = pos >= 0
                    zsel[pos[pos_ok]] = _at(h, new[pos_ok])
                    exited.scatter_(0, new, True)
                    exit_layer.scatter_(0, new, l)
                still = ~_at(exited, open_ends)
                n_new, n_src = _host(new_mask.sum(), still.sum())  # one transfer for both counts
                n_exited += n_new
                if self.freeze:
                    upd = _at(rows, _nonzero(~flag, rows.numel() - n_new))
                if n_src == 0:  # every endpoint exited, so every pair is resolved: stop here
                    st.nodes_decided.append(decided)
                    break
                open_ends = _at(open_ends, _nonzero(still, n_src))
                # Lazy re-scoping: only when the set of endpoints still needed shrank enough, and
                # the walk may leave rows out (else the current distances, from a superset of
                # these sources, stay: a superset of the rows needed).
                if (n_src <= 0.5 * sources_at_bfs or (self.freeze and n_exited > 1.1 * exited_at_rebuild + 0.05 * n)) \
                        and _walk_pays(n_src, bound, n, self.col.numel()):
                    sources = open_ends
                    # The scope CSR is the graph's own (symmetric) unless it was compacted.
                    dist = hop_distance(self.rowptr, self.col, sources, bound,
                                        ~exited if self.freeze else None, self._row, self.nodes is None)
                    sources_at_bfs = n_src
                    upd = None
                if self.freeze and n_exited > exited_at_rebuild + 0.25 * (n - exited_at_rebuild):
                    keep = (dist <= bound) & ~exited
                    if self._cache_pays(exited, keep, later_updates=L - l - 1):
                        self._rebuild_cache(h, exited, keep)
                    exited_at_rebuild = n_exited
            st.nodes_decided.append(decided)
            if upd is None:
                upd_mask = dist <= bound
                if self.freeze:
                    upd_mask &= ~exited
                upd = self._rows(upd_mask)
            new_h, n_edges = self._update(l, h, upd, step)
            if not (c.backbone == "gcn" and l == 0):  # gcn's first transform was the input layer's
                st.flops_gnn += upd.numel() * k * m * m
            st.nodes_updated.append(int(upd.numel()))
            edge_counts.append(n_edges + (upd.numel() if self.self_weight is not None else 0))
            if upd.numel() == n:  # every row updated (so, under freeze, none has exited)
                if self.scratch is not None and new_h.data_ptr() == self.scratch.data_ptr():
                    self.scratch = h  # ping-pong: the old states become the scratch
                h = new_h
            else:
                h.index_copy_(0, upd, new_h)
        else:  # the layers ran out with endpoints still open: their final states
            if readout:
                rest = self.ends[~exited[self.ends]]
                zsel[_at(end_pos, rest)] = _at(h, rest)
        if edge_counts:
            st.edges_aggregated += _host(*edge_counts)
            st.flops_gnn += sum(st.edges_aggregated[-len(edge_counts):]) * m
        if readout:
            return zsel, torch.arange(self.ends.numel(), device=dev), _at(exit_layer, self.ends)
        return h, self.ends, exit_layer


def _transposed(w: torch.Tensor) -> torch.Tensor:
    """``w.T`` made contiguous, kept on ``w`` while it is unchanged (same storage and version
    counter): the sparse input product gathers its rows, and for CiteSeer's 3703 x 256 input
    weight the copy took ~2 ms a call, as long as the product itself."""
    key = (w._version, w.data_ptr())
    hit = getattr(w, "_linkexit_transposed", None)
    if hit is None or hit[0] != key:
        hit = (key, w.detach().T.contiguous())
        w._linkexit_transposed = hit
    return hit[1]


def _sparse_features(g: Graph):
    """CSR of the features when they are sparse enough for a sparse X W (cached on the graph)."""
    if "x_csr" not in g._cache:
        x = g.x
        nnz = int(torch.count_nonzero(x)) if x is not None else 0
        if x is None or nnz > SPARSE_FEATURE_DENSITY * x.numel():
            g._cache["x_csr"] = None
        else:
            with quiet_sparse():
                csr = x.to_sparse_csr()
            g._cache["x_csr"] = (csr.crow_indices().to(torch.int64), csr.col_indices().to(torch.int64),
                                 csr.values().contiguous())
    return g._cache["x_csr"]


# ---------------------------------------------------------------------------- public API
def _resolve_inputs(graph, model):
    from .checkpoint import Predictor
    if isinstance(graph, Predictor):
        model = model or graph.model
        if graph.graph is None:
            raise ValueError(f"checkpoint {graph.path} was saved without its graph; pass graph= and model=")
        graph = graph.graph
    if model is None:
        raise ValueError("predict needs a model: pass model=..., or a predictor from linkexit_fast.load()")
    if not isinstance(graph, Graph):
        graph = Graph.from_any(graph)
    if not isinstance(model, EarlyExitLinkPredictor):
        raise TypeError(f"model must be an EarlyExitLinkPredictor, got {type(model).__name__}")
    model.input_features(graph.x)  # raises a ValueError on a feature-size mismatch
    if model.embedding is not None and model.config.num_nodes != graph.num_nodes:
        raise ValueError(f"the model embeds {model.config.num_nodes} nodes, the graph has {graph.num_nodes}")
    return graph, model


def _endpoints(parts: Iterable[torch.Tensor], n: int, few: bool) -> torch.Tensor:
    """Sorted unique node ids of the pairs in ``parts``: by sorting when there are ``few`` (one
    part), else by marking (O(N + P), no sort of the 2P ids, memory O(N) whatever P)."""
    if few:
        return torch.unique(next(iter(parts)))
    mark = None
    for part in parts:
        if mark is None:
            mark = torch.zeros(n, dtype=torch.bool, device=part.device)
        mark.scatter_(0, part.reshape(-1), True)
    return torch.empty(0, dtype=torch.int64) if mark is None else mark.nonzero().squeeze(1)


def _engine(model: EarlyExitLinkPredictor, graph: Graph, ends: torch.Tensor, threshold: float,
            ops: ModuleType, stats: EngineStats):
    """The GNN stage, once for all endpoints ``ends`` (sorted unique ids): ``(z, key, layer)``
    where ``key(part)`` maps pairs ``[C, 2]`` of those endpoints to their rows of ``z`` and
    ``layer`` holds each row's exit layer. Memory is bounded by the number of nodes."""
    n = graph.num_nodes
    t0 = time.perf_counter()
    z, rows, layer = _Run(model, graph, ends, threshold, ops, stats).run()
    stats.time_gnn += time.perf_counter() - t0
    if ends.numel() < SPARSE_FRONTIER * n:  # a few endpoints: no O(N) map
        return z, lambda part: _at(rows, torch.searchsorted(ends, part)), layer
    row_of = torch.zeros(n, dtype=torch.int64, device=ends.device).scatter_(0, ends, rows)
    return z, lambda part: _at(row_of, part), layer


def _score_chunks(pairs: torch.Tensor, chunk: int, logits_of: Callable[[torch.Tensor], torch.Tensor],
                  layers_of: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
    """``sigmoid(logits_of(part))`` for each ``part`` of ``chunk`` pairs, written into one ``[P]``
    output (and ``layers_of(part)`` into one ``[P, 2]``, when given): nothing else grows with P."""
    out = torch.empty(pairs.shape[0], device=pairs.device)
    layers = None if layers_of is None else torch.empty(pairs.shape[0], 2, dtype=torch.int64, device=pairs.device)
    for s in range(0, pairs.shape[0], chunk):
        part = pairs[s:s + chunk]
        out[s:s + chunk] = logits_of(part)
        out[s:s + chunk].sigmoid_()
        if layers is not None:
            layers[s:s + chunk] = layers_of(part)
    return out, layers


def _engine_scores(model, ops, z, key, pairs, chunk, stats, layer=None, precision="fp32"):
    """Scores ``[P]`` of ``pairs`` from the GNN stage's output, and with ``layer`` their
    endpoints' exit layers ``[P, 2]``. ``precision="bf16"`` also sets ``stats.score_bound``."""
    t0 = time.perf_counter()
    weights = [lin.weight for lin in model.predictor.lins]
    biases = [lin.bias for lin in model.predictor.lins]
    bounds: List[torch.Tensor] = []

    def logits_of(part):
        keys = key(part)
        if precision == "fp32":
            return ops.score_pairs(z, keys[:, 0], keys[:, 1], weights, biases)
        logits, bound = score_pairs_bf16(z, keys[:, 0], keys[:, 1], weights, biases, fp32_scorer=ops.score_pairs)
        bounds.append(bound)
        return logits
    out = _score_chunks(pairs, chunk, logits_of, None if layer is None else (lambda part: _at(layer, key(part))))
    if bounds:
        stats.score_bound = torch.cat(bounds)
    stats.time_decoder += time.perf_counter() - t0
    stats.flops_decoder += float(pairs.shape[0] * model.predictor.flops_per_pair())
    return out


def _resolved_per_layer(layers: torch.Tensor, ran: int, L: int, chunk: int) -> List[int]:
    """Pairs resolved after each of the ``ran`` layers that ran: a pair resolves at the later
    of its endpoints' exit layers; pairs still open when the layers ran out count at the last."""
    counts = torch.zeros(L + 1, dtype=torch.int64, device=layers.device)
    for s in range(0, layers.shape[0], chunk):
        counts += torch.bincount(layers[s:s + chunk].amax(1), minlength=L + 1)
    counts = counts.tolist()
    return counts[:ran - 1] + [sum(counts[ran - 1:])] if ran else []


def _check_args(graph, model, threshold, backend, batch_size, precision="fp32"):
    """The arguments of :func:`predict` and :func:`predict_chunks` but the pairs, checked, in
    the order that reports a bad backend name whatever else is wrong."""
    check_backend_name(backend)
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if precision == "bf16" and backend == "reference":
        raise ValueError("precision='bf16' needs an engine backend, not 'reference'")
    graph, model = _resolve_inputs(graph, model)
    threshold = check_threshold(threshold)
    if batch_size is not None:
        batch_size = check_count(batch_size, "batch_size", minimum=1)
    return graph, model, threshold, batch_size


@contextlib.contextmanager
def _eval_mode(model: EarlyExitLinkPredictor):
    was_training = model.training
    if was_training:  # train() walks every submodule: ~1 ms a call on an 8-layer model
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


@torch.no_grad()
def predict(graph, pairs, threshold: float = 0.9, *, model: Optional[EarlyExitLinkPredictor] = None,
            backend: str = "auto", batch_size: Optional[int] = None, return_stats: bool = False,
            precision: str = "fp32"):
    """Link probabilities ``[P]`` (float32) for ``pairs`` (``[P, 2]`` tensor, array or list).

    The GNN stage runs once, for the set of all endpoints (its memory depends on the number of
    nodes); the pairs are then scored ``batch_size`` at a time into the preallocated output, so
    the memory beyond the output and the pairs is bounded whatever P. Pairs already int64 and
    contiguous are not copied; others are converted once (16 bytes a pair). For pairs that do
    not fit in memory at all, see :func:`predict_chunks`.

    Args:
        graph: a :class:`Graph` (with ``model=``), or the predictor returned by ``linkexit_fast.load``.
        pairs: node pairs ``[P, 2]``; integer ids (or integral floats) in ``[0, num_nodes)``.
        threshold: a node exits at the first layer where its EXIT probability is >= threshold,
            decided on the logit margin ``l_EXIT - l_CONTINUE >= logit(threshold)`` so that float32
            saturation cannot exit a node: ``1.0`` never exits. A real number in ``(0, 1]``
            (Python, numpy or 0-d tensor). Ignored by fixed-depth models.
        backend: ``"auto"`` (may fall back to ``"torch"``, with one warning), ``"reference"``
            (dense masked forward), ``"torch"``, ``"cpu"``, ``"triton"``; an explicitly named
            backend that cannot run here raises a RuntimeError saying why.
        batch_size: pairs scored per chunk (default ``PAIR_CHUNK``; ``REFERENCE_CHUNK`` for
            ``"reference"``). It bounds the scoring's memory and does not change the results.
        return_stats: also return an :class:`EngineStats` (adds a reference pass for
            ``flops_paper``, and the ``[P, 2]`` exit layers).
        precision: ``"fp32"`` (default; the engine contract above) or ``"bf16"``: the scorer's
            hidden layers in bfloat16 (:func:`linkexit_fast.backends.bf16.score_pairs_bf16`,
            CPU with AMX or AVX512-BF16, else fp32), for ranking; ``stats.score_bound [P]``
            then bounds each pair's logit error against any fp32 scorer, and
            :func:`linkexit_fast.ranking.exact_heart_metrics` turns it into exact metrics.

    Raises:
        TypeError / ValueError: a bad argument, named in the message, before anything runs.
        RuntimeError: ``backend`` names a backend that cannot run here.
    """
    graph, model, threshold, batch_size = _check_args(graph, model, threshold, backend, batch_size, precision)
    pairs = check_pairs(pairs, graph.num_nodes)
    ops = None if backend == "reference" else get_backend(backend, pairs.device)
    stats = EngineStats(backend=backend, threshold=threshold)
    with _eval_mode(model):
        if pairs.shape[0] == 0:
            scores, layers = torch.empty(0), torch.empty(0, 2, dtype=torch.int64)
        elif ops is None:
            scores, layers = _reference(model, graph, pairs, threshold, stats, batch_size or REFERENCE_CHUNK,
                                        return_stats)
        else:
            stats.backend = ops.__name__.rsplit(".", 1)[-1]
            chunk = batch_size or PAIR_CHUNK
            ends = _endpoints([pairs], graph.num_nodes, few=pairs.numel() < SPARSE_FRONTIER * graph.num_nodes)
            z, key, layer = _engine(model, graph, ends, threshold, ops, stats)
            scores, layers = _engine_scores(model, ops, z, key, pairs, chunk, stats,
                                            layer if return_stats else None, precision)
            if return_stats:
                stats.pairs_resolved = _resolved_per_layer(layers, len(stats.pairs_resolved),
                                                           model.config.layers, chunk)
        if not return_stats:
            return scores
        stats.exit_layer = layers
        gnn, dec = dense_flops(model, graph, pairs.shape[0])
        stats.flops_dense_gnn, stats.flops_dense_decoder = gnn, dec
        if stats.flops_paper is None:
            res = model(graph, mode=model.eval_mode, threshold=threshold)
            stats.flops_paper = paper_flops(model, res.active_nodes, res.active_edges)
        return scores, stats


def predict_chunks(graph, chunks: Callable[[], Iterable], threshold: float = 0.9, *,
                   model: Optional[EarlyExitLinkPredictor] = None, backend: str = "auto",
                   batch_size: Optional[int] = None, stats: Optional[EngineStats] = None,
                   precision: str = "fp32") -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """:func:`predict` over pairs that come in parts: yields ``(pairs, scores)`` for each part,
    the part checked (``[C, 2]`` int64) and its link probabilities ``[C]``.

    ``chunks()`` must return a fresh iterable of the same ``[C, 2]`` pair arrays each time it is
    called: it is read twice, first to check every part and collect the endpoints, then to score. So the GNN
    stage runs once, on the same endpoints as one :func:`predict` call on all the pairs (same
    states, same exit layers), an error in any part is raised before the first score is
    yielded, and memory is bounded by the graph and the largest part. Scores equal that one
    call's up to the scorer's float32 rounding (~1 ulp): a matrix product's summation order
    depends on how many rows it gets. ``stats`` (optional) is filled in as the scoring proceeds
    (no ``flops_paper``, no exit layers; with ``precision="bf16"``, ``score_bound`` holds the
    last part's bounds). Other arguments and errors as in :func:`predict`.
    """
    graph, model, threshold, batch_size = _check_args(graph, model, threshold, backend, batch_size, precision)
    if backend == "reference":  # the dense forward does not depend on the pairs: run it once
        for part in chunks():  # every part checked before the first score, as below
            check_pairs(part, graph.num_nodes)
        with torch.no_grad(), _eval_mode(model):
            z = model(graph, mode=model.eval_mode, threshold=threshold).z
        for part in chunks():
            pairs = check_pairs(part, graph.num_nodes)
            with torch.no_grad():
                scores = _score_chunks(pairs, batch_size or REFERENCE_CHUNK, lambda p: model.score(z, p))[0]
            yield pairs, scores
        return
    stats = stats if stats is not None else EngineStats(backend=backend, threshold=threshold)
    stats.threshold = threshold
    n = graph.num_nodes
    # Pass 1: every part checked, the endpoints marked.
    ends = _endpoints((check_pairs(part, n) for part in chunks()), n, few=False)
    ops = get_backend(backend, ends.device)
    stats.backend = ops.__name__.rsplit(".", 1)[-1]
    if ends.numel():
        # No context spans a yield: the caller's grad mode stays its own between parts.
        with torch.no_grad(), _eval_mode(model):
            z, key, _ = _engine(model, graph, ends, threshold, ops, stats)
    total = 0
    for part in chunks():  # pass 2: the scores
        pairs = check_pairs(part, n)
        total += pairs.shape[0]
        if pairs.shape[0] == 0:
            yield pairs, torch.empty(0)
            continue
        with torch.no_grad():
            scores = _engine_scores(model, ops, z, key, pairs, batch_size or PAIR_CHUNK, stats,
                                    precision=precision)[0]
        yield pairs, scores
    stats.flops_dense_gnn, stats.flops_dense_decoder = dense_flops(model, graph, total)


@torch.no_grad()
def embeddings(graph, nodes, threshold: float = 0.9, *, model: Optional[EarlyExitLinkPredictor] = None,
               backend: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Output embeddings of ``nodes`` as :func:`predict` computes them: ``(z [r, m] float32,
    rows [k] int64)`` with ``z[rows[i]]`` the embedding of ``nodes[i]``.

    ``nodes``: ``[k]`` node ids in ``[0, num_nodes)`` (repeats allowed; e.g. ``pairs.reshape(-1)``).
    An engine backend runs the GNN stage once for the distinct ids; ``"reference"`` runs the dense
    forward (``z`` holds every node, ``rows = nodes``). Other arguments and errors as in
    :func:`predict`.
    """
    graph, model, threshold, _ = _check_args(graph, model, threshold, backend, None)
    nodes = check_index_tensor(nodes, "nodes", shape=(None,), num_nodes=graph.num_nodes)
    with _eval_mode(model):
        if backend == "reference":
            return model(graph, mode=model.eval_mode, threshold=threshold).z, nodes
        n = graph.num_nodes
        ops = get_backend(backend, nodes.device)
        ends = _endpoints([nodes], n, few=nodes.numel() < SPARSE_FRONTIER * n)
        z, key, _ = _engine(model, graph, ends, threshold, ops, EngineStats(backend=backend, threshold=threshold))
        return z, key(nodes)


REFERENCE_CHUNK = 65536  # pairs per naive scoring step: bounds the [chunk, m] intermediates


def _reference(model, graph, pairs, threshold, stats, chunk, want_layers):
    """The dense masked forward (what the paper's code computes), then naive gather-then-MLP."""
    t0 = time.perf_counter()
    res = model(graph, mode=model.eval_mode, threshold=threshold)
    stats.time_gnn = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores, layers = _score_chunks(pairs, chunk, lambda part: model.score(res.z, part),
                                   (lambda part: _at(res.exit_layer, part)) if want_layers else None)
    stats.time_decoder = time.perf_counter() - t0
    stats.flops_gnn, stats.flops_decoder = dense_flops(model, graph, pairs.shape[0])
    stats.flops_paper = paper_flops(model, res.active_nodes, res.active_edges)
    stats.nodes_updated = list(res.active_nodes)
    return scores, layers
