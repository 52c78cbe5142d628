"""The C++ ops (``linkexit_fast.backends.cpu``) against the torch specification (``torch_ops``).

Tolerances (float32):
* ``aggregate_rows``: rtol 1e-5, atol 1e-5. The C++ kernel sums a row's edges in CSR order with
  fused multiply-adds, torch_ops in ``torch.sparse.mm``'s order: a few ulp per edge, over up
  to 300 edges per (hub) row.
* ``score_pairs``: rtol 1e-5, atol 1e-5 with ``1/sqrt(fan_in)``-scaled weights (logits are O(1)).
  The GEMMs run on different block shapes and the last layer is a fused dot product, so only
  the summation order differs.
* ``exit_decision``: ``p_exit`` rtol 1e-5, atol 2e-6: logits reach ~30 for inputs scaled by
  10, where float32 rounding in a different summation order (~4e-6) moves ``p_exit`` by up to
  a quarter of that. ``step`` rtol 1e-5, atol 2e-5, because ``sigmoid(-diff / nu)`` scales
  logit differences by up to ``1 / (4 nu) = 2.5`` at the clamp ``nu = 0.1``. ``exit`` (the
  rule ``l_1 - l_0 >= logit(threshold)``) must match except where the margin ``l_1 - l_0``
  lies within ``1e-5 * (1 + |l_0| + |l_1|)`` of ``logit(threshold)``, where such a difference
  may flip it.
* ``linear_act``: against float64 numpy and scipy's erf, ``|error| <= 1e-6 * (1 + sum_k |x_k w_k| +
  |b|)``: each output is one float32 FMA chain of up to 70 terms, then GELU, whose erf
  approximation (Abramowitz & Stegun 7.1.26) is off by at most 1.5e-7, that is ``GELU(x)`` by
  about ``2.8e-7 |x|`` (checked alone in ``test_linear_act_gelu_is_accurate``).
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from linkexit_fast.backends import cpu, torch_ops
from linkexit_fast.engine.scope import UNREACHED

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from conftest import exit_decided, require_optional  # noqa: E402

require_optional(cpu.available(), f"the C++ extension ({cpu._load_error()})")

AGG_TOL = dict(rtol=1e-5, atol=1e-5)
SCORE_TOL = dict(rtol=1e-5, atol=1e-5)
P_EXIT_TOL = dict(rtol=1e-5, atol=2e-6)
STEP_TOL = dict(rtol=1e-5, atol=2e-5)
PROPERTY = settings(max_examples=200, deadline=None)

# Widths around the 64-float column block, the 8/16-lane vector widths, and every mix of the
# 256/128/64-column AVX-512 aggregation blocks with a portable tail (200 = 128 + 64 + 8).
WIDTHS = st.sampled_from([1, 3, 7, 8, 15, 17, 33, 63, 64, 65, 100, 129, 200, 256, 330])


def random_csr(gen: torch.Generator, degrees: list, n: int):
    """CSR with the given row degrees, columns uniform in ``[0, n)``, weights in ``(0, 1)``."""
    deg = torch.tensor(degrees, dtype=torch.int64)
    rowptr = torch.zeros(len(degrees) + 1, dtype=torch.int64)
    rowptr[1:] = torch.cumsum(deg, 0)
    nnz = int(rowptr[-1])
    col = torch.randint(0, n, (nnz,), generator=gen)
    weight = torch.rand(nnz, generator=gen)
    return rowptr, col, weight


# Isolated rows (0), typical rows and hub rows (one hub spans many 32-row tasks' worth of edges).
DEGREE = st.one_of(st.just(0), st.integers(0, 6), st.integers(100, 300))


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), degrees=st.lists(DEGREE, min_size=1, max_size=40),
       k=st.integers(0, 80), m=WIDTHS, use_self=st.booleans(), use_cache=st.booleans(),
       pass_cols=st.one_of(st.none(), st.sampled_from([1, 16, 64, 100])))
def test_aggregate_rows_matches_torch(seed, n, degrees, k, m, use_self, use_cache, pass_cols):
    gen = torch.Generator().manual_seed(seed)
    num_rows = len(degrees)
    rowptr, col, weight = random_csr(gen, degrees, n)
    h = torch.randn(max(n, num_rows), m, generator=gen)
    # Few distinct values: duplicates in `rows` are the norm, not the exception.
    rows = torch.randint(0, num_rows, (k,), generator=gen)
    self_weight = torch.rand(num_rows, generator=gen) if use_self else None
    cache = torch.randn(num_rows, m, generator=gen) if use_cache else None

    out = cpu.aggregate_rows(rowptr, col, weight, h, rows, self_weight, cache, pass_cols)
    ref = torch_ops.aggregate_rows(rowptr, col, weight, h, rows, self_weight, cache)
    assert out.shape == (k, m) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, **AGG_TOL)


@pytest.mark.parametrize("pass_cols", [None, 64])
def test_aggregate_rows_many_tasks_and_hubs(pass_cols):
    gen = torch.Generator().manual_seed(0)
    degrees = [0, 700] + torch.randint(0, 12, (2000,), generator=gen).tolist() + [900, 0]
    rowptr, col, weight = random_csr(gen, degrees, 3000)
    h = torch.randn(3000, 256, generator=gen)
    rows = torch.randperm(len(degrees), generator=gen)
    self_weight = torch.rand(len(degrees), generator=gen)
    out = cpu.aggregate_rows(rowptr, col, weight, h, rows, self_weight, pass_cols=pass_cols)
    torch.testing.assert_close(out, torch_ops.aggregate_rows(rowptr, col, weight, h, rows, self_weight),
                               **AGG_TOL)


def test_aggregate_rows_dense_small_graph():
    """ogbl-ddi's shape in small: h (4 MB) misses a 2 MB L2 but a 64-column slice fits, and each
    row is gathered ~30 times, so the op's own choice is column passes there; any choice of
    pass width gives the same sums."""
    gen = torch.Generator().manual_seed(1)
    n = 4096
    rowptr, col, weight = random_csr(gen, torch.randint(20, 40, (n,), generator=gen).tolist(), n)
    h = torch.randn(n, 256, generator=gen)
    rows = torch.arange(0, n, 3)
    ref = torch_ops.aggregate_rows(rowptr, col, weight, h, rows)
    for pass_cols in (None, 32, 64, 256):
        # NaN in the block the output most likely reuses: a column that no pass writes shows.
        poison = torch.full_like(ref, float("nan"))
        del poison
        torch.testing.assert_close(cpu.aggregate_rows(rowptr, col, weight, h, rows, pass_cols=pass_cols),
                                   ref, **AGG_TOL)


def test_aggregate_rows_converts_dtypes_and_layouts():
    gen = torch.Generator().manual_seed(1)
    rowptr, col, weight = random_csr(gen, [3, 0, 5, 2], 6)
    h = torch.randn(13, 6, generator=gen).T  # non-contiguous [6, 13]
    rows = torch.tensor([3, 0, 2, 2], dtype=torch.int32)
    out = cpu.aggregate_rows(rowptr.int(), col.int(), weight.double(), h.double(), rows)
    ref = torch_ops.aggregate_rows(rowptr, col, weight, h, rows.long())
    torch.testing.assert_close(out, ref, **AGG_TOL)


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 50), m=WIDTHS,
       num_pairs=st.one_of(st.just(0), st.just(1), st.integers(2, 300)),
       hidden=st.lists(st.integers(1, 70), min_size=0, max_size=2), same=st.booleans(),
       chunk=st.sampled_from([None, 1, 7, 64]))
def test_score_pairs_matches_torch(seed, n, m, num_pairs, hidden, same, chunk):
    if chunk == 1:
        num_pairs = min(num_pairs, 20)  # every block synchronises the threads: keep it quick
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, m, generator=gen)
    u = torch.randint(0, n, (num_pairs,), generator=gen)
    v = u.clone() if same else torch.randint(0, n, (num_pairs,), generator=gen)
    sizes = [m] + hidden + [1]
    weights = [torch.randn(o, i, generator=gen) / math.sqrt(i) for i, o in zip(sizes, sizes[1:])]
    biases = [torch.randn(o, generator=gen) * 0.1 for o in sizes[1:]]

    out = cpu.score_pairs(z, u, v, weights, biases, chunk)
    ref = torch_ops.score_pairs(z, u, v, weights, biases)
    assert out.shape == (num_pairs,) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, **SCORE_TOL)


def test_score_pairs_many_blocks_heart_predictor():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(1000, 256, generator=gen)
    u, v = torch.randint(0, 1000, (2, 20_000), generator=gen)
    mlp = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, 1))
    weights = [layer.weight.detach() for layer in mlp[::2]]
    biases = [layer.bias.detach() for layer in mlp[::2]]
    with torch.no_grad():
        ref = mlp(z[u] * z[v]).squeeze(1)
    torch.testing.assert_close(cpu.score_pairs(z, u, v, weights, biases), ref, **SCORE_TOL)


def assert_exit_matches(out, ref, h, w1, b1, w2, b2, threshold):
    p, exit, step = out
    p_ref, exit_ref, step_ref = ref
    torch.testing.assert_close(p, p_ref, **P_EXIT_TOL)
    assert exit.dtype == torch.bool
    logits = torch.relu(h @ w1.T + b1) @ w2.T + b2
    decided = exit_decided(logits, threshold)
    assert torch.equal(exit[decided], exit_ref[decided])
    if step_ref is None:
        assert step is None
    else:
        torch.testing.assert_close(step, step_ref, **STEP_TOL)


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 60), k=WIDTHS,
       hidden=st.sampled_from([1, 5, 32, 33]),
       threshold=st.floats(0.0, 1.0, exclude_min=True), temperature=st.booleans(),
       tau0=st.floats(-2.0, 2.0), scale=st.sampled_from([0.1, 1.0, 10.0]))
def test_exit_decision_matches_torch(seed, n, k, hidden, threshold, temperature, tau0, scale):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, k, generator=gen) * scale
    w1 = torch.randn(hidden, k, generator=gen) / math.sqrt(k)
    b1 = torch.randn(hidden, generator=gen) * 0.1
    w2 = torch.randn(2, hidden, generator=gen) / math.sqrt(hidden)
    b2 = torch.randn(2, generator=gen) * 0.1
    w_nu = torch.randn(k, generator=gen) / math.sqrt(k) if temperature else None
    b_nu = torch.randn(1, generator=gen) if temperature else None

    out = cpu.exit_decision(h, w1, b1, w2, b2, threshold, w_nu, b_nu, tau0)
    ref = torch_ops.exit_decision(h, w1, b1, w2, b2, threshold, w_nu, b_nu, tau0)
    assert_exit_matches(out, ref, h, w1, b1, w2, b2, threshold)


@pytest.mark.parametrize("temperature", [False, True])
def test_exit_decision_many_blocks_and_clamp(temperature):
    gen = torch.Generator().manual_seed(3)
    n, k = 2 * 131_072 + 3, 16  # several 128k-row blocks plus a remainder
    h = torch.randn(n, k, generator=gen)
    w1, b1 = torch.randn(32, k, generator=gen) / 8, torch.randn(32, generator=gen)
    w2, b2 = torch.randn(2, 32, generator=gen) / 6, torch.randn(2, generator=gen)
    # tau0 = -3 pushes nu below 0.1 for many rows, exercising the clamp.
    w_nu, b_nu = (torch.randn(k, generator=gen), torch.randn(1, generator=gen)) if temperature else (None, None)
    args = (h, w1, b1, w2, b2, 0.5, w_nu, b_nu, -3.0)
    assert_exit_matches(cpu.exit_decision(*args), torch_ops.exit_decision(*args),
                        *args[:6])


@pytest.mark.parametrize("temperature", [False, True])
def test_exit_decision_strided_inputs_and_any_batch(temperature):
    """The op itself (torch.ops, no wrapper making inputs contiguous) on strided h and w1 against
    the torch specification on contiguous copies; and a row's decision, probability and step are
    the same bits whatever rows share its batch (the engine's probe and its layer judge a row in
    different batches)."""
    gen = torch.Generator().manual_seed(5)
    h = torch.randn(77, 3 * 40, generator=gen)[:, ::3]
    w1 = torch.randn(40, 24, generator=gen).T / 6  # [24, 40], strided
    b1, w2, b2 = torch.randn(24, generator=gen), torch.randn(2, 24, generator=gen) / 5, torch.randn(2, generator=gen)
    w_nu, b_nu = (torch.randn(40, generator=gen), torch.randn(1, generator=gen)) if temperature else (None, None)
    bound = torch_ops.exit_margin_bound(0.5)
    got = torch.ops.linkexit_fast.exit_decision(h, w1, b1, w2, b2, bound, w_nu, b_nu, 0.0)
    spec = torch_ops.exit_decision(h.contiguous(), w1.contiguous(), b1, w2, b2, 0.5, w_nu, b_nu, 0.0)
    assert_exit_matches((got[0], got[1], got[2] if temperature else None), spec,
                        h.contiguous(), w1.contiguous(), b1, w2, b2, 0.5)
    for start, stop in ((0, 1), (3, 20), (70, 77)):
        part = torch.ops.linkexit_fast.exit_decision(h[start:stop], w1, b1, w2, b2, bound, w_nu, b_nu, 0.0)
        for a, b in zip(part, got):
            assert torch.equal(a, b[start:stop] if b.numel() else b)
    # rows read in place (repeated, unsorted, none): the same bits as those rows judged in a batch
    for rows in (torch.tensor([5, 76, 0, 5, 33]), torch.randperm(77, generator=gen), torch.zeros(0, dtype=torch.int64)):
        part = torch.ops.linkexit_fast.exit_decision(h, w1, b1, w2, b2, bound, w_nu, b_nu, 0.0, rows)
        for a, b in zip(part, got):
            assert torch.equal(a, b[rows] if b.numel() else b)
    with pytest.raises(RuntimeError, match=r"rows\[1\] = 77 is out of range for h with 77 rows"):
        torch.ops.linkexit_fast.exit_decision(h, w1, b1, w2, b2, bound, w_nu, b_nu, 0.0, torch.tensor([0, 77]))
    with pytest.raises(RuntimeError, match="'rows'"):
        torch.ops.linkexit_fast.exit_decision(h, w1, b1, w2, b2, bound, w_nu, b_nu, 0.0, torch.tensor([0.0]))


def scipy_hop_distance(rowptr, col, sources, max_hops, passable):
    """Hop distances by scipy's BFS on the CSR with the rows that may not expand emptied."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path
    n = rowptr.numel() - 1
    row = torch.repeat_interleave(torch.arange(n), rowptr.diff())
    keep = torch.ones(col.numel(), dtype=torch.bool) if passable is None else passable[row]
    adj = csr_matrix((torch.ones(int(keep.sum())).numpy(), (row[keep].numpy(), col[keep].numpy())), shape=(n, n))
    d = shortest_path(adj, directed=True, unweighted=True, indices=sources.numpy()).min(axis=0)
    d[d > max_hops] = UNREACHED
    return torch.from_numpy(d).long()


