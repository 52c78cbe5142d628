"""Distributed inference and training on 2 gloo ranks, spawned inside the test on 127.0.0.1 (a
port the OS picks, every run bounded by TIMEOUT), against the single-process results."""
import argparse
import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import linkexit_fast as lf
from linkexit_fast import distributed
from linkexit_fast.cli import main
from linkexit_fast.datasets import synthetic
from linkexit_fast.engine import EngineStats, predict_chunks
from linkexit_fast.models import EarlyExitLinkPredictor, ModelConfig
from linkexit_fast.train import TrainConfig, negative_sampler, train

TIMEOUT = 60  # seconds for each run of ranks and each collective: a hang fails the test, not CI
SCORE_ATOL = 1e-5  # the engine contract


def _case():
    """A small graph, a random node-exit model (at 0.5 every endpoint exits before the last
    layer, at 1.0 none does) and pairs with a repeated hub endpoint, as HeaRT's negatives repeat
    their positive's source."""
    split = synthetic(400, 6, 8, 4, seed=0)
    torch.manual_seed(0)
    model = EarlyExitLinkPredictor(ModelConfig(8, 400, hidden=16, layers=3, dropout=0.0)).eval()
    g = torch.Generator().manual_seed(1)
    hub = int(split.graph.deg.argmax())
    pairs = torch.cat([torch.randint(0, 400, (151, 2), generator=g),
                       torch.stack([torch.full((50,), hub), torch.randint(0, 400, (50,), generator=g)], 1)])
    return split, model, pairs


def _predict_on_ranks(graph, model, pairs):
    out = {t: distributed.predict(graph, pairs, t, model=model) for t in (0.5, 1.0)}
    parts = [pairs[:37], pairs[:0], pairs[37:]]  # uneven parts, one of them empty
    out["chunks"] = [s for _, s in distributed.predict_chunks(graph, lambda: iter(parts), 0.5, model=model)]
    out["one pair"] = distributed.predict(graph, pairs[:1], 0.5, model=model)  # fewer pairs than ranks
    every = [None] * distributed.world_size()
    torch.distributed.all_gather_object(every, out[0.5])
    out["every rank"] = every
    return out


def test_predict_on_two_ranks_matches_one_process():
    split, model, pairs = _case()
    got = distributed.launch(_predict_on_ranks, 2, split.graph, model, pairs, threads=1, timeout=TIMEOUT)
    for t in (0.5, 1.0):
        torch.testing.assert_close(got[t], lf.predict(split.graph, pairs, t, model=model), atol=SCORE_ATOL, rtol=0)
    want = lf.predict(split.graph, pairs, 0.5, model=model)
    torch.testing.assert_close(torch.cat(got["chunks"]), want, atol=SCORE_ATOL, rtol=0)
    assert [len(s) for s in got["chunks"]] == [37, 0, len(pairs) - 37]
    torch.testing.assert_close(got["one pair"], want[:1], atol=SCORE_ATOL, rtol=0)
    for scores in got["every rank"]:
        assert torch.equal(scores, got[0.5])


def _mismatched_pairs(graph, model, pairs):
    return distributed.predict(graph, pairs[:10 + distributed.rank()], model=model)


def test_ranks_with_different_pairs_raise_in_the_caller():
    split, model, pairs = _case()
    with pytest.raises(ValueError, match="same pairs on every rank"):
        distributed.launch(_mismatched_pairs, 2, split.graph, model, pairs, threads=1, timeout=TIMEOUT)


def _share_costs(pairs, graph, model):
    """split_pairs's documented cost of every contiguous share ``pairs[a:b]``, in plain Python:
    ``{(a, b): MACs}``."""
    n, m, layers = graph.num_nodes, model.config.hidden, model.config.layers
    d = graph.num_edges / n

    def field(u):
        rows, reach = 0.0, 0.0
        for _ in range(layers):
            rows += min(n, 1 + int(graph.deg[u]) * reach)
            reach = min(n, reach * d + 1)
        return rows
    full = layers * n
    costs = {}
    for a in range(len(pairs)):
        seen, f = set(), 0.0
        for b in range(a + 1, len(pairs) + 1):
            for u in pairs[b - 1].tolist():
                if u not in seen:
                    seen.add(u)
                    f += field(u)
            costs[a, b] = (b - a) * model.predictor.flops_per_pair() + m * (m + d + 1) * full * (1 - math.exp(-f / full))
    return costs


@pytest.mark.parametrize("world", [1, 2, 3])
def test_split_pairs_cuts_where_the_busiest_share_costs_least(world):
    split, model, pairs = _case()
    pairs = pairs[::2]  # 101 pairs, the hub's among them: the brute force below is O(P^2)
    order, bounds = distributed.split_pairs(pairs, split.graph, model, world)
    assert order.tolist() == sorted(range(len(pairs)), key=lambda i: int(pairs[i, 0]))  # stable
    assert bounds[0] == 0 and bounds[-1] == len(pairs) and bounds == sorted(bounds) and len(bounds) == world + 1
    costs = _share_costs(pairs[order], split.graph, model)
    cost = lambda a, b: costs.get((a, b), 0.0)
    got = max(cost(a, b) for a, b in zip(bounds, bounds[1:]))
    cuts = itertools.combinations(range(1, len(pairs)), world - 1)
    best = min(max(cost(a, b) for a, b in zip((0, *c), (*c, len(pairs)))) for c in cuts)
    assert got <= best * (1 + distributed.SPLIT_TOLERANCE)
    assert distributed.split_pairs(pairs[:0], split.graph, model, world)[1] == [0] * (world + 1)


