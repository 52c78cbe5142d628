"""predict's public contract: memory bounded whatever the number of pairs, streaming CLI, and
clear errors for bad arguments at every public entry point (predict, on a model or a loaded
predictor, and the CLI)."""
import gzip
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import linkexit_fast as lf
from linkexit_fast import backends, engine
from linkexit_fast.backends import BackendUnavailable, triton as triton_ops
from linkexit_fast.cli import main as cli_main
from linkexit_fast.evaluate import reference_scores
from linkexit_fast.models import EarlyExitLinkPredictor, ModelConfig
from linkexit_fast.pairs_io import iter_pair_chunks, read_pairs
from linkexit_fast.validation import check_count, check_threshold

REPO = Path(__file__).resolve().parents[1]
N = 30


def small_case(n=N, exit="node", semantics="freeze", seed=0):
    g = torch.Generator().manual_seed(seed)
    graph = lf.Graph.from_edge_index(torch.randint(0, n, (2, 4 * n), generator=g), num_nodes=n,
                                     x=torch.randn(n, 6, generator=g))
    torch.manual_seed(seed)
    model = EarlyExitLinkPredictor(ModelConfig(6, n, hidden=8, layers=3, exit=exit, semantics=semantics)).eval()
    return graph, model


GRAPH, MODEL = small_case()


# ---------------------------------------------------------------------------- memory
# A child process: a warm-up call, then the peak RSS of one call on P pairs over the baseline,
# less the [P, 2] int64 input and the [P] float32 output (Linux: VmHWM reset by clear_refs).
MEASURE = textwrap.dedent("""
    import sys, torch, linkexit_fast as lf
    from linkexit_fast.models import EarlyExitLinkPredictor, ModelConfig
    def kb(key):
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
    torch.manual_seed(0)
    n, P = 500, int(sys.argv[1])
    graph = lf.Graph.from_edge_index(torch.randint(0, n, (2, 3000)), num_nodes=n, x=torch.randn(n, 6))
    model = EarlyExitLinkPredictor(ModelConfig(6, n, hidden=16, layers=3)).eval()
    lf.predict(graph, torch.randint(0, n, (5000, 2)), model=model, backend=sys.argv[2])
    open("/proc/self/clear_refs", "w").write("5")
    base = kb("VmRSS")
    pairs = torch.randint(0, n, (P, 2))
    scores = lf.predict(graph, pairs, model=model, backend=sys.argv[2])
    print((kb("VmHWM") - base) * 1024 - pairs.numel() * 8 - scores.numel() * 4)
""")


# glibc raises its mmap threshold as large blocks are freed, after which freed blocks stay in the
# heap and count in the peak RSS: +-13 MB between otherwise identical runs. A fixed threshold makes
# every large block a mapping returned on free, so the peak counts only what is really held
# (measured: 0.5M and 2M pairs within 0.1 MB of each other, three runs).
STEADY_MALLOC = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}


def extra_bytes(num_pairs: int, backend: str) -> int:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(num_pairs), backend], capture_output=True,
                         text=True, check=True, cwd=REPO, env=STEADY_MALLOC)
    return int(out.stdout.split()[-1])


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")


@needs_proc
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_memory_beyond_output_does_not_grow_with_pairs(backend):
    """Before the fix the engine held ~75 bytes a pair beyond the output: 110 MB more at 2M pairs
    than at 0.5M. The budget below is a few MB, whatever P."""
    small, large = extra_bytes(500_000, backend), extra_bytes(2_000_000, backend)
    assert large - small < 6 * 2 ** 20, (small, large)