def random_walk_case(seed, degrees, frac, repeat):
    """(gen, n, rowptr, col, sources) for the walks' tests: a random CSR with ``degrees``, sources
    from one row to all of them (``frac``), each given twice when ``repeat``."""
    gen = torch.Generator().manual_seed(seed)
    n = len(degrees)
    rowptr, col, _ = random_csr(gen, degrees, n)
    sources = torch.randperm(n, generator=gen)[:max(1, int(frac * n))]
    if repeat:
        sources = torch.cat([sources, sources.flip(0)])
    return gen, n, rowptr, col, sources


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), degrees=st.lists(DEGREE, min_size=1, max_size=40),
       max_hops=st.integers(0, 6), frac=st.floats(0.0, 1.0), with_passable=st.booleans(),
       repeat=st.booleans())
def test_hop_distance_matches_scipy(seed, degrees, max_hops, frac, with_passable, repeat):
    """The C++ scope walk against scipy's BFS, on directed CSRs with hubs and isolated rows,
    sources from one row to all of them (repeated or not), with and without impassable rows."""
    gen, n, rowptr, col, sources = random_walk_case(seed, degrees, frac, repeat)
    passable = torch.rand(n, generator=gen) < 0.7 if with_passable else None
    expected = scipy_hop_distance(rowptr, col, sources, max_hops, passable)
    dist, reached = cpu.hop_distance(rowptr, col, sources, max_hops, passable, return_reached=True)
    assert torch.equal(dist, expected)
    assert torch.equal(reached, (expected != UNREACHED).nonzero().squeeze(1))
    assert cpu.hop_distance(rowptr, col, sources, max_hops, passable)[1].numel() == 0


