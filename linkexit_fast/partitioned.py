"""Graph-partitioned inference on ``torch.distributed``: for graphs that do not fit one machine.

The nodes are partitioned (:func:`partition`: METIS through ``pymetis`` when it is installed,
else contiguous id ranges of equal work), and each rank holds one :class:`Shard`: its nodes' CSR
rows and features, the full-graph degrees their normalisation needs, and a halo map (which of its
nodes each other rank reads, and which of theirs it reads). :func:`predict` runs the early-exit
layer loop with every rank updating only its own rows, and before each layer exchanges, with
``all_to_all``, only the states that a neighbour on another rank still needs:

* a node's state is sent only if the node was updated at the layer just run, that is, it lies in
  the active scope (within ``L - l - 1`` hops of an endpoint that has not exited, as in the
  single-process engine), and only to a rank holding a neighbour of it that the next layer
  updates;
* under ``freeze`` an exited node is never updated again: its state was sent once, the last time
  it changed, and the receiving rank keeps it in its halo rows, its frozen-neighbour cache.

So the exchange shrinks as endpoints exit (the scope shrinks) and as nodes freeze. The scope's hop
distances are walked across ranks too (an int32 per boundary node and hop), and subgraph exits
exchange their readiness flags (a byte per boundary node and layer); :class:`PartitionStats`
counts every byte sent, by kind and layer, beside what a full-graph system (every halo state,
every layer) would send.

The contract is the engine's (:mod:`linkexit_fast.engine`): scores within float32
summation-order noise of the single-process call, identical exit layers except at near-ties.
Every rank scores the pairs whose first endpoint it holds, fetching the second endpoint's output
state from its owner; every rank gets all scores back in input order.

Typical use, once per graph (on a machine that can hold it, or per rank from a partition file)::

    shards = build_shards(graph, partition(graph, world))
    for s in shards: s.save(f"shards/rank{s.rank}.pt")

then on every rank, under ``torchrun`` (``linkexit-fast predict --shards shards/ ...``)::

    scores = predict(Shard.load(f"shards/rank{rank}.pt"), pairs, model=model)
"""
from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

from .backends import check_backend_name, get_backend
from .distributed import _gather, check_same_pairs, rank, world_size
from .engine.api import PAIR_CHUNK, _eval_mode
from .engine.indexing import at, csr_gather
from .engine.run import Scratch, decide, judge, layer_update
from .engine.score import engine_scores
from .engine.stats import EngineStats
from .graph import Graph, degree_norm
from .models import EarlyExitLinkPredictor
from .validation import check_count, check_pairs, check_threshold

__all__ = ["partition", "build_shards", "Shard", "PartitionStats", "predict", "METHODS", "SHARD_FORMAT"]

METHODS = ("auto", "metis", "range")
SHARD_FORMAT = 1
UNREACHED = 1 << 30  # hop distance of a row out of reach (int32)


# ---------------------------------------------------------------------------- partitioning
def partition(graph: Graph, parts: int, method: str = "auto", seed: int = 0) -> torch.Tensor:
    """The part (rank) of every node, int64 ``[N]`` in ``[0, parts)``.

    Methods: ``"metis"``, METIS's k-way partition (Karypis and Kumar, 1998) through ``pymetis``
    (``pip install pymetis``), which keeps communities together and so the halo small; ``"range"``,
    contiguous ranges of node ids, each holding about ``1 / parts`` of the work (nodes plus CSR
    entries): good when ids already follow locality (a BFS or community order), poor on random ids;
    ``"auto"``, METIS when ``pymetis`` imports, else ranges with a warning saying so.

    Raises:
        ValueError: ``parts`` below 1 or above the node count, or an unknown method.
        ImportError: ``method="metis"`` without ``pymetis``.
    """
    parts = check_count(parts, "parts", minimum=1)
    if parts > graph.num_nodes:
        raise ValueError(f"parts={parts} exceeds the graph's {graph.num_nodes} nodes")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if parts == 1:
        return torch.zeros(graph.num_nodes, dtype=torch.int64)
    if method in ("auto", "metis"):
        try:
            import pymetis
        except ImportError:
            if method == "metis":
                raise ImportError("partition(method='metis') needs pymetis: pip install pymetis") from None
            warnings.warn("pymetis is not installed: partitioning by contiguous id ranges, whose halo is "
                          "large unless node ids follow locality (pip install pymetis)", stacklevel=2)
        else:
            opts = pymetis.Options(seed=seed)
            adjacency = pymetis.CSRAdjacency(graph.rowptr.cpu().numpy(), graph.col.cpu().numpy())
            _, membership = pymetis.part_graph(parts, adjacency, options=opts)
            out = torch.as_tensor(np.asarray(membership), dtype=torch.int64)
            if torch.bincount(out, minlength=parts).min() == 0:  # METIS may leave a part empty
                warnings.warn("METIS left a part empty: partitioning by id ranges instead", stacklevel=2)
            else:
                return out
    work = torch.cumsum(graph.deg.cpu() + 1, 0).to(torch.float64)  # work up to each node: rows + entries
    out = torch.div(work - 1, work[-1] / parts, rounding_mode="floor").to(torch.int64).clamp_(max=parts - 1)
    if torch.bincount(out, minlength=parts).min() == 0:  # a hub heavier than a share: equal node counts
        out = torch.arange(graph.num_nodes) * parts // graph.num_nodes
    return out


