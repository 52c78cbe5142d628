r"""HeaRT hard negatives: the Heuristic Related Sampling Technique of Li et al. (NeurIPS 2023).

For every positive pair ``(a, b)`` :func:`generate_negatives` corrupts each endpoint in turn and
keeps, for each, the ``k / 2`` candidate nodes that the heuristics rank highest:

* ``out[i, :k/2]`` are ``(a, x)`` pairs and ``out[i, k/2:]`` are ``(x, b)`` pairs, each half in
  ascending order of the combined rank (the layout of HeaRT's ``heart_*_samples.npy`` files);
* heuristics (on the training graph): a common-neighbour score (``cn="RA"`` or ``"CN"``),
  personalised PageRank by Andersen-style push, and, when the graph has features, the cosine
  similarity of raw feature rows;
* every score vector is ranked from the largest; zero scores get rank ``max + 1`` and excluded
  candidates ``max + 2``; the ranks are combined by element-wise min (``agg="min"``) or mean;
* excluded: true edges (the training graph for ``which="valid"``, training + validation positives
  for ``which="test"``), the corrupted node itself and the other endpoint;
* when fewer than ``k / 2`` candidates score above zero the rest are random zero-score nodes,
  never a training, validation or test positive.

``reproduce_heart=True`` (default) follows HeaRT's published generator wherever it departs from
the textbook definitions, because only then do the negatives match the official files (mean
per-positive overlap 0.9996 with the official CiteSeer validation file, 159 of 227 rows
identical, against 0.962 with the textbook definitions):

1. its "RA" weights each common neighbour by ``1 / deg(candidate)`` (the adjacency is scaled
   column-wise), i.e. :math:`\mathrm{CN}(u, x) / \deg(x)`, summed in float32;
2. ranks are ``max(r) - r + 1`` with ``r`` scipy's ascending ``"min"`` rank of the positive
   scores, so a tie counts against every member except in the top group; e.g. scores
   ``[3, 2, 2, 1]`` rank ``[1, 3, 3, 4]``;
3. the feature-similarity row of a node is overwritten in place by its ranks each time the node
   is corrupted, so a node's second and later occurrences rank candidates by the previous ranks
   (validation is generated before test, so the test negatives replay validation first).

``reproduce_heart=False`` uses the textbook definitions instead: resource allocation
:math:`\sum_{z \in N(u) \cap N(x)} 1 / \deg(z)`, ``scipy.stats.rankdata(-s, method="min")``
ranks, and fresh feature similarities for every occurrence.

Tie order: among equal combined ranks the order is the one ``torch.topk(-combined, k / 2)``
returns on the full ``[N]`` row, as in HeaRT's generator (the CPU kernel's selection
algorithm is deterministic, which is what lets the official files be reproduced, order
included, for most positives).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from tqdm import tqdm

from .datasets import EdgeSet, LinkSplit, read_index_npy
from .graph import Graph
from .validation import check_pairs

__all__ = ["generate_negatives", "default_eps", "save_negatives", "load_negatives"]

# Elements of one dense [rows, N] working block; about a dozen such blocks are alive at once.
_BLOCK_ELEMENTS = 1 << 22


def default_eps(graph: Graph) -> float:
    """PPR push tolerance: ``1e-7`` up to 100,000 undirected edges (Cora, CiteSeer, PubMed),
    ``1e-5`` above (ogbl-ddi and larger).

    The push work per source is bounded by ``1 / (alpha * eps)`` edge visits, so the looser
    tolerance keeps dense graphs such as ogbl-ddi (average degree 500) tractable.
    """
    return 1e-7 if graph.num_undirected_edges <= 100_000 else 1e-5


# ---------------------------------------------------------------------- heuristic rows
def _to_scipy(graph: Graph) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(graph.col.numel(), dtype=np.float64), graph.col.numpy(),
                          graph.rowptr.numpy()), shape=(graph.num_nodes, graph.num_nodes))


def _float32_repeated_sum(count: np.ndarray, denom: np.ndarray) -> np.ndarray:
    """``float32(1 / denom)`` added ``count`` times in float32, one addition at a time, as the
    sparse product in HeaRT's generator accumulates its "RA"; the rounding decides which
    scores tie. ``count`` and ``denom`` are positive int64 arrays of one shape."""
    base = int(denom.max()) + 1
    keys, inverse = np.unique(count * base + denom, return_inverse=True)
    # Sorted by count, the pairs that still need an addition form a shrinking prefix.
    order = np.argsort(-(keys // base), kind="stable")
    c = (keys // base)[order]
    term = np.float32(1.0) / (keys % base)[order].astype(np.float32)
    acc = np.zeros(len(c), dtype=np.float32)
    alive = len(c)
    for step in range(1, int(c[0]) + 1):
        while c[alive - 1] < step:
            alive -= 1
        acc[:alive] += term[:alive]
    sums = np.empty_like(acc)
    sums[order] = acc
    return sums[inverse.reshape(count.shape)]


def _cn_rows(adj: sp.csr_matrix, deg: np.ndarray, nodes: np.ndarray, cn: str,
             reproduce_heart: bool) -> torch.Tensor:
    """Common-neighbour scores of ``nodes`` against every node, float32 ``[B, N]``."""
    counts = (adj[nodes] @ adj).toarray()
    if cn == "CN":
        return torch.from_numpy(counts.astype(np.float32))
    if reproduce_heart:
        # HeaRT scales the second adjacency factor column-wise: CN(u, x) * (1 / deg(x)).
        out = np.zeros(counts.shape, dtype=np.float32)
        nz = np.nonzero(counts)
        if nz[0].size:
            out[nz] = _float32_repeated_sum(counts[nz].astype(np.int64),
                                            deg[nz[1]].astype(np.int64))
        return torch.from_numpy(out)
    inv = np.zeros(len(deg), dtype=np.float64)
    inv[deg > 0] = 1.0 / deg[deg > 0]
    weighted = sp.diags(inv) @ adj  # row z scaled by 1 / deg(z): resource allocation
    return torch.from_numpy((adj[nodes] @ weighted).toarray().astype(np.float32))


def _ppr_rows(graph: Graph, adj: sp.csr_matrix, sources: torch.Tensor, alpha: float,
              eps: float) -> torch.Tensor:
    r"""Approximate personalised PageRank of ``sources`` by push, float32 ``[B, N]``.

    Andersen et al.'s push in the variant HeaRT used (PyG's GDC): residual ``r[s] = alpha``;
    pushing node ``u`` moves ``r[u]`` into ``p[u]`` and adds ``(1 - alpha) r[u] / deg(u)`` to
    each neighbour; a node is pushed while ``r[u] >= alpha * eps * deg(u)``. Here all such nodes
    push at once (synchronous rounds, vectorised over the batch) rather than one at a time from
    a stack; the stopping rule and thus the error bound are the same. Nodes never pushed score 0.
    """
    n = graph.num_nodes
    b = sources.numel()
    deg = graph.deg
    degf = deg.to(torch.float64)
    # Node-major [N, B] so that the sparse product and the edge expansion both write rows.
    # An isolated node is pushed once it holds any residual (its threshold is the tiniest double).
    thresh = torch.where(deg > 0, alpha * eps * degf,
                         torch.finfo(torch.float64).tiny).unsqueeze(1)
    coef = (1.0 - alpha) / degf.clamp(min=1.0)
    # spread[v, u] = A[v, u] (1 - alpha) / deg(u): one product pushes every active node at once.
    spread = (adj @ sp.diags(coef.numpy())).tocsr()
    # On a sparse graph the product costs about one pass over [N, B]; on a dense one (ogbl-ddi)
    # it is worth it only while much of the batch is active, else each edge is expanded.
    always_product = adj.nnz <= 16 * n
    out = torch.zeros(b, n, dtype=torch.float32)
    cols = torch.arange(b)  # batch column of each column still iterating
    r = torch.zeros(n, b, dtype=torch.float64)
    p = torch.zeros(n, b, dtype=torch.float64)
    r[sources, cols] = alpha
    while True:
        act = r >= thresh
        live = act.any(0)
        n_live = int(live.sum())
        if n_live < cols.numel() / 2:
            # Sources converge at different speeds: drop the finished ones from the block.
            done = ~live
            out[cols[done]] = p[:, done].T.to(torch.float32)
            cols, act = cols[live], act[:, live]
            r, p = r[:, live].contiguous(), p[:, live].contiguous()
            if n_live == 0:
                return out
        b = cols.numel()
        push = r * act
        r -= push
        p += push
        if always_product or int(deg @ act.sum(1)) * 8 > b * adj.nnz:
            r += torch.from_numpy(spread @ push.numpy())
            continue
        active = torch.nonzero(act.view(-1)).flatten()
        ui = torch.div(active, b, rounding_mode="floor")
        bi = active - ui * b
        share = push.view(-1)[active] * coef[ui]
        counts = deg[ui]
        # Spread edge by edge, in slices of about one block to bound the expansion's memory.
        ends = torch.cumsum(counts, 0)
        start = 0
        while start < ui.numel():
            limit = (int(ends[start - 1]) if start else 0) + _BLOCK_ELEMENTS
            stop = max(start + 1, int(torch.searchsorted(ends, limit, right=True)))
            c = counts[start:stop]
            rep = torch.repeat_interleave(torch.arange(stop - start), c)
            offset = torch.arange(int(c.sum())) - (torch.cumsum(c, 0) - c)[rep]
            nbr = graph.col[graph.rowptr[ui[start:stop]][rep] + offset]
            r.view(-1).index_add_(0, nbr * b + bi[start:stop][rep], share[start:stop][rep])
            start = stop


def _normalised_features(x: torch.Tensor) -> np.ndarray:
    """Rows scaled to unit norm, float64 ``[N, F]`` (zero rows stay zero)."""
    xf = x.numpy().astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", xf, xf))
    norms[norms == 0] = 1.0
    return xf / norms[:, None]


def _cosine_rows(xn: np.ndarray, nodes: np.ndarray) -> torch.Tensor:
    """Cosine similarity of ``nodes`` against every node, float32 ``[B, N]``.

    Computed in float64 and rounded to float32 (HeaRT stores float32), so equal similarities
    stay exactly tied whatever the batch; negatives are clipped to 0: a dissimilar node is no
    harder a negative than an unrelated one.
    """
    return torch.from_numpy(np.maximum(xn[nodes] @ xn.T, 0.0).astype(np.float32))


# ---------------------------------------------------------------------- ranking
# A row's ranks follow from one count per entry: with ``reproduce_heart`` the number of positive
# scores strictly below it (HeaRT's rank is ``count(max) - count + 1``), otherwise the number
# strictly above it (``rankdata(-s, "min") = count + 1``). Counts are computed once per corrupted
# node by sorting; excluding one more node (the other endpoint) only shifts them by one.
def _rank_counts(scores: torch.Tensor, reproduce_heart: bool) -> torch.Tensor:
    """int32 ``[R, N]`` counts of ``scores`` ``[R, N]`` (meaningful at positive scores)."""
    n = scores.shape[1]
    pos = scores > 0
    key = torch.where(pos, scores, torch.tensor(float("-inf"), dtype=scores.dtype))
    sorted_key = torch.sort(key, dim=1).values
    if reproduce_heart:
        nonpos = (n - pos.sum(1, keepdim=True)).to(torch.int64)
        counts = torch.searchsorted(sorted_key, key) - nonpos
    else:
        counts = n - torch.searchsorted(sorted_key, key, right=True)
    return counts.to(torch.int32)


def _exclude_one(scores: torch.Tensor, counts: torch.Tensor, other: torch.Tensor,
                 reproduce_heart: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scores and counts of rows ``[R, N]`` once node ``other[i]`` is excluded from row ``i``."""
    rows = torch.arange(scores.shape[0])
    s_o = scores[rows, other].unsqueeze(1)
    scores = scores.clone()
    scores[rows, other] = -1.0
    shifted = (s_o < scores) if reproduce_heart else (s_o > scores)
    return scores, counts - (shifted & (s_o > 0)).to(torch.int32)


