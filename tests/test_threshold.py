"""The exit rule on the logit margin: ``exit = l_EXIT - l_CONTINUE >= logit(threshold)``.

The float32 sigmoid saturates (``sigmoid(17) == 1.0``), so a rule on ``p_exit >= threshold``
exited nodes at ``threshold = 1.0``. These tests check, on every backend (the reference forward,
torch, cpu, triton), that ``threshold = 1.0`` means no exits and that the margin rule holds,
against expected values computed here: a dense float64 GCN / ResGCN / SAS-GNN forward and link
scorer written out below, and the rule in float64 numpy.
"""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import linkexit_fast as lf
from conftest import logit64, require_optional
from linkexit_fast.backends import available_backends, cpu, torch_ops
from linkexit_fast.backends import triton as triton_ops
from linkexit_fast.models import BACKBONES, SEMANTICS, EarlyExitLinkPredictor, ExitHead, ModelConfig

# Triton's interpreter evaluates tl.sigmoid(-100) through an overflowing exp (correctly, to 0).
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")

BACKENDS = ["reference", "torch", "cpu", "triton"]
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: Triton's interpreter
SPECIAL_THRESHOLDS = [1e-9, 0.5, 1 - 1e-9, 1.0]


def require_backend(name: str) -> None:
    require_optional(name in available_backends(), f"the {name} backend")


def exit_flags(backend: str, h, w1, b1, w2, b2, threshold, w_nu=None, b_nu=None, tau0=0.0):
    """The exit flags ``[n]`` that ``backend``'s deterministic exit rule gives for rows ``h``."""
    if backend == "reference":  # the reference forward's rule, on an exit head with these weights
        head = ExitHead(h.shape[1], w1.shape[0], tau0)
        with torch.no_grad():
            for lin, w, b in ((head.lin1, w1, b1), (head.lin2, w2, b2)):
                lin.weight.copy_(w)
                lin.bias.copy_(b)
            e, _, _ = EarlyExitLinkPredictor._sample(head.logits(h), head.temperature(h), "threshold",
                                                     threshold, None)
        return e > 0.5
    require_backend(backend)
    if backend == "triton":
        args = [t.to(TRITON_DEVICE) for t in (h, w1, b1, w2, b2)]
        return triton_ops.exit_decision(*args, threshold)[1].cpu()
    op = {"torch": torch_ops.exit_decision, "cpu": cpu.exit_decision}[backend]
    return op(h, w1, b1, w2, b2, threshold, w_nu, b_nu, tau0)[1]


# ---------------------------------------------------------------- (1) the reported case, end to end
def dense_scores(model, x, adj, pairs):
    """Link probabilities of a fixed-depth model with ``model``'s backbone and predictor weights,
    by the backbone formulas (``EarlyExitLinkPredictor``'s docstring) in dense float64."""
    c = model.config
    p = {k: v.detach().double() for k, v in model.state_dict().items()}
    n = adj.shape[0]
    a = adj + torch.eye(n, dtype=torch.float64) if c.backbone != "sas" else adj
    deg = a.sum(1)
    dinv = torch.where(deg > 0, deg.clamp(min=1e-300) ** -0.5, torch.zeros_like(deg))
    a_hat = dinv[:, None] * a * dinv[None, :]
    gelu = lambda v: 0.5 * v * (1 + torch.erf(v / math.sqrt(2)))  # noqa: E731
    h = x.double() if c.backbone == "gcn" else x.double() @ p["input_proj.weight"].T + p["input_proj.bias"]
    h = gelu(h) if c.backbone == "resgcn" else h  # the residual GCN's activation after its projection
    for l in range(c.layers):
        last = l == c.layers - 1
        if c.backbone == "gcn":
            out = a_hat @ h @ p[f"convs.{l}.weight"].T + p[f"convs.{l}.bias"]
            h = out if last else gelu(out)
        elif c.backbone == "resgcn":
            out = a_hat @ h @ p[f"convs.{l}.weight"].T + p[f"convs.{l}.bias"]
            h = h + (out if last else gelu(out))
        else:
            omega_as = p["omega"] - p["omega"].T
            upper = torch.triu(p["ws_offdiag"], diagonal=1)
            w_sym = upper + upper.T + torch.diag(p["ws_diag"])
            h = h + c.sas_step * torch.relu(torch.tanh(-torch.relu(h @ omega_as) + a_hat @ h @ w_sym))
    z = h[pairs[:, 0]] * h[pairs[:, 1]]
    for i in range(c.predictor_layers):
        z = z @ p[f"predictor.lins.{i}.weight"].T + p[f"predictor.lins.{i}.bias"]
        if i < c.predictor_layers - 1:
            z = torch.relu(z)
    return torch.sigmoid(z[:, 0])


