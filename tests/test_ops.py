import pytest
import torch

import linkexit_fast as lf
from linkexit_fast import ops
from linkexit_fast.backends import available_backends


def test_pyg_layer_loop_delegates_to_ops():
    """The example of docs/backend_swap.md equals PyG's own GCNConv stack."""
    import importlib.util
    from conftest import require_optional
    require_optional(importlib.util.find_spec("torch_geometric") is not None, "torch_geometric")
    from torch_geometric.nn import GCNConv
    torch.manual_seed(0)
    ei = torch.randint(0, 50, (2, 200))
    graph = lf.Graph.from_edge_index(ei, num_nodes=50, x=torch.randn(50, 7))
    convs = [GCNConv(7, 16), GCNConv(16, 8)]
    for backend in [b for b in available_backends() if b in ("torch", "cpu")]:
        x, ref = graph.x, graph.x
        for i, conv in enumerate(convs):
            x = ops.gcn_aggregate(graph.rowptr, graph.col, conv.lin(x), backend=backend) + conv.bias
            ref = conv(ref, graph.edge_index)
            if i == 0:
                x, ref = torch.relu(x), torch.relu(ref)
        assert torch.allclose(x, ref, atol=1e-5), backend


def test_ops_validate_inputs():
    rowptr, col = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
    w, h = torch.ones(2), torch.randn(2, 3)
    with pytest.raises(ValueError, match="rows holds an index outside"):
        ops.aggregate_rows(rowptr, col, w, h, torch.tensor([5]))
    with pytest.raises(ValueError, match="h must be a float32 tensor"):
        ops.aggregate_rows(rowptr, col, w, h.double(), torch.tensor([0]))
    for bad in ([0, 2, 1, 2], [1, 1, 2, 2], [0, 1, 2, 3]):  # falling, not from 0, past the entries
        for backend in ("torch", "cpu"):
            with pytest.raises(ValueError, match="rowptr must rise from 0"):
                ops.aggregate_rows(torch.tensor(bad), col, w, h, torch.tensor([0]), backend=backend)
        with pytest.raises(ValueError, match="rowptr must rise from 0"):
            ops.gcn_aggregate(torch.tensor(bad), col, h)
    with pytest.raises(ValueError, match="u holds an index outside"):
        ops.score_pairs(h, torch.tensor([9]), torch.tensor([0]), [torch.ones(1, 3)], [torch.zeros(1)])
    with pytest.raises(ValueError, match=r"threshold must be a number in \(0, 1\]"):
        ops.exit_decision(h, torch.ones(4, 3), torch.zeros(4), torch.ones(2, 4), torch.zeros(2), 0.0)
