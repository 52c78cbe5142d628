"""Hostile and damaged dataset files: every one must raise a ValueError that names the file and
the problem, never crash the process.

The loads run in a subprocess, so a segfault (what a CSR whose shape exceeds its arrays did)
shows as a failed test rather than a dead test run.
"""
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import require_data

REPO = Path(__file__).resolve().parents[1]
CORA_PARTS = ["x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"]


def run_python(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with faulthandler on (a crash prints its stack)."""
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def csr_pickle(shape, indptr, indices, data) -> bytes:
    """A pickled ``csr_matrix`` with exactly these attributes (nothing checked), using only the
    allow-listed globals (protocol 4, like the reported 369-byte file)."""
    m = sp.csr_matrix((2, 2), dtype=np.float32)
    m.__dict__.update(_shape=shape, indptr=np.asarray(indptr, dtype=np.int32),
                      indices=np.asarray(indices, dtype=np.int32),
                      data=np.asarray(data, dtype=np.float32))
    return pickle.dumps(m, protocol=4)


class Reduce:
    """Pickles as ``func(*args)`` followed by ``BUILD state`` when ``state`` is given."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def raw_array(shape, dtype, raw: bytes, dtype_flags: int = 0) -> Reduce:
    """numpy's own pickle form of an array (``_reconstruct`` + state), with any shape, bytes and
    dtype flags."""
    recon = (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct
    dt = Reduce(np.dtype, (dtype, False, True), (3, "<", None, None, None, -1, -1, dtype_flags))
    return Reduce(recon, (np.ndarray, (0,), b"b"), (1, shape, dt, False, raw))


class System:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


# case -> (file to replace, its bytes, expected text in the ValueError)
PLANETOID_CASES = {
    "reported shape mismatch": ("allx", csr_pickle((3000, 1433), [0, 1, 2], [0, 1], [1, 1]),
                                "CSR indptr has 3 entries; shape (3000, 1433) needs 3001"),
    "indptr past the data": ("allx", csr_pickle((2, 1433), [0, 1, 9], [0, 1], [1, 1]),
                             "CSR indptr must rise from 0 to nnz=2"),
    "indptr falling": ("allx", csr_pickle((3, 1433), [0, 2, 1, 2], [0, 1], [1, 1]),
                       "CSR indptr must rise from 0 to nnz=2"),
    "data shorter than indices": ("allx", csr_pickle((2, 1433), [0, 1, 2], [0, 1], [1]),
                                  "CSR data has 1 entries, indices 2"),
    "indices out of range": ("allx", csr_pickle((2, 1433), [0, 1, 2], [0, 5000], [1, 1]),
                             "CSR column indices span [0, 5000], outside [0, 1433)"),
    "negative index": ("allx", csr_pickle((2, 1433), [0, 1, 2], [0, -3], [1, 1]),
                       "CSR column indices span [-3, 0], outside [0, 1433)"),
    "negative shape": ("allx", csr_pickle((-1, 1433), [0], [], []),
                       "CSR shape must be two non-negative ints, got (-1, 1433)"),
    "shape not a pair": ("allx", csr_pickle((2,), [0, 1, 2], [0, 1], [1, 1]),
                         "CSR shape must be two non-negative ints"),
    "rows disagree with labels": ("allx", csr_pickle((2, 1433), [0, 1, 2], [0, 1], [1, 1]),
                                  "has 2 rows but"),
    "columns disagree": ("tx", csr_pickle((1000, 7), [0] * 1001, [], []),
                         "has 7 columns but"),
    "graph ids out of range": ("graph", pickle.dumps({0: [1, 99999], 1: [0]}, protocol=2),
                               "must map a node id to a list of node ids, ints in [0, 2708)"),
    "graph negative id": ("graph", pickle.dumps({-1: [0]}, protocol=2), "ints in [0, 2708)"),
    "graph of strings": ("graph", pickle.dumps({0: ["1"]}, protocol=2), "ints in [0, 2708)"),
    "graph not a dict": ("graph", pickle.dumps([[0, 1]], protocol=2),
                         "must hold a dict of adjacency lists, got list"),
    "labels not an array": ("ally", pickle.dumps([1, 2], protocol=2),
                            "must hold a numpy array, got list"),
    "array bytes too short": ("ally", pickle.dumps(raw_array((1708, 7), "i4", b"\0" * 8), protocol=4),
                              "needs 47824 bytes, the file holds 8"),
    "object dtype": ("ally", pickle.dumps(raw_array((2,), "O8", b"\0" * 16), protocol=4),
                     "unsupported array dtype 'O8'"),
    "dtype flagged as holding objects": (
        "ally", pickle.dumps(raw_array((1708, 7), "i4", b"\0" * 47824, dtype_flags=63), protocol=4),
        "unsupported array dtype 'i4'"),
    "object array over raw bytes": (
        "ally", pickle.dumps(Reduce(np.ndarray, ((2,), np.dtype("O"), b"\x41" * 16)), protocol=4),
        "refusing to call numpy.ndarray"),
    "truncated": ("allx", None, "truncated or corrupt"),
    "disallowed global": ("allx", pickle.dumps(System(), protocol=2), "refusing to load posix.system"),
    "test index out of range": ("test.index", b"\n".join([b"99999"] * 1000), "out of range"),
    "test index not ints": ("test.index", b"a\nb\n", "one integer node id a line"),
}


@pytest.fixture(scope="module")
def planetoid_outcomes(tmp_path_factory):
    """Load every crafted Cora folder in one subprocess; ``{case: outcome}``, where a case
    that crashed the interpreter reads ``"crashed: ..."``."""
    real = require_data("planetoid")
    base = tmp_path_factory.mktemp("hostile")
    jobs = []
    for i, (case, (part, data, _)) in enumerate(PLANETOID_CASES.items()):
        folder = base / f"case{i}" / "planetoid"
        folder.mkdir(parents=True)
        for p in CORA_PARTS:
            (folder / f"ind.cora.{p}").symlink_to(real / f"ind.cora.{p}")
        target = folder / f"ind.cora.{part}"
        target.unlink()
        target.write_bytes(data if data is not None else (real / f"ind.cora.{part}").read_bytes()[:5000])
        jobs.append((case, str(folder.parent)))
    return run_batch("from linkexit_fast.datasets import load_planetoid\n"
                     "load = lambda root: load_planetoid('cora', root)", jobs)


def run_batch(setup: str, jobs) -> dict:
    """``{case: outcome}`` of ``load(arg)`` for each ``(case, arg)``, run in a subprocess. Each
    case prints a start line first, so a crash is pinned on its case; the batch then resumes
    after it in a fresh subprocess."""
    outcomes = {}
    while jobs:
        proc = run_python(setup + textwrap.dedent(f"""
            import json
            for case, arg in {jobs!r}:
                print(json.dumps({{"start": case}}), flush=True)
                try:
                    load(arg)
                    out = "loaded"
                except Exception as e:
                    out = f"{{type(e).__name__}}: {{e}}"
                print(json.dumps({{"case": case, "out": out}}), flush=True)
        """))
        started = None
        for line in proc.stdout.splitlines():
            rec = json.loads(line)
            started = rec.get("start", started)
            if "case" in rec:
                outcomes[rec["case"]] = rec["out"]
        done = [case for case, _ in jobs]
        if started is None or started in outcomes:  # finished (or died before the first case)
            if proc.returncode != 0 and started is None:
                raise AssertionError(f"batch failed to start:\n{proc.stderr[-3000:]}")
            break
        outcomes[started] = f"crashed: return code {proc.returncode}\n{proc.stderr[-3000:]}"
        jobs = jobs[done.index(started) + 1:]
    return outcomes


@pytest.mark.parametrize("case", list(PLANETOID_CASES))
def test_hostile_planetoid_file_raises_value_error(planetoid_outcomes, case):
    part, _, expected = PLANETOID_CASES[case]
    out = planetoid_outcomes[case]
    assert out.startswith("ValueError: "), out
    assert expected in out, out
    assert f"ind.cora.{part}" in out, out  # the error names the file


def test_valid_planetoid_files_still_load():
    # The crafted folders are the real Cora files but one: untouched, they must load (the
    # cases fail for their crafted file alone).
    real = require_data("planetoid")
    from linkexit_fast.datasets import load_planetoid
    s = load_planetoid("cora", real.parent)
    assert (s.graph.num_nodes, s.graph.num_undirected_edges, s.graph.num_features) == (2708, 5278, 1433)


def ogb_pickle(obj) -> bytes:
    """An OGB-style legacy ``.pt`` (what torch.save wrote, as in the ogbl-ddi split files)."""
    import io
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


OGB_CASES = {
    "array bytes too short": ({"edge": raw_array((100, 2), "i8", b"\0" * 16)},
                              "needs 1600 bytes, the file holds 16"),
    "object array over raw bytes": ({"edge": Reduce(np.ndarray, ((2, 2), np.dtype("O"), b"\x41" * 32))},
                                    "refusing to call numpy.ndarray"),
    "dtype flagged as holding objects": ({"edge": raw_array((2, 2), "i8", b"\0" * 32, dtype_flags=63)},
                                         "unsupported array dtype 'i8'"),
    "not a dict": ([1, 2], "must hold a dict of arrays, got list"),
    "no edge array": ({"edges": raw_array((1, 2), "i8", b"\0" * 16)}, "has no 'edge' array"),
    "disallowed global": ({"edge": System()}, "cannot safely load"),
}


def test_hostile_ogb_pt_files_raise_value_error(tmp_path):
    jobs = []
    for i, (case, (obj, _)) in enumerate(OGB_CASES.items()):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        (folder / "valid.pt").write_bytes(ogb_pickle(obj))
        jobs.append((case, str(folder)))
    outcomes = run_batch("from pathlib import Path\n"
                         "from linkexit_fast.datasets import _load_ogb_split\n"
                         "load = lambda folder: _load_ogb_split(Path(folder), 'valid')", jobs)
    for case, (_, expected) in OGB_CASES.items():
        out = outcomes[case]
        assert out.startswith("ValueError: ") and expected in out and "valid.pt" in out, (case, out)


def test_real_ogb_pt_matches_npz():
    folder = require_data("ogbl_ddi", "split", "target")
    from linkexit_fast.datasets import _safe_torch_load
    pt = _safe_torch_load(folder / "valid.pt")
    with np.load(folder / "valid.npz") as z:
        assert sorted(pt) == sorted(z.files)
        for k in z.files:
            assert pt[k].dtype == z[k].dtype and np.array_equal(pt[k], z[k])


def test_mutated_csr_pickles_load_consistently_or_raise(tmp_path):
    """Hypothesis flips and truncates bytes of a small valid pickled CSR: each load either gives
    a matrix that passes scipy's own full format check and densifies, or raises ValueError.
    Runs in a subprocess so a segfault fails this test instead of killing the run."""
    proc = run_python(f"""
        import pickle
        from pathlib import Path
        import numpy as np
        import scipy.sparse as sp
        from hypothesis import given, settings, strategies as st, HealthCheck
        from linkexit_fast.datasets import _planetoid_matrix, _read_planetoid_file

        rng = np.random.default_rng(0)
        dense = (rng.random((5, 7)) < 0.4) * rng.random((5, 7))
        base = pickle.dumps(sp.csr_matrix(dense.astype(np.float32)), protocol=4)
        path = Path({str(tmp_path / "ind.cora.allx")!r})

        @settings(max_examples=300, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)),
                        min_size=1, max_size=4),
               st.integers(1, len(base)))
        def check(flips, keep):
            data = bytearray(base)
            for i, b in flips:
                data[i] = b
            path.write_bytes(bytes(data[:keep]))
            try:
                m = _planetoid_matrix(_read_planetoid_file(path), path, features=True)
            except ValueError:
                return
            if sp.issparse(m):
                m.check_format(full_check=True)
                d = m.toarray()
            else:
                d = np.asarray(m)
            assert d.shape == m.shape and d.ndim == 2

        check()
        print("fuzz ok")
    """, timeout=240)
    assert proc.returncode == 0 and "fuzz ok" in proc.stdout, (
        f"return code {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


# ---------------------------------------------------------------------------- .npy node-id files
def _npy_header(shape) -> bytes:
    """A version-1 .npy header for int64 of ``shape``, padded as numpy pads it."""
    text = f"{{'descr': '<i8', 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    text += " " * (118 - len(text)) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()


@pytest.mark.parametrize("name, content, error", [
    ("non-integral ids", np.full((3, 4, 2), 0.5), "must hold integer node ids"),
    ("negative ids", np.full((3, 4, 2), -1), "negative node id -1"),
    ("object dtype", np.array([[[1, 2]]], dtype=object), "cannot read"),
    ("wrong shape", np.zeros((3, 2), np.int64), "must have shape"),
    # a header claiming 10**12 x 500 pairs over 64 bytes: refused before any allocation
    ("lying header", _npy_header((10**12, 500, 2)) + b"\0" * 64, "mmap length is greater than file size"),
    ("truncated", b"\x93NUMPY\x01\x00", "cannot read"),
])
def test_hostile_negatives_files_raise_value_error(tmp_path, name, content, error):
    from linkexit_fast.heart import load_negatives
    path = tmp_path / "negatives.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content, allow_pickle=True)  # the reader must still refuse the pickle
    with pytest.raises((ValueError, TypeError), match=error):
        load_negatives(path)
    with pytest.raises((ValueError, TypeError), match=error):  # the HeaRT loader's path to the same reader
        from linkexit_fast.datasets import read_index_npy
        read_index_npy(path, shape=(None, None, 2))
