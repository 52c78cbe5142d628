"""Link-prediction splits: HeaRT, Planetoid, OGB link property prediction, and a synthetic default.

Every loader returns a :class:`LinkSplit` whose ``graph`` holds the training edges only.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from .graph import Graph, read_pair_file
from .validation import check_index_tensor

__all__ = ["LinkSplit", "load_heart", "load_planetoid", "load_ogbl", "synthetic", "load_dataset",
           "random_link_split", "data_root"]

PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"
OGB_URL = "http://snap.stanford.edu/ogb/data/linkproppred"


@dataclass
class LinkSplit:
    """Train/valid/test positives and negatives over one training graph.

    ``valid_neg``/``test_neg`` are ``[P, K, 2]`` (HeaRT: K negatives per positive) or ``[Q, 2]``
    (the "existing setting": one shared random negative set), or ``None`` when absent;
    ``missing`` then names the file that was not there.
    """

    name: str
    graph: Graph
    train_pos: torch.Tensor
    valid_pos: torch.Tensor
    test_pos: torch.Tensor
    valid_neg: Optional[torch.Tensor] = None
    test_neg: Optional[torch.Tensor] = None
    missing: Dict[str, str] = field(default_factory=dict)

    @property
    def heart(self) -> bool:
        return self.valid_neg is not None and self.valid_neg.dim() == 3

    def describe(self) -> str:
        def shape(t):
            return "missing" if t is None else "x".join(str(s) for s in t.shape)
        lines = [f"dataset {self.name}: {self.graph.num_nodes:,} nodes, {self.graph.num_edges:,} "
                 f"training edges, {self.graph.num_features} features",
                 f"  positives train/valid/test: {len(self.train_pos):,} / {len(self.valid_pos):,} / "
                 f"{len(self.test_pos):,}",
                 f"  negatives valid {shape(self.valid_neg)}, test {shape(self.test_neg)}"]
        lines += [f"  missing {k}: {v}" for k, v in self.missing.items()]
        return "\n".join(lines)


def data_root(root=None) -> Path:
    """The data folder: ``root``, else ``$LINKEXIT_DATA``, else ``../shared/data``."""
    return Path(root or os.environ.get("LINKEXIT_DATA", "../shared/data"))


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"required dataset file not found: {path}")
    return path


# ---------------------------------------------------------------------- Planetoid
class _PlanetoidUnpickler(pickle.Unpickler):
    """Planetoid files are pickles; only the numpy/scipy/builtin types they contain may load."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("scipy.sparse.csr", "csr_matrix"),
               ("scipy.sparse._csr", "csr_matrix"), ("collections", "defaultdict"),
               ("__builtin__", "list"), ("builtins", "list")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a Planetoid file")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        if module == "__builtin__":
            module = "builtins"
        if module == "scipy.sparse.csr":
            module = "scipy.sparse"
        return super().find_class(module, name)


def _read_planetoid_file(path: Path):
    with open(_require(path), "rb") as f:
        data = f.read()
    try:
        return _PlanetoidUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (EOFError, pickle.UnpicklingError, ValueError) as e:
        raise ValueError(f"cannot read Planetoid file {path} (truncated or corrupt): {e}") from None


def _planetoid_download(name: str, folder: Path) -> None:
    import urllib.request
    folder.mkdir(parents=True, exist_ok=True)
    for part in ["x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"]:
        target = folder / f"ind.{name}.{part}"
        if not target.exists():
            urllib.request.urlretrieve(f"{PLANETOID_URL}/ind.{name}.{part}", target)


