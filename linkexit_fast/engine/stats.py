"""What one engine call computed: :class:`EngineStats`, and the FLOP counts it is compared with."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch

from ..graph import Graph
from ..models import EarlyExitLinkPredictor


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
    # Rows whose layer-l update the probe computed ahead of the layer (open endpoints only, see
    # engine.run._Run._probe); 0 where none ran. Their MACs are in flops_gnn.
    nodes_probed: List[int] = field(default_factory=list)
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
    plan: str = ""  # the GNN stage's path and the planner's reason (engine.plan.Plan)

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


def head_macs(in_dim: int, hidden: int, temperature: bool) -> int:
    """MACs of an exit head on one row (with its temperature head when ``temperature``)."""
    return in_dim * hidden + hidden * 2 + (in_dim if temperature else 0)


def layer_k(model: EarlyExitLinkPredictor) -> int:
    """m x m products per node update: two for SAS."""
    return 2 if model.config.backbone == "sas" else 1


def dense_flops(model: EarlyExitLinkPredictor, graph: Graph, num_pairs: int) -> Tuple[float, float]:
    """MACs of the dense reference: every node at every layer, dense input transform, all pairs."""
    c = model.config
    n, m, L = graph.num_nodes, c.hidden, c.layers
    e = graph.col.numel() + (n if model.self_loops else 0)
    f_in = c.in_channels or m
    gnn = n * f_in * m + L * e * m + (L - (1 if c.backbone == "gcn" else 0)) * n * layer_k(model) * m * m
    if c.exit != "none":
        per = head_macs(m, c.exit_hidden, True)
        if c.exit == "subgraph":
            per += head_macs(m + 1, c.exit_hidden, True) + graph.deg.float().mean().item()
        gnn += (L - model.first_exit) * n * per
    return float(gnn), float(num_pairs * model.predictor.flops_per_pair())


def paper_flops(model: EarlyExitLinkPredictor, active_nodes: List[int], active_edges: List[int]) -> float:
    """The paper's Eq. 6 for a reference forward: all non-exited nodes and their edges, per layer."""
    m, k = model.config.hidden, layer_k(model)
    return float(sum(nv * k * m * m + ne * m for nv, ne in zip(active_nodes, active_edges)))
