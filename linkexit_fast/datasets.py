"""Link-prediction splits: HeaRT, Planetoid, OGB link property prediction, and a synthetic default.

Every loader returns a :class:`LinkSplit` whose ``graph`` holds the training edges only.
"""
from __future__ import annotations

import io
import math
import os
import pickle
import re
import zipfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch

from .graph import Graph, read_pair_file
from .validation import check_count, check_index_tensor

__all__ = ["LinkSplit", "Negatives", "load_heart", "load_planetoid", "load_ogbl", "synthetic", "load_dataset",
           "random_link_split", "data_root", "data_root_candidates", "find_datasets", "EdgeSet",
           "sample_negatives"]

PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"
OGB_URL = "http://snap.stanford.edu/ogb/data/linkproppred"


@dataclass(frozen=True)
class Negatives:
    """Which negatives an evaluation set is scored against; every metric is reported with it.

    Attributes:
        kind: ``"heart"`` (HeaRT's official hard negatives, ``heart_<split>_samples.npy``),
            ``"heart-sampler"`` (HeaRT-style hard negatives made by this package's sampler,
            :mod:`linkexit_fast.heart`), ``"random"`` (uniformly random non-edges, the
            "existing setting"), or ``"unknown"`` (negatives nobody described, e.g. a
            hand-built :class:`LinkSplit`).
        source: the file they were read from, or how they were drawn.
        per_positive: ``K`` of ``[P, K, 2]`` negatives; None for one shared ``[Q, 2]`` set.
        total: number of negative pairs (``P * K``, or ``Q``).
    """

    kind: str
    source: str
    per_positive: Optional[int]
    total: int

    KINDS = ("heart", "heart-sampler", "random", "unknown")

    @classmethod
    def of(cls, kind: str, source, neg: torch.Tensor) -> "Negatives":
        """The description of ``neg`` (``[P, K, 2]`` or ``[Q, 2]``) of ``kind`` from ``source``."""
        if kind not in cls.KINDS:
            raise ValueError(f"negatives kind must be one of {cls.KINDS}, got {kind!r}")
        k = int(neg.shape[1]) if neg.dim() == 3 else None
        return cls(kind, str(source), k, int(neg.numel() // 2))

    @property
    def is_heart(self) -> bool:
        """Only HeaRT's official hard negatives give numbers comparable with HeaRT's tables."""
        return self.kind == "heart"

    def label(self) -> str:
        """One line, e.g. ``random negatives (test_neg.txt), 1 shared set of 455; NOT HeaRT``."""
        shape = (f"{self.per_positive} per positive" if self.per_positive is not None
                 else f"1 shared set of {self.total:,}")
        if self.kind == "heart":
            return f"HeaRT hard negatives (official file {Path(self.source).name}), {shape}"
        if self.kind == "heart-sampler":
            return (f"HeaRT-style hard negatives from linkexit_fast's sampler ({self.source}), {shape}; "
                    f"not HeaRT's official file")
        if self.kind == "random":
            return f"random negatives ({self.source}), {shape}; NOT HeaRT"
        return f"negatives of unknown origin, {shape}; NOT HeaRT"

    def to_dict(self) -> dict:
        """JSON form: the fields plus ``label``."""
        return dict(asdict(self), label=self.label())


def _file_negatives(path) -> str:
    """The kind of a negatives file given by the user: HeaRT's official file name, or (any other
    name) a file of this package's sampler (``linkexit-fast heart-negatives``)."""
    return "heart" if re.fullmatch(r"heart_(valid|test)_samples\.npy", Path(path).name) else "heart-sampler"


@dataclass
class LinkSplit:
    """Train/valid/test positives and negatives over one training graph.

    ``valid_neg``/``test_neg`` are ``[P, K, 2]`` (HeaRT: K negatives per positive) or ``[Q, 2]``
    (the "existing setting": one shared random negative set), or ``None`` when absent;
    ``missing`` then names the file that was not there. ``negatives`` maps ``"valid"``/``"test"``
    to the :class:`Negatives` describing them (set by each loader and by :meth:`set_negatives`);
    read it through :meth:`negatives_of`, which refuses to vouch for a tensor it does not fit.
    """

    name: str
    graph: Graph
    train_pos: torch.Tensor
    valid_pos: torch.Tensor
    test_pos: torch.Tensor
    valid_neg: Optional[torch.Tensor] = None
    test_neg: Optional[torch.Tensor] = None
    missing: Dict[str, str] = field(default_factory=dict)
    negatives: Dict[str, Negatives] = field(default_factory=dict)

    @property
    def heart(self) -> bool:
        return self.valid_neg is not None and self.valid_neg.dim() == 3

    @property
    def has_heart_protocol(self) -> bool:
        """A HeaRT dataset (``heart:*``): its numbers are HeaRT numbers only with HeaRT negatives."""
        return self.name.startswith("heart:")

    def negatives_of(self, which: str) -> Optional[Negatives]:
        """The description of ``<which>_neg`` (``"valid"`` or ``"test"``), None when there are no
        negatives; kind ``"unknown"`` when none was recorded or the tensor no longer fits it."""
        neg = getattr(self, f"{which}_neg")
        if neg is None:
            return None
        desc = self.negatives.get(which)
        k = int(neg.shape[1]) if neg.dim() == 3 else None
        if desc is None or desc.per_positive != k or desc.total != neg.numel() // 2:
            return Negatives.of("unknown", "not recorded", neg)
        return desc

    def set_negatives(self, which: str, neg, kind: str, source) -> None:
        """Replace ``<which>_neg`` by ``[P, K, 2]`` negatives ``neg`` of ``kind`` (see
        :class:`Negatives`) read from or written to ``source``. Raises ValueError unless
        ``neg`` has one row per ``<which>`` positive and node ids in ``[0, num_nodes)``."""
        if which not in ("valid", "test"):
            raise ValueError(f"which must be 'valid' or 'test', got {which!r}")
        pos = getattr(self, f"{which}_pos")
        neg = check_index_tensor(neg, f"{which} negatives {source}", shape=(len(pos), None, 2),
                                 num_nodes=self.graph.num_nodes)
        setattr(self, f"{which}_neg", neg)
        self.negatives[which] = Negatives.of(kind, source, neg)
        self.missing.pop(f"heart_{which}_samples.npy", None)
        self.missing.pop(f"{which}_neg", None)

    def describe(self) -> str:
        lines = [f"dataset {self.name}: {self.graph.num_nodes:,} nodes, "
                 f"{self.graph.num_undirected_edges:,} undirected training edges, "
                 f"{self.graph.num_features} features",
                 f"  positives train/valid/test: {len(self.train_pos):,} / {len(self.valid_pos):,} / "
                 f"{len(self.test_pos):,}"]
        for which in ("valid", "test"):
            desc = self.negatives_of(which)
            lines.append(f"  {which} negatives: {desc.label() if desc else 'none'}")
        lines += [f"  missing {k}: {v}" for k, v in self.missing.items()]
        return "\n".join(lines)


def data_root_candidates(root=None) -> List[Tuple[str, Optional[Path]]]:
    """The data-root resolution chain as ``(origin, path)``, first applicable first: ``root``
    (``--data``), else ``$LINKEXIT_DATA``, else ``../shared/data`` from the working directory,
    then ``../shared/data`` beside this package's repository (a source checkout only). An
    explicit ``root`` or ``$LINKEXIT_DATA`` is used alone, never silently replaced by a default;
    a step that does not apply has path None."""
    env = os.environ.get("LINKEXIT_DATA")
    chain = [("--data", Path(root) if root else None), ("$LINKEXIT_DATA", Path(env) if env else None)]
    if root or env:
        return chain
    chain.append(("../shared/data from the working directory", Path("../shared/data")))
    repo = Path(__file__).resolve().parents[1]
    if (repo / "setup.py").exists() or (repo / "pyproject.toml").exists():
        chain.append(("../shared/data beside the linkexit_fast repository", repo.parent / "shared" / "data"))
    return chain


def data_root(root=None) -> Path:
    """The data folder: ``root``, else ``$LINKEXIT_DATA``, else the first existing default of
    :func:`data_root_candidates` (``../shared/data`` from the working directory, then beside the
    repository), else ``../shared/data`` (which errors then name, with every path tried)."""
    paths = [p for _, p in data_root_candidates(root) if p is not None]
    return next((p for p in paths if p.is_dir()), paths[0])


def data_resolution(root=None) -> str:
    """Every data root tried and why, for error messages about missing data."""
    used = data_root(root)
    lines = ["data root resolution (the first that applies is used):"]
    for origin, path in data_root_candidates(root):
        if path is None:
            state = "not given" if origin == "--data" else "not set"
        else:
            state = f"{path.resolve()} ({'exists' if path.is_dir() else 'absent'})"
            state += ", used" if path == used else ""
        lines.append(f"  {origin}: {state}")
    lines.append("Pass --data DIR (Python: root=DIR) or set LINKEXIT_DATA=DIR; `linkexit-fast datasets` "
                 "lists what a data root holds.")
    return "\n".join(lines)


def _dataset_not_found(what: str, looked: List[Path], root) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found; looked for {' and '.join(map(str, looked))}\n"
                             f"{data_resolution(root)}")


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"required dataset file not found: {path}")
    return path


