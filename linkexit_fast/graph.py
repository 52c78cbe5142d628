"""The undirected graph every model, the engine and the HeaRT sampler work on.

One format inside the project: CSR (``rowptr``, ``col``) of a symmetric adjacency without
self-loops and without duplicates. Every other format is converted once, at the entry point.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from .validation import check_features, check_index_tensor

__all__ = ["Graph"]


@contextlib.contextmanager
def quiet_sparse():
    """Silences torch's "Sparse CSR tensor support is in beta state" warning for the CSR tensors
    built inside, without touching the filters of the rest of the caller's process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        yield


def csr_tensor(rowptr: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size) -> torch.Tensor:
    """A torch sparse CSR tensor of an index structure the caller has validated (``Graph``'s
    constructors, ``linkexit_fast.ops``, or the engine building its own): saying so skips torch's
    invariant checks and its per-process warning about them; torch's beta warning is silenced."""
    with quiet_sparse():
        return torch.sparse_csr_tensor(rowptr, col, values, size, check_invariants=False)


def entry_rows(rowptr: torch.Tensor) -> torch.Tensor:
    """The row of every entry of a CSR with offsets ``rowptr``, int64 ``[nnz]``."""
    n = rowptr.numel() - 1
    return torch.repeat_interleave(torch.arange(n, dtype=torch.int64, device=rowptr.device), rowptr.diff(),
                                   output_size=int(rowptr[-1]) if n else 0)