def test_hop_distance_path_graph():
    """A path 0-1-2-3-4 from 0, with 2 impassable: 3 is never reached (independently: by hand)."""
    rowptr = torch.tensor([0, 1, 3, 5, 7, 8])
    col = torch.tensor([1, 0, 2, 1, 3, 2, 4, 3])
    dist, _ = cpu.hop_distance(rowptr, col, torch.tensor([0]), 10)
    assert dist.tolist() == [0, 1, 2, 3, 4]
    passable = torch.tensor([True, True, False, True, True])
    dist, reached = cpu.hop_distance(rowptr, col, torch.tensor([0]), 10, passable, True)
    assert dist.tolist() == [0, 1, 2, UNREACHED, UNREACHED] and reached.tolist() == [0, 1, 2]


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), degrees=st.lists(DEGREE, min_size=1, max_size=40),
       hops=st.integers(0, 5), frac=st.floats(0.0, 1.0), repeat=st.booleans(),
       max_fraction=st.sampled_from([0.0, 0.3, 0.8, 1.0]), p_exit=st.sampled_from([None, 0.0, 0.3, 1.0]),
       normalise=st.booleans())
def test_scope_csr_matches_scipy(seed, degrees, hops, frac, repeat, max_fraction, p_exit, normalise):
    """The C++ scope against scipy's BFS and a local CSR built here with numpy: the rows within
    ``hops`` of ``ends`` in increasing order, their distances, and the entries of the rows inside
    ``hops`` renumbered by position (rows at ``hops`` keep none); not compacted, the hop distance
    of every row. ``exiting`` ends (random; with repeated ends, an end may be both) join the scope
    at ``hops``: scipy walks from the other ends with the exiting ones' edges removed; then they
    are at distance 0. Each entry's row: its local row, repeated by count; each end's local id by
    numpy's searchsorted; the weights, degrees and self-loop weights gathered and multiplied in
    numpy (float32, as torch multiplies)."""
    import numpy as np
    gen, n, rowptr, col, ends = random_walk_case(seed, degrees, frac, repeat)
    exiting = None if p_exit is None else torch.rand(ends.numel(), generator=gen) < p_exit
    boundary = torch.empty(0, dtype=torch.int64) if exiting is None else ends[exiting]
    passable = ~torch.isin(torch.arange(n), boundary)
    sources = ends[passable[ends]]
    d = scipy_hop_distance(rowptr, col, sources, hops, passable).numpy() if sources.numel() else \
        np.full(n, UNREACHED)
    d[boundary.numpy()] = hops
    dinv = torch.rand(n, generator=gen) if normalise else None
    deg = torch.randint(0, 9, (n,), generator=gen) if normalise else None
    self_w = torch.rand(n, generator=gen) if normalise else None
    nodes, dist, rowptr_l, col_l, row_l, ends_l, weight_l, deg_l, self_l = cpu.scope_csr(
        rowptr, col, ends, hops, max_fraction, exiting, dinv, deg, self_w)
    reached = np.flatnonzero(d != UNREACHED)
    d_out = d.copy()
    d_out[boundary.numpy()] = 0
    if not len(reached) < max_fraction * n:
        assert all(t.numel() == 0 for t in (nodes, rowptr_l, col_l, row_l, ends_l, weight_l, deg_l, self_l))
        assert dist.tolist() == d_out.tolist()
        return
    rp, c = rowptr.numpy(), col.numpy()
    inner = [r for r in reached if d[r] < hops]
    expected_col = [np.searchsorted(reached, c[rp[r]:rp[r + 1]]) for r in inner]
    counts = [rp[r + 1] - rp[r] if d[r] < hops else 0 for r in reached]
    assert nodes.tolist() == reached.tolist()
    assert dist.tolist() == d_out[reached].tolist()
    assert rowptr_l.tolist() == [0] + np.cumsum(counts, dtype=np.int64).tolist()
    want_col = np.concatenate(expected_col) if inner else np.zeros(0, dtype=np.int64)
    want_row = np.repeat(np.arange(len(reached)), counts)
    assert col_l.tolist() == want_col.tolist() and row_l.tolist() == want_row.tolist()
    assert ends_l.tolist() == np.searchsorted(reached, ends.numpy()).tolist()
    if not normalise:
        assert weight_l.numel() == deg_l.numel() == self_l.numel() == 0
        return
    dl = dinv.numpy()[reached]
    assert weight_l.numpy().tobytes() == (dl[want_row] * dl[want_col]).astype(np.float32).tobytes()
    assert deg_l.tolist() == deg.numpy()[reached].tolist()
    assert self_l.numpy().tobytes() == self_w.numpy()[reached].tobytes()


