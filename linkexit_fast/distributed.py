"""Scale-out on ``torch.distributed``: query-sharded inference and data-parallel training.

Every rank holds the whole graph and the model; the work is shared, not the graph (for graphs
that do not fit one machine, :mod:`linkexit_fast.partitioned` shares the graph itself).
The ranks are those of the default process group, started by ``torchrun`` or by :func:`launch`
(``linkexit-fast predict|train --nproc N``). Without a process group, or with one rank, every
function here is its single-process counterpart.

* :func:`predict` / :func:`predict_chunks`: the pairs are shared among the ranks by expected
  work (:func:`split_pairs`), each rank scores its share with the single-process engine, and
  every rank gets all the scores back in input order.
* :func:`train`: :func:`linkexit_fast.train.train` with ``DistributedDataParallel``: each step's
  positives and negatives are cut into one shard per rank, so the averaged gradient is the
  single-process step's on the whole batch.
* :func:`launch`: run a function on N local processes (gloo on 127.0.0.1), or on torchrun's ranks.

Backends: ``gloo`` for CPU tensors, ``nccl`` for CUDA ones; the collectives run on the device of
the pairs, so under NCCL the graph, the model and the pairs must be on the rank's GPU.
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import pickle
import socket
import tempfile
import time
from datetime import timedelta
from multiprocessing import reduction
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import engine
from . import train as single
from .graph import Graph
from .models import EarlyExitLinkPredictor
from .train import StepHooks, TrainConfig, TrainResult, step_loss
from .validation import check_pairs

__all__ = ["predict", "predict_chunks", "split_pairs", "check_same_pairs", "train", "ShardLoss", "launch",
           "launch_cli", "rank", "world_size"]

# torchrun's variables: with all of them set, this process is one of its ranks.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def rank() -> int:
    """This process's rank in the default process group; 0 without one."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Ranks in the default process group; 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


# ---------------------------------------------------------------------------- query sharding
# split_pairs's bisection stops when the busiest share's cost is known within this fraction:
# 7 (2 ranks) to 13 (64 ranks) cuts, each about two passes over the pairs.
SPLIT_TOLERANCE = 1e-2