def _ranks(scores: torch.Tensor, counts: torch.Tensor, reproduce_heart: bool) -> torch.Tensor:
    """float32 ranks ``[R, N]`` from :func:`_rank_counts`: rank 1 for the largest positive
    score, ``m + 1`` for zero and ``m + 2`` for excluded (negative) scores, ``m`` being the
    row's largest rank (0 when no score is positive)."""
    pos = scores > 0
    if reproduce_heart:
        top = torch.where(pos, counts, -1).amax(1, keepdim=True)
        rank = top - counts + 1
        m = top + 1  # 0 when no score is positive
    else:
        rank = counts + 1
        m = torch.where(pos, rank, 0).amax(1, keepdim=True)
    return torch.where(pos, rank, torch.where(scores == 0, m + 1, m + 2)).to(torch.float32)


def _rank_rows(scores: torch.Tensor, reproduce_heart: bool) -> torch.Tensor:
    """Ranks of every row of ``scores`` ``[R, N]`` (negative = excluded), float32 ``[R, N]``.

    Positive scores get ``rankdata(-s, "min")`` or, with ``reproduce_heart``, HeaRT's
    ``max(r) - r + 1`` with ``r = rankdata(s, "min")``; see :func:`_ranks` for the rest.
    """
    return _ranks(scores, _rank_counts(scores, reproduce_heart), reproduce_heart)


