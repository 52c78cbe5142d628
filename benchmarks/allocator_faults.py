"""Page faults per call, and what glibc's malloc settings do to small calls.

    python benchmarks/allocator_faults.py     # -> benchmarks/results/allocator_faults.{md,json}

A small query (100 pairs on the 5k- and 20k-node synthetic graphs, the benchmark model of
``test_engine_bench.py``) allocates a few ``[N, m]`` temporaries per layer. Whether glibc hands
back pages already touched or fresh ones (a minor page fault each 4 KB) depends on its dynamic
mmap and trim thresholds, that is on the process's allocation history: the same call took 5.4 ms
in one process and 10.0 ms in the next. Each setting runs in its own process (the settings are
read at start-up): glibc's defaults, then ``MALLOC_MMAP_THRESHOLD_`` = 32 MB and
``MALLOC_TRIM_THRESHOLD_`` = 256 MB (freed blocks below 32 MB stay in the heap, and up to 256 MB
of free heap top is kept). Per cell: the engine path and the dense reference in interleaved
rounds, medians, and each variant's minor faults per call (``getrusage``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

SETTINGS = {"glibc defaults": {},
            "mmap 32 MB, trim 256 MB": {"MALLOC_MMAP_THRESHOLD_": str(32 << 20),
                                       "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}}


def child(rounds: int) -> None:
    """One process: every cell, printed as JSON lines."""
    import torch

    import linkexit_fast as lf
    from linkexit_fast.datasets import synthetic
    from linkexit_fast.timing import interleaved_medians
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_engine_bench import synthetic_model
    model = synthetic_model()
    for n in (5000, 20000):
        split = synthetic(n, 10, 64, 50, 0)
        pairs = torch.randint(0, n, (100, 2), generator=torch.Generator().manual_seed(0))
        for t in (0.5, 0.9):
            faults = {"engine": [], "reference": []}

            def counted(name, **kw):
                def call():
                    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    lf.predict(split.graph, pairs, t, model=model, **kw)
                    faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
                return call
            med = interleaved_medians({"engine": counted("engine", plan="engine"),
                                       "reference": counted("reference", backend="reference")}, rounds)
            print(json.dumps({"nodes": n, "threshold": t, "seconds": med,
                              "faults_per_call": {k: sum(v) / len(v) for k, v in faults.items()}}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--repeats", type=int, default=2, help="processes per setting (the defaults vary by process)")
    ap.add_argument("--out", default="benchmarks/results/allocator_faults")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.rounds)
    rows = []
    for name, env in SETTINGS.items():
        for rep in range(args.repeats):
            out = subprocess.run([sys.executable, __file__, "--child", "--rounds", str(args.rounds)],
                                 env=dict(os.environ, **env), capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                rows.append(dict(json.loads(line), setting=name, process=rep + 1))
                print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    lines = ["# Page faults per call under glibc's malloc settings", "",
             f"Command: `{' '.join(['python benchmarks/allocator_faults.py', *sys.argv[1:]])}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, load {load:.2f} at the end. 100 random "
             f"pairs per call on the synthetic graphs (mean degree 10, 64 features), node-exit GCN L = 3, "
             f"hidden 256 (the benchmark model); engine path (`plan=\"engine\"`) against the dense "
             f"reference (`backend=\"reference\"`), medians of {args.rounds} interleaved rounds; minor "
             f"page faults per call, the mean over each variant's calls (warm-up included). Each setting in {args.repeats} fresh "
             f"processes.", "",
             "| setting | process | nodes | threshold | engine ms | reference ms | reference / engine | faults per engine call | per reference call |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["seconds"]
        lines.append(f"| {r['setting']} | {r['process']} | {r['nodes']:,} | {r['threshold']} | "
                     f"{1e3 * s['engine']:.2f} | {1e3 * s['reference']:.2f} | "
                     f"{s['reference'] / s['engine']:.2f}x | {r['faults_per_call']['engine']:.0f} | "
                     f"{r['faults_per_call']['reference']:.0f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"command": sys.argv, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
