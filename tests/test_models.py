import itertools

import pytest
import torch

from linkexit_fast.datasets import synthetic
from linkexit_fast.models import BACKBONES, EXIT_MODES, SEMANTICS, EarlyExitLinkPredictor, ModelConfig, NormAdj

SPLIT = synthetic(200, 5, 12, 4, seed=1)


def make(backbone, exit, semantics, layers=4, in_channels=12, **kw):
    torch.manual_seed(0)
    return EarlyExitLinkPredictor(ModelConfig(in_channels, 200, hidden=16, layers=layers, backbone=backbone,
                                              exit=exit, semantics=semantics, **kw))


@pytest.mark.parametrize("backbone, exit, semantics", list(itertools.product(BACKBONES, EXIT_MODES, SEMANTICS)))
def test_forward_backward_every_combination(backbone, exit, semantics):
    model = make(backbone, exit, semantics)
    res = model(SPLIT.graph, generator=torch.Generator().manual_seed(0))
    loss = model.score(res.z, SPLIT.train_pos[:64]).sigmoid().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    if exit != "none":  # the exit heads learn from the link-prediction loss alone
        assert model.heads[0].lin1.weight.grad.abs().sum() > 0
    assert res.z.shape == (200, 16) and torch.isfinite(res.z).all()
    assert res.exit_layer.min() >= model.first_exit and res.exit_layer.max() <= 4


def _trace(model, graph, threshold):
    """Hidden states per layer, recorded by wrapping ``update``."""
    states = []
    orig = model.update

    def spy(l, adj, h, step):
        out = orig(l, adj, h, step)
        states.append(out)
        return out
    model.update = spy
    res = model(graph, mode="threshold", threshold=threshold)
    model.update = orig
    return res, states


@pytest.mark.parametrize("backbone", BACKBONES)
def test_freeze_rule(backbone):
    model = make(backbone, "node", "freeze").eval()
    graph = SPLIT.graph
    probe = model(graph, mode="threshold", threshold=1.0)
    # the median of each node's highest EXIT probability: about half the nodes exit somewhere
    thr = float(probe.exit_prob[model.first_exit:].max(0).values.median())
    res_free = model(graph, mode="threshold", threshold=thr)
    exited = res_free.exit_layer < 4
    assert exited.any() and (~exited).any(), "test needs both exiting and non-exiting nodes"
    # Reconstruct the frozen states by hand: h^{l+1} = h^l for exited nodes, update for the rest.
    adj = NormAdj(graph, model.self_loops)
    with torch.no_grad():
        h = model.encode_input(graph.x)
        for l in range(4):
            step = None
            if l >= model.first_exit:
                head = model.head(l)
                lg = head.logits(h)
                step = torch.sigmoid((lg[:, 0] - lg[:, 1]) / head.temperature(h))
            new = model.update(l, adj, h, step)
            frozen = (res_free.exit_layer <= l) & (l >= model.first_exit)
            h = torch.where(frozen[:, None], h, new) if l >= model.first_exit else new
    assert torch.allclose(h, res_free.z, atol=1e-5)
    # An exited node's output is its exit-layer state, and neighbours keep receiving it: removing
    # an exited node's edges changes its neighbours' embeddings.
    u = int(exited.nonzero()[0])
    nb = graph.neighbors(u)
    if len(nb):
        cut = graph.remove_edges(torch.stack([torch.full_like(nb, u), nb], 1))
        res_cut = model(cut, mode="threshold", threshold=thr)
        late = nb[res_free.exit_layer[nb] > res_free.exit_layer[u]]
        if len(late):
            assert not torch.allclose(res_cut.z[late], res_free.z[late])


@pytest.mark.parametrize("backbone", ["gcn", "resgcn"])
def test_readout_states_match_fixed_depth(backbone):
    ee = make(backbone, "node", "readout").eval()
    fixed = make(backbone, "none", "freeze").eval()
    fixed.load_state_dict({k: v for k, v in ee.state_dict().items() if k in fixed.state_dict()})
    _, states_ee = _trace(ee, SPLIT.graph, 0.5)
    _, states_fixed = _trace(fixed, SPLIT.graph, 0.5)
    for a, b in zip(states_ee, states_fixed):
        assert torch.allclose(a, b, atol=1e-6)
    # and the output embedding is the state at each node's exit layer
    res = ee(SPLIT.graph, mode="threshold", threshold=0.5)
    with torch.no_grad():
        h0 = ee.encode_input(SPLIT.graph.x)
    all_states = [h0] + states_fixed
    for l in range(ee.first_exit, 5):
        sel = res.exit_layer == l
        assert torch.allclose(res.z[sel], all_states[l][sel], atol=1e-6)


def test_sas_readout_uses_continue_probability_as_step():
    model = make("sas", "node", "readout").eval()
    res = model(SPLIT.graph, mode="threshold", threshold=0.99)
    fixed = make("sas", "none", "freeze", sas_step=1.0).eval()
    fixed.load_state_dict({k: v for k, v in model.state_dict().items() if k in fixed.state_dict()})
    # step sizes below 1 make the early-exit trajectory differ from the fixed-step one
    assert not torch.allclose(res.z, fixed(SPLIT.graph).z)


def test_config_errors():
    with pytest.raises(ValueError, match="backbone must be one of"):
        ModelConfig(4, 10, backbone="gat")
    with pytest.raises(ValueError, match="exit must be one of"):
        ModelConfig(4, 10, exit="layer")
    model = make("gcn", "node", "freeze")
    with pytest.raises(ValueError, match="expects 12 input features, the graph has 7"):
        model.input_features(torch.zeros(200, 7))


def test_embedding_input_when_no_features():
    model = make("gcn", "node", "freeze", in_channels=0)
    g = SPLIT.graph.__class__(SPLIT.graph.rowptr, SPLIT.graph.col, 200, None)
    res = model(g)
    assert res.z.shape == (200, 16)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_transform_into_a_buffer_gives_the_same_values(backbone):
    """The engine writes layer updates into reused buffers (``out``, under no_grad as the engine
    runs): bit for bit what the reference's fresh results hold, at every layer (gcn's first, the
    middle ones, the last)."""
    model = make(backbone, "node", "freeze", layers=3).eval()
    g = torch.Generator().manual_seed(0)
    agg, h = torch.randn(9, 16, generator=g), torch.randn(9, 16, generator=g)
    step = torch.rand(9, generator=g)
    for l in range(3):
        with torch.no_grad():
            want = model.transform(l, agg.clone(), h, step)
            out = torch.full((9, 16), float("nan"))
            got = model.transform(l, agg.clone(), h, step, out=out)
            assert got.data_ptr() == out.data_ptr() and torch.equal(got, want)
            if backbone == "gcn" and l == 0:  # the engine's raw first layer: out is agg itself
                a = agg.clone()
                assert torch.equal(model.transform(0, a, None, None, out=a), want)