# ---------------------------------------------------------------------- pickled numpy/scipy data
# Planetoid files and OGB's .pt splits are pickles of numpy arrays (and scipy CSR matrices).
# Unpickling the real numpy/scipy classes would let a file set their internals unchecked: a CSR
# whose shape exceeds its arrays, a float dtype flagged as holding objects, an object array over
# raw bytes; each of these segfaults later. So those globals load as inert stand-ins that only
# record their arguments and state, and _pickled_array / _check_sparse build real objects from
# the records after checking every field.
class _PickledDtype:
    """``numpy.dtype(spec, align, copy)`` as recorded by a pickle."""

    def __init__(self, spec=None, align=False, copy=False):
        self.spec, self.state = spec, None

    def __setstate__(self, state):
        self.state = state


class _PickledArray:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b"b")`` followed by ``__setstate__``."""

    def __init__(self, cls=None, shape=None, typecode=None):
        if cls is not _PickledNdarrayClass:
            raise pickle.UnpicklingError(f"_reconstruct of {cls!r} is not a numpy array")
        self.state = None

    def __setstate__(self, state):
        self.state = state


class _PickledNdarrayClass:
    """``numpy.ndarray``: only an argument of ``_reconstruct``; calling it (an array over a raw
    buffer, any dtype and strides) is refused."""

    def __init__(self, *args):
        raise pickle.UnpicklingError("refusing to call numpy.ndarray(...) from a pickle")


class _PickledCsr:
    """``scipy.sparse.csr_matrix`` as its pickled attribute dict, unchecked."""

    def __setstate__(self, state):
        self.state = state


# Plain number dtypes: nothing that can hold objects or fields.
_PICKLE_DTYPES = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"}


def _is_size(v) -> bool:
    return type(v) is int and v >= 0


def _short(v) -> str:
    """``repr(v)`` cut to 80 characters: hostile values can be huge."""
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _pickled_array(stub, where: str) -> np.ndarray:
    """A fresh numpy array from a :class:`_PickledArray`'s state
    ``(version, shape, dtype, fortran, bytes)``, after checking every field."""
    st = stub.state if isinstance(stub, _PickledArray) else None
    if not (isinstance(st, tuple) and len(st) == 5):
        raise ValueError(f"{where}: expected a numpy array, got {type(stub).__name__} with state "
                         f"{type(st).__name__}")
    _, shape, dt, fortran, raw = st
    spec, dstate = (dt.spec, dt.state) if isinstance(dt, _PickledDtype) else (dt, None)
    # The only dtype state numpy writes for a plain number type: version 3, a byte order, then
    # no subarray, fields, size or flags of its own.
    if not (isinstance(spec, str) and spec in _PICKLE_DTYPES and isinstance(dstate, tuple)
            and len(dstate) == 8 and dstate[1] in ("<", ">", "|", "=")
            and dstate[2:] == (None, None, None, -1, -1, 0)):
        raise ValueError(f"{where}: unsupported array dtype {_short(spec)} with state "
                         f"{_short(dstate)}; expected a plain one of {sorted(_PICKLE_DTYPES)}")
    dtype = np.dtype(spec).newbyteorder("=" if dstate[1] in "|=" else dstate[1])
    # Every array of these files is a vector or a matrix.
    if not (isinstance(shape, tuple) and len(shape) in (1, 2) and all(_is_size(s) for s in shape)):
        raise ValueError(f"{where}: array shape must be one or two non-negative ints, got {_short(shape)}")
    if isinstance(raw, str):  # a Python 2 str, decoded as latin-1 by the unpickler
        raw = raw.encode("latin-1")
    if not isinstance(raw, bytes) or not isinstance(fortran, bool):
        raise ValueError(f"{where}: malformed array data ({type(raw).__name__}, "
                         f"fortran={_short(fortran)})")
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"{where}: an array of shape {shape} and dtype {dtype} needs "
                         f"{math.prod(shape) * dtype.itemsize} bytes, the file holds {len(raw)}")
    # astype copies into native byte order: the array owns writable memory, not the file's bytes.
    arr = np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C")
    return arr.astype(dtype.newbyteorder("="))


def _check_sparse(stub: _PickledCsr, path: Path) -> sp.csr_matrix:
    """A scipy CSR matrix from a pickled one's attributes, after checking its structure: shape a
    pair of non-negative ints; ``indptr`` ``[rows + 1]`` rising from 0 to ``nnz``; ``indices`` and
    ``data`` ``[nnz]``; ``0 <= indices < cols``. Raises ValueError naming ``path`` and the field."""
    where = f"Planetoid file {path}"
    state = getattr(stub, "state", None)
    if not isinstance(state, dict):
        raise ValueError(f"{where}: CSR matrix state must be a dict, got {type(state).__name__}")
    shape = state.get("_shape", state.get("shape"))
    if not (isinstance(shape, tuple) and len(shape) == 2 and all(_is_size(s) for s in shape)):
        raise ValueError(f"{where}: CSR shape must be two non-negative ints, got {_short(shape)}")
    rows, cols = shape
    arrays = {}
    for name in ("indptr", "indices", "data"):
        if name not in state:
            raise ValueError(f"{where}: CSR matrix has no {name}")
        a = _pickled_array(state[name], f"{where}: CSR {name}")
        if a.ndim != 1 or (name != "data" and a.dtype.kind not in "iu"):
            raise ValueError(f"{where}: CSR {name} must be a 1-D {'numeric' if name == 'data' else 'integer'}"
                             f" array, got {a.dtype} of shape {a.shape}")
        arrays[name] = a.astype(np.int64) if name != "data" else a
    indptr, indices, data = arrays["indptr"], arrays["indices"], arrays["data"]
    if len(indptr) != rows + 1:
        raise ValueError(f"{where}: CSR indptr has {len(indptr)} entries; shape {shape} needs {rows + 1}")
    nnz = len(indices)
    if len(data) != nnz:
        raise ValueError(f"{where}: CSR data has {len(data)} entries, indices {nnz}")
    if indptr[0] != 0 or indptr[-1] != nnz or bool((np.diff(indptr) < 0).any()):
        raise ValueError(f"{where}: CSR indptr must rise from 0 to nnz={nnz}, got "
                         f"{int(indptr[0])} ... {int(indptr[-1])}")
    if nnz and (int(indices.min()) < 0 or int(indices.max()) >= cols):
        raise ValueError(f"{where}: CSR column indices span [{int(indices.min())}, "
                         f"{int(indices.max())}], outside [0, {cols})")
    return sp.csr_matrix((data, indices, indptr), shape=shape)


# ---------------------------------------------------------------------- Planetoid
class _PlanetoidUnpickler(pickle.Unpickler):
    """Planetoid files are pickles; only the numpy/scipy/builtin types they contain may load,
    the numpy/scipy ones as stand-ins (see above)."""

    ALLOWED = {("numpy", "ndarray"): _PickledNdarrayClass, ("numpy", "dtype"): _PickledDtype,
               ("numpy.core.multiarray", "_reconstruct"): _PickledArray,
               ("numpy._core.multiarray", "_reconstruct"): _PickledArray,
               ("scipy.sparse.csr", "csr_matrix"): _PickledCsr,
               ("scipy.sparse._csr", "csr_matrix"): _PickledCsr,
               ("collections", "defaultdict"): defaultdict,
               ("__builtin__", "list"): list, ("builtins", "list"): list}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a Planetoid file")
        return self.ALLOWED[module, name]


def _read_planetoid_file(path: Path):
    """The unpickled content of a Planetoid file, numpy/scipy objects still as stand-ins.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is truncated or refers to a global outside the allow-list.
    """
    with open(_require(path), "rb") as f:
        data = f.read()
    try:
        return _PlanetoidUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as e:  # anything a damaged or hostile stream raises, not only EOF
        raise ValueError(f"cannot read Planetoid file {path} (truncated or corrupt): "
                         f"{type(e).__name__}: {e}") from None


def _planetoid_matrix(obj, path: Path, features: bool):
    """A checked 2-D matrix from an unpickled Planetoid object: a numpy array, or (``features``)
    a scipy CSR matrix. Raises ValueError naming ``path`` and the problem."""
    if features and isinstance(obj, _PickledCsr):
        return _check_sparse(obj, path)
    if not isinstance(obj, _PickledArray):
        want = "a CSR matrix or a numpy array" if features else "a numpy array"
        raise ValueError(f"Planetoid file {path} must hold {want}, got {type(obj).__name__}")
    arr = _pickled_array(obj, f"Planetoid file {path}")
    if arr.ndim != 2:
        raise ValueError(f"Planetoid file {path} must hold a 2-D array, got shape {arr.shape}")
    return arr


def _planetoid_graph(obj, path: Path, num_nodes: int) -> np.ndarray:
    """``[2, E]`` int64 edges of a Planetoid ``graph`` file: a dict mapping each node id to a
    list of node ids, all in ``[0, num_nodes)``. Raises ValueError naming ``path`` otherwise."""
    if not isinstance(obj, dict):
        raise ValueError(f"Planetoid file {path} must hold a dict of adjacency lists, got "
                         f"{type(obj).__name__}")

    def node(v) -> bool:
        return type(v) is int and 0 <= v < num_nodes

    for k, v in obj.items():
        if not (node(k) and type(v) is list and all(node(u) for u in v)):
            raise ValueError(f"Planetoid file {path}: entry {_short(k)} -> {_short(v)} must map "
                             f"a node id to a list of node ids, ints in [0, {num_nodes})")
    src = np.fromiter((k for k, v in obj.items() for _ in v), dtype=np.int64)
    dst = np.fromiter((u for v in obj.values() for u in v), dtype=np.int64)
    return np.stack([src, dst])


def _planetoid_download(name: str, folder: Path) -> None:
    import urllib.request
    folder.mkdir(parents=True, exist_ok=True)
    for part in ["x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"]:
        target = folder / f"ind.{name}.{part}"
        if not target.exists():
            urllib.request.urlretrieve(f"{PLANETOID_URL}/ind.{name}.{part}", target)


# Dense feature matrices above this many elements (8 GiB as float32) are refused: a file that
# claims a huge shape would otherwise exhaust memory rather than raise.
_MAX_DENSE_FEATURES = 1 << 31


def _planetoid_test_index(path: Path) -> np.ndarray:
    try:
        idx = np.loadtxt(_require(path), dtype=np.int64, ndmin=1)
    except ValueError as e:
        raise ValueError(f"Planetoid file {path} must hold one integer node id a line: {e}") from None
    if idx.ndim != 1 or idx.size == 0 or int(idx.min()) < 0:
        raise ValueError(f"Planetoid file {path} must hold one non-negative node id a line, got "
                         f"shape {idx.shape}" + (f", min {int(idx.min())}" if idx.size else ""))
    return idx


def _planetoid_features_and_edges(name: str, folder: Path):
    """Features and edges in exactly the node order of PyG's ``Planetoid`` loader.

    Every file is checked, alone and against the others (rows of ``x``/``tx``/``allx`` against
    ``y``/``ty``/``ally`` and ``test.index``, equal feature and label columns, node ids in
    range); a ValueError names the file and the problem.
    """
    path = {p: folder / f"ind.{name}.{p}" for p in ("x", "tx", "allx", "y", "ty", "ally", "graph")}
    m = {p: _planetoid_matrix(_read_planetoid_file(path[p]), path[p], features=p.endswith("x"))
         for p in ("x", "tx", "allx", "y", "ty", "ally")}
    test_path = folder / f"ind.{name}.test.index"
    test_index = _planetoid_test_index(test_path)
    for f, lab in (("x", "y"), ("tx", "ty"), ("allx", "ally")):
        if m[f].shape[0] != m[lab].shape[0]:
            raise ValueError(f"Planetoid file {path[f]} has {m[f].shape[0]} rows but {path[lab]} "
                             f"has {m[lab].shape[0]}")
    for p in ("tx", "allx", "ty", "ally"):
        ref = "x" if p.endswith("x") else "y"
        if m[p].shape[1] != m[ref].shape[1]:
            raise ValueError(f"Planetoid file {path[p]} has {m[p].shape[1]} columns but "
                             f"{path[ref]} has {m[ref].shape[1]}")
    if len(test_index) != m["tx"].shape[0]:
        raise ValueError(f"Planetoid file {test_path} lists {len(test_index)} test nodes but "
                         f"{path['tx']} has {m['tx'].shape[0]} rows")
    sorted_test = np.sort(test_index)
    # CiteSeer has isolated test nodes without features: PyG pads them with zero rows.
    tx_rows = int(sorted_test[-1] - sorted_test[0]) + 1 if name == "citeseer" else len(test_index)
    num_nodes = m["allx"].shape[0] + tx_rows
    if num_nodes * m["x"].shape[1] > _MAX_DENSE_FEATURES:
        raise ValueError(f"Planetoid files {path['allx']} and {path['tx']} describe a "
                         f"{num_nodes} x {m['x'].shape[1]} feature matrix, more than "
                         f"{_MAX_DENSE_FEATURES} elements")
    if int(sorted_test[-1]) >= num_nodes:
        raise ValueError(f"Planetoid file {test_path} holds node id {int(sorted_test[-1])}, out of "
                         f"range for {num_nodes} nodes")
    tx, allx = (a.toarray() if sp.issparse(a) else a for a in (m["tx"], m["allx"]))
    if name == "citeseer":
        full = np.zeros((tx_rows, tx.shape[1]), dtype=tx.dtype)
        full[sorted_test - sorted_test[0]] = tx
        tx = full
    feats = np.concatenate([allx, tx]).astype(np.float32)
    feats[test_index] = feats[sorted_test]
    edges = _planetoid_graph(_read_planetoid_file(path["graph"]), path["graph"], num_nodes)
    return feats, edges, num_nodes


def load_planetoid(name: str, root=None, download: bool = False) -> LinkSplit:
    """Planetoid Cora/CiteSeer/PubMed as a graph with features (all edges; no split).

    ``train_pos`` holds every undirected edge; ``valid_pos``/``test_pos`` are empty: use a HeaRT
    split for evaluation.
    """
    name = name.lower()
    folder = data_root(root) / "planetoid" if (data_root(root) / "planetoid").is_dir() else data_root(root)
    if download:
        _planetoid_download(name, folder)
    if not (folder / f"ind.{name}.x").exists():
        base = data_root(root)
        raise _dataset_not_found(f"Planetoid files ind.{name}.*",
                                 [base / "planetoid" / f"ind.{name}.x", base / f"ind.{name}.x"], root)
    feats, edges, n = _planetoid_features_and_edges(name, folder)
    g = Graph.from_edge_index(edges, num_nodes=n, x=feats)
    empty = torch.empty(0, 2, dtype=torch.int64)
    return LinkSplit(f"planetoid:{name}", g, g.undirected_edges(), empty, empty)


# ---------------------------------------------------------------------- HeaRT
def read_index_npy(path, shape, num_nodes: Optional[int] = None) -> torch.Tensor:
    """Node ids from a ``.npy`` file (HeaRT's negatives, or this package's): int64 of ``shape``
    (``None`` = any size), ids in ``[0, num_nodes)``.

    Never unpickles, and maps the file before reading it, so a header that claims more than the
    file holds is refused before anything is allocated. Raises ``FileNotFoundError``, or
    ``ValueError``/``TypeError`` naming the file and the problem (not an array of integral ids,
    a wrong shape, an id out of range).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"node-id file not found: {path}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        arr = np.array(arr)  # a copy no larger than the file
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"cannot read {path} as a .npy array of node ids: {e}") from None
    return check_index_tensor(arr, path, shape=shape, num_nodes=num_nodes)


