"""GPU check of the Triton backend: correctness on CUDA, then Triton vs torch op timings.

Reproduce (repo root, on a CUDA machine)::

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json

1. Correctness: every case of ``tests/test_triton_ops.py`` (its ``*_CASES`` and ``check_*``) on
   CUDA tensors, plus Triton vs torch on the benchmark inputs themselves.
2. Timing, in one process, with ``torch.cuda.Event`` and medians: ``aggregate_rows`` on
   ``synthetic(1_000_000, 10, 64, 50, 0).graph`` with ``m = 256`` (achieved bandwidth from an
   explicit byte count), ``exit_decision`` on the same rows, ``score_pairs`` on 228k pairs.
3. JSON to ``--out``.

Without CUDA the correctness cases run through the Triton interpreter on their tiny shapes, the
GPU parts are skipped (said so on stdout and in the JSON), and the script exits 0.

4. End to end (:func:`engine_callables`): the engine on the triton and torch backends, the dense
   masked reference and a PyG GCNConv stack, identical weights, on the synthetic graph and
   ogbl-ddi (when ``$LINKEXIT_DATA`` has it).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports the kernels

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a source checkout without installing

from linkexit_fast.backends import torch_ops  # noqa: E402
from linkexit_fast.backends import triton as triton_ops  # noqa: E402


def load_test_cases():
    """``tests/test_triton_ops.py`` as a module: the one source of the correctness cases."""
    path = REPO / "tests" / "test_triton_ops.py"
    spec = importlib.util.spec_from_file_location("test_triton_ops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_correctness(device: str) -> Dict[str, Any]:
    """Every test case on ``device``; failures are recorded, not raised."""
    cases = load_test_cases()
    groups = [("aggregate_rows", cases.AGGREGATE_CASES, cases.check_aggregate),
              ("exit_decision", cases.EXIT_CASES, cases.check_exit),
              ("score_pairs", cases.SCORE_CASES, cases.check_score)]
    failures = {}
    total = 0
    for op, op_cases, check in groups:
        for case in op_cases:
            total += 1
            try:
                check(case, device)
            except Exception as err:  # noqa: BLE001 - recorded and reported, not hidden
                failures[f"{op}[{case.name}]"] = f"{type(err).__name__}: {err}"
    print(f"correctness on {device}: {total - len(failures)}/{total} cases pass "
          f"(atol = rtol = {cases.ATOL:g})")
    for name, msg in failures.items():
        print(f"  FAIL {name}: {msg.splitlines()[0]}")
    return {"device": device, "cases": total, "passed": total - len(failures),
            "failures": failures, "atol": cases.ATOL, "rtol": cases.RTOL}


# ---------------------------------------------------------------------- timing
def time_cuda(fn: Callable[[], Any], warmup: int, repeats: int) -> Dict[str, float]:
    """Per-call CUDA-event times of ``fn`` (host syncs inside ``fn`` included) in ms."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "repeats": repeats}


def compare(fns: Mapping[str, Callable[[], Any]], warmup: int, repeats: int,
            bytes_moved: Optional[int] = None, flops: Optional[int] = None) -> Dict[str, Any]:
    """Time each callable; the first is the baseline. Adds GB/s and TFLOP/s from the given counts."""
    result: Dict[str, Any] = {}
    for name, fn in fns.items():
        stats = time_cuda(fn, warmup, repeats)
        seconds = stats["median_ms"] / 1e3
        if bytes_moved is not None:
            stats["GB_per_s"] = bytes_moved / seconds / 1e9
        if flops is not None:
            stats["TFLOP_per_s"] = flops / seconds / 1e12
        result[name] = stats
    names = list(fns)
    for name in names[1:]:
        result[f"speedup_{name}_vs_{names[0]}"] = (result[names[0]]["median_ms"]
                                                   / result[name]["median_ms"])
    if bytes_moved is not None:
        result["bytes"] = int(bytes_moved)
    if flops is not None:
        result["flops"] = int(flops)
    return result


