"""The Graph invariants (sorted, unique, symmetric, loop-free CSR; finite float32 x), enforced on
every way a Graph comes to exist, and the meaning of values in every sparse input format.

Expected graphs come from scipy (``sum_duplicates`` / ``eliminate_zeros`` / ``A + A.T``) or PyG's
``gcn_norm``, never from linkexit_fast itself.
"""
import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings, strategies as st

from conftest import require_optional
from linkexit_fast import Graph
from linkexit_fast.models import NormAdj

FIX = r"Graph\.from_csr"


# ---------------------------------------------------------------- independent references
def canonical_csr(n, rows, cols, vals=None):
    """Sorted CSR (indptr, indices) of the undirected graph scipy sees in entries (rows, cols,
    vals): duplicates summed, zero sums dropped, both directions, no diagonal. ``vals=None``:
    every entry is an edge."""
    data = np.ones(len(rows)) if vals is None else np.asarray(vals, dtype=np.float64)
    a = sp.coo_matrix((data, (np.asarray(rows), np.asarray(cols))), shape=(n, n)).tocsr()
    a.eliminate_zeros()
    b = (a != 0).astype(np.float64)
    s = (b + b.T).tocsr()
    s = (s - sp.diags(s.diagonal())).tocsr()
    s.eliminate_zeros()
    s.sort_indices()
    return s.indptr.astype(np.int64), s.indices.astype(np.int64)


def undirected_set(indptr, indices):
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    return {(int(u), int(v)) for u, v in zip(rows, indices) if u < v}


def assert_graph_is(g, indptr, indices):
    assert g.rowptr.tolist() == indptr.tolist()
    assert g.col.tolist() == indices.tolist()


def dense_gcn_pyg(edge_index, n):
    """Dense Â = D^-1/2 (A + I) D^-1/2 from PyG's gcn_norm."""
    require_optional(importlib.util.find_spec("torch_geometric") is not None, "torch_geometric")
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    ei, w = gcn_norm(edge_index, None, n, add_self_loops=True)
    return torch.zeros(n, n).index_put_((ei[0], ei[1]), w, accumulate=True)


def dense_ours(g):
    return NormAdj(g, self_loops=True) @ torch.eye(g.num_nodes)


def path_edges(n):
    """Both directions of the path 0-1-...-(n-1), ``[2, 2(n-1)]``."""
    u = torch.arange(n - 1)
    return torch.cat([torch.stack([u, u + 1]), torch.stack([u + 1, u])], 1)


# ---------------------------------------------------------------- the reported inputs
def test_unsorted_csr_is_refused_and_from_csr_then_remove_edges_works():
    rowptr = torch.tensor([0, 1, 3, 5, 7, 9, 10])
    col = torch.tensor([1, 2, 0, 1, 3, 2, 4, 5, 3, 4])  # path 0-5, rows 1 and 4 unsorted
    with pytest.raises(ValueError, match=rf"Graph\.col is not sorted within row 1 .*{FIX}"):
        Graph(rowptr, col, 6)
    g = Graph.from_csr(rowptr, col)
    assert undirected_set(g.rowptr.numpy(), g.col.numpy()) == {(i, i + 1) for i in range(5)}
    h = g.remove_edges([[4, 5]])
    assert undirected_set(h.rowptr.numpy(), h.col.numpy()) == {(i, i + 1) for i in range(4)}
    assert h.neighbors(5).tolist() == []


def test_duplicate_entry_is_refused_and_canonicalised_matches_pyg():
    # path 0-1-2-3 with entry 0->1 stored twice
    rowptr, col = torch.tensor([0, 2, 4, 6, 7]), torch.tensor([1, 1, 0, 2, 1, 3, 2])
    with pytest.raises(ValueError, match=rf"duplicate entry 0->1 .*{FIX}"):
        Graph(rowptr, col, 4)
    g = Graph.from_csr(rowptr, col)
    expected = dense_gcn_pyg(path_edges(4), 4)
    assert expected[0, 1] == pytest.approx(1 / np.sqrt(2 * 3), abs=1e-6)  # 0.4082, not 0.5774
    torch.testing.assert_close(dense_ours(g), expected)


