"""The execution planner: per call, the dense path or the engine, from a cost model measured here.

Two paths compute the same GNN stage (the engine contract holds for both, and the scores then go
through the same fused scorer):

* ``"dense"``: every node at every layer, exits as masks, no bookkeeping. What the reference
  forward computes, on the backend's ops: it pays when the scope covers the graph and few nodes exit.
* ``"engine"``: scope walk, compaction, updates of the rows still needed only, frozen-neighbour
  cache. It pays when the queries' L-hop field is a small part of the graph or many nodes exit,
  but each layer costs index passes, launches and host syncs that the dense path does not.

:func:`choose` predicts both from :class:`Costs` (seconds per unit of work, measured by
:func:`calibrate` on this device, this backend and this hidden width, then cached on disk) and from
what the call knows before it runs: N, the CSR's entries, the endpoints, L, m and the model's exit
profile, the share of endpoints still open at each layer, learnt from the model's earlier calls
on the same graph at the same threshold (:func:`record`; a first call assumes no exits), and takes
the engine where its estimate is :data:`ENGINE_MARGIN` (1 %) or more below the dense one. The
estimate, over the layers that run (both paths stop once every endpoint has exited):

    dense  = sum_l N * (row + m * select [freeze, once a node has exited]) + fixed_dense
    engine = sum_l R_l * (row + c * m * copy [R_l < N]) + fixed_engine + scans * N * scan + walk

with ``row`` the per-row update cost (``k m^2`` MACs of the transform, ``(d+1) m`` of the
aggregation, the exit head), ``c`` a live row's copies (:func:`copies`), ``fixed`` and ``scans``
each path's per-layer op launches, syncs and mask passes (:data:`OVERHEAD`), and ``R_l`` the rows
layer ``l`` updates: within ``L - l - 1`` hops of the endpoints still open (reach at the mean
degree, capped at N), times, under ``freeze``, the share still open (at the last layer: the
open endpoints themselves); a layer whose live rows are nearly all rows updates every row
instead (:meth:`Plan.dense_step`). Where the engine probes before layer ``l`` (:meth:`Plan.probe`),
``R_l`` counts the endpoints still open after layer ``l + 1``'s decisions instead, plus the
probe's rows and a walk. Redo the calibration with ``linkexit-fast calibrate`` (or :func:`calibrate` with
``force=True``) after a hardware or torch change; ``$LINKEXIT_CACHE`` moves the cache folder.
"""
from __future__ import annotations

import json
import os
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from ..graph import Graph
from ..models import EarlyExitLinkPredictor
from .indexing import scatter_rows, sync_free
from .stats import head_macs, layer_k