def test_scope_csr_path_graph():
    """A path 0-1-2-3-4 from row 1 within one hop (independently: by hand): rows 0, 1, 2; row 1
    keeps its entries (to 0 and 2: local 0 and 2), rows 0 and 2 sit at the boundary."""
    rowptr = torch.tensor([0, 1, 3, 5, 7, 8])
    col = torch.tensor([1, 0, 2, 1, 3, 2, 4, 3])
    nodes, dist, rowptr_l, col_l, row_l, ends_l, *_ = cpu.scope_csr(rowptr, col, torch.tensor([1]), 1, 0.8)
    assert nodes.tolist() == [0, 1, 2] and dist.tolist() == [1, 0, 1] and ends_l.tolist() == [1]
    assert rowptr_l.tolist() == [0, 0, 2, 2] and col_l.tolist() == [0, 2] and row_l.tolist() == [1, 1]


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 300), m=st.integers(0, 70), frac=st.floats(0, 1))
def test_scatter_rows_matches_numpy(seed, n, m, frac):
    # numpy's fancy assignment is the independent specification: dst[rows] = src, other rows kept.
    g = torch.Generator().manual_seed(seed)
    dst = torch.randn(n, m, generator=g)
    rows = torch.randperm(n, generator=g)[: int(frac * n)]  # unique, unsorted
    src = torch.randn(rows.numel(), m, generator=g)
    want = dst.numpy().copy()
    want[rows.numpy()] = src.numpy()
    out = cpu.scatter_rows(dst, rows, src)
    assert out.data_ptr() == dst.data_ptr()  # in place
    assert torch.equal(dst, torch.from_numpy(want))


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 200), frac=st.floats(0, 1), p_exit=st.floats(0, 1),
       forced=st.booleans(), layer=st.integers(0, 7))
def test_exit_update_matches_numpy(seed, n, frac, p_exit, forced, layer):
    """One layer's exit bookkeeping against numpy: the rows judged (none exited, unsorted) exit
    where their flag or the forced mask says, at ``layer``; the other rows and entries stay as they
    were; the open endpoints (some exited before, some judged now) still open, and the rows that
    stay, each in the order given."""
    import numpy as np
    rng = np.random.default_rng(seed)
    L = 8
    exited = rng.random(n) < 0.3
    exit_layer = np.where(exited, rng.integers(0, L, n), L)
    candidates = np.flatnonzero(~exited)
    rows = rng.permutation(candidates)[: int(frac * candidates.size)]
    flag = rng.random(rows.size) < p_exit
    force = rng.random(n) < 0.2 if forced else None
    open_ends = rng.permutation(n)[: rng.integers(0, n + 1)]
    goes = flag | (force[rows] if forced else False)
    want_exited, want_layer = exited.copy(), exit_layer.copy()
    want_exited[rows[goes]] = True
    want_layer[rows[goes]] = layer
    ex, el = torch.from_numpy(exited.copy()), torch.from_numpy(exit_layer.copy())
    still, stay = cpu.exit_update(torch.from_numpy(rows), torch.from_numpy(flag),
                                  None if force is None else torch.from_numpy(force), ex, el,
                                  torch.from_numpy(open_ends), layer)
    assert ex.tolist() == want_exited.tolist() and el.tolist() == want_layer.tolist()
    assert still.tolist() == open_ends[~want_exited[open_ends]].tolist()
    assert stay.tolist() == rows[~goes].tolist()



@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([0, 1, 7, 300, 32768, 70001]), bound=st.integers(-1, 6),
       with_exited=st.booleans())
