import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings, strategies as st

from linkexit_fast import Graph


def _edges(n, e, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, e), generator=g)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), e=st.integers(0, 80), seed=st.integers(0, 10_000))
def test_from_edge_index_is_symmetric_sorted_dedup(n, e, seed):
    ei = _edges(n, e, seed)
    g = Graph.from_edge_index(ei, num_nodes=n)
    dense = torch.zeros(n, n, dtype=torch.bool)
    dense[ei[0], ei[1]] = True
    dense |= dense.T.clone()
    dense.fill_diagonal_(False)
    assert g.num_undirected_edges == int(dense.sum()) // 2 and g.num_edges == int(dense.sum())
    rebuilt = torch.zeros(n, n, dtype=torch.bool)
    rebuilt[g.row, g.col] = True
    assert torch.equal(rebuilt, dense)
    keys = g.row * n + g.col
    assert torch.all(keys[1:] > keys[:-1])  # sorted, no duplicates
    assert g.num_self_loops_removed == int((ei[0] == ei[1]).sum())
    inp = torch.zeros(n, n, dtype=torch.bool)
    inp[ei[0], ei[1]] = True
    inp.fill_diagonal_(False)
    assert g.num_reverse_edges_added == int((inp & ~inp.T).sum())  # pairs whose reverse was absent


def test_normalisations():
    g = Graph.from_edge_index(torch.tensor([[0, 1, 1], [1, 2, 2]]), num_nodes=4)
    assert g.deg.tolist() == [1, 2, 1, 0]
    assert torch.allclose(g.dinv(True), torch.tensor([2, 3, 2, 1.0]).pow(-0.5))
    assert torch.allclose(g.dinv(False), torch.tensor([1, 2 ** -0.5, 1, 0.0]))


def test_all_formats_give_the_same_graph(tmp_path):
    ei = _edges(20, 60, 1)
    ref = Graph.from_edge_index(ei, num_nodes=20)
    n = 20
    # Valued formats sum repeated positions (a repeated pair would be a weight of 2, refused), so
    # they get each pair once; the index-only formats below keep the repeats.
    uniq = torch.unique(ei, dim=1)
    mat = sp.coo_matrix((np.ones(uniq.shape[1]), (uniq[0].numpy(), uniq[1].numpy())), shape=(n, n)).tocsr()
    coo = torch.sparse_coo_tensor(uniq, torch.ones(uniq.shape[1]), (n, n))

    class FakeData:  # duck-typed PyG Data
        edge_index, num_nodes, x = ei, n, None

    class FakeSparseTensor:  # duck-typed torch_sparse.SparseTensor
        def coo(self):
            return ei[0], ei[1], None

        def sparse_sizes(self):
            return (n, n)

    path = tmp_path / "edges.csv"
    path.write_text("source,target\n" + "\n".join(f"{u},{v}" for u, v in ei.T.tolist()))
    variants = [Graph.from_any(mat), Graph.from_any(coo), Graph.from_any(coo.to_sparse_csr()),
                Graph.from_any(FakeData()), Graph.from_any(FakeSparseTensor()),
                Graph.from_any(ei.numpy(), num_nodes=n), Graph.from_any(path, num_nodes=n)]
    for g in variants:
        assert torch.equal(g.rowptr, ref.rowptr) and torch.equal(g.col, ref.col)


def test_remove_edges():
    g = Graph.from_edge_index(torch.tensor([[0, 1, 2], [1, 2, 3]]), num_nodes=4)
    h = g.remove_edges(torch.tensor([[2, 1]]))
    assert h.num_undirected_edges == 2 and 2 not in h.neighbors(1).tolist()


@pytest.mark.parametrize("bad, exc, msg", [
    (torch.tensor([[0, 5], [1, 2]]), ValueError, "node id 5, out of range"),
    (torch.tensor([[0, -1], [1, 2]]), ValueError, "negative node id -1"),
    (torch.tensor([[0.5, 1.0], [1.0, 2.0]]), TypeError, "integer node ids"),
    (torch.tensor([[0, 1, 2]]), ValueError, "shape [2, *]"),
    ("not an array", TypeError, "must be a torch.Tensor"),
])
def test_bad_edge_index(bad, exc, msg):
    with pytest.raises(exc, match=msg.replace("[", r"\[").replace("*", r"\*")):
        Graph.from_edge_index(bad, num_nodes=4) if not isinstance(bad, str) else Graph.from_edge_index(bad)


