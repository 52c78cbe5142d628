"""The CLI explains itself: help for every option with its default, one threshold default, clear
one-line errors, data discovery, and metrics that always name their negatives."""
import argparse
import inspect
import json

import numpy as np
import pytest
import torch

import linkexit_fast as lf
import linkexit_fast.engine as engine
from linkexit_fast.backends import BackendUnavailable
from linkexit_fast.cli import _load_split, build_parser, main
from linkexit_fast.datasets import synthetic

COMMANDS = ["datasets", "train", "eval", "compare", "predict", "heart-negatives", "pareto", "demo"]


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in COMMANDS:
        assert any(line.split()[:1] == [cmd] for line in out.splitlines()), f"{cmd} not listed"


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_option_has_help_and_shows_its_default(cmd):
    _, subs = _subparsers()
    p = subs[cmd]
    text = p.format_help()
    for a in p._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        name = a.option_strings[-1] if a.option_strings else a.dest
        assert a.help, f"{cmd} {name} has no help text"
        if a.option_strings and not a.required:
            # the formatter appends "(default: ...)" to the option's help
            assert f"(default: {a.default})" in " ".join(text.split()), f"{cmd} {name}: default not shown"


def test_one_threshold_default_from_predict():
    want = inspect.signature(engine.predict).parameters["threshold"].default
    assert want == 0.9
    _, subs = _subparsers()
    for cmd in ("eval", "predict"):
        assert subs[cmd].get_default("threshold") == want
    from linkexit_fast.report import eval_report
    assert inspect.signature(eval_report).parameters["threshold"].default == want