def test_live_rows_matches_numpy(seed, n, bound, with_exited):
    """The rows a layer judges against numpy's flatnonzero of ``(dist <= bound) & ~exited``: in
    increasing order, also across the op's 32k-row parallel chunks (70,001 rows: three)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    dist = rng.integers(0, 6, n)
    dist[rng.random(n) < 0.2] = UNREACHED
    exited = rng.random(n) < 0.3 if with_exited else None
    want = np.flatnonzero((dist <= bound) & (~exited if with_exited else True))
    got = cpu.live_rows(torch.from_numpy(dist), bound, None if exited is None else torch.from_numpy(exited))
    assert got.dtype == torch.int64 and got.tolist() == want.tolist()

# ---------------------------------------------------------------------- errors, never crashes
def linear_act_want(x, w, b, gelu):
    """F.gelu(F.linear(x, w, b)) in float64 with scipy's erf, and the scale its float32 error is
    measured against (1 + sum_k |x_k w_k| + |b|)."""
    import numpy as np
    from scipy.special import erf
    x64, w64 = x.double().numpy(), w.double().numpy()
    b64 = np.zeros(w64.shape[0]) if b is None else b.double().numpy()
    y = x64 @ w64.T + b64
    if gelu:
        y = 0.5 * y * (1 + erf(y / np.sqrt(2)))
    return y, 1 + np.abs(x64) @ np.abs(w64).T + np.abs(b64)


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(0, 45), k=st.integers(0, 70), n=WIDTHS,
       bias=st.booleans(), gelu=st.booleans(), scale=st.sampled_from([0.1, 1.0, 10.0]))
def test_linear_act_matches_float64(seed, rows, k, n, bias, gelu, scale):
    """The op against float64 numpy and scipy's erf: every row count around the 6-row register
    tile and the 32-row task, input widths 0 to 70, output widths around the 16-column panel
    (a partial last panel), with and without bias and GELU; and against torch's own
    F.gelu(F.linear(...)), the engine's specification, to the same tolerance."""
    import numpy as np
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, k, generator=g) * scale
    w = torch.randn(n, k, generator=g) / max(k, 1) ** 0.5
    b = torch.randn(n, generator=g) if bias else None
    out = torch.full((rows, n), float("nan"))
    assert cpu.linear_act(x, w, b, gelu, out).data_ptr() == out.data_ptr()
    want, size = linear_act_want(x, w, b, gelu)
    assert (np.abs(out.double().numpy() - want) <= 1e-6 * size).all()
    spec = torch.nn.functional.linear(x, w, b)
    spec = torch.nn.functional.gelu(spec) if gelu else spec
    assert (np.abs(out.double().numpy() - spec.double().numpy()) <= 1e-6 * size).all()



@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), degrees=st.lists(DEGREE, min_size=1, max_size=30),
       n_h=st.integers(1, 40), m=st.sampled_from([1, 5, 64, 70, 256]), n=WIDTHS, k=st.integers(0, 150),
       self_w=st.booleans(), cache=st.booleans(), bias=st.booleans(), gelu=st.booleans())
def test_aggregate_linear_act_is_the_two_ops(seed, degrees, n_h, m, n, k, self_w, cache, bias, gelu):
    """The fused layer update gives the same bits as its specification, linear_act on
    aggregate_rows' output (each tested against numpy and scipy above): random CSRs with hub rows,
    rows repeated and in any order (0 to 150: around the 12- and 64-row tasks), with and without
    self-loop weights, a frozen-neighbour cache, bias and GELU, input widths 1 to 256 and output
    widths around the 16-column panel."""
    g = torch.Generator().manual_seed(seed)
    R = len(degrees)
    rowptr, col, weight = random_csr(g, degrees, n_h)
    h = torch.randn(n_h, m, generator=g)
    rows = torch.randint(0, min(R, n_h) if self_w else R, (k,), generator=g)
    sw = torch.rand(R, generator=g) if self_w else None
    cached = torch.randn(R, m, generator=g) if cache else None
    w = torch.randn(n, m, generator=g) / m ** 0.5
    b = torch.randn(n, generator=g) if bias else None
    want = cpu.linear_act(cpu.aggregate_rows(rowptr, col, weight, h, rows, sw, cached), w, b, gelu)
    out = torch.full((k, n), float("nan"))
    got = cpu.aggregate_linear_act(rowptr, col, weight, h, rows, sw, cached, w, b, gelu, out)
    assert got.data_ptr() == out.data_ptr() and torch.equal(got, want)


def test_aggregate_linear_act_rejects_bad_input():
    """Bad input raises naming it, before any output is trusted: aggregate_rows' own errors (an
    index out of range, found by the tasks, then raised by the plain op), its shape checks, and
    those of the transform's weights and of ``out`` (which may not overlap what is read)."""
    rowptr, col, weight, h = small_graph()
    w, rows = torch.randn(5, h.shape[1]), torch.tensor([0, 2])
    out = torch.empty(2, 5)
    cases = [
        ((rowptr, col, weight, h, torch.tensor([0, 9]), None, None, w, None, True, out), r"rows\[1\] = 9"),
        ((rowptr, torch.tensor([1, 7, 0, 1, 2]), weight, h, rows, None, None, w, None, True, out), r"col\[1\] = 7"),
        ((rowptr, col, weight, h, rows, None, None, w[:, :1], None, True, out), "'lin_weight'"),
        ((rowptr, col, weight, h, rows, None, None, w, torch.ones(4), True, out), "'lin_bias'"),
        ((rowptr, col, weight, h, rows, None, None, w, None, True, torch.empty(3, 5)), "'out'"),
        ((rowptr, col, weight, h, rows, None, None, w, None, True, torch.empty(5, 2).t()), "'out'"),
        ((rowptr, col, weight, h, rows, None, torch.ones(2, 4), w, None, True, out), "'cache'"),
    ]
    for args, name in cases:
        with pytest.raises(RuntimeError, match=name):
            cpu.aggregate_linear_act(*args)
    wide = torch.randn(4, 5)  # out overlapping h: h's first rows as out
    with pytest.raises(RuntimeError, match="must not overlap"):
        cpu.aggregate_linear_act(rowptr, col, weight, wide[:3, :], rows, None, None, torch.randn(5, 5), None,
                                 True, wide[2:, :])

