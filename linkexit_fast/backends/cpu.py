"""The engine's three ops in C++ with OpenMP (``csrc/``): same signatures and return conventions
as :mod:`linkexit_fast.backends.torch_ops`, the specification they are tested against; and the
scope walk and compaction (:func:`hop_distance`, :func:`scope_csr`) and a layer's exit bookkeeping
(:func:`exit_update`, :func:`live_rows`), whose specifications are the engine's torch walk,
compaction and layer loop; and a layer's transform, Linear then GELU, written once
(:func:`linear_act`, specified by torch's ``F.gelu(F.linear(...))``), also fused with the
layer's aggregation (:func:`aggregate_linear_act`, specified by the two ops). ``exit_decision``
also judges rows of ``h`` in place (``rows``; ``JUDGES_ROWS_IN_PLACE``).

The compiled ops come from ``linkexit_fast._C`` when ``setup.py`` built it; otherwise ``csrc/`` is
compiled just-in-time on first use and cached in torch's extension folder. If neither works,
every op here runs the torch_ops version instead, after one warning.
"""
from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch

from . import torch_ops

__all__ = ["available", "aggregate_rows", "exit_decision", "score_pairs", "hop_distance", "scope_csr", "scatter_rows",
           "exit_update", "live_rows", "linear_act", "aggregate_linear_act", "bf16_isa", "score_pairs_bf16"]

CSRC = Path(__file__).resolve().parents[2] / "csrc"
_OPS = ("aggregate_rows", "exit_decision", "score_pairs", "hop_distance", "scope_csr", "scatter_rows", "exit_update",
        "live_rows", "linear_act", "aggregate_linear_act")
# exit_decision takes rows and reads h[rows] in place (linkexit_fast.engine.plan.judges_in_place).
JUDGES_ROWS_IN_PLACE = True
_lock = threading.Lock()
_state: dict = {}  # "error": None once the ops are registered, else why they are not
_warned = False


def _build() -> Optional[str]:
    try:
        import linkexit_fast._C  # noqa: F401  (registers torch.ops.linkexit_fast)
    except ImportError as e:
        prebuilt = f"no prebuilt linkexit_fast._C ({e})"
        sources = sorted(str(p) for p in CSRC.rglob("*.cpp")) if CSRC.is_dir() else []
        if not sources:
            return f"{prebuilt} and no C++ sources under {CSRC}"
        try:
            from torch.utils.cpp_extension import load
            load(name="linkexit_fast_C", sources=sources, extra_cflags=["-O3", "-fopenmp"],
                 extra_ldflags=["-fopenmp"], is_python_module=False)
        except Exception as e:  # no compiler, no ninja, a compile error: all mean "fall back"
            return f"{prebuilt}, and compiling {CSRC} failed: {type(e).__name__}: {e}"
    missing = [op for op in _OPS if not hasattr(torch.ops.linkexit_fast, op)]
    if missing:
        return f"the loaded extension lacks {missing}: rebuild it from {CSRC}"
    # exit_decision's 6th argument used to be the threshold itself: an extension built from
    # older sources would compare p_exit with the margin bound, silently.
    schema = torch.ops.linkexit_fast.exit_decision.default._schema
    if schema.arguments[5].name != "margin_bound":
        return f"the loaded extension predates exit_decision(margin_bound): rebuild it from {CSRC}"
    if schema.arguments[-1].name != "rows":
        return f"the loaded extension predates exit_decision(rows): rebuild it from {CSRC}"
    # scope_csr returns the whole scope (ends' local ids, weights, degrees) since its ninth output:
    # an older build returns five (or four).
    if len(torch.ops.linkexit_fast.scope_csr.default._schema.returns) != 9:
        return f"the loaded extension predates scope_csr's nine outputs: rebuild it from {CSRC}"
    return None


def _load_error() -> Optional[str]:
    """Loads the ops once; ``None`` when they are ready, else the reason they are not."""
    with _lock:
        if "error" not in _state:
            _state["error"] = _build()
    return _state["error"]


