"""Hostile checkpoints: ``load`` refuses them with a ValueError naming the file, quickly and within
bounded memory, and never runs code from the file.

Loads that could exhaust the machine run in a child process (``python THIS_FILE <command> ...``)
under a 2 GiB address-space limit and a timeout, so a regression fails the test instead of hanging
or swapping the machine.
"""
import dataclasses
import json
import math
import os
import pickle
import re
import reprlib
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import linkexit_fast as lf
from linkexit_fast.checkpoint import MAX_HEADER_BYTES, Predictor
from linkexit_fast.models import EarlyExitLinkPredictor, ModelConfig

REPO = Path(__file__).resolve().parents[1]
MEMORY_CAP = 2 << 30  # address space of a child process, bytes
SECONDS_PER_LOAD = 5.0  # a legitimate load of these tiny files takes well under 0.1 s
DROP = object()  # a config rewrite that deletes the field


# ---------------------------------------------------------------------------- helpers
def small_checkpoint(path: Path, in_channels: int = 3, backbone: str = "gcn", exit: str = "node") -> Path:
    """A valid 6-node checkpoint (2 layers, node exits by default) with its graph: a few KB."""
    edges = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 5, 5]])
    x = torch.linspace(-1, 1, 18).reshape(6, 3) if in_channels else None
    graph = lf.Graph.from_edge_index(edges, num_nodes=6, x=x)
    torch.manual_seed(0)
    model = EarlyExitLinkPredictor(ModelConfig(in_channels, 6, hidden=4, layers=2, backbone=backbone, exit=exit,
                                               exit_hidden=3))
    return lf.save(model, path, graph=graph, metrics={"valid": {"auc": 0.5}})


def split_file(data: bytes):
    """(header dict, tensor bytes) of a safetensors file's bytes."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def join_file(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


def with_config(data: bytes, **changes) -> bytes:
    """``data`` with config fields replaced (``DROP``: removed), tensors untouched."""
    header, body = split_file(data)
    config = json.loads(header["__metadata__"]["config"])
    for k, v in changes.items():
        if v is DROP:
            config.pop(k, None)
        else:
            config[k] = v
    header["__metadata__"]["config"] = json.dumps(config)
    return join_file(header, body)


def with_tensor(data: bytes, name: str, tensor: torch.Tensor) -> bytes:
    """``data`` with tensor ``name`` replaced, written by safetensors itself."""
    from safetensors.torch import load, save
    header, _ = split_file(data)
    tensors = load(data)
    tensors[name] = tensor
    return save(tensors, metadata=header["__metadata__"])


def run_child(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python THIS_FILE args`` under the memory cap; fails the test on a crash or timeout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run([sys.executable, __file__, *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"child timed out after {timeout} s (unbounded work?); output so far:\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0, f"child exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-5000:]}"
    return proc


def load_isolated(paths):
    """Loads each path in one capped child: ``{path: (outcome, message, seconds)}``."""
    out = run_child("load", *paths).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {r["path"]: (r["outcome"], r["message"], r["seconds"]) for r in rows}


# ---------------------------------------------------------------------------- resource bombs
# field, hostile value, base checkpoint (in_channels 0: a node embedding, sized num_nodes; "sas":
# a fixed-depth SAS-GNN, whose layers share their weights, so no tensor reflects its depth)
BOMBS = [("layers", 10**7, 3), ("layers", 10**7, "sas"), ("predictor_layers", 10**6, 3), ("hidden", 10**9, 3),
         ("num_nodes", 10**12, 0), ("exit_hidden", 10**9, 3), ("in_channels", 10**9, 3),
         ("hidden", 2**70, 3)]  # past int64: even a meta tensor of it cannot exist


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Hostile files by name, and what one capped child made of each: ``(path, result)``."""
    tmp = tmp_path_factory.mktemp("hostile")
    base = {c: small_checkpoint(tmp / f"base{c}", c).read_bytes() for c in (0, 3)}
    base["sas"] = small_checkpoint(tmp / "base_sas", 3, backbone="sas", exit="none").read_bytes()
    files = {f"{field}={value}/{c}": with_config(base[c], **{field: value}) for field, value, c in BOMBS}
    data = base[3]
    n = int.from_bytes(data[:8], "little")
    files["past_eof"] = (len(data) + 100).to_bytes(8, "little") + data[8:]
    pad = MAX_HEADER_BYTES + 1 - n  # a valid file, but its header is padded past the cap
    files["over_cap"] = (n + pad).to_bytes(8, "little") + data[8:8 + n] + b" " * pad + data[8 + n:]
    paths = {}
    for i, (name, blob) in enumerate(files.items()):
        paths[name] = tmp / f"case{i}.safetensors"  # not the name: messages must hold the value
        paths[name].write_bytes(blob)
    paths["huge"] = tmp / "huge.safetensors"  # a 3 GB header; sparse, so it takes no disk
    with open(paths["huge"], "wb") as f:
        f.write((3 << 30).to_bytes(8, "little") + b"{")
        f.truncate(8 + (3 << 30))
    results = load_isolated(paths.values())
    return {name: (path, results[str(path)]) for name, path in paths.items()}