# ---------------------------------------------------------------------- occurrences
class _Occurrences:
    """One row per corrupted endpoint, in HeaRT's processing order (positive by positive,
    source before target), sorted by corrupted node for batching.

    ``slot`` is the output row (-1 for validation replays that only advance the feature state),
    ``side`` 0 for ``(node, x)`` and 1 for ``(x, node)``, ``excl`` the exclusion graph,
    ``level`` how many earlier occurrences the node has.
    """

    def __init__(self, parts):
        node, other, slot, side, excl = (torch.cat(v) for v in zip(*parts))
        order = torch.arange(node.numel())
        perm = torch.from_numpy(np.lexsort((order.numpy(), node.numpy())))
        self.node, self.other = node[perm], other[perm]
        self.slot, self.side, self.excl = slot[perm], side[perm], excl[perm]
        first = torch.ones(node.numel(), dtype=torch.bool)
        first[1:] = self.node[1:] != self.node[:-1]
        group_start = torch.cummax(torch.where(first, torch.arange(node.numel()), 0), 0).values
        self.level = torch.arange(node.numel()) - group_start

    @staticmethod
    def of(pairs: torch.Tensor, excl: int, replay: bool):
        p = pairs.shape[0]
        slot = torch.full((p,), -1, dtype=torch.int64) if replay else torch.arange(p)
        # Interleave source and target corruption so the order is HeaRT's per-positive order.
        node = pairs.reshape(-1)
        other = pairs.flip(1).reshape(-1)
        side = torch.tensor([0, 1]).repeat(p)
        return (node, other, slot.repeat_interleave(2), side,
                torch.full((2 * p,), excl, dtype=torch.int64))


