"""The execution planner (engine/plan.py): its choices, its exit profiles, its calibration cache.
That every plan gives the reference's results is checked with the engine's contract tests
(test_engine.py runs each case under ``plan`` "auto", "dense" and "engine")."""
import json

import pytest
import torch

import linkexit_fast as lf
from linkexit_fast.backends import get_backend
from linkexit_fast.engine import plan as planner
from linkexit_fast.models import EarlyExitLinkPredictor, ModelConfig
from test_engine import random_graph

# Seconds per unit of a made-up machine, so the choices below do not depend on this one.
COSTS = planner.Costs(mac=2e-11, entry=3e-10, entry_hot=5e-11, copy=2e-9, select=1.5e-9, scan=1e-9, op=5e-6, sync=1e-6)


@pytest.fixture
def fixed_costs(monkeypatch):
    monkeypatch.setattr(planner, "calibrate", lambda ops, device, m, force=False: COSTS)


def model_of(n, layers=3, exit="node", hidden=32, seed=0):
    torch.manual_seed(seed)
    return EarlyExitLinkPredictor(ModelConfig(6, n, hidden=hidden, layers=layers, exit=exit)).eval()


def test_few_queries_on_a_large_graph_take_the_engine(fixed_costs):
    graph = random_graph(20000, 60000, 0, 1)
    model = model_of(20000, hidden=64)
    _, st = lf.predict(graph, [[0, 1], [2, 3]], model=model, return_stats=True)
    assert st.plan.startswith("engine") and "no exit profile yet" in st.plan


def test_every_node_an_endpoint_without_exits_takes_the_dense_path(fixed_costs):
    graph = random_graph(400, 2000, 0, 2)
    model = model_of(400, exit="none")
    pairs = torch.stack([torch.arange(400), torch.arange(400).roll(1)], 1)
    _, st = lf.predict(graph, pairs, model=model, return_stats=True)
    assert st.plan.startswith("dense") and "no exits" in st.plan
    # Forced paths are taken as asked, and say so.
    _, st = lf.predict(graph, pairs, model=model, return_stats=True, plan="engine")
    assert st.plan == "engine (requested)"


def test_the_exit_profile_is_learnt_and_forgotten_when_the_weights_change(fixed_costs):
    graph = random_graph(400, 2000, 0, 3)
    model = model_of(400, layers=4)
    pairs = torch.stack([torch.arange(400), torch.arange(400).roll(1)], 1)
    thr = 0.5
    _, first = lf.predict(graph, pairs, thr, model=model, return_stats=True)
    assert "no exit profile yet" in first.plan
    # The share of endpoints open after each layer, recomputed from the reference's exit layers.
    ref_layers = model(graph, mode="threshold", threshold=thr).exit_layer
    expect = [float((ref_layers > l).float().mean()) for l in range(4)]
    assert planner.profile(model, graph, thr) == pytest.approx(expect, abs=1e-12)
    assert planner.profile(model, graph, 0.9) is None  # learnt per threshold
    _, second = lf.predict(graph, pairs, thr, model=model, return_stats=True)
    assert "exit profile of earlier calls on this graph" in second.plan
    # Another graph (here the same edges, another object) has its own profile: none yet.
    other = lf.Graph(graph.rowptr, graph.col, graph.num_nodes, graph.x)
    assert planner.profile(model, other, thr) is None
    _, third = lf.predict(other, pairs, thr, model=model, return_stats=True)
    assert "no exit profile yet" in third.plan
    # An optimiser step changes the weights in place: the profile no longer holds.
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.predictor.lins[0].weight.grad = torch.ones_like(model.predictor.lins[0].weight)
    opt.step()
    assert planner.profile(model, graph, thr) is None