@pytest.mark.parametrize("field, value, channels", BOMBS)
def test_configs_demanding_huge_models_are_refused_quickly_within_memory(hostile, field, value, channels):
    path, (outcome, message, seconds) = hostile[f"{field}={value}/{channels}"]
    assert path.stat().st_size < 4096  # the reported case: a 4 KB file
    assert outcome == "ValueError", (outcome, message)
    assert message.startswith(f"{path}: invalid checkpoint") and str(value) in message, message
    assert seconds < SECONDS_PER_LOAD


@pytest.mark.parametrize("name, msg", [
    ("past_eof", "header length field says {size_plus_100} bytes, the file has {size}"),
    ("huge", f"header takes {3 << 30} bytes, more than the {MAX_HEADER_BYTES}"),
    ("over_cap", f"header takes {MAX_HEADER_BYTES + 1} bytes"),
])
def test_lying_and_oversized_headers_are_refused_without_reading_them(hostile, name, msg):
    path, (outcome, message, seconds) = hostile[name]
    size = path.stat().st_size
    assert outcome == "ValueError", (outcome, message)
    assert msg.format(size=size, size_plus_100=size + 100) in message, message
    assert seconds < SECONDS_PER_LOAD


# ---------------------------------------------------------------------------- wrong types
WRONG_FIELDS = [("hidden", 8.5), ("hidden", True), ("layers", "2"), ("layers", None), ("hidden", [4]),
                ("hidden", {"a": 1}), ("layers", -1), ("layers", 0), ("in_channels", -3),
                ("exit_hidden", 0), ("num_nodes", 6.0), ("dropout", math.nan), ("dropout", 1.5),
                ("dropout", "0.5"), ("dropout", False), ("tau0", math.nan), ("tau0", math.inf),
                ("sas_step", None), ("backbone", "gat"), ("backbone", 3), ("exit", ["node"]),
                ("semantics", None)]


@pytest.mark.parametrize("field, value", WRONG_FIELDS)
def test_wrong_typed_config_fields_are_named(tmp_path, field, value):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(with_config(small_checkpoint(tmp_path / "ok").read_bytes(), **{field: value}))
    msg = rf"config field {field} must be .*, got {re.escape(reprlib.repr(value))}$"
    with pytest.raises(ValueError, match=rf"bad\.safetensors: invalid checkpoint: {msg}"):
        lf.load(path)
    kwargs = dict(in_channels=3, num_nodes=6)  # and direct construction checks the same
    with pytest.raises(ValueError, match=msg):
        ModelConfig(**{**kwargs, field: value})


@pytest.mark.parametrize("changes, msg", [
    ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
    ({"hidden": DROP}, r"lacks field\(s\) \['hidden'\]"),
    ({"in_channels": DROP, "num_nodes": DROP}, r"lacks field\(s\) \['in_channels', 'num_nodes'\]"),
])
def test_unknown_and_missing_config_fields_are_named(tmp_path, changes, msg):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(with_config(small_checkpoint(tmp_path / "ok").read_bytes(), **changes))
    with pytest.raises(ValueError, match=msg):
        lf.load(path)


@pytest.mark.parametrize("key, text, msg", [
    ("config", "[1, 2]", "'config' must be a JSON object, got list"),
    ("config", "{", "'config' is not valid JSON"),
    ("config", "[" * 100_000 + "]" * 100_000, "'config' nests too deeply"),
    ("metrics", '{"a": ' * 100_000 + "1" + "}" * 100_000, "'metrics' nests too deeply"),
    ("extra", '"text"', "'extra' must be a JSON object, got str"),
    ("config", '{"hidden": ' + "9" * 5000 + "}", "'config' is not valid JSON"),  # past int() digit limit
])
def test_malformed_metadata_is_a_value_error(tmp_path, key, text, msg):
    header, body = split_file(small_checkpoint(tmp_path / "ok").read_bytes())
    header["__metadata__"][key] = text
    path = tmp_path / "bad.safetensors"
    path.write_bytes(join_file(header, body))
    with pytest.raises(ValueError, match=msg):
        lf.load(path)