def saturated_model(backbone, exit, semantics, n, feats, layers):
    """The reported model: every exit head's ``lin2`` has weight 0 and bias (-10, +10), a margin
    of 20 (``sigmoid(20) == 1.0`` in float32). SAS heads get a constant temperature nu = 20.5
    (``nu.weight`` 0, ``softplus(20) + tau0``), so their step size is one constant."""
    torch.manual_seed(0)
    model = EarlyExitLinkPredictor(ModelConfig(feats, n, hidden=8, layers=layers, backbone=backbone,
                                               exit=exit, semantics=semantics, tau0=0.5)).eval()
    with torch.no_grad():
        for head in list(model.heads) + list(model.hard_heads):
            head.lin2.weight.zero_()
            head.lin2.bias.copy_(torch.tensor([-10.0, 10.0]))
            head.nu.weight.zero_()
            head.nu.bias.fill_(20.0)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("backbone, exit, semantics",
                         list(itertools.product(BACKBONES, ["node", "subgraph"], SEMANTICS)))
def test_threshold_one_never_exits(backbone, exit, semantics, backend):
    if backend != "reference":
        require_backend(backend)
    n, feats, layers = 12, 5, 3  # small: Triton's interpreter takes ~1 s an engine run
    gen = torch.Generator().manual_seed(1)
    edges = torch.randint(0, n - 2, (2, 16), generator=gen)  # nodes n-2, n-1 stay isolated
    x = torch.randn(n, feats, generator=gen)
    graph = lf.Graph.from_edge_index(edges, num_nodes=n, x=x)
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj[edges[0], edges[1]] = adj[edges[1], edges[0]] = 1.0
    adj.fill_diagonal_(0.0)
    model = saturated_model(backbone, exit, semantics, n, feats, layers)
    pairs = torch.stack([torch.arange(n), torch.arange(n).roll(1)], 1)  # every node an endpoint

    # The fixed-depth model with the same backbone and predictor weights; SAS's fixed step is
    # the heads' CONTINUE probability sigmoid(-20 / nu) at nu = softplus(20) + 0.5.
    nu = math.log1p(math.exp(20.0)) + 0.5
    fixed = EarlyExitLinkPredictor(ModelConfig(feats, n, hidden=8, layers=layers, backbone=backbone,
                                               exit="none", sas_step=1 / (1 + math.exp(20 / nu)))).eval()
    fixed.load_state_dict({k: v for k, v in model.state_dict().items() if k in fixed.state_dict()})
    expected = dense_scores(fixed, x, adj, pairs).float()

    scores, stats = lf.predict(graph, pairs, threshold=1.0, model=model, backend=backend, return_stats=True)
    assert torch.equal(stats.exit_layer, torch.full((n, 2), layers))
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores, lf.predict(graph, pairs, model=fixed, backend="reference"),
                               atol=1e-5, rtol=1e-5)
    if backend == "reference":
        res = model(graph, mode="threshold", threshold=1.0)
        assert torch.equal(res.exit_layer, torch.full((n,), layers))
        if exit == "node":  # EXIT probabilities of exactly 1.0: the case a rule on them gets wrong
            assert bool((res.exit_prob[model.first_exit:] == 1.0).all())


# ---------------------------------------------------------------- (2) the rule on given margins
def identity_head_rows(l0: np.ndarray, l1: np.ndarray):
    """Inputs whose exit head computes logits exactly (l0, l1) >= 0 on any backend: h = (l0, l1),
    w1 = w2 = I, zero biases (products with 1 and 0, sums with 0, are exact)."""
    h = torch.from_numpy(np.stack([l0, l1], 1).astype(np.float32))
    eye, zero = torch.eye(2), torch.zeros(2)
    return h, eye, zero, eye, zero


def constant_margin_rows(margin: np.float32, n: int = 3):
    """Inputs with logits exactly (0, margin) in every row: h = 0 makes the hidden layer 0 and
    the logits equal b2, whatever the float32 value."""
    gen = torch.Generator().manual_seed(0)
    return (torch.zeros(n, 4), torch.randn(8, 4, generator=gen), torch.zeros(8),
            torch.randn(2, 8, generator=gen), torch.tensor([0.0, float(margin)]))


def just_above(value: float) -> float:
    """A threshold whose float64 logit lies a hair above the float32 ``value``: rounding that
    bound to the *nearest* float32 would give ``value`` itself and exit a margin equal to it."""
    t = 1 / (1 + math.exp(-value))
    while logit64(t) <= value:
        t = math.nextafter(t, 1.0)
    return t


