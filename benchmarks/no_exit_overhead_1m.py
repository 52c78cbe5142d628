"""No-exit overhead (d)/(c) on the 1M-node graph, 100k pairs: the engine at threshold 1.0 (no
early exits) against a PyG GCNConv stack at fixed depth, same weights (test_engine_bench.py's
methods). PyG's [E, m] messages need ~20 GB, so it cannot share a process with the engine's
buffers on a 24 GB machine: each timing runs in a fresh process (a warm-up call, then one timed
call), PyG and engine in each of 3 rounds (in timing.round_order's order); medians.

    python benchmarks/no_exit_overhead_1m.py   # -> benchmarks/results/no_exit_overhead_1m.json
"""
import json
import statistics
import subprocess
import sys

from linkexit_fast.timing import round_order

CODE = r'''
import sys, time, json
sys.path.insert(0, "benchmarks")
import linkexit_fast as lf
from test_engine_bench import case, METHODS
g, p, m = case("synthetic1M-100k")
f = METHODS[sys.argv[1]]
f(g, p, m)  # warm-up
t0 = time.perf_counter(); f(g, p, m); print(json.dumps(time.perf_counter() - t0))
'''
times = {"pyg": [], "engine_t1": []}
for r in range(3):
    for meth in round_order(["pyg", "engine_t1"], r):
        out = subprocess.run([sys.executable, "-c", CODE, meth], capture_output=True, text=True)
        if out.returncode:
            print(meth, "failed", out.returncode, out.stderr[-500:]); sys.exit(1)
        times[meth].append(json.loads(out.stdout.split()[-1]))
        print(meth, times[meth][-1], flush=True)
med = {k: statistics.median(v) for k, v in times.items()}
result = {"command": "python benchmarks/no_exit_overhead_1m.py", "medians": med, "times": times,
          "d_over_c": med["engine_t1"] / med["pyg"]}
print(json.dumps(result))
with open("benchmarks/results/no_exit_overhead_1m.json", "w") as f:
    json.dump(result, f, indent=1)