# ---------------------------------------------------------------------------- tensors and graph
@pytest.mark.parametrize("name, tensor, msg", [
    ("model.convs.0.weight", torch.zeros(4, 3, dtype=torch.float64), "model.convs.0.weight is float64; model weights are float32"),
    ("model.convs.0.bias", torch.zeros(4, dtype=torch.float16), "model.convs.0.bias is float16"),
    ("model.convs.0.weight", torch.zeros(4, 4), r"model.convs.0.weight has shape \[4, 4\], the config implies \[4, 3\]"),
    ("model.extra_layer.weight", torch.zeros(2), r"unexpected tensor\(s\) \['extra_layer.weight'\]"),
    ("graph.rowptr", torch.tensor([0, 2, 4, 6, 8, 10, 12], dtype=torch.int32), "graph.rowptr is int32, expected int64"),
    ("graph.col", torch.zeros(12), "graph.col is float32, expected int64"),
    ("graph.x", torch.zeros(6, 3, dtype=torch.bfloat16), "graph.x is bfloat16, expected float32"),
    ("graph.x", torch.zeros(5, 3), r"graph.x must be \[num_nodes=6, F\]; got \[5, 3\]"),
    ("graph.x", torch.zeros(6, 2), "the model expects 3 input features, the graph has 2"),
    ("graph.rowptr", torch.zeros(1, dtype=torch.int64), r"graph.rowptr must be \[num_nodes \+ 1\]"),
    ("graph.edge_attr", torch.zeros(3), r"unexpected tensor\(s\) \['graph.edge_attr'\]"),
])
def test_tensors_are_checked_against_the_config_before_loading(tmp_path, name, tensor, msg):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(with_tensor(small_checkpoint(tmp_path / "ok").read_bytes(), name, tensor))
    with pytest.raises(ValueError, match=rf"bad\.safetensors: invalid checkpoint: .*{msg}"):
        lf.load(path)


def test_graph_sizes_are_checked_against_the_embedding(tmp_path):
    data = small_checkpoint(tmp_path / "ok", in_channels=0).read_bytes()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(with_tensor(data, "graph.rowptr", torch.arange(0, 10, 2)))  # 4 nodes, not 6
    with pytest.raises(ValueError, match="graph has 4 nodes, the model's embedding 6"):
        lf.load(path)


def test_graph_values_are_checked_by_graph_naming_the_file(tmp_path):
    data = small_checkpoint(tmp_path / "ok").read_bytes()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(with_tensor(data, "graph.col", torch.full((12,), 7)))  # node 7 of 6
    with pytest.raises(ValueError, match=r"bad\.safetensors: .*col"):
        lf.load(path)


def test_a_valid_checkpoint_still_loads_and_predicts(tmp_path):
    for channels in (0, 3):
        path = small_checkpoint(tmp_path / f"ok{channels}", channels)
        pred = lf.load(path)
        assert pred.config == ModelConfig(channels, 6, hidden=4, layers=2, exit="node", exit_hidden=3)
        assert pred.graph.num_nodes == 6 and pred.metrics == {"valid": {"auc": 0.5}}
        assert not any(p.is_meta for p in pred.model.parameters())
        torch.manual_seed(0)
        original = EarlyExitLinkPredictor(pred.config)  # small_checkpoint's weights, drawn again
        for (k, a), (_, b) in zip(original.state_dict().items(), pred.model.state_dict().items()):
            assert torch.equal(a, b), k
        assert lf.predict(pred, [[0, 1], [2, 5]]).shape == (2,)


@pytest.mark.parametrize("backbone", ["gcn", "resgcn", "sas"])
@pytest.mark.parametrize("exit", ["none", "node", "subgraph"])
def test_every_model_family_round_trips(tmp_path, backbone, exit):
    """load checks the header against the tensors each family's config implies, counted without
    building the model: a wrong count would refuse these legitimate files."""
    for channels, layers, predictor_layers in ((0, 1, 1), (3, 4, 3)):
        model = EarlyExitLinkPredictor(ModelConfig(channels, 6, hidden=4, layers=layers, backbone=backbone,
                                                   exit=exit, predictor_layers=predictor_layers, exit_hidden=3))
        loaded = lf.load(lf.save(model, tmp_path / f"{channels}"))
        assert loaded.config == model.config and loaded.graph is None
        want = model.state_dict()
        got = loaded.model.state_dict()
        assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)