def unavailable_reason() -> Optional[str]:
    """``None`` once the C++ ops are loaded (compiling them on the first call if needed), else
    why they are not (the build or load error). Never raises."""
    return _load_error()


def available() -> bool:
    """Whether the C++ ops are loaded (compiling them on the first call if needed). Never raises."""
    return _load_error() is None


def _fall_back() -> bool:
    """True (after one warning, at the op's caller) when the torch_ops versions must stand in."""
    global _warned
    error = _load_error()
    if error is not None and not _warned:
        _warned = True
        # stacklevel 3: this helper, then the op, then the line that called the op.
        warnings.warn(f"linkexit_fast C++ ops unavailable, using the slower torch backend: {error}",
                      stacklevel=3)
    return error is not None


def _index(t: torch.Tensor) -> torch.Tensor:
    """Integer tensors become contiguous int64; anything else reaches the op's dtype check. (Those
    already so pass without a call: the engine makes ~60 of these a call.)"""
    if t.dtype == torch.int64 and t.is_contiguous():
        return t
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        return t
    return t.to(torch.int64).contiguous()


def _real(t: torch.Tensor) -> torch.Tensor:
    """Floating tensors become contiguous float32; anything else reaches the op's dtype check."""
    if t.dtype == torch.float32 and t.is_contiguous():
        return t
    return t.to(torch.float32).contiguous() if t.dtype.is_floating_point else t


