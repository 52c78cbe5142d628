import os
import shutil

import pytest
import torch

from conftest import require_data
from linkexit_fast.datasets import (load_dataset, load_heart, load_ogbl, load_planetoid,
                                    random_link_split, synthetic)


def test_heart_citeseer():
    require_data("heart", "citeseer")
    s = load_heart("citeseer", require_data())
    assert s.graph.num_nodes == 3327 and s.graph.num_features == 3703
    assert (len(s.train_pos), len(s.valid_pos), len(s.test_pos)) == (3918, 227, 455)
    assert tuple(s.valid_neg.shape) == (227, 500, 2)
    assert "heart_test_samples.npy" in s.missing  # reported by name, not guessed
    planetoid = load_planetoid("citeseer", require_data())
    g = planetoid.graph
    keys = set((g.row * g.num_nodes + g.col).tolist())
    tp = s.train_pos[s.train_pos[:, 0] != s.train_pos[:, 1]]
    assert len(s.train_pos) - len(tp) == 48
    assert all(int(u) * g.num_nodes + int(v) in keys for u, v in tp)
    assert torch.equal(planetoid.graph.x, s.graph.x)


def test_planetoid_cora():
    s = load_planetoid("cora", require_data())
    assert (s.graph.num_nodes, s.graph.num_undirected_edges, s.graph.num_features) == (2708, 5278, 1433)


def test_planetoid_spec_gets_a_seeded_random_split():
    full = load_planetoid("cora", require_data())
    s = load_dataset("planetoid:cora", require_data())
    assert (len(s.train_pos), len(s.valid_pos), len(s.test_pos)) == (4488, 263, 527)
    n = s.graph.num_nodes
    key = lambda t: set((t.min(1).values * n + t.max(1).values).tolist())  # noqa: E731
    parts = [key(s.train_pos), key(s.valid_pos), key(s.test_pos)]
    assert set.union(*parts) == key(full.train_pos) and sum(map(len, parts)) == 5278  # a partition
    assert s.graph.num_undirected_edges == 4488  # the graph holds the training edges only
    assert torch.equal(load_dataset("planetoid:cora", require_data()).test_pos, s.test_pos)
    assert not torch.equal(random_link_split(full, seed=1).test_pos, s.test_pos)
    with pytest.raises(ValueError, match="valid and test"):
        random_link_split(full, valid=0.5, test=0.5)


def test_ogbl_ddi():
    require_data("ogbl_ddi")
    s = load_ogbl("ogbl-ddi", require_data())
    assert s.graph.num_nodes == 4267
    assert (len(s.train_pos), len(s.valid_pos), len(s.test_pos)) == (1067911, 133489, 133489)
    assert (len(s.valid_neg), len(s.test_neg)) == (101882, 95599)


def test_ogbl_pt_fallback_is_safe(tmp_path):
    src = require_data("ogbl_ddi")
    dst = tmp_path / "ogbl_ddi"
    shutil.copytree(src / "raw", dst / "raw")
    (dst / "split" / "target").mkdir(parents=True)
    for part in ("valid", "test"):
        shutil.copy(src / "split" / "target" / f"{part}.pt", dst / "split" / "target")
    s = load_ogbl("ddi", tmp_path)  # only .pt here: loaded with an allow-list, never weights_only=False
    assert len(s.valid_neg) == 101882


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="HeaRT dataset folder not found"):
        load_heart("nothing", tmp_path)
    folder = tmp_path / "heart" / "tiny"
    folder.mkdir(parents=True)
    (folder / "train_pos.txt").write_text("0 1\n1 2\n")
    (folder / "valid_pos.txt").write_text("0 2\n")
    with pytest.raises(FileNotFoundError, match="test_pos.txt"):
        load_heart("tiny", tmp_path)
    (folder / "test_pos.txt").write_text("1 3\n")
    s = load_heart("tiny", tmp_path)
    assert "features" in s.missing and "valid_neg" in s.missing
    (folder / "test_pos.txt").write_text("1 3\n4")
    with pytest.raises(ValueError, match="expected two node ids"):
        load_heart("tiny", tmp_path)
    pl = tmp_path / "planetoid"
    pl.mkdir()
    for part in ["x", "tx", "allx", "graph"]:
        (pl / f"ind.cora.{part}").write_bytes(b"\x80\x02cos\nsystem\n")
    with pytest.raises(ValueError, match="cannot read Planetoid file"):
        load_planetoid("cora", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("nope:thing")


def test_planetoid_refuses_code(tmp_path):
    import pickle
    pl = tmp_path / "planetoid"
    pl.mkdir()

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    for part in ["x", "tx", "allx", "graph"]:
        (pl / f"ind.cora.{part}").write_bytes(pickle.dumps(Evil()))
    (pl / "ind.cora.test.index").write_text("0\n")
    with pytest.raises(ValueError, match="refusing to load"):
        load_planetoid("cora", tmp_path)


def test_synthetic_is_deterministic_and_split():
    a, b = synthetic(3000, 8, 16, 5, seed=3), synthetic(3000, 8, 16, 5, seed=3)
    assert torch.equal(a.graph.col, b.graph.col) and torch.equal(a.graph.x, b.graph.x)
    assert torch.equal(a.test_neg, b.test_neg)
    total = len(a.train_pos) + len(a.valid_pos) + len(a.test_pos)
    assert abs(len(a.test_pos) / total - 0.10) < 0.01 and abs(len(a.valid_pos) / total - 0.05) < 0.01
    c = synthetic(3000, 8, 16, 5, seed=4)
    assert not torch.equal(a.graph.col[:100], c.graph.col[:100])
    with pytest.raises(ValueError, match="num_nodes >= 2"):
        synthetic(1)