# ---------------------------------------------------------------------------- no code execution
class _Touch:
    """Unpickling this creates ``path``: the side effect a malicious pickle would have."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_renamed_to_safetensors_is_refused_and_never_run(tmp_path, writer):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Touch(probe)))
    assert probe.exists()  # the payload is live: unpickling it has the side effect
    marker = tmp_path / "pwned"
    path = tmp_path / "ck" / "model.safetensors"
    path.parent.mkdir()
    if writer == "pickle":
        path.write_bytes(pickle.dumps(_Touch(marker)))
    else:
        torch.save({"model": _Touch(marker)}, path)
    with pytest.raises(ValueError, match="truncated or not a safetensors file"):
        lf.load(path.parent)
    assert not marker.exists()


# ---------------------------------------------------------------------------- mutation fuzzing
def test_mutated_checkpoints_load_or_raise_value_error(tmp_path):
    """Random byte flips, insertions and deletions in the header, the data and the length field,
    and config fields rewritten to random JSON: ``load`` returns a working Predictor or raises
    ValueError, within seconds and the memory cap (hypothesis runs in the capped child)."""
    base = small_checkpoint(tmp_path / "ok")
    run_child("fuzz", base, tmp_path / "mutant.safetensors", 60, timeout=240)


def _fuzz(base: str, target: str, examples: str) -> None:
    from hypothesis import HealthCheck, given, settings, strategies as st

    data, path = Path(base).read_bytes(), Path(target)
    n = int.from_bytes(data[:8], "little")
    fields = [f.name for f in dataclasses.fields(ModelConfig)] + ["colour"]
    leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
              | st.sampled_from([0, 1, 2, 6, 10**7, 10**12, -1, 2**63, "gcn", "sas", "subgraph"]))
    json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                               | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
    config_edit = st.tuples(st.sampled_from(fields), json_values | st.just("<drop>"))
    # (region, operation, position, byte, whether the header length follows a header edit).
    # Flips are single bits: in the header's digits ('4' ^ 1 = '5') they keep the JSON valid
    # and change a shape or an offset; inserted bytes are mostly JSON's own characters.
    byte_edit = st.tuples(st.sampled_from(["header", "data", "data", "length"]),
                          st.sampled_from(["flip", "flip", "insert", "delete"]), st.integers(0, 2**20),
                          st.sampled_from(b'0123456789-.e,:[]{}" ') | st.integers(0, 255), st.booleans())

    def mutate(config_edits, byte_edits) -> bytes:
        blob = data
        if config_edits:
            blob = with_config(blob, **{k: DROP if v == "<drop>" else v for k, v in config_edits})
        for region, op, pos, byte, fix_length in byte_edits:
            length = int.from_bytes(blob[:8], "little")
            # the length field may already be mutated: regions end at the end of the file
            lo, hi = {"length": (0, 8), "header": (8, 8 + length), "data": (8 + length, len(blob))}[region]
            hi = min(hi, len(blob))
            if hi <= lo:
                continue
            i = lo + pos % (hi - lo)
            if op == "flip" or region == "length":
                blob = blob[:i] + bytes([blob[i] ^ (1 << byte % 8)]) + blob[i + 1:]
            elif op == "insert":
                blob = blob[:i] + bytes([byte]) + blob[i:]
            else:
                blob = blob[:i] + blob[i + 1:]
            if region == "header" and op != "flip" and fix_length:
                blob = (length + (1 if op == "insert" else -1)).to_bytes(8, "little") + blob[8:]
        return blob

    @settings(max_examples=int(examples), deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(config_edit, max_size=2), st.lists(byte_edit, max_size=3))
    def check(config_edits, byte_edits):
        path.write_bytes(mutate(config_edits, byte_edits))
        start = time.perf_counter()
        try:
            pred = lf.load(path)
        except (ValueError, FileNotFoundError):
            pass
        else:  # a mutation the checks accept must still give a usable predictor
            assert isinstance(pred, Predictor)
            assert lf.predict(pred, [[0, 1]]).shape == (1,)
        assert time.perf_counter() - start < SECONDS_PER_LOAD

    assert n > 0
    check()


def _load_each(*paths: str) -> None:
    for p in paths:
        print(f"loading {p}", flush=True)  # on a timeout, the output says which file hung
        start = time.perf_counter()
        try:
            lf.load(p)
            outcome, message = "loaded", ""
        except Exception as e:  # the parent asserts on the type
            outcome, message = type(e).__name__, str(e)
        print(json.dumps({"path": p, "outcome": outcome, "message": message,
                          "seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    # Child process: the cap applies before anything large can be allocated.
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    command, *args = sys.argv[1:]
    {"load": _load_each, "fuzz": _fuzz}[command](*args)
