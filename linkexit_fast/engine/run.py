"""The layer loop: one engine pass over the scope rows, for the set of all endpoints.

It stops when every endpoint has exited (then every pair is resolved) or the layers run out. Each
layer decides exits for the rows in scope, updates only the rows still needed and aggregates over
the CSR that the frozen-neighbour cache (:mod:`.cache`) keeps; the scope (:mod:`.scope`) is walked
again when the endpoints still needed shrank enough, or when the probe (:meth:`_Run._probe`) saw,
before a layer, that some endpoints will exit right after it. Before gcn's first layer on the raw
input the probe runs before the scope is built (:class:`_Run`), which then leaves out what the
endpoints it sees exit would have needed.
"""
from __future__ import annotations

import time
from types import ModuleType
from typing import Callable, List, Optional, Tuple, Union

import torch

from ..graph import Graph
from ..models import EarlyExitLinkPredictor, linear_into
from . import buffers
from .cache import FrozenCache
from .indexing import at, host, nonzero, scatter_rows, sync_free
from .inputs import aggregates_input, input_states
from .plan import Plan, choose, judges_in_place, reach, record
from .scope import compact, row_key, walk_pays
from .stats import EngineStats, head_macs, layer_k

# Bytes per [rows, m] temporary of a chunked layer update on a CPU (see _Run._update). Below
# glibc's 32 MB ceiling for its adaptive mmap threshold, freed chunks come back from the heap
# instead of as fresh pages: on the 1M-node graph (m = 256) 16k-row chunks took a full evaluation
# from 1.2M page faults to 0.5M and its wall-clock from 5.1-6.2 s to 3.9-4.5 s, against 64k-row
# (64 MB) chunks. On a GPU a layer is one chunk: there launches cost more than memory.
ROW_CHUNK_BYTES = 16 << 20
# Whether the probe before gcn's first layer on the raw input runs before compaction (see
# _Run.__init__); False: after it, as for the other layers (benchmarks/engine_variants.py times both).
PROBE_BEFORE_COMPACT = True
# Whether a layer's exit bookkeeping under freeze uses the backend's exit_update op where it has
# one, and its rows to judge and update the backend's live_rows op, on the CPU's index path
# (False: the torch ops of _Run.run, their specification).
NATIVE_EXITS = True
# Whether gcn's and resgcn's layer updates (aggregation, Linear, then GELU but at the last layer) use
# the backend's aggregate_linear_act op where it has one (the CPU's: the aggregate made in cache,
# the output written once); False: aggregate_rows and the model's own transform, its specification.
NATIVE_LINEAR = True