def test_estimates_are_kept_with_their_profile(monkeypatch):
    """Calls with the same profile, endpoint count, backend, device and costs reuse their estimate;
    any of them changed, it is made again; a new profile starts afresh; the kept ones are bounded."""
    made = []
    real = planner.estimate
    monkeypatch.setattr(planner, "estimate", lambda *a: made.append(a[3]) or real(*a))
    costs = [COSTS]
    monkeypatch.setattr(planner, "calibrate", lambda ops, device, m, force=False: costs[0])
    graph = random_graph(300, 1200, 0, 7)
    model = model_of(300)
    ops, cpu = get_backend("cpu"), torch.device("cpu")
    first = planner.choose(model, graph, 50, 0.9, ops, cpu)  # no profile yet: nothing kept
    planner.choose(model, graph, 50, 0.9, ops, cpu)
    assert made == [50, 50]
    planner.record(model, graph, 0.9, torch.tensor([1] * 30 + [3] * 20))
    a = planner.choose(model, graph, 50, 0.9, ops, cpu)
    b = planner.choose(model, graph, 50, 0.9, ops, cpu)
    assert made == [50, 50, 50] and a.seconds == b.seconds and a.seconds != first.seconds
    planner.choose(model, graph, 60, 0.9, ops, cpu)  # other endpoints
    planner.choose(model, graph, 60, 0.9, get_backend("torch"), cpu)  # another backend
    costs[0] = planner.Costs(**{**COSTS.__dict__, "op": 1e-3})  # recalibrated
    planner.choose(model, graph, 60, 0.9, ops, cpu)
    assert made == [50, 50, 50, 60, 60, 60]
    planner.record(model, graph, 0.9, torch.tensor([3] * 50))  # a new profile
    planner.choose(model, graph, 60, 0.9, ops, cpu)
    assert made[-1] == 60 and len(made) == 7
    for e in range(2 * planner.ESTIMATES_KEPT):
        planner.choose(model, graph, e + 1, 0.9, ops, cpu)
    assert len(planner._profile_entry(model, graph, 0.9)[2]) <= planner.ESTIMATES_KEPT


def test_exits_that_spare_rows_turn_the_choice_to_the_engine(fixed_costs):
    graph = random_graph(2000, 10000, 0, 5)
    model = model_of(2000, layers=4, hidden=64)
    ops, cpu, every = get_backend("torch"), torch.device("cpu"), 2000
    assert planner.choose(model, graph, every, 0.9, ops, cpu).path == "dense"
    # Nine in ten endpoints exit at the first decision (layer 1), the rest run to the end.
    planner.record(model, graph, 0.9, torch.tensor([1] * 900 + [4] * 100))
    assert planner.profile(model, graph, 0.9) == pytest.approx([1.0, 0.1, 0.1, 0.1])
    assert planner.choose(model, graph, every, 0.9, ops, cpu).path == "engine"
    # All of them at the same layer: both paths stop there, and the dense one has less bookkeeping.
    planner.record(model, graph, 0.9, torch.tensor([2] * 1000))
    assert planner.choose(model, graph, every, 0.9, ops, cpu).path == "dense"


@pytest.mark.parametrize("margin, engine_over_dense, path", [
    (planner.ENGINE_MARGIN, 0.98, "engine"), (planner.ENGINE_MARGIN, 0.995, "dense"), (0.0, 0.99, "engine"),
    (0.0, 1.0, "dense"), (0.0, 1.2, "dense"), (0.05, 0.99, "dense"), (0.05, 0.96, "dense"), (0.05, 0.94, "engine")])
def test_the_engine_must_be_estimated_cheaper_by_the_margin(fixed_costs, monkeypatch, margin, engine_over_dense, path):
    """The engine is taken where its estimate is below (1 - ENGINE_MARGIN) x the dense one; a tie
    goes to the dense path. Checked at the margin (1 %), at none and at the 5 % it once was."""
    monkeypatch.setattr(planner, "ENGINE_MARGIN", margin)
    monkeypatch.setattr(planner, "estimate", lambda *a: {"dense": 1.0, "engine": engine_over_dense})
    graph = random_graph(200, 800, 0, 6)
    plan = planner.choose(model_of(200), graph, 10, 0.9, get_backend("torch"), torch.device("cpu"))
    assert plan.path == path and plan.seconds == {"dense": 1.0, "engine": engine_over_dense}