def _neighbour_mask(graph: Graph, nodes: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` bool: the neighbours of each of ``nodes`` in ``graph``, and the node itself."""
    b = nodes.numel()
    counts = graph.deg[nodes]
    rep = torch.repeat_interleave(torch.arange(b), counts)
    offset = torch.arange(int(counts.sum())) - (torch.cumsum(counts, 0) - counts)[rep]
    mask = torch.zeros(b, graph.num_nodes, dtype=torch.bool)
    mask[rep, graph.col[graph.rowptr[nodes][rep] + offset]] = True
    mask[torch.arange(b), nodes] = True
    return mask


# ---------------------------------------------------------------------- public entry point
def generate_negatives(split: LinkSplit, which: str = "valid", k: int = 500, cn: str = "RA",
                       agg: str = "min", alpha: float = 0.15, eps: Optional[float] = None,
                       seed: int = 0, batch_size: Optional[int] = None, progress: bool = True,
                       reproduce_heart: bool = True) -> torch.Tensor:
    """HeaRT negatives for the ``which`` positives of ``split``: int64 ``[P, k, 2]``.

    Row ``i`` holds ``k / 2`` pairs ``(a_i, x)`` then ``k / 2`` pairs ``(x, b_i)`` for the
    positive ``(a_i, b_i)``, each half best-ranked first (see the module docstring).

    Args:
        split: training graph (heuristics and exclusions), ``valid_pos``, ``test_pos``.
        which: ``"valid"`` (exclude training edges) or ``"test"`` (exclude training edges and
            validation positives).
        k: negatives per positive, even.
        cn: ``"RA"`` (resource allocation; see ``reproduce_heart``) or ``"CN"``.
        agg: ``"min"`` or ``"mean"`` of the per-heuristic ranks.
        alpha: PPR teleport probability.
        eps: PPR push tolerance; ``None`` picks :func:`default_eps`.
        seed: seeds the zero-score fill; the output depends on the inputs and the seed only
            (not on ``batch_size``).
        batch_size: corrupted nodes whose heuristic rows are computed together; ``None`` keeps
            a dense ``[batch, N]`` block near 4M elements. Memory is about a dozen such blocks
            plus the output.
        progress: show a tqdm bar over corrupted endpoints.
        reproduce_heart: follow HeaRT's generator where it departs from the textbook
            definitions (module docstring); ``False`` uses the textbook ones.
    """
    if which not in ("valid", "test"):
        raise ValueError(f"which must be 'valid' or 'test', got {which!r}")
    if not isinstance(k, int) or k < 2 or k % 2:
        raise ValueError(f"k must be a positive even integer, got {k!r}")
    if cn not in ("RA", "CN"):
        raise ValueError(f"cn must be 'RA' or 'CN', got {cn!r}")
    if agg not in ("min", "mean"):
        raise ValueError(f"agg must be 'min' or 'mean', got {agg!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    graph = split.graph
    n = graph.num_nodes
    eps = default_eps(graph) if eps is None else float(eps)
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    valid = check_pairs(split.valid_pos, n, "split.valid_pos")
    pairs = valid if which == "valid" else check_pairs(split.test_pos, n, "split.test_pos")
    loops = torch.nonzero(pairs[:, 0] == pairs[:, 1]).flatten()
    if loops.numel():
        raise ValueError(f"{which} positive {int(loops[0])} is a self-pair "
                         f"{pairs[loops[0]].tolist()}: it has no endpoint to corrupt against")
    half = k // 2
    out = torch.empty(len(pairs), k, 2, dtype=torch.int64)
    if len(pairs) == 0:
        return out

    mutate = reproduce_heart and graph.x is not None
    graphs = [graph]
    parts = []
    if which == "test":
        graphs.append(Graph.from_edge_index(torch.cat([graph.edge_index, valid.T], 1),
                                            num_nodes=n))
        if mutate:
            parts.append(_Occurrences.of(valid, excl=0, replay=True))
    parts.append(_Occurrences.of(pairs, excl=len(graphs) - 1, replay=False))
    occ = _Occurrences(parts)

    # The random fill avoids every positive of the split, not only the exclusion graph's.
    true_edges = EdgeSet(torch.cat([graph.undirected_edges(), valid,
                                    check_pairs(split.test_pos, n, "split.test_pos")]), n)
    sampler = _Sampler(graph, graphs, occ, out, cn, agg, alpha, eps, half, seed,
                       reproduce_heart, mutate, true_edges)
    uniq, counts = torch.unique_consecutive(occ.node, return_counts=True)
    ends = torch.cumsum(counts, 0)
    nb = batch_size or max(1, _BLOCK_ELEMENTS // n)
    with tqdm(total=int((occ.slot >= 0).sum()), desc=f"HeaRT {which} negatives",
              unit="endpoint", disable=not progress) as bar:
        for b0 in range(0, uniq.numel(), nb):
            b1 = min(b0 + nb, uniq.numel())
            sampler.run_batch(uniq[b0:b1], counts[b0:b1], int(ends[b0] - counts[b0]), bar)
    return out


@dataclass
class _Sampler:
    """The state of one :func:`generate_negatives` call: graphs, occurrences, options, output."""

    graph: Graph
    graphs: List[Graph]  # exclusion graphs, indexed by _Occurrences.excl
    occ: _Occurrences
    out: torch.Tensor
    cn: str
    agg: str
    alpha: float
    eps: float
    half: int
    seed: int
    heart: bool  # reproduce_heart
    mutate: bool  # HeaRT's in-place feature ranks apply
    true_edges: EdgeSet  # training edges and valid/test positives: never a random fill
    n: int = field(init=False)
    adj: sp.csr_matrix = field(init=False)
    xn: Optional[np.ndarray] = field(init=False)  # unit-norm feature rows

    def __post_init__(self):
        self.n = self.graph.num_nodes
        self.adj = _to_scipy(self.graph)
        self.xn = _normalised_features(self.graph.x) if self.graph.x is not None else None

    def run_batch(self, nodes: torch.Tensor, counts: torch.Tensor, lo: int, bar) -> None:
        """The occurrences of ``nodes`` (sorted; ``counts`` each), which start at ``lo``."""
        occ = self.occ
        hi = lo + int(counts.sum())
        heur = [_cn_rows(self.adj, self.graph.deg.numpy(), nodes.numpy(), self.cn, self.heart),
                _ppr_rows(self.graph, self.adj, nodes, self.alpha, self.eps)]
        feat = _cosine_rows(self.xn, nodes.numpy()) if self.xn is not None else None
        if feat is not None and not self.mutate:
            heur.append(feat)
        # One base row per (node, exclusion graph): masked scores and rank counts, shared by
        # every occurrence of the node.
        local = torch.repeat_interleave(torch.arange(nodes.numel()), counts)
        key_pair = local * len(self.graphs) + occ.excl[lo:hi]
        keys, key_of = torch.unique(key_pair, return_inverse=True)
        key_node, key_excl = keys // len(self.graphs), keys % len(self.graphs)
        mask = torch.zeros(keys.numel(), self.n, dtype=torch.bool)
        for gid, g in enumerate(self.graphs):
            sel = torch.nonzero(key_excl == gid).flatten()
            if sel.numel():
                mask[sel] = _neighbour_mask(g, nodes[key_node[sel]])
        base = []
        for h in heur:
            s = torch.where(mask, torch.tensor(-1.0), h[key_node])
            base.append((s, _rank_counts(s, self.heart)))
        del heur, mask
        level = occ.level[lo:hi]
        chunk = max(1, _BLOCK_ELEMENTS // self.n)
        # With feature mutation the j-th occurrence of a node needs the (j-1)-th's feature
        # ranks, so occurrences go level by level; otherwise all at once.
        for lev in (range(int(level.max()) + 1) if self.mutate else [None]):
            idx = torch.arange(hi - lo) if lev is None else torch.nonzero(level == lev).flatten()
            for c0 in range(0, idx.numel(), chunk):
                rows = idx[c0:c0 + chunk]
                self._select(lo + rows, key_of[rows], local[rows], base, feat)
                bar.update(int((occ.slot[lo + rows] >= 0).sum()))

    def _select(self, rows: torch.Tensor, key: torch.Tensor, local: torch.Tensor, base,
                feat: Optional[torch.Tensor]) -> None:
        """Rank, combine and pick the best candidates of the occurrences ``rows``; write them
        into the output (and, when mutating, the feature ranks back into ``feat``)."""
        occ = self.occ
        other = occ.other[rows]
        scores, ranks = [], []
        for s_base, c_base in base:
            s, c = _exclude_one(s_base[key], c_base[key], other, self.heart)
            scores.append(s)
            ranks.append(_ranks(s, c, self.heart))
        masked = scores[0] < 0
        if self.mutate:
            s = torch.where(masked, torch.tensor(-1.0), feat[local])
            scores.append(s)
            ranks.append(_rank_rows(s, self.heart))
            # HeaRT ranks the feature row in place: the node's next occurrence sees these ranks.
            feat[local] = ranks[-1]
        zero = scores[0] == 0
        for s in scores[1:]:
            zero &= s == 0
        del scores
        combined = ranks[0]
        for r in ranks[1:]:
            # The sum orders candidates exactly as the mean does, without its rounding.
            combined = torch.minimum(combined, r) if self.agg == "min" else combined.add_(r)
        del ranks
        n_scored = self.n - torch.count_nonzero(zero | masked, dim=1)
        keep = occ.slot[rows] >= 0
        full = keep & (n_scored >= self.half)
        picked = torch.empty(rows.numel(), self.half, dtype=torch.int64)
        if bool(full.any()):
            picked[full] = torch.topk(-combined[full], self.half, dim=1).indices
        for j in torch.nonzero(keep & ~full).flatten().tolist():
            r = int(rows[j])
            picked[j] = self._fill(combined[j], zero[j], masked[j], int(n_scored[j]),
                                   int(occ.slot[r]), int(occ.side[r]), int(occ.node[r]))
        sel = torch.nonzero(keep).flatten()
        slot, side, node = occ.slot[rows[sel]], occ.side[rows[sel]], occ.node[rows[sel]]
        for s in (0, 1):
            m = side == s
            pair = torch.stack([node[m].unsqueeze(1).expand(-1, self.half), picked[sel[m]]], 2)
            if s == 0:
                self.out[slot[m], :self.half] = pair
            else:
                self.out[slot[m], self.half:] = pair.flip(2)

    def _fill(self, combined: torch.Tensor, zero: torch.Tensor, masked: torch.Tensor,
              n_scored: int, slot: int, side: int, node: int) -> torch.Tensor:
        """The ``n_scored`` best candidates, then random zero-score candidates up to ``half``.

        Zero-score nodes are drawn without replacement while enough exist (HeaRT draws with
        replacement); if the graph has too few candidates at all, with replacement. A random
        candidate is never a true edge of the split (training, validation or test positive).
        """
        best = torch.topk(-combined, n_scored).indices
        for allowed in (zero & ~masked, ~masked):
            pool = torch.nonzero(allowed).flatten()
            pool = pool[~torch.from_numpy(self.true_edges.contains(np.full(pool.numel(), node),
                                                                   pool.numpy()))]
            if pool.numel():
                break
        else:
            raise ValueError(f"node {node} has no candidate negatives: every node is excluded "
                             f"(its neighbours, itself, the other endpoint and its positives)")
        need = self.half - n_scored
        # One generator per (seed, positive, side): the draw does not depend on batching.
        rng = np.random.default_rng([self.seed, slot, side])
        draw = rng.choice(pool.numel(), need, replace=need > pool.numel())
        return torch.cat([best, pool[torch.from_numpy(draw)]])


# ---------------------------------------------------------------------- storage
def save_negatives(negatives: torch.Tensor, path) -> None:
    """Write ``[P, K, 2]`` int64 negatives as ``.npy`` (no pickling), without an extra copy."""
    t = negatives if isinstance(negatives, torch.Tensor) else torch.as_tensor(negatives)
    if t.dim() != 3 or t.shape[2] != 2:
        raise ValueError(f"negatives must have shape [P, K, 2], got {list(t.shape)}")
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    np.save(path, t.to(torch.int64).contiguous().numpy(), allow_pickle=False)


def load_negatives(path) -> torch.Tensor:
    """Read negatives written by :func:`save_negatives` (or HeaRT's own ``.npy`` files):
    int64 ``[P, K, 2]``."""
    return read_index_npy(path, shape=(None, None, 2))