def load_heart(name: str, root=None) -> LinkSplit:
    """The HeaRT ``dataset/<name>/`` layout; features from ``gnn_feature`` or the Planetoid files."""
    name = name.lower()
    base = data_root(root)
    folder = base / "heart" / name if (base / "heart" / name).is_dir() else base / name
    if not folder.is_dir():
        raise _dataset_not_found("HeaRT dataset folder", [base / "heart" / name, base / name], root)
    pos = {s: read_pair_file(_require(folder / f"{s}_pos.txt")) for s in ("train", "valid", "test")}
    missing: Dict[str, str] = {}
    negs, kinds = {}, {}
    for s in ("valid", "test"):
        hard = folder / f"heart_{s}_samples.npy"
        rnd = folder / f"{s}_neg.txt"
        if hard.exists():
            negs[s] = read_index_npy(hard, shape=(len(pos[s]), None, 2))
            kinds[s] = Negatives.of("heart", hard, negs[s])
        elif rnd.exists():
            negs[s] = read_pair_file(rnd)
            kinds[s] = Negatives.of("random", rnd.name, negs[s])
            missing[f"heart_{s}_samples.npy"] = f"{hard} not found; using random negatives {rnd.name}"
        else:
            negs[s] = None
            missing[f"{s}_neg"] = f"neither {hard.name} nor {rnd.name} in {folder}"
    feats = None
    gnn_feature = folder / "gnn_feature"
    planetoid = base / "planetoid"
    if gnn_feature.exists():
        feats = torch.load(gnn_feature, weights_only=True)
        feats = feats.get("entity_embedding", feats) if isinstance(feats, dict) else feats
    elif (planetoid / f"ind.{name}.x").exists():
        try:
            feats, _, _ = _planetoid_features_and_edges(name, planetoid)
        except FileNotFoundError as e:
            missing["features"] = str(e)
    else:
        missing["features"] = f"neither {gnn_feature} nor {planetoid}/ind.{name}.x found"
    n = int(feats.shape[0]) if feats is not None else int(max(int(p.max()) for p in pos.values() if len(p))) + 1
    for s, p in pos.items():
        check_index_tensor(p, f"{s}_pos of {folder}", shape=(None, 2), num_nodes=n)
    for s, neg in negs.items():  # ids in range, now that the node count is known
        if neg is not None:
            check_index_tensor(neg, f"{s} negatives of {folder}", shape=(None,) * (neg.dim() - 1) + (2,),
                               num_nodes=n)
    g = Graph.from_edge_index(pos["train"].T, num_nodes=n, x=feats)
    return LinkSplit(f"heart:{name}", g, pos["train"], pos["valid"], pos["test"],
                     negs["valid"], negs["test"], missing, kinds)