def test_estimates_follow_the_documented_formula():
    """The dense estimate, recomputed here from the module docstring's formula."""
    model = model_of(100, layers=4, hidden=16)
    n, entries = 1000, 8000
    est = planner.estimate(model, n, entries, n, COSTS, None)
    m, d, L = 16, 8.0, 4
    head = 16 * model.config.exit_hidden + model.config.exit_hidden * 2  # lin1, lin2 (no temperature head)
    row = (m * m + head) * COSTS.mac + (d + 1) * m * COSTS.entry_hot  # 1000 x 16 floats: in cache
    ops, syncs, scans = planner.OVERHEAD["torch"]["dense"]  # ops None: the torch ops' bookkeeping
    layer = n * row + ops * COSTS.op + syncs * COSTS.sync + scans * n * COSTS.scan
    assert est["dense"] == pytest.approx(L * layer, rel=1e-12)  # no exits: no mask
    # Half the endpoints exit at layer 1, the rest at layer 2: layers 0 and 1 update (the second
    # with the mask that keeps exited states), then both paths stop.
    early = planner.estimate(model, n, entries, n, COSTS, [1.0, 0.5, 0.0, 0.0])
    assert early["dense"] == pytest.approx(2 * layer + n * m * COSTS.select, rel=1e-12)
    # No exits, every node an endpoint: the engine does the same rows plus its bookkeeping.
    assert est["engine"] > est["dense"] * 0.9
    # Two endpoints of 200k nodes: the engine's rows are their reach, its fixed costs are small.
    big = planner.estimate(model, 200_000, 1_600_000, 2, COSTS, None)
    assert big["engine"] < 0.2 * big["dense"]


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_engine_estimate_follows_the_documented_formula(backend):
    """The engine estimate recomputed from the module docstring's formula where each term is known
    by hand: no exits, 10 endpoints of a 100k-node graph of mean degree 4, L = 3 (hidden 16, states
    in cache). Layer l updates the reach of the endpoints within 2 - l hops, 10 * 5^(2 - l) rows,
    each with its one copy (no exit head to gather for); every layer pays the bookkeeping's mask
    passes (native on the CPU backend, torch ops otherwise), and no exit bookkeeping; the scope
    walks visit the rows they reach."""
    model = model_of(100, layers=3, hidden=16, exit="none")
    n, entries, ends, m = 100_000, 400_000, 10, 16
    est = planner.estimate(model, n, entries, ends, COSTS, None, get_backend(backend))
    row = m * m * COSTS.mac + (4 + 1) * m * COSTS.entry_hot  # exit none: no head
    _, _, scans = planner.OVERHEAD["native" if backend == "cpu" else "torch"]["engine"]
    fixed = scans * n * COSTS.scan  # no exits: no exit bookkeeping, the mask passes only
    rows = [250, 50, 10]
    walked = 250 + 50  # the last layer's rows are the endpoints: no walk
    expect = sum(r * (row + m * COSTS.copy) + fixed for r in rows) + walked * 4 * COSTS.scan
    assert est["engine"] == pytest.approx(expect, rel=1e-12)


def test_the_last_layer_updates_the_open_endpoints_once():
    """Under freeze the last engine layer updates the endpoints still open after its decision:
    1000 endpoints, 40 % open after layer 2's decisions, are 400 rows (not 0.4 x 400)."""
    model = model_of(100, layers=3, hidden=16)
    n, entries = 1_000_000, 4_000_000
    after = [1.0, 1.0, 0.4]
    cpu = get_backend("cpu")  # heads read rows in place: one copy a live row
    est = planner.estimate(model, n, entries, 1000, COSTS, after, cpu)
    less = planner.estimate(model, n, entries, 1000, COSTS, [1.0, 1.0, 0.3], cpu)
    row = planner._row_cost(model, n, entries, COSTS)
    # One endpoint in ten fewer at the last layer: 100 rows fewer, with their copy, and the
    # first layers' reach shrinks not at all (their share open is the same).
    assert est["engine"] - less["engine"] == pytest.approx(100 * (row + 16 * COSTS.copy), rel=1e-9)