def split_pairs(pairs: torch.Tensor, graph: Graph, model: EarlyExitLinkPredictor,
                world: int) -> Tuple[torch.Tensor, List[int]]:
    """How :func:`predict` shares ``pairs`` among ``world`` ranks, by expected work.

    Returns ``(order [P] int64, bounds)``, ``bounds`` a list of ``world + 1`` offsets: rank ``r``
    scores ``pairs[order[bounds[r]:bounds[r + 1]]]``. The rule, with ``N`` nodes of mean degree
    ``d``, ``L`` layers and width ``m``:

    1. The pairs are ordered by their first endpoint (stable), so pairs sharing it (HeaRT's
       negatives share their positive's source node) sit together.
    2. An endpoint's field is the rows the engine updates for it alone: at layer ``l`` its ball
       of radius ``L - 1 - l``, estimated as ``min(N, 1 + deg (1 + d + ... + d^(r-1)))`` for
       radius ``r`` (exits are not known before the engine runs).
    3. A contiguous share of ``k`` pairs whose distinct endpoints' fields sum to ``F`` rows costs
       ``k`` times the scorer's MACs (``predictor.flops_per_pair()``) plus ``m (m + d + 1)`` MACs
       (a transform and an aggregation) per row of its GNN stage, ``R (1 - exp(-F / R))`` rows
       with ``R = L N`` those of a full run: the fields overlap as random sets would, so a few
       endpoints cost their fields and many cost about one full run, whatever their number.
    4. The shares are cut where the busiest one costs least (bisection on its cost, each share
       taking the most pairs it can). A share's endpoints are paid for by that share alone: two
       ranks needing one node both compute it.

    So a repeated or low-degree endpoint makes a pair cheap on a graph its fields do not cover,
    and on a small graph with many pairs (every share's GNN stage is about one full run) the
    pair counts decide. The costs are float64 sums, which may differ in the last bit between
    machines: :func:`predict` uses rank 0's cut on every rank.

    Args:
        pairs: checked ``[P, 2]`` int64 node ids of ``graph``.
        world: the number of ranks, ``>= 1``.
    """
    # numpy's stable sorts: torch's took 0.3 s for 262k pairs on the 2-core benchmark machine
    order = torch.from_numpy(np.argsort(pairs[:, 0].cpu().numpy(), kind="stable"))
    total = order.numel()
    if total == 0 or world == 1:
        return order, [0] + [total] * world
    ends = pairs.cpu().index_select(0, order).reshape(-1)  # u0, v0, u1, v1, ... in that order
    # prev[i]: where the node of occurrence i last occurred before i (-1 the first time)
    by_node = torch.from_numpy(np.argsort(ends.numpy(), kind="stable"))
    prev_by_node = torch.cat([torch.tensor([-1]), by_node[:-1]])
    prev_by_node[1:][ends[by_node[1:]] != ends[by_node[:-1]]] = -1
    prev = torch.empty_like(prev_by_node).scatter_(0, by_node, prev_by_node)
    n, m, layers = graph.num_nodes, model.config.hidden, model.config.layers
    mean = graph.num_edges / n
    deg = graph.deg.cpu().index_select(0, ends).to(torch.float64)
    field, reach = torch.zeros_like(deg), 0.0  # reach: 1 + d + ... + d^(r-1) at radius r, at most N
    for _ in range(layers):
        field += (1 + deg * reach).clamp_(max=n)
        reach = min(n, reach * mean + 1)
    full, gnn_macs = float(layers * n), m * (m + mean + 1) * float(layers * n)
    scoring = model.predictor.flops_per_pair() * torch.arange(1, total + 1, dtype=torch.float64)

    def costs(a: int, b: int) -> torch.Tensor:
        """The cost of the shares ``[a, j)`` for ``j`` in ``(a, b]``."""
        new = torch.where(prev[2 * a:2 * b] < 2 * a, field[2 * a:2 * b], 0.0)
        f = (new[0::2] + new[1::2]).cumsum_(0).div_(-full)
        return f.expm1_().mul_(-gnn_macs).add_(scoring[:b - a])

    def cut(limit: float) -> List[int]:
        """Each share in turn takes the most pairs (at least one) it can within ``limit``."""
        bounds = [0]
        for _ in range(world - 1):
            a, width = bounds[-1], max(64, 2 * total // world)
            while True:  # widen the window until the share would exceed the limit: O(share)
                b = min(total, a + width)
                c = costs(a, b) if b > a else torch.zeros(0, dtype=torch.float64)
                if b == total or (c.numel() and c[-1] > limit):
                    break
                width *= 2
            bounds.append(min(total, a + max(1, int(torch.searchsorted(c, limit, right=True)))) if b > a else a)
        return bounds + [total]

    # The shares together cost at least all the pairs as one share (a share pays its own
    # endpoints, and the GNN rows are concave in F): the busiest costs at least 1/world of it.
    hi = float(costs(0, total)[-1])
    lo = hi / world
    while hi - lo > SPLIT_TOLERANCE * lo:
        mid = (lo + hi) / 2
        a = cut(mid)[-2]
        if a == total or float(costs(a, total)[-1]) <= mid:
            hi = mid
        else:
            lo = mid
    return order, cut(hi)


def _resolve(graph, model, **kwargs):
    """The Graph and model that :func:`linkexit_fast.predict` would use, with every argument but
    the pairs checked by it (its errors and messages) on an empty pair set."""
    from .checkpoint import Predictor
    if not isinstance(graph, (Graph, Predictor)):
        graph = Graph.from_any(graph)  # once, not once per engine call
    engine.predict(graph, torch.empty(0, 2, dtype=torch.int64), model=model, **kwargs)
    if isinstance(graph, Predictor):
        return graph.graph, model or graph.model
    return graph, model


def _pair_key(pairs: torch.Tensor) -> torch.Tensor:
    """``[count, checksum]`` of ``pairs`` (int64 wraps: a checksum, order-sensitive)."""
    weights = torch.arange(1, pairs.shape[0] + 1, device=pairs.device)
    checksum = ((pairs[:, 0] * 1_000_003 + pairs[:, 1]) * weights).sum()
    return torch.cat([torch.tensor([pairs.shape[0]], device=pairs.device), checksum.view(1)])


def _check_keys(keys: List[torch.Tensor]) -> None:
    others = [r for r, k in enumerate(keys) if not torch.equal(k[:2], keys[0][:2])]
    if others:
        raise ValueError(f"distributed predict needs the same pairs on every rank; ranks {others} hold "
                         f"other pairs than rank 0 ({int(keys[0][0])} pairs there)")


def check_same_pairs(pairs: torch.Tensor) -> None:
    """Raise ValueError on every rank unless every rank holds the same ``pairs`` (one all-gather
    of a count and a checksum)."""
    key = _pair_key(pairs)
    keys = [torch.empty_like(key) for _ in range(world_size())]
    dist.all_gather(keys, key)
    _check_keys(keys)


def _agreed_split(pairs: torch.Tensor, graph: Graph, model: EarlyExitLinkPredictor) -> Tuple[torch.Tensor, List[int]]:
    """:func:`split_pairs` for the ranks, with rank 0's cut. Raises ValueError on every rank
    unless every rank holds the same pairs: their shares would not tile the input otherwise."""
    world = world_size()
    order, bounds = split_pairs(pairs, graph, model, world)
    key = torch.cat([_pair_key(pairs), torch.tensor(bounds, device=pairs.device)])
    keys = [torch.empty_like(key) for _ in range(world)]
    dist.all_gather(keys, key)
    _check_keys(keys)
    return order, keys[0][2:].tolist()


def _gather(local: torch.Tensor, pairs: torch.Tensor, order: torch.Tensor, bounds: List[int]) -> torch.Tensor:
    """Every rank's ``local`` scores, back in the input order of ``pairs``: ``[P]`` on every rank."""
    sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    buf = torch.zeros(max(sizes), device=pairs.device)  # all_gather takes equal sizes: pad
    buf[:local.numel()] = local
    parts = [torch.empty_like(buf) for _ in sizes]
    dist.all_gather(parts, buf)
    out = torch.empty(pairs.shape[0], device=pairs.device)
    return out.index_copy_(0, order.to(pairs.device), torch.cat([p[:s] for p, s in zip(parts, sizes)]))


def _share(pairs: torch.Tensor, order: torch.Tensor, bounds: List[int]) -> torch.Tensor:
    r = rank()
    return pairs.index_select(0, order[bounds[r]:bounds[r + 1]].to(pairs.device))


def predict(graph, pairs, threshold: float = 0.9, *, model: Optional[EarlyExitLinkPredictor] = None,
            backend: str = "auto", batch_size: Optional[int] = None, precision: str = "fp32",
            plan: str = "auto") -> torch.Tensor:
    """:func:`linkexit_fast.predict` with the pairs shared among the ranks: link probabilities
    ``[P]`` (float32) for ``pairs`` ``[P, 2]``, in input order, on every rank.

    Every rank must call it with the same arguments (graph, model, pairs). Each scores its share
    (:func:`split_pairs`) with the single-process engine, whose GNN stage then runs for that
    share's endpoints only; the shares' scores are all-gathered (padded to the largest share).
    Scores equal the single-process call's under the engine contract (float32 summation-order
    noise): a rank's engine run covers fewer endpoints, which can change the order of a few sums
    (on the 1M-node benchmark 1 or 2 scores in 100k moved, by at most 3e-8), so an exit could only flip at a
    near-tie, as between two backends.

    Args:
        graph, threshold, model, backend, batch_size, precision, plan: as in :func:`linkexit_fast.predict`.
        pairs: node pairs ``[P, 2]``, the same on every rank.

    Raises:
        TypeError / ValueError: a bad argument (as :func:`linkexit_fast.predict`), on every rank
            before anything runs; ValueError when the ranks hold different pairs.
        RuntimeError: ``backend`` cannot run here; a collective failed or timed out.
    """
    world = world_size()
    if world == 1:
        return engine.predict(graph, pairs, threshold, model=model, backend=backend, batch_size=batch_size,
                              precision=precision, plan=plan)
    graph, model = _resolve(graph, model, threshold=threshold, backend=backend, batch_size=batch_size,
                            precision=precision, plan=plan)
    pairs = check_pairs(pairs, graph.num_nodes)
    order, bounds = _agreed_split(pairs, graph, model)
    scores = engine.predict(graph, _share(pairs, order, bounds), threshold, model=model, backend=backend,
                            batch_size=batch_size, precision=precision, plan=plan)
    return _gather(scores, pairs, order, bounds) if pairs.shape[0] else scores


def predict_chunks(graph, chunks: Callable[[], Iterable], threshold: float = 0.9, *,
                   model: Optional[EarlyExitLinkPredictor] = None, backend: str = "auto",
                   batch_size: Optional[int] = None, stats: Optional[engine.EngineStats] = None,
                   precision: str = "fp32", plan: str = "auto") -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """:func:`linkexit_fast.engine.predict_chunks` with every part shared among the ranks:
    yields ``(pairs [C, 2], scores [C])`` for each whole part, in input order, on every rank.

    ``chunks()`` must give the same parts on every rank (e.g. every rank reads one file). Each
    part is split as in :func:`predict`, and each rank's shares of all the parts go through one
    single-process ``predict_chunks`` call, so its GNN stage runs once, for all its endpoints;
    memory stays bounded by the graph and the largest part. ``stats`` holds this rank's share of
    the work. Other arguments, errors and the score contract as in :func:`predict`.
    """
    world = world_size()
    if world == 1:
        yield from engine.predict_chunks(graph, chunks, threshold, model=model, backend=backend,
                                         batch_size=batch_size, stats=stats, precision=precision, plan=plan)
        return
    graph, model = _resolve(graph, model, threshold=threshold, backend=backend, batch_size=batch_size,
                            precision=precision, plan=plan)
    reads, pending = [], collections.deque()

    def my_shares():
        # The engine reads its parts twice, to collect the endpoints, then to score: only the
        # second read's splits are kept, to put each part's scores back in order.
        reads.append(None)
        for part in chunks():
            pairs = check_pairs(part, graph.num_nodes)
            order, bounds = _agreed_split(pairs, graph, model)
            if len(reads) == 2:
                pending.append((pairs, order, bounds))
            yield _share(pairs, order, bounds)

    for _, scores in engine.predict_chunks(graph, my_shares, threshold, model=model, backend=backend,
                                           batch_size=batch_size, stats=stats, precision=precision, plan=plan):
        pairs, order, bounds = pending.popleft()
        yield pairs, _gather(scores, pairs, order, bounds) if pairs.shape[0] else scores


# ---------------------------------------------------------------------------- training
class ShardLoss(nn.Module):
    """This rank's loss of one step of :func:`linkexit_fast.train.train`, as a module to wrap in
    ``DistributedDataParallel`` (which averages the gradients of what its forward computed).

    ``forward(graph, batch [B, 2], neg [B * k, 2], mode, generator)``, with the same arguments on
    every rank, runs the model on ``graph`` without the whole batch and scores the rank's
    contiguous shard of ``batch`` and those positives' ``k`` negatives each
    (:func:`linkexit_fast.train.step_loss`), so the
    ranks' averaged gradient is the single-process step's. ``generator`` (the Gumbel noise) must
    be in the same state on every rank.
    """

    def __init__(self, model: EarlyExitLinkPredictor):
        super().__init__()
        self.model = model

    def forward(self, graph: Graph, batch: torch.Tensor, neg: torch.Tensor, mode: str,
                generator: torch.Generator) -> torch.Tensor:
        world, r, b = world_size(), rank(), batch.shape[0]
        shard = slice(b * r // world, b * (r + 1) // world)
        return step_loss(self.model, graph, batch, neg, mode, generator, shard, world)


class _RankHooks(StepHooks):
    """A rank's part in :func:`linkexit_fast.train.train`: the sharded loss under
    ``DistributedDataParallel`` (built here, before the optimiser: it broadcasts rank 0's
    weights), the epoch loss summed over ranks, and rank 0's evaluation and stopping decision
    broadcast to every rank."""

    def __init__(self, model: EarlyExitLinkPredictor):
        super().__init__(model)
        self.step = DistributedDataParallel(ShardLoss(model))
        self.world, self.main = world_size(), rank() == 0

    def loss(self, graph, batch, neg, mode, generator) -> torch.Tensor:
        return self.step(graph, batch, neg, mode, generator)

    def epoch_loss(self, total: float) -> float:
        t = torch.tensor([total], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t)

    def agree(self, decide):
        out = [decide() if self.main else None]
        dist.broadcast_object_list(out, src=0)
        return out[0]


def train(model: EarlyExitLinkPredictor, split, cfg: TrainConfig = TrainConfig(), progress: bool = True
          ) -> TrainResult:
    """:func:`linkexit_fast.train.train` over the ranks of the default process group: same
    arguments, same result, every rank calling it with the same ones. With no group, or one
    rank, it is that function (``linkexit-fast train`` always trains through this one).

    Every rank holds the graph and runs the full-graph forward (the graph must fit each rank);
    what is shared is each step's scoring and loss: the epoch's permutation and the negatives
    are drawn from the same seeds on every rank, and :class:`ShardLoss` gives each rank a shard
    of the batch, so a step's averaged gradient equals the single-process step on the whole
    batch (to float tolerance; dropout masks differ, being drawn per rank). Rank 0 evaluates and
    decides early stopping, and tells the others; on return every rank's ``model`` holds the
    best weights. Write checkpoints from rank 0 only.
    """
    if world_size() == 1:
        return single.train(model, split, cfg, progress)
    return single.train(model, split, cfg, progress, hooks=_RankHooks(model))


# ---------------------------------------------------------------------------- launching ranks
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timeout(seconds: Optional[float]) -> Optional[timedelta]:
    return None if seconds is None else timedelta(seconds=seconds)


def _local_rank(local: int, world: int, port: int, call: bytes, threads: int, backend: str,
                timeout: Optional[float], out: str, stdio: List[Tuple]) -> None:
    """A spawned rank: join the group, run the pickled ``(fn, args)``, leave rank 0's result (or
    any rank's exception, to be raised again in the parent) in ``out``. ``stdio[local]``: the
    caller's stdout and stderr (``multiprocessing.reduction.DupFd``, one use each), which become
    this rank's."""
    for fd, dup in zip((1, 2), stdio[local]):
        received = dup.detach()
        os.dup2(received, fd)
        os.close(received)
    fn, args = pickle.loads(call)
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=local, world_size=world,
                            timeout=_timeout(timeout))
    try:
        result = fn(*args)
        if local == 0:
            torch.save(result, Path(out) / "result.pt")
    except BaseException as e:
        try:
            blob = pickle.dumps(e)
        except Exception:  # an exception that does not pickle: its text
            blob = pickle.dumps(RuntimeError(f"rank {local}: {e!r}"))
        (Path(out) / f"error{local}.pkl").write_bytes(blob)
        raise
    finally:
        dist.destroy_process_group()


def _start_method() -> str:
    """How local ranks start: from a fork server where the platform has one, else spawned. The
    server (one per calling process, kept for its later launches) imports torch and this module
    once and forks each rank from that single-threaded state; a spawned rank imports them itself,
    about 3 s of CPU on the 2-core test machine, per rank and per launch."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    multiprocessing.set_forkserver_preload([__name__])  # read when the server starts, once
    return "forkserver"


def launch(fn: Callable, nproc: Optional[int], *args, threads: Optional[int] = None, backend: str = "gloo",
           timeout: Optional[float] = None):
    """Run ``fn(*args)`` on ``nproc`` ranks with the default process group set up; returns rank
    0's result.

    Under ``torchrun`` (its ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set),
    this process is one rank: the group comes from those variables, ``nproc`` must be None or
    the world size, and every rank gets its own ``fn``'s result. Otherwise ``nproc`` local
    processes are started (forked from a server that imported torch once where the platform has
    one, else spawned; ``fn`` and ``args`` must pickle, and a ``fn`` defined in a script needs the
    script's ``if __name__ == "__main__"`` guard, as with spawn) and meet on 127.0.0.1 at a port
    the OS picked; each gets its own copy of ``args`` (pickled, never shared memory) and writes to
    the caller's stdout and stderr.

    Args:
        nproc: local processes to spawn, ``>= 1``.
        threads: torch threads per spawned rank; default the parent's threads shared evenly, >= 1.
        backend: ``"gloo"`` (CPU tensors) or ``"nccl"`` (spawned rank ``r`` uses ``cuda:r``).
        timeout: seconds allowed for each collective and, for spawned ranks, for the whole run;
            None: torch's collective timeout and no limit on the run.

    Raises:
        ValueError: ``nproc`` below 1, or not torchrun's world size.
        TimeoutError: spawned ranks still running after ``timeout`` (they are then stopped).
        The exception that stopped a spawned rank first, as it was raised there.
    """
    if all(k in os.environ for k in TORCHRUN_ENV):
        world = int(os.environ["WORLD_SIZE"])
        if nproc not in (None, world):
            raise ValueError(f"nproc={nproc} but torchrun started {world} ranks; leave nproc out under torchrun")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend, timeout=_timeout(timeout))
        try:
            return fn(*args)
        finally:
            dist.destroy_process_group()
    if nproc is None or nproc < 1:
        raise ValueError(f"nproc must be a positive number of processes, got {nproc}")
    threads = threads or max(1, torch.get_num_threads() // nproc)
    with tempfile.TemporaryDirectory(prefix="linkexit_ranks_") as out:
        # Pickled here: torch.multiprocessing would pass tensors in shared memory, and the ranks
        # would then update one another's (and the caller's) weights in place.
        call = pickle.dumps((fn, args))
        # The ranks write to this process's stdout and stderr as they are now: a rank forked from
        # the server would inherit the server's, those of the first launch.
        stdio = [tuple(reduction.DupFd(fd) for fd in (1, 2)) for _ in range(nproc)]
        ctx = mp.start_processes(_local_rank, args=(nproc, _free_port(), call, threads, backend, timeout, out, stdio),
                                 nprocs=nproc, join=False, start_method=_start_method())
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not ctx.join(None if deadline is None else max(deadline - time.monotonic(), 0.0)):
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"{nproc} ranks still running after {timeout} s; stopped them")
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
            # The failing rank's own exception; a peer may also have failed, in a collective it left.
            failed = Path(out) / f"error{e.error_index}.pkl"
            if failed.exists():
                raise pickle.loads(failed.read_bytes()) from e
            raise
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
                p.join()
        result = Path(out) / "result.pt"
        return torch.load(result, weights_only=False) if result.exists() else None


def launch_cli(command: Callable, args) -> bool:
    """For ``linkexit-fast COMMAND --nproc N`` (or under torchrun): run ``command(args)`` on the
    ranks and return True; False when this process should run the command itself (no ranks
    asked for, or it already is a rank)."""
    if dist.is_initialized():
        return False
    nproc = getattr(args, "nproc", None)
    if not all(k in os.environ for k in TORCHRUN_ENV) and nproc in (None, 1):
        return False
    launch(command, nproc, args)
    return True
