"""Peak memory of one engine call on the 1M-node synthetic graph (100k random pairs), against the
engine issue's bound 2 x (CSR + features + two N x m float32 buffers).

    python benchmarks/engine_memory.py        # -> benchmarks/results/engine_memory.{json,md}

Each method runs in a fresh process: build the graph, then reset the kernel's peak-RSS counter
(``/proc/self/clear_refs``, Linux) and read ``VmHWM`` after the call, so the peak is the call's
own (on top of what the process already held), not the graph generator's.
"""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("engine", "reference")


def _status_mib(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def measure(method: str) -> dict:
    import torch
    import linkexit_fast as lf
    sys.path.insert(0, str(REPO / "benchmarks"))
    from test_engine_bench import case  # the engine benchmark's 1M-node case and model
    graph, pairs, model = case("synthetic1M-100k")
    m = model.config.hidden
    inputs = graph.rowptr.numel() * 8 + graph.col.numel() * 8 + graph.x.numel() * 4
    bound = 2 * (inputs + 2 * graph.num_nodes * m * 4)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS
    before = _status_mib("VmRSS")
    t0 = time.perf_counter()
    lf.predict(graph, pairs, 0.9, model=model, backend="auto" if method == "engine" else "reference")
    return {"method": method, "seconds": time.perf_counter() - t0, "rss_before_mib": before,
            "peak_rss_mib": _status_mib("VmHWM"), "bound_mib": bound / 2**20,
            "inputs_mib": inputs / 2**20, "pairs": len(pairs), "nodes": graph.num_nodes,
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2])))
        return
    rows = []
    for method in METHODS:
        out = subprocess.run([sys.executable, __file__, "--one", method], capture_output=True,
                             text=True, check=True, cwd=REPO)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    results = REPO / "benchmarks" / "results"
    (results / "engine_memory.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["# Peak memory on the 1M-node graph (100k pairs, threshold 0.9)", "",
             "Command: `python benchmarks/engine_memory.py` (each method in a fresh process; peak RSS "
             "counter reset after the graph is built).", "",
             "| method | peak RSS MiB | RSS before the call MiB | bound MiB | within bound | seconds |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} | "
                     f"{r['bound_mib']:.0f} | {'yes' if r['peak_rss_mib'] <= r['bound_mib'] else 'no'} | "
                     f"{r['seconds']:.1f} |")
    lines += ["", f"Bound: 2 x (CSR + features + two N x m float32 buffers) with N = {rows[0]['nodes']:,}, "
              f"m = 256; the inputs (CSR + features) are {rows[0]['inputs_mib']:.0f} MiB. The peak is the "
              "whole process's, graph and model included."]
    (results / "engine_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
