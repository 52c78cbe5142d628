"""Torch ops and host syncs in one engine call: the currency of GPU host overhead, counted on any
machine. On a GPU every op below is at least one kernel launch and every sync stalls the host
until the device drains (the H100 run of ogbl-ddi was host-bound: gpu_notes.md).

    python benchmarks/engine_op_count.py [--cases ddi-valid,citeseer-valid] [--backend cpu]
        -> benchmarks/results/engine_op_count.{json,md}
    python benchmarks/engine_op_count.py --index-path cpu --threshold 1.0 --out /tmp/ops_cpu

Counts come from torch.profiler (``linkexit_fast.timing.ops_and_syncs``, which the tests' bound on
host reads uses too) over one call after a warm-up call, with the engine on the index
path it takes on a GPU (``engine.indexing.SYNC_FREE = True``: index lists sized from counts
already read, ``nonzero_static`` instead of ``nonzero``), or with ``--index-path cpu`` on the
CPU's own (the backend's native exit ops; the planner prices each path's per-layer ops from both,
``engine.plan.OVERHEAD``). "Ops" are top-level aten ops that touch
data (views, reshapes, dtype no-ops and scalar reads are left out; a backend's own op counts
once). "Syncs" are the device-to-host reads: ``nonzero`` (boolean-mask indexing included),
``_local_scalar_dense`` (``int(t)``, ``bool(t)``, ``t.item()``) and ``Tensor.tolist``.
The Triton backend's ops add none (its launchers size their grids from host-known sizes).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import linkexit_fast as lf
from linkexit_fast.engine import indexing
from linkexit_fast.timing import ops_and_syncs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_bench import THRESHOLD, case  # noqa: E402


def count(name: str, backend: str, plan: str = "auto", threshold: float = THRESHOLD, index_path: str = "gpu") -> dict:
    graph, pairs, model = case(name)
    indexing.SYNC_FREE = index_path == "gpu"
    try:
        lf.predict(graph, pairs, threshold, model=model, backend=backend, plan=plan)  # warm-up; auto learns the exits
        ops, syncs = ops_and_syncs(lambda: lf.predict(graph, pairs, threshold, model=model, backend=backend, plan=plan))
        _, st = lf.predict(graph, pairs, threshold, model=model, backend=backend, plan=plan, return_stats=True)
    finally:
        indexing.SYNC_FREE = None
    return {"case": name, "layers": model.config.layers, "threshold": threshold, "index_path": index_path,
            "backend": backend, "plan": plan if plan != "auto" else "auto (took " + st.plan + ")",
            "ops": sum(ops.values()), "syncs": syncs, "most_common": ops.most_common(12)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="ddi-valid,citeseer-valid")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--plans", default="auto,dense,engine", help="the planner's paths to count")
    ap.add_argument("--threshold", type=float, default=THRESHOLD, help="exit threshold (1.0: exits off)")
    ap.add_argument("--index-path", choices=("gpu", "cpu"), default="gpu",
                    help="gpu: the sync-free index path a GPU takes, forced on the CPU; cpu: the CPU's own")
    ap.add_argument("--out", default="benchmarks/results/engine_op_count")
    args = ap.parse_args()
    package = Path(lf.__file__).resolve().parent  # the code measured, wherever it is checked out
    commit = subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    rows = [count(c, args.backend, p, args.threshold, args.index_path)
            for c in args.cases.split(",") for p in args.plans.split(",")]
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    Path(args.out + ".json").write_text(json.dumps({"command": command, "commit": commit, "rows": rows}, indent=1))
    lines = ["# Torch ops and host syncs per engine call", "", f"Command: `{command}` at commit {commit}.", "",
             f"Threshold {args.threshold}, {args.index_path}'s index path.", "",
             "| case | layers | backend | plan | ops | host syncs | most frequent ops |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        top = ", ".join(f"{n.replace('aten::', '')} {k}" for n, k in r["most_common"][:6])
        lines.append(f"| {r['case']} | {r['layers']} | {r['backend']} | {r['plan']} | {r['ops']} | {r['syncs']} | {top} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
