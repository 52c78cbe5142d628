import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

from linkexit_fast import Graph, LinkSplit
from linkexit_fast import heart as H
from linkexit_fast.datasets import load_heart, synthetic
from linkexit_fast.heart import default_eps, generate_negatives, load_negatives, save_negatives


def slow_rank(row: np.ndarray, reproduce: bool) -> np.ndarray:
    """Reference ranking with scipy: positives ranked (HeaRT's convention when ``reproduce``),
    zero scores max + 1, excluded (negative) scores max + 2."""
    pos = row > 0
    if reproduce:
        r = rankdata(row[pos], method="min")
        r = r.max() - r + 1 if len(r) else r
    else:
        r = rankdata(-row[pos], method="min")
    m = r.max() if len(r) else 0
    out = np.where(row == 0, m + 1, m + 2).astype(np.float64)
    out[pos] = r
    return out


# ---------------------------------------------------------------------- small graphs
def featured_split(seed: int = 0, n: int = 60) -> LinkSplit:
    """A synthetic split with non-negative (binary) features, like Planetoid's."""
    split = synthetic(num_nodes=n, avg_degree=4.0, num_features=8, seed=seed)
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 12)) < 0.3).astype(np.float32)
    x[n - 1] = 0.0  # a featureless node, as CiteSeer has
    return dataclasses.replace(split, graph=split.graph.with_features(x))


def with_repeated_endpoints(split: LinkSplit, seed: int = 0) -> LinkSplit:
    """Validation and test positives drawn from few nodes, so most endpoints recur (HeaRT's
    feature-row reuse then matters) and test shares endpoints with validation."""
    rng = np.random.default_rng(seed)
    edges = edge_keys(split.graph)

    def draw(count):
        out = []
        while len(out) < count:
            a, b = (int(v) for v in rng.choice(12, 2, replace=False))
            if (a, b) not in edges:
                out.append((a, b))
        return torch.tensor(out, dtype=torch.int64)

    return dataclasses.replace(split, valid_pos=draw(10), test_pos=draw(14))


def tiny_split(edges, num_nodes, valid, test=None) -> LinkSplit:
    e = torch.tensor(edges, dtype=torch.int64).reshape(-1, 2)
    g = Graph.from_edge_index(e.T, num_nodes=num_nodes)
    t = lambda p: torch.tensor(p, dtype=torch.int64).reshape(-1, 2)  # noqa: E731
    return LinkSplit("tiny", g, e, t(valid), t(test if test is not None else valid))


def edge_keys(graph: Graph) -> set:
    return set(zip(graph.row.tolist(), graph.col.tolist()))


def check_layout_and_exclusions(neg: torch.Tensor, pos: torch.Tensor, k: int, true_edges: set):
    assert neg.dtype == torch.int64 and tuple(neg.shape) == (len(pos), k, 2)
    half = k // 2
    assert torch.equal(neg[:, :half, 0], pos[:, :1].expand(-1, half))
    assert torch.equal(neg[:, half:, 1], pos[:, 1:].expand(-1, half))
    src_x, dst_x = neg[:, :half, 1], neg[:, half:, 0]
    assert not bool((neg[:, :, 0] == neg[:, :, 1]).any()), "self pair"
    assert not bool((src_x == pos[:, 1:]).any()), "the other endpoint (a, b) as a negative"
    assert not bool((dst_x == pos[:, :1]).any()), "the other endpoint (a, b) as a negative"
    pairs = set(zip(neg[:, :, 0].flatten().tolist(), neg[:, :, 1].flatten().tolist()))
    assert not (pairs & true_edges), "a true edge as a negative"


