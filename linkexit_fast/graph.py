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

from .pairs_io import read_pairs
from .validation import as_tensor, check_features, check_index_tensor, check_pairs

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


def rowptr_from_rows(row: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """CSR offsets ``[num_nodes + 1]`` of entries whose (sorted) rows are ``row``."""
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64, device=row.device)
    torch.cumsum(torch.bincount(row, minlength=num_nodes), 0, out=rowptr[1:])
    return rowptr


# The _cache key through which Graph._trusted skips check_graph's O(E log E) part: a module-private
# object, so no caller can ask for the skip by accident.
_TRUSTED = object()
_FIX = "Graph.from_csr(rowptr, col, x=x) canonicalises a raw CSR"


def _positive_int(value, name: str) -> int:
    """``value`` as an int if it is a positive Python or numpy integer; bool and float are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
    return int(value)


def _check_rowptr(rowptr: torch.Tensor, num_entries: int, name: str) -> None:
    falls = bool((rowptr.diff() < 0).any())
    if int(rowptr[0]) != 0 or int(rowptr[-1]) != num_entries or falls:
        raise ValueError(f"{name} must rise from 0 to len(col)={num_entries}, got "
                         f"{int(rowptr[0])} ... {int(rowptr[-1])}{' (falling somewhere)' if falls else ''}")


def _check_structure(rowptr: torch.Tensor, col: torch.Tensor, n: int) -> torch.Tensor:
    """Sorted, unique, loop-free and symmetric, or a ValueError naming the first offending entry.

    Returns the row of every entry. One sort of ``2 E`` keys (the symmetry test); the rest is O(E).
    """
    row = entry_rows(rowptr)
    keys = row * n + col  # rows are sorted by construction, so a sorted CSR has rising keys
    step = keys.diff()
    if bool((step <= 0).any()):
        i = int((step <= 0).nonzero()[0])
        r, a, b = int(row[i]), int(col[i]), int(col[i + 1])
        if a == b:
            raise ValueError(f"Graph has a duplicate entry {r}->{a} (col[{i}] and col[{i + 1}]); {_FIX}")
        raise ValueError(f"Graph.col is not sorted within row {r} (col[{i}]={a} comes before "
                         f"col[{i + 1}]={b}); {_FIX}")
    loop = row == col
    if bool(loop.any()):
        u = int(row[loop.nonzero()[0]])
        raise ValueError(f"Graph stores a self-loop at node {u} (the GCN normalisation adds "
                         f"self-loops itself); {_FIX}")
    rev = col * n + row
    # numpy's SIMD sort: torch.sort took 532 ms on ogbl-ddi's 2.1M int64 keys on CPU, np.sort 47 ms
    on_cpu = rev.device.type == "cpu"
    rev_sorted = torch.from_numpy(np.sort(rev.numpy())) if on_cpu else torch.sort(rev).values
    if not torch.equal(rev_sorted, keys):
        pos = torch.searchsorted(keys, rev).clamp(max=keys.numel() - 1)
        i = int((keys[pos] != rev).nonzero()[0])
        u, v = int(row[i]), int(col[i])
        raise ValueError(f"Graph is not symmetric: entry {u}->{v} has no reverse {v}->{u}; {_FIX}")
    return row


def check_graph(g: "Graph", structure: bool = True) -> None:
    """Raise ValueError naming the first invariant of ``g`` that does not hold.

    Always (O(1), no device sync): ``rowptr`` ``[N + 1]`` and ``col`` ``[nnz]`` are 1-D int64
    tensors on one device; ``num_self_loops_removed`` and ``num_reverse_edges_added`` are ints >= 0; ``x`` is None or a float32
    tensor on that device. With ``structure`` (O(E log E): 0.26 s on ogbl-ddi's 2.1M entries, a
    tenth of ``from_edge_index``'s 2.6 s, on 2 busy CPU cores): ``rowptr`` rises from 0 to
    ``nnz``; ``col`` holds ids in ``[0, N)``, sorted and unique within each row; no self-loops;
    every entry u->v has its reverse v->u; ``x`` is ``[N, F]`` and finite. ``g.num_nodes`` must
    already be a positive int.
    """
    n, rowptr, col, x = g.num_nodes, g.rowptr, g.col, g.x
    for name, t in (("rowptr", rowptr), ("col", col)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.dim() != 1:
            raise ValueError(f"Graph.{name} must be a 1-D int64 tensor, got "
                             f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
    if rowptr.numel() != n + 1:
        raise ValueError(f"Graph.rowptr has {rowptr.numel()} entries; num_nodes={n} needs {n + 1}")
    if col.device != rowptr.device:
        raise ValueError(f"Graph.col is on {col.device} but Graph.rowptr on {rowptr.device}")
    for name in ("num_self_loops_removed", "num_reverse_edges_added"):
        count = getattr(g, name)
        if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"Graph.{name} must be an int >= 0, got {count!r}")
    if x is not None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"Graph.x must be a float32 tensor or None, got {type(x).__name__}; "
                             f"Graph.from_csr(...) or graph.with_features(x) converts it")
        if x.dtype != torch.float32:
            raise ValueError(f"Graph.x is {str(x.dtype).replace('torch.', '')}; Graph needs float32 "
                             f"(Graph.from_csr(...) or graph.with_features(x) converts it)")
        if x.device != rowptr.device:
            raise ValueError(f"Graph.x is on {x.device} but the CSR on {rowptr.device}")
    if not structure:
        return
    _check_rowptr(rowptr, col.numel(), "Graph.rowptr")
    if col.numel():
        lo, hi = torch.stack(torch.aminmax(col)).tolist()
        if lo < 0 or hi >= n:
            raise ValueError(f"Graph.col holds node ids in [{lo}, {hi}], outside [0, {n})")
    g._cache["row"] = _check_structure(rowptr, col, n)
    if x is not None:
        check_features(x, n)


def _square(shape, what: str) -> int:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{what} must be a square 2-D matrix, got shape {tuple(shape)}")
    return _positive_int(shape[0], f"{what} size")


def sparse_edges(indices, values, num_nodes: int, what: str) -> torch.Tensor:
    """The ``[2, E]`` node pairs that are edges among a sparse adjacency's entries.

    ``indices`` ``[2, nnz]`` are its entries' (row, col), ``values`` ``[nnz]`` their values or
    None (index only: every entry is an edge). With values, the entries of one position are summed
    (logical or for bool), which is how scipy and torch's ``coalesce()`` define the matrix, so
    every storage of one matrix gives one graph: a position summing to 0 is not an edge, one
    summing to 1 is, and any other sum raises ValueError, since the models use the unweighted
    GCN normalisation. ``what`` names the input in errors. Pairs may repeat and need not be
    symmetric: :meth:`Graph.from_edge_index` canonicalises them.
    """
    ei = check_index_tensor(indices, f"{what} indices", shape=(2, None), num_nodes=num_nodes)
    if values is None:
        return ei
    v = (values if isinstance(values, torch.Tensor) else as_tensor(values, f"{what} values")).detach()
    if v.dim() != 1 or v.numel() != ei.shape[1]:
        raise ValueError(f"{what} must have one value per entry, [{ei.shape[1]}], got {list(v.shape)}")
    v = v.to(ei.device)
    if v.dtype == torch.bool:
        return ei[:, v]
    if v.is_complex():
        raise TypeError(f"{what} values must be real, got dtype {v.dtype}")
    keys, inverse, counts = torch.unique(ei[0] * num_nodes + ei[1], return_inverse=True,
                                         return_counts=True)
    sums = torch.zeros(keys.numel(), dtype=torch.float64, device=v.device)
    sums.index_add_(0, inverse, v.double())
    bad = (sums != 0) & (sums != 1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        u, w = divmod(int(keys[i]), num_nodes)
        dup = int(counts[i]) > 1
        raise ValueError(f"{what} has edge weights other than 0/1 (e.g. {float(sums[i]):g} at ({u}, {w})"
                         f"{f', the sum of its {int(counts[i])} duplicate entries' if dup else ''}); "
                         f"linkexit_fast models use the unweighted GCN normalisation: binarise first, "
                         f"e.g. {'A.sum_duplicates(); ' if dup else ''}A.data[:] = 1")
    keys = keys[sums != 0]
    return torch.stack([keys // num_nodes, keys % num_nodes])


def degree_norm(deg: torch.Tensor, self_loops: bool) -> torch.Tensor:
    r"""``(deg + 1)^{-1/2}`` (with self-loops, GCN) or ``deg^{-1/2}`` (0 where ``deg = 0``, SAS) of
    integer degrees ``deg [N]``, float32 ``[N]``: the symmetric normalisation
    ``D^{-1/2} A D^{-1/2}`` of Kipf and Welling (2017), as PyG's ``gcn_norm``."""
    d = deg.to(torch.float32) + (1.0 if self_loops else 0.0)
    inv = d.pow(-0.5)
    inv[d == 0] = 0.0
    return inv


@dataclass(frozen=True, eq=False)
class Graph:
    r"""An immutable undirected graph in CSR form, with optional float32 node features.

    ``rowptr`` ``[N + 1]`` and ``col`` ``[2 E]`` (int64) hold each undirected edge in both
    directions, sorted by row then column. Self-loops are never stored: the GCN normalisation
    :math:`\hat A = D^{-1/2}(A + I)D^{-1/2}` adds them itself, and SAS-GNN uses
    :math:`D^{-1/2} A D^{-1/2}` without them. ``num_self_loops_removed`` says how many the input had,
    ``num_reverse_edges_added`` how many of its edges were given in one direction only (and got
    their reverse); :meth:`describe` says both in words.

    Counts follow PyG: ``num_edges`` is ``2 E``, the directed entries, as
    ``torch_geometric.data.Data.num_edges`` counts the symmetric ``edge_index`` (property,
    ``[2, 2 E]``); ``num_undirected_edges`` is ``E``. :meth:`to_pyg` gives a PyG ``Data``.

    Build one with :meth:`from_edge_index` or :meth:`from_any` (scipy, PyG ``Data``, torch_sparse
    ``SparseTensor``, torch sparse tensors), :meth:`from_csr` (a raw CSR) or
    :meth:`from_edgelist_file`. ``Graph(rowptr, col, num_nodes, x)`` itself canonicalises nothing:
    it raises ValueError (see :func:`check_graph`) unless the CSR is already sorted, unique,
    symmetric and loop-free and ``x`` is None or finite float32 ``[N, F]``.
    """

    rowptr: torch.Tensor
    col: torch.Tensor
    num_nodes: int
    x: Optional[torch.Tensor] = None
    num_self_loops_removed: int = 0
    num_reverse_edges_added: int = 0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        # Graph._trusted marks CSR parts derived from an already validated Graph; everything else,
        # a direct Graph(...) and checkpoint.load included, gets the full check. The cache starts
        # empty whatever was passed (dataclasses.replace passes the old Graph's, stale for new parts).
        trusted = self._cache.get(_TRUSTED, False)
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "num_nodes", _positive_int(self.num_nodes, "Graph.num_nodes"))
        check_graph(self, structure=not trusted)

    # ------------------------------------------------------------------ properties
    @property
    def num_edges(self) -> int:
        """Directed edges ``2 E`` (each undirected edge in both directions), as PyG's
        ``Data.num_edges`` counts them; :attr:`num_undirected_edges` is ``E``."""
        return int(self.col.numel())

    @property
    def num_undirected_edges(self) -> int:
        """Undirected edges ``E``, each counted once (HeaRT's and OGB's edge counts)."""
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
            self._cache[key] = degree_norm(self.deg, self_loops)
        return self._cache[key]

    def self_loop_weight(self) -> torch.Tensor:
        r"""GCN's self-loop weight ``dinv^2 = (deg + 1)^{-1}`` of every node, float32 ``[N]`` (cached)."""
        if "self_loop_weight" not in self._cache:
            dinv = self.dinv(True)
            self._cache["self_loop_weight"] = dinv * dinv
        return self._cache["self_loop_weight"]

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

    @property
    def edge_index(self) -> torch.Tensor:
        """Both directions, int64 ``[2, 2 E]``, sorted by row then column (PyG's layout; a new
        tensor each access)."""
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

    def to_pyg(self):
        """This graph as a ``torch_geometric.data.Data`` with ``edge_index`` ``[2, 2 E]``, ``x``
        (or None) and ``num_nodes``. Raises ImportError when torch_geometric is not installed."""
        try:
            from torch_geometric.data import Data
        except ImportError as e:
            raise ImportError("Graph.to_pyg() needs torch_geometric, which is not installed "
                              "(pip install torch_geometric)") from e
        return Data(x=self.x, edge_index=self.edge_index, num_nodes=self.num_nodes)

    def describe(self) -> str:
        """A one-paragraph summary: nodes, directed and undirected edges, features and what
        construction changed (self-loops removed, one-directional edges symmetrised)."""
        feats = f"{self.num_features:,} float32 features" if self.x is not None else "no node features"
        return (f"Graph: {self.num_nodes:,} nodes, {self.num_edges:,} directed edges "
                f"({self.num_undirected_edges:,} undirected, each stored in both directions), "
                f"{feats}. Built from its input with {self.num_self_loops_removed:,} self-loops "
                f"removed and {self.num_reverse_edges_added:,} edges given in one direction only "
                f"symmetrised (their reverse added).")

    def to(self, device) -> "Graph":
        """A copy on ``device`` (e.g. ``"cuda"`` for the Triton backend)."""
        return Graph._trusted(self.rowptr.to(device), self.col.to(device), self.num_nodes,
                              None if self.x is None else self.x.to(device), self.num_self_loops_removed,
                              self.num_reverse_edges_added)

    def with_features(self, x) -> "Graph":
        """A copy with features ``x`` ``[N, F]`` (any real dtype, converted to float32; non-finite
        values raise ValueError)."""
        return Graph._trusted(self.rowptr, self.col, self.num_nodes,
                              check_features(x, self.num_nodes).to(self.col.device),
                              self.num_self_loops_removed, self.num_reverse_edges_added)

    def remove_edges(self, pairs) -> "Graph":
        """A copy without the undirected edges in ``pairs`` ``[P, 2]`` (either direction; pairs
        that are not edges are ignored). Used every training step to hide the batch.

        Raises TypeError/ValueError when ``pairs`` is not ``[P, 2]`` integer ids in ``[0, N)``.
        """
        n = self.num_nodes
        p = check_pairs(pairs, n).to(self.col.device)
        drop = torch.cat([p[:, 0] * n + p[:, 1], p[:, 1] * n + p[:, 0]])
        keys = self.row * n + self.col  # sorted ascending: CSR rows and columns are sorted
        pos = torch.searchsorted(keys, drop).clamp(max=max(keys.numel() - 1, 0))
        keep = torch.ones(keys.numel(), dtype=torch.bool, device=keys.device)
        if keys.numel():
            keep[pos[keys[pos] == drop]] = False
        return Graph._trusted(rowptr_from_rows(self.row[keep], n), self.col[keep], n, self.x,
                              self.num_self_loops_removed, self.num_reverse_edges_added)

    def __repr__(self) -> str:
        return (f"Graph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
                f"num_undirected_edges={self.num_undirected_edges}, num_features={self.num_features})")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def _trusted(cls, rowptr, col, num_nodes, x, num_self_loops_removed, num_reverse_edges_added) -> "Graph":
        """Private: a Graph of parts taken from an already validated Graph (``to``,
        ``with_features``, ``remove_edges``), so canonical by construction, with ``x`` checked
        already. Only :func:`check_graph`'s O(1) part runs: ``remove_edges`` runs every training
        step, and the full check would add 0.26 s a step on ogbl-ddi's 2.1M entries."""
        return cls(rowptr, col, num_nodes, x, num_self_loops_removed, num_reverse_edges_added,
                   _cache={_TRUSTED: True})

    @classmethod
    def from_edge_index(cls, edge_index, num_nodes: Optional[int] = None, x=None) -> "Graph":
        """Build from ``[2, E]`` node pairs (tensor or array), read as undirected edges.

        Every pair is symmetrised (a pair given in one direction only gets its reverse; counted
        in ``num_reverse_edges_added``), duplicates are merged, and self-loops are dropped
        (counted in ``num_self_loops_removed``). ``num_nodes`` defaults to ``len(x)``, else the
        largest id + 1. Raises ValueError for ids outside ``[0, num_nodes)`` or an empty graph.

        Memory: the key sort holds about three copies of the symmetrised edge list.
        """
        ei = check_index_tensor(edge_index, "edge_index", shape=(2, None))
        if num_nodes is None:
            if x is not None:
                num_nodes = int(np.shape(x)[0])
            else:
                num_nodes = int(ei.max()) + 1 if ei.numel() else 0
            if num_nodes <= 0:
                raise ValueError(f"empty graph: num_nodes must be positive, got {num_nodes}")
        num_nodes = _positive_int(num_nodes, "num_nodes")
        if ei.numel() and int(ei.max()) >= num_nodes:
            bad = int(ei.max())
            raise ValueError(f"edge_index holds node id {bad}, out of range for num_nodes={num_nodes}")
        xt = check_features(x, num_nodes) if x is not None else None
        u, v = ei[0], ei[1]
        loop = u == v
        loops = int(loop.sum())
        if loops:
            u, v = u[~loop], v[~loop]
        fwd = u * num_nodes + v
        keys = torch.unique(torch.cat([fwd, v * num_nodes + u]), sorted=True)
        del u, v
        # Of D distinct input pairs, B edges came in both directions and O in one: D = 2B + O and
        # the symmetrised keys number 2(B + O), so O = len(keys) - D.
        # numpy's SIMD sort: a second torch.unique added 0.3 s to ogbl-ddi's 1.2 s build, this 0.03 s
        fwd = np.sort(fwd.cpu().numpy())
        one_way = keys.numel() - (int((fwd[1:] != fwd[:-1]).sum()) + 1 if fwd.size else 0)
        del fwd
        row = torch.div(keys, num_nodes, rounding_mode="floor")
        col = keys - row * num_nodes
        del keys
        return cls(rowptr_from_rows(row, num_nodes), col, num_nodes, xt, loops, one_way)

    @classmethod
    def from_csr(cls, rowptr, col, num_nodes: Optional[int] = None, x=None) -> "Graph":
        """Canonicalise a raw CSR adjacency (``Graph(rowptr, col, ...)`` only accepts canonical ones).

        Args:
            rowptr: ``[N + 1]`` integer offsets rising from 0 to ``len(col)``.
            col: ``[nnz]`` integer node ids in ``[0, N)``, in any order within a row; duplicates,
                entries stored in one direction only and self-loops are all accepted.
            num_nodes: ``N``; defaults to ``len(rowptr) - 1`` and must equal it when given.
            x: optional ``[N, F]`` features of any real dtype, converted to float32.

        Returns the Graph of every entry in both directions, sorted, deduplicated, without
        self-loops (``num_self_loops_removed`` counts the self-loop entries dropped), via
        :meth:`from_edge_index`. Raises TypeError for non-integer ``rowptr``/``col`` and
        ValueError for a malformed CSR, out-of-range ids or non-finite ``x``.
        """
        rp = as_tensor(rowptr, "rowptr")
        if rp.dtype.is_floating_point or rp.dtype.is_complex or rp.dtype == torch.bool:
            raise TypeError(f"rowptr must hold integer offsets, got dtype {rp.dtype}")
        if rp.dim() != 1 or rp.numel() < 2:
            raise ValueError(f"rowptr must be 1-D with num_nodes + 1 >= 2 entries, got {list(rp.shape)}")
        rp = rp.to(torch.int64)
        n = rp.numel() - 1
        if num_nodes is not None and _positive_int(num_nodes, "num_nodes") != n:
            raise ValueError(f"rowptr has {rp.numel()} entries; num_nodes={num_nodes} needs {num_nodes + 1}")
        c = check_index_tensor(col, "col", shape=(None,), num_nodes=n).to(rp.device)
        _check_rowptr(rp, c.numel(), "rowptr")
        return cls.from_edge_index(torch.stack([entry_rows(rp), c]), num_nodes=n, x=x)

    @classmethod
    def from_scipy(cls, mat, x=None) -> "Graph":
        """Build from a scipy sparse adjacency of any format (matrix or array); stored zeros are
        not edges, and other values than 0/1 raise, see :meth:`from_any`."""
        coo = mat.tocoo()
        n = _square(coo.shape, "scipy adjacency")
        ei = sparse_edges(np.stack([coo.row, coo.col]), torch.from_numpy(coo.data), n, "scipy adjacency")
        return cls.from_edge_index(ei, num_nodes=n, x=x)

    @classmethod
    def from_any(cls, obj: Any, num_nodes: Optional[int] = None, x=None) -> "Graph":
        """Convert any supported adjacency: Graph, scipy sparse, PyG ``Data``, torch_sparse
        ``SparseTensor`` (duck-typed, torch_sparse is never imported), torch sparse COO/CSR/CSC,
        an ``[2, E]`` edge index, or a path to an edge-list file.

        The result is undirected, as with :meth:`from_edge_index`: an entry given in one
        direction only gets its reverse (``num_reverse_edges_added`` counts them) and self-loops
        are dropped (``num_self_loops_removed``); :meth:`describe` reports both.

        Values: the models use the unweighted GCN normalisation, so an adjacency with values
        (scipy, torch sparse, a ``SparseTensor`` whose ``value`` is not None, a ``Data`` with
        ``edge_weight``) must be binary. Duplicate entries of one position are summed first, as
        scipy and torch's ``coalesce()`` define the matrix (bool values: logical or); a position
        summing to 0 (a stored zero) is not an edge, one summing to 1 is, and any other sum
        (a weight like 0.5, or two stored 1s) raises ValueError: binarise first, e.g.
        ``A.sum_duplicates(); A.data[:] = 1``. Index-only inputs (an edge index, a ``Data``
        without ``edge_weight``, a ``SparseTensor`` without values, a file) keep every pair, each
        once. ``Data.edge_attr`` holds edge features, not adjacency values, and is ignored.
        """
        if isinstance(obj, Graph):
            return obj if x is None else obj.with_features(x)
        if isinstance(obj, (str, os.PathLike)):
            return cls.from_edgelist_file(obj, num_nodes=num_nodes, x=x)
        if hasattr(obj, "tocoo") and hasattr(obj, "nnz"):  # scipy.sparse
            return cls.from_scipy(obj, x=x)
        if hasattr(obj, "edge_index") and hasattr(obj, "num_nodes"):  # torch_geometric Data
            feats = x if x is not None else getattr(obj, "x", None)
            ei, weight = obj.edge_index, getattr(obj, "edge_weight", None)
            if weight is not None:
                n = _positive_int(obj.num_nodes, "Data.num_nodes")
                ei = sparse_edges(ei, weight, n, "Data.edge_weight")
            return cls.from_edge_index(ei, num_nodes=obj.num_nodes, x=feats)
        if hasattr(obj, "coo") and hasattr(obj, "sparse_sizes"):  # torch_sparse.SparseTensor
            row, col, value = obj.coo()
            n = _square(tuple(obj.sparse_sizes()), "SparseTensor")
            return cls.from_edge_index(sparse_edges(torch.stack([row, col]), value, n, "SparseTensor"),
                                       num_nodes=n, x=x)
        if isinstance(obj, torch.Tensor) and obj.layout != torch.strided:
            what = f"{obj.layout} adjacency"
            n = _square(tuple(obj.shape), what)
            # _indices/_values keep an uncoalesced COO's duplicates for sparse_edges to sum
            coo = obj if obj.layout == torch.sparse_coo else obj.to_sparse_coo()
            return cls.from_edge_index(sparse_edges(coo._indices(), coo._values(), n, what), num_nodes=n, x=x)
        return cls.from_edge_index(obj, num_nodes=num_nodes, x=x)

    @classmethod
    def from_edgelist_file(cls, path, num_nodes: Optional[int] = None, x=None) -> "Graph":
        """Read ``u v`` (or ``u,v``) lines; ``#`` comments and one non-numeric header line are skipped."""
        pairs = read_pair_file(path)
        return cls.from_edge_index(pairs.T, num_nodes=num_nodes, x=x)


def read_pair_file(path) -> torch.Tensor:
    """Read a text/CSV file of integer node pairs into ``[P, 2]`` int64 with clear errors (the
    format and its errors: :mod:`linkexit_fast.pairs_io`)."""
    return read_pairs(path)