def engine_callables(split, device: str, num_pairs: int = 200_000) -> Dict[str, Callable[[], Any]]:
    """End-to-end callables on ``split``'s test pairs, identical weights: the engine on the triton
    and torch backends (threshold 0.9 and 1.0), the dense masked reference, and a PyG GCNConv stack.

    The node-exit GCN (L = 3, m = 256) has random weights: this times kernels and bookkeeping, not
    a trained exit policy.
    """
    import linkexit_fast as lf
    from linkexit_fast.evaluate import flatten_eval_pairs
    from linkexit_fast.models import EarlyExitLinkPredictor, ModelConfig
    graph = split.graph.to(device)
    torch.manual_seed(0)
    model = EarlyExitLinkPredictor(ModelConfig(graph.num_features, graph.num_nodes, hidden=256, layers=3,
                                               exit="node")).to(device).eval()
    neg = split.test_neg if split.test_neg.dim() == 2 else split.test_neg.reshape(-1, 2)
    pairs = flatten_eval_pairs(split.test_pos, neg)[:num_pairs].to(device)
    fns: Dict[str, Callable[[], Any]] = {
        "reference": lambda: lf.predict(graph, pairs, 0.9, model=model, backend="reference"),
        "engine_torch": lambda: lf.predict(graph, pairs, 0.9, model=model, backend="torch"),
        "engine_triton": lambda: lf.predict(graph, pairs, 0.9, model=model, backend="triton"),
        "engine_triton_t1": lambda: lf.predict(graph, pairs, 1.0, model=model, backend="triton"),
    }
    try:
        from torch_geometric.nn import GCNConv
    except ImportError:
        return fns
    convs = []
    for lin in model.convs:
        conv = GCNConv(lin.in_features, lin.out_features, cached=True).to(device)
        conv.lin.weight.data.copy_(lin.weight.data)
        conv.bias.data.copy_(lin.bias.data)
        convs.append(conv)
    ei = graph.edge_index()

    @torch.no_grad()
    def pyg():
        h = model.input_features(graph.x)
        for i, conv in enumerate(convs):
            h = conv(h, ei)
            h = torch.nn.functional.gelu(h) if i < len(convs) - 1 else h
        return model.score(h, pairs).sigmoid()
    fns["pyg_fixed_depth"] = pyg
    return fns


def time_engine(fns: Mapping[str, Callable[[], Any]], warmup: int = 1, repeats: int = 5,
                num_pairs: Optional[int] = None) -> Dict[str, Any]:
    """End-to-end engine timings of ``fns`` (see :func:`engine_callables`), with pairs/s.

    Same CUDA-event medians as the op timings; ``num_pairs`` (pairs scored per call) adds a
    pairs-per-second throughput for each callable.
    """
    result = compare(fns, warmup, repeats)
    if num_pairs is not None:
        for name in fns:
            result[name]["pairs_per_s"] = num_pairs / (result[name]["median_ms"] / 1e3)
    return result


