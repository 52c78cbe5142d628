"""Triton ops (``linkexit_fast.backends.triton``) against the torch specification (``torch_ops``).

Without CUDA the kernels run on the CPU through Triton's interpreter, so shapes stay small but
awkward: empty row sets, isolated rows, hub rows spanning several edge chunks, widths that no
block divides (5, 37, 260), single pairs, pairs with u = v, strided inputs, and every
combination of the optional terms.

Tolerances (fp32 in and out, fp32 accumulation): ``atol = rtol = 1e-5``. Kernels sum in a
different order from torch (blocked edges, chunk partials, tl.dot), which moves results by a few
ulps of the largest partial sum; inputs are scaled so values stay O(1). Exit flags (the rule
``l_1 - l_0 >= logit(threshold)``) must equal torch's wherever the margin ``l_1 - l_0`` is more
than ``atol * (1 + |l_0| + |l_1|)`` away from ``logit(threshold)``.

``benchmarks/gpu_check.py`` imports ``AGGREGATE_CASES``, ``EXIT_CASES``, ``SCORE_CASES`` and the
``check_*`` functions to rerun these comparisons on CUDA tensors.
"""
import os

import torch

if not torch.cuda.is_available():
    # Must precede the first import of the kernels: @triton.jit reads it when it decorates.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from itertools import product  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional, Tuple  # noqa: E402

import pytest  # noqa: E402

from conftest import exit_decided  # noqa: E402
from linkexit_fast.backends import torch_ops  # noqa: E402
from linkexit_fast.backends import triton as triton_ops  # noqa: E402

ATOL = RTOL = 1e-5
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
REPO = Path(__file__).resolve().parents[1]

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None or not triton_ops.available(),
    reason="triton is not installed, or there is neither a CUDA device nor TRITON_INTERPRET=1")


# ---------------------------------------------------------------------- aggregate_rows
@dataclass(frozen=True)
class AggregateCase:
    name: str
    m: int
    rows: str                       # "empty", "isolated", "mixed" (hub, isolated, duplicates), "all",
                                    # "hub_x6" (the hub six times: more extra chunks than slots)
    self_weight: bool = False
    cache: bool = False
    hub_degree: int = 0             # edges of node 0; 0 = no hub
    edges_per_chunk: Optional[int] = None   # None = the kernel's default
    strided_h: bool = False         # h is a column slice of a wider tensor
    synthetic: bool = False         # a small synthetic graph with GCN weights instead
    map_block: Optional[int] = None  # rows per block of the one-program chunk map; 0 = torch's map


_AGGREGATE_SHAPES = [
    AggregateCase("empty_rows", m=5, rows="empty"),
    AggregateCase("isolated_rows", m=5, rows="isolated"),
    AggregateCase("mixed_m37", m=37, rows="mixed"),
    # degree 600 > the default 512-edge chunk > BLOCK_E: two chunks and one partial slot
    AggregateCase("hub_default_chunk", m=5, rows="mixed", hub_degree=600),
    # 16-edge chunks: the hub spans 19 chunks, more than one block of the partial-sum pass
    AggregateCase("hub_many_chunks", m=37, rows="mixed", hub_degree=300, edges_per_chunk=16),
    # six copies of a 19-chunk hub need ~108 extra chunks, the graph's edges only ~25 slots: the
    # launcher must widen the chunks on the device
    AggregateCase("hub_repeated", m=37, rows="hub_x6", hub_degree=300, edges_per_chunk=16),
    AggregateCase("wide_m260", m=260, rows="mixed", hub_degree=40, edges_per_chunk=16),
    # the chunk map built by torch ops, and by one program in 4-row blocks (several per pass)
    AggregateCase("hub_torch_map", m=37, rows="mixed", hub_degree=300, edges_per_chunk=16, map_block=0),
    AggregateCase("hub_repeated_torch_map", m=37, rows="hub_x6", hub_degree=300, edges_per_chunk=16,
                  map_block=0),
    AggregateCase("hub_map_blocks", m=37, rows="mixed", hub_degree=300, edges_per_chunk=16, map_block=4),
    AggregateCase("strided_h", m=37, rows="mixed", strided_h=True),
    AggregateCase("synthetic_all_rows", m=8, rows="all", synthetic=True),
]
AGGREGATE_CASES = [
    AggregateCase(**{**c.__dict__, "name": f"{c.name}-self{int(s)}-cache{int(k)}",
                     "self_weight": s, "cache": k})
    for c, (s, k) in product(_AGGREGATE_SHAPES, product((False, True), repeat=2))
]