@dataclass
class Shard:
    """What one rank holds of a partitioned graph. Local rows: this rank's nodes ``0..n-1``, then
    its halo rows ``n..n+h-1`` (other ranks' nodes that its rows read).

    Attributes:
        rank, world, num_nodes: this shard's rank, the number of ranks, nodes of the whole graph.
        nodes: ``[n]`` int64 global ids of this rank's nodes, sorted.
        halo: ``[h]`` int64 global ids of the halo rows, grouped by owning rank, ascending ids.
        recv_counts: halo rows owned by each rank (``world`` ints; 0 for this rank).
        send_rows: ``[s]`` int64 rows (into ``nodes``) that other ranks read, grouped by reading
            rank, ascending ids: the reader's halo rows from this rank, in its order.
        send_counts: entries of ``send_rows`` per reading rank.
        rowptr, col: CSR of this rank's rows over local ids (``[n + 1]``, ``[nnz]`` int64), each
            row's entries in the order of the whole graph's CSR (so the sums are the same).
        deg: ``[n + h]`` int64 degrees in the whole graph of the local rows (the normalisation).
        entry_send: ``[nnz]`` int64: for an entry into a halo row owned by rank ``q``, the position
            in ``send_rows`` of (its row, ``q``); ``-1`` for an entry into this rank's own rows.
        owner: ``[N]`` int32 rank of every node, to route pairs.
        x: ``[n, F]`` float32 features of this rank's nodes, or None (featureless graph).
    """

    rank: int
    world: int
    num_nodes: int
    nodes: torch.Tensor
    halo: torch.Tensor
    recv_counts: List[int]
    send_rows: torch.Tensor
    send_counts: List[int]
    rowptr: torch.Tensor
    col: torch.Tensor
    deg: torch.Tensor
    entry_send: torch.Tensor
    owner: torch.Tensor
    x: Optional[torch.Tensor]

    def to(self, device) -> "Shard":
        move = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, **move)

    def save(self, path) -> None:
        """Write the shard as a ``.safetensors`` file (tensors, and the counts as header metadata):
        :meth:`load` reads it without unpickling anything."""
        from safetensors.torch import save_file
        tensors = {f.name: getattr(self, f.name).contiguous() for f in dataclasses.fields(self)
                   if isinstance(getattr(self, f.name), torch.Tensor)}
        meta = {"format": str(SHARD_FORMAT), "rank": str(self.rank), "world": str(self.world),
                "num_nodes": str(self.num_nodes), "recv_counts": json.dumps(self.recv_counts),
                "send_counts": json.dumps(self.send_counts)}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path) -> "Shard":
        """Read a shard written by :meth:`save` (safetensors: no code runs, nothing is unpickled).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: not a shard file of this format, or fields that do not fit together.
        """
        from safetensors import safe_open
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no shard file at {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise ValueError(f"{path} is not a shard file (safetensors): {e}") from None
        if meta.get("format") != str(SHARD_FORMAT):
            raise ValueError(f"{path} is not a shard file of format {SHARD_FORMAT} (format {meta.get('format')!r})")
        try:
            ints = {k: int(meta[k]) for k in ("rank", "world", "num_nodes")}
            lists = {k: json.loads(meta[k]) for k in ("recv_counts", "send_counts")}
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path}: malformed shard header ({e})") from None
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ints and f.name not in lists]
        missing = [k for k in names if k not in tensors and k != "x"]
        if missing:
            raise ValueError(f"{path} lacks the shard tensors {missing}")
        shard = cls(**ints, **lists, **{k: tensors.get(k) for k in names})
        shard.check(str(path))
        return shard

    def check(self, where: str = "shard") -> None:
        """Raise ValueError unless the fields fit together (sizes, ranges, dtypes)."""
        def need(ok, what):
            if not ok:
                raise ValueError(f"{where}: {what}")
        ints = (self.rank, self.world, self.num_nodes)
        need(all(isinstance(v, int) for v in ints) and 0 <= self.rank < self.world and self.num_nodes >= 1,
             f"rank {self.rank}, world {self.world}, num_nodes {self.num_nodes} are not a valid rank of a world")
        for name in ("nodes", "halo", "send_rows", "rowptr", "col", "deg", "entry_send"):
            t = getattr(self, name)
            need(isinstance(t, torch.Tensor) and t.dtype == torch.int64 and t.dim() == 1, f"{name} must be 1-D int64")
        n, h = self.nodes.numel(), self.halo.numel()
        for name in ("recv_counts", "send_counts"):
            v = getattr(self, name)
            need(isinstance(v, list) and len(v) == self.world and all(isinstance(c, int) and c >= 0 for c in v),
                 f"{name} must be {self.world} counts")
        need(sum(self.recv_counts) == h and sum(self.send_counts) == self.send_rows.numel(),
             "the halo counts do not add up to the halo and send lists")
        need(self.rowptr.numel() == n + 1 and int(self.rowptr[0]) == 0 and int(self.rowptr[-1]) == self.col.numel()
             and bool((self.rowptr.diff() >= 0).all()), "rowptr is not a CSR row pointer over the shard's nodes")
        need(self.entry_send.numel() == self.col.numel() and self.deg.numel() == n + h, "entry_send or deg has the wrong size")
        need(self.col.numel() == 0 or (int(self.col.min()) >= 0 and int(self.col.max()) < n + h),
             "col holds ids outside the local rows")
        need(self.send_rows.numel() == 0 or (int(self.send_rows.min()) >= 0 and int(self.send_rows.max()) < n),
             "send_rows holds rows outside the shard's nodes")
        need(self.entry_send.numel() == 0 or (int(self.entry_send.min()) >= -1
                                              and int(self.entry_send.max()) < self.send_rows.numel()),
             "entry_send points outside send_rows")
        for name in ("nodes", "halo"):
            t = getattr(self, name)
            need(t.numel() == 0 or (int(t.min()) >= 0 and int(t.max()) < self.num_nodes), f"{name} holds ids outside the graph")
        need(isinstance(self.owner, torch.Tensor) and self.owner.shape == (self.num_nodes,)
             and self.owner.dtype == torch.int32, "owner must be [num_nodes] int32")
        need(self.x is None or (isinstance(self.x, torch.Tensor) and self.x.dim() == 2 and self.x.shape[0] == n
                                and self.x.dtype == torch.float32), "x must be None or [nodes, F] float32")