def _planetoid_features_and_edges(name: str, folder: Path):
    """Features and edges in exactly the node order of PyG's ``Planetoid`` loader."""
    x, tx, allx = (_read_planetoid_file(folder / f"ind.{name}.{p}") for p in ("x", "tx", "allx"))
    graph = _read_planetoid_file(folder / f"ind.{name}.graph")
    test_index = np.loadtxt(_require(folder / f"ind.{name}.test.index"), dtype=np.int64)
    tx, allx = (m.toarray() if hasattr(m, "toarray") else np.asarray(m) for m in (tx, allx))
    sorted_test = np.sort(test_index)
    if name == "citeseer":
        # CiteSeer has isolated test nodes without features: PyG pads them with zero rows.
        full = np.zeros((sorted_test[-1] - sorted_test[0] + 1, tx.shape[1]), dtype=tx.dtype)
        full[sorted_test - sorted_test[0]] = tx
        tx = full
    feats = np.concatenate([allx, tx]).astype(np.float32)
    feats[test_index] = feats[sorted_test]
    num_nodes = feats.shape[0]
    src = np.concatenate([np.full(len(v), k, dtype=np.int64) for k, v in graph.items()])
    dst = np.concatenate([np.asarray(v, dtype=np.int64) for v in graph.values()])
    return feats, np.stack([src, dst]), num_nodes


def load_planetoid(name: str, root=None, download: bool = False) -> LinkSplit:
    """Planetoid Cora/CiteSeer/PubMed as a graph with features (all edges; no split).

    ``train_pos`` holds every undirected edge; ``valid_pos``/``test_pos`` are empty: use a HeaRT
    split for evaluation.
    """
    name = name.lower()
    folder = data_root(root) / "planetoid" if (data_root(root) / "planetoid").is_dir() else data_root(root)
    if download:
        _planetoid_download(name, folder)
    feats, edges, n = _planetoid_features_and_edges(name, folder)
    g = Graph.from_edge_index(edges, num_nodes=n, x=feats)
    empty = torch.empty(0, 2, dtype=torch.int64)
    return LinkSplit(f"planetoid:{name}", g, g.undirected_edges(), empty, empty)


# ---------------------------------------------------------------------- HeaRT
def load_heart(name: str, root=None) -> LinkSplit:
    """The HeaRT ``dataset/<name>/`` layout; features from ``gnn_feature`` or the Planetoid files."""
    name = name.lower()
    base = data_root(root)
    folder = base / "heart" / name if (base / "heart" / name).is_dir() else base / name
    if not folder.is_dir():
        raise FileNotFoundError(f"HeaRT dataset folder not found: {folder}")
    pos = {s: read_pair_file(_require(folder / f"{s}_pos.txt")) for s in ("train", "valid", "test")}
    missing: Dict[str, str] = {}
    negs = {}
    for s in ("valid", "test"):
        hard = folder / f"heart_{s}_samples.npy"
        rnd = folder / f"{s}_neg.txt"
        if hard.exists():
            arr = np.load(hard, allow_pickle=False)
            negs[s] = check_index_tensor(arr, str(hard), shape=(len(pos[s]), None, 2))
        elif rnd.exists():
            negs[s] = read_pair_file(rnd)
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
    g = Graph.from_edge_index(pos["train"].T, num_nodes=n, x=feats)
    return LinkSplit(f"heart:{name}", g, pos["train"], pos["valid"], pos["test"],
                     negs["valid"], negs["test"], missing)


# ---------------------------------------------------------------------- OGB
def _safe_torch_load(path: Path):
    """OGB's ``.pt`` splits pickle numpy arrays: allow-list exactly numpy's reconstruction globals."""
    recon = (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct  # numpy 2 / 1
    # The files name numpy's legacy module path; numpy 2 moved it, so register both names.
    allowed = [np.ndarray, np.dtype, recon, (recon, "numpy.core.multiarray._reconstruct"),
               (recon, "numpy._core.multiarray._reconstruct")]
    allowed += [type(np.dtype(t)) for t in (np.int64, np.int32, np.float32, np.float64)]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, weights_only=True)
    except Exception as e:  # truncated file or a global outside the allow-list
        raise ValueError(f"cannot safely load {path}: {e}") from None


