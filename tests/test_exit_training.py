"""Exit training modes (models.TRAIN_MODES), the exit warm-up, the learning-rate grid and the
fast dropout: each checked against an independent computation or an invariant of its definition."""
import pytest
import torch

from linkexit_fast.datasets import synthetic
from linkexit_fast.models import TRAIN_MODES, dropout
from linkexit_fast.train import TrainConfig, build_model, train, train_lr_grid

SPLIT = synthetic(300, 6, 10, 4, seed=2)
L = 4


def make(backbone="gcn", exit="node", semantics="freeze", dropout=0.0):
    torch.manual_seed(0)
    return build_model(SPLIT, hidden=16, layers=L, backbone=backbone, exit=exit, semantics=semantics,
                       dropout=dropout, predictor_layers=2)


def head_grad(model):
    return sum(float(p.grad.abs().sum()) for p in model.heads.parameters() if p.grad is not None)


@pytest.mark.parametrize("backbone", ["gcn", "resgcn"])
def test_full_depth_runs_every_node_to_L_as_the_fixed_model(backbone):
    ee, fixed = make(backbone).train(), make(backbone, exit="none").train()
    fixed.load_state_dict({k: v for k, v in ee.state_dict().items() if k in fixed.state_dict()})
    res = ee(SPLIT.graph, mode="full-depth")
    assert (res.exit_layer == L).all()
    assert torch.allclose(res.z, fixed(SPLIT.graph).z, atol=1e-6)


@pytest.mark.parametrize("exit", ["node", "subgraph"])
def test_random_depth_gives_the_heads_no_gradient(exit):
    model = make(exit=exit).train()
    res = model(SPLIT.graph, mode="random-depth", generator=torch.Generator().manual_seed(0))
    model.score(res.z, SPLIT.train_pos[:64]).sum().backward()
    assert head_grad(model) == 0.0
    assert model.convs[1].weight.grad.abs().sum() > 0
    assert len(set(res.exit_layer.tolist())) > 1  # depths really are drawn per node


def test_soft_and_straight_through_heads_learn():
    for mode in ("gumbel", "gumbel-soft"):
        model = make().train()
        res = model(SPLIT.graph, mode=mode, generator=torch.Generator().manual_seed(0))
        model.score(res.z, SPLIT.train_pos[:64]).sum().backward()
        assert head_grad(model) > 0, mode


def test_warm_up_trains_full_depth_and_is_never_selected():
    cfg = TrainConfig(epochs=5, eval_every=1, batch_size=512, lr=0.01, patience=50, seed=0, exit_warmup=3)
    model = make()
    result = train(model, SPLIT, cfg, progress=False)
    assert result.best_epoch > 3
    assert result.epochs_run == 5
    with pytest.raises(ValueError, match="exit_warmup must be in"):
        TrainConfig(epochs=5, exit_warmup=5)
    with pytest.raises(ValueError, match="exit_train_mode must be one of"):
        TrainConfig(exit_train_mode="hard")
    assert set(TRAIN_MODES) >= {"gumbel", "gumbel-soft", "random-depth", "full-depth"}


def test_lr_grid_keeps_the_best_validation_run():
    cfg = TrainConfig(epochs=4, eval_every=2, batch_size=512, patience=50, seed=1)
    lrs = (0.0005, 0.01)
    model, result = train_lr_grid(make, SPLIT, cfg, lrs, progress=False)
    assert set(result.lr_grid) == {repr(lr) for lr in lrs}
    best_lr = max(lrs, key=lambda lr: result.lr_grid[repr(lr)])
    assert result.lr == best_lr
    # the kept weights are those of a plain run at that learning rate
    alone = make()
    alone_result = train(alone, SPLIT, TrainConfig(**{**cfg.__dict__, "lr": best_lr}), progress=False)
    assert alone_result.best_valid == result.best_valid
    for a, b in zip(model.state_dict().values(), alone.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="learning rates must be positive"):
        train_lr_grid(make, SPLIT, cfg, [0.0])


def test_dropout_is_inverted_dropout():
    torch.manual_seed(0)
    x = torch.ones(400, 500)
    out = dropout(x, 0.3, True)
    kept = out != 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.01
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.7))
    assert abs(float(out.mean()) - 1.0) < 0.02  # the expectation is unchanged, as F.dropout's
    assert dropout(x, 0.3, False) is x and dropout(x, 0.0, True) is x
    assert torch.equal(dropout(x, 1.0, True), torch.zeros_like(x))