def test_stored_self_loop_is_refused_and_canonicalised_matches_pyg():
    rowptr, col = torch.tensor([0, 2, 4, 6, 7]), torch.tensor([0, 1, 0, 2, 1, 3, 2])
    with pytest.raises(ValueError, match=rf"self-loop at node 0 .*{FIX}"):
        Graph(rowptr, col, 4)
    g = Graph.from_csr(rowptr, col)
    assert g.num_self_loops_removed == 1
    expected = dense_gcn_pyg(path_edges(4), 4)
    assert expected[0, 0] == pytest.approx(0.5)  # not 0.6667
    torch.testing.assert_close(dense_ours(g), expected)


def test_one_directional_entry_is_refused():
    # 0->1, 1->0, 1->2 but no 2->1
    with pytest.raises(ValueError, match=rf"entry 1->2 has no reverse 2->1.*{FIX}"):
        Graph(torch.tensor([0, 1, 3, 3]), torch.tensor([1, 0, 2]), 3)
    g = Graph.from_csr(torch.tensor([0, 1, 3, 3]), torch.tensor([1, 0, 2]))
    assert undirected_set(g.rowptr.numpy(), g.col.numpy()) == {(0, 1), (1, 2)}


@pytest.mark.parametrize("bad, msg", [(float("nan"), r"non-finite value \(nan\) at row 2"),
                                      (float("inf"), r"non-finite value \(inf\) at row 2")])
def test_non_finite_features_are_refused(bad, msg):
    rowptr, col = torch.tensor([0, 1, 3, 4]), torch.tensor([1, 0, 2, 1])
    x = torch.ones(3, 2)
    x[2, 1] = bad
    with pytest.raises(ValueError, match=msg):
        Graph(rowptr, col, 3, x)
    with pytest.raises(ValueError, match=msg):
        Graph.from_csr(rowptr, col, x=x)
    with pytest.raises(ValueError, match=msg):
        Graph(rowptr, col, 3).with_features(x)


def test_float64_features_are_refused_directly_and_converted_by_from_csr():
    rowptr, col = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
    x = torch.tensor([[0.1], [0.2]], dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"x is float64; Graph needs float32 \({FIX}"):
        Graph(rowptr, col, 2, x)
    g = Graph.from_csr(rowptr, col, x=x.numpy())
    assert g.x.dtype == torch.float32 and torch.equal(g.x, x.float())
    with pytest.raises(ValueError, match="x holds 1e\\+300 at row 1, column 0, beyond float32's range"):
        Graph.from_csr(rowptr, col, x=np.array([[0.0], [1e300]]))


def test_replace_and_trusted_copies_stay_valid():
    import dataclasses
    g = Graph.from_edge_index(path_edges(4), num_nodes=4)
    assert g.deg.tolist() == [1, 2, 2, 1]
    with pytest.raises(ValueError, match="self-loop at node 0"):
        dataclasses.replace(g, col=torch.tensor([0, 0, 2, 1, 3, 2]))
    h = dataclasses.replace(g, rowptr=torch.tensor([0, 1, 2, 2, 2]), col=torch.tensor([1, 0]))
    assert h.deg.tolist() == [1, 1, 0, 0] and g.deg.tolist() == [1, 2, 2, 1]  # no shared cache
    for copy in (g.to("cpu"), g.with_features(np.ones((4, 2))), g.remove_edges([[2, 1]])):
        Graph(copy.rowptr, copy.col, copy.num_nodes, copy.x)  # passes the full check


@pytest.mark.parametrize("n, ok", [(25.7, False), (2.0, False), (True, False), (-1, False),
                                   (np.int64(2), True), (np.int32(2), True)])
def test_num_nodes_must_be_a_positive_int(n, ok):
    rowptr, col = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
    if ok:
        g = Graph(rowptr, col, n)
        assert type(g.num_nodes) is int and g.num_nodes == 2
    else:
        with pytest.raises(ValueError, match=r"Graph\.num_nodes must be a positive int, got"):
            Graph(rowptr, col, n)
    with pytest.raises(ValueError, match="num_nodes must be a positive int, got 25.7"):
        Graph.from_edge_index(torch.tensor([[0], [1]]), num_nodes=25.7)


def test_from_csr_refuses_a_malformed_csr():
    with pytest.raises(ValueError, match=r"rowptr must rise from 0 to len\(col\)=2"):
        Graph.from_csr([0, 1, 3], [1, 0])
    with pytest.raises(ValueError, match="col holds node id 2, out of range for num_nodes=2"):
        Graph.from_csr([0, 1, 2], [1, 2])
    with pytest.raises(ValueError, match="num_nodes=3 needs 4"):
        Graph.from_csr([0, 1, 2], [1, 0], num_nodes=3)
    with pytest.raises(TypeError, match="rowptr must hold integer offsets"):
        Graph.from_csr(np.array([0.0, 1.0, 2.0]), [1, 0])


