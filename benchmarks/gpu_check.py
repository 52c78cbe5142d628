"""GPU check of the Triton backend: correctness on CUDA, op timings, end-to-end engine timings.

Reproduce (repo root, on a CUDA machine; ``$LINKEXIT_DATA`` holding ``ogbl_ddi`` and
``$LINKEXIT_BENCH_RUNS`` the trained benchmark checkpoints of ``test_engine_bench.py``)::

    pip install --no-deps -e . && python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json

On a CPU, ``python benchmarks/gpu_check.py --smoke`` runs every part through the Triton
interpreter on tiny shapes (a dry run of the script, no meaningful timings).

1. Correctness: every case of ``tests/test_triton_ops.py`` (its ``*_CASES`` and ``check_*``) on
   CUDA tensors, plus Triton vs torch on the benchmark inputs themselves.
2. Timing, in one process, with ``torch.cuda.Event`` and medians: ``aggregate_rows`` on
   ``synthetic(1_000_000, 10, 64, 50, 0).graph`` with ``m = 256`` (achieved bandwidth from an
   explicit byte count), ``exit_decision`` on the same rows, ``score_pairs`` on 228k pairs.
3. JSON to ``--out``.

Without CUDA the correctness cases run through the Triton interpreter on their tiny shapes, the
GPU parts are skipped (said so on stdout and in the JSON), and the script exits 0.

4. End to end (:func:`engine_case`): the engine on the triton and torch backends, the dense
   masked reference and a PyG GCNConv stack, identical weights, on the full test sets of the
   1M-node synthetic graph and ogbl-ddi (when ``$LINKEXIT_DATA`` has it), with Eq. 6 FLOPs,
   agreement with the reference, and the issue's three targets evaluated in ``targets``.

The JSON is rewritten after every part, so a run cut short keeps what it measured.
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

sys.path.insert(0, str(REPO / "benchmarks"))  # test_engine_bench: the PyG baseline
from linkexit_fast.backends import torch_ops  # noqa: E402
from linkexit_fast.backends import triton as triton_ops  # noqa: E402
from linkexit_fast.timing import round_order  # noqa: E402


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
def time_calls(fn: Callable[[], Any], warmup: int, repeats: int) -> Dict[str, float]:
    """Per-call times of ``fn`` in ms: CUDA events on a GPU (host syncs inside ``fn`` included),
    the wall clock otherwise (the ``--smoke`` dry run)."""
    cuda = torch.cuda.is_available()
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(max(repeats, 1)):
        if cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "repeats": repeats}


def time_interleaved(fns: Mapping[str, Callable[[], Any]], warmup: int,
                     repeats: int) -> Dict[str, Dict[str, Any]]:
    """Per-call times of each callable, in rounds of one call each, so that drift in the host's
    speed (ogbl-ddi's calls are host-bound) hits every variant alike. A variant that raises (e.g.
    out of memory) is recorded with its error and dropped; the others go on."""
    times: Dict[str, list] = {}
    errors: Dict[str, str] = {}

    def call(name: str, w: int) -> None:
        try:
            times.setdefault(name, []).append(time_calls(fns[name], w, 1)["median_ms"])
        except Exception as err:  # noqa: BLE001
            errors[name] = f"{type(err).__name__}: {str(err).splitlines()[0]}"
            times.pop(name, None)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    for r in range(max(repeats, 1)):
        for name in round_order([n for n in fns if n not in errors], r):
            call(name, warmup if r == 0 else 0)  # the first round warms each variant up first
    return {name: {"error": errors[name]} if name in errors else
            {"median_ms": statistics.median(times[name]), "min_ms": min(times[name]),
             "max_ms": max(times[name]), "repeats": len(times[name])} for name in fns}


def compare(fns: Mapping[str, Callable[[], Any]], warmup: int, repeats: int,
            bytes_moved: Optional[int] = None, flops: Optional[int] = None) -> Dict[str, Any]:
    """Time each callable; the first is the baseline. Adds GB/s and TFLOP/s from the given counts."""
    result: Dict[str, Any] = {}
    for name, fn in fns.items():
        stats = time_calls(fn, warmup, repeats)
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


# ---------------------------------------------------------------------- end to end
RUNS = Path(os.environ.get("LINKEXIT_BENCH_RUNS", REPO / "runs" / "bench"))
THRESHOLD = 0.9  # the engine benchmarks' threshold (test_engine_bench.py)
OTHER_THRESHOLDS = (0.5, 1.0)


def bench_model(name: str, split, device: str):
    """The trained checkpoint ``$LINKEXIT_BENCH_RUNS/name`` that ``test_engine_bench.py`` serves
    (node-exit GCNs, L = 3, m = 256), else a random-weight node-exit GCN of that size, labelled so:
    random heads rarely exit, so it times kernels and bookkeeping, not an exit policy."""
    import linkexit_fast as lf
    from linkexit_fast.models import EarlyExitLinkPredictor, ModelConfig
    path = RUNS / name
    if (path / "model.safetensors").exists():
        return lf.load(path).model.to(device).eval(), f"trained checkpoint {path.name}"
    torch.manual_seed(0)
    g = split.graph
    model = EarlyExitLinkPredictor(ModelConfig(g.num_features, g.num_nodes, hidden=256, layers=3,
                                               exit="node"))
    return model.to(device).eval(), f"random weights (no checkpoint at {path})"


def stats_summary(stats, layers: int) -> Dict[str, Any]:
    """An ``EngineStats`` as JSON, with the endpoints' exit-layer histogram."""
    d = stats.as_dict()
    ex = stats.exit_layer.flatten()
    d["exit_layer_histogram"] = torch.bincount(ex.cpu(), minlength=layers + 1).tolist()
    d["mean_exit_layer"] = float(ex.float().mean())
    d["flop_ratio"] = stats.flops_dense / stats.flops
    d["note"] = "time_gnn/time_decoder are host-clock stage splits (asynchronous on a GPU)"
    return d