PATHS = ("auto", "dense", "engine")
# Per layer, outside the update itself: each path's torch ops, host syncs and O(N) mask passes,
# with the exit bookkeeping in the backend's native ops ("native": the CPU backend's exit_update and
# live_rows, on the CPU's index path) or in torch ops ("torch": the sync-free index path a GPU
# takes, and any backend without those ops). Ops and syncs counted with `python
# benchmarks/engine_op_count.py --threshold 1.0 --index-path {cpu,gpu}` (CPU backend; results in
# benchmarks/results/engine_op_count_{cpu,gpu}_t1.md), per layer as (CiteSeer's count, L = 8, less
# ogbl-ddi's, L = 3) / 5:
#   native (cpu): engine (54 - 26) / 5 ops and (2 - 2) / 5 syncs, dense (104 - 43) / 5 and (23 - 8) / 5;
#   torch (gpu):  engine (301 - 45) / 5 and (27 - 3) / 5, dense (69 - 33) / 5 and (2 - 2) / 5.
# The engine's mask passes: natively, live_rows' pass over the hop distances; in torch ops, live
# rows, exited, open endpoints and nonzero (6). Priced at torch's counts (40 ops and 2 syncs a
# layer when counted), the CPU's engine lost near-tie cells to the dense path: 5k nodes, all
# test pairs, 0.9, estimated 0.4 % apart, where the engine measured 6 % faster
# (planner_grid_93be9a5). The ops and syncs are the exit bookkeeping's: a model without exits
# runs the same ops on both paths (16 a call, 1 sync, on a 400-node graph at L = 3) and pays the
# mask passes only.
OVERHEAD = {  # bookkeeping -> path -> (ops, syncs, scans) per layer
    "native": {"engine": (6, 0, 1), "dense": (12, 3, 0)},
    "torch": {"engine": (51, 5, 6), "dense": (7, 0, 0)},
}
# The probe (engine.run._Run._probe: the open endpoints' exits at layer l + 1 decided before layer
# l updates its rows): taken where the open endpoints are at most PROBE_SHARE of the rows the layer
# would update (when none exits, its extra work is about that share of the layer) and, once the
# model's exit profile on the graph is known, only where at least PROBE_MIN_EXIT of them exit at
# layer l + 1. On the benchmarks' synthetic model (100 pairs, threshold 0.5) it took the 200k- and
# 1M-node graphs' calls from 31 to 15 and 59 to 30 ms; where no endpoint exits at layer 1
# (threshold 0.9) the unpaid probe cost 10k pairs on the 200k-node graph 14 %. PROBE None: these
# rules, on the CPU's index path only (on a GPU the probe's host read and launches were not
# measured); True / False forces it on / off wherever it applies (tests).
PROBE_SHARE = 1 / 8
PROBE_MIN_EXIT = 0.1
PROBE: Optional[bool] = None
# States [N, m] up to this size count as cache-resident for the aggregation's cost: its gathers
# ran about 7x faster per entry on ogbl-ddi (4,267 x 256 floats, 4.4 MB) than on a random 20k-node
# graph (20 MB) on the 2-core Xeon.
HOT_BYTES = 8 << 20
# The engine is chosen only where it is estimated at least this much cheaper than the dense path.
# 0.05 while the engine's bookkeeping was under-counted (ogbl-ddi at 0.9 and the 1M-node graph's
# full evaluation at 0.9 estimated within 1.2 %, the engine measured 8-9 % slower). With the
# bookkeeping counted per path (OVERHEAD), one copy a live row where heads read rows in place, and
# calibrations that keep the fastest of their timings, the estimates of the near-tie cells of the
# planner grid (5k, 20k and 200k nodes, 10k and all test pairs, thresholds 0.9 and 1.0; 15
# interleaved rounds, 5 at 200k) fell from 3.5 % below to 3.9 % above the measured engine/dense
# ratio (one 8.6 % above: the 200k-node graph without exits, where the engine measured 12 % faster),
# and 0.05 took the dense path where the engine measured 4-7 % faster. Within 1 % the estimates
# cannot tell the paths apart, and the dense path's time is the steadier: 10k pairs on the 5k-node
# graph at 0.9 (estimated 0.2 % apart; the engine updates 99 and 97 % of the rows at layers 1
# and 2, each with its copy) measured the engine 5 % faster alone and 6 and 24 % slower in two
# runs of planner_grid_b35f69c, with the reference's calls interleaved.
ENGINE_MARGIN = 0.01


@dataclass
class Costs:
    """Seconds per unit of work on one device, backend and hidden width ``m``, from :func:`calibrate`."""

    mac: float  # per multiply-accumulate of a row transform (F.linear, [rows, m] x [m, m])
    entry: float  # per aggregated CSR entry and feature (the backend's aggregate_rows), states out of cache
    entry_hot: float  # the same with the states in cache (HOT_BYTES or less)
    copy: float  # per row and feature of one copy: the mean of a gather (index_select) and a scatter back (scatter_rows)
    select: float  # per row and feature of a masked select (torch.where over [N, m])
    scan: float  # per node of a mask pass (compare, nonzero)
    op: float  # per op launch, fixed
    sync: float  # per host sync (device-to-host read), beyond the op
    key: str = ""