def max_error(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> Dict[str, Any]:
    return {"max_abs_err": float((a - b).abs().max()) if a.numel() else 0.0,
            "allclose": bool(torch.allclose(a, b, atol=atol, rtol=rtol)), "atol": atol, "rtol": rtol}


def aggregate_bytes(rowptr: torch.Tensor, rows: torch.Tensor, m: int, self_weight: bool,
                    cache: bool) -> int:
    """Bytes ``aggregate_rows`` must move, each gathered ``h`` row counted at every use.

    Per edge: ``col`` (8) + ``weight`` (4) + an ``h`` row (4 m). Per active row: ``rows`` (8),
    two ``rowptr`` entries (16), the ``out`` row (4 m), with the self term ``self_weight`` (4)
    and ``h[r]`` (4 m), with the cache its row (4 m). The chunk map and hub partials (under 1%
    here) are left out, so this is the useful traffic, a lower bound on what moved.
    """
    edges = int((rowptr[rows + 1] - rowptr[rows]).sum())
    per_row = 8 + 16 + 4 * m + (4 + 4 * m if self_weight else 0) + (4 * m if cache else 0)
    return edges * (8 + 4 + 4 * m) + rows.numel() * per_row


def benchmark(args, device: str = "cuda") -> Dict[str, Any]:
    from linkexit_fast.datasets import synthetic

    torch.backends.cuda.matmul.allow_tf32 = False  # the torch baseline computes in full fp32
    torch.manual_seed(0)
    tol = dict(atol=1e-4, rtol=1e-4)  # large shapes: longer fp32 sums than the unit tests
    results: Dict[str, Any] = {}

    t0 = time.perf_counter()
    split = synthetic(args.nodes, 10, 64, 50, 0)
    graph = split.graph
    print(f"graph: {graph.num_nodes:,} nodes, {graph.col.numel():,} directed edges, max degree "
          f"{int(graph.deg.max()):,} ({time.perf_counter() - t0:.1f} s to build)")
    n, m = graph.num_nodes, args.m
    rowptr, col = graph.rowptr.to(device), graph.col.to(device)
    deg = (rowptr[1:] - rowptr[:-1]).to(torch.float32)
    dinv = (deg + 1).rsqrt()  # GCN normalisation with self-loops
    weight = dinv.repeat_interleave((rowptr[1:] - rowptr[:-1])) * dinv[col]
    self_weight = dinv * dinv
    h = torch.randn(n, m, device=device)
    cache = torch.randn(n, m, device=device)
    subset = torch.randperm(n, device=device)[: n // 10]
    results["graph"] = {"nodes": n, "directed_edges": int(col.numel()),
                        "max_degree": int(graph.deg.max()), "m": m}

    configs = {"all_rows_self": (torch.arange(n, device=device), self_weight, None),
               "10pct_rows_self_cache": (subset, self_weight, cache)}
    agg = {}
    for name, (rows, sw, ca) in configs.items():
        def run_triton(rows=rows, sw=sw, ca=ca):
            return triton_ops.aggregate_rows(rowptr, col, weight, h, rows, sw, ca)

        def run_torch(rows=rows, sw=sw, ca=ca):
            return torch_ops.aggregate_rows(rowptr, col, weight, h, rows, sw, ca)

        entry = {"k": int(rows.numel()), "check": max_error(run_triton(), run_torch(), **tol)}
        entry.update(compare({"torch": run_torch, "triton": run_triton}, args.warmup, args.repeats,
                             bytes_moved=aggregate_bytes(rowptr, rows, m, sw is not None,
                                                         ca is not None)))
        agg[name] = entry
        torch.cuda.empty_cache()
    # The chunk size is the one tuned constant of the aggregation: time the alternatives.
    launcher = triton_ops._kernels("aggregate").aggregate_rows
    rows_all = configs["all_rows_self"][0]
    agg["edges_per_chunk_sweep_all_rows"] = {
        str(c): time_cuda(lambda c=c: launcher(rowptr, col, weight, h, rows_all, self_weight,
                                               edges_per_chunk=c), args.warmup, args.repeats)
        for c in (64, 256, 512, 2048, 1 << 30)}
    results["aggregate_rows"] = agg

    k, hidden = m, 32
    w1, b1 = torch.randn(hidden, k, device=device) / k ** 0.5, torch.randn(hidden, device=device)
    w2, b2 = torch.randn(2, hidden, device=device) / hidden ** 0.5, torch.randn(2, device=device)
    w_nu, b_nu = torch.randn(k, device=device) / k ** 0.5, torch.randn(1, device=device)
    exit_args = (h, w1, b1, w2, b2, 0.5, w_nu, b_nu, 0.1)
    p, _, step = triton_ops.exit_decision(*exit_args)
    p_ref, _, step_ref = torch_ops.exit_decision(*exit_args)
    exit_res = {"n": n, "k": k, "hidden": hidden, "check_p_exit": max_error(p, p_ref, **tol),
                "check_step": max_error(step, step_ref, **tol)}
    exit_res.update(compare({"torch": lambda: torch_ops.exit_decision(*exit_args),
                             "triton": lambda: triton_ops.exit_decision(*exit_args)},
                            args.warmup, args.repeats,
                            bytes_moved=n * k * 4 + n * (4 + 1 + 4),  # h in; p, flag, step out
                            flops=n * (2 * k * hidden + 4 * hidden + 2 * k)))
    results["exit_decision"] = exit_res

    P = args.pairs
    u = torch.randint(0, n, (P,), device=device)
    v = torch.randint(0, n, (P,), device=device)
    scores = {}
    for depth in (2, 3):
        widths = [m] * depth + [1]
        weights = [torch.randn(o, i, device=device) / i ** 0.5 for i, o in zip(widths, widths[1:])]
        biases = [torch.randn(w.shape[0], device=device) for w in weights]
        entry = {"layers": [list(w.shape) for w in weights],
                 "check": max_error(triton_ops.score_pairs(h, u, v, weights, biases),
                                    torch_ops.score_pairs(h, u, v, weights, biases), **tol)}
        entry.update(compare(
            {"torch": lambda w=weights, b=biases: torch_ops.score_pairs(h, u, v, w, b),
             "triton": lambda w=weights, b=biases: triton_ops.score_pairs(h, u, v, w, b)},
            args.warmup, args.repeats,
            bytes_moved=P * (2 * 8 + 2 * 4 * m + 4),  # u, v, two z rows in; one logit out
            flops=P * (m + sum(2 * w.shape[0] * w.shape[1] for w in weights))))
        scores[f"{depth}_layers"] = entry
    results["score_pairs"] = dict(scores, num_pairs=P)

    engine_cases = {"synthetic": split}
    try:
        from linkexit_fast.datasets import data_root, load_ogbl
        engine_cases["ogbl-ddi"] = load_ogbl("ogbl-ddi", data_root())
    except FileNotFoundError as e:
        print(f"ogbl-ddi skipped: {e}")
    results["engine"] = {}
    for name, case in engine_cases.items():
        fns = engine_callables(case, device)
        n_pairs = min(200_000, len(case.test_pos) + case.test_neg.reshape(-1, 2).shape[0])
        results["engine"][name] = time_engine(fns, num_pairs=n_pairs)
    return results


def print_summary(results: Dict[str, Any]) -> None:
    def line(name, entry):
        tri, ref = entry["triton"], entry["torch"]
        extra = "".join(f"  {key} {tri[key]:.3g} (torch {ref[key]:.3g})"
                        for key in ("GB_per_s", "TFLOP_per_s") if key in tri)
        check = entry.get("check", entry.get("check_p_exit", {}))
        print(f"{name:34s} torch {ref['median_ms']:8.3f} ms  triton {tri['median_ms']:8.3f} ms  "
              f"x{entry['speedup_triton_vs_torch']:.2f}{extra}  max|err| "
              f"{check.get('max_abs_err', float('nan')):.2e}")

    for name, entry in results["aggregate_rows"].items():
        if "triton" in entry:
            line(f"aggregate_rows {name}", entry)
    sweep = results["aggregate_rows"]["edges_per_chunk_sweep_all_rows"]
    print("edges_per_chunk sweep (all rows): " + ", ".join(
        f"{c}: {s['median_ms']:.3f} ms" for c, s in sweep.items()))
    line("exit_decision", results["exit_decision"])
    for name, entry in results["score_pairs"].items():
        if isinstance(entry, dict):
            line(f"score_pairs {name}", entry)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu_check.json"))
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--m", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=228_000)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    report: Dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "torch": torch.__version__, "python": platform.python_version(),
        "triton_available": triton_ops.available(),
    }
    if report["triton_available"]:
        import triton
        report["triton"] = triton.__version__
    exit_code = 0
    if not report["triton_available"]:
        report["skipped"] = "triton unavailable: correctness and GPU timing skipped"
        print(report["skipped"])
    else:
        report["correctness"] = run_correctness("cuda" if cuda else "cpu")
        exit_code = 1 if report["correctness"]["failures"] else 0
        if not cuda:
            report["skipped"] = ("no CUDA device: GPU correctness and timing skipped; correctness "
                                 "ran through the Triton interpreter on tiny shapes")
            print(f"GPU parts skipped: {report['skipped']}")
        else:
            print(f"GPU: {report['gpu']}")
            try:
                report["benchmark"] = benchmark(args)
                print_summary(report["benchmark"])
            except Exception:  # noqa: BLE001 - keep what was measured, record the failure
                report["benchmark_error"] = traceback.format_exc()
                print(report["benchmark_error"])
                exit_code = 1

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    print(f"wrote {out}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