def test_split_pairs_balances_the_engine_work_where_pair_counts_do_not():
    """Half the pairs recommend to one user: a count split gives one rank half the endpoints."""
    split = synthetic(20_000, 6, 8, 4, seed=0)
    torch.manual_seed(0)
    model = EarlyExitLinkPredictor(ModelConfig(8, 20_000, hidden=32, layers=3)).eval()
    g = torch.Generator().manual_seed(1)
    user = torch.stack([torch.full((1000,), 5), torch.randint(0, 20_000, (1000,), generator=g)], 1)
    pairs = torch.cat([user, torch.randint(0, 20_000, (1000, 2), generator=g)])

    def macs(share):
        # The engine path's work, which split_pairs balances: under "auto" the planner may take the
        # dense path (the same work for any share) when its calibration on a loaded machine says so.
        stats = EngineStats(backend="auto", threshold=1.0)
        for _ in predict_chunks(split.graph, lambda: [share], 1.0, model=model, stats=stats, plan="engine"):
            pass
        return stats.flops
    order, bounds = distributed.split_pairs(pairs, split.graph, model, 2)
    by_rule = [macs(pairs[order[a:b]]) for a, b in zip(bounds, bounds[1:])]
    by_count = [macs(pairs[:1000]), macs(pairs[1000:])]
    assert max(by_rule) / min(by_rule) < 1.05 < max(by_count) / min(by_count)


def _train_on_ranks(split, model, batch, neg, cfg):
    step = DistributedDataParallel(distributed.ShardLoss(copy.deepcopy(model).train()))
    step(split.graph, batch, neg, "gumbel", torch.Generator().manual_seed(0)).backward()
    grads = {name: p.grad for name, p in step.module.model.named_parameters()}
    result = distributed.train(model, split, cfg, progress=False)
    return grads, result, model.state_dict()


def test_training_on_two_ranks_matches_one_process_on_the_union():
    split, model, _ = _case()
    batch = split.train_pos[:45]  # odd: the two shards differ in size
    neg = negative_sampler(split.graph, 0)(len(batch))
    cfg = TrainConfig(epochs=2, batch_size=333, eval_every=1, patience=5)  # 3 steps an epoch, the last short
    grads, result, state = distributed.launch(_train_on_ranks, 2, split, model, batch, neg, cfg, threads=1,
                                              timeout=TIMEOUT)
    # The first step's averaged gradient against train.train's step on the whole batch.
    one = copy.deepcopy(model).train()
    res = one(split.graph.remove_edges(batch), mode="gumbel", generator=torch.Generator().manual_seed(0))
    pos_out, neg_out = one.score(res.z, batch), one.score(res.z, neg)
    (F.binary_cross_entropy_with_logits(pos_out, torch.ones_like(pos_out))
     + F.binary_cross_entropy_with_logits(neg_out, torch.zeros_like(neg_out))).backward()
    assert grads.keys() == dict(one.named_parameters()).keys()
    for name, p in one.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, atol=1e-6, rtol=1e-4, msg=name)
    # The whole loop: same losses, validation metrics, selected epoch and weights as train.train.
    want = train(model, split, cfg, progress=False)
    assert (result.best_epoch, result.epochs_run, result.stopped) == (want.best_epoch, want.epochs_run, want.stopped)
    for got_h, want_h in zip(result.history, want.history):
        assert got_h.keys() == want_h.keys()
        for key in got_h:
            assert got_h[key] == pytest.approx(want_h[key], rel=1e-4, abs=1e-5), key
    for name, value in model.state_dict().items():
        torch.testing.assert_close(state[name], value, atol=1e-4, rtol=1e-3, msg=name)


def test_cli_predict_on_two_ranks_prints_the_one_process_scores(tmp_path, capfd):
    split, model, pairs = _case()
    lf.save(model, tmp_path / "ckpt", graph=split.graph)
    (tmp_path / "pairs.txt").write_text("".join(f"{u} {v}\n" for u, v in pairs.tolist()))
    args = [str(tmp_path / "ckpt"), str(tmp_path / "pairs.txt"), "--threshold", "0.5", "--batch-size", "64"]
    main(["predict", *args])
    one = capfd.readouterr().out.splitlines()
    main(["predict", *args, "--nproc", "2"])
    two = capfd.readouterr().out.splitlines()
    assert len(two) == len(one) == len(pairs)
    for a, b in zip(one, two):
        assert a.split("\t")[:2] == b.split("\t")[:2]
        assert abs(float(a.split("\t")[2]) - float(b.split("\t")[2])) <= SCORE_ATOL


def test_cli_train_on_two_ranks_writes_one_checkpoint(tmp_path, capfd):
    out = tmp_path / "run"
    main(["train", "--dataset", "synthetic:300", "--layers", "2", "--hidden", "16", "--epochs", "2",
          "--eval-every", "1", "--quiet", "--nproc", "2", "--out", str(out)])
    assert capfd.readouterr().out.count(f"saved {out}") == 1  # by rank 0 only
    pred = lf.load(out)
    assert pred.graph.num_nodes == 300 and (out / "metrics.json").exists()


def test_nproc_must_match_torchrun(monkeypatch):
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")):
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="torchrun started 2 ranks"):
        distributed.launch_cli(lambda args: None, argparse.Namespace(nproc=3))
