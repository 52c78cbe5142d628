"""The engine's public entry points: :func:`predict`, :func:`predict_chunks`, :func:`embeddings`.

Each checks its arguments once, here, runs the GNN stage once for the set of all endpoints
(:func:`.run.gnn_stage`), then scores the pairs in chunks (:mod:`.score`). ``backend="reference"``
runs the dense masked forward instead: the ground truth the engine is tested against.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterable, Iterator, Optional, Tuple

import torch

from ..backends import check_backend_name, get_backend
from ..checkpoint import Predictor
from ..graph import Graph
from ..models import EarlyExitLinkPredictor
from ..validation import check_count, check_index_tensor, check_pairs, check_threshold
from . import buffers
from .indexing import at
from .run import gnn_stage
from .scope import endpoints, marked_endpoints
from .score import engine_scores, resolved_per_layer, score_chunks
from .plan import check_plan
from .stats import EngineStats, dense_flops, paper_flops

# Pairs scored per chunk (predict's default batch_size): bounds the per-chunk index and logit
# temporaries (~40 bytes a pair, 10 MB) whatever the number of pairs. The scoring ops split a chunk
# further for their [rows, m] intermediates; a scorer call is about ten launches of host time
# whatever its size, so on a GPU a chunk this large keeps that cost negligible.
PAIR_CHUNK = 1 << 18
REFERENCE_CHUNK = 65536  # pairs per naive scoring step: bounds the [chunk, m] intermediates


def _resolve_inputs(graph, model):
    """``(graph, model)`` from a :class:`Graph` (or anything :meth:`Graph.from_any` takes) and a
    model, or from a loaded :class:`Predictor`, checked against each other."""
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


def _check_args(graph, model, threshold, backend, batch_size, precision="fp32", plan="auto"):
    """The arguments of :func:`predict` and :func:`predict_chunks` but the pairs, checked, in
    the order that reports a bad backend name whatever else is wrong."""
    check_backend_name(backend)
    check_plan(plan)
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
            precision: str = "fp32", plan: str = "auto"):
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
        precision: ``"fp32"`` (default; the engine contract of :mod:`linkexit_fast.engine`) or
            ``"bf16"``: the scorer's hidden layers in bfloat16
            (:func:`linkexit_fast.backends.bf16.score_pairs_bf16`, CPU with AMX or AVX512-BF16,
            else fp32), for ranking; ``stats.score_bound [P]``
            then bounds each pair's logit error against any fp32 scorer, and
            :func:`linkexit_fast.ranking.exact_heart_metrics` turns it into exact metrics.
        plan: the GNN stage's path on an engine backend: ``"auto"`` (default: the planner of
            :mod:`linkexit_fast.engine.plan` picks per call from a cost model measured on this
            machine), ``"dense"`` (every node at every layer, exits as masks) or ``"engine"``
            (scope, compaction, frozen-neighbour cache). Every path gives the same results (the
            engine contract); ``stats.plan`` says which ran and why. Ignored by ``"reference"``.

    Raises:
        TypeError / ValueError: a bad argument, named in the message, before anything runs.
        RuntimeError: ``backend`` names a backend that cannot run here.
    """
    graph, model, threshold, batch_size = _check_args(graph, model, threshold, backend, batch_size, precision,
                                                      plan)
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
            ends = endpoints(pairs, graph.num_nodes)
            with buffers.reuse():  # the states die with this block: only fresh scores leave it
                z, key, layer = gnn_stage(model, graph, ends, threshold, ops, stats, count_flops=return_stats,
                                          path=plan)
                scores, layers = engine_scores(model, ops, z, key, pairs, chunk, stats,
                                               layer if return_stats else None, precision)
            if return_stats:
                stats.pairs_resolved = resolved_per_layer(layers, len(stats.pairs_resolved),
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
                   precision: str = "fp32", plan: str = "auto") -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
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
    graph, model, threshold, batch_size = _check_args(graph, model, threshold, backend, batch_size, precision,
                                                      plan)
    if backend == "reference":  # the dense forward does not depend on the pairs: run it once
        for part in chunks():  # every part checked before the first score, as below
            check_pairs(part, graph.num_nodes)
        with torch.no_grad(), _eval_mode(model):
            z = model(graph, mode=model.eval_mode, threshold=threshold).z
        for part in chunks():
            pairs = check_pairs(part, graph.num_nodes)
            with torch.no_grad():
                scores = score_chunks(pairs, batch_size or REFERENCE_CHUNK, lambda p: model.score(z, p))[0]
            yield pairs, scores
        return
    count_flops = stats is not None  # else nobody reads them
    stats = stats if stats is not None else EngineStats(backend=backend, threshold=threshold)
    stats.threshold = threshold
    n = graph.num_nodes
    # Pass 1: every part checked, the endpoints marked.
    ends = marked_endpoints((check_pairs(part, n) for part in chunks()), n)
    ops = get_backend(backend, ends.device)
    stats.backend = ops.__name__.rsplit(".", 1)[-1]
    if ends.numel():
        # No context spans a yield: the caller's grad mode stays its own between parts.
        with torch.no_grad(), _eval_mode(model):
            z, key, _ = gnn_stage(model, graph, ends, threshold, ops, stats, count_flops, plan)
    total = 0
    for part in chunks():  # pass 2: the scores
        pairs = check_pairs(part, n)
        total += pairs.shape[0]
        if pairs.shape[0] == 0:
            yield pairs, torch.empty(0)
            continue
        with torch.no_grad():
            scores = engine_scores(model, ops, z, key, pairs, batch_size or PAIR_CHUNK, stats,
                                   precision=precision)[0]
        yield pairs, scores
    stats.flops_dense_gnn, stats.flops_dense_decoder = dense_flops(model, graph, total)