# ---------------------------------------------------------------------- OGB
def _safe_torch_load(path: Path) -> dict:
    """An OGB ``.pt`` split: a dict of numpy arrays, loaded with ``weights_only`` and numpy's
    globals mapped to the checked stand-ins of the Planetoid reader, so no numpy object is built
    from the file's unchecked state. Raises ValueError naming ``path`` when it is truncated,
    refers to another global, or holds anything but a dict of well-formed arrays."""
    # The files name numpy's legacy module path; numpy 2 moved it, so register both names.
    allowed = [(_PickledArray, "numpy.core.multiarray._reconstruct"),
               (_PickledArray, "numpy._core.multiarray._reconstruct"),
               (_PickledNdarrayClass, "numpy.ndarray"), (_PickledDtype, "numpy.dtype")]
    try:
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, weights_only=True)
    except Exception as e:  # truncated file or a global outside the allow-list
        raise ValueError(f"cannot safely load {path}: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} must hold a dict of arrays, got {type(obj).__name__}")
    return {k: _pickled_array(v, f"{path} [{k!r}]") if isinstance(v, _PickledArray) else v
            for k, v in obj.items()}


def _load_ogb_split(folder: Path, part: str) -> Optional[dict]:
    npz, pt = folder / f"{part}.npz", folder / f"{part}.pt"
    if npz.exists():
        try:
            with np.load(npz, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise ValueError(f"cannot read {npz} (truncated or corrupt): {e}") from None
    elif pt.exists():
        out = _safe_torch_load(pt)
    else:
        return None
    if "edge" not in out:
        raise ValueError(f"{npz if npz.exists() else pt} has no 'edge' array (keys: {sorted(map(str, out))})")
    return out


def load_ogbl(name: str, root=None, download: bool = False) -> LinkSplit:
    """The OGB ``linkproppred`` folder layout (``raw/edge.csv.gz``, ``split/<type>/*.{npz,pt}``)."""
    short = name.lower().replace("ogbl-", "").replace("ogbl_", "")
    base = data_root(root)
    folder = next((p for p in (base / f"ogbl_{short}", base / f"ogbl-{short}", base) if (p / "raw").is_dir()),
                  base / f"ogbl_{short}")
    if download and not (folder / "raw").is_dir():
        _ogb_download(short, folder)
    if not (folder / "raw").is_dir():
        raise _dataset_not_found("OGB dataset folder",
                                 [base / f"ogbl_{short}" / "raw", base / f"ogbl-{short}" / "raw", base / "raw"], root)
    raw = folder / "raw"
    n_file = _require(raw / "num-node-list.csv.gz")
    import gzip
    with gzip.open(n_file, "rt") as f:
        num_nodes = int(f.read().split()[0])
    split_dirs = sorted(p for p in (folder / "split").iterdir() if p.is_dir()) if (folder / "split").is_dir() else []
    if not split_dirs:
        raise FileNotFoundError(f"no split folder under {folder / 'split'}")
    sdir = split_dirs[0]
    parts = {p: _load_ogb_split(sdir, p) for p in ("train", "valid", "test")}
    missing = {}
    if parts["train"] is None:
        train = read_pair_file(_require(raw / "edge.csv.gz"))
        missing["train"] = f"no train split in {sdir}: training positives are raw/edge.csv.gz"
    else:
        train = torch.as_tensor(parts["train"]["edge"])
    out, kinds = {}, {}
    for s in ("valid", "test"):
        if parts[s] is None:
            raise FileNotFoundError(f"split file not found: {sdir / (s + '.npz')} or .pt")
        out[s] = check_index_tensor(parts[s]["edge"], f"{s} edge of {sdir}", (None, 2), num_nodes)
        out[s + "_neg"] = (check_index_tensor(parts[s]["edge_neg"], f"{s} edge_neg of {sdir}",
                                              (None, 2), num_nodes) if "edge_neg" in parts[s] else None)
        if out[s + "_neg"] is not None:  # OGB's official evaluation: one shared random set
            kinds[s] = Negatives.of("random", f"OGB {sdir.name}/{s} edge_neg", out[s + "_neg"])
    train = check_index_tensor(train, "train edges", (None, 2), num_nodes)
    g = Graph.from_edge_index(train.T, num_nodes=num_nodes)
    return LinkSplit(f"ogbl:{short}", g, train, out["valid"], out["test"], out["valid_neg"],
                     out["test_neg"], missing, kinds)


def _ogb_download(short: str, folder: Path) -> None:
    import urllib.request
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f"{short}.zip"
    urllib.request.urlretrieve(f"{OGB_URL}/{short}.zip", tmp)
    with zipfile.ZipFile(tmp) as z:
        z.extractall(folder.parent)
    extracted = folder.parent / short
    if extracted.exists() and not folder.exists():
        extracted.rename(folder)
    tmp.unlink()


# ---------------------------------------------------------------------- random negatives
class EdgeSet:
    """The undirected edges of a graph on ``num_nodes`` nodes, as sorted int64 keys
    ``min(u, v) * num_nodes + max(u, v)`` for vectorised membership tests.

    ``edges`` is ``[E, 2]`` (tensor, array or list) in either direction, duplicates allowed;
    self-loops are dropped (a self-pair is never a negative anyway). Raises ValueError for ids
    outside ``[0, num_nodes)``.
    """

    def __init__(self, edges, num_nodes: int):
        self.num_nodes = check_count(num_nodes, "num_nodes", minimum=1)
        e = check_index_tensor(edges, "edges", shape=(None, 2), num_nodes=self.num_nodes).numpy()
        u, v = e[:, 0], e[:, 1]
        keep = u != v
        # np.sort and a mask, not np.unique: numpy 2.4's unique took 2.5 s on ogbl-ddi's 1M edges.
        keys = np.sort(self.key(u[keep], v[keep]))
        self.keys = keys[_run_starts(keys)]

    def __len__(self) -> int:
        return len(self.keys)

    def key(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.minimum(u, v).astype(np.int64) * self.num_nodes + np.maximum(u, v)

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """bool array: whether each pair ``(u[i], v[i])`` is an edge (either direction)."""
        return _in_sorted(self.key(u, v), self.keys)


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """bool mask of the first entry of each run of equal keys."""
    first = np.ones(len(sorted_keys), dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return first


def _in_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """bool mask: whether each of ``keys`` is in ``sorted_keys`` (fastest for sorted ``keys``)."""
    if len(sorted_keys) == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


# Pairs drawn per round of rejection sampling (about 200 MB of temporaries), and the rounds
# allowed: enough for any request whose expected number of draws fits in half of the budget.
_DRAWS_PER_ROUND = 1 << 22
_MAX_ROUNDS = 64


def sample_negatives(exclude: EdgeSet, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` uniformly random non-edges: int64 ``[count, 2]``.

    Each row is an unordered pair ``{u, v}`` with ``u != v`` that is not in ``exclude``, in a
    random orientation. Rows are distinct as unordered pairs: a sample without replacement, as
    PyG's ``negative_sampling`` returns within one call (separate calls may repeat pairs).
    Rejection sampling on the sorted keys: only rejected draws are redrawn, in a bounded number
    of rounds; the result depends on ``rng``'s state only.

    Raises:
        ValueError: ``count`` exceeds the number of non-edges, or the graph is so dense that
            rejection sampling would need more than ``_MAX_ROUNDS * _DRAWS_PER_ROUND / 2``
            draws in expectation.
    """
    count = check_count(count, "count")
    n = exclude.num_nodes
    pairs = n * (n - 1) // 2
    free = pairs - len(exclude)
    if count > free:
        raise ValueError(f"cannot draw {count} distinct negatives: a graph of {n} nodes and "
                         f"{len(exclude)} edges has only {free} non-edges")
    # Expected draws to collect `count` distinct non-edges of `free`, each draw hitting one with
    # probability free / pairs: pairs * (H(free) - H(free - count)).
    if count and pairs * math.log((free + 0.5) / (free - count + 0.5)) > _MAX_ROUNDS * _DRAWS_PER_ROUND / 2:
        raise ValueError(f"cannot draw {count} distinct negatives: a graph of {n} nodes and "
                         f"{len(exclude)} edges has only {free} non-edges, too few to find by "
                         f"rejection sampling")
    found = np.empty(0, dtype=np.int64)  # sorted keys of the negatives so far
    out = []
    for _ in range(_MAX_ROUNDS):
        need = count - len(found)
        if need == 0:
            break
        # Enough draws for about 1.2x the missing negatives at the current acceptance rate.
        m = min(_DRAWS_PER_ROUND, int(need * pairs / (free - len(found)) * 1.2) + 64)
        u = rng.integers(0, n, m)
        v = rng.integers(0, n - 1, m)
        v += v >= u  # uniform over v != u
        key = exclude.key(u, v)
        # Sorted lookups are cache-friendly (5x faster on ogbl-ddi); the stable sort keeps the
        # first draw of a repeated pair first, so the result follows the draw order.
        order = np.argsort(key, kind="stable")
        ks = key[order]
        new = _run_starts(ks) & ~_in_sorted(ks, exclude.keys) & ~_in_sorted(ks, found)
        ok = np.sort(order[new])[:need]
        out.append(np.stack([u[ok], v[ok]], 1))
        found = np.sort(np.concatenate([found, key[ok]]))
    if len(found) < count:
        raise ValueError(f"found only {len(found)} of {count} distinct negatives in "
                         f"{_MAX_ROUNDS} rounds of {_DRAWS_PER_ROUND} draws: the graph of {n} "
                         f"nodes and {len(exclude)} edges is too dense")
    return np.concatenate(out) if out else np.empty((0, 2), dtype=np.int64)


# ---------------------------------------------------------------------- synthetic
def synthetic(num_nodes: int = 2000, avg_degree: float = 10.0, num_features: int = 32,
              num_communities: int = 8, seed: int = 0, mixing: float = 0.1) -> LinkSplit:
    """Degree-corrected stochastic block model with community-correlated features.

    Each node has a community and a Pareto-distributed degree propensity. Edges are sampled in
    O(E): pick an endpoint by propensity, keep its community with probability ``1 - mixing``, and
    pick the other endpoint by propensity inside the chosen community. Features are a community
    centroid plus noise, so both structure and features predict links. 85/5/10 split of the
    edges, with as many uniformly random non-edges as positives as valid and test negatives
    (:func:`sample_negatives`).
    """
    if num_nodes < 2 or avg_degree <= 0 or num_features < 1 or num_communities < 1:
        raise ValueError(f"synthetic needs num_nodes >= 2, avg_degree > 0, num_features >= 1 and "
                         f"num_communities >= 1; got {num_nodes}, {avg_degree}, {num_features}, "
                         f"{num_communities}")
    rng = np.random.default_rng(seed)
    comm = rng.integers(0, num_communities, num_nodes)
    theta = rng.pareto(2.5, num_nodes) + 1.0
    order = np.argsort(comm, kind="stable")
    counts = np.bincount(comm, minlength=num_communities)
    starts = np.concatenate([[0], np.cumsum(counts)])
    cum_in = np.cumsum(theta[order])  # propensity prefix sums, community-contiguous
    cum_all = np.cumsum(theta)

    m = int(num_nodes * avg_degree / 2)
    # Oversample a little: duplicates and self-loops are removed afterwards.
    m_draw = int(m * 1.05) + 16
    u = np.searchsorted(cum_all, rng.random(m_draw) * cum_all[-1], side="right")
    same = rng.random(m_draw) >= mixing
    c = np.where(same, comm[u], rng.integers(0, num_communities, m_draw))
    c = np.where(counts[c] > 0, c, comm[u])
    lo = np.where(starts[c] > 0, cum_in[starts[c] - 1], 0.0)
    hi = cum_in[starts[c + 1] - 1]
    pos = np.searchsorted(cum_in, lo + rng.random(m_draw) * (hi - lo), side="right")
    v = order[np.minimum(pos, starts[c + 1] - 1)]
    keep = u != v
    u, v = np.minimum(u[keep], v[keep]), np.maximum(u[keep], v[keep])
    key = np.unique(u.astype(np.int64) * num_nodes + v)
    key = key[rng.permutation(len(key))][:m]
    edges = np.stack([key // num_nodes, key % num_nodes], 1)

    centroids = rng.standard_normal((num_communities, num_features)).astype(np.float32)
    x = centroids[comm] + rng.standard_normal((num_nodes, num_features), dtype=np.float32) * 1.5

    return _split_edges(f"synthetic:{num_nodes}", edges, num_nodes, torch.from_numpy(x), rng)


def _split_edges(name: str, edges: np.ndarray, num_nodes: int, x: Optional[torch.Tensor],
                 rng: np.random.Generator, valid: float = 0.05, test: float = 0.10,
                 other_edges: Optional[np.ndarray] = None) -> LinkSplit:
    """Test, valid, then train positives from already shuffled ``edges`` ``[E, 2]``, with as many
    uniformly random negatives as positives for valid and test (the "existing setting").

    The negatives are distinct non-edges of the whole dataset: of ``edges`` (every split's
    positives) and ``other_edges`` ``[E', 2]`` (true edges left out of this split), never
    self-pairs (see :func:`sample_negatives`, which raises when the graph is too dense).
    """
    n_e = len(edges)
    n_val, n_test = int(valid * n_e), int(test * n_e)
    test_pos, valid_pos, train_pos = edges[:n_test], edges[n_test:n_test + n_val], edges[n_test + n_val:]
    known = edges if other_edges is None else np.concatenate([edges, other_edges])
    neg = sample_negatives(EdgeSet(known, num_nodes), n_val + n_test, rng)
    g = Graph.from_edge_index(torch.from_numpy(train_pos.T.copy()), num_nodes=num_nodes, x=x)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    valid_neg, test_neg = t(neg[:n_val]), t(neg[n_val:])
    how = f"drawn uniformly for {name}"
    return LinkSplit(name, g, t(train_pos), t(valid_pos), t(test_pos), valid_neg, test_neg,
                     negatives={"valid": Negatives.of("random", how, valid_neg),
                                "test": Negatives.of("random", how, test_neg)})


def random_link_split(split: LinkSplit, valid: float = 0.05, test: float = 0.10,
                      seed: int = 0) -> LinkSplit:
    """A seeded random split of ``split.train_pos`` into train/valid/test positives (HeaRT's
    85/5/10 for Cora by default), for graphs that come without one. It is not HeaRT's own split
    (those files are not in the data folder): results on it are comparable with each other only.

    Its random negatives avoid every positive of ``split`` (``valid_pos`` and ``test_pos``
    included, though the new split drops them) and self-pairs."""
    if not (0 < valid and 0 < test and valid + test < 1):
        raise ValueError(f"valid and test must be positive shares summing below 1; got {valid}, {test}")
    rng = np.random.default_rng(seed)
    edges = split.train_pos.numpy()[rng.permutation(len(split.train_pos))]
    held_out = torch.cat([split.valid_pos.reshape(-1, 2), split.test_pos.reshape(-1, 2)]).numpy()
    return _split_edges(f"{split.name}:random{seed}", edges, split.graph.num_nodes, split.graph.x, rng,
                        valid, test, held_out)


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _gz_int(path: Path) -> Optional[int]:
    import gzip
    try:
        with gzip.open(path, "rt") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _planetoid_absent(folder: Path, name: str) -> List[str]:
    """The Planetoid files of ``name`` missing from ``folder``."""
    parts = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
    return [f"ind.{name}.{q}" for q in parts if not (folder / f"ind.{name}.{q}").exists()]


def find_datasets(root=None) -> List[dict]:
    """What the data root holds, cheaply (file listings, line counts, OGB's count files; no
    dataset is loaded): one dict per dataset with ``spec`` (the name :func:`load_dataset` takes),
    ``folder``, ``facts`` (counts that were cheap to get) and ``lacks`` (what it does not have:
    features, HeaRT valid/test negatives, ...). The synthetic default is always listed."""
    base = data_root(root)
    found: List[dict] = []
    heart_dirs = sorted(p for p in (base / "heart").glob("*") if (p / "train_pos.txt").exists()) + \
        sorted(p for p in base.glob("*") if (p / "train_pos.txt").exists())
    for folder in heart_dirs:
        name = folder.name.lower()
        counts = {s: _count_lines(folder / f"{s}_pos.txt") for s in ("train", "valid", "test")
                  if (folder / f"{s}_pos.txt").exists()}
        lacks = [f"{s} positives" for s in ("valid", "test") if s not in counts]
        if not ((folder / "gnn_feature").exists() or not _planetoid_absent(base / "planetoid", name)):
            lacks.append("features")
        for s in ("valid", "test"):
            if not (folder / f"heart_{s}_samples.npy").exists():
                rnd = (folder / f"{s}_neg.txt").exists()
                lacks.append(f"HeaRT {s} negatives (heart_{s}_samples.npy)"
                             + ("; random ones are used" if rnd else "; no negatives at all"))
        found.append({"spec": f"heart:{name}", "folder": str(folder), "lacks": lacks,
                      "facts": "positives train/valid/test " + " / ".join(f"{c:,}" for c in counts.values())})
    planetoid = base / "planetoid" if (base / "planetoid").is_dir() else base
    for name in sorted({p.name.split(".")[1] for p in planetoid.glob("ind.*.*")}):
        absent = _planetoid_absent(planetoid, name)
        found.append({"spec": f"planetoid:{name}", "folder": str(planetoid),
                      "facts": "no link split: a seeded 85/5/10 random one is made",
                      "lacks": ([f"{', '.join(absent)} (cannot load)"] if absent else [])
                      + ["HeaRT split and negatives (random negatives are used)"]})
    for folder in sorted(p for p in base.glob("ogbl[_-]*") if (p / "raw").is_dir()):
        short = folder.name[5:]
        nodes, edges = _gz_int(folder / "raw" / "num-node-list.csv.gz"), _gz_int(folder / "raw" / "num-edge-list.csv.gz")
        lacks = [] if (folder / "raw" / "node-feat.csv.gz").exists() else ["features"]
        for s in ("valid", "test"):
            files = list((folder / "split").glob(f"*/{s}.npz"))
            if files:
                with np.load(files[0], allow_pickle=False) as z:
                    if "edge_neg" not in z.files:
                        lacks.append(f"official {s} negatives")
            elif not list((folder / "split").glob(f"*/{s}.pt")):
                lacks.append(f"{s} split")
        lacks.append("HeaRT negatives (OGB's official random ones are used)")
        facts = ", ".join(f"{v:,} {k}" for k, v in (("nodes", nodes), ("training edges", edges)) if v is not None)
        found.append({"spec": f"ogbl:{short}", "folder": str(folder), "facts": facts, "lacks": lacks})
    found.append({"spec": "synthetic[:N]", "folder": "(built in)", "lacks": [],
                  "facts": "degree-corrected SBM with features, N=2000 by default; random negatives"})
    return found


def load_dataset(spec: str, root=None) -> LinkSplit:
    """Resolve a dataset name: ``heart:<name>``, ``planetoid:<name>`` (with
    :func:`random_link_split`), ``ogbl:<name>``, ``synthetic[:N]`` or a path to a HeaRT-layout
    folder."""
    kind, _, arg = spec.partition(":")
    if kind == "heart":
        return load_heart(arg, root)
    if kind == "planetoid":  # Planetoid has no link split: a seeded 85/5/10 one
        return random_link_split(load_planetoid(arg, root))
    if kind == "ogbl":
        return load_ogbl(arg, root)
    if kind == "synthetic":
        n = int(arg) if arg else 2000
        return synthetic(num_nodes=n)
    p = Path(spec)
    if p.is_dir():
        if (p / "train_pos.txt").exists():
            return load_heart(p.name, p.parent)
        if (p / "raw").is_dir():
            return load_ogbl(p.name, p.parent)
        raise FileNotFoundError(f"{p} holds neither train_pos.txt (HeaRT layout) nor raw/ (OGB layout)")
    raise ValueError(f"unknown dataset {spec!r}: use heart:<name>, planetoid:<name>, ogbl:<name>, "
                     f"synthetic[:N] or a dataset folder")