@needs_proc
def test_cli_streams_a_large_pairs_file(tmp_path):
    """The CLI's peak RSS on 600k lines stays near its peak on 100k lines: the old CLI held the
    file as Python tuples, then as lists for printing (~300 bytes a line: 150 MB more). What remains is the allocators'
    footprint settling over the first batches (measured: +26 MB from 0.4M to 1.6M lines, +2 MB
    from 1.6M to 2M)."""
    graph, model = small_case(n=500)
    lf.save(model, tmp_path / "ck", graph=graph)
    rng = np.random.default_rng(0)
    peaks = []
    for lines in (100_000, 600_000):
        path = tmp_path / f"pairs{lines}.txt"
        np.savetxt(path, rng.integers(0, 500, (lines, 2)), fmt="%d")
        code = ("import sys; from linkexit_fast.cli import main; sys.stdout = open(__import__('os').devnull, 'w'); "
                f"main(['predict', {str(tmp_path / 'ck')!r}, {str(path)!r}, '--batch-size', '65536']); "
                "sys.stderr.write(str(next(int(l.split()[1]) for l in open('/proc/self/status') "
                "if l.startswith('VmHWM'))))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                             env=STEADY_MALLOC)
        peaks.append(int(out.stderr.split()[-1]) * 1024)
    assert peaks[1] - peaks[0] < 40 * 2 ** 20, peaks


# ---------------------------------------------------------------------------- chunking keeps results
@pytest.mark.parametrize("exit, semantics", [("node", "freeze"), ("subgraph", "readout"), ("none", "freeze")])
def test_chunked_scoring_matches_reference(monkeypatch, exit, semantics):
    graph, model = small_case(exit=exit, semantics=semantics, seed=3)
    pairs = torch.randint(0, N, (101, 2), generator=torch.Generator().manual_seed(1))
    ref, res = reference_scores(model, graph, pairs, threshold=0.6)
    monkeypatch.setattr(engine.api, "PAIR_CHUNK", 7)  # many chunks, the last one partial
    for backend in ("torch", "reference"):
        for batch in (None, 1, 10):
            out, stats = lf.predict(graph, pairs, 0.6, model=model, backend=backend, batch_size=batch,
                                    return_stats=True)
            torch.testing.assert_close(out, ref.sigmoid(), atol=1e-5, rtol=0)
            assert torch.equal(stats.exit_layer, res.exit_layer[pairs])
            if backend == "torch":  # a pair resolves at the later of its endpoints' exit layers
                assert sum(stats.pairs_resolved) == len(pairs)
                want = torch.bincount(res.exit_layer[pairs].max(1).values, minlength=4).tolist()
                ran = len(stats.pairs_resolved)
                assert stats.pairs_resolved == want[:ran - 1] + [sum(want[ran - 1:])]


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_predict_chunks_equals_one_call(backend):
    pairs = torch.randint(0, N, (90, 2), generator=torch.Generator().manual_seed(2))
    parts = [pairs[:13], pairs[13:13], pairs[13:60], pairs[60:]]
    ref, _ = reference_scores(MODEL, GRAPH, pairs, threshold=0.6)
    whole = lf.predict(GRAPH, pairs, 0.6, model=MODEL, backend=backend)
    streamed = list(engine.predict_chunks(GRAPH, lambda: iter(parts), 0.6, model=MODEL, backend=backend))
    assert [p.shape[0] for p, _ in streamed] == [13, 0, 47, 30]
    assert torch.equal(torch.cat([p for p, _ in streamed]), pairs)
    scores = torch.cat([s for _, s in streamed])
    torch.testing.assert_close(scores, ref.sigmoid(), atol=1e-5, rtol=0)
    # Not always bit for bit: the scorer's matrix products round by their row count (~1 ulp).
    torch.testing.assert_close(scores, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_predict_chunks_checks_every_part_before_the_first_score(backend):
    parts = [torch.tensor([[0, 1]]), torch.tensor([[0, N]])]
    gen = engine.predict_chunks(GRAPH, lambda: iter(parts), model=MODEL, backend=backend)
    with pytest.raises(ValueError, match=f"node id {N}, out of range"):
        next(gen)


# ---------------------------------------------------------------------------- pairs files and the CLI
def test_pair_reader_chunks_and_formats(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("source,target\n# comment\n\n1 2\n3,4\n5\t6 0.25\n  7   8  \n9 10\n")
    chunks = list(iter_pair_chunks(path, chunk_lines=3))
    assert torch.equal(torch.cat(chunks), torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]))
    assert all(c.dtype == torch.int64 for c in chunks)
    big = tmp_path / "big.txt.gz"
    want = np.random.default_rng(0).integers(0, 10 ** 12, (1000, 2))
    with gzip.open(big, "wt") as f:
        f.write("".join(f"{u} {v}\n" for u, v in want))
    assert np.array_equal(read_pairs(big).numpy(), want)
    assert np.array_equal(torch.cat(list(iter_pair_chunks(big, 64))).numpy(), want)


@pytest.mark.parametrize("text, msg", [
    ("0 1\n2 3\n4", r"p.txt:3: expected two node ids, got '4' \(truncated file\?\)"),
    ("0 1\n1 x\n", r"p.txt:2: non-integer node id in '1 x'"),
    ("0 1\n2 3\n4 -5\n", r"p.txt:3: negative node id -5"),
    ("0 1\n# c\n2 -3 x\n", r"p.txt:3: negative node id -3"),
    ("0 1\n1 99999999999999999999999\n", r"p.txt:2: node id 99999999999999999999999 does not fit"),
])
def test_pair_reader_errors_name_the_line(tmp_path, text, msg):
    path = tmp_path / "p.txt"
    path.write_text(text)
    for chunk_lines in (1, 2, 100):  # the error's line number does not depend on the chunking
        with pytest.raises(ValueError, match=msg):
            list(iter_pair_chunks(path, chunk_lines))
    with pytest.raises(FileNotFoundError, match="not found"):
        list(iter_pair_chunks(tmp_path / "missing.txt"))
    with pytest.raises(TypeError, match="chunk_lines must be an int"):
        list(iter_pair_chunks(path, 2.0))


def test_cli_predict_streams_the_scores(tmp_path, capsys):
    lf.save(MODEL, tmp_path / "ck", graph=GRAPH)
    pairs = torch.randint(0, N, (50, 2), generator=torch.Generator().manual_seed(4))
    path = tmp_path / "pairs.txt"
    path.write_text("u,v\n" + "".join(f"{u},{v}\n" for u, v in pairs.tolist()))
    cli_main(["predict", str(tmp_path / "ck"), str(path), "--threshold", "0.6", "--batch-size", "7",
              "--backend", "torch"])
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [[int(u), int(v)] for u, v, _ in rows] == pairs.tolist()
    ref, _ = reference_scores(MODEL, GRAPH, pairs, threshold=0.6)
    np.testing.assert_allclose([float(s) for _, _, s in rows], ref.sigmoid().numpy(), atol=2e-6)


@pytest.mark.parametrize("args, msg", [
    (["--batch-size", "0"], "must be a positive integer, got '0'"),
    (["--batch-size", "2.5"], "must be a positive integer, got '2.5'"),
    (["--threshold", "nan"], "threshold must be a number in"),
    (["--backend", "fortran"], "unknown backend 'fortran'"),
])
def test_cli_predict_errors(tmp_path, capsys, args, msg):
    lf.save(MODEL, tmp_path / "ck", graph=GRAPH)
    (tmp_path / "p.txt").write_text("0 1\n")
    with pytest.raises(SystemExit) as e:
        cli_main(["predict", str(tmp_path / "ck"), str(tmp_path / "p.txt"), *args])
    assert e.value.code == 2 and msg in capsys.readouterr().err


# ---------------------------------------------------------------------------- thresholds
@pytest.mark.parametrize("t", [np.float32(0.6), np.float64(0.6), torch.tensor(0.6), np.array(0.6),
                               torch.tensor(1), np.int64(1), 1])
def test_threshold_accepts_any_real_number(t, tmp_path):
    want = lf.predict(GRAPH, [[0, 1], [2, 3]], threshold=float(t), model=MODEL)
    assert torch.equal(lf.predict(GRAPH, [[0, 1], [2, 3]], threshold=t, model=MODEL), want)
    pred = lf.load(lf.save(MODEL, tmp_path / "ck", graph=GRAPH))  # a loaded predictor too
    assert torch.equal(lf.predict(pred, [[0, 1], [2, 3]], threshold=t), want)


@pytest.mark.parametrize("t, exc, msg", [
    (True, TypeError, "must be a real number"), (np.bool_(True), TypeError, "must be a real number"),
    ("0.5", TypeError, "got str '0.5'"), (None, TypeError, "got NoneType"),
    (torch.tensor([0.5]), TypeError, "got Tensor"), (1j, TypeError, "got complex"),
    (torch.tensor(True), TypeError, "must be a real number"),
    (float("nan"), ValueError, "got nan"), (np.float32("nan"), ValueError, "got nan"),
    (0, ValueError, r"in \(0, 1\], got 0"), (1.5, ValueError, "got 1.5"), (torch.tensor(-0.1), ValueError, "in"),
])
def test_threshold_rejects(t, exc, msg):
    with pytest.raises(exc, match=msg):
        lf.predict(GRAPH, [[0, 1]], threshold=t, model=MODEL)
    with pytest.raises(exc, match=msg):
        check_threshold(t)


# ---------------------------------------------------------------------------- pairs
@pytest.mark.parametrize("pairs, exc, msg", [
    ([[0, 1e20]], ValueError, r"node id 1e\+20, out of range for num_nodes=30"),
    (np.array([[0.0, -1.0]]), ValueError, "negative node id -1$"),
    (np.array([[0, 2 ** 63 + 5]], dtype=np.uint64), ValueError, f"node id {2 ** 63 + 5}, out of range"),
    (np.array([[0, 2 ** 64 - 1]], dtype=np.uint64), ValueError, f"node id {2 ** 64 - 1}, out of range"),
    (np.array([[0, 31]], dtype=np.uint32), ValueError, "node id 31, out of range for num_nodes=30"),
    (torch.tensor([[0, 2 ** 40]]), ValueError, f"node id {2 ** 40}, out of range"),
    ([[0, float("nan")]], TypeError, "integer node ids, got nan"),
    ([[0, float("inf")]], TypeError, "integer node ids, got inf"),
    ([[0, 2.5]], TypeError, "integer node ids, got 2.5"),
    ([[0, 2 ** 70]], TypeError, "integers beyond 64 bits"),
    ([[0, 1], [2]], ValueError, "ragged"),
    (np.array([["a", "b"]]), TypeError, "must be numeric"),
    (torch.tensor([[True, False]]), TypeError, "integer node ids, got dtype torch.bool"),
    ("0 1", TypeError, "must be a torch.Tensor, numpy array or list"),
])
def test_bad_pairs_are_named_as_given(pairs, exc, msg):
    with pytest.raises(exc, match=msg):
        lf.predict(GRAPH, pairs, model=MODEL)


def test_integral_and_small_dtypes_are_accepted():
    want = lf.predict(GRAPH, torch.tensor([[0, 29], [3, 4]]), model=MODEL)
    for pairs in ([[0.0, 29.0], [3.0, 4.0]], np.array([[0, 29], [3, 4]], dtype=np.uint64),
                  np.array([[0, 29], [3, 4]], dtype=np.int8), torch.tensor([[0, 29], [3, 4]], dtype=torch.int32),
                  torch.tensor([[0, 3], [29, 4]]).T):  # not contiguous
        assert torch.equal(lf.predict(GRAPH, pairs, model=MODEL), want)


def test_int64_contiguous_pairs_are_not_copied():
    from linkexit_fast.validation import check_pairs
    pairs = torch.randint(0, N, (100, 2))
    assert check_pairs(pairs, N).data_ptr() == pairs.data_ptr()


# ---------------------------------------------------------------------------- counts
def test_check_count():
    assert check_count(np.int64(25), "num_nodes") == 25 and check_count(3, "n") == 3
    for bad in (25.7, 25.0, np.float64(25.0), True, "25", None):
        with pytest.raises(TypeError, match="num_nodes must be an int"):
            check_count(bad, "num_nodes")
    with pytest.raises(ValueError, match="num_nodes must be >= 0, got -1"):
        check_count(-1, "num_nodes")


@pytest.mark.parametrize("batch, exc, msg", [
    (2.5, TypeError, "batch_size must be an int, got float 2.5"), (True, TypeError, "batch_size must be an int"),
    (0, ValueError, "batch_size must be >= 1, got 0"), (-3, ValueError, "got -3"),
])
def test_bad_batch_size(batch, exc, msg):
    with pytest.raises(exc, match=msg):
        lf.predict(GRAPH, [[0, 1]], model=MODEL, batch_size=batch)


def test_numpy_batch_size_is_accepted():
    pairs = torch.randint(0, N, (20, 2), generator=torch.Generator().manual_seed(1))
    # To ~1 ulp, as in test_predict_chunks_equals_one_call: batches of 3 score in smaller matrix
    # products (seed 1 differs by 6e-8 on an AMD EPYC).
    torch.testing.assert_close(lf.predict(GRAPH, pairs, model=MODEL, batch_size=np.int64(3)),
                               lf.predict(GRAPH, pairs, model=MODEL), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------- backends
@pytest.mark.parametrize("pairs", [[], [[0, 1]]])
def test_backend_name_is_checked_first(pairs):
    with pytest.raises(ValueError, match="unknown backend 'torhc'"):
        lf.predict(GRAPH, pairs, model=MODEL, backend="torhc")
    with pytest.raises(ValueError, match="unknown backend 'torhc'"):  # before the bad threshold
        lf.predict(GRAPH, pairs, threshold=7, model=MODEL, backend="torhc")
    with pytest.raises(TypeError, match="backend must be a string"):
        lf.predict(GRAPH, pairs, model=MODEL, backend=None)


def test_explicit_backend_that_cannot_run_is_an_error(monkeypatch):
    monkeypatch.setattr(backends, "_probed", {})
    monkeypatch.setattr(triton_ops, "unavailable_reason", lambda: "no CUDA device")  # nor TRITON_INTERPRET
    for pairs in ([[0, 1]], []):
        with pytest.raises(BackendUnavailable, match="'triton' was requested but cannot run here: no CUDA device"):
            lf.predict(GRAPH, pairs, model=MODEL, backend="triton")
    from linkexit_fast.backends import cpu
    monkeypatch.setitem(cpu._state, "error", "simulated build failure")
    with pytest.raises(BackendUnavailable, match="'cpu' .* simulated build failure"):
        lf.predict(GRAPH, [[0, 1]], model=MODEL, backend="cpu")
    monkeypatch.setattr(backends, "_warned", set())
    with pytest.warns(UserWarning, match="simulated build failure.*'auto' uses the slower 'torch'") as rec:
        out = lf.predict(GRAPH, [[0, 1]], model=MODEL)
        lf.predict(GRAPH, [[0, 1]], model=MODEL)
    assert len(rec) == 1
    ref, _ = reference_scores(MODEL, GRAPH, torch.tensor([[0, 1]]), threshold=0.9)
    torch.testing.assert_close(out, ref.sigmoid(), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------- junk
JUNK_ARRAYS = st.one_of(
    st.builds(lambda a: a, st.lists(st.lists(st.one_of(st.integers(-2 ** 65, 2 ** 65),
                                                       st.floats(allow_nan=True, allow_infinity=True)),
                                              min_size=0, max_size=3), max_size=4)),
    st.tuples(st.sampled_from(["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                               "float16", "float32", "float64", "bool", "complex64"]),
              st.lists(st.integers(0, 3), min_size=0, max_size=3), st.integers(0, 2 ** 32),
              st.booleans()).map(lambda a: _random_array(*a)),
    st.sampled_from([None, "x", 3, 2.5, {"a": 1}, object()]),
)


def _random_array(dtype, shape, seed, as_torch):
    """Random values over the dtype's whole range (floats: spanning 20 decades, some non-integral)."""
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        arr = rng.integers(0, 2, size=shape).astype(bool)
    elif dtype in ("float16", "float32", "float64", "complex64"):
        with np.errstate(over="ignore"):
            arr = (rng.standard_normal(shape) * 10.0 ** rng.integers(0, 20)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    arr = np.asarray(arr)
    return torch.from_numpy(arr) if as_torch else arr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=JUNK_ARRAYS, threshold=st.one_of(st.floats(allow_nan=True), st.integers(-2, 2), st.booleans(),
                                              st.sampled_from([None, "0.5", np.float32(0.7), torch.tensor(0.9)])),
       batch_size=st.one_of(st.none(), st.integers(-1, 5), st.floats(0, 5)))
def test_junk_inputs_give_a_result_or_a_clear_error(pairs, threshold, batch_size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = lf.predict(GRAPH, pairs, threshold, model=MODEL, backend="torch", batch_size=batch_size)
        except (ValueError, TypeError) as e:
            assert str(e)
            return
    assert out.dtype == torch.float32 and out.dim() == 1 and bool(((out >= 0) & (out <= 1)).all())