@dataclass
class Plan:
    """The path a call took and why; ``seconds`` holds each path's estimate (``{}`` when forced)."""

    path: str
    reason: str
    seconds: Dict[str, float] = field(default_factory=dict)
    # Seconds per row of a layer update, of a live row's copies (its scatter back, and its gather
    # for the exit heads where the backend cannot judge rows in place), of the mask that keeps
    # exited states: what dense_step weighs (zeros: never a dense step).
    row: float = 0.0
    copy: float = 0.0
    select: float = 0.0
    # An exit profile was known (so the call need not learn one): saves gnn_stage a second
    # profile lookup, whose parameter scan took 0.23 ms of a 20 ms call.
    profiled: bool = False
    # That profile: the share of endpoints still open after each layer's exit decisions.
    open_after: Optional[List[float]] = None

    def probe(self, l: int, open_ends: int, rows: int, on_device: bool = False) -> bool:
        """Whether the engine probes before layer ``l`` (where the probe applies: node exit under
        freeze, a head after the layer), with ``open_ends`` endpoints open and ``rows`` rows to
        update, on the GPU's index path if ``on_device``: see :data:`PROBE_SHARE`."""
        if PROBE is not None:
            return PROBE
        if on_device:
            return False
        after = self.open_after
        return open_ends <= PROBE_SHARE * rows and (after is None or after[l + 1] <= (1 - PROBE_MIN_EXIT) * after[l])

    def dense_step(self, live: int, n: int, masked: bool) -> bool:
        """Whether an engine layer with ``live`` of ``n`` rows to update is cheaper updating every
        row (what no open endpoint needs is computed and never read; with ``masked``, exited
        states are put back by a mask) than updating the live rows and copying them (see ``copy``).
        On the 200k-node synthetic graph's full evaluation at threshold 1.0, 99.97 % of the rows
        were live and their gathers and scatters made the engine 10-19 % slower than the dense path."""
        if self.row <= 0.0 or live >= n:
            return False
        return n * (self.row + (self.select if masked else 0.0)) < live * (self.row + self.copy)

    def __str__(self) -> str:
        est = ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in self.seconds.items())
        return f"{self.path} ({self.reason}{'; estimated ' + est if est else ''})"


def check_plan(plan: str) -> str:
    if plan not in PATHS:
        raise ValueError(f"plan must be one of {', '.join(map(repr, PATHS))}, got {plan!r}")
    return plan


# ----------------------------------------------------------------------------- calibration
_COSTS: Dict[str, Costs] = {}


def cache_file() -> Path:
    """Where calibrations are kept: ``$LINKEXIT_CACHE/planner_costs.json``, by default under
    ``~/.cache/linkexit_fast``."""
    root = os.environ.get("LINKEXIT_CACHE") or Path.home() / ".cache" / "linkexit_fast"
    return Path(root) / "planner_costs.json"


# Bumped when what calibrate measures changes, so that cached costs are measured again.
# 2: the scatter back priced with the backend's scatter_rows (the engine's), not index_copy_.
# 3: the fastest of 7 timed calls, not the median of 5; copy per copy, not per gather and scatter.
COSTS_VERSION = 3


def _key(ops: ModuleType, device: torch.device, m: int) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    return f"{name}|{ops.__name__.rsplit('.', 1)[-1]}|torch {torch.__version__}|m={m}|v{COSTS_VERSION}"


def _best_seconds(fn, device: torch.device, repeats: int = 7) -> float:
    """The fastest of ``repeats`` timed calls after a warm-up: what the work itself costs. On a
    shared machine interference only adds time: medians of 5 of the same CPU aggregation ranged
    over 8x between calibrations (1.1e-10 to 9e-10 s per entry, the 20k-node graph, 2-core EPYC),
    and the planner's near-tie choices followed that noise."""
    fn()  # warm-up: lazy builds, allocator
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times)