def test_linear_act_gelu_is_accurate():
    """GELU alone (weights of ones, K = 1: the product is the input itself) on a fine grid over
    [-12, 12], wide random values and extremes: within 3e-7 |x| of x Phi(x) in float64 (the
    A&S erf bound 1.5e-7 plus rounding; torch's own AVX2 GELU measured 2.6e-7 |x|); 0 and -0
    give 0, inf gives inf, and -inf and NaN give NaN, as torch's in float64. (torch's float32
    GELU is not a reference there: on AVX-512 its vectorised loop gives NaN for +inf, while the
    same input alone, or on AVX2, gives inf.)"""
    import numpy as np
    from scipy.special import erf
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.linspace(-12, 12, 240_001), torch.randn(100_000, generator=g) * 30,
                   torch.tensor([1e-30, -1e-30, 88.0, -88.0, 1e6, -1e6, 3e38, -3e38])])
    out = cpu.linear_act(x[:, None], torch.ones(1, 1), None, True)[:, 0]
    x64 = x.double().numpy()
    want = 0.5 * x64 * (1 + erf(x64 / np.sqrt(2)))
    assert (np.abs(out.double().numpy() - want) <= 3e-7 * np.abs(x64)).all()
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan")])
    got = cpu.linear_act(special[:, None], torch.ones(1, 1), None, True)[:, 0]
    assert got[:2].tolist() == [0.0, 0.0] and got[2] == float("inf") and got[3:].isnan().all()
    assert torch.equal(got.isnan(), torch.nn.functional.gelu(special.double()).isnan())


def test_linear_act_rows_do_not_depend_on_the_batch():
    """A row's outputs are the same bits whatever rows surround it (its tile position and task):
    the engine computes a row's states in the probe's batch and again in the layer's."""
    g = torch.Generator().manual_seed(1)
    x, w, b = torch.randn(77, 64, generator=g), torch.randn(40, 64, generator=g), torch.randn(40, generator=g)
    whole = cpu.linear_act(x, w, b, True)
    for start, stop in ((0, 1), (5, 12), (31, 77), (40, 41)):
        assert torch.equal(cpu.linear_act(x[start:stop], w, b, True), whole[start:stop])


def test_linear_act_rejects_bad_input_before_writing():
    x, w, b = torch.ones(3, 4), torch.ones(5, 4), torch.ones(5)
    buf = torch.zeros(3, 5)
    cases = [  # (floating x, weight and bias of another dtype or layout are converted first)
        ((x.long(), w, b, True, buf), "'x'"),
        ((x, w.int(), b, True, buf), "'weight'"),
        ((x, torch.ones(5, 3), b, True, buf), "'weight'"),
        ((x, w, torch.ones(4), True, buf), "'bias'"),
        ((x, w, b, True, torch.zeros(3, 4)), "'out'"),
        ((x, w, b, True, torch.zeros(3, 5, dtype=torch.float64)), "'out'"),
        ((x, w, b, True, torch.zeros(5, 3).T), "'out'"),
        ((x[0], w, b, True, buf), "'x'"),
    ]
    for args, name in cases:
        with pytest.raises(RuntimeError, match=name):
            cpu.linear_act(*args)
        assert not buf.any()  # nothing written
    storage = torch.zeros(40)
    with pytest.raises(RuntimeError, match="out must not overlap x"):
        cpu.linear_act(storage[:12].view(3, 4), w, b, True, storage[10:25].view(3, 5))
    assert not storage.any()


def small_graph():
    rowptr = torch.tensor([0, 2, 2, 5])
    col = torch.tensor([1, 2, 0, 1, 2])
    return rowptr, col, torch.rand(5), torch.randn(3, 4)


def test_scatter_rows_rejects_bad_input():
    dst, src = torch.zeros(4, 3), torch.ones(2, 3)
    with pytest.raises(RuntimeError, match=r"rows\[1\] = 4 is out of range for dst with 4 rows"):
        cpu.scatter_rows(dst, torch.tensor([0, 4]), src)
    assert torch.equal(dst[0], torch.ones(3)) and torch.equal(dst[1:], torch.zeros(3, 3))  # rows in range written
    for bad_dst, bad_rows, bad_src, what in [
            (torch.zeros(4, 3, dtype=torch.float64), torch.tensor([0, 1]), src, "dst"),
            (dst, torch.tensor([0, 1]), src.double(), "src"),
            (dst, torch.tensor([0.0, 1.0]), src, "rows"),
            (dst, torch.tensor([0, 1, 2]), src, "src"),  # k rows of src for 3 ids
            (dst, torch.tensor([0, 1]), torch.ones(2, 4), "src"),  # width
            (torch.zeros(4, 6)[:, ::2], torch.tensor([0, 1]), src, "dst"),  # not contiguous
            (torch.zeros(12), torch.tensor([0, 1]), src, "dst")]:
        with pytest.raises(RuntimeError, match=what):
            cpu.scatter_rows(bad_dst, bad_rows, bad_src)


@pytest.mark.parametrize("rows", [[3], [-1], [0, 5], [1 << 40]])
def test_aggregate_rows_rejects_rows_out_of_range(rows):
    rowptr, col, weight, h = small_graph()
    i = len(rows) - 1
    with pytest.raises(RuntimeError, match=rf"rows\[{i}\] = {rows[i]} is out of range \[0, R\) with R = 3"):
        cpu.aggregate_rows(rowptr, col, weight, h, torch.tensor(rows))


@pytest.mark.parametrize("bad", [3, -1, 1 << 40])
def test_aggregate_rows_rejects_col_out_of_range(bad):
    rowptr, col, weight, h = small_graph()
    bad_col = col.clone()
    bad_col[3] = bad
    for pass_cols in (None, 1):  # with one column per pass, later passes must not read the bad row
        with pytest.raises(RuntimeError, match=rf"col\[3\] = {bad} is out of range for h with 3 rows"):
            cpu.aggregate_rows(rowptr, bad_col, weight, h, torch.tensor([0, 2]), pass_cols=pass_cols)
    # Only the edges of the selected rows are read, and checked.
    torch.testing.assert_close(cpu.aggregate_rows(rowptr, bad_col, weight, h, torch.tensor([0, 1])),
                               torch_ops.aggregate_rows(rowptr, col, weight, h, torch.tensor([0, 1])))


@pytest.mark.parametrize("rowptr", [[0, 2, 1, 5], [0, 2, 2, 9], [-4, 2, 2, 5]])
def test_aggregate_rows_rejects_bad_rowptr(rowptr):
    _, col, weight, h = small_graph()
    with pytest.raises(RuntimeError, match="do not bound a valid edge range of col"):
        cpu.aggregate_rows(torch.tensor(rowptr), col, weight, h, torch.tensor([0, 1, 2]))