def _load_ogb_split(folder: Path, part: str) -> Optional[dict]:
    npz, pt = folder / f"{part}.npz", folder / f"{part}.pt"
    if npz.exists():
        try:
            with np.load(npz, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise ValueError(f"cannot read {npz} (truncated or corrupt): {e}") from None
    if pt.exists():
        return _safe_torch_load(pt)
    return None


def load_ogbl(name: str, root=None, download: bool = False) -> LinkSplit:
    """The OGB ``linkproppred`` folder layout (``raw/edge.csv.gz``, ``split/<type>/*.{npz,pt}``)."""
    short = name.lower().replace("ogbl-", "").replace("ogbl_", "")
    base = data_root(root)
    folder = next((p for p in (base / f"ogbl_{short}", base / f"ogbl-{short}", base) if (p / "raw").is_dir()),
                  base / f"ogbl_{short}")
    if download and not (folder / "raw").is_dir():
        _ogb_download(short, folder)
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
    out = {}
    for s in ("valid", "test"):
        if parts[s] is None:
            raise FileNotFoundError(f"split file not found: {sdir / (s + '.npz')} or .pt")
        out[s] = check_index_tensor(parts[s]["edge"], f"{s} edge of {sdir}", (None, 2), num_nodes)
        out[s + "_neg"] = (check_index_tensor(parts[s]["edge_neg"], f"{s} edge_neg of {sdir}",
                                              (None, 2), num_nodes) if "edge_neg" in parts[s] else None)
    train = check_index_tensor(train, "train edges", (None, 2), num_nodes)
    g = Graph.from_edge_index(train.T, num_nodes=num_nodes)
    return LinkSplit(f"ogbl:{short}", g, train, out["valid"], out["test"], out["valid_neg"],
                     out["test_neg"], missing)


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


# ---------------------------------------------------------------------- synthetic
def synthetic(num_nodes: int = 2000, avg_degree: float = 10.0, num_features: int = 32,
              num_communities: int = 8, seed: int = 0, mixing: float = 0.1) -> LinkSplit:
    """Degree-corrected stochastic block model with community-correlated features.

    Each node has a community and a Pareto-distributed degree propensity. Edges are sampled in
    O(E): pick an endpoint by propensity, keep its community with probability ``1 - mixing``, and
    pick the other endpoint by propensity inside the chosen community. Features are a community
    centroid plus noise, so both structure and features predict links. 85/5/10 split of the
    edges, with as many uniformly random negatives as positives for valid and test.
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
                 rng: np.random.Generator, valid: float = 0.05, test: float = 0.10) -> LinkSplit:
    """Test, valid, then train positives from already shuffled ``edges`` ``[E, 2]``, with as many
    uniformly random negatives as positives for valid and test (the "existing setting")."""
    n_e = len(edges)
    n_val, n_test = int(valid * n_e), int(test * n_e)
    test_pos, valid_pos, train_pos = edges[:n_test], edges[n_test:n_test + n_val], edges[n_test + n_val:]
    neg = rng.integers(0, num_nodes, (n_val + n_test, 2))
    g = Graph.from_edge_index(torch.from_numpy(train_pos.T.copy()), num_nodes=num_nodes, x=x)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return LinkSplit(name, g, t(train_pos), t(valid_pos), t(test_pos), t(neg[:n_val]), t(neg[n_val:]))


def random_link_split(split: LinkSplit, valid: float = 0.05, test: float = 0.10,
                      seed: int = 0) -> LinkSplit:
    """A seeded random split of ``split.train_pos`` into train/valid/test positives (HeaRT's
    85/5/10 for Cora by default), for graphs that come without one. It is not HeaRT's own split
    (those files are not in the data folder): results on it are comparable with each other only."""
    if not (0 < valid and 0 < test and valid + test < 1):
        raise ValueError(f"valid and test must be positive shares summing below 1; got {valid}, {test}")
    rng = np.random.default_rng(seed)
    edges = split.train_pos.numpy()[rng.permutation(len(split.train_pos))]
    return _split_edges(f"{split.name}:random{seed}", edges, split.graph.num_nodes, split.graph.x, rng,
                        valid, test)


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