@torch.no_grad()
def calibrate(ops: ModuleType, device: torch.device, m: int, force: bool = False) -> Costs:
    """Measure :class:`Costs` for ``ops`` on ``device`` at hidden width ``m`` (a random graph of
    20k nodes on a CPU, 200k on a GPU, mean degree 8, and one whose states fill half of
    ``HOT_BYTES``, mean degree 64; about 0.1-0.5 s), or read them back from
    memory or from :func:`cache_file`. ``force`` measures again and overwrites the cached entry.
    A cache folder that cannot be written is skipped without an error."""
    key = _key(ops, device, m)
    if not force and key in _COSTS:
        return _COSTS[key]
    path = cache_file()
    stored = {}
    try:
        stored = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        stored = {}
    if not force and key in stored:
        try:
            _COSTS[key] = Costs(**stored[key])
            return _COSTS[key]
        except TypeError:  # written by another version: measured again below
            pass
    if device.type == "cpu" and ops.__name__.endswith("triton"):
        # Triton on a CPU is its interpreter (tests): minutes per kernel call, and timings that
        # mean nothing. The plan changes speed only, never results: price it with the torch ops.
        from ..backends import torch_ops as ops
    n, deg = (200_000 if device.type == "cuda" else 20_000), 8
    g = torch.Generator().manual_seed(0)

    def aggregation(n, deg):
        """Seconds per entry and feature of aggregate_rows over every row of a random CSR."""
        rowptr = (torch.arange(n + 1) * deg).to(device)
        col = torch.randint(0, n, (n * deg,), generator=g).to(device)
        weight = torch.rand(n * deg, generator=g).to(device)
        h, rows = torch.randn(n, m, generator=g).to(device), torch.arange(n, device=device)
        return _best_seconds(lambda: ops.aggregate_rows(rowptr, col, weight, h, rows), device) / (n * deg * m)
    h = torch.randn(n, m, generator=g).to(device)
    w = torch.randn(m, m, generator=g).to(device)
    half = torch.randperm(n, generator=g)[: n // 2].sort().values.to(device)
    mask = (torch.rand(n, generator=g) < 0.5).to(device)
    tiny = torch.ones(1, device=device)
    out = torch.empty(n // 2, m, device=device)

    def copy():  # a gather and a scatter back: two copies
        torch.index_select(h, 0, half, out=out)
        scatter_rows(ops, h, half, out)

    def ops_loop():
        for _ in range(100):
            tiny.add_(0)

    def syncs():
        for _ in range(20):
            tiny.add_(0).item()

    op = _best_seconds(ops_loop, device) / 100
    costs = Costs(
        mac=_best_seconds(lambda: F.linear(h, w), device) / (n * m * m),
        entry=aggregation(n, deg), entry_hot=aggregation(max(HOT_BYTES // (8 * m), 16), 64),
        copy=_best_seconds(copy, device) / (2 * half.numel() * m),
        select=_best_seconds(lambda: torch.where(mask[:, None], h, h), device) / (n * m),
        scan=_best_seconds(lambda: (mask & ~mask).nonzero(), device) / n,
        op=op, sync=max(_best_seconds(syncs, device) / 20 - op, 0.0), key=key)
    _COSTS[key] = costs
    stored[key] = asdict(costs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=1))
    except OSError:
        pass
    return costs


# ----------------------------------------------------------------------------- exit profiles
# model -> graph -> {threshold: (parameter version, [share of endpoints still open after each
# layer], {estimates made from it})}. Per graph: one model exits differently on different graphs (the synthetic model of
# the benchmarks at 0.9: no endpoint exits on the 5k-node graph, 32 % at layer 2 on the 20k-node
# one), and a profile learnt on one misled the planner on the other. Weak on both keys: a profile
# never keeps a model or a graph alive.
_PROFILES: "weakref.WeakKeyDictionary[EarlyExitLinkPredictor, weakref.WeakKeyDictionary]" = weakref.WeakKeyDictionary()
# Estimates kept with each profile, by (endpoints, backend, device): made again, one took about
# 30 us of a 3 ms call in place (100 pairs of the 5k-node graph: auto 51 us over the engine path
# per call, paired medians of 2,900 alternating calls, against 18 us with the estimate kept),
# about 1 % of such a call. At most this many per profile (then they are dropped and made again).
ESTIMATES_KEPT = 64


def _version(model: EarlyExitLinkPredictor) -> tuple:
    """Changes when any parameter is updated in place (an optimiser step) or replaced. Walks the
    modules' own dicts: ``model.parameters()`` (deduplicating, through generators) took twice as
    long, and this runs twice per ``auto`` call."""
    out, stack = [], [model]
    while stack:
        m = stack.pop()
        out.extend((p.data_ptr(), p._version) for p in m._parameters.values() if p is not None)
        stack.extend(c for c in m._modules.values() if c is not None)
    return tuple(out)


def record(model: EarlyExitLinkPredictor, graph: Graph, threshold: float, end_layers: torch.Tensor) -> None:
    """Learn the model's exit profile on ``graph`` at ``threshold`` from its endpoints' exit
    layers ``[E]`` (one call's; ``L`` = never exited): the share still open after each layer's
    decisions. One host read."""
    L = model.config.layers
    if end_layers.numel() == 0 or model.config.exit == "none":
        return
    counts = torch.bincount(end_layers, minlength=L + 1).tolist()
    total, left, open_after = sum(counts), sum(counts), []
    for c in counts[:L]:
        left -= c
        open_after.append(left / total)
    by_graph = _PROFILES.setdefault(model, weakref.WeakKeyDictionary())
    by_graph.setdefault(graph, {})[threshold] = (_version(model), open_after, {})


def _profile_entry(model: EarlyExitLinkPredictor, graph: Graph, threshold: float) -> Optional[tuple]:
    hit = _PROFILES.get(model, {}).get(graph, {}).get(threshold)
    return hit if hit is not None and hit[0] == _version(model) else None


def profile(model: EarlyExitLinkPredictor, graph: Graph, threshold: float) -> Optional[List[float]]:
    """The share of endpoints still open after each layer's exit decisions, learnt from earlier
    calls on ``graph`` (the same object) at ``threshold`` with the same weights (None: unknown)."""
    hit = _profile_entry(model, graph, threshold)
    return None if hit is None else hit[1]


# ----------------------------------------------------------------------------- the choice
def _row_cost(model: EarlyExitLinkPredictor, n: int, entries: int, costs: Costs) -> float:
    """Seconds of one row's layer update: its transform, exit head(s) and aggregation."""
    c = model.config
    m, k = c.hidden, layer_k(model)
    head = 0 if c.exit == "none" else head_macs(m, c.exit_hidden, c.backbone == "sas") * (
        2 if c.exit == "subgraph" else 1)
    entry = costs.entry_hot if n * m * 4 <= HOT_BYTES else costs.entry
    return (k * m * m + head) * costs.mac + (entries / max(n, 1) + model.self_loops) * m * entry


def reach(sources: float, entries: int, n: int, hops: int) -> float:
    """Rows within ``hops`` hops of ``sources`` rows, estimated at the mean degree (``entries / n``)
    and capped at ``n``."""
    return min(float(n), sources * (entries / max(n, 1) + 1) ** hops)


def judges_in_place(ops: ModuleType) -> bool:
    """Whether the backend's exit_decision takes ``rows`` and reads ``h[rows]`` in place (the CPU's,
    ``JUDGES_ROWS_IN_PLACE``): a layer then judges its rows without gathering them first. On 100
    pairs of the 5k-node graph those gathers (477 and 43 rows of 256, written by both threads) took
    174 and 50 us of a 5-8 ms call, timed inside it."""
    return getattr(ops, "JUDGES_ROWS_IN_PLACE", False)


def copies(model: EarlyExitLinkPredictor, ops: ModuleType) -> int:
    """Copies of each live row of an engine layer that updates part of the rows: its scatter back
    into the states, and its gather for the exit heads unless they read it in place."""
    return 1 if model.config.exit == "none" or (judges_in_place(ops) and model.config.exit == "node") else 2


def _steps(model: EarlyExitLinkPredictor, n: int, entries: int, costs: Costs, ops: Optional[ModuleType]) -> dict:
    """A Plan's per-row prices (``row``, ``copy``, ``select``) on this graph and backend."""
    m = model.config.hidden
    return dict(row=_row_cost(model, n, entries, costs), copy=copies(model, ops) * m * costs.copy,
                select=m * costs.select)


def estimate(model: EarlyExitLinkPredictor, n: int, entries: int, ends: int, costs: Costs,
             open_after: Optional[List[float]], ops: Optional[ModuleType] = None,
             device: torch.device = torch.device("cpu")) -> Dict[str, float]:
    """Estimated seconds of the GNN stage on each path (see the module docstring), from the share
    of endpoints still open after each layer's exit decisions (None: no exits assumed), for
    backend ``ops`` (None: the torch ops; it sets a live row's :func:`copies` and whether the exit
    bookkeeping is native, :data:`OVERHEAD`) on ``device``."""
    on_device = sync_free(device)
    bookkeeping = "native" if not on_device and hasattr(ops, "exit_update") else "torch"
    c = model.config
    L, m = c.layers, c.hidden
    d = entries / max(n, 1)
    exits = c.exit != "none"
    freeze = exits and c.semantics == "freeze"
    step = Plan("engine", "", **_steps(model, n, entries, costs, ops))
    row = step.row
    overhead = {path: exits * (k_ops * costs.op + syncs * costs.sync) + scans * n * costs.scan
                for path, (k_ops, syncs, scans) in OVERHEAD[bookkeeping].items()}
    after = open_after or [1.0] * L
    # Both paths stop once every endpoint has exited: layer l updates only if one is still open.
    ran = [l for l in range(L) if after[l] > 0]
    # The mask that keeps exited states runs only once a node has exited (freeze).
    dense = sum(n * row + overhead["dense"] + (n * m * costs.select if freeze and after[l] < 1.0 else 0.0)
                for l in ran)
    engine, walk_rows = 0.0, 0.0
    step.open_after = open_after  # no profile: no exits assumed, so no probe either
    for l in ran:
        hops = L - l - 1  # rows within this many hops of an open endpoint are still needed
        rows_in_reach = reach(ends * after[l], entries, n, hops)
        if (freeze and c.exit == "node" and hops >= 1 and l + 1 >= model.first_exit
                and open_after is not None and step.probe(l, int(ends * after[l]), int(rows_in_reach), on_device)):
            # the probe: its rows, then the reach of the endpoints that stay (and those that exit)
            engine += ends * after[l] * row + overhead["engine"]
            walk_rows += rows_in_reach
            rows_in_reach = min(float(n), reach(ends * after[l + 1], entries, n, hops) + ends * (after[l] - after[l + 1]))
        # Under freeze, exited rows are not updated: a share of the reach, as of the endpoints;
        # the last layer's rows (no hop) are the open endpoints themselves.
        rows = rows_in_reach * (after[l] if freeze and hops > 0 else 1.0)
        walk_rows += rows_in_reach if 0 < hops and rows_in_reach < n else 0.0  # none at the last layer
        masked = freeze and after[l] < 1.0
        if rows >= n:  # every row live: no gather, no scatter back
            update = n * (row + masked * step.select)
        elif step.dense_step(int(rows), n, masked):
            update = n * (row + masked * step.select)
        else:
            update = rows * (row + step.copy)
        engine += update + overhead["engine"]
    engine += walk_rows * d * costs.scan  # the scope walks visit the reached rows' entries
    return {"dense": dense, "engine": engine}


def choose(model: EarlyExitLinkPredictor, graph: Graph, ends: int, threshold: float,
           ops: ModuleType, device: torch.device, requested: str = "auto") -> Plan:
    """The plan of one call on ``graph`` with ``ends`` distinct endpoints. ``requested``
    ``"dense"`` / ``"engine"`` forces that path."""
    if requested == "dense":
        return Plan("dense", "requested")
    n, entries = graph.num_nodes, graph.col.numel()
    costs = calibrate(ops, device, model.config.hidden)
    steps = _steps(model, n, entries, costs, ops)
    entry = _profile_entry(model, graph, threshold) if model.config.exit != "none" else None
    after = None if entry is None else entry[1]
    if requested == "engine":
        return Plan("engine", "requested", profiled=after is not None, open_after=after, **steps)
    kept, key = ({} if entry is None else entry[2]), (ends, ops.__name__, device)
    hit = kept.get(key)
    if hit is not None and hit[0] is costs:  # made from this profile with these costs
        est = hit[1]
    else:
        est = estimate(model, n, entries, ends, costs, after, ops, device)
        if len(kept) >= ESTIMATES_KEPT:
            kept.clear()
        kept[key] = (costs, est)
    path = "engine" if est["engine"] < (1 - ENGINE_MARGIN) * est["dense"] else "dense"
    known = "no exits" if model.config.exit == "none" else (
        "exit profile of earlier calls on this graph" if after is not None else "no exit profile yet: none assumed")
    return Plan(path, f"cost model, {known}", est, profiled=after is not None, open_after=after, **steps)
