"""Graph-partitioned inference (linkexit_fast.partitioned): shards against the graph, 2 and 3
gloo ranks spawned inside the test (127.0.0.1, a port the OS picks, every run bounded by
TIMEOUT) against the dense reference forward (``backend="reference"``: every node through every
layer, not the engine's code), the shards' rows against scipy's CSR, and the rows of the first
exchange against a scipy breadth-first search."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path
import torch

import linkexit_fast as lf
from linkexit_fast import distributed, partitioned
from linkexit_fast.cli import main
from linkexit_fast.datasets import synthetic
from linkexit_fast.models import EarlyExitLinkPredictor, ModelConfig

TIMEOUT = 120
SCORE_ATOL = 1e-5  # the engine contract
N, F, M, L = 400, 8, 16, 3
VARIANTS = [("gcn", "node", "freeze"), ("gcn", "subgraph", "freeze"), ("resgcn", "node", "readout"),
            ("sas", "node", "freeze"), ("sas", "subgraph", "readout"), ("gcn", "none", "freeze")]


def _graph():
    return synthetic(N, 6, F, 4, seed=0).graph


def _models():
    """Random models of every backbone and exit mode, and one in Gumbel-sample eval mode; at
    threshold 0.5 many of their nodes exit, at 1.0 none does."""
    torch.manual_seed(0)
    models = {}
    for bb, ex, sem in VARIANTS:
        models[f"{bb}-{ex}-{sem}"] = EarlyExitLinkPredictor(ModelConfig(
            F, N, hidden=M, layers=L, dropout=0.0, backbone=bb, exit=ex, semantics=sem)).eval()
    sample = EarlyExitLinkPredictor(ModelConfig(F, N, hidden=M, layers=L, dropout=0.0)).eval()
    sample.eval_mode, sample.sample_seed = "sample", 3
    models["gcn-node-sample"] = sample
    return models


def _pairs(graph):
    g = torch.Generator().manual_seed(1)
    hub = int(graph.deg.argmax())
    return torch.cat([torch.randint(0, N, (120, 2), generator=g),
                      torch.stack([torch.full((30,), hub), torch.randint(0, N, (30,), generator=g)], 1)])


def _scipy_adjacency(graph):
    return sp.csr_matrix((np.ones(graph.col.numel()), graph.col.numpy(), graph.rowptr.numpy()), shape=(N, N))


@pytest.mark.parametrize("method", ["range", "metis"])
def test_shards_hold_their_rows_halo_and_send_lists(method):
    if method == "metis":
        pytest.importorskip("pymetis")
    graph = _graph()
    parts = partitioned.partition(graph, 3, method)
    assert parts.shape == (N,) and set(parts.tolist()) == {0, 1, 2}
    shards = partitioned.build_shards(graph, parts)
    adj = _scipy_adjacency(graph)
    for s in shards:
        s.check()
        local = torch.cat([s.nodes, s.halo]).numpy()
        assert np.array_equal(s.nodes.numpy(), np.flatnonzero(parts.numpy() == s.rank))
        for i, v in enumerate(s.nodes.tolist()):  # each row: the graph's row, in its order
            got = local[s.col[s.rowptr[i]:s.rowptr[i + 1]].numpy()]
            assert np.array_equal(got, adj.indices[adj.indptr[v]:adj.indptr[v + 1]])
        nbrs = np.unique(adj[s.nodes.numpy()].indices)
        assert set(s.halo.tolist()) == set(nbrs[parts.numpy()[nbrs] != s.rank].tolist())
        assert s.deg.tolist() == np.diff(adj.indptr)[local].tolist()
    for r in shards:  # r's send list to q is q's halo from r, in the same order
        for q in shards:
            start = sum(r.send_counts[:q.rank])
            sent = r.nodes[r.send_rows[start:start + r.send_counts[q.rank]]]
            hstart = sum(q.recv_counts[:r.rank])
            assert torch.equal(sent, q.halo[hstart:hstart + q.recv_counts[r.rank]])


def _on_ranks(shards, models, pairs):
    shard = shards[distributed.rank()]
    out = {}
    for name, model in models.items():
        for t in (0.5, 1.0):
            st = partitioned.PartitionStats(0, t)
            scores = partitioned.predict(shard, pairs, t, model=model, stats=st, batch_size=64)
            every = [None] * distributed.world_size()
            torch.distributed.all_gather_object(every, (st.endpoints, st.exit_layer))
            out[name, t] = scores, every, st
    return out


@pytest.mark.parametrize("world,method", [(2, "range"), (3, "metis")])
def test_partitioned_predict_matches_one_process(world, method):
    if method == "metis":
        pytest.importorskip("pymetis")
    graph, models = _graph(), _models()
    pairs = _pairs(graph)
    parts = partitioned.partition(graph, world, method)
    shards = partitioned.build_shards(graph, parts)
    got = distributed.launch(_on_ranks, world, shards, models, pairs, threads=1, timeout=TIMEOUT)
    # which nodes read across ranks, before layer 0: from scipy's distances, not from the engine
    adj = _scipy_adjacency(graph)
    dist = shortest_path(adj, unweighted=True, indices=torch.unique(pairs).numpy()).min(0)
    rows, cols = adj.nonzero()
    cross = parts.numpy()[rows] != parts.numpy()[cols]
    first_rows = len({(r, parts[c].item()) for r, c in zip(rows[cross], cols[cross]) if dist[c] <= L - 1})
    exits_seen = 0
    for (name, t), (scores, every, st) in got.items():
        want, ws = lf.predict(graph, pairs, t, model=models[name], backend="reference", return_stats=True)
        torch.testing.assert_close(scores, want, atol=SCORE_ATOL, rtol=0, msg=f"{name} at {t}")
        layer = torch.full((N,), -1)
        for ends, layers in every:
            layer[ends] = layers
        assert torch.equal(layer[pairs], ws.exit_layer), f"{name} at {t}"
        assert st.rows_sent[0] == first_rows, name
        assert st.state_bytes[0] == first_rows * M * 4
        assert all(s <= f for s, f in zip(st.state_bytes, st.full_graph_bytes))
        if (t == 1.0 and "sample" not in name) or name.startswith("gcn-none"):  # samples exit at 1.0 too
            assert (ws.exit_layer == L).all() and sum(st.frozen_rows) == 0
        else:
            exits_seen += int((ws.exit_layer < L).any())
            off = got[name, 1.0][2]
            assert sum(st.state_bytes) <= sum(off.state_bytes), name  # exits never add traffic
    assert exits_seen >= 4  # the models do exit at 0.5: the comparison covers exits


def test_one_rank_without_a_process_group_is_the_single_process_engine():
    graph, models = _graph(), _models()
    pairs = _pairs(graph)
    (shard,) = partitioned.build_shards(graph, partitioned.partition(graph, 1))
    for name, model in models.items():
        got = partitioned.predict(shard, pairs, 0.5, model=model)
        want = lf.predict(graph, pairs, 0.5, model=model, backend="reference")
        torch.testing.assert_close(got, want, atol=SCORE_ATOL, rtol=0)


def test_bad_input_is_refused_before_any_exchange(tmp_path):
    graph, models = _graph(), _models()
    model = models["gcn-node-freeze"]
    shards = partitioned.build_shards(graph, partitioned.partition(graph, 2, "range"))
    with pytest.raises(ValueError, match="rank 0 of 1, but the shard is rank 1 of 2"):
        partitioned.predict(shards[1], _pairs(graph), model=model)
    (one,) = partitioned.build_shards(graph, torch.zeros(N, dtype=torch.int64))
    with pytest.raises(ValueError, match="pairs"):
        partitioned.predict(one, [[0, N]], model=model)
    with pytest.raises(ValueError, match="threshold"):
        partitioned.predict(one, [[0, 1]], 1.5, model=model)
    with pytest.raises(ValueError, match="model expects 5 input features, the shard has 8"):
        partitioned.predict(one, [[0, 1]], model=EarlyExitLinkPredictor(ModelConfig(5, N, hidden=M, layers=L)))
    with pytest.raises(ValueError, match=r"parts \[1\] of 3 hold no node"):
        partitioned.build_shards(graph, torch.tensor([0, 2] * (N // 2)))
    with pytest.raises(ValueError, match=r"parts must be \[400\] integers"):
        partitioned.build_shards(graph, torch.zeros(N))
    with pytest.raises(ValueError, match="exceeds the graph's 400 nodes"):
        partitioned.partition(graph, N + 1)


def test_shard_files_round_trip_and_hostile_files_are_refused(tmp_path):
    graph = _graph()
    shards = partitioned.build_shards(graph, partitioned.partition(graph, 2, "range"))
    shards[1].save(tmp_path / "r1.safetensors")
    back = partitioned.Shard.load(tmp_path / "r1.safetensors")
    for f in ("nodes", "halo", "send_rows", "rowptr", "col", "deg", "entry_send", "owner", "x"):
        assert torch.equal(getattr(back, f), getattr(shards[1], f)), f
    assert (back.rank, back.world, back.send_counts, back.recv_counts) == (1, 2, shards[1].send_counts,
                                                                          shards[1].recv_counts)
    marker = tmp_path / "ran"

    class Payload:  # unpickling this would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))
    torch.save({"format": 1, "x": Payload()}, tmp_path / "evil.safetensors")
    with pytest.raises(ValueError, match="not a shard file"):
        partitioned.Shard.load(tmp_path / "evil.safetensors")
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        partitioned.Shard.load(tmp_path / "missing.safetensors")
    # a shard whose column ids point past its rows
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    with safe_open(str(tmp_path / "r1.safetensors"), framework="pt") as f:
        meta = f.metadata()
    t = load_file(tmp_path / "r1.safetensors")
    t["col"] = t["col"] + 10 ** 6
    save_file(t, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="col holds ids outside the local rows"):
        partitioned.Shard.load(tmp_path / "bad.safetensors")


def test_cli_partition_then_predict_on_two_ranks_prints_the_one_process_scores(tmp_path, capfd):
    graph, model = _graph(), _models()["resgcn-node-readout"]
    pairs = _pairs(graph)
    lf.save(model, tmp_path / "ckpt", graph=graph)
    (tmp_path / "pairs.txt").write_text("".join(f"{u} {v}\n" for u, v in pairs.tolist()))
    main(["partition", str(tmp_path / "ckpt"), "--parts", "2", "--method", "range", "--out", str(tmp_path / "sh")])
    assert "wrote 2 shards" in capfd.readouterr().out
    args = [str(tmp_path / "pairs.txt"), "--threshold", "0.5"]
    main(["predict", str(tmp_path / "ckpt"), *args])
    one = capfd.readouterr().out.splitlines()
    main(["predict", str(tmp_path / "sh" / "model"), *args, "--shards", str(tmp_path / "sh"), "--nproc", "2"])
    captured = capfd.readouterr()
    two = captured.out.splitlines()
    assert "partitioned over 2 ranks" in captured.err
    assert len(two) == len(one) == len(pairs)
    for a, b in zip(one, two):
        assert a.split("\t")[:2] == b.split("\t")[:2]
        assert abs(float(a.split("\t")[2]) - float(b.split("\t")[2])) <= SCORE_ATOL


def test_range_partition_balances_work_and_never_leaves_a_part_empty():
    graph = _graph()
    parts = partitioned.partition(graph, 4, "range")
    assert torch.all(parts.diff() >= 0)  # contiguous id ranges
    work = np.bincount(parts.numpy(), weights=graph.deg.numpy() + 1, minlength=4)
    assert work.max() - work.min() <= 2 * (graph.deg.max().item() + 1)  # within two nodes' work
    # a star: its hub alone outweighs a share, yet every part gets nodes
    star = lf.Graph.from_edge_index(torch.stack([torch.zeros(30, dtype=torch.int64), torch.arange(1, 31)]))
    assert torch.bincount(partitioned.partition(star, 3, "range"), minlength=3).min() > 0


def _edge_cases_on_ranks(shards, cases):
    shard = shards[distributed.rank()]
    out = {}
    for name, (model, pairs) in cases.items():
        st = partitioned.PartitionStats(0, 0.5)
        scores = partitioned.predict(shard, pairs, 0.5, model=model, stats=st)
        every = [None] * distributed.world_size()
        torch.distributed.all_gather_object(every, (st.endpoints, st.exit_layer))
        out[name] = scores, every
    return out


def test_shallow_models_and_odd_pair_sets_match_one_process():
    """L = 1 and 2 (subgraph exits judge readiness L hops out, past the rows layer 0 updates), no
    pairs, one pair, self-pairs and repeats, and every pair on one rank, on 3 ranks."""
    graph = _graph()
    torch.manual_seed(2)
    g = torch.Generator().manual_seed(3)
    cases = {}
    for layers in (1, 2):
        for bb, ex, sem in (("gcn", "node", "freeze"), ("sas", "subgraph", "freeze"), ("resgcn", "subgraph", "readout")):
            model = EarlyExitLinkPredictor(ModelConfig(F, N, hidden=M, layers=layers, dropout=0.0, backbone=bb,
                                                       exit=ex, semantics=sem)).eval()
            cases[f"{bb}-{ex}-L{layers}"] = model, torch.randint(0, N, (60, 2), generator=g)
    parts = partitioned.partition(graph, 3, "range")
    model = cases["gcn-node-L2"][0]
    first = (parts == 0).nonzero().squeeze(1)
    cases["no pairs"] = model, torch.empty(0, 2, dtype=torch.int64)
    cases["one pair"] = model, torch.tensor([[5, N - 10]])
    cases["self-pairs and repeats"] = model, torch.tensor([[7, 7], [7, 7], [3, N - 100], [3, N - 100]])
    cases["every pair on rank 0"] = model, first[torch.randint(0, first.numel(), (20, 2), generator=g)]
    got = distributed.launch(_edge_cases_on_ranks, 3, partitioned.build_shards(graph, parts), cases,
                             threads=1, timeout=TIMEOUT)
    for name, (model, pairs) in cases.items():
        scores, every = got[name]
        want, ws = lf.predict(graph, pairs, 0.5, model=model, backend="reference", return_stats=True)
        assert scores.shape == (pairs.shape[0],), name
        torch.testing.assert_close(scores, want, atol=SCORE_ATOL, rtol=0, msg=name)
        layer = torch.full((N,), -1)
        for ends, layers in every:
            layer[ends] = layers
        assert torch.equal(layer[pairs], ws.exit_layer.reshape(-1, 2)), name


def _random_case(seed: int):
    """A random graph (isolated nodes and all), model, threshold, pairs and 3-way partition, the
    parts drawn at random rather than by locality, so most edges cross ranks."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(12, 90))
    edges = rng.integers(0, n, (2, int(rng.integers(n // 2, 3 * n))))
    edges = edges[:, edges[0] != edges[1]]
    graph = lf.Graph.from_edge_index(torch.from_numpy(edges), num_nodes=n,
                                     x=torch.from_numpy(rng.standard_normal((n, 5)).astype(np.float32)))
    bb = ["gcn", "resgcn", "sas"][seed % 3]
    ex = ["node", "subgraph", "none"][(seed // 3) % 3]
    torch.manual_seed(seed)
    model = EarlyExitLinkPredictor(ModelConfig(5, n, hidden=8, layers=int(rng.integers(1, 5)), dropout=0.0,
                                               backbone=bb, exit=ex, semantics=["freeze", "readout"][seed % 2])).eval()
    parts = torch.from_numpy(rng.permutation(np.arange(n) % 3))
    pairs = torch.from_numpy(rng.integers(0, n, (int(rng.integers(1, 40)), 2)))
    return graph, model, float(rng.choice([0.3, 0.6, 0.9, 1.0])), pairs, parts


def _random_cases_on_ranks(cases):
    out = []
    for graph, model, t, pairs, shards in cases:
        st = partitioned.PartitionStats(0, t)
        scores = partitioned.predict(shards[distributed.rank()], pairs, t, model=model, stats=st)
        every = [None] * distributed.world_size()
        torch.distributed.all_gather_object(every, (st.endpoints, st.exit_layer))
        out.append((scores, every))
    return out


def test_random_graphs_models_and_partitions_match_one_process():
    cases = []
    for seed in range(18):
        graph, model, t, pairs, parts = _random_case(seed)
        cases.append((graph, model, t, pairs, partitioned.build_shards(graph, parts)))
    got = distributed.launch(_random_cases_on_ranks, 3, cases, threads=1, timeout=TIMEOUT)
    for seed, ((graph, model, t, pairs, _), (scores, every)) in enumerate(zip(cases, got)):
        want, ws = lf.predict(graph, pairs, t, model=model, backend="reference", return_stats=True)
        torch.testing.assert_close(scores, want, atol=SCORE_ATOL, rtol=0, msg=f"seed {seed}")
        layer = torch.full((graph.num_nodes,), -1)
        for ends, layers in every:
            layer[ends] = layers
        assert torch.equal(layer[pairs], ws.exit_layer), f"seed {seed}"


def _citeseer_on_ranks(shards, model, pairs):
    return {t: partitioned.predict(shards[distributed.rank()], pairs, t, model=model) for t in (0.5, 0.9)}


def test_citeseer_partitioned_by_metis_matches_one_process():
    pytest.importorskip("pymetis")
    from linkexit_fast.datasets import load_heart
    from conftest import require_data
    split = load_heart("citeseer", require_data())
    graph = split.graph
    torch.manual_seed(0)
    model = EarlyExitLinkPredictor(ModelConfig(graph.num_features, graph.num_nodes, hidden=32, layers=3,
                                               dropout=0.0, exit="subgraph")).eval()
    pairs = torch.cat([split.valid_pos[:300], torch.randint(0, graph.num_nodes, (300, 2))])
    shards = partitioned.build_shards(graph, partitioned.partition(graph, 3, "metis"))
    got = distributed.launch(_citeseer_on_ranks, 3, shards, model, pairs, threads=1, timeout=TIMEOUT)
    for t, scores in got.items():
        want = lf.predict(graph, pairs, t, model=model, backend="reference")
        torch.testing.assert_close(scores, want, atol=SCORE_ATOL, rtol=0)