def test_a_live_row_is_copied_once_where_the_heads_read_rows_in_place():
    """The CPU backend judges rows in place: a live row's only copy is its scatter back. The torch
    ops gather the rows for the heads first; subgraph exit gathers on every backend."""
    cpu, torch_ops = get_backend("cpu"), get_backend("torch")
    assert planner.copies(model_of(10), cpu) == 1
    assert planner.copies(model_of(10), torch_ops) == 2
    assert planner.copies(model_of(10, exit="subgraph"), cpu) == 2
    assert planner.copies(model_of(10, exit="none"), torch_ops) == 1


def test_bad_plan_is_refused_before_anything_runs():
    graph = random_graph(20, 40, 0, 4)
    with pytest.raises(ValueError, match="plan must be one of 'auto', 'dense', 'engine', got 'fast'"):
        lf.predict(graph, [[0, 1]], model=model_of(20), plan="fast")
    with pytest.raises(ValueError, match="plan must be one of"):
        lf.embeddings(graph, [0, 1], model=model_of(20), plan=None)


def test_calibration_is_cached_on_disk_and_redone_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("LINKEXIT_CACHE", str(tmp_path))
    monkeypatch.setattr(planner, "_COSTS", {})
    ops, cpu = get_backend("torch"), torch.device("cpu")
    costs = planner.calibrate(ops, cpu, 16)
    assert all(getattr(costs, f) >= 0 for f in ("mac", "entry", "entry_hot", "copy", "select", "scan", "op", "sync"))
    assert costs.mac > 0 and costs.entry > 0
    stored = json.loads((tmp_path / "planner_costs.json").read_text())
    assert stored[costs.key]["mac"] == costs.mac
    # A new process reads the file: nothing is measured.
    monkeypatch.setattr(planner, "_COSTS", {})
    monkeypatch.setattr(planner, "_best_seconds", lambda *a, **k: pytest.fail("measured again"))
    assert planner.calibrate(ops, cpu, 16) == costs
    # force measures again and overwrites the entry.
    monkeypatch.setattr(planner, "_best_seconds", lambda fn, device, repeats=7: 1.0)
    again = planner.calibrate(ops, cpu, 16, force=True)
    assert again.op == pytest.approx(0.01)
    # One gather and one scatter back of half the 20k rows, 16 wide, priced per copy.
    assert again.copy == pytest.approx(1.0 / (2 * 10_000 * 16))
    assert json.loads((tmp_path / "planner_costs.json").read_text())[costs.key]["op"] == again.op


def test_an_unwritable_or_corrupt_cache_is_no_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LINKEXIT_CACHE", str(blocker / "sub"))
    monkeypatch.setattr(planner, "_COSTS", {})
    monkeypatch.setattr(planner, "_best_seconds", lambda fn, device, repeats=7: 1e-3)
    assert planner.calibrate(get_backend("torch"), torch.device("cpu"), 8).mac > 0
    corrupt = tmp_path / "c"
    corrupt.mkdir()
    (corrupt / "planner_costs.json").write_text("{not json")
    monkeypatch.setenv("LINKEXIT_CACHE", str(corrupt))
    monkeypatch.setattr(planner, "_COSTS", {})
    assert planner.calibrate(get_backend("torch"), torch.device("cpu"), 8).mac > 0


def test_a_cache_entry_of_another_version_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LINKEXIT_CACHE", str(tmp_path))
    monkeypatch.setattr(planner, "_COSTS", {})
    monkeypatch.setattr(planner, "_best_seconds", lambda fn, device, repeats=7: 1e-3)
    ops, cpu = get_backend("torch"), torch.device("cpu")
    key = planner._key(ops, cpu, 8)
    (tmp_path / "planner_costs.json").write_text(json.dumps({key: {"mac": 1.0, "entry": 1.0}}))
    assert planner.calibrate(ops, cpu, 8).entry_hot > 0