# ---------------------------------------------------------------------- slow reference
def slow_reference(split: LinkSplit, which: str, k: int, cn: str, agg: str,
                   reproduce: bool, eps: float):
    """HeaRT's procedure one endpoint at a time on dense matrices. Rows whose halves needed a
    random fill are returned as None (only the ranked part is comparable)."""
    g = split.graph
    n = g.num_nodes
    nbrs = [g.neighbors(u).tolist() for u in range(n)]
    adj = np.zeros((n, n), dtype=bool)
    adj[g.row.numpy(), g.col.numpy()] = True
    deg = adj.sum(1)
    if cn == "CN":
        s_cn = (adj.astype(np.float64) @ adj).astype(np.float32)
    elif reproduce:  # HeaRT: each common neighbour adds 1 / deg(candidate), in float32
        s_cn = np.zeros((n, n), dtype=np.float32)
        recip = np.zeros(n, dtype=np.float32)
        recip[deg > 0] = np.float32(1.0) / deg[deg > 0].astype(np.float32)
        for u in range(n):
            for z in nbrs[u]:
                for x in nbrs[z]:
                    s_cn[u, x] = np.float32(s_cn[u, x] + recip[x])
    else:  # textbook resource allocation
        s_cn = np.zeros((n, n), dtype=np.float64)
        for u in range(n):
            for z in nbrs[u]:
                for x in nbrs[z]:
                    s_cn[u, x] += 1.0 / deg[z]
        s_cn = s_cn.astype(np.float32)
    s_ppr = H._ppr_rows(g, H._to_scipy(g), torch.arange(n), 0.15, eps).numpy()
    x = g.x.numpy().astype(np.float64)
    norm = np.linalg.norm(x, axis=1)
    norm[norm == 0] = 1.0
    xn = x / norm[:, None]
    feat = np.maximum(xn @ xn.T, 0.0).astype(np.float32)

    def corrupt(u, o, excl):
        mask = excl[u].copy()
        mask[u] = mask[o] = True
        rows = [np.where(mask, -1.0, s_cn[u]).astype(np.float32),
                np.where(mask, -1.0, s_ppr[u]).astype(np.float32)]
        if reproduce:
            feat[u][mask] = -1.0  # HeaRT writes into the shared similarity row ...
            rows.append(feat[u])
        else:
            rows.append(np.where(mask, -1.0, feat[u]).astype(np.float32))
        zero = np.logical_and.reduce([r == 0 for r in rows])
        ranks = [slow_rank(r, reproduce).astype(np.float32) for r in rows]
        if reproduce:
            feat[u] = ranks[-1]  # ... and overwrites it with the ranks
        comb = np.min(ranks, 0) if agg == "min" else np.mean(ranks, 0)
        n_scored = n - zero.sum() - mask.sum()
        if n_scored < k // 2:
            return None
        return torch.topk(torch.from_numpy(-comb), k // 2).indices

    excl_valid = adj.copy()
    excl_test = adj.copy()
    v = split.valid_pos.numpy()
    excl_test[v[:, 0], v[:, 1]] = excl_test[v[:, 1], v[:, 0]] = True
    if which == "test" and reproduce:
        for a, b in v.tolist():  # HeaRT generates the validation negatives first
            corrupt(a, b, excl_valid)
            corrupt(b, a, excl_valid)
    pos = split.valid_pos if which == "valid" else split.test_pos
    excl = excl_valid if which == "valid" else excl_test
    rows = []
    for a, b in pos.tolist():
        sa, sb = corrupt(a, b, excl), corrupt(b, a, excl)
        rows.append(None if sa is None or sb is None else (sa, sb))
    return rows


@pytest.mark.parametrize("which", ["valid", "test"])
@pytest.mark.parametrize("reproduce", [True, False])
@pytest.mark.parametrize("cn,agg", [("RA", "min"), ("RA", "mean"), ("CN", "min")])
def test_matches_slow_reference(which, reproduce, cn, agg):
    split = with_repeated_endpoints(featured_split(seed=1))
    k = 16
    neg = generate_negatives(split, which, k=k, cn=cn, agg=agg, eps=1e-6, progress=False,
                             reproduce_heart=reproduce, batch_size=7)
    ref = slow_reference(split, which, k, cn, agg, reproduce, eps=1e-6)
    compared = 0
    for i, r in enumerate(ref):
        if r is not None:
            assert torch.equal(neg[i, :k // 2, 1], r[0]), f"row {i}, source half"
            assert torch.equal(neg[i, k // 2:, 0], r[1]), f"row {i}, target half"
            compared += 1
    assert compared >= len(ref) - 2


@pytest.mark.parametrize("which", ["valid", "test"])
def test_layout_and_exclusions(which):
    split = featured_split(seed=2)
    k = 20
    neg = generate_negatives(split, which, k=k, progress=False)
    true_edges = edge_keys(split.graph)
    if which == "test":
        v = split.valid_pos.tolist()
        true_edges |= {(a, b) for a, b in v} | {(b, a) for a, b in v}
    pos = split.valid_pos if which == "valid" else split.test_pos
    check_layout_and_exclusions(neg, pos, k, true_edges)


def test_deterministic_per_seed_and_independent_of_batch_size():
    split = featured_split(seed=3)
    a = generate_negatives(split, "test", k=30, progress=False)
    b = generate_negatives(split, "test", k=30, progress=False)
    c = generate_negatives(split, "test", k=30, progress=False, batch_size=1)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_fill_with_random_zero_score_nodes():
    # Path 0-1-2 and isolated nodes 3..9: corrupting 0 (or 2) leaves only zero-score candidates.
    split = tiny_split([[0, 1], [1, 2]], 10, valid=[[0, 2]])
    neg = generate_negatives(split, "valid", k=8, progress=False, seed=0)
    check_layout_and_exclusions(neg, split.valid_pos, 8, edge_keys(split.graph))
    for half in (neg[0, :4, 1], neg[0, 4:, 0]):
        assert set(half.tolist()) <= set(range(3, 10)) and len(set(half.tolist())) == 4
    again = generate_negatives(split, "valid", k=8, progress=False, seed=0)
    other = [generate_negatives(split, "valid", k=8, progress=False, seed=s) for s in (1, 2, 3)]
    assert torch.equal(neg, again)
    assert any(not torch.equal(neg, o) for o in other)


def test_scored_candidates_come_before_the_fill():
    # Path 0-1-2-3 and isolated 4..9: for (0, 3) only node 2 scores (CN and PPR via node 1).
    split = tiny_split([[0, 1], [1, 2], [2, 3]], 10, valid=[[0, 3]])
    neg = generate_negatives(split, "valid", k=8, progress=False)
    assert neg[0, 0, 1] == 2 and neg[0, 4, 0] == 1
    assert set(neg[0, 1:4, 1].tolist()) <= set(range(4, 10))


def test_too_few_candidates_repeat_and_none_is_an_error():
    split = tiny_split([[0, 1]], 4, valid=[[0, 2]])
    neg = generate_negatives(split, "valid", k=6, progress=False)
    assert neg[0, :3, 1].tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="node 0 has no candidate negatives"):
        generate_negatives(tiny_split([[0, 1]], 3, valid=[[0, 2]]), "valid", k=2, progress=False)


def test_argument_errors():
    split = featured_split()
    with pytest.raises(ValueError, match="which must be 'valid' or 'test', got 'train'"):
        generate_negatives(split, "train", progress=False)
    with pytest.raises(ValueError, match="k must be a positive even integer, got 5"):
        generate_negatives(split, k=5, progress=False)
    with pytest.raises(ValueError, match="cn must be 'RA' or 'CN', got 'AA'"):
        generate_negatives(split, cn="AA", progress=False)
    with pytest.raises(ValueError, match="agg must be 'min' or 'mean', got 'max'"):
        generate_negatives(split, agg="max", progress=False)
    with pytest.raises(ValueError, match=r"valid positive 0 is a self-pair \[4, 4\]"):
        generate_negatives(tiny_split([[0, 1]], 5, valid=[[4, 4]]), progress=False)


def test_default_eps_by_graph_size():
    small = featured_split().graph
    assert default_eps(small) == 1e-7
    ring = torch.arange(200_001)
    big = Graph.from_edge_index(torch.stack([ring[:-1], ring[1:]]))
    assert default_eps(big) == 1e-5


# ---------------------------------------------------------------------- building blocks
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([-1.0, 0.0, 0.25, 0.5, 1.0, 3.0]), min_size=6,
                         max_size=6), min_size=1, max_size=4),
       st.booleans(), st.data())
def test_ranks_match_scipy_and_survive_one_more_exclusion(rows, reproduce, data):
    scores = torch.tensor(rows, dtype=torch.float32)

    got = H._rank_rows(scores, reproduce).numpy()
    for i, row in enumerate(scores.numpy()):
        assert got[i].tolist() == slow_rank(row, reproduce).tolist()
    other = torch.tensor(data.draw(st.lists(st.integers(0, 5), min_size=len(rows),
                                            max_size=len(rows))))
    s, c = H._exclude_one(scores, H._rank_counts(scores, reproduce), other, reproduce)
    fresh = scores.clone()
    fresh[torch.arange(len(rows)), other] = -1.0
    assert torch.equal(s, fresh)
    assert torch.equal(H._ranks(s, c, reproduce), H._rank_rows(fresh, reproduce))


def test_ppr_push_approaches_exact_pagerank():
    split = featured_split(seed=4)
    g = split.graph
    n, alpha = g.num_nodes, 0.15
    a = g.to_scipy().toarray().astype(np.float64)
    deg = np.maximum(a.sum(0), 1.0)
    # p = alpha * sum_t ((1 - alpha) A D^-1)^t e_s, column s of the matrix inverse.
    exact = alpha * np.linalg.inv(np.eye(n) - (1 - alpha) * a / deg[None, :])
    got = H._ppr_rows(g, H._to_scipy(g), torch.arange(n), alpha, 1e-9).numpy()
    assert np.abs(got - exact.T).max() < 1e-6
    coarse = H._ppr_rows(g, H._to_scipy(g), torch.arange(n), alpha, 1e-2).numpy()
    assert (coarse > 0).sum() < (got > 0).sum()  # a looser tolerance touches fewer nodes


def test_save_and_load_roundtrip(tmp_path):
    neg = torch.randint(0, 100, (5, 6, 2))
    path = tmp_path / "sub" / "negs.npy"
    save_negatives(neg, path)
    back = load_negatives(path)
    assert back.dtype == torch.int64 and torch.equal(back, neg)
    np.save(tmp_path / "bad.npy", np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=r"must have shape \[\*, \*, 2\], got \[3, 4\]"):
        load_negatives(tmp_path / "bad.npy")
    with pytest.raises(FileNotFoundError, match="node-id file not found"):
        load_negatives(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match=r"shape \[P, K, 2\], got \[2, 3\]"):
        save_negatives(torch.zeros(2, 3, dtype=torch.int64), tmp_path / "x.npy")


# ---------------------------------------------------------------------- real data
def test_citeseer_valid_overlaps_official_heart_negatives(data_root):
    split = load_heart("citeseer", data_root)
    official = split.valid_neg
    neg = generate_negatives(split, "valid", progress=False)
    assert neg.shape == official.shape
    n = split.graph.num_nodes
    ours = neg[..., 0] * n + neg[..., 1]
    theirs = official[..., 0] * n + official[..., 1]
    overlap = torch.tensor([torch.isin(ours[i], theirs[i]).sum().item() / ours.shape[1]
                            for i in range(len(ours))])
    assert float(overlap.mean()) >= 0.99, float(overlap.mean())
    check_layout_and_exclusions(neg, split.valid_pos, 500, edge_keys(split.graph))