def test_remove_edges_validates_pairs():
    g = Graph.from_edge_index(path_edges(4), num_nodes=4)
    with pytest.raises(ValueError, match=r"pairs must have shape \[\*, 2\]"):
        g.remove_edges([[0, 1, 2]])
    with pytest.raises(ValueError, match="pairs holds node id 4, out of range for num_nodes=4"):
        g.remove_edges([[3, 4]])
    with pytest.raises(ValueError, match="pairs holds negative node id"):
        g.remove_edges([[-1, 0]])
    assert g.remove_edges(torch.empty(0, 2, dtype=torch.int64)).num_undirected_edges == 3


def test_checkpoint_with_a_corrupted_graph_is_refused_naming_the_file(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    import linkexit_fast as lf
    from linkexit_fast.datasets import synthetic
    from linkexit_fast.train import build_model

    split = synthetic(60, 4, 3, 2, seed=0)
    torch.manual_seed(0)
    path = lf.save(build_model(split, hidden=4, layers=1), tmp_path / "ck", graph=split.graph)
    assert lf.load(path).graph.num_undirected_edges == split.graph.num_undirected_edges
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    rowptr, col = tensors["graph.rowptr"], tensors["graph.col"]
    u = int(torch.nonzero(rowptr.diff() >= 2)[0])  # a row with two entries to swap
    a = int(rowptr[u])
    bad_col = col.clone()
    bad_col[a], bad_col[a + 1] = col[a + 1], col[a]
    nan_x = tensors["graph.x"].clone()
    nan_x[3, 1] = float("nan")
    for name, corrupt, msg in [("unsorted", {"graph.col": bad_col}, rf"not sorted within row {u} "),
                               ("nan", {"graph.x": nan_x}, r"non-finite value \(nan\) at row 3, column 1")]:
        target = tmp_path / f"{name}.safetensors"
        save_file({**tensors, **corrupt}, str(target), metadata=meta)
        with pytest.raises(ValueError, match=rf"{name}\.safetensors: .*{msg}"):
            lf.load(target)


# ---------------------------------------------------------------- stored zeros and weights
def test_scipy_stored_zeros_are_not_edges():
    rows, cols = np.array([0, 1, 1, 2, 0, 3]), np.array([1, 0, 2, 1, 3, 0])
    vals = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])  # explicit zeros at (0, 3) and (3, 0)
    a = sp.csr_matrix((vals, (rows, cols)), shape=(4, 4))
    assert a.nnz == 6  # the zeros are stored
    ref = a.copy()
    ref.eliminate_zeros()
    expected = undirected_set(ref.indptr, ref.indices)
    assert (0, 3) not in expected
    for obj in (a, a.tocoo(), a.tocsc(), sp.csr_array(a)):
        g = Graph.from_any(obj)
        assert undirected_set(g.rowptr.numpy(), g.col.numpy()) == expected
    coo = torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(vals), (4, 4),
                                  check_invariants=True)
    for obj in (coo, coo.coalesce().to_sparse_csr(), coo.coalesce().to_sparse_csc()):
        g = Graph.from_any(obj)
        assert undirected_set(g.rowptr.numpy(), g.col.numpy()) == expected


def test_weights_other_than_0_1_are_refused():
    a = sp.random(10, 10, density=0.3, format="lil", random_state=0)
    a[a.nonzero()] = 1
    a[2, 7] = 0.5
    a = a.tocsr()
    msg = (r"scipy adjacency has edge weights other than 0/1 \(e\.g\. 0\.5 at \(2, 7\)\); linkexit_fast "
           r"models use the unweighted GCN normalisation: binarise first, e\.g\. A\.data\[:\] = 1")
    with pytest.raises(ValueError, match=msg):
        Graph.from_any(a)
    twice = sp.coo_matrix((np.ones(2), ([0, 0], [1, 1])), shape=(2, 2))  # summed: 2
    with pytest.raises(ValueError, match=r"e\.g\. 2 at \(0, 1\), the sum of its 2 duplicate entries"):
        Graph.from_any(twice)
    t = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 0]]), torch.tensor([1.0, -1.0]), (2, 2),
                                check_invariants=True)
    with pytest.raises(ValueError, match=r"torch\.sparse_coo adjacency has edge weights other than 0/1"):
        Graph.from_any(t)

    class Weighted:  # duck-typed SparseTensor
        def coo(self):
            return torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([1.0, float("nan")])

        def sparse_sizes(self):
            return (2, 2)

    with pytest.raises(ValueError, match=r"SparseTensor has edge weights other than 0/1 \(e\.g\. nan at \(1, 0\)"):
        Graph.from_any(Weighted())