def test_aggregate_rows_rejects_bad_shapes_and_dtypes():
    rowptr, col, weight, h = small_graph()
    rows = torch.tensor([0, 2])
    cases = [
        ((rowptr, col, weight, h.long(), rows), "'h'"),
        ((rowptr, col, weight, h, rows.float()), "'rows'"),
        ((rowptr, col.float(), weight, h, rows), "'col'"),
        ((rowptr, col, weight[:4], h, rows), "'weight'"),
        ((rowptr, col, weight, h[0], rows), "'h'"),
        ((rowptr, col, weight, h, rows, torch.rand(2)), "'self_weight'"),
        ((rowptr, col, weight, h, rows, None, torch.randn(3, 5)), "'cache'"),
        ((rowptr[:0], col, weight, h, rows[:0]), "rowptr must hold"),
        ((rowptr, col, weight, h[:2], torch.tensor([0, 2]), torch.rand(3)),
         r"rows\[1\] = 2 with self_weight indexes h, which has 2 rows"),
        ((rowptr, col, weight, h, rows, None, None, 0), "pass_cols must be >= 1"),
    ]
    for args, name in cases:
        with pytest.raises(RuntimeError, match=name):
            cpu.aggregate_rows(*args)


def mlp_params(sizes):
    return ([torch.randn(o, i) for i, o in zip(sizes, sizes[1:])], [torch.randn(o) for o in sizes[1:]])


@pytest.mark.parametrize("which,bad", [("u", 10), ("v", -1), ("u", 1 << 40)])
def test_score_pairs_rejects_indices_out_of_range(which, bad):
    z = torch.randn(10, 8)
    u, v = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    (u if which == "u" else v)[1] = bad
    with pytest.raises(RuntimeError, match=rf"{which}\[1\] = {bad} is out of range for z with 10 rows"):
        cpu.score_pairs(z, u, v, *mlp_params([8, 4, 1]))


def test_score_pairs_rejects_bad_shapes_and_dtypes():
    z, u, v = torch.randn(10, 8), torch.tensor([1, 2]), torch.tensor([3, 4])
    weights, biases = mlp_params([8, 4, 1])
    cases = [
        ((z.long(), u, v, weights, biases), "'z'"),
        ((z, u.float(), v, weights, biases), "'u'"),
        ((z, u, v[:1], weights, biases), "'v'"),
        ((z, u, v, weights, biases[:1]), "one bias per weight"),
        ((z, u, v, [], []), "at least one layer"),
        ((z, u, v, *mlp_params([7, 4, 1])), r"weights\[0\] must be \[out, 8\]"),
        ((z, u, v, *mlp_params([8, 4, 2])), "one logit"),
        ((z, u, v, weights, [biases[0][:3], biases[1]]), r"'biases\[0\]'"),
        ((z, u, v, weights, biases, 0), "block must be positive"),
    ]
    for args, name in cases:
        with pytest.raises(RuntimeError, match=name):
            cpu.score_pairs(*args)


def test_exit_decision_rejects_bad_shapes_and_dtypes():
    h = torch.randn(5, 6)
    w1, b1, w2, b2 = torch.randn(4, 6), torch.randn(4), torch.randn(2, 4), torch.randn(2)
    cases = [
        ((h.long(), w1, b1, w2, b2, 0.5), "'h'"),
        ((h, w1[:, :5], b1, w2, b2, 0.5), "'w1'"),
        ((h, w1, b1[:3], w2, b2, 0.5), "'b1'"),
        ((h, w1, b1, w2[:1], b2, 0.5), "'w2'"),
        ((h, w1, b1, w2, b2, 0.5, torch.randn(6)), "needs both w_nu and b_nu"),
        ((h, w1, b1, w2, b2, 0.5, torch.randn(5), torch.randn(1)), "'w_nu'"),
    ]
    for args, name in cases:
        with pytest.raises(RuntimeError, match=name):
            cpu.exit_decision(*args)


def test_hop_distance_rejects_bad_input():
    rowptr, col, _, _ = small_graph()
    cases = [
        ((rowptr, col, torch.tensor([3]), 2), r"sources\[0\] = 3 is outside \[0, 3\)"),
        ((rowptr, col, torch.tensor([0, -1]), 2), r"sources\[1\] = -1 is outside"),
        ((rowptr, torch.tensor([1, 7, 0, 1, 2]), torch.tensor([0]), 2), r"col\[1\] = 7 is outside \[0, 3\)"),
        ((torch.tensor([0, 4, 2, 5]), col, torch.tensor([1]), 2), r"rowptr\[1..2\] = \[4, 2\) is not a range"),
        ((torch.tensor([0, 2, 2, 9]), col, torch.tensor([2]), 2), r"rowptr\[2..3\] = \[2, 9\) is not a range"),
        ((rowptr, col, torch.tensor([0]), -1), "max_hops must be >= 0"),
        ((rowptr, col.float(), torch.tensor([0]), 2), "'col'"),
        ((rowptr, col, torch.tensor([[0]]), 2), "'sources'"),
        ((rowptr[:0], col, torch.tensor([0]), 2), "rowptr must hold"),
        ((rowptr, col, torch.tensor([0]), 2, torch.ones(2, dtype=torch.bool)), "'passable'"),
        ((rowptr, col, torch.tensor([0]), 2, torch.ones(3)), "'passable'"),
    ]
    for args, name in cases:
        with pytest.raises(RuntimeError, match=name):
            cpu.hop_distance(*args)


def test_exit_update_rejects_bad_input_before_writing():
    exited, layer = torch.zeros(4, dtype=torch.bool), torch.full((4,), 3)
    rows, flag, open_ends = torch.tensor([0, 2]), torch.tensor([True, True]), torch.tensor([1, 2])
    cases = [
        ((torch.tensor([0, 4]), flag, None, exited, layer, open_ends, 1), r"rows\[1\] = 4 is out of range for 4 rows"),
        ((rows, flag, None, exited, layer, torch.tensor([-1]), 1), r"open_ends\[0\] = -1 is out of range"),
        ((rows, torch.tensor([1, 1]), None, exited, layer, open_ends, 1), "'flag'"),
        ((rows, flag[:1], None, exited, layer, open_ends, 1), "'flag'"),
        ((rows, flag, torch.zeros(3, dtype=torch.bool), exited, layer, open_ends, 1), "'forced'"),
        ((rows, flag, None, exited, layer[:3], open_ends, 1), "'exit_layer'"),
        ((rows, flag, None, exited, layer.int(), open_ends, 1), "'exit_layer'"),
        ((rows, flag, None, exited.int(), layer, open_ends, 1), "'exited'"),
    ]
    for args, name in cases:
        with pytest.raises(RuntimeError, match=name):
            cpu.exit_update(*args)
        assert not exited.any() and (layer == 3).all()  # nothing written