def test_bad_features_and_empty_graph():
    ei = torch.tensor([[0], [1]])
    with pytest.raises(ValueError, match="non-finite value"):
        Graph.from_edge_index(ei, num_nodes=2, x=torch.tensor([[0.0], [float("nan")]]))
    with pytest.raises(ValueError, match="3 feature rows but the graph has num_nodes=2"):
        Graph.from_edge_index(ei, num_nodes=2, x=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="empty graph"):
        Graph.from_edge_index(torch.empty(2, 0, dtype=torch.int64))


@pytest.mark.parametrize("rowptr, col, n, msg", [
    ([0, 2, 3], [1, 5, 0], 2, r"col holds node ids in \[0, 5\], outside \[0, 2\)"),
    ([0, 2, 1], [1, 0], 2, "falling somewhere"),
    ([0, 1, 3], [1, 0], 2, r"rise from 0 to len\(col\)=2"),
    ([0, 1, 2], [1, 0], 3, "num_nodes=3 needs 4"),
    ([0, 1, 2], [1.0, 0.0], 2, "col must be a 1-D int64 tensor"),
    ([0, 1, 2], [1, 0], 0, "num_nodes must be a positive int"),
])
def test_directly_built_graph_is_validated(rowptr, col, n, msg):
    """Graph(rowptr, col, n) skips the converting constructors; a broken CSR must still be
    refused before any kernel indexes with it."""
    with pytest.raises(ValueError, match=msg):
        Graph(torch.tensor(rowptr), torch.tensor(col), n)
    assert Graph(torch.tensor([0, 1, 2]), torch.tensor([1, 0]), 2).num_undirected_edges == 1


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="edge-list file not found"):
        Graph.from_edgelist_file(tmp_path / "missing.txt")
    trunc = tmp_path / "trunc.txt"
    trunc.write_text("0 1\n2")
    with pytest.raises(ValueError, match="expected two node ids"):
        Graph.from_edgelist_file(trunc)
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1\n1 x\n")
    with pytest.raises(ValueError, match="non-integer node id"):
        Graph.from_edgelist_file(bad)


# ---------------------------------------------------------------------------- PyG habits
def test_counts_and_edge_index_match_pyg():
    """``edge_index`` is a property and ``num_edges`` counts as PyG does (directed entries)."""
    from conftest import require_optional
    try:
        from torch_geometric.data import Data
        from torch_geometric.utils import coalesce, remove_self_loops, to_undirected
    except ImportError:
        require_optional(False, "torch_geometric")
    ei = _edges(40, 120, 3)
    g = Graph.from_edge_index(ei, num_nodes=40)
    want, _ = remove_self_loops(coalesce(to_undirected(ei, num_nodes=40), num_nodes=40))
    assert torch.equal(g.edge_index, want)  # both sorted by row then column
    assert g.num_edges == Data(edge_index=want, num_nodes=40).num_edges == want.shape[1]
    assert g.num_undirected_edges * 2 == g.num_edges
    data = g.with_features(torch.ones(40, 3)).to_pyg()
    assert isinstance(data, Data) and data.num_nodes == 40 and data.num_edges == g.num_edges
    assert torch.equal(data.edge_index, want) and data.x.shape == (40, 3)
    assert Graph.from_any(data).num_edges == g.num_edges  # the round trip keeps every edge


def test_describe_reports_what_construction_changed():
    # 0->1 and 1->0 given both ways, 1->2 and 3->2 one way, one self-loop and one duplicate
    g = Graph.from_edge_index(torch.tensor([[0, 1, 1, 3, 2, 1], [1, 0, 2, 2, 2, 2]]), num_nodes=5)
    assert (g.num_edges, g.num_undirected_edges) == (6, 3)
    assert (g.num_self_loops_removed, g.num_reverse_edges_added) == (1, 2)
    text = g.describe()
    assert "5 nodes, 6 directed edges (3 undirected" in text and "no node features" in text
    assert "1 self-loops removed" in text and "2 edges given in one direction only" in text
    assert "\n" not in text


def test_to_pyg_without_pyg_says_so(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "torch_geometric", None)
    monkeypatch.setitem(sys.modules, "torch_geometric.data", None)
    with pytest.raises(ImportError, match="needs torch_geometric"):
        Graph.from_edge_index(torch.tensor([[0], [1]])).to_pyg()