# ---------------------------------------------------------------- every format, hypothesis
# Per position, the values stored for it (uncoalesced duplicates included); each list sums to 0 or 1.
GROUPS = [[1.0], [0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, -1.0], [0.5, 0.5], [0.25, 0.75]]


def random_entries(n, m, seed):
    """Entries (rows, cols, vals) of ``m`` distinct positions, each stored as one of GROUPS, shuffled."""
    rng = np.random.default_rng(seed)
    pos = rng.choice(n * n, size=min(m, n * n), replace=False)
    rows, cols, vals = [], [], []
    for p in pos:
        for v in GROUPS[rng.integers(len(GROUPS))]:
            rows.append(p // n), cols.append(p % n), vals.append(v)
    order = rng.permutation(len(rows))
    return (np.array(rows, dtype=np.int64)[order], np.array(cols, dtype=np.int64)[order],
            np.array(vals, dtype=np.float64)[order])


class FakeSparseTensor:  # duck-typed torch_sparse.SparseTensor
    def __init__(self, row, col, value, n):
        self.row, self.col, self.value, self.n = row, col, value, n

    def coo(self):
        return self.row, self.col, self.value

    def sparse_sizes(self):
        return (self.n, self.n)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 12), m=st.integers(0, 40), seed=st.integers(0, 10_000))
def test_every_format_gives_the_scipy_canonical_graph(n, m, seed):
    rows, cols, vals = random_entries(n, m, seed)
    valued = canonical_csr(n, rows, cols, vals)
    index_only = canonical_csr(n, rows, cols)
    r, c, v = torch.from_numpy(rows), torch.from_numpy(cols), torch.from_numpy(vals)
    coo_np = sp.coo_matrix((vals, (rows, cols)), shape=(n, n))
    coo_t = torch.sparse_coo_tensor(torch.stack([r, c]), v, (n, n), check_invariants=True)
    cases = [(coo_np, valued), (coo_np.tocsr(), valued), (coo_np.tocsc(), valued),
             (sp.coo_array(coo_np), valued),
             (coo_t, valued), (coo_t.coalesce().to_sparse_csr(), valued),
             (coo_t.coalesce().to_sparse_csc(), valued),
             # bool values: duplicates are or-ed, as torch's coalesce() does
             (torch.sparse_coo_tensor(torch.stack([r, c]), v != 0, (n, n), check_invariants=True),
              canonical_csr(n, rows[vals != 0], cols[vals != 0])),
             (FakeSparseTensor(r, c, v, n), valued), (FakeSparseTensor(r, c, None, n), index_only)]
    if importlib.util.find_spec("torch_geometric") is not None:
        from torch_geometric.data import Data
        cases += [(Data(edge_index=torch.stack([r, c]), edge_weight=v.float(), num_nodes=n), valued),
                  (Data(edge_index=torch.stack([r, c]), num_nodes=n), index_only)]
    for obj, (indptr, indices) in cases:
        assert_graph_is(Graph.from_any(obj), indptr, indices)
    for edges in (torch.stack([r, c]), np.stack([rows, cols])):
        assert_graph_is(Graph.from_any(edges, num_nodes=n), *index_only)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 12), m=st.integers(1, 30), seed=st.integers(0, 10_000),
       weight=st.sampled_from([0.5, 2.0, -1.0, 3.0, float("nan")]))
def test_every_valued_format_refuses_a_weight(n, m, seed, weight):
    rows, cols, vals = random_entries(n, m, seed)
    rows, cols, vals = np.append(rows, 0), np.append(cols, 1), np.append(vals, weight)
    keep = ~((rows == 0) & (cols == 1)) | (np.arange(len(rows)) == len(rows) - 1)  # (0, 1) holds only `weight`
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    r, c, v = torch.from_numpy(rows), torch.from_numpy(cols), torch.from_numpy(vals)
    coo_np = sp.coo_matrix((vals, (rows, cols)), shape=(n, n))
    coo_t = torch.sparse_coo_tensor(torch.stack([r, c]), v, (n, n), check_invariants=True)
    for obj in (coo_np, coo_np.tocsr(), coo_t, coo_t.coalesce().to_sparse_csr(), FakeSparseTensor(r, c, v, n)):
        with pytest.raises(ValueError, match="edge weights other than 0/1"):
            Graph.from_any(obj)


