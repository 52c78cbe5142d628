"""The input layer H^0 over the scope rows; bag-of-words features multiplied as a sparse matrix;
narrow dense features aggregated before gcn's first transform."""
from __future__ import annotations

from types import ModuleType
from typing import Optional

import torch
import torch.nn.functional as F

from ..graph import Graph, quiet_sparse
from ..models import SPARSE_FEATURE_DENSITY, EarlyExitLinkPredictor
from .indexing import at
from .stats import EngineStats


def input_states(model: EarlyExitLinkPredictor, graph: Graph, rows: Optional[torch.Tensor], ops: ModuleType,
                 stats: EngineStats, count_flops: bool = True) -> torch.Tensor:
    """H^0 of ``rows`` (global ids; None: every node), ``[rows, m]``. For gcn that is X W_0, the
    first layer's transform, done before aggregation; for resgcn its input projection goes
    through :meth:`~EarlyExitLinkPredictor.input_activation`. Its MACs go to ``stats`` (a sparse
    input's only with ``count_flops``: counting its entries is a device reduction and a sync)."""
    return model.input_activation(_projection(model, graph, rows, ops, stats, count_flops))


def aggregates_input(model: EarlyExitLinkPredictor, graph: Graph) -> bool:
    """Whether the engine runs gcn's first layer as ``(Â X) W_0 + b`` on the whole graph's CSR
    rather than the reference's ``Â (X W_0) + b`` (PyG's ``GCNConv`` order) on the scope's: then
    the layer loop starts from the graph's own features, the aggregation gathers ``F`` floats a
    neighbour instead of ``m``, and the scope need not hold the rows ``L`` hops out (they are only
    read by layer 0; see :class:`.run._Run`). Only for dense features narrower than the hidden
    width (``F < m``), such as the synthetic graphs' 64 against 256: on 100 pairs of the
    200k-node graph the scope fell from 129k rows to 21k. Bag-of-words inputs (CiteSeer,
    F = 3,703) keep the sparse transform first; embeddings (ogbl-ddi) have no features."""
    c = model.config
    return (c.backbone == "gcn" and model.embedding is None and graph.x is not None
            and graph.x.shape[1] < c.hidden and _sparse_features(graph) is None)


def _projection(model, graph, rows, ops, stats, count_flops) -> torch.Tensor:
    """``X[rows] W^T + b`` of the input layer, as dense, embedding or sparse features need."""
    w, b = model.input_weights()
    if model.embedding is not None:
        x = model.embedding.weight if rows is None else at(model.embedding.weight, rows)
        stats.flops_gnn += x.shape[0] * x.shape[1] * w.shape[0]
        return F.linear(x, w, b)
    xs = _sparse_features(graph)
    if xs is not None:
        rowptr, col, val = xs
        sel = torch.arange(graph.num_nodes, device=graph.rowptr.device) if rows is None else rows
        out = ops.aggregate_rows(rowptr, col, val, _transposed(w), sel)
        if count_flops:
            stats.flops_gnn += float((rowptr[sel + 1] - rowptr[sel]).sum()) * w.shape[0]
        return out if b is None else out + b
    x = graph.x if rows is None else at(graph.x, rows)
    stats.flops_gnn += x.shape[0] * x.shape[1] * w.shape[0]
    return F.linear(x, w, b)


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
