import json

import pytest
import torch

import linkexit_fast as lf
from linkexit_fast.cli import main as cli
from linkexit_fast.datasets import synthetic
from linkexit_fast.evaluate import evaluate
from linkexit_fast.train import TrainConfig, TrainingDiverged, build_model, train

SPLIT = synthetic(400, 8, 16, 4, seed=0)


def quick_model(**kw):
    torch.manual_seed(0)
    return build_model(SPLIT, hidden=16, layers=3, **kw)


def test_training_learns_and_is_repeatable():
    cfg = TrainConfig(epochs=6, eval_every=2, batch_size=512, lr=0.01, patience=10, seed=1)
    a, b = quick_model(), quick_model()
    ra, rb = train(a, SPLIT, cfg, progress=False), train(b, SPLIT, cfg, progress=False)
    assert ra.best_valid == rb.best_valid  # seeds make a run repeatable
    untrained = evaluate(quick_model(), SPLIT.graph, SPLIT.valid_pos, SPLIT.valid_neg)
    assert ra.best_valid["auc"] > untrained["auc"] + 0.05  # the synthetic default is learnable
    assert ra.history[0]["loss"] > ra.history[-1]["loss"]


def test_nan_is_detected():
    model = quick_model()
    with torch.no_grad():
        model.predictor.lins[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        train(model, SPLIT, TrainConfig(epochs=1), progress=False)


def test_checkpoint_roundtrip_reproduces_validation_metrics(tmp_path):
    model = quick_model(exit="subgraph", semantics="readout")
    train(model, SPLIT, TrainConfig(epochs=2, eval_every=1, batch_size=512), progress=False)
    before = evaluate(model, SPLIT.graph, SPLIT.valid_pos, SPLIT.valid_neg)
    lf.save(model, tmp_path / "ck", graph=SPLIT.graph, metrics={"valid": before})
    pred = lf.load(tmp_path / "ck")
    after = evaluate(pred.model, pred.graph, SPLIT.valid_pos, SPLIT.valid_neg)
    assert after == before == pred.metrics["valid"]
    scores = lf.predict(pred, SPLIT.test_pos[:5], threshold=0.9)  # the literal call works
    assert scores.shape == (5,) and ((scores >= 0) & (scores <= 1)).all()


def test_bad_checkpoints(tmp_path):
    model = quick_model()
    path = lf.save(model, tmp_path / "ck", graph=SPLIT.graph)
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not a safetensors file"):
        lf.load(tmp_path / "trunc.safetensors")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        lf.load(tmp_path / "nothing.safetensors")
    (tmp_path / "pickle.safetensors").write_bytes(b"\x80\x04cos\nsystem\n")
    with pytest.raises(ValueError):
        lf.load(tmp_path / "pickle.safetensors")
    # a checkpoint missing one tensor
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    del tensors["model.predictor.lins.0.weight"]
    save_file(tensors, str(tmp_path / "missing.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="lacks tensor"):
        lf.load(tmp_path / "missing.safetensors")
    # a model for another feature size
    other = build_model(synthetic(400, 8, 9, 4, seed=0), hidden=16, layers=3)
    with pytest.raises(ValueError, match="expects 9 input features, the graph has 16"):
        lf.predict(SPLIT.graph, [[0, 1]], model=other)


def test_cli_train_eval_predict(tmp_path, capsys):
    out = tmp_path / "run"
    cli(["train", "--dataset", "synthetic:500", "--layers", "3", "--hidden", "16", "--epochs", "2",
         "--eval-every", "1", "--out", str(out), "--quiet"])
    assert (out / "model.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "auc" in metrics["valid"]
    pred = lf.load(out)
    assert pred.graph.num_nodes == 500
    cli(["eval", str(out), "--dataset", "synthetic:500", "--out", str(tmp_path / "rep")])
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert abs(sum(report["exit_distribution"]) - 1) < 1e-6
    png = (tmp_path / "rep" / "report.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 20_000  # a real figure, not an empty canvas
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("0 1\n2 3\n")
    cli(["predict", str(out), str(pairs)])
    captured = capsys.readouterr()
    lines = [l for l in captured.out.splitlines() if l.startswith(("0\t", "2\t"))]
    assert len(lines) == 2
    assert "plan engine (cost model" in captured.err or "plan dense (cost model" in captured.err
    for plan in ("dense", "engine"):  # a forced plan: the same scores
        cli(["predict", str(out), str(pairs), "--plan", plan])
        captured = capsys.readouterr()
        assert f"plan {plan} (requested)" in captured.err
        assert [l for l in captured.out.splitlines() if l.startswith(("0\t", "2\t"))] == lines
    with pytest.raises(SystemExit):
        cli(["train", "--dataset", "nope:x", "--out", str(tmp_path / "x")])


def test_pareto_command_resumes(tmp_path, capsys):
    args = ["pareto", "--dataset", "synthetic:300", "--layers", "1,2", "--thresholds", "0.5,0.9",
            "--epochs", "1", "--hidden", "8", "--repeats", "1", "--out", str(tmp_path)]
    cli(args)
    res = json.loads((tmp_path / "pareto.json").read_text())
    fams = {p["family"] for p in res["points"]}
    assert {"gcn fixed", "gcn node-exit (freeze)", "gcn subgraph-exit (readout)"} <= fams
    assert any(p["frontier_seconds"] for p in res["points"]) and any(p["frontier_flops_gnn"] for p in res["points"])
    assert (tmp_path / "pareto.png").stat().st_size > 20_000
    assert "frontier" in (tmp_path / "pareto.md").read_text()
    stamp = {p.name: p.stat().st_mtime for p in (tmp_path / "points").iterdir()}
    cli(args)  # resumed from the cache: nothing retrained or re-measured
    assert stamp == {p.name: p.stat().st_mtime for p in (tmp_path / "points").iterdir()}


def test_pareto_sweeps_table_runs_without_training(tmp_path):
    """``pareto --from-table``: per cell and seed the run with the best validation MRR (two
    learning rates of one cell here), evaluated as saved; nothing trained."""
    from linkexit_fast.checkpoint import save
    from linkexit_fast.pareto import table_runs
    split = synthetic(300)
    runs = tmp_path / "runs"
    for exit, lr, valid in (("none", 0.001, 0.3), ("node", 0.001, 0.1), ("node", 0.002, 0.2)):
        torch.manual_seed(0)
        folder = runs / f"gcn_{exit}_L2_s0_lr{lr}".replace(".", "p")
        save(build_model(split, hidden=8, layers=2, exit=exit), folder)
        (folder / "record.json").write_text(json.dumps(
            {"backbone": "gcn", "exit": exit, "layers": 2, "seed": 0, "valid": {"mrr": valid}}))
    chosen = table_runs(runs)
    assert [(spec["exit"], folder.name) for spec, _, folder in chosen] == \
        [("node", "gcn_node_L2_s0_lr0p002"), ("none", "gcn_none_L2_s0_lr0p001")]
    out = tmp_path / "sweep"
    cli(["pareto", "--dataset", "synthetic:300", "--from-table", str(runs), "--thresholds", "0.5,0.9",
         "--repeats", "1", "--out", str(out)])
    res = json.loads((out / "pareto.json").read_text())
    assert sorted((p["exit"], p["threshold"]) for p in res["points"]) == [("node", 0.5), ("node", 0.9), ("none", 1.0)]
    assert not (out / "checkpoints").exists()
    with pytest.raises(FileNotFoundError, match="no table1 runs"):
        table_runs(tmp_path / "sweep")


def test_compare_marks_the_oracle(tmp_path):
    from linkexit_fast.report import compare
    base = {"mean_exit_layer": 2.0, "flops_paper": 1e6}
    reports = {f"L{l}": dict(base, config={"backbone": "gcn", "exit": "none", "semantics": "freeze", "layers": l},
                             valid={"metrics": {"mrr": mrr}}, test={"metrics": {"mrr": mrr, "hits@10": 0.5}})
               for l, mrr in ((1, 0.2), (3, 0.3), (5, 0.1))}
    compare(reports, tmp_path)
    table = (tmp_path / "compare.md").read_text()
    assert "oracle (= L3)" in table and (tmp_path / "compare.png").exists()


def test_calibrate_command_measures_and_caches(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LINKEXIT_CACHE", str(tmp_path))
    cli(["calibrate", "--backend", "torch", "--hidden", "8"])
    out = capsys.readouterr().out
    assert "m=8" in out and "ps/MAC" in out and str(tmp_path / "planner_costs.json") in out
    assert "m=8" in next(iter(json.loads((tmp_path / "planner_costs.json").read_text())))