def build_shards(graph: Graph, parts: torch.Tensor) -> List[Shard]:
    """One :class:`Shard` per part of ``parts`` (``[N]`` ints, e.g. from :func:`partition`).

    Raises:
        ValueError: ``parts`` not ``[N]`` integers in ``[0, world)`` with every part non-empty.
    """
    parts = torch.as_tensor(parts)
    n_glob = graph.num_nodes
    if parts.shape != (n_glob,) or parts.dtype.is_floating_point or parts.dtype == torch.bool:
        raise ValueError(f"parts must be [{n_glob}] integers, got {tuple(parts.shape)} {parts.dtype}")
    owner = parts.to(torch.int64).cpu()
    if owner.min() < 0:
        raise ValueError(f"parts holds a negative part {int(owner.min())}")
    world = int(owner.max()) + 1
    sizes = torch.bincount(owner, minlength=world)
    if (sizes == 0).any():
        raise ValueError(f"parts {(sizes == 0).nonzero().squeeze(1).tolist()} of {world} hold no node")
    rowptr, col, deg = graph.rowptr.cpu(), graph.col.cpu(), graph.deg.cpu()
    shards = []
    for r in range(world):
        nodes = (owner == r).nonzero().squeeze(1)
        pos, seg = csr_gather(rowptr, nodes)
        cols = at(col, pos)
        col_owner = at(owner, cols)
        remote = col_owner != r
        # halo: the remote columns, by (owner, id); their local ids follow the shard's own rows
        halo_keys, halo_of = torch.unique(col_owner[remote] * n_glob + cols[remote], return_inverse=True)
        halo = halo_keys % n_glob
        local = torch.searchsorted(nodes, cols)
        local[remote] = nodes.numel() + halo_of
        # send list: (reader, own node) of every remote entry, by reader then id
        send_keys, send_of = torch.unique(col_owner[remote] * n_glob + at(nodes, seg[remote]), return_inverse=True)
        entry_send = torch.full_like(cols, -1)
        entry_send[remote] = send_of
        shard_rowptr = torch.zeros(nodes.numel() + 1, dtype=torch.int64)
        torch.cumsum(at(deg, nodes), 0, out=shard_rowptr[1:])
        shards.append(Shard(
            rank=r, world=world, num_nodes=n_glob, nodes=nodes, halo=halo,
            recv_counts=torch.bincount(halo_keys // n_glob, minlength=world).tolist(),
            send_rows=torch.searchsorted(nodes, send_keys % n_glob),
            send_counts=torch.bincount(send_keys // n_glob, minlength=world).tolist(),
            rowptr=shard_rowptr, col=local, deg=torch.cat([at(deg, nodes), at(deg, halo)]),
            entry_send=entry_send, owner=owner.to(torch.int32),
            x=None if graph.x is None else at(graph.x.cpu(), nodes).contiguous()))
    return shards


# ---------------------------------------------------------------------------- what a call sent
_SUMMED = ("state_bytes", "control_bytes", "full_graph_bytes", "rows_sent", "frozen_rows", "nodes_updated")

@dataclass
class PartitionStats:
    """Bytes one :func:`predict` call sent between ranks, summed over the ranks (every rank gets
    the same totals), by the layer whose input they are.

    ``state_bytes[l]``: node states (float32 rows of width ``m``) exchanged for layer ``l``'s
    aggregation; ``control_bytes[l]``: what routed and scoped them (hop distances, readiness flags,
    counts, row positions); ``full_graph_bytes[l]``: the states a full-graph system would send for
    layer ``l`` (every halo row); ``frozen_rows[l]``: halo rows a neighbour needed for layer ``l``
    that were not sent because the node had frozen (its state already at the reader), against
    ``rows_sent[l]`` sent; ``output_bytes``: the endpoints' output states and the scores, for the
    scoring. ``nodes_updated[l]``: rows updated at layer ``l`` over all ranks; ``exchanges[l]``: the
    collectives (all-to-all or all-reduce) of each rank for layer ``l``, which pay the network's
    latency (a full-graph system needs one per layer). ``exchange_s``: seconds spent in the
    collectives (waiting for the slowest rank included), summed over the ranks. ``endpoints`` /
    ``exit_layer``: this rank's endpoints (global ids) and their exit layers (``L``: never exited).
    """

    world: int
    threshold: float
    state_bytes: List[int] = field(default_factory=list)
    control_bytes: List[int] = field(default_factory=list)
    full_graph_bytes: List[int] = field(default_factory=list)
    rows_sent: List[int] = field(default_factory=list)
    frozen_rows: List[int] = field(default_factory=list)
    nodes_updated: List[int] = field(default_factory=list)
    exchanges: List[int] = field(default_factory=list)
    output_bytes: int = 0
    exchange_s: float = 0.0
    endpoints: Optional[torch.Tensor] = None
    exit_layer: Optional[torch.Tensor] = None

    def _grow(self, l: int) -> None:
        for name in _SUMMED + ("exchanges",):
            v = getattr(self, name)
            v.extend([0] * (l + 1 - len(v)))

    def add(self, name: str, l: int, value: int) -> None:
        self._grow(l)
        getattr(self, name)[l] += int(value)

    def total(self, device) -> None:
        """Sum the per-rank counts over the ranks (the layers that ran are the same on every rank)."""
        names = _SUMMED
        flat = torch.tensor([v for name in names for v in getattr(self, name)] + [self.output_bytes],
                            dtype=torch.int64, device=device)
        flat, k = _all_reduce(flat).tolist(), len(self.state_bytes)
        for i, name in enumerate(names):
            setattr(self, name, flat[i * k:(i + 1) * k])
        self.output_bytes = flat[-1]
        self.exchange_s = float(_all_reduce(torch.tensor([self.exchange_s], dtype=torch.float64, device=device)))


def _all_to_all(values: torch.Tensor, send: List[int], recv: List[int], stats: "PartitionStats") -> torch.Tensor:
    """``values`` cut along dim 0 into ``send[q]`` rows for rank ``q``; returns the ``recv[q]`` rows
    from each rank ``q``, concatenated in rank order. Its wall time goes to ``stats.exchange_s``."""
    if not dist.is_initialized():  # one rank, no process group: it keeps what it sends itself
        return values.clone()
    t0 = time.perf_counter()
    out = values.new_empty((sum(recv), *values.shape[1:]))
    dist.all_to_all_single(out, values.contiguous(), recv, send)
    stats.exchange_s += time.perf_counter() - t0
    return out


def _all_reduce(t: torch.Tensor, stats: Optional["PartitionStats"] = None) -> torch.Tensor:
    if dist.is_initialized():
        t0 = time.perf_counter()
        dist.all_reduce(t)
        if stats is not None:
            stats.exchange_s += time.perf_counter() - t0
    return t


class _Halo:
    """The exchanges of one rank with the others, each one ``all_to_all_single``, counted."""

    def __init__(self, shard: Shard, m: int, stats: PartitionStats, device: torch.device):
        self.shard, self.m, self.stats, self.dev = shard, m, stats, device
        self.world, self.n, self.h = shard.world, shard.nodes.numel(), shard.halo.numel()
        self.send_peer = torch.repeat_interleave(torch.arange(self.world, device=device),
                                                 torch.tensor(shard.send_counts, device=device))
        self.send_start = torch.tensor([0] + shard.send_counts, device=device).cumsum(0)[:-1]
        self.recv_start = torch.tensor([0] + shard.recv_counts, device=device).cumsum(0)[:-1]

    def boundary(self, values: torch.Tensor, l: int) -> torch.Tensor:
        """``values`` (``[n]`` per own row) of every halo row, from its owner: ``[h]``."""
        buf = at(values, self.shard.send_rows)
        self.stats.add("control_bytes", l, buf.numel() * buf.element_size())
        self.stats.add("exchanges", l, 1)
        return _all_to_all(buf, self.shard.send_counts, self.shard.recv_counts, self.stats)

    def states(self, h: torch.Tensor, need: torch.Tensor, l: int) -> None:
        """Send the states of the send-list entries ``need`` (bool ``[s]``) into the readers'
        halo rows of ``h`` (``[n + h, m]``), for layer ``l``."""
        sel = need.nonzero().squeeze(1)
        peer = at(self.send_peer, sel)
        counts = torch.bincount(peer, minlength=self.world)
        recv = _all_to_all(counts, [1] * self.world, [1] * self.world, self.stats).tolist()
        send = counts.tolist()
        pos = _all_to_all((sel - at(self.send_start, peer)).to(torch.int32), send, recv, self.stats)
        rows = at(h, at(self.shard.send_rows, sel))
        got = _all_to_all(rows, send, recv, self.stats)
        src = torch.repeat_interleave(torch.arange(self.world, device=self.dev), torch.tensor(recv, device=self.dev))
        h.index_copy_(0, self.n + at(self.recv_start, src) + pos.to(torch.int64), got)
        st = self.stats
        st.add("state_bytes", l, rows.numel() * 4)
        st.add("control_bytes", l, 8 * self.world + 4 * sel.numel())
        st.add("rows_sent", l, sel.numel())
        st.add("exchanges", l, 3)


# ---------------------------------------------------------------------------- the layer loop
class _Run:
    """One rank's part of the layer loop over its shard (see the module docstring)."""

    def __init__(self, shard: Shard, model: EarlyExitLinkPredictor, threshold: float, ops, stats: PartitionStats):
        self.s, self.model, self.threshold, self.ops, self.stats = shard, model, threshold, ops, stats
        c = self.c = model.config
        self.L, self.m = c.layers, c.hidden
        self.dev = shard.rowptr.device
        self.n, self.h_rows = shard.nodes.numel(), shard.halo.numel()
        self.halo = _Halo(shard, self.m, stats, self.dev)
        dinv = degree_norm(shard.deg, model.self_loops)
        row = torch.repeat_interleave(torch.arange(self.n, device=self.dev), shard.rowptr.diff())
        self.row = row
        self.weight = at(dinv, row) * at(dinv, shard.col)  # as Graph.edge_weight: same products
        self.self_weight = (dinv * dinv)[:self.n] if model.self_loops else None
        self.remote = shard.entry_send >= 0
        self.remote_send, self.remote_row, self.remote_col = (
            shard.entry_send[self.remote], row[self.remote], shard.col[self.remote])
        self.all_nodes = torch.cat([shard.nodes, shard.halo])
        self.scratch = Scratch(self.m, self.dev)
        self.engine_stats = EngineStats(backend=ops.__name__.rsplit(".", 1)[-1], threshold=threshold)

    def walk(self, sources: torch.Tensor, hops: int, passable: Optional[torch.Tensor], l: int) -> torch.Tensor:
        """Hop distances (int32 ``[n + h]``) from own rows ``sources``, over every rank, walking
        through ``passable`` rows only (bool ``[n]``; None: all). Halo rows hold their owner's
        distance, ``UNREACHED`` for an impassable one (it neither relays nor is updated)."""
        n = self.n
        d = torch.full((n + self.h_rows,), UNREACHED, dtype=torch.int32, device=self.dev)
        d[sources] = 0
        for hop in range(hops + 1):
            own = d[:n] if passable is None else torch.where(passable, d[:n], UNREACHED)
            d[n:] = self.halo.boundary(own, l)
            if hop == hops:
                break
            src = torch.cat([own, d[n:]]) + 1
            reach = torch.full((n,), UNREACHED, dtype=torch.int32, device=self.dev)
            reach.scatter_reduce_(0, self.row, at(src, self.s.col), "amin")
            torch.minimum(d[:n], reach, out=d[:n])
        return d

    def send(self, h: torch.Tensor, d: torch.Tensor, updated: torch.Tensor, exited: Optional[torch.Tensor],
             l: int) -> None:
        """Send, for layer ``l``, the updated own rows that a halo neighbour updated at ``l`` reads
        (its distance at most ``L - l - 1``); count the frozen rows such a neighbour reads."""
        bound = self.L - l - 1
        reader = at(d, self.remote_col) <= bound
        s = self.s.send_rows.numel()
        need = torch.zeros(s, dtype=torch.bool, device=self.dev)
        need.scatter_(0, self.remote_send[reader & at(updated, self.remote_row)], True)
        if exited is not None:
            frozen = torch.zeros(s, dtype=torch.bool, device=self.dev)
            frozen.scatter_(0, self.remote_send[reader & at(exited, self.remote_row)], True)
            self.stats.add("frozen_rows", l, int(frozen.sum()))
        self.halo.states(h, need, l)

    def update(self, l: int, h: torch.Tensor, rows: torch.Tensor, step: Optional[torch.Tensor]) -> torch.Tensor:
        """New states of own rows ``rows`` at layer ``l``, as the engine's (in the scratch buffer)."""
        return layer_update(self.model, self.ops, l, h, rows, step, self.s.rowptr, self.s.col, self.weight, None,
                            self.self_weight, self.scratch)

    def decide(self, head, h_rows: torch.Tensor, l: int, head_id: int, rows: torch.Tensor, in_place: bool = False):
        if rows.numel() == 0:  # no own row to judge (the ops want at least one)
            step = torch.zeros(0, device=self.dev) if self.c.backbone == "sas" else None
            return torch.zeros(0, dtype=torch.bool, device=self.dev), step
        return decide(self.model, self.ops, self.engine_stats, self.threshold, head, h_rows, l, head_id, rows,
                      self.all_nodes, in_place)

    def run(self, ends: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The layer loop for own endpoint rows ``ends`` (sorted): their output states
        ``[E, m]`` and exit layers ``[E]``."""
        model, c, L, n, dev, st = self.model, self.c, self.L, self.n, self.dev, self.stats
        exits = c.exit != "none"
        freeze = exits and c.semantics == "freeze"
        exited = torch.zeros(n, dtype=torch.bool, device=dev)
        exit_layer = torch.full((n,), L, dtype=torch.int64, device=dev)
        ready = torch.zeros(n + self.h_rows, device=dev) if c.exit == "subgraph" else None
        z_out = torch.empty(ends.numel(), self.m, device=dev) if exits and not freeze else None
        end_pos = torch.full((n,), -1, dtype=torch.int64, device=dev)
        end_pos.scatter_(0, ends, torch.arange(ends.numel(), device=dev))
        for l in range(L):  # what a full-graph system sends: every halo row, for every layer
            st.add("full_graph_bytes", l, self.s.send_rows.numel() * self.m * 4)
        # H^0 = act(X W^T + b), written in place: h is [n + h, m], a fresh copy is a GB on 1M nodes
        h = torch.empty(n + self.h_rows, self.m, device=dev)
        h[n:].zero_()
        own = h[:n]
        w, b = model.input_weights()
        x = at(model.embedding.weight, self.s.nodes) if model.embedding is not None else self.s.x
        torch.mm(x, w.t(), out=own) if b is None else torch.addmm(b, x, w.t(), out=own)
        act = model.input_activation(own)
        if act is not own:
            own.copy_(act)
        open_ends = ends
        # layer 0 updates rows within L - 1 hops; subgraph exits judge readiness one hop further
        d = self.walk(ends, L if c.exit == "subgraph" else L - 1, None, 0)
        self.send(h, d, torch.ones(n, dtype=torch.bool, device=dev), None, 0)
        for l in range(L):
            bound = L - l - 1
            step = None
            if exits and l >= model.first_exit:
                if c.exit == "subgraph":
                    soft = (d[:n] <= bound + 1) & (ready[:n] == 0)
                    if freeze:
                        soft &= ~exited
                    rows = soft.nonzero().squeeze(1)
                    flag, _ = self.decide(model.head(l), self.scratch.take(h, rows, self.n), l, 0, rows)
                    ready.scatter_(0, rows[flag], 1.0)
                    ready[n:] = self.halo.boundary(ready[:n].to(torch.uint8), l).to(ready.dtype)
                live = d[:n] <= bound
                if freeze:
                    live &= ~exited
                rows = live.nonzero().squeeze(1)
                flag, step_rows = judge(model, self.ops, l, self.scratch.take(h, rows, self.n), rows, self.decide,
                                        ready, self.s.rowptr, self.s.col, self.s.deg)
                if step_rows is not None:
                    step = torch.zeros(n, device=dev).scatter_(0, rows, step_rows)
                new = rows[flag & ~at(exited, rows)]
                if z_out is not None:  # readout: an endpoint's output is its state when it exits
                    pos = at(end_pos, new)
                    z_out[pos[pos >= 0]] = at(h, new[pos >= 0])
                exited.scatter_(0, new, True)
                exit_layer.scatter_(0, new, l)
                open_ends = open_ends[~at(exited, open_ends)]
                still = _all_reduce(torch.tensor([open_ends.numel()], device=dev), st)
                st.add("control_bytes", l, 8 * (self.s.world - 1))
                st.add("exchanges", l, 1)
                if int(still) == 0:  # every endpoint on every rank exited: every pair is resolved
                    break
                if bound > 0:
                    d = self.walk(open_ends, bound, ~exited if freeze else None, l)
            upd = d[:n] <= bound
            if freeze:
                upd &= ~exited
            upd_rows = upd.nonzero().squeeze(1)
            st.add("nodes_updated", l, upd_rows.numel())
            new_h = self.update(l, h, upd_rows, step)
            if upd_rows.numel() == n:
                h[:n].copy_(new_h)
            else:
                h.index_copy_(0, upd_rows, new_h)
            if bound > 0:
                self.send(h, d, upd, exited if freeze else None, l + 1)
        z = at(h, ends)
        if z_out is not None:
            done = at(exited, ends)
            z = torch.where(done[:, None], z_out, z)
        return z, at(exit_layer, ends)


# ---------------------------------------------------------------------------- the entry point
def _score(shard: Shard, owner: torch.Tensor, model, ops, z_own: torch.Tensor, own_ends: torch.Tensor,
           pairs: torch.Tensor, batch_size: int, stats: PartitionStats) -> torch.Tensor:
    """Every pair scored on the rank of its first endpoint (``owner`` int64 ``[N]``), with the
    second endpoint's output state fetched from its owner; all scores back on every rank, in
    input order."""
    r, world, dev = shard.rank, shard.world, pairs.device
    first = at(owner, pairs[:, 0])
    order = torch.argsort(first, stable=True)
    bounds = [0] + torch.bincount(first, minlength=world).cumsum(0).tolist()
    mine = at(pairs, order[bounds[r]:bounds[r + 1]])
    far = mine[:, 1][at(owner, mine[:, 1]) != r]
    keys = torch.unique(at(owner, far) * shard.num_nodes + far)  # by owner, then id
    want, want_owner = keys % shard.num_nodes, keys // shard.num_nodes
    ask = torch.bincount(want_owner, minlength=world).tolist()
    asked = _all_to_all(torch.tensor(ask, device=dev), [1] * world, [1] * world, stats).tolist()
    ids = _all_to_all(want, ask, asked, stats)
    answer = at(z_own, torch.searchsorted(own_ends, ids))
    got = _all_to_all(answer, asked, ask, stats)
    stats.output_bytes += 8 * (world + want.numel()) + answer.numel() * 4
    gids = torch.cat([own_ends, want])
    sorted_ids, perm = torch.sort(gids)
    z = torch.cat([z_own, got])
    key = lambda part: at(perm, torch.searchsorted(sorted_ids, part))  # noqa: E731
    scores, _ = engine_scores(model, ops, z, key, mine, batch_size,
                              EngineStats(backend=ops.__name__, threshold=stats.threshold))
    stats.output_bytes += scores.numel() * 4 * (world - 1)
    if world == 1 or not pairs.shape[0]:
        return scores
    t0 = time.perf_counter()
    out = _gather(scores, pairs, order, bounds)
    stats.exchange_s += time.perf_counter() - t0
    return out


@torch.no_grad()
def predict(shard: Shard, pairs, threshold: float = 0.9, *, model: EarlyExitLinkPredictor,
            backend: str = "auto", batch_size: Optional[int] = None,
            stats: Optional[PartitionStats] = None) -> torch.Tensor:
    """Link probabilities ``[P]`` (float32) of ``pairs`` ``[P, 2]`` (global node ids, the same on
    every rank), in input order on every rank, on a graph partitioned into :class:`Shard` s, one
    per rank of the default process group (started by ``torchrun`` or
    :func:`linkexit_fast.distributed.launch`).

    Every rank calls it with its own shard and the same model, pairs and arguments. Scores and the
    endpoints' exit layers equal the single-process :func:`linkexit_fast.predict` on the whole
    graph under the engine contract. ``stats``, when given, receives the bytes exchanged (summed
    over the ranks) and this rank's endpoints' exit layers: see :class:`PartitionStats`.

    Args:
        shard: this rank's shard (:func:`build_shards`, :meth:`Shard.load`).
        threshold, model, backend, batch_size: as in :func:`linkexit_fast.predict`; the model
            must run in ``"threshold"`` or ``"sample"`` eval mode.

    Raises:
        TypeError / ValueError: a bad argument, or a shard of another rank or world, before any
            exchange; ValueError on every rank when the ranks hold different pairs.
        RuntimeError: ``backend`` cannot run here; a collective failed.
    """
    check_backend_name(backend)
    if backend == "reference":
        raise ValueError("partitioned predict runs on an engine backend ('auto', 'torch', 'cpu', 'triton'), "
                         "not 'reference'")
    if not isinstance(shard, Shard):
        raise TypeError(f"shard must be a Shard, got {type(shard).__name__}")
    if not isinstance(model, EarlyExitLinkPredictor):
        raise TypeError(f"model must be an EarlyExitLinkPredictor, got {type(model).__name__}")
    if shard.world != world_size() or shard.rank != rank():
        raise ValueError(f"this is rank {rank()} of {world_size()}, but the shard is rank {shard.rank} of "
                         f"{shard.world}: load shard {rank()} of a {world_size()}-way partition")
    if model.embedding is not None:
        if model.config.num_nodes != shard.num_nodes:
            raise ValueError(f"the model embeds {model.config.num_nodes} nodes, the graph has {shard.num_nodes}")
    else:
        if shard.x is None:
            raise ValueError("this model needs node features but the shard has none")
        if shard.x.shape[1] != model.config.in_channels:
            raise ValueError(f"the model expects {model.config.in_channels} input features, the shard has "
                             f"{shard.x.shape[1]}")
    threshold = check_threshold(threshold)
    batch_size = PAIR_CHUNK if batch_size is None else check_count(batch_size, "batch_size", minimum=1)
    pairs = check_pairs(pairs, shard.num_nodes)
    dev = shard.rowptr.device
    pairs = pairs.to(dev)
    ops = get_backend(backend, dev)
    if dist.is_initialized():
        check_same_pairs(pairs)
    stats = stats if stats is not None else PartitionStats(world=shard.world, threshold=threshold)
    stats.world, stats.threshold = shard.world, threshold
    with _eval_mode(model):
        owner = shard.owner.to(torch.int64)
        ends = torch.unique(pairs)
        own_ends = ends[at(owner, ends) == shard.rank]
        local = torch.searchsorted(shard.nodes, own_ends)
        z, layers = _Run(shard, model, threshold, ops, stats).run(local)
        stats.endpoints, stats.exit_layer = own_ends, layers
        scores = _score(shard, owner, model, ops, z, own_ends, pairs, batch_size, stats)
    stats.total(dev)
    return scores