def engine_case(split, model, device: str, warmup: int, repeats: int,
                max_pairs: Optional[int] = None) -> Dict[str, Any]:
    """The full test evaluation of ``split``, identical weights: the dense masked reference, the
    engine on the torch and triton backends (threshold 0.9), the triton engine at thresholds 0.5
    and 1.0 (no early exits), and a PyG GCNConv stack at fixed depth."""
    import linkexit_fast as lf
    from linkexit_fast.evaluate import flatten_eval_pairs
    from test_engine_bench import pyg_fixed_depth  # the benchmarks' one PyG baseline

    graph = split.graph.to(device)
    pairs = flatten_eval_pairs(split.test_pos, split.test_neg)[:max_pairs].to(device)
    res: Dict[str, Any] = {"nodes": graph.num_nodes, "directed_edges": int(graph.col.numel()),
                           "pairs": int(pairs.shape[0]), "threshold": THRESHOLD}

    def run(backend, threshold=THRESHOLD, stats=False, plan="auto"):
        return lf.predict(graph, pairs, threshold, model=model, backend=backend, return_stats=stats, plan=plan)

    s_ref, st_ref = run("reference", stats=True)
    s_tri, st_tri = run("triton", stats=True)
    s_tor = run("torch")
    res["check"] = {
        "triton_vs_reference": max_error(s_tri, s_ref, atol=1e-5, rtol=0.0),
        "triton_vs_torch": max_error(s_tri, s_tor, atol=1e-5, rtol=0.0),
        "pairs_off_by_more_than_1e-5": int(((s_tri - s_ref).abs() > 1e-5).sum()),
        "pairs_with_an_endpoint_exit_layer_differing": int(
            (st_tri.exit_layer != st_ref.exit_layer).any(1).sum()),
    }
    L = model.config.layers
    res[f"stats_triton_t{THRESHOLD}"] = stats_summary(st_tri, L)
    res["plan_auto_first_call"] = st_tri.plan  # the planner's choice before it knew the exits
    res["stats_reference"] = {"flops": st_ref.flops, "flops_paper": st_ref.flops_paper}
    del s_ref, s_tri, s_tor
    for t in OTHER_THRESHOLDS:  # more (t = 0.5) or no (t = 1.0) early exits, same weights
        s_t, st_t = run("triton", t, stats=True)
        s_r, st_r = run("reference", t, stats=True)
        res["check"][f"t{t}_pairs_off_by_more_than_1e-5"] = int(((s_t - s_r).abs() > 1e-5).sum())
        res["check"][f"t{t}_pairs_with_an_endpoint_exit_layer_differing"] = int(
            (st_t.exit_layer != st_r.exit_layer).any(1).sum())
        res[f"stats_triton_t{t}"] = stats_summary(st_t, L)
        del s_t, s_r

    fns = {"reference": lambda: run("reference"),
           "engine_torch": lambda: run("torch"),
           "engine_triton": lambda: run("triton"),
           **{f"engine_triton_t{t}": (lambda t=t: run("triton", t)) for t in OTHER_THRESHOLDS},
           # The planner's two paths, forced (engine_triton above is plan "auto"): auto / best.
           "engine_triton_plan_dense": lambda: run("triton", plan="dense"),
           "engine_triton_plan_engine": lambda: run("triton", plan="engine"),
           "pyg_fixed_depth": lambda: pyg_fixed_depth(graph, pairs, model)}
    res["timings"] = time_interleaved(fns, warmup, repeats)
    for entry in res["timings"].values():
        if "median_ms" in entry:
            entry["pairs_per_s"] = pairs.shape[0] / (entry["median_ms"] / 1e3)
    if torch.cuda.is_available():
        res["profile_engine_triton"] = profile(fns["engine_triton"])
        res["profile_reference"] = profile(fns["reference"])
    return res