@dataclass(frozen=True, eq=False)
class Graph:
    r"""An immutable undirected graph in CSR form, with optional float32 node features.

    ``rowptr`` ``[N + 1]`` and ``col`` ``[2 E]`` (int64) hold each undirected edge in both
    directions, sorted by row then column. Self-loops are never stored: the GCN normalisation
    :math:`\hat A = D^{-1/2}(A + I)D^{-1/2}` adds them itself, and SAS-GNN uses
    :math:`D^{-1/2} A D^{-1/2}` without them. ``num_self_loops_removed`` says how many the input had.

    Build one with :meth:`from_edge_index` or :meth:`from_any` (scipy, PyG ``Data``, torch_sparse
    ``SparseTensor``, torch sparse tensors) or :meth:`from_edgelist_file`.
    """

    rowptr: torch.Tensor
    col: torch.Tensor
    num_nodes: int
    x: Optional[torch.Tensor] = None
    num_self_loops_removed: int = 0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        # The kernels index with rowptr and col unchecked per entry (torch's sparse products
        # included), so a Graph built directly must be a valid CSR before anything runs on it.
        n, rowptr, col = self.num_nodes, self.rowptr, self.col
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"num_nodes must be a positive int, got {n!r}")
        for name, t in (("rowptr", rowptr), ("col", col)):
            if not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.dim() != 1:
                raise ValueError(f"Graph.{name} must be a 1-D int64 tensor, got "
                                 f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        if rowptr.numel() != n + 1:
            raise ValueError(f"Graph.rowptr has {rowptr.numel()} entries; num_nodes={n} needs {n + 1}")
        falls = bool((rowptr.diff() < 0).any())
        if int(rowptr[0]) != 0 or int(rowptr[-1]) != col.numel() or falls:
            raise ValueError(f"Graph.rowptr must rise from 0 to len(col)={col.numel()}, got "
                             f"{int(rowptr[0])} ... {int(rowptr[-1])}{' (falling somewhere)' if falls else ''}")
        if col.numel() and (int(col.min()) < 0 or int(col.max()) >= n):
            raise ValueError(f"Graph.col holds node ids in [{int(col.min())}, {int(col.max())}], "
                             f"outside [0, {n})")
        if self.x is not None and (self.x.dim() != 2 or self.x.shape[0] != n):
            raise ValueError(f"Graph.x must be [num_nodes={n}, F], got {tuple(self.x.shape)}")

    # ------------------------------------------------------------------ properties
    @property
    def num_edges(self) -> int:
        """Undirected edges, each counted once."""
        return int(self.col.numel()) // 2

    @property
    def num_features(self) -> int:
        return 0 if self.x is None else int(self.x.shape[1])

    @property
    def deg(self) -> torch.Tensor:
        """Degree without self-loops, int64 ``[N]``."""
        if "deg" not in self._cache:
            self._cache["deg"] = self.rowptr[1:] - self.rowptr[:-1]
        return self._cache["deg"]

    def dinv(self, self_loops: bool) -> torch.Tensor:
        r"""``(deg + 1)^{-1/2}`` for GCN (with self-loops) or ``deg^{-1/2}`` (0 where deg = 0) for SAS."""
        key = ("dinv", self_loops)
        if key not in self._cache:
            d = self.deg.to(torch.float32) + (1.0 if self_loops else 0.0)
            inv = d.pow(-0.5)
            inv[d == 0] = 0.0
            self._cache[key] = inv
        return self._cache[key]

    def edge_weight(self, self_loops: bool) -> torch.Tensor:
        r"""Normalised weight ``dinv[row] * dinv[col]`` of every CSR entry (cached: on ogbl-ddi's
        2.1M entries it took 6 ms a call to rebuild)."""
        key = ("edge_weight", self_loops)
        if key not in self._cache:
            dinv = self.dinv(self_loops)
            self._cache[key] = dinv[self.row] * dinv[self.col]
        return self._cache[key]

    @property
    def row(self) -> torch.Tensor:
        """Row index of every CSR entry, int64 ``[2 E]`` (cached)."""
        if "row" not in self._cache:
            self._cache["row"] = entry_rows(self.rowptr)
        return self._cache["row"]

    def edge_index(self) -> torch.Tensor:
        """Both directions, ``[2, 2 E]``."""
        return torch.stack([self.row, self.col])

    def undirected_edges(self) -> torch.Tensor:
        """Each undirected edge once as ``[E, 2]`` with ``u < v``."""
        mask = self.row < self.col
        return torch.stack([self.row[mask], self.col[mask]], 1)

    def neighbors(self, u: int) -> torch.Tensor:
        return self.col[self.rowptr[u]:self.rowptr[u + 1]]

    def to_scipy(self):
        import scipy.sparse as sp
        data = np.ones(self.col.numel(), dtype=np.float32)
        return sp.csr_matrix((data, self.col.numpy(), self.rowptr.numpy()),
                             shape=(self.num_nodes, self.num_nodes))

    def to(self, device) -> "Graph":
        """A copy on ``device`` (e.g. ``"cuda"`` for the Triton backend)."""
        return Graph(self.rowptr.to(device), self.col.to(device), self.num_nodes,
                     None if self.x is None else self.x.to(device), self.num_self_loops_removed)

    def with_features(self, x) -> "Graph":
        return Graph(self.rowptr, self.col, self.num_nodes, check_features(x, self.num_nodes),
                     self.num_self_loops_removed)

    def remove_edges(self, pairs: torch.Tensor) -> "Graph":
        """A copy without the undirected edges in ``pairs`` ``[P, 2]`` (used to hide a training batch)."""
        n = self.num_nodes
        p = pairs.to(torch.int64)
        drop = torch.cat([p[:, 0] * n + p[:, 1], p[:, 1] * n + p[:, 0]])
        keys = self.row * n + self.col  # sorted ascending: CSR rows and columns are sorted
        pos = torch.searchsorted(keys, drop).clamp(max=max(keys.numel() - 1, 0))
        keep = torch.ones(keys.numel(), dtype=torch.bool)
        if keys.numel():
            keep[pos[keys[pos] == drop]] = False
        return Graph._from_sorted(self.row[keep], self.col[keep], n, self.x, self.num_self_loops_removed)

    def __repr__(self) -> str:
        return (f"Graph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
                f"num_features={self.num_features})")

    # ------------------------------------------------------------------ constructors
    @staticmethod
    def _from_sorted(row, col, num_nodes, x, loops) -> "Graph":
        counts = torch.bincount(row, minlength=num_nodes)
        rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64)
        torch.cumsum(counts, 0, out=rowptr[1:])
        return Graph(rowptr, col.contiguous(), num_nodes, x, loops)

    @classmethod
    def from_edge_index(cls, edge_index, num_nodes: Optional[int] = None, x=None) -> "Graph":
        """Build from ``[2, E]`` node pairs (tensor or array): symmetrised, deduplicated, self-loops dropped.

        Memory: the key sort holds about three copies of the symmetrised edge list.
        """
        ei = check_index_tensor(edge_index, "edge_index", shape=(2, None))
        if num_nodes is None:
            if x is not None:
                num_nodes = int(np.shape(x)[0])
            else:
                num_nodes = int(ei.max()) + 1 if ei.numel() else 0
        num_nodes = int(num_nodes)
        if num_nodes <= 0:
            raise ValueError(f"empty graph: num_nodes must be positive, got {num_nodes}")
        if ei.numel() and int(ei.max()) >= num_nodes:
            bad = int(ei.max())
            raise ValueError(f"edge_index holds node id {bad}, out of range for num_nodes={num_nodes}")
        xt = check_features(x, num_nodes) if x is not None else None
        u, v = ei[0], ei[1]
        loop = u == v
        loops = int(loop.sum())
        if loops:
            u, v = u[~loop], v[~loop]
        keys = torch.cat([u * num_nodes + v, v * num_nodes + u])
        del u, v
        keys = torch.unique(keys, sorted=True)
        row = torch.div(keys, num_nodes, rounding_mode="floor")
        col = keys - row * num_nodes
        del keys
        return cls._from_sorted(row, col, num_nodes, xt, loops)

    @classmethod
    def from_scipy(cls, mat, x=None) -> "Graph":
        coo = mat.tocoo()
        if coo.shape[0] != coo.shape[1]:
            raise ValueError(f"adjacency must be square, got shape {coo.shape}")
        ei = np.stack([coo.row.astype(np.int64), coo.col.astype(np.int64)])
        return cls.from_edge_index(ei, num_nodes=coo.shape[0], x=x)

    @classmethod
    def from_any(cls, obj: Any, num_nodes: Optional[int] = None, x=None) -> "Graph":
        """Convert any supported adjacency: Graph, scipy sparse, PyG ``Data``, torch_sparse
        ``SparseTensor`` (duck-typed, torch_sparse is never imported), torch sparse COO/CSR,
        an ``[2, E]`` edge index, or a path to an edge-list file."""
        if isinstance(obj, Graph):
            return obj if x is None else obj.with_features(x)
        if isinstance(obj, (str, os.PathLike)):
            return cls.from_edgelist_file(obj, num_nodes=num_nodes, x=x)
        if hasattr(obj, "tocoo") and hasattr(obj, "nnz"):  # scipy.sparse
            return cls.from_scipy(obj, x=x)
        if hasattr(obj, "edge_index") and hasattr(obj, "num_nodes"):  # torch_geometric Data
            feats = x if x is not None else getattr(obj, "x", None)
            return cls.from_edge_index(obj.edge_index, num_nodes=obj.num_nodes, x=feats)
        if hasattr(obj, "coo") and hasattr(obj, "sparse_sizes"):  # torch_sparse.SparseTensor
            row, col, _ = obj.coo()
            return cls.from_edge_index(torch.stack([row, col]), num_nodes=obj.sparse_sizes()[0], x=x)
        if isinstance(obj, torch.Tensor) and obj.layout != torch.strided:
            coo = obj.to_sparse_coo().coalesce() if obj.layout != torch.sparse_coo else obj.coalesce()
            if coo.shape[0] != coo.shape[1]:
                raise ValueError(f"adjacency must be square, got shape {tuple(coo.shape)}")
            return cls.from_edge_index(coo.indices(), num_nodes=coo.shape[0], x=x)
        return cls.from_edge_index(obj, num_nodes=num_nodes, x=x)

    @classmethod
    def from_edgelist_file(cls, path, num_nodes: Optional[int] = None, x=None) -> "Graph":
        """Read ``u v`` (or ``u,v``) lines; ``#`` comments and one non-numeric header line are skipped."""
        pairs = read_pair_file(path)
        return cls.from_edge_index(pairs.T, num_nodes=num_nodes, x=x)


def read_pair_file(path) -> torch.Tensor:
    """Read a text/CSV file of integer node pairs into ``[P, 2]`` int64 with clear errors."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"edge-list file not found: {path}")
    opener = open
    if path.endswith(".gz"):
        import gzip
        opener = gzip.open
    rows = []
    with opener(path, "rt") as f:
        for lineno, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = s.replace(",", " ").split()
            if len(parts) < 2:
                raise ValueError(f"{path}:{lineno}: expected two node ids, got {s!r} (truncated file?)")
            try:
                rows.append((int(parts[0]), int(parts[1])))
            except ValueError:
                if lineno == 1 and not rows:
                    continue  # header line such as "source,target"
                raise ValueError(f"{path}:{lineno}: non-integer node id in {s!r}") from None
    if not rows:
        return torch.empty(0, 2, dtype=torch.int64)
    arr = torch.tensor(rows, dtype=torch.int64)
    if int(arr.min()) < 0:
        raise ValueError(f"{path}: negative node id {int(arr.min())}")
    return arr