def make_aggregate_inputs(case: AggregateCase, device) -> dict:
    g = torch.Generator().manual_seed(0)
    if case.synthetic:
        from linkexit_fast.datasets import synthetic
        graph = synthetic(300, 6.0, 4, 4, seed=0).graph
        rowptr, col, n = graph.rowptr, graph.col, graph.num_nodes
        dinv = (rowptr[1:] - rowptr[:-1] + 1).to(torch.float32).rsqrt()
        row_of_edge = torch.repeat_interleave(torch.arange(n), rowptr[1:] - rowptr[:-1])
        weight = dinv[row_of_edge] * dinv[col]
    else:
        n = 40
        deg = torch.randint(0, 6, (n,), generator=g)
        deg[1::7] = 0  # isolated nodes
        deg[0] = case.hub_degree
        rowptr = torch.zeros(n + 1, dtype=torch.int64)
        torch.cumsum(deg, 0, out=rowptr[1:])
        col = torch.randint(0, n, (int(rowptr[-1]),), generator=g)
        # 1/deg-scaled weights keep every sum O(1), as normalised adjacencies do
        weight = torch.rand(col.numel(), generator=g) / deg.clamp(min=1).repeat_interleave(deg)
    h = torch.randn(n, 2 * case.m, generator=g)
    h = h[:, ::2] if case.strided_h else h[:, :case.m].contiguous()
    isolated = torch.nonzero(rowptr[1:] == rowptr[:-1]).squeeze(1)
    rows = {"empty": torch.empty(0, dtype=torch.int64),
            "isolated": isolated,
            "mixed": torch.cat([torch.tensor([0, 3, 0]), isolated[:2], torch.arange(5, n, 3)]),
            "all": torch.arange(n),
            "hub_x6": torch.tensor([0] * 6 + [3])}[case.rows]
    return dict(rowptr=rowptr.to(device), col=col.to(device), weight=weight.to(device),
                h=h.to(device), rows=rows.to(device),
                self_weight=torch.rand(n, generator=g).to(device) if case.self_weight else None,
                cache=torch.randn(n, case.m, generator=g).to(device) if case.cache else None)


def check_aggregate(case: AggregateCase, device) -> None:
    args = make_aggregate_inputs(case, device)
    if case.edges_per_chunk is None and case.map_block is None:
        out = triton_ops.aggregate_rows(**args)
    else:  # chunk size and map building are launcher knobs, below the public op
        knobs = {} if case.edges_per_chunk is None else {"edges_per_chunk": case.edges_per_chunk}
        if case.map_block == 0:
            knobs["map_one_program_rows"] = 0
        elif case.map_block is not None:
            knobs["map_block"] = case.map_block
        out = triton_ops._kernels("aggregate").aggregate_rows(**args, **knobs)
    ref = torch_ops.aggregate_rows(**args)
    assert out.shape == ref.shape == (args["rows"].numel(), case.m)
    assert out.dtype == torch.float32 and out.device == ref.device
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=RTOL)


@needs_triton
@pytest.mark.parametrize("case", AGGREGATE_CASES, ids=lambda c: c.name)
def test_aggregate_rows(case):
    check_aggregate(case, DEVICE)


# ---------------------------------------------------------------------- exit_decision
@dataclass(frozen=True)
class ExitCase:
    name: str
    n: int
    k: int
    hidden: int = 32
    temperature: bool = False
    tau0: float = 0.0
    threshold: float = 0.5
    strided_h: bool = False