def test_named_backend_that_cannot_run_is_one_line(tmp_path, capsys, monkeypatch):
    split = synthetic(60, 4, 4, 2, seed=0)
    from linkexit_fast.train import build_model
    lf.save(build_model(split, hidden=4, layers=1), tmp_path / "ck", graph=split.graph)
    (tmp_path / "p.txt").write_text("0 1\n")

    def unavailable(*a, **k):
        raise BackendUnavailable("backend 'triton' was requested but cannot run here: no CUDA device")
    monkeypatch.setattr(engine, "predict_chunks", unavailable)
    with pytest.raises(SystemExit) as e:
        main(["predict", str(tmp_path / "ck"), str(tmp_path / "p.txt"), "--backend", "triton"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("linkexit-fast predict: error: backend 'triton'") and "Traceback" not in err


def test_missing_data_names_every_path_tried(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LINKEXIT_DATA", str(tmp_path / "env"))
    with pytest.raises(SystemExit) as e:
        main(["heart-negatives", "--dataset", "heart:citeseer", "--out", "x.npy"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "HeaRT dataset folder not found" in err and "--data" in err and "LINKEXIT_DATA" in err
    assert str(tmp_path / "env" / "heart" / "citeseer") in err and str(tmp_path / "env" / "citeseer") in err
    monkeypatch.delenv("LINKEXIT_DATA")
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    with pytest.raises(SystemExit):
        main(["heart-negatives", "--dataset", "ogbl:ddi", "--data", str(tmp_path / "given"), "--out", "x.npy"])
    err = capsys.readouterr().err
    assert str(tmp_path / "given" / "ogbl_ddi" / "raw") in err and "$LINKEXIT_DATA: not set" in err


def _heart_folder(root, name="tiny"):
    """A HeaRT-layout dataset (positives, random negatives, features; no hard negatives) made
    from the synthetic default."""
    s = synthetic(200, 6, 8, 2, seed=1)
    folder = root / "heart" / name
    folder.mkdir(parents=True)
    for part in ("train", "valid", "test"):
        np.savetxt(folder / f"{part}_pos.txt", getattr(s, f"{part}_pos").numpy(), fmt="%d")
    for part in ("valid", "test"):
        np.savetxt(folder / f"{part}_neg.txt", getattr(s, f"{part}_neg").numpy(), fmt="%d")
    torch.save(s.graph.x, folder / "gnn_feature")
    return s


def test_heart_dataset_without_heart_negatives_warns_and_can_make_them(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = _heart_folder(tmp_path / "data")
    args = argparse.Namespace(dataset="heart:tiny", data=str(tmp_path / "data"), test_negatives=None,
                              make_heart_negatives=False)
    split = _load_split(args)
    err = capsys.readouterr().err
    for which in ("valid", "test"):
        assert split.negatives_of(which).kind == "random"
        assert split.negatives_of(which).total == len(getattr(s, f"{which}_neg"))
        assert f"linkexit-fast heart-negatives --dataset heart:tiny --which {which} --out " \
               f"runs/negatives/tiny_{which}_heart.npy" in err
    assert err.count("WARNING") == 2 and "NOT HeaRT" in err
    split = _load_split(argparse.Namespace(**dict(vars(args), make_heart_negatives=True)))
    assert "WARNING" not in capsys.readouterr().err
    for which in ("valid", "test"):
        desc = split.negatives_of(which)
        assert (desc.kind, desc.per_positive, desc.source) == ("heart-sampler", 500, f"runs/negatives/tiny_{which}_heart.npy")
        assert getattr(split, f"{which}_neg").shape == (len(getattr(s, f"{which}_pos")), 500, 2)
        assert (tmp_path / desc.source).exists()
        assert "not HeaRT's official file" in desc.label()


def test_negatives_of_refuses_to_vouch_for_a_swapped_tensor():
    s = synthetic(100, 4, 4, 2, seed=0)
    assert s.negatives_of("test").kind == "random"
    s.test_neg = torch.zeros(len(s.test_pos), 3, 2, dtype=torch.int64)  # set without a description
    assert s.negatives_of("test").kind == "unknown" and "NOT HeaRT" in s.negatives_of("test").label()
    with pytest.raises(ValueError, match="test negatives"):
        s.set_negatives("test", torch.zeros(len(s.test_pos) + 1, 3, 2, dtype=torch.int64), "heart-sampler", "x.npy")


def test_reports_carry_negatives_and_threshold(tmp_path, capsys):
    """train, eval, compare and pareto print/store the negatives next to the numbers."""
    run = tmp_path / "run"
    main(["train", "--dataset", "synthetic:300", "--layers", "2", "--hidden", "8", "--epochs", "1",
          "--quiet", "--out", str(run)])
    out = capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["negatives"]["test"]["kind"] == "random" and metrics["threshold"] == 0.5
    assert "test MRR" in out and "1 shared set of 126; NOT HeaRT" in out and "0.9" in out
    main(["eval", str(run), "--dataset", "synthetic:300", "--out", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["threshold"] == 0.9 and "exit threshold 0.9" in out
    assert report["test"]["negatives"]["label"] in out
    main(["compare", str(tmp_path / "rep"), "--out", str(tmp_path / "cmp")])
    assert report["test"]["negatives"]["label"] in (tmp_path / "cmp" / "compare.md").read_text()


def test_pareto_names_its_negatives_and_never_mixes_them(tmp_path):
    from linkexit_fast.pareto import run_pareto
    split = synthetic(150, 6, 8, 2, seed=0)
    kw = dict(layers=(1,), thresholds=(0.9,), repeats=1, progress=False, train_overrides={"epochs": 1, "hidden": 8})
    res = run_pareto(split, tmp_path, **kw)
    assert res["negatives"]["kind"] == "random"
    assert res["negatives"]["label"] in (tmp_path / "pareto.md").read_text()
    neg = torch.from_numpy(np.random.default_rng(0).integers(0, 150, (len(split.test_pos), 4, 2)))
    split.set_negatives("test", neg, "heart-sampler", "mine.npy")
    res = run_pareto(split, tmp_path, **kw)  # same folder: cached points must not be reused
    assert all(p["negatives"] == res["negatives"]["label"] for p in res["runs"])
    assert "mine.npy" in (tmp_path / "pareto.md").read_text()