def test_live_rows_rejects_bad_input():
    dist = torch.tensor([0, 1, 2])
    # (integer dtypes and strides are converted by the wrapper, as for every index argument)
    cases = [((dist.float(), 1), "'dist'"), ((dist.view(3, 1), 1), "'dist'"),
             ((dist, 1, torch.zeros(2, dtype=torch.bool)), "'exited'"), ((dist, 1, torch.zeros(3)), "'exited'")]
    for args, name in cases:
        with pytest.raises(RuntimeError, match=name):
            cpu.live_rows(*args)

def test_scope_csr_rejects_bad_input_and_stays_right():
    """Bad input raises naming it; a call that raised midway leaves the op's per-thread row map
    as it found it, so the next call is still right (rows 0-2 of small_graph, by hand)."""
    rowptr, col, _, _ = small_graph()
    cases = [
        ((rowptr, col, torch.tensor([3]), 2, 0.8), r"ends\[0\] = 3 is outside \[0, 3\)"),
        ((rowptr, torch.tensor([1, 7, 0, 1, 2]), torch.tensor([0]), 2, 0.8), r"col\[1\] = 7 is outside \[0, 3\)"),
        ((torch.tensor([0, 4, 2, 5]), col, torch.tensor([1]), 2, 0.8), r"rowptr\[1..2\] = \[4, 2\) is not a range"),
        ((rowptr, col, torch.tensor([0]), -1, 0.8), "hops must be >= 0"),
        ((rowptr, col, torch.tensor([0]), 2, 1.5), r"max_fraction must be in \[0, 1\]"),
        ((rowptr, col.float(), torch.tensor([0]), 2, 0.8), "'col'"),
        ((rowptr, col, torch.tensor([[0]]), 2, 0.8), "'ends'"),
        ((rowptr[:0], col, torch.tensor([0]), 2, 0.8), "rowptr must hold"),
        ((rowptr, col, torch.tensor([0, 1]), 2, 0.8, torch.tensor([True])), "'exiting'"),
        ((rowptr, col, torch.tensor([0]), 2, 0.8, torch.tensor([1])), "'exiting'"),
        ((rowptr, col, torch.tensor([0, 5]), 2, 0.8, torch.tensor([False, True])), r"ends\[1\] = 5 is outside"),
        ((rowptr, col, torch.tensor([0]), 2, 0.8, None, torch.ones(2)), "'dinv'"),
        ((rowptr, col, torch.tensor([0]), 2, 0.8, None, torch.ones(3, dtype=torch.float64).int()), "'dinv'"),
        ((rowptr, col, torch.tensor([0]), 2, 0.8, None, None, torch.ones(3)), "'deg'"),
        ((rowptr, col, torch.tensor([0]), 2, 0.8, None, None, None, torch.ones(4)), "'self_loop_weight'"),
    ]
    for args, name in cases:
        with pytest.raises(RuntimeError, match=name):
            cpu.scope_csr(*args)
    # Rows 0 -> {1, 2}, 1 -> {}, 2 -> {0, 1, 2}: from row 1, nothing beyond it.
    nodes, dist, rowptr_l, col_l, row_l, *_ = cpu.scope_csr(rowptr, col, torch.tensor([1]), 2, 1.0)
    assert nodes.tolist() == [1] and dist.tolist() == [0] and rowptr_l.tolist() == [0, 0] and row_l.numel() == 0
    # The path 0-1-2-3-4 from row 1 within two hops, end 2 exiting (by hand): rows 0, 1 and 2 (at
    # the boundary, not walked through: row 3 stays out; then at distance 0, an end); row 0 keeps
    # its entry to 1, row 1 those to 0 and 2 (local 0 and 2), row 2 none. With dinv = 1 / (v + 1),
    # the entries' weights are 1 * 1/2 (row 0 to 1), 1/2 * 1 and 1/2 * 1/3 (row 1 to 0 and 2).
    path_rowptr, path_col = torch.tensor([0, 1, 3, 5, 7, 8]), torch.tensor([1, 0, 2, 1, 3, 2, 4, 3])
    dinv = 1 / torch.arange(1, 6, dtype=torch.float32)
    nodes, dist, rowptr_l, col_l, row_l, ends_l, weight_l, deg_l, self_l = cpu.scope_csr(
        path_rowptr, path_col, torch.tensor([1, 2]), 2, 0.8, torch.tensor([False, True]), dinv,
        path_rowptr.diff(), dinv * dinv)
    assert nodes.tolist() == [0, 1, 2] and dist.tolist() == [1, 0, 0] and ends_l.tolist() == [1, 2]
    assert rowptr_l.tolist() == [0, 1, 3, 3] and col_l.tolist() == [1, 0, 2] and row_l.tolist() == [0, 1, 1]
    assert torch.allclose(weight_l, torch.tensor([1 / 2, 1 / 2, 1 / 6]), rtol=0, atol=1e-7)
    assert deg_l.tolist() == [1, 2, 2] and torch.allclose(self_l, torch.tensor([1, 1 / 4, 1 / 9]))
    nodes, dist, *rest = cpu.scope_csr(rowptr, col, torch.tensor([0]), 1, 1.0)  # not compacted
    assert dist.tolist() == [0, 1, 1] and nodes.numel() == 0 and all(t.numel() == 0 for t in rest)


def test_falls_back_to_torch_with_one_warning(monkeypatch):
    monkeypatch.setitem(cpu._state, "error", "simulated build failure")
    monkeypatch.setattr(cpu, "_warned", False)
    rowptr, col, weight, h = small_graph()
    rows = torch.tensor([2, 0])
    with pytest.warns(UserWarning, match="simulated build failure") as record:
        out = cpu.aggregate_rows(rowptr, col, weight, h, rows)
        cpu.aggregate_rows(rowptr, col, weight, h, rows)
    assert len(record) == 1 and record[0].filename == __file__
    assert not cpu.available()
    torch.testing.assert_close(out, torch_ops.aggregate_rows(rowptr, col, weight, h, rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cpu.score_pairs(torch.randn(3, 8), rows, rows, *mlp_params([8, 1]))