_EXIT_SHAPES = [
    ExitCase("empty", n=0, k=5),
    ExitCase("one_row", n=1, k=5),
    ExitCase("n70_k37", n=70, k=37, threshold=0.3),       # two row blocks, a ragged one
    ExitCase("k100_hidden20", n=9, k=100, hidden=20),      # several k steps, hidden not 2^i
    ExitCase("strided_h", n=20, k=37, strided_h=True),
]
EXIT_CASES = [ExitCase(**{**c.__dict__, "name": f"{c.name}-nu0", "temperature": False})
              for c in _EXIT_SHAPES]
EXIT_CASES += [ExitCase(**{**c.__dict__, "name": f"{c.name}-nu-tau{tau0:g}", "temperature": True,
                           "tau0": tau0})
               for c, tau0 in product(_EXIT_SHAPES, (0.0, -5.0, 2.0))]  # -5: nu clamps at 0.1


def make_exit_inputs(case: ExitCase, device) -> dict:
    g = torch.Generator().manual_seed(1)
    h = torch.randn(case.n, 2 * case.k, generator=g)
    h = h[:, ::2] if case.strided_h else h[:, :case.k].contiguous()
    args = dict(h=h, w1=torch.randn(case.hidden, case.k, generator=g) / case.k ** 0.5,
                b1=torch.randn(case.hidden, generator=g),
                w2=torch.randn(2, case.hidden, generator=g) / case.hidden ** 0.5,
                b2=torch.randn(2, generator=g),
                w_nu=torch.randn(case.k, generator=g) / case.k ** 0.5 if case.temperature else None,
                b_nu=torch.randn(1, generator=g) if case.temperature else None)
    args = {key: None if t is None else t.to(device) for key, t in args.items()}
    return dict(args, threshold=case.threshold, tau0=case.tau0)


def check_exit(case: ExitCase, device) -> None:
    args = make_exit_inputs(case, device)
    p, flag, step = triton_ops.exit_decision(**args)
    p_ref, flag_ref, step_ref = torch_ops.exit_decision(**args)
    torch.testing.assert_close(p, p_ref, atol=ATOL, rtol=RTOL)
    assert flag.dtype == torch.bool and flag.shape == (case.n,)
    logits = torch.relu(args["h"] @ args["w1"].T + args["b1"]) @ args["w2"].T + args["b2"]
    clear = exit_decided(logits, case.threshold)
    assert torch.equal(flag[clear], flag_ref[clear])
    if case.temperature:
        torch.testing.assert_close(step, step_ref, atol=ATOL, rtol=RTOL)
    else:
        assert step is None and step_ref is None


@needs_triton
@pytest.mark.parametrize("case", EXIT_CASES, ids=lambda c: c.name)
def test_exit_decision(case):
    check_exit(case, DEVICE)


# ---------------------------------------------------------------------- score_pairs
@dataclass(frozen=True)
class ScoreCase:
    name: str
    m: int
    hidden: Tuple[int, ...]         # widths of the Linear+ReLU layers before the final Linear
    num_pairs: int
    self_pairs: bool = False        # every pair is (u, u)
    chunk: int = 4096
    strided: bool = False           # z a column slice, weights transposed views


SCORE_CASES = [
    ScoreCase("no_pairs", m=5, hidden=(16,), num_pairs=0),
    ScoreCase("one_pair", m=37, hidden=(16,), num_pairs=1),
    ScoreCase("self_pairs", m=37, hidden=(13,), num_pairs=20, self_pairs=True),
    ScoreCase("single_linear_m5", m=5, hidden=(), num_pairs=45),
    ScoreCase("two_layers_m37", m=37, hidden=(40,), num_pairs=45),   # two BLOCK_J steps
    ScoreCase("three_layers_chunked", m=5, hidden=(13, 7), num_pairs=45, chunk=16),
    ScoreCase("four_layers_chunked", m=37, hidden=(20, 9, 11), num_pairs=45, chunk=16),
    ScoreCase("wide_m300", m=300, hidden=(24,), num_pairs=3),
    ScoreCase("strided_three_layers", m=37, hidden=(17, 6), num_pairs=33, strided=True),
]