def _opt_real(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else _real(t)


def aggregate_rows(rowptr: torch.Tensor, col: torch.Tensor, weight: torch.Tensor, h: torch.Tensor,
                   rows: torch.Tensor, self_weight: Optional[torch.Tensor] = None,
                   cache: Optional[torch.Tensor] = None, pass_cols: Optional[int] = None) -> torch.Tensor:
    """Weighted CSR aggregation over a subset of rows; see :func:`torch_ops.aggregate_rows`
    (``rows`` may repeat; returns float32 ``[k, m]``).

    ``pass_cols`` output columns are computed per pass over the rows (``None``: the op's choice,
    narrow passes when a column slice of ``h`` fits the core's L2 and ``h`` does not); it never
    changes the result. Raises ``RuntimeError`` naming the argument for a wrong dtype or shape,
    a row outside ``[0, R)``, an invalid ``rowptr`` range or a ``col`` entry outside ``[0, n)``.
    """
    if _fall_back():
        return torch_ops.aggregate_rows(rowptr, col, weight, h, rows, self_weight, cache)
    return torch.ops.linkexit_fast.aggregate_rows(
        _index(rowptr), _index(col), _real(weight), _real(h), _index(rows),
        _opt_real(self_weight), _opt_real(cache), pass_cols)


def exit_decision(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                  b2: torch.Tensor, threshold: float, w_nu: Optional[torch.Tensor] = None,
                  b_nu: Optional[torch.Tensor] = None, tau0: float = 0.0, rows: Optional[torch.Tensor] = None
                  ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    r"""Deterministic exit rule on rows ``h [n, k]`` with the 2-layer confidence MLP
    ``w1 [hidden, k]``, ``b1 [hidden]``, ``w2 [2, hidden]``, ``b2 [2]``.

    ``exit = l_1 - l_0 >= logit(threshold)`` (:func:`torch_ops.exit_margin_bound`, computed here
    and handed to the C++ op; ``threshold = 1.0`` never exits), ``p_exit = sigmoid(l_1 - l_0)``.
    With the temperature head
    (``w_nu [k]``, ``b_nu [1]``) also the SAS step size ``sigmoid((l_0 - l_1) / nu)`` with
    :math:`\nu = \max(\mathrm{softplus}(h w_\nu + b_\nu) + \tau_0, 0.1)` (Eq. 7).
    Returns ``(p_exit [n], exit [n] bool, step [n] or None)``.

    ``rows`` (int64 ``[n']``, values in ``[0, n)``; default all rows): the rows judged are
    ``h[rows]``, read in place by the product rather than gathered first (the engine judges a few
    hundred rows of a layer's states); the results are then ``n'`` long. A row's results are the
    same bits either way. An id out of range raises RuntimeError.
    """
    if _fall_back():
        return torch_ops.exit_decision(h if rows is None else h[rows], w1, b1, w2, b2, threshold, w_nu, b_nu, tau0)
    p_exit, exit, step = torch.ops.linkexit_fast.exit_decision(
        _real(h), _real(w1), _real(b1), _real(w2), _real(b2), torch_ops.exit_margin_bound(threshold),
        _opt_real(w_nu), _opt_real(b_nu), float(tau0), None if rows is None else _index(rows))
    return p_exit, exit, (step if w_nu is not None else None)


def score_pairs(z: torch.Tensor, u: torch.Tensor, v: torch.Tensor, weights: Sequence[torch.Tensor],
                biases: Sequence[torch.Tensor], chunk: Optional[int] = None) -> torch.Tensor:
    """HeaRT's MLP link scorer: ``x = z[u] * z[v]``, Linear+ReLU layers, a final Linear to one
    logit. ``z [n, m]``, ``u``/``v [P]`` in ``[0, n)``, ``weights[i] [out, in]`` (nn.Linear
    layout), ``biases[i] [out]``; returns logits ``[P]``.

    ``chunk`` pairs are processed per block (``None``: the op's tuned default).
    """
    if _fall_back():
        return torch_ops.score_pairs(z, u, v, weights, biases, chunk)
    weights_c: List[torch.Tensor] = [_real(w) for w in weights]
    biases_c: List[torch.Tensor] = [_real(b) for b in biases]
    return torch.ops.linkexit_fast.score_pairs(_real(z), _index(u), _index(v), weights_c, biases_c,
                                               chunk)


def hop_distance(rowptr: torch.Tensor, col: torch.Tensor, sources: torch.Tensor, max_hops: int,
                 passable: Optional[torch.Tensor] = None, return_reached: bool = False
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Multi-source BFS over the CSR ``rowptr [R+1]``, ``col [nnz]`` from ``sources`` (any row ids
    in ``[0, R)``, repeats allowed): ``(dist [R] int64, reached)``, ``dist`` the fewest hops to
    each row (``2**30``, the engine's ``UNREACHED``, beyond ``max_hops``), ``reached`` the rows
    reached in increasing order with ``return_reached``, else empty. With ``passable`` (bool
    ``[R]``) a row is reached like any other but expanded only where it holds.

    The engine's scope walk on the CPU (:func:`linkexit_fast.engine.scope.hop_distance`, whose torch
    walk is the specification). A serial queue: O(rows reached + their entries). No torch
    fallback: the engine walks in torch where the backend has no such op. Raises RuntimeError
    naming the argument for a wrong dtype or shape, a source or ``col`` entry outside ``[0, R)``,
    a ``rowptr`` range that is not one, or when the C++ ops are unavailable.
    """
    error = _load_error()
    if error is not None:
        raise RuntimeError(f"hop_distance: the C++ ops are unavailable: {error}")
    return torch.ops.linkexit_fast.hop_distance(
        _index(rowptr), _index(col), _index(sources), int(max_hops),
        None if passable is None else passable.contiguous(), bool(return_reached))


def scope_csr(rowptr: torch.Tensor, col: torch.Tensor, ends: torch.Tensor, hops: int, max_fraction: float,
              exiting: Optional[torch.Tensor] = None, dinv: Optional[torch.Tensor] = None,
              deg: Optional[torch.Tensor] = None, self_loop_weight: Optional[torch.Tensor] = None
              ) -> Tuple[torch.Tensor, ...]:
    """The engine's scope (:func:`linkexit_fast.engine.scope.compact`, whose torch path is the
    specification) in one serial pass: a BFS of at most ``hops`` hops from ``ends`` (row ids in
    ``[0, R)``, repeats allowed) over the CSR ``rowptr [R+1]``, ``col [nnz]``; ``k`` rows are
    reached. ``exiting`` (bool ``[s]`` over ``ends``, default none): ends whose neighbourhoods stay
    out (the probe's): the walk starts from the other ends, and these join the scope at distance
    ``hops`` (no entries, never walked through; an end both exiting and not is exiting), then are
    returned at distance 0.

    ``k < max_fraction * R``: returns ``(nodes [k], dist [k], rowptr_l [k+1], col_l [e], row_l [e],
    ends_l [s], weight_l, deg_l, self_weight_l)``: the reached rows in increasing order, their hop
    distances, the CSR, in local ids, of the rows with ``dist < hops`` (rows at ``hops`` get no
    entries) with each entry's row, each end's local id; with ``dinv [R]`` (float32) the entries'
    weights ``dinv[nodes[row_l]] * dinv[nodes[col_l]]``, with ``deg [R]`` (int64) ``deg[nodes]``,
    with ``self_loop_weight [R]`` (float32) ``self_loop_weight[nodes]`` (each empty when not given).
    Otherwise ``(empty, dist [R], empty x 7)`` with ``dist`` as :func:`hop_distance` gives it.
    O(reached rows + their entries); each calling thread keeps one int32 per row between calls
    (for global-to-local ids) so that a small scope touches nothing of the graph's size. Raises
    RuntimeError naming the argument for a wrong dtype or shape, an ``ends`` or ``col`` entry
    outside ``[0, R)``, a ``rowptr`` range that is not one, ``hops < 0``, ``max_fraction`` outside
    ``[0, 1]``, or when the C++ ops are unavailable.
    """
    error = _load_error()
    if error is not None:
        raise RuntimeError(f"scope_csr: the C++ ops are unavailable: {error}")
    return torch.ops.linkexit_fast.scope_csr(
        _index(rowptr), _index(col), _index(ends), int(hops), float(max_fraction),
        None if exiting is None else exiting.contiguous(), _opt_real(dinv), None if deg is None else _index(deg),
        _opt_real(self_loop_weight))


def exit_update(rows: torch.Tensor, flag: torch.Tensor, forced: Optional[torch.Tensor], exited: torch.Tensor,
                exit_layer: torch.Tensor, open_ends: torch.Tensor, layer: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """One layer's exit bookkeeping of the engine under ``freeze`` (:meth:`linkexit_fast.engine.run._Run.run`,
    whose torch path is the specification), in one pass instead of about 17 small torch ops.

    ``rows [k]`` (unique int64 row ids in ``[0, R)``, none exited yet) were judged at ``layer``, with
    decisions ``flag [k]`` (bool); ``forced [R]`` (bool, or None) marks rows that exit there
    whatever their decision. Marks ``rows[i]`` exited at ``layer`` in ``exited [R]`` (bool) and
    ``exit_layer [R]`` (int64), in place, where ``flag[i]`` or ``forced[rows[i]]``; returns
    ``(open, stay)``: the entries of ``open_ends`` (int64 row ids) not exited afterwards, and the
    rows of ``rows`` that did not exit, each in its given order. Raises RuntimeError naming the
    argument for a wrong dtype or shape, or an id outside ``[0, R)`` (before writing anything),
    or when the C++ ops are unavailable.
    """
    error = _load_error()
    if error is not None:
        raise RuntimeError(f"exit_update: the C++ ops are unavailable: {error}")
    return torch.ops.linkexit_fast.exit_update(_index(rows), flag.contiguous(),
                                               None if forced is None else forced.contiguous(), exited,
                                               exit_layer, _index(open_ends), int(layer))



def live_rows(dist: torch.Tensor, bound: int, exited: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The rows a layer of the engine judges and updates (:meth:`linkexit_fast.engine.run._Run.run`'s
    ``live_rows``, whose torch path ``((dist <= bound) & ~exited).nonzero()`` is the specification):
    the ``i`` with ``dist[i] <= bound`` (``dist [R]``, int64) and, when ``exited [R]`` (bool) is
    given, not ``exited[i]``, in increasing order, as int64 ``[k]``. One pass instead of four torch
    ops (chunks of 32k rows across threads above that size). Raises RuntimeError naming the argument
    for a wrong dtype or shape, or when the C++ ops are unavailable.
    """
    error = _load_error()
    if error is not None:
        raise RuntimeError(f"live_rows: the C++ ops are unavailable: {error}")
    return torch.ops.linkexit_fast.live_rows(_index(dist), int(bound),
                                             None if exited is None else exited.contiguous())

def linear_act(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], gelu: bool,
               out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.gelu(F.linear(x, weight, bias))`` (GELU in its erf form, ``gelu=True``) or
    ``F.linear(x, weight, bias)``, written once into ``out``: a GNN layer's transform
    (``EarlyExitLinkPredictor.transform``, gcn and resgcn). ``x [k, K]``, ``weight [N, K]``
    (nn.Linear layout), ``bias [N]`` or None (floating, taken as contiguous float32); ``out [k, N]``
    (float32, contiguous, not overlapping ``x``; default: a fresh tensor). Returns ``out``.

    Rows go in blocks across threads (16 kB of ``x`` each: 64 rows at ``K = 64``, 12 at 256); each
    block's outputs are computed in 6 x 16 register tiles (AVX2 + FMA; one FMA chain over ``K``
    per output, then the bias: the same arithmetic for a row whatever the batch), and GELU is
    applied while the block is in cache. torch's ``addmm`` into ``out`` followed by ``gelu``
    passes over ``out`` four times (the bias broadcast, the product, GELU's read and write). GELU
    uses torch's AVX2 approximation of erf (Abramowitz & Stegun 7.1.26, ``|error| <= 1.5e-7``),
    in a form without the ``1 + erf`` cancellation for negative inputs: within ``3e-7 |x|`` of
    ``x Phi(x)``. Without AVX2 the op runs torch's ``addmm`` and ``gelu``.
    Raises RuntimeError naming the argument for a wrong dtype, shape or layout, for an ``out``
    that overlaps ``x``, or when the C++ ops are unavailable.
    """
    error = _load_error()
    if error is not None:
        raise RuntimeError(f"linear_act: the C++ ops are unavailable: {error}")
    if out is None:
        out = torch.empty(x.shape[0], weight.shape[0], dtype=torch.float32, device=x.device)
    return torch.ops.linkexit_fast.linear_act(_real(x), _real(weight), _opt_real(bias), bool(gelu), out)



def aggregate_linear_act(rowptr: torch.Tensor, col: torch.Tensor, weight: torch.Tensor, h: torch.Tensor,
                         rows: torch.Tensor, self_weight: Optional[torch.Tensor], cache: Optional[torch.Tensor],
                         lin_weight: torch.Tensor, lin_bias: Optional[torch.Tensor], gelu: bool,
                         out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A layer's aggregation and transform in one pass: ``linear_act(aggregate_rows(rowptr, col,
    weight, h, rows, self_weight, cache), lin_weight, lin_bias, gelu, out)`` (the specification:
    the same bits), without writing the aggregate out. Arguments as those two ops take them
    (``lin_weight [N, m]``, ``m`` the width of ``h``; ``out [k, N]`` float32, contiguous, not
    overlapping ``h``, ``cache`` or the weights; default: a fresh tensor). Each task aggregates
    its rows (16 kB) in cache and multiplies them there; without AVX2 it runs the two ops.
    Raises RuntimeError as they do (naming the argument or the index out of range), or when the
    C++ ops are unavailable.
    """
    error = _load_error()
    if error is not None:
        raise RuntimeError(f"aggregate_linear_act: the C++ ops are unavailable: {error}")
    if out is None:
        out = torch.empty(rows.shape[0], lin_weight.shape[0], dtype=torch.float32, device=h.device)
    return torch.ops.linkexit_fast.aggregate_linear_act(
        _index(rowptr), _index(col), _real(weight), _real(h), _index(rows), _opt_real(self_weight),
        _opt_real(cache), _real(lin_weight), _opt_real(lin_bias), bool(gelu), out)

def scatter_rows(dst: torch.Tensor, rows: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``dst[rows] = src`` in place, returning ``dst``: ``dst [R, m]`` and ``src [k, m]`` contiguous
    float32, ``rows [k]`` unique ids in ``[0, R)``; what ``dst.index_copy_(0, rows, src)`` (the
    specification) does, a row copy per id across threads (index_copy_ took ~3x the time of a
    gather of the same rows). The engine's scatter of updated states back into ``h``
    (:func:`linkexit_fast.engine.indexing.scatter_rows`). Raises RuntimeError naming the argument
    for a wrong dtype, shape or layout, a row outside ``[0, R)`` (after writing the rest), or when
    the C++ ops are unavailable.
    """
    error = _load_error()
    if error is not None:
        raise RuntimeError(f"scatter_rows: the C++ ops are unavailable: {error}")
    return torch.ops.linkexit_fast.scatter_rows(dst, _index(rows), src)


def bf16_isa() -> Optional[str]:
    """The bf16 hardware :func:`score_pairs_bf16` can use on this CPU: ``"amx-bf16"`` (AMX tiles,
    with AVX512-BF16), ``"avx512-bf16"`` (``vdpbf16ps`` only) or ``None`` (neither, or the C++ ops
    are unavailable or predate the bf16 op). Probed once by the op (cpuid, XCR0, Linux's AMX
    permission request); never raises, never warns."""
    if _load_error() is not None or not hasattr(torch.ops.linkexit_fast, "bf16_cpu_isa"):
        return None
    isa = torch.ops.linkexit_fast.bf16_cpu_isa()
    return None if isa == "none" else isa


def score_pairs_bf16(z: torch.Tensor, u: torch.Tensor, v: torch.Tensor, hidden: Sequence[torch.Tensor],
                     biases: Sequence[torch.Tensor], last: torch.Tensor, bound_vectors: Sequence[torch.Tensor],
                     bound_scale: float, bound_const: float, isa: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """The C++ bf16 pair scorer (``csrc/ops/cpu/score_pairs_bf16_kernel.cpp``): ``(scores [P],
    bound [P])`` float32. Its arguments are built by :mod:`linkexit_fast.backends.bf16`, which
    documents them and derives the bound; use :func:`linkexit_fast.backends.bf16.score_pairs_bf16`.

    ``z [n, m]`` float32, ``u``/``v [P]`` in ``[0, n)``; ``hidden[l]`` bfloat16 ``[t, d_{l+1}, d_l]``
    (``t = 2``: the weight's bf16 rounding and the bf16 rounding of its remainder); ``biases``
    float32, one per layer; ``last`` float32 ``[1, d_{L-1}]``; ``bound_vectors[l]`` float32
    ``[d_l]``. ``bound = bound_const + bound_scale * sum_l bound_vectors[l] . |h_l|`` (``inf``
    where a score or bound is not finite). ``isa``: ``"auto"``, ``"amx-bf16"`` or
    ``"avx512-bf16"``. Raises RuntimeError when :func:`bf16_isa` is ``None`` or lacks ``isa``.
    """
    if bf16_isa() is None:
        raise RuntimeError("score_pairs_bf16: no bf16 C++ kernel here (bf16_isa() is None)")
    return torch.ops.linkexit_fast.score_pairs_bf16(
        _real(z), _index(u), _index(v), list(hidden), [_real(b) for b in biases], _real(last),
        [_real(m) for m in bound_vectors], float(bound_scale), float(bound_const), isa)