def test_cli_trains_the_lr_grid_and_records_it(tmp_path):
    import json
    from linkexit_fast.cli import main as cli
    out = tmp_path / "ck"
    cli(["train", "--dataset", "synthetic:300", "--layers", "2", "--hidden", "8", "--epochs", "2",
         "--eval-every", "1", "--lr", "0.001,0.02", "--exit-warmup", "1", "--quiet", "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["lr_grid"]) == {"0.001", "0.02"}
    chosen = max(metrics["lr_grid"], key=metrics["lr_grid"].get)
    assert metrics["train_config"]["lr"] == float(chosen)
    assert metrics["train_config"]["exit_warmup"] == 1
    for bad in ("0.01,x", "0", "-1e-3"):
        with pytest.raises(SystemExit):
            cli(["train", "--dataset", "synthetic:300", "--lr", bad, "--out", str(tmp_path / "bad")])


# ---------------------------------------------------------------------- training negatives per positive
def _scores_and_loss(model, batch, neg, shard=None, world=1):
    from linkexit_fast.train import step_loss
    model.zero_grad()
    loss = step_loss(model, SPLIT.graph, batch, neg, "full-depth", torch.Generator().manual_seed(0), shard, world)
    loss.backward()
    return loss, [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("k", [1, 3])
def test_step_loss_with_k_negatives_is_the_mean_bce_of_each_side(k):
    import numpy as np
    from linkexit_fast.train import negative_sampler
    model = make(exit="none").eval()  # deterministic forward: no dropout, no exits
    batch = SPLIT.train_pos[:40]
    neg = negative_sampler(SPLIT.graph, 0)(len(batch) * k)
    loss, _ = _scores_and_loss(model, batch, neg)
    with torch.no_grad():
        z = model(SPLIT.graph.remove_edges(batch)).z
        pos_s, neg_s = model.score(z, batch).double().numpy(), model.score(z, neg).double().numpy()
    # BCE with logits, written out: -log sigmoid(s) for positives, -log(1 - sigmoid(s)) for negatives
    want = np.mean(np.logaddexp(0, -pos_s)) + np.mean(np.logaddexp(0, neg_s))
    assert abs(float(loss.detach()) - want) < 1e-5


def test_sharded_step_loss_with_k_negatives_averages_to_the_whole_step():
    """Two ranks' shards of a batch (uneven: 17 + 24 positives), each with its positives' own
    negatives: their losses and gradients average to the single-process step's."""
    from linkexit_fast.train import negative_sampler
    model = make(exit="none").eval()
    batch, k = SPLIT.train_pos[:41], 3
    neg = negative_sampler(SPLIT.graph, 1)(len(batch) * k)
    whole, whole_grads = _scores_and_loss(model, batch, neg)
    parts = [_scores_and_loss(model, batch, neg, shard, 2) for shard in (slice(0, 17), slice(17, 41))]
    assert abs(float(sum(p[0] for p in parts)) / 2 - float(whole)) < 1e-5
    for g, g0, g1 in zip(whole_grads, parts[0][1], parts[1][1]):
        assert torch.allclose((g0 + g1) / 2, g, atol=1e-6)


def test_train_draws_num_negatives_per_positive_and_checks_the_setting():
    from linkexit_fast.train import StepHooks
    seen = []

    class Spy(StepHooks):
        def loss(self, graph, batch, neg, mode, generator):
            seen.append((len(batch), len(neg)))
            return super().loss(graph, batch, neg, mode, generator)
    model = make()
    cfg = TrainConfig(epochs=1, batch_size=256, eval_every=1, num_negatives=4, lr=0.01)
    train(model, SPLIT, cfg, progress=False, hooks=Spy(model))
    assert seen and all(n == 4 * b for b, n in seen)
    with pytest.raises(ValueError, match="num_negatives"):
        TrainConfig(num_negatives=0)
    for bad in (True, 2.0, "4"):  # a bool or a non-integer is not a count
        with pytest.raises(ValueError, match="num_negatives"):
            TrainConfig(num_negatives=bad)
    with pytest.raises(ValueError, match="negatives per positive"):
        _scores_and_loss(make(exit="none"), SPLIT.train_pos[:10], SPLIT.train_pos[:15])