@torch.no_grad()
def embeddings(graph, nodes, threshold: float = 0.9, *, model: Optional[EarlyExitLinkPredictor] = None,
               backend: str = "auto", plan: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Output embeddings of ``nodes`` as :func:`predict` computes them: ``(z [r, m] float32,
    rows [k] int64)`` with ``z[rows[i]]`` the embedding of ``nodes[i]``.

    ``nodes``: ``[k]`` node ids in ``[0, num_nodes)`` (repeats allowed; e.g. ``pairs.reshape(-1)``).
    An engine backend runs the GNN stage once for the distinct ids; ``"reference"`` runs the dense
    forward (``z`` holds every node, ``rows = nodes``). Other arguments and errors as in
    :func:`predict`.
    """
    graph, model, threshold, _ = _check_args(graph, model, threshold, backend, None, plan=plan)
    nodes = check_index_tensor(nodes, "nodes", shape=(None,), num_nodes=graph.num_nodes)
    with _eval_mode(model):
        if backend == "reference":
            return model(graph, mode=model.eval_mode, threshold=threshold).z, nodes
        n = graph.num_nodes
        ops = get_backend(backend, nodes.device)
        ends = endpoints(nodes, n)
        z, key, _ = gnn_stage(model, graph, ends, threshold, ops, EngineStats(backend=backend, threshold=threshold),
                              count_flops=False, path=plan)
        return z, key(nodes)


def _reference(model, graph, pairs, threshold, stats, chunk, want_layers):
    """The dense masked forward (what the paper's code computes), then naive gather-then-MLP."""
    t0 = time.perf_counter()
    res = model(graph, mode=model.eval_mode, threshold=threshold)
    stats.time_gnn = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores, layers = score_chunks(pairs, chunk, lambda part: model.score(res.z, part),
                                  (lambda part: at(res.exit_layer, part)) if want_layers else None)
    stats.time_decoder = time.perf_counter() - t0
    stats.flops_gnn, stats.flops_decoder = dense_flops(model, graph, pairs.shape[0])
    stats.flops_paper = paper_flops(model, res.active_nodes, res.active_edges)
    stats.nodes_updated = list(res.active_nodes)
    return scores, layers