def make_score_inputs(case: ScoreCase, device) -> dict:
    g = torch.Generator().manual_seed(2)
    n = 30
    z = torch.randn(n, 2 * case.m, generator=g)
    z = z[:, ::2] if case.strided else z[:, :case.m].contiguous()
    u = torch.randint(0, n, (case.num_pairs,), generator=g)
    v = u.clone() if case.self_pairs else torch.randint(0, n, (case.num_pairs,), generator=g)
    widths = (case.m,) + case.hidden + (1,)
    weights = [torch.randn(o, i, generator=g) / i ** 0.5 for i, o in zip(widths, widths[1:])]
    if case.strided:
        weights = [w.T.contiguous().T for w in weights]
    biases = [torch.randn(w.shape[0], generator=g) for w in weights]
    return dict(z=z.to(device), u=u.to(device), v=v.to(device),
                weights=[w.to(device) for w in weights], biases=[b.to(device) for b in biases],
                chunk=case.chunk)


def check_score(case: ScoreCase, device) -> None:
    args = make_score_inputs(case, device)
    out = triton_ops.score_pairs(**args)
    ref = torch_ops.score_pairs(**args)
    assert out.shape == (case.num_pairs,) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=RTOL)


@needs_triton
@pytest.mark.parametrize("case", SCORE_CASES, ids=lambda c: c.name)
def test_score_pairs(case):
    check_score(case, DEVICE)


# ---------------------------------------------------------------------- boundary
@needs_triton
def test_errors_name_the_argument():
    agg = make_aggregate_inputs(AGGREGATE_CASES[0], DEVICE)
    with pytest.raises(ValueError, match="rows must have dtype torch.int64"):
        triton_ops.aggregate_rows(**dict(agg, rows=agg["rows"].to(torch.int32)))
    with pytest.raises(ValueError, match="rows must be on"):
        triton_ops.aggregate_rows(**dict(agg, rows=agg["rows"].to("meta")))
    with pytest.raises(ValueError, match=r"cache must have shape \[40, 5\]"):
        triton_ops.aggregate_rows(**dict(agg, cache=torch.zeros(40, 6, device=DEVICE)))
    ex = make_exit_inputs(EXIT_CASES[1], DEVICE)
    with pytest.raises(ValueError, match=r"w2 must have shape \[2, 32\]"):
        triton_ops.exit_decision(**dict(ex, w2=ex["w2"][:1]))
    with pytest.raises(ValueError, match="w_nu and b_nu must be given together"):
        triton_ops.exit_decision(**dict(ex, w_nu=torch.zeros(5, device=DEVICE)))
    sc = make_score_inputs(SCORE_CASES[1], DEVICE)
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape \[1, 16\]"):
        triton_ops.score_pairs(**dict(sc, weights=[sc["weights"][0], sc["weights"][1].repeat(2, 1)]))
    with pytest.raises(ValueError, match="layer input width needs a block of 1024"):
        triton_ops.score_pairs(**dict(sc, z=torch.zeros(30, 600, device=DEVICE),
                                      weights=[torch.zeros(16, 600, device=DEVICE),
                                               sc["weights"][1]]))


def test_import_without_triton():
    """The kernels package and the backend import, and report unavailable, when triton is absent."""
    code = "\n".join([
        "import sys",
        "sys.modules['triton'] = None  # makes `import triton` fail",
        "try:",
        "    import linkexit_fast.kernels",
        "except ModuleNotFoundError as err:  # a source checkout: not installed, mapped on use",
        "    assert err.name == 'linkexit_fast.kernels', err",
        "from linkexit_fast.backends import triton as t",
        "assert t.available() is False",
        "import torch",
        "try:",
        "    t.exit_decision(torch.zeros(1, 4), torch.zeros(32, 4), torch.zeros(32),",
        "                    torch.zeros(2, 32), torch.zeros(2), 0.5)",
        "except RuntimeError as err:",
        "    assert 'triton' in str(err), err",
        "else:",
        "    raise AssertionError('expected RuntimeError')",
    ])
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