def gnn_stage(model: EarlyExitLinkPredictor, graph: Graph, ends: torch.Tensor, threshold: float,
              ops: ModuleType, stats: EngineStats, count_flops: bool = True, path: str = "engine"
              ) -> Tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The GNN stage, once for all endpoints ``ends`` (sorted unique ids): ``(z, key, layer)``
    where ``key(part)`` maps pairs ``[C, 2]`` of those endpoints to their rows of ``z`` and
    ``layer`` holds each row's exit layer. Memory is bounded by the number of nodes.

    ``path``: ``"engine"`` (scope, compaction, frozen-neighbour cache: only the rows the
    endpoints still need), ``"dense"`` (every node at every layer, exits as masks, no
    bookkeeping: what the reference forward computes, on the backend's ops) or ``"auto"`` (the
    planner's choice, recorded in ``stats.plan``): see :mod:`.plan`. An ``"auto"`` or
    ``"engine"`` call teaches the planner the model's exit profile, which the engine's probe
    (:meth:`_Run._probe`) reads too. ``count_flops=False`` leaves out of ``stats`` what
    costs device work to count (the edges aggregated, a sparse input's entries): for callers
    that do not read it."""
    t0 = time.perf_counter()
    # path was checked by the entry points (api._check_args)
    plan = choose(model, graph, ends.numel(), threshold, ops, graph.rowptr.device, path)
    stats.plan = str(plan)
    z, rows, layer = _Run(model, graph, ends, threshold, ops, stats, count_flops, plan).run()
    key = row_key(ends, rows, graph.num_nodes)
    if path != "dense" and model.config.exit != "none" and not plan.profiled:
        record(model, graph, threshold, at(layer, key(ends)))  # once per weights, graph, threshold
    stats.time_gnn += time.perf_counter() - t0
    return z, key, layer


class Scratch:
    """The one ``[rows, m]`` buffer that serves every layer of a pass: first the exit heads' row
    gather, then the layer's new states. A fresh tensor per use pays its first-touch page faults
    each time: on the 1M-node graph that was 1.66M faults (6.6 GB) per call, and the kernel's share
    of the engine's CPU time was about 40 %. ``scratch(rows)`` is a view of it, valid until the
    next use."""

    def __init__(self, m: int, device: torch.device):
        self.m, self.dev = m, device
        self.buf: Optional[torch.Tensor] = None

    def __call__(self, rows: int) -> torch.Tensor:
        if self.buf is None or self.buf.shape[0] < rows:
            self.buf = None  # release the smaller one before allocating (a kept one stays with
            # its predict call until the call ends: engine/buffers.py, at most KEEP_BYTES)
            self.buf = buffers.empty(rows, self.m, self.dev)
        return self.buf[:rows]

    def take(self, h: torch.Tensor, rows: torch.Tensor, n: Optional[int] = None) -> torch.Tensor:
        """``h[rows]`` for sorted unique ``rows``, in the buffer, and without the copy when they
        are all of the first ``n`` rows (default: every row of ``h``): on a full evaluation that
        gather is an ``[N, m]`` pass per use."""
        n = h.shape[0] if n is None else n
        if rows.numel() == n:
            return h[:n]
        return torch.index_select(h, 0, rows, out=self(rows.numel()))

    def swap(self, states: torch.Tensor, old: torch.Tensor) -> None:
        """``states`` (new states that live in the buffer) replace ``old`` (states no longer
        read), which becomes the buffer; or, when ``old`` is not ``m`` wide (the raw input
        features, possibly the graph's own), none does until the next use."""
        if self.buf is not None and states.data_ptr() == self.buf.data_ptr():
            self.buf = old if old.shape[1] == self.m else None


def decide(model: EarlyExitLinkPredictor, ops: ModuleType, stats: EngineStats, threshold: float, head,
           h_rows: torch.Tensor, l: int, head_id: int, ids: torch.Tensor, nodes: Optional[torch.Tensor],
           in_place: bool = False):
    """(exit flag, step) of exit head ``head`` (number ``head_id`` of layer ``l``) on rows
    ``h_rows``: the fused op in threshold mode, else the model's seeded Gumbel samples, keyed by
    the rows' global ids (``nodes[ids]``; ``ids`` themselves when ``nodes`` is None) so that any
    subset of nodes draws what the reference forward draws. ``in_place`` (a backend for which
    :func:`judges_in_place` holds): ``h_rows`` holds every row, and the rows judged are
    ``h_rows[ids]``."""
    c = model.config
    sas = c.backbone == "sas"
    stats.flops_gnn += ids.numel() * head_macs(h_rows.shape[1], c.exit_hidden, sas)
    if model.eval_mode != "sample":
        _, flag, step = ops.exit_decision(
            h_rows, head.lin1.weight, head.lin1.bias, head.lin2.weight, head.lin2.bias,
            threshold, head.nu.weight[0] if sas else None, head.nu.bias if sas else None, head.tau0,
            **({"rows": ids} if in_place else {}))
        return flag, step
    if in_place:
        h_rows = at(h_rows, ids)
    gids = ids if nodes is None else at(nodes, ids)
    e, step, _ = model._sample(head.logits(h_rows), head.temperature(h_rows), "sample", threshold, None,
                               (model.sample_seed, l, head_id, gids))
    return e > 0.5, step


def judge(model: EarlyExitLinkPredictor, ops: ModuleType, l: int, h_rows: torch.Tensor, rows: torch.Tensor,
          decide_fn: Callable, ready: Optional[torch.Tensor] = None, rowptr: Optional[torch.Tensor] = None,
          col: Optional[torch.Tensor] = None, deg: Optional[torch.Tensor] = None, in_place: bool = False):
    """(exit flag, step) of ``rows`` (states ``h_rows``; with ``in_place``, ``h_rows[rows]``, as in
    :func:`decide`) at layer ``l``, through ``decide_fn`` (:func:`decide`'s arguments from the head
    on). Node exit: the layer's head. Subgraph exit: the
    hard head on each row's state and the fraction of its neighbours ready (``ready`` over the CSR
    ``rowptr, col`` of whole-graph degrees ``deg``), and only a row itself ready may exit, as the
    reference forward."""
    if model.config.exit != "subgraph":
        return decide_fn(model.head(l), h_rows, l, 0, rows, in_place)
    if in_place:
        h_rows = at(h_rows, rows)
    ones = torch.ones(col.numel(), device=col.device)
    nsum = ops.aggregate_rows(rowptr, col, ones, ready[:, None].contiguous(), rows)[:, 0]
    d = at(deg, rows).to(torch.float32)
    r = torch.where(d > 0, nsum / d.clamp(min=1), torch.ones_like(nsum))
    flag, step = decide_fn(model.hard_head(l), torch.cat([h_rows, r[:, None]], 1), l, 1, rows)
    return flag & (at(ready, rows) > 0), step


def layer_update(model: EarlyExitLinkPredictor, ops: ModuleType, l: int, h: torch.Tensor, upd: torch.Tensor,
                 step: Optional[torch.Tensor], rowptr: torch.Tensor, col: torch.Tensor, weight: torch.Tensor,
                 cache: Optional[torch.Tensor], self_weight: Optional[torch.Tensor],
                 buffer: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """New states ``[k, m]`` of the ``k`` rows ``upd`` at layer ``l``: their aggregate over the
    CSR ``rowptr, col, weight`` of ``h`` (plus ``cache``, the frozen neighbours' sums), then
    the model's transform (:meth:`~EarlyExitLinkPredictor.transform`; for gcn and resgcn both in the
    backend's ``aggregate_linear_act`` where it has one and ``NATIVE_LINEAR`` holds).

    The result is written into ``buffer(k)`` (a reused ``[k, m]`` scratch), on a CPU in chunks
    of rows, so a layer holds ``h``, the scratch and chunk-sized temporaries rather than four
    ``[N, m]`` tensors (aggregate, linear, activation, output): on the 1M-node graph that is the
    difference between 2 and 4 GB, and fresh ``[N, m]`` tensors pay their page faults.
    """
    c = model.config
    first = c.backbone == "gcn" and l == 0  # the aggregate of X W_0 (or of X): no residual
    raw = first and h.shape[1] != c.hidden  # h is X itself (inputs.aggregates_input: F < m)
    gelu = l < c.layers - 1  # the last layer has no activation
    # The aggregation, Linear and GELU in one op (gcn; resgcn then adds its residual)
    fused = getattr(ops, "aggregate_linear_act", None) if NATIVE_LINEAR and c.backbone in ("gcn", "resgcn") \
        else None

    def rows_update(rows: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if fused is not None and (raw or not first):  # act((Â h) W + b), Â h never written out
            w = model.input_weights()[0] if raw else model.convs[l].weight
            res = fused(rowptr, col, weight, h, rows, self_weight, cache, w, model.convs[l].bias, gelu, out)
            return res if raw or c.backbone == "gcn" else res.add_(at(h, rows))  # resgcn: the residual
        agg = ops.aggregate_rows(rowptr, col, weight, h, rows, self_weight, cache)
        if raw:  # (Â X) W_0 + b
            w, _ = model.input_weights()
            return model.transform(0, linear_into(agg, w, model.convs[0].bias, out), None, None, out)
        if first:  # Â (X W_0) + b, the bias added straight into out (then no copy at L = 1)
            return model.transform(0, torch.add(agg, model.convs[0].bias, out=out), None, None, out)
        h_rows = None if c.backbone == "gcn" else at(h, rows)  # gcn has no residual
        return model.transform(l, agg, h_rows, None if step is None else at(step, rows), out)

    k = upd.numel()
    out = buffer(k)
    chunk = max(ROW_CHUNK_BYTES // (4 * c.hidden), 1) if h.device.type == "cpu" else max(k, 1)
    for s in range(0, k, chunk):
        rows_update(upd[s:s + chunk], out[s:s + chunk])
    return out


class _Run:
    """State of one engine pass over a (possibly compacted) graph."""

    def __init__(self, model: EarlyExitLinkPredictor, graph: Graph, ends: torch.Tensor,
                 threshold: float, ops: ModuleType, stats: EngineStats, count_flops: bool, plan: Plan):
        """``ends``: the pairs' endpoints, sorted unique global node ids. The layer loop depends on
        the pairs only through this set: an endpoint not yet exited keeps every pair it is in open,
        so the endpoints still needed are exactly those not exited. ``plan.path == "dense"``: every
        row at every layer (no walk, no compaction, no cache), exited states kept by a mask."""
        self.plan = plan
        self.dense = dense = plan.path == "dense"
        self.model, self.ops, self.stats, self.threshold = model, ops, stats, threshold
        self.count_flops = count_flops
        c = self.c = model.config
        self.L, self.m = c.layers, c.hidden
        self.exits = c.exit != "none"
        self.freeze = self.exits and c.semantics == "freeze"
        self.dev = graph.rowptr.device
        # Scope: everything within L hops of an endpoint; compact when that is a small part. When
        # gcn's first layer aggregates the raw input (inputs.aggregates_input), it reads the whole
        # graph's CSR and features, and the scope stops at L - 1 hops: no state of the rows L hops
        # out is ever formed (on large graphs the outermost ring is most of the L-hop field).
        self.raw = aggregates_input(model, graph)
        # The raw input, made contiguous once for the probe and the first layer (a copy only when
        # the graph's features are a strided view).
        self.x = graph.x.contiguous() if self.raw else None
        hops = self.L - 1 if self.raw else self.L
        self.graph, self.nodes = graph, None  # global ids until compacted
        self.scratch = Scratch(self.m, self.dev)
        # That first layer needs no scope either: the probe before it (see _probe) runs first, and
        # the endpoints it sees exit bring none of their neighbourhoods into the scope. Probed
        # after compaction, the layer would update part of a larger scope and scatter its rows
        # back (on 100 pairs of the 20k-node graph: 5,593 of 11,263 rows).
        self.probed_first = PROBE_BEFORE_COMPACT and self.raw and self._probe_pays(0, ends.numel(), int(reach(
            ends.numel(), graph.col.numel(), graph.num_nodes, hops)), ends)
        exiting = self._probe_flags(0, self.x, None, ends) if self.probed_first else None
        n_out = host(exiting.sum())[0] if self.probed_first else 0
        scope = self.scope = compact(graph, ends, hops, model.self_loops, walk=not dense, ops=ops,
                                     exiting=exiting if n_out else None)
        self.rowptr, self.col, self.weight, self.nodes = scope.rowptr, scope.col, scope.weight, scope.nodes
        self.ends, self.dist, self.deg, self.self_weight = scope.ends, scope.dist, scope.deg, scope.self_weight
        self.n = self.rowptr.numel() - 1
        stats.scope_nodes = self.n
        # Those endpoints exit at layer 1 whatever its decision there says (see _probe).
        self.forced = torch.zeros(self.n, dtype=torch.bool, device=self.dev).scatter_(
            0, self.ends[exiting], True) if n_out else None
        self.n_out = n_out
        # The aggregation CSR shrinks under freeze; readiness always needs all neighbours.
        self.cache = FrozenCache(self.rowptr, self.col, self.weight, self.m)
        self.csr_deg = self.cache.deg  # entries per row of the scope CSR, for the FLOP counts
        self.all_rows: Optional[torch.Tensor] = None

    # -------------------------------------------------------------- pieces
    def _rows(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.nonzero().squeeze(1)

    def _every_row(self) -> torch.Tensor:
        """``arange(n)``, built once."""
        if self.all_rows is None:
            self.all_rows = torch.arange(self.n, device=self.dev)
        return self.all_rows

    def _decide(self, head, h_rows: torch.Tensor, l: int, head_id: int, ids: torch.Tensor, in_place: bool = False):
        return decide(self.model, self.ops, self.stats, self.threshold, head, h_rows, l, head_id, ids, self.nodes,
                      in_place)

    def _update(self, l: int, h: torch.Tensor, upd: torch.Tensor, step: Optional[torch.Tensor]) -> torch.Tensor:
        """New states of rows ``upd`` at layer ``l`` (:func:`layer_update`, gcn's first layer over
        the full scope CSR, or with a raw input over the whole graph's, the others over the
        frozen-neighbour cache's)."""
        first = self.c.backbone == "gcn" and l == 0
        if first and self.raw:  # h is the graph's X: global rows, the normalisation compact uses
            g, loops = self.graph, self.model.self_loops
            rows = upd if self.nodes is None else at(self.nodes, upd)
            return layer_update(self.model, self.ops, l, h, rows, step, g.rowptr, g.col, g.edge_weight(loops), None,
                                g.self_loop_weight() if loops else None, self.scratch)
        csr = (self.rowptr, self.col, self.weight, None) if first else \
            (self.cache.rowptr, self.cache.col, self.cache.weight, self.cache.sums)
        return layer_update(self.model, self.ops, l, h, upd, step, *csr, self.self_weight, self.scratch)

    def _macs(self, l: int, h: torch.Tensor, upd: torch.Tensor) -> int:
        """MACs of the transform of rows ``upd`` at layer ``l`` (gcn's first transform is the input
        layer's, counted by :func:`.inputs.input_states`, unless it follows the raw aggregation)."""
        if not (self.c.backbone == "gcn" and l == 0):
            return upd.numel() * layer_k(self.model) * self.m * self.m
        return upd.numel() * h.shape[1] * self.m if self.raw else 0

    def _probe_pays(self, l: int, n_open: int, rows: int, like: torch.Tensor) -> bool:
        """Whether to probe before layer ``l`` (see :meth:`_probe`) with ``n_open`` endpoints open
        and ``rows`` rows to update (on the index path of tensor ``like``): where it applies, as
        the plan says (:meth:`.plan.Plan.probe`)."""
        c, model = self.c, self.model
        applies = (not self.dense and self.freeze and c.exit == "node" and self.L - l - 1 >= 1
                   and l + 1 >= model.first_exit and n_open < rows
                   and (model.eval_mode == "sample" or self.threshold < 1.0))  # 1.0: no exit (contract)
        return applies and self.plan.probe(l, n_open, rows, sync_free(like))

    def _probe_flags(self, l: int, h: torch.Tensor, step: Optional[torch.Tensor], open_ends: torch.Tensor
                     ) -> torch.Tensor:
        """The probe's decisions (:meth:`_probe`): which of ``open_ends`` exit at layer ``l + 1``,
        from their states after layer ``l`` (computed here, for them alone, in the scratch)."""
        states = self._update(l, h, open_ends, step)
        return judge(self.model, self.ops, l + 1, states, open_ends, self._decide)[0]

    def _probe(self, l: int, h: torch.Tensor, step: Optional[torch.Tensor], open_ends: torch.Tensor,
               exited: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Decide the exits of layer ``l + 1`` for the open endpoints before layer ``l`` updates
        its rows: their states after layer ``l`` (computed here, for them alone) go through the
        head of layer ``l + 1``. An endpoint that exits there needs no state of its neighbourhood
        beyond its own, so layer ``l`` updates only the rows within ``L - l - 1`` hops of the
        endpoints that stay (walked through rows that have not exited and do not exit now) and the
        exiting endpoints themselves. On 100 random pairs of a 20k-node graph (node exit, L = 3,
        threshold 0.5, the benchmarks' model), where 1,715 of the rows judged exit at layer 1, the
        first layer otherwise updates the whole 2-hop field of every endpoint, 11,263 rows.

        Node exit under ``freeze`` only (a ``readout`` node keeps updating after its exit, and a
        subgraph exit reads its neighbours' readiness). Returns ``(dist, out)``, the hop distances
        for this layer's rows (0 at the exiting endpoints ``out``), or None when no endpoint exits.
        The layer loop then makes ``out`` exit at layer ``l + 1`` whatever its own decision there,
        on states computed in another batch, says: a near-tie may flip between the two (the engine
        contract allows either), but an endpoint whose neighbourhood was left out must not stay open.
        """
        flag = self._probe_flags(l, h, step, open_ends)
        (n_out,) = host(flag.sum())
        if n_out == 0:
            return None
        k = open_ends.numel()
        out = at(open_ends, nonzero(flag, n_out))
        stay = at(open_ends, nonzero(~flag, k - n_out))
        passable = (~exited).scatter_(0, out, False)
        dist = self.scope.walk(stay, self.L - l - 1, passable)
        return dist.scatter_(0, out, 0), out

    def _edges(self, l: int, upd: torch.Tensor) -> Union[int, torch.Tensor]:
        """Edges aggregated for rows ``upd`` at layer ``l``: an int when they are every row, else a
        device scalar (read with the others after the layer loop: one sync)."""
        first = self.c.backbone == "gcn" and l == 0
        if first and self.raw:  # the whole graph's CSR: a row's entries are its degree
            return self.graph.col.numel() if self.nodes is None and upd.numel() == self.n else at(self.deg, upd).sum()
        col, deg = (self.col, self.csr_deg) if first else (self.cache.col, self.cache.deg)
        return col.numel() if upd.numel() == self.n else at(deg, upd).sum()

    # -------------------------------------------------------------- the layer loop
    def run(self) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """The layer loop, until every endpoint has exited or the layers run out.

        Returns ``(z, rows, layer)``: the output states ``z [*, m]``, the row of ``z`` of each
        endpoint (``rows [E]``, in the order of ``ends``; None when ``z`` holds every node, each
        at its own id) and the exit layer of each row of ``z`` (``L``: never exited). Pairs are
        scored from these afterwards, in chunks (:mod:`.score`). Appends one
        ``st.pairs_resolved`` entry per layer that ran, filled in by the scoring.
        """
        model, c, ops, st = self.model, self.c, self.ops, self.stats
        L, m, n = self.L, self.m, self.n
        dev = self.dev
        exited = torch.zeros(n, dtype=torch.bool, device=dev)
        exit_layer = torch.full((n,), L, dtype=torch.int64, device=dev)
        ready = torch.zeros(n, device=dev) if c.exit == "subgraph" else None
        # Pairs read their endpoints' rows of h, except under readout: there exited nodes keep
        # updating, so their output states are copied into zsel, one row per endpoint. Under
        # freeze an exited state never changes and h itself is the output.
        readout = self.exits and not self.freeze
        if readout:
            zsel = torch.empty(self.ends.numel(), m, device=dev)
            end_pos = torch.full((n,), -1, dtype=torch.int64, device=dev)
            end_pos.scatter_(0, self.ends, torch.arange(self.ends.numel(), device=dev))
        open_ends = self.ends  # endpoints not yet exited (local ids, sorted); shrinks as they exit
        dist, radius = self.dist, self.scope.radius
        sources_at_bfs, n_exited, exited_at_rebuild = self.ends.numel() - self.n_out, 0, 0
        edge_counts: List[Union[int, torch.Tensor]] = []  # per layer that ran
        forced = self.forced  # rows the probe saw exit at this layer (_probe)
        # The engine under freeze on the CPU's index path: the exit bookkeeping below in one op.
        exit_update = getattr(ops, "exit_update", None) if (
            NATIVE_EXITS and self.freeze and not self.dense and not sync_free(exited)) else None
        # ... and the rows a layer judges and updates (live_rows below) in one op too.
        native_live = getattr(ops, "live_rows", None) if NATIVE_EXITS and not sync_free(exited) else None
        in_place = judges_in_place(ops) and c.exit == "node"  # a layer's rows judged where they are

        def live_rows(bound: int) -> torch.Tensor:
            """The rows a layer judges and updates: within ``bound`` hops of an open endpoint, less
            the exited ones under freeze. The host often knows them without a pass over ``dist``
            (on a GPU, without the sync of its nonzero): at the last layer they are the open
            endpoints, and within ``radius`` of the endpoints every row not exited."""
            if self.dense:
                return self._every_row()
            if bound == 0:
                return open_ends
            if radius is not None and radius <= bound and (n_exited == 0 or not self.freeze):
                return self._every_row()
            if native_live is not None:
                return native_live(dist, bound, exited if self.freeze else None)
            mask = dist <= bound
            if self.freeze:
                mask &= ~exited
            return self._rows(mask)

        raw = self.raw  # gcn's first layer as (Â X) W_0: h is the graph's X (never written) until then
        h = self.x if raw else input_states(model, self.graph, self.nodes, ops, st,
                                                                self.count_flops)
        widths = []  # features aggregated per entry, per layer that ran
        for l in range(L):
            bound = L - l - 1
            step = None
            decided = 0
            keep_exited = False  # rows of upd may have exited at this layer: keep their states
            upd = None  # rows to update at this layer, when the exit block already knows them
            st.pairs_resolved.append(0)
            if self.exits and l >= model.first_exit:
                if c.exit == "subgraph":
                    soft = (dist <= L - l) & (ready == 0)
                    if self.freeze:
                        soft &= ~exited
                    rows = self._rows(soft)
                    flag, _ = self._decide(model.head(l), self.scratch.take(h, rows), l, 0, rows)
                    ready.scatter_(0, rows[flag], 1.0)
                    decided += rows.numel()
                rows = live_rows(bound)
                flag, step_rows = judge(model, ops, l, h if in_place else self.scratch.take(h, rows), rows,
                                        self._decide, ready, self.rowptr, self.col, self.deg, in_place)
                if forced is not None and exit_update is None:
                    flag, forced = flag | at(forced, rows), None
                decided += rows.numel()
                if step_rows is not None:
                    step = torch.zeros(n, device=dev)
                    step.scatter_(0, rows, step_rows)
                # The rows judged are the rows this layer updates: under freeze less those exiting.
                if exit_update is not None:  # the two branches below, in one op
                    open_ends, stay = exit_update(rows, flag, forced, exited, exit_layer, open_ends, l)
                    forced, n_new, n_src = None, rows.numel() - stay.numel(), open_ends.numel()
                elif self.freeze and self.dense:  # every row judged: exited ones keep their layer
                    new_mask = flag & ~exited
                    exited |= new_mask
                    exit_layer.masked_fill_(new_mask, l)
                elif self.freeze:  # none of the rows has exited: mark by mask, count below
                    new_mask = flag
                    exited.scatter_(0, rows, flag)
                    exit_layer.scatter_(0, rows, torch.where(flag, l, L))
                else:
                    new_mask = flag & ~at(exited, rows)
                    new, upd = rows[new_mask], rows
                    pos = at(end_pos, new)
                    pos_ok = pos >= 0
                    zsel[pos[pos_ok]] = at(h, new[pos_ok])
                    exited.scatter_(0, new, True)
                    exit_layer.scatter_(0, new, l)
                if self.freeze and sync_free(exited) and (self.dense or bound == 0):
                    # No host read (a sync on a GPU): every layer runs, as in the reference
                    # forward, and the mask keeps the exited states. At the engine's last layer
                    # likewise: every endpoint open before this decision updates (live_rows), and
                    # those that exited now keep their states by the same mask (keep_exited).
                    n_exited, keep_exited = n, True
                else:
                    if exit_update is None:
                        still = ~at(exited, open_ends)
                        n_new, n_src = host(new_mask.sum(), still.sum())  # one transfer for both counts
                    n_exited += n_new
                    if n_src == 0:  # every endpoint exited, so every pair is resolved: stop here
                        st.nodes_decided.append(decided)
                        break
                    if exit_update is None:
                        open_ends = at(open_ends, nonzero(still, n_src))
                if not self.dense:  # the engine only: index lists, walks, cache (none on the dense path)
                    if bound == 0:  # the last layer updates the open endpoints only (live_rows)
                        upd = None
                    elif self.freeze:
                        upd = stay if exit_update is not None else at(rows, nonzero(~flag, rows.numel() - n_new))
                    # Lazy re-scoping: only when the set of endpoints still needed shrank enough, and
                    # the walk may leave rows out (else the current distances, from a superset of
                    # these sources, stay: a superset of the rows needed).
                    if bound > 0 and (n_src <= 0.5 * sources_at_bfs
                                      or (self.freeze and n_exited > 1.1 * exited_at_rebuild + 0.05 * n)) \
                            and walk_pays(n_src, bound, n, self.col.numel()):
                        dist, radius = self.scope.walk(open_ends, bound, ~exited if self.freeze else None), None
                        sources_at_bfs = n_src
                        upd = None
                    # The cache spares the aggregations of the layers after this one: none after the last.
                    if self.freeze and bound > 0 and n_exited > exited_at_rebuild + 0.25 * (n - exited_at_rebuild):
                        keep = (dist <= bound) & ~exited
                        if self.cache.pays(exited, keep, later_updates=bound):
                            self.cache.rebuild(h, exited, keep, ops)
                        exited_at_rebuild = n_exited
            st.nodes_decided.append(decided)
            if upd is None:
                upd = live_rows(bound)
            probed = []
            if l == 0 and self.probed_first:  # before compaction (__init__)
                probed = [open_ends]
            elif self._probe_pays(l, open_ends.numel(), upd.numel(), upd):
                probed = [open_ends]
                seen = self._probe(l, h, step, open_ends, exited)
                if seen is not None:  # fewer rows to update: those the endpoints that stay need
                    dist, out = seen
                    radius, sources_at_bfs = None, open_ends.numel() - out.numel()
                    forced = torch.zeros(n, dtype=torch.bool, device=dev).scatter_(0, out, True)
                    upd = live_rows(bound)
            st.nodes_probed.append(sum(int(p.numel()) for p in probed))
            if self.plan.dense_step(upd.numel(), n, masked=self.freeze and n_exited > 0):
                upd = self._every_row()  # the rows no one needs are computed, never read
            new_h = self._update(l, h, upd, step)
            st.flops_gnn += sum(self._macs(l, h, u) for u in [upd, *probed])
            st.nodes_updated.append(int(upd.numel()))
            if self.count_flops:
                edge_counts.append(sum(self._edges(l, u) + (u.numel() if self.self_weight is not None else 0)
                                       for u in [upd, *probed]))
                widths.append(h.shape[1])
            if upd.numel() == n:  # every row updated
                if self.freeze and n_exited:  # exited states stay, by the reference's mask, in
                    # place: a fresh [N, m] result pays its first-touch page faults (see Scratch)
                    torch.where(exited[:, None], h, new_h, out=new_h)
                self.scratch.swap(new_h, h)  # ping-pong: the old states become the scratch
                h = new_h
            elif raw and l == 0:  # (Â X) W_0 on part of the rows (a walked scope not compacted): the
                # rows left out lie beyond L - 1 hops of every endpoint and are never read, so they
                # stay unwritten (zeroing an [N, m] tensor is a pass and page faults for nothing)
                h = scatter_rows(ops, buffers.empty(n, m, dev), upd, new_h)
            else:
                if keep_exited:
                    new_h = torch.where(at(exited, upd)[:, None], at(h, upd), new_h)
                scatter_rows(ops, h, upd, new_h)
        else:  # the layers ran out with endpoints still open: their final states
            if readout:
                rest = self.ends[~exited[self.ends]]
                zsel[at(end_pos, rest)] = at(h, rest)
        if edge_counts:
            st.edges_aggregated += host(*edge_counts)
            st.flops_gnn += sum(e * w for e, w in zip(st.edges_aggregated[-len(edge_counts):], widths))
        if readout:
            return zsel, torch.arange(self.ends.numel(), device=dev), at(exit_layer, self.ends)
        return h, None if self.nodes is None else self.ends, exit_layer