THRESHOLDS = SPECIAL_THRESHOLDS + [0.3, 0.9, just_above(2.0), just_above(-3.0)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_margin_rule_on_exact_logits(backend, threshold):
    rng = np.random.default_rng(0)
    # Logits on a 1/64 grid in [0, 100] (exact in any product), margins up to +-100: saturated
    # either way, plus the margins around logit(1 - 1e-9) = 20.7 and logit(1e-9) = -20.7.
    l0 = np.concatenate([rng.integers(0, 6400, 300) / 64, [0, 0, 0, 0, 0, 17, 20.5, 21, 100]])
    l1 = np.concatenate([rng.integers(0, 6400, 300) / 64, [17, 20, 20.5, 21, 100, 0, 0, 0, 0]])
    margin = (l1.astype(np.float32) - l0.astype(np.float32)).astype(np.float64)
    expected = torch.from_numpy(margin >= logit64(threshold))
    assert torch.equal(exit_flags(backend, *identity_head_rows(l0, l1), threshold), expected)

    # The float32 margins next to the bound, where its rounding decides.
    bound = logit64(threshold)
    if math.isfinite(bound):
        b32 = np.float32(bound)
        for m in (np.nextafter(b32, np.float32(-np.inf)), b32, np.nextafter(b32, np.float32(np.inf))):
            flags = exit_flags(backend, *constant_margin_rows(m), threshold)
            assert torch.equal(flags, torch.full((3,), float(m) >= bound)), (float(m), bound)


def test_rounding_cases_bite():
    """The ``just_above`` thresholds are cases where a bound rounded to nearest would be wrong."""
    for value in (2.0, -3.0):
        t = just_above(value)
        assert float(np.float32(logit64(t))) == value < logit64(t)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_threshold_is_named(backend):
    args = identity_head_rows(np.zeros(2), np.zeros(2))
    for t in (0.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"threshold must be a number in \(0, 1\]"):
            exit_flags(backend, *args, t)


# ---------------------------------------------------------------- (3) random heads, all backends
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), k=st.sampled_from([1, 5, 37]),
       hidden=st.sampled_from([1, 8, 32]), scale=st.sampled_from([0.1, 1.0, 10.0, 100.0]),
       threshold=st.one_of(st.sampled_from(SPECIAL_THRESHOLDS),
                           st.floats(1e-12, 1.0, exclude_min=True)))
def test_backends_agree_with_float64_rule(seed, n, k, hidden, scale, threshold):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, k, generator=gen) * scale
    w1, b1 = torch.randn(hidden, k, generator=gen) / math.sqrt(k), torch.randn(hidden, generator=gen)
    w2, b2 = torch.randn(2, hidden, generator=gen) / math.sqrt(hidden), torch.randn(2, generator=gen)
    h64, w1_64, b1_64, w2_64, b2_64 = (t.double().numpy() for t in (h, w1, b1, w2, b2))
    hid = np.maximum(h64 @ w1_64.T + b1_64, 0)
    logits = hid @ w2_64.T + b2_64
    margin = logits[:, 1] - logits[:, 0]
    # float32 rounding moves the margin by a few ulps of the terms summed into it
    terms = (np.abs(h64) @ np.abs(w1_64).T + np.abs(b1_64)) @ np.abs(w2_64).sum(0) + np.abs(b2_64).sum()
    decided = torch.from_numpy(np.abs(margin - logit64(threshold)) > 1e-5 * (1 + terms))
    expected = torch.from_numpy(margin >= logit64(threshold))
    for backend in BACKENDS:
        if backend in available_backends() or backend == "reference":
            flags = exit_flags(backend, h, w1, b1, w2, b2, threshold)
            assert torch.equal(flags[decided], expected[decided]), backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_sas_weights_changed_in_place_are_seen(backend):
    """SAS builds its shared layer matrices once per weights version under no_grad: an optimizer
    step (in-place update) or ``load_state_dict`` must still reach the next forward. Expected
    values: the backbone formulas in float64 (:func:`dense_scores`)."""
    if backend != "reference":
        require_backend(backend)
    g = torch.Generator().manual_seed(3)
    n, feats = 30, 5
    edges = torch.randint(0, n, (2, 80), generator=g)
    x = torch.randn(n, feats, generator=g)
    graph = lf.Graph.from_edge_index(edges, num_nodes=n, x=x)
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj[edges[0], edges[1]] = adj[edges[1], edges[0]] = 1.0
    adj.fill_diagonal_(0.0)
    pairs = torch.randint(0, n, (40, 2), generator=g)
    torch.manual_seed(0)
    model = EarlyExitLinkPredictor(ModelConfig(feats, n, hidden=8, layers=3, backbone="sas", exit="none")).eval()
    torch.manual_seed(1)
    other = EarlyExitLinkPredictor(ModelConfig(feats, n, hidden=8, layers=3, backbone="sas", exit="none")).eval()
    for change in (None, "in place", "load_state_dict"):
        with torch.no_grad():
            if change == "in place":
                model.omega.mul_(3.0)
                model.ws_diag.add_(0.5)
            elif change == "load_state_dict":
                model.load_state_dict(other.state_dict())
        got = lf.predict(graph, pairs, threshold=0.9, model=model, backend=backend)
        assert torch.allclose(got.double(), dense_scores(model, x, adj, pairs), atol=1e-5), change
