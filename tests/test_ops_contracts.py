"""The public ops (``linkexit_fast.ops``) check their inputs once, before dispatch, the same way
for every backend: each bad input below raises the same error on torch, cpu and triton (under the
interpreter), and the backend's op is never called. Each bad input differs from a valid one that
every backend computes correctly (checked against numpy), so a backend that would read out of
bounds on it cannot slip through.
"""
import importlib
import math

import numpy as np
import pytest
import torch

from conftest import require_optional
from linkexit_fast import ops
from linkexit_fast.backends import BACKENDS, available_backends

BACKEND_NAMES = ["torch", "cpu", "triton"]
META = torch.device("meta")  # a second device on any machine


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    require_optional(request.param in available_backends(), f"the {request.param} backend")
    return request.param


@pytest.fixture
def spy(backend, monkeypatch):
    """The calls that reach ``backend``'s ops: ``{op name: count}``; each call still runs the op."""
    module = importlib.import_module(BACKENDS[backend])
    calls = {}
    for name in ("aggregate_rows", "exit_decision", "score_pairs"):
        def wrapper(*args, _real=getattr(module, name), _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)
    return calls


def rand(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def long(*values):
    return torch.tensor(values, dtype=torch.int64)


# ---------------------------------------------------------------------------- valid inputs
def aggregate_args():
    """A 4-row CSR over the 5 rows of h (not square), rows repeating, both epilogue terms."""
    return dict(rowptr=long(0, 2, 3, 5, 6), col=long(1, 4, 0, 2, 3, 4), weight=rand(6, seed=1), h=rand(5, 3, seed=2),
                rows=long(3, 0, 2, 2), self_weight=rand(4, seed=3), cache=rand(4, 3, seed=4))


def aggregate_numpy(rowptr, col, weight, h, rows, self_weight=None, cache=None):
    rowptr, col, weight, h, rows = (t.numpy().astype(np.float64) if t.is_floating_point() else t.numpy()
                                    for t in (rowptr, col, weight, h, rows))
    dense = np.zeros((len(rowptr) - 1, h.shape[0]))
    for r in range(len(rowptr) - 1):
        for e in range(rowptr[r], rowptr[r + 1]):
            dense[r, col[e]] += weight[e]
    out = (dense @ h)[rows]
    if self_weight is not None:
        out += self_weight.numpy()[rows, None] * h[rows]
    if cache is not None:
        out += cache.numpy()[rows]
    return out


def gcn_args():
    """The reported case's shape: a 6-node path graph, both directions of each edge."""
    return dict(rowptr=long(0, 1, 3, 5, 7, 9, 10), col=long(1, 0, 2, 1, 3, 2, 4, 3, 5, 4), h=rand(6, 3, seed=5))


def gcn_numpy(rowptr, col, h):
    n = len(rowptr) - 1
    a = np.eye(n)
    for r in range(n):
        a[r, col[rowptr[r]:rowptr[r + 1]].numpy()] += 1
    d = a.sum(1) ** -0.5
    return d[:, None] * a * d[None, :] @ h.numpy().astype(np.float64)


def exit_args():
    return dict(h=rand(7, 3, seed=6), w1=rand(4, 3, seed=7), b1=rand(4, seed=8), w2=rand(2, 4, seed=9),
                b2=rand(2, seed=10), threshold=0.6, w_nu=rand(3, seed=11), b_nu=rand(1, seed=12), tau0=0.25)


def exit_numpy(h, w1, b1, w2, b2, threshold, w_nu, b_nu, tau0):
    h, w1, b1, w2, b2, w_nu, b_nu = (t.numpy().astype(np.float64) for t in (h, w1, b1, w2, b2, w_nu, b_nu))
    logits = np.maximum(h @ w1.T + b1, 0) @ w2.T + b2
    margin = logits[:, 1] - logits[:, 0]
    nu = np.maximum(np.log1p(np.exp(h @ w_nu + b_nu)) + tau0, 0.1)
    return 1 / (1 + np.exp(-margin)), margin, 1 / (1 + np.exp(margin / nu))


def score_args():
    return dict(z=rand(4, 3, seed=13), u=long(0, 1, 3), v=long(2, 3, 3),
                weights=[rand(5, 3, seed=14), rand(4, 5, seed=15), rand(1, 4, seed=16)],
                biases=[rand(5, seed=17), rand(4, seed=18), rand(1, seed=19)])


def score_numpy(z, u, v, weights, biases):
    x = z.numpy()[u.numpy()].astype(np.float64) * z.numpy()[v.numpy()]
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = x @ w.numpy().T + b.numpy()
        if i < len(weights) - 1:
            x = np.maximum(x, 0)
    return x[:, 0]


def test_valid_inputs_give_the_numpy_result_on_every_backend(backend, spy):
    args = aggregate_args()
    np.testing.assert_allclose(ops.aggregate_rows(**args, backend=backend), aggregate_numpy(**args), atol=1e-5)
    bare = dict(args, self_weight=None, cache=None)
    np.testing.assert_allclose(ops.aggregate_rows(**bare, backend=backend), aggregate_numpy(**bare), atol=1e-5)
    args = gcn_args()
    np.testing.assert_allclose(ops.gcn_aggregate(**args, backend=backend), gcn_numpy(**args), atol=1e-5)
    args = exit_args()
    p_exit, flag, step = ops.exit_decision(**args, backend=backend)
    p_want, margin, step_want = exit_numpy(**args)
    np.testing.assert_allclose(p_exit, p_want, atol=1e-5)
    np.testing.assert_allclose(step, step_want, atol=1e-5)
    clear = np.abs(margin - math.log(0.6 / 0.4)) > 1e-4  # away from the threshold, float32 agrees
    assert clear.sum() >= 5 and (flag.numpy() == (margin >= math.log(0.6 / 0.4)))[clear].all()
    args = score_args()
    np.testing.assert_allclose(ops.score_pairs(**args, backend=backend), score_numpy(**args), atol=1e-5)
    assert spy == {"aggregate_rows": 3, "exit_decision": 1, "score_pairs": 1}  # the spy sees the calls


def test_numpy_thresholds_are_accepted(backend):
    args = exit_args()
    want = ops.exit_decision(**args, backend=backend)
    for t in (np.float32(0.6), np.float64(0.6)):
        got = ops.exit_decision(**dict(args, threshold=t), backend=backend)
        assert all(torch.equal(a, b) for a, b in zip(got, want))


# ---------------------------------------------------------------------------- bad inputs
def _six_rows_over_five(self_weight):
    """rows = [5] is a row of the 6-row CSR but not of h (5 rows): fine without the self term."""
    args = dict(aggregate_args(), rowptr=long(0, 2, 3, 5, 6, 6, 6), rows=long(5), cache=None)
    return dict(args, self_weight=rand(6) if self_weight else None)


AGGREGATE = [
    (dict(h=rand(5, 3).double()), r"h must be a float32 tensor of shape \[\*, \*\]; got torch.float64 \[5, 3\]"),
    (dict(h=rand(15)), r"h must be a float32 tensor of shape \[\*, \*\]; got torch.float32 \[15\]"),
    (dict(h=np.zeros((5, 3), np.float32)), r"h must be a float32 tensor .*got ndarray"),
    (dict(rowptr=long(0, 2, 3, 5, 6).int()), r"rowptr must be an int64 tensor of shape \[\*\]"),
    (dict(rowptr=long(0, 2, 3, 5, 6)[None]), r"rowptr must be an int64 tensor of shape \[\*\]"),
    (dict(rowptr=long()), r"rowptr must hold R \+ 1 >= 1 offsets"),
    (dict(rowptr=long(0, 3, 2, 5, 6)), r"rowptr must rise from 0 .* \(falling somewhere\)"),
    (dict(rowptr=long(1, 2, 3, 5, 6)), r"rowptr must rise from 0 to the number of entries \(6\)"),
    (dict(rowptr=long(0, 2, 3, 5, 9)), r"rowptr must rise from 0 to the number of entries \(6\)"),
    (dict(col=long(1, 4, 0, 2, 3, 4).int()), r"col must be an int64 tensor"),
    (dict(col=long(1, 5, 0, 2, 3, 4)), r"col holds an index outside \[0, 5\): min 0, max 5"),
    (dict(col=long(1, -1, 0, 2, 3, 4)), r"col holds an index outside \[0, 5\): min -1"),
    (dict(weight=rand(5)), r"weight must be a float32 tensor of shape \[6\]; got torch.float32 \[5\]"),
    (dict(weight=rand(6).double()), r"weight must be a float32 tensor of shape \[6\]"),
    (dict(rows=long(3, 4)), r"rows holds an index outside \[0, 4\): min 3, max 4"),
    (dict(rows=long(-1)), r"rows holds an index outside \[0, 4\)"),
    (dict(rows=long(0, 1)[None]), r"rows must be an int64 tensor of shape \[\*\]"),
    (dict(rows=torch.tensor([0.0, 1.0])), r"rows must be an int64 tensor"),
    (dict(self_weight=rand(5)), r"self_weight must be a float32 tensor of shape \[4\]; got torch.float32 \[5\]"),
    (dict(cache=rand(4, 2)), r"cache must be a float32 tensor of shape \[4, 3\]"),
    (dict(cache=rand(5, 3)), r"cache must be a float32 tensor of shape \[4, 3\]"),
    (dict(rows=long(0, 1).to(META)), r"rows is on meta, the other inputs on cpu: all must share one device"),
    (dict(cache=rand(4, 3).to(META)), r"cache is on meta, the other inputs on cpu"),
    (_six_rows_over_five(self_weight=True), r"rows holds an index outside \[0, 5\): min 5, max 5"),
]


@pytest.mark.parametrize("changes, msg", AGGREGATE)
def test_aggregate_rows_refuses_the_same_way_everywhere(backend, spy, changes, msg):
    with pytest.raises(ValueError, match=msg):
        ops.aggregate_rows(**dict(aggregate_args(), **changes), backend=backend)
    assert not spy


def test_six_row_csr_rows_past_h_are_fine_without_the_self_term(backend):
    args = _six_rows_over_five(self_weight=False)
    np.testing.assert_allclose(ops.aggregate_rows(**args, backend=backend), aggregate_numpy(**args), atol=1e-6)


GCN = [
    # The reported case: every col entry is a row of h, but the self-loop term reads h[2..5];
    # the cpu backend raised, torch raised IndexError, Triton returned garbage.
    (dict(rowptr=long(0, 1, 2, 2, 2, 2, 2), col=long(1, 0), h=rand(2, 3)),
     r"h must have one row per node of the n x n adjacency: rowptr gives n = 6, h has 2 rows"),
    (dict(h=rand(2, 3)), r"rowptr gives n = 6, h has 2 rows"),
    (dict(h=rand(7, 3)), r"rowptr gives n = 6, h has 7 rows"),
    (dict(col=long(1, 0, 2, 1, 3, 2, 4, 3, 6, 4)), r"col holds an index outside \[0, 6\): min 0, max 6"),
    (dict(rowptr=long(0, 1, 3, 2, 7, 9, 10)), r"rowptr must rise from 0"),
    (dict(rowptr=long(0, 1, 3, 5, 7, 9, 11)), r"rowptr must rise from 0 to the number of entries \(10\)"),
    (dict(h=rand(6, 3).double()), r"h must be a float32 tensor"),
    (dict(col=long(1, 0, 2, 1, 3, 2, 4, 3, 5, 4).int()), r"col must be an int64 tensor"),
    (dict(h=rand(6, 3).to(META)), r"rowptr is on cpu, the other inputs on meta"),
]


@pytest.mark.parametrize("changes, msg", GCN)
def test_gcn_aggregate_refuses_the_same_way_everywhere(backend, spy, changes, msg):
    """The first case is the reported one: on Triton it read past the end of ``h``."""
    with pytest.raises(ValueError, match=msg):
        ops.gcn_aggregate(**dict(gcn_args(), **changes), backend=backend)
    assert not spy


EXIT = [
    (dict(h=rand(7, 3).double()), ValueError, r"h must be a float32 tensor"),
    (dict(h=rand(7)), ValueError, r"h must be a float32 tensor of shape \[\*, \*\]"),
    (dict(w1=rand(4, 2)), ValueError, r"w1 must be a float32 tensor of shape \[\*, 3\]; got torch.float32 \[4, 2\]"),
    (dict(w1=rand(4, 3).double()), ValueError, r"w1 must be a float32 tensor"),
    (dict(b1=rand(5)), ValueError, r"b1 must be a float32 tensor of shape \[4\]"),
    (dict(w2=rand(3, 4)), ValueError, r"w2 must be a float32 tensor of shape \[2, 4\]"),
    (dict(w2=rand(2, 5)), ValueError, r"w2 must be a float32 tensor of shape \[2, 4\]"),
    (dict(b2=rand(1)), ValueError, r"b2 must be a float32 tensor of shape \[2\]"),
    (dict(b_nu=None), ValueError, r"w_nu and b_nu must be given together .*got only w_nu"),
    (dict(w_nu=None), ValueError, r"w_nu and b_nu must be given together .*got only b_nu"),
    (dict(w_nu=rand(4)), ValueError, r"w_nu must be a float32 tensor of shape \[3\]"),
    (dict(b_nu=rand(2)), ValueError, r"b_nu must be a float32 tensor of shape \[1\]"),
    (dict(b1=rand(4).to(META)), ValueError, r"b1 is on meta, the other inputs on cpu"),
    (dict(threshold=0.0), ValueError, r"threshold must be a number in \(0, 1\], got 0.0"),
    (dict(threshold=1.5), ValueError, r"threshold must be a number in \(0, 1\]"),
    (dict(threshold=-0.1), ValueError, r"threshold must be a number in \(0, 1\]"),
    (dict(threshold=math.nan), ValueError, r"threshold must be a number in \(0, 1\], got nan"),
    (dict(threshold=np.float32("nan")), ValueError, r"threshold must be a number in \(0, 1\]"),
    (dict(threshold=True), TypeError, r"threshold must be a real number .*got bool"),
    (dict(threshold=np.bool_(True)), TypeError, r"threshold must be a real number"),
    (dict(threshold="0.5"), TypeError, r"threshold must be a real number .*got str"),
    (dict(threshold=None), TypeError, r"threshold must be a real number .*got NoneType"),
    (dict(tau0=math.inf), ValueError, r"tau0 must be finite, got inf"),
    (dict(tau0=math.nan), ValueError, r"tau0 must be finite, got nan"),
    (dict(tau0=False), TypeError, r"tau0 must be a real number, got bool"),
]


@pytest.mark.parametrize("changes, exc, msg", EXIT)
def test_exit_decision_refuses_the_same_way_everywhere(backend, spy, changes, exc, msg):
    with pytest.raises(exc, match=msg):
        ops.exit_decision(**dict(exit_args(), **changes), backend=backend)
    assert not spy


SCORE = [
    (dict(z=rand(4, 3).double()), r"z must be a float32 tensor"),
    (dict(z=rand(12)), r"z must be a float32 tensor of shape \[\*, \*\]"),
    (dict(u=long(0, 1, 3).int()), r"u must be an int64 tensor"),
    (dict(u=long(0, 4, 3)), r"u holds an index outside \[0, 4\): min 0, max 4"),
    (dict(v=long(2, -3, 3)), r"v holds an index outside \[0, 4\): min -3"),
    (dict(v=long(2, 3)), r"v must be an int64 tensor of shape \[3\]; got torch.int64 \[2\]"),
    (dict(u=long(0, 1, 3).to(META)), r"u is on meta, the other inputs on cpu"),
    (dict(weights=torch.ones(1, 1, 3)), r"weights and biases must be lists of tensors; got Tensor"),
    (dict(weights=[], biases=[]), r"one bias per weight and at least one layer; got 0 weights and 0 biases"),
    (dict(biases=[rand(5), rand(4)]), r"got 3 weights and 2 biases"),
    (dict(weights=[rand(5, 2), rand(4, 5), rand(1, 4)]), r"weights\[0\] must be a float32 tensor of shape \[\*, 3\]"),
    (dict(weights=[rand(5, 3), rand(4, 6), rand(1, 4)]), r"weights\[1\] must be a float32 tensor of shape \[\*, 5\]"),
    (dict(weights=[rand(5, 3), rand(4, 5), rand(2, 4)]), r"weights\[2\] must be a float32 tensor of shape \[1, 4\]"),
    (dict(weights=[rand(5, 3), rand(4, 5).double(), rand(1, 4)]), r"weights\[1\] must be a float32 tensor"),
    (dict(weights=[rand(5, 3), rand(4, 5), rand(1, 4).to(META)]), r"weights\[2\] is on meta"),
    (dict(biases=[rand(5), rand(3), rand(1)]), r"biases\[1\] must be a float32 tensor of shape \[4\]"),
    (dict(biases=[rand(5), rand(4), rand(1, 1)]), r"biases\[2\] must be a float32 tensor of shape \[1\]"),
]


@pytest.mark.parametrize("changes, msg", SCORE)
def test_score_pairs_refuses_the_same_way_everywhere(backend, spy, changes, msg):
    with pytest.raises(ValueError, match=msg):
        ops.score_pairs(**dict(score_args(), **changes), backend=backend)
    assert not spy
