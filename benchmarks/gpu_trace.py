"""Where one ogbl-ddi test evaluation's wall-clock goes on a GPU: device work and host waits.

    python benchmarks/gpu_trace.py --out DIR [--baseline-engine PATH] [--repeats 30]
    python benchmarks/gpu_trace.py --render A.json B.json --out page.md   # Markdown of earlier runs

ogbl-ddi's full evaluation is the GPU case that was host-bound (gpu_check.md): the engine's
device work is close to the reference's, so its wall-clock is set by the host. This script times
the dense reference and the engine (and, with ``--baseline-engine``, another version of the
engine, ``linkexit_fast/engine/`` or an older ``engine.py``, loaded beside the installed one, on
the same inputs and kernels) in interleaved rounds, then profiles one warm call of each: a Chrome
trace per call under ``DIR`` (open it in chrome://tracing or Perfetto to see which lines launch
and wait), and a summary (``DIR/gpu_trace.json`` and ``.md``) of wall-clock, device busy time (the
union of kernel and copy intervals), host time blocked in syncs, and kernel launches. Needs ``$LINKEXIT_DATA`` with
``ogbl_ddi`` and the trained checkpoint ``$LINKEXIT_BENCH_RUNS/ddi`` (else random weights).
Without CUDA it is a dry run on the ``cpu`` backend with wall-clock times and no device columns.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import THRESHOLD, bench_model, max_error, time_interleaved  # noqa: E402

# Runtime calls that block the host until the device catches up (a device-to-host copy into
# pageable memory, as .tolist() and nonzero do, blocks like a sync).
SYNC_CALLS = {"cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy",
              "cudaMemcpyAsync"}


def load_engine(path: Path):
    """``path`` (a copy of the engine: its package folder ``linkexit_fast/engine/``, or the single
    ``engine.py`` of earlier commits) as a module of the installed package, so its relative
    imports resolve to the same backends, models and graph code."""
    package = path.is_dir()
    spec = importlib.util.spec_from_file_location(
        "linkexit_fast._baseline_engine", path / "__init__.py" if package else path,
        submodule_search_locations=[str(path)] if package else None)
    module = importlib.util.module_from_spec(spec)
    if not package:  # a package module knows its package from the spec
        module.__package__ = "linkexit_fast"
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def union_length(intervals: List[tuple]) -> float:
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e > end:
            total += e - max(s, end)
            end = e
    return total


def profile(fn: Callable[[], Any], trace: Path) -> Dict[str, Any]:
    from torch.profiler import ProfilerActivity
    cuda = torch.cuda.is_available()
    fn()  # warm: allocator blocks and compiled kernels in place, as in a timed call
    if cuda:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities, with_stack=True) as prof:  # stacks: for the trace
        fn()
        if cuda:
            torch.cuda.synchronize()
    prof.export_chrome_trace(str(trace))
    events = prof.events()
    host = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU]
    device = [e for e in events if e.device_type != torch.autograd.DeviceType.CPU]
    start = min(e.time_range.start for e in host)
    end = max(e.time_range.end for e in host + device)
    blocked = sum(e.time_range.end - e.time_range.start for e in host if e.name in SYNC_CALLS)
    launches = sum(e.name.startswith(("cudaLaunchKernel", "cuLaunchKernel")) for e in host)
    return {"wall_us": end - start,
            "device_busy_us": union_length([(e.time_range.start, e.time_range.end) for e in device]),
            "host_blocked_us": blocked, "launches": launches, "trace": trace.name}


def render_markdown(reports: Dict[str, Dict[str, Any]]) -> str:
    """One table per run: medians of the interleaved rounds, then the profiled call's split."""
    lines = ["# Where an ogbl-ddi evaluation's time goes on a GPU", "",
             "Command: `python benchmarks/gpu_trace.py` (see its docstring). Medians of interleaved "
             "rounds (CUDA events); the profiled call is one more call under torch.profiler "
             "(with stacks, so its wall-clock is inflated): device busy = union of kernel and copy "
             "intervals, host blocked = time in synchronising runtime calls."]
    for name, r in reports.items():
        ref = r["median_ms"]["reference"]
        lines += ["", f"## {name}", "",
                  f"{r['gpu'] or 'CPU dry run'}, torch {r['torch']}, backend `{r['backend']}`, "
                  f"{r['pairs']:,} pairs, threshold {r['threshold']}, {r['model']}"
                  + (f"; baseline_engine = `{r['baseline_engine']}`" if r.get("baseline_engine") else ""),
                  "", "| variant | median ms (rounds) | speed-up vs reference | profiled wall ms | "
                  "device busy ms | host blocked ms | launches | max abs err vs reference |",
                  "|---|---|---|---|---|---|---|---|"]
        for v, t in r["timings"].items():
            p = r["profile"][v]
            err = r["check"].get(v, {}).get("max_abs_err")
            lines.append(f"| {v} | {t['median_ms']:.2f} ({t['repeats']}) | {ref / t['median_ms']:.2f}x | "
                         f"{p['wall_us'] / 1e3:.2f} | {p['device_busy_us'] / 1e3:.2f} | "
                         f"{p['host_blocked_us'] / 1e3:.2f} | {p['launches']} | "
                         f"{'' if err is None else f'{err:.1e}'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="directory for the traces, gpu_trace.json and gpu_trace.md")
    ap.add_argument("--render", nargs="+", metavar="JSON",
                    help="only write the Markdown of earlier runs' JSON (one section each) to --out")
    ap.add_argument("--baseline-engine", type=Path, default=None,
                    help="another version of the engine (a copy of linkexit_fast/engine/, or an older "
                         "engine.py) to time beside the installed one")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--max-pairs", type=int, default=None)
    args = ap.parse_args(argv)
    if not args.out:
        ap.error("--out is required")
    if args.render:
        Path(args.out).write_text(render_markdown({Path(p).stem: json.loads(Path(p).read_text())
                                                   for p in args.render}))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import linkexit_fast as lf
    from linkexit_fast.datasets import data_root, load_ogbl
    from linkexit_fast.evaluate import flatten_eval_pairs
    cuda = torch.cuda.is_available()
    dev, backend = ("cuda", "triton") if cuda else ("cpu", "cpu")
    split = load_ogbl("ogbl-ddi", data_root())
    model, source = bench_model("ddi", split, dev)
    graph = split.graph.to(dev)
    pairs = flatten_eval_pairs(split.test_pos, split.test_neg)[:args.max_pairs].to(dev)
    fns = {"reference": lambda: lf.predict(graph, pairs, THRESHOLD, model=model, backend="reference"),
           "engine": lambda: lf.predict(graph, pairs, THRESHOLD, model=model, backend=backend)}
    report: Dict[str, Any] = {"gpu": torch.cuda.get_device_name() if cuda else None,
                              "torch": torch.__version__, "backend": backend, "model": source,
                              "pairs": int(pairs.shape[0]), "threshold": THRESHOLD}
    if args.baseline_engine is not None:
        baseline = load_engine(args.baseline_engine)
        fns["baseline_engine"] = lambda: baseline.predict(graph, pairs, THRESHOLD, model=model,
                                                          backend=backend)
        report["baseline_engine"] = str(args.baseline_engine)
    scores = {name: fn() for name, fn in fns.items()}
    report["check"] = {name: max_error(s, scores["reference"], atol=1e-5, rtol=0.0)
                       for name, s in scores.items() if name != "reference"}

    report["timings"] = time_interleaved(fns, 1, args.repeats)
    report["median_ms"] = {name: t["median_ms"] for name, t in report["timings"].items()}
    report["profile"] = {name: profile(fn, out / f"trace_{name}.json") for name, fn in fns.items()}
    (out / "gpu_trace.json").write_text(json.dumps(report, indent=2) + "\n")

    (out / "gpu_trace.md").write_text(render_markdown({out.name: report}))
    print(render_markdown({out.name: report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