def profile(fn: Callable[[], Any], rows: int = 25) -> Dict[str, Any]:
    """One call under torch.profiler: where the time of an end-to-end call goes."""
    from torch.profiler import ProfilerActivity
    with torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = prof.key_averages()
    return {"by_cuda_time": events.table(sort_by="self_cuda_time_total", row_limit=rows),
            "by_cpu_time": events.table(sort_by="self_cpu_time_total", row_limit=rows),
            "kernel_launches": int(sum(e.count for e in events if "cudaLaunchKernel" in e.key
                                       or "cuLaunchKernel" in e.key)),
            "syncs": int(sum(e.count for e in events if "Synchronize" in e.key
                             or "cudaMemcpy" in e.key))}


def evaluate_targets(results: Dict[str, Any]) -> Dict[str, Any]:
    """The issue's three GPU targets, as ratios of numbers measured in this run."""
    out: Dict[str, Any] = {}
    for name, case in results.get("engine", {}).items():
        if not case.get("full_evaluation"):
            continue  # the targets are about full evaluations; small queries are reported as timed
        t = case.get("timings", {})
        ms = {k: v.get("median_ms") for k, v in t.items()}
        entry: Dict[str, Any] = {}
        for t in (THRESHOLD, OTHER_THRESHOLDS[0]):
            engine = "engine_triton" if t == THRESHOLD else f"engine_triton_t{t}"
            if ms.get("reference") and ms.get(engine):
                speedup = ms["reference"] / ms[engine]
                ratio = case[f"stats_triton_t{t}"]["flop_ratio"]
                entry[f"speedup_vs_reference_t{t}"] = {
                    "speedup": speedup, "flop_ratio": ratio, "needed": 0.7 * ratio,
                    "met": speedup >= 0.7 * ratio}
        if ms.get("pyg_fixed_depth") and ms.get("engine_triton_t1.0"):
            over = ms["engine_triton_t1.0"] / ms["pyg_fixed_depth"]
            entry["no_exit_overhead_vs_pyg"] = {"ratio": over, "needed": "<= 1.2", "met": over <= 1.2}
        out[name] = entry
    agg = results.get("aggregate_rows", {}).get("all_rows_self", {}).get("triton", {})
    peak = results.get("copy_bandwidth", {}).get("GB_per_s")
    if agg.get("GB_per_s") and peak:
        share = agg["GB_per_s"] / peak
        out["aggregation_bandwidth"] = {"GB_per_s": agg["GB_per_s"], "copy_GB_per_s": peak,
                                        "share_of_copy": share, "needed": ">= 0.5",
                                        "met": share >= 0.5}
    return out


