"""Memory of ``predict`` beyond its output, per pair: it must not grow with the number of pairs.

    python benchmarks/predict_memory.py     # -> benchmarks/results/predict_memory.{json,md}

Each measurement runs in a fresh process: build a 2,000-node random graph and a model, run one
small warm-up call (loads the ops, fills the caches), then reset the kernel's peak-RSS counter
(``/proc/self/clear_refs``, Linux), allocate the ``[P, 2]`` int64 pairs and call ``predict``.
The extra memory is the peak RSS over the baseline, less the input pairs (16 bytes a pair) and the
float32 output (4 bytes a pair); divided by P, it should tend to 0.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = [  # (pairs, backend, batch_size)
    (1_000_000, "auto", None), (5_000_000, "auto", None), (5_000_000, "auto", 65536),
    (1_000_000, "reference", None), (5_000_000, "reference", None),
]


def _status_bytes(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def measure(num_pairs: int, backend: str, batch_size) -> dict:
    import torch
    import linkexit_fast as lf
    from linkexit_fast.models import EarlyExitLinkPredictor, ModelConfig
    torch.manual_seed(0)
    n = 2000
    graph = lf.Graph.from_edge_index(torch.randint(0, n, (2, 20000)), num_nodes=n, x=torch.randn(n, 32))
    model = EarlyExitLinkPredictor(ModelConfig(32, n, hidden=64, layers=4)).eval()
    lf.predict(graph, torch.randint(0, n, (1000, 2)), model=model, backend=backend)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    base = _status_bytes("VmRSS")
    pairs = torch.randint(0, n, (num_pairs, 2))
    t0 = time.perf_counter()
    scores = lf.predict(graph, pairs, model=model, backend=backend, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    extra = _status_bytes("VmHWM") - base - pairs.numel() * 8 - scores.numel() * 4
    return {"pairs": num_pairs, "backend": backend, "batch_size": batch_size, "seconds": round(seconds, 2),
            "extra_bytes": extra, "extra_bytes_per_pair": round(extra / num_pairs, 2)}


def main():
    rows = []
    for p, backend, batch in CASES:
        code = f"import sys, json; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); " \
               f"from predict_memory import measure; print(json.dumps(measure({p}, {backend!r}, {batch!r})))"
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    result = {"command": "python benchmarks/predict_memory.py",
              "machine": f"{platform.node()} {platform.machine()} {platform.processor()}, "
                         f"python {platform.python_version()}",
              "note": "extra = peak RSS over the baseline - 16 B/pair input - 4 B/pair output",
              "rows": rows}
    out_dir = REPO / "benchmarks" / "results"
    (out_dir / "predict_memory.json").write_text(json.dumps(result, indent=2))
    lines = ["# predict: memory beyond input and output", "",
             f"`{result['command']}` on {result['machine']}; 2,000-node graph, hidden 64, 4 layers. "
             "Extra = peak RSS over the baseline after the model and graph are loaded, less the "
             "[P, 2] int64 input and the [P] float32 output.", "",
             "| pairs | backend | batch_size | seconds | extra MB | extra bytes/pair |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['pairs']:,} | {r['backend']} | {r['batch_size'] or 'default'} | {r['seconds']} | "
              f"{r['extra_bytes'] / 2**20:.1f} | {r['extra_bytes_per_pair']} |" for r in rows]
    (out_dir / "predict_memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