# ---------------------------------------------------------------- corrupted direct construction
def random_canonical(n, m, seed):
    rng = np.random.default_rng(seed)
    return canonical_csr(n, rng.integers(0, n, m), rng.integers(0, n, m))


def insert_entry(indptr, indices, u, v):
    """The CSR with entry u->v added at the sorted place of row u (duplicates kept)."""
    lo, hi = indptr[u], indptr[u + 1]
    at = lo + int(np.searchsorted(indices[lo:hi], v))
    new_ptr = indptr.copy()
    new_ptr[u + 1:] += 1
    return new_ptr, np.insert(indices, at, v)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 15), m=st.integers(3, 40), seed=st.integers(0, 10_000),
       kind=st.sampled_from(["swap", "duplicate", "one_direction", "self_loop", "nan", "inf", "float64"]))
def test_a_corrupted_direct_graph_raises_value_error(n, m, seed, kind):
    indptr, indices = random_canonical(n, m, seed)
    x = np.random.default_rng(seed).standard_normal((n, 3)).astype(np.float32)
    Graph(torch.from_numpy(indptr), torch.from_numpy(indices), n, torch.from_numpy(x))  # the control passes
    rng = np.random.default_rng(seed + 1)
    deg = np.diff(indptr)
    if kind == "swap":
        if not (deg >= 2).any():
            return
        u = int(rng.choice(np.flatnonzero(deg >= 2)))
        i = indptr[u] + int(rng.integers(deg[u] - 1))
        indices = indices.copy()
        indices[i], indices[i + 1] = indices[i + 1], indices[i]
        msg = rf"not sorted within row {u} "
    elif kind == "duplicate":
        if not indices.size:
            return
        i = int(rng.integers(indices.size))
        u, v = int(np.searchsorted(indptr, i, side="right") - 1), int(indices[i])
        indptr, indices = insert_entry(indptr, indices, u, v)
        msg = rf"duplicate entry {u}->{v} "
    elif kind == "one_direction":
        dense = np.zeros((n, n), dtype=bool)
        dense[np.repeat(np.arange(n), deg), indices] = True
        free = np.argwhere(~dense & ~np.eye(n, dtype=bool))
        if not len(free):
            return
        u, v = (int(t) for t in free[rng.integers(len(free))])
        indptr, indices = insert_entry(indptr, indices, u, v)
        msg = "has no reverse"
    elif kind == "self_loop":
        u = int(rng.integers(n))
        indptr, indices = insert_entry(indptr, indices, u, u)
        msg = rf"self-loop at node {u} "
    elif kind == "float64":
        x = x.astype(np.float64)
        msg = "x is float64"
    else:
        x[rng.integers(n), rng.integers(3)] = float(kind)
        msg = rf"non-finite value \({kind}\)"
    with pytest.raises(ValueError, match=msg):
        Graph(torch.from_numpy(indptr), torch.from_numpy(indices), n, torch.from_numpy(x))
    if kind in ("nan", "inf"):
        return
    # from_csr canonicalises the same input into what scipy makes of it
    g = Graph.from_csr(indptr, indices, x=x)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    assert_graph_is(g, *canonical_csr(n, rows, indices))
    assert g.x.dtype == torch.float32 and np.array_equal(g.x.numpy(), x.astype(np.float32))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 15), m=st.integers(0, 40), p=st.integers(0, 10), seed=st.integers(0, 10_000))
def test_remove_edges_removes_exactly_the_pairs(n, m, p, seed):
    indptr, indices = random_canonical(n, m, seed)
    g = Graph(torch.from_numpy(indptr), torch.from_numpy(indices), n)
    edges = undirected_set(indptr, indices)
    pairs = np.random.default_rng(seed).integers(0, n, (p, 2))  # mostly non-edges ...
    k = min(p // 2, len(edges))
    pairs[:k] = np.array(sorted(edges)[:k], dtype=np.int64).reshape(k, 2)[:, ::-1]  # ... and edges, reversed
    dropped = {(min(u, v), max(u, v)) for u, v in pairs.tolist()}
    h = g.remove_edges(pairs)
    assert undirected_set(h.rowptr.numpy(), h.col.numpy()) == edges - dropped
    Graph(h.rowptr, h.col, n)  # the trusted result is a valid Graph