# ---------------------------------------------------------------------- ops
def copy_bandwidth(device: str, nbytes: int) -> Dict[str, Any]:
    """The memory ceiling as this card delivers it: a device-to-device copy, bytes read + written."""
    x = torch.randn(nbytes // 4, device=device)
    y = torch.empty_like(x)
    t = time_calls(lambda: y.copy_(x), 3, 20)
    return dict(t, bytes=2 * nbytes, GB_per_s=2 * nbytes / (t["median_ms"] / 1e3) / 1e9)


def kernel_resources() -> Dict[str, Any]:
    """Registers, spills and shared memory of every compiled kernel variant (best effort: the
    cache layout differs between Triton versions; empty under the interpreter)."""
    import triton
    out: Dict[str, Any] = {}
    for mod in ("aggregate", "exit_head", "score_pairs"):
        kmod = triton_ops._kernels(mod)
        for name, fn in vars(kmod).items():
            caches = getattr(fn, "device_caches", None) if isinstance(fn, triton.runtime.JITFunction) else None
            for entry in (caches or {}).values():
                cache = entry[0] if isinstance(entry, tuple) else entry
                for k in getattr(cache, "values", lambda: [])():
                    try:
                        out.setdefault(name, []).append({
                            "n_regs": k.n_regs, "n_spills": k.n_spills,
                            "num_warps": k.metadata.num_warps, "shared": k.metadata.shared})
                    except Exception as err:  # noqa: BLE001
                        out.setdefault(name, []).append({"error": str(err)})
    return out


def op_benchmarks(args, device: str, results: Dict[str, Any], save: Callable[[], None]) -> None:
    from linkexit_fast.datasets import synthetic

    torch.backends.cuda.matmul.allow_tf32 = False  # the torch baseline computes in full fp32
    torch.manual_seed(0)
    tol = dict(atol=1e-4, rtol=1e-4)  # large shapes: longer fp32 sums than the unit tests
    results["copy_bandwidth"] = copy_bandwidth(device, args.copy_bytes)
    print(f"device-to-device copy: {results['copy_bandwidth']['GB_per_s']:.0f} GB/s", flush=True)

    t0 = time.perf_counter()
    split = synthetic(args.nodes, 10, 64, 50, 0)
    graph = split.graph
    print(f"graph: {graph.num_nodes:,} nodes, {graph.col.numel():,} directed edges, max degree "
          f"{int(graph.deg.max()):,} ({time.perf_counter() - t0:.1f} s to build)", flush=True)
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
    # The tiling constants of the aggregation, timed against alternatives on all rows.
    launcher = triton_ops._kernels("aggregate").aggregate_rows
    rows_all = configs["all_rows_self"][0]
    nbytes = aggregate_bytes(rowptr, rows_all, m, True, False)
    sweep = {}
    for chunk, block_e, warps in [(512, 16, 4), (512, 8, 4), (512, 4, 4), (512, 8, 2),
                                  (512, 16, 8), (256, 8, 4), (2048, 8, 4), (1 << 30, 8, 4)]:
        t = time_calls(lambda: launcher(rowptr, col, weight, h, rows_all, self_weight,
                                        edges_per_chunk=chunk, block_e=block_e, num_warps=warps),
                       args.warmup, args.repeats)
        t["GB_per_s"] = nbytes / (t["median_ms"] / 1e3) / 1e9
        sweep[f"chunk={chunk},block_e={block_e},warps={warps}"] = t
    agg["tiling_sweep_all_rows"] = sweep
    results["aggregate_rows"] = agg
    del cache
    save()

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
    exit_kernel = triton_ops._kernels("exit_head").exit_decision
    # The launcher takes the logit-margin bound in the threshold's place (torch_ops.exit_margin_bound).
    kernel_args = exit_args[:5] + (torch_ops.exit_margin_bound(exit_args[5]),) + exit_args[6:]
    exit_sweep = {}
    for block_n, block_k, warps, precision in [(64, 32, 4, "ieee"), (128, 32, 4, "ieee"),
                                               (64, 64, 4, "ieee"), (128, 64, 8, "ieee"),
                                               (64, 32, 4, "tf32x3"), (128, 64, 8, "tf32x3")]:
        kw = dict(block_n=block_n, block_k=block_k, num_warps=warps, precision=precision)
        try:
            p_var = exit_kernel(*kernel_args, **kw)[0]
            t = time_calls(lambda kw=kw: exit_kernel(*kernel_args, **kw), args.warmup, args.repeats)
            t["max_abs_err_p_exit"] = float((p_var - p_ref).abs().max())
        except Exception as err:  # noqa: BLE001 - a variant that fails to compile is a result
            t = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        exit_sweep[f"block_n={block_n},block_k={block_k},warps={warps},{precision}"] = t
    exit_res["tiling_sweep"] = exit_sweep
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
        score_kernel = triton_ops._kernels("score_pairs").score_pairs
        ref64 = torch_ops.score_pairs(h.double(), u, v, [w.double() for w in weights],
                                      [b.double() for b in biases])
        entry["tiling_sweep"] = {}
        for precision, block_p, warps in [("ieee", 16, 8), ("tf32x3", 16, 8), ("tf32x3", 16, 4),
                                          ("tf32x3", 32, 8), ("tf32x3", 64, 8)]:
            kw = dict(precision=precision, block_p=block_p, num_warps=warps)
            try:
                out_var = score_kernel(h, u, v, weights, biases, **kw)
                t = time_calls(lambda kw=kw, w=weights, b=biases: score_kernel(h, u, v, w, b, **kw),
                               args.warmup, args.repeats)
                t["max_abs_err_vs_float64"] = float((out_var.double() - ref64).abs().max())
            except Exception as err:  # noqa: BLE001 - a variant that fails to compile is a result
                t = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
            entry["tiling_sweep"][f"{precision},block_p={block_p},warps={warps}"] = t
        entry["torch_max_abs_err_vs_float64"] = float(
            (torch_ops.score_pairs(h, u, v, weights, biases).double() - ref64).abs().max())
        scores[f"{depth}_layers"] = entry
    results["score_pairs"] = dict(scores, num_pairs=P)
    results["kernel_resources"] = kernel_resources()
    save()
    return split


def engine_benchmarks(args, device: str, synthetic_split, results: Dict[str, Any],
                      save: Callable[[], None]) -> None:
    from linkexit_fast.datasets import data_root, load_ogbl

    # (name, checkpoint, split, pair cap): two full test evaluations and one small query
    cases = [("synthetic", "synthetic", lambda: synthetic_split, args.max_pairs),
             ("synthetic-100-pairs", "synthetic", lambda: synthetic_split, 100)]
    if not args.skip_ddi:
        cases.append(("ogbl-ddi", "ddi", lambda: load_ogbl("ogbl-ddi", data_root()), args.max_pairs))
    results["engine"] = {}
    for name, checkpoint, load, max_pairs in cases:
        t0 = time.perf_counter()
        try:
            split = load()
            model, source = bench_model(checkpoint, split, device)
            entry = engine_case(split, model, device, args.engine_warmup, args.engine_repeats,
                                max_pairs)
            entry["model"] = source
            entry["full_evaluation"] = max_pairs == args.max_pairs
        except FileNotFoundError as err:
            entry = {"skipped": str(err)}
        except Exception:  # noqa: BLE001 - keep the other case's numbers
            entry = {"error": traceback.format_exc()}
        entry["seconds_for_case"] = time.perf_counter() - t0
        results["engine"][name] = entry
        results["targets"] = evaluate_targets(results)
        save()
        print(f"engine case {name}: {entry.get('error', 'done')} ({entry['seconds_for_case']:.0f} s)",
              flush=True)


def print_summary(results: Dict[str, Any]) -> None:
    def line(name, entry):
        tri, ref = entry["triton"], entry["torch"]
        extra = "".join(f"  {key} {tri[key]:.3g} (torch {ref[key]:.3g})"
                        for key in ("GB_per_s", "TFLOP_per_s") if key in tri)
        check = entry.get("check", entry.get("check_p_exit", {}))
        print(f"{name:34s} torch {ref['median_ms']:8.3f} ms  triton {tri['median_ms']:8.3f} ms  "
              f"x{entry['speedup_triton_vs_torch']:.2f}{extra}  max|err| "
              f"{check.get('max_abs_err', float('nan')):.2e}")

    if "copy_bandwidth" in results:
        print(f"copy ceiling {results['copy_bandwidth']['GB_per_s']:.0f} GB/s")
    for name, entry in results.get("aggregate_rows", {}).items():
        if "triton" in entry:
            line(f"aggregate_rows {name}", entry)
    for cfg, t in results.get("aggregate_rows", {}).get("tiling_sweep_all_rows", {}).items():
        print(f"  sweep {cfg:36s} {t['median_ms']:8.3f} ms  {t['GB_per_s']:.0f} GB/s")
    if "exit_decision" in results:
        line("exit_decision", results["exit_decision"])
    for name, entry in results.get("score_pairs", {}).items():
        if isinstance(entry, dict):
            line(f"score_pairs {name}", entry)
    for name, entry in results.get("exit_decision", {}).get("tiling_sweep", {}).items():
        print(f"  exit sweep {name:44s} " + (f"{entry['median_ms']:8.3f} ms  err {entry['max_abs_err_p_exit']:.1e}"
                                               if "error" not in entry else entry["error"][:100]))
    for depth in ("2_layers", "3_layers"):
        for name, entry in results.get("score_pairs", {}).get(depth, {}).get("tiling_sweep", {}).items():
            print(f"  score {depth} {name:28s} " + (
                f"{entry['median_ms']:8.3f} ms  err vs fp64 {entry['max_abs_err_vs_float64']:.1e}"
                if "error" not in entry else entry["error"][:100]))
    for name, case in results.get("engine", {}).items():
        if "timings" not in case:
            print(f"engine {name}: {case.get('skipped') or case.get('error', '')[-400:]}")
            continue
        ms = "  ".join(f"{k} {v['median_ms']:.2f}" if "median_ms" in v else f"{k} {v['error'][:60]}"
                       for k, v in case["timings"].items())
        st = case[f"stats_triton_t{THRESHOLD}"]
        print(f"engine {name} ({case['pairs']:,} pairs, {case['model']}): {ms} ms; FLOP ratio "
              f"{st['flop_ratio']:.2f}, mean exit layer {st['mean_exit_layer']:.2f}; check {case['check']}")
    for name, t in results.get("targets", {}).items():
        print(f"target {name}: {json.dumps(t)}")


def render_markdown(report: Dict[str, Any]) -> str:
    """The JSON's headline numbers as a Markdown page (benchmarks/results/gpu_check.md)."""
    b = report.get("benchmark", {})
    lines = ["# GPU check", "", f"Command: `{report['command']}`", "",
             f"Device: {report.get('gpu')}; torch {report['torch']}, triton {report.get('triton')}. "
             "Medians of CUDA-event timings in one process (end to end: interleaved rounds, one "
             "call of each variant per round); every engine variant serves the same weights.", ""]
    c = report.get("correctness", {})
    lines += [f"Correctness on {c.get('device')}: {c.get('passed')}/{c.get('cases')} kernel cases "
              f"match the torch backend (atol = rtol = {c.get('atol')}).", ""]
    if "copy_bandwidth" in b:
        lines += [f"Device-to-device copy (the bandwidth ceiling used below): "
                  f"{b['copy_bandwidth']['GB_per_s']:.0f} GB/s.", ""]
    lines += ["## Targets", "", "| target | case | measured | needed | met |", "|---|---|---|---|---|"]
    for name, t in b.get("targets", {}).items():
        if name == "aggregation_bandwidth":
            lines.append(f"| aggregation bandwidth, m = 256, 1M nodes | synthetic | "
                         f"{t['GB_per_s']:.0f} GB/s = {t['share_of_copy']:.0%} of copy | >= 50% | "
                         f"{'yes' if t['met'] else 'no'} |")
            continue
        for key, v in t.items():
            if key.startswith("speedup_vs_reference"):
                lines.append(f"| full-evaluation speed-up vs dense reference, threshold "
                             f"{key.rsplit('_t', 1)[1]} | {name} | {v['speedup']:.2f}x (FLOP ratio "
                             f"{v['flop_ratio']:.2f}) | >= {v['needed']:.2f}x | {'yes' if v['met'] else 'no'} |")
            else:
                lines.append(f"| no-exit overhead: engine at threshold 1.0 / PyG GCNConv stack | "
                             f"{name} | {v['ratio']:.2f} | <= 1.2 | {'yes' if v['met'] else 'no'} |")
    lines += ["", "## End to end (ms)", "",
              "| case | pairs | reference | engine torch | engine triton t=0.9 | t=0.5 | t=1.0 | "
              "PyG stack | FLOP ratio t=0.9 / 0.5 | pairs off > 1e-5 | exit layers differing |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in b.get("engine", {}).items():
        if "timings" not in e:
            lines.append(f"| {name} | {e.get('skipped') or 'error (see JSON)'} |")
            continue
        ms = {k: (f"{v['median_ms']:.2f}" if "median_ms" in v else "error") for k, v in e["timings"].items()}
        ck = e["check"]
        lines.append(
            f"| {name} | {e['pairs']:,} | {ms['reference']} | {ms['engine_torch']} | "
            f"{ms['engine_triton']} | {ms['engine_triton_t0.5']} | {ms['engine_triton_t1.0']} | "
            f"{ms['pyg_fixed_depth']} | {e['stats_triton_t0.9']['flop_ratio']:.2f} / "
            f"{e['stats_triton_t0.5']['flop_ratio']:.2f} | {ck['pairs_off_by_more_than_1e-5']} | "
            f"{ck['pairs_with_an_endpoint_exit_layer_differing']} |")
    lines += ["", "## Kernels (ms; GB/s counts the useful bytes)", "",
              "| op | torch | triton | triton GB/s | max abs err |", "|---|---|---|---|---|"]
    for op, entry in [(f"aggregate_rows {k}", v) for k, v in b.get("aggregate_rows", {}).items()
                      if "triton" in v] + [("exit_decision", b.get("exit_decision", {}))] + \
            [(f"score_pairs {k}", v) for k, v in b.get("score_pairs", {}).items() if isinstance(v, dict)]:
        if "triton" not in entry:
            continue
        err = entry.get("check", entry.get("check_p_exit", {})).get("max_abs_err", float("nan"))
        lines.append(f"| {op} | {entry['torch']['median_ms']:.3f} | {entry['triton']['median_ms']:.3f} | "
                     f"{entry['triton'].get('GB_per_s', float('nan')):.0f} | {err:.1e} |")
    lines += ["", "Tiling sweeps (aggregation, exit head, scorer) and torch.profiler tables of one "
              "engine call per case are in gpu_check.json."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu_check.json"))
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--m", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=228_000)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--engine-warmup", type=int, default=1)
    parser.add_argument("--engine-repeats", type=int, default=5)
    parser.add_argument("--max-pairs", type=int, default=None, help="cap on each test set's pairs")
    parser.add_argument("--copy-bytes", type=int, default=1 << 30)
    parser.add_argument("--skip-ddi", action="store_true")
    parser.add_argument("--render", metavar="JSON", default=None,
                        help="only rewrite the Markdown page of an earlier run's JSON")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU dry run of every part through the Triton interpreter, tiny shapes")
    args = parser.parse_args(argv)
    if args.render:
        Path(args.render).with_suffix(".md").write_text(render_markdown(json.loads(Path(args.render).read_text())))
        return 0
    if args.smoke:
        args.nodes, args.m, args.pairs, args.max_pairs = 2000, 32, 300, 200
        args.warmup, args.repeats, args.engine_warmup, args.engine_repeats = 0, 1, 0, 1
        args.copy_bytes, args.skip_ddi = 1 << 20, True

    cuda = torch.cuda.is_available()
    report: Dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "torch": torch.__version__, "python": platform.python_version(),
        "triton_available": triton_ops.available(),
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        report["gpu_properties"] = {"multiprocessors": props.multi_processor_count,
                                    "memory_GiB": props.total_memory / 2**30}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")

    exit_code = 0
    if not report["triton_available"]:
        report["skipped"] = "triton unavailable: correctness and GPU timing skipped"
        print(report["skipped"])
    else:
        import triton
        report["triton"] = triton.__version__
        report["correctness"] = run_correctness("cuda" if cuda else "cpu")
        exit_code = 1 if report["correctness"]["failures"] else 0
        save()
        if not cuda and not args.smoke:
            report["skipped"] = ("no CUDA device: GPU correctness and timing skipped; correctness "
                                 "ran through the Triton interpreter on tiny shapes (--smoke runs "
                                 "the rest as a dry run)")
            print(f"GPU parts skipped: {report['skipped']}")
        else:
            if cuda:
                print(f"GPU: {report['gpu']}", flush=True)
            results: Dict[str, Any] = {}
            report["benchmark"] = results
            try:
                split = op_benchmarks(args, "cuda" if cuda else "cpu", results, save)
                engine_benchmarks(args, "cuda" if cuda else "cpu", split, results, save)
            except Exception:  # noqa: BLE001 - keep what was measured, record the failure
                report["benchmark_error"] = traceback.format_exc()
                print(report["benchmark_error"])
                exit_code = 1
            print_summary(results)
            if any("error" in c for c in results.get("engine", {}).values()):
                exit_code = 1
    save()
    if "benchmark" in report:
        out.with_suffix(".md").write_text(render_markdown(report))
    print(f"wrote {out}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
