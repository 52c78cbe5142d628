"""Column passes of the C++ aggregation on a dense graph (ogbl-ddi), side by side in one process.

    python benchmarks/aggregate_passes.py [--rounds 15] -> benchmarks/results/aggregate_passes.{md,json}

1. The op alone, ``h`` = 4,267 x 256 random floats, on 2,700 random rows and on all rows, for
   each pass width (``None`` = the op's own choice), interleaved.
2. The engine's GNN stage on ogbl-ddi's validation pairs (``time_gnn``), with the op's choice
   against whole-row passes forced, and the dense reference's, interleaved.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

import linkexit_fast as lf
from linkexit_fast.backends import cpu
from linkexit_fast.timing import interleaved_medians, round_order

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_bench import THRESHOLD, case  # noqa: E402

WIDTHS = [None, 32, 64, 128, 256]


def op_times(graph, rounds: int) -> dict:
    n = graph.num_nodes
    weight, self_weight = graph.edge_weight(True), graph.dinv(True) ** 2
    h = torch.randn(n, 256, generator=torch.Generator().manual_seed(0))
    row_sets = {"2700 rows": torch.randperm(n, generator=torch.Generator().manual_seed(1))[:2700].sort().values,
                "all rows": torch.arange(n)}
    out = {}
    for name, rows in row_sets.items():
        calls = {str(w): (lambda w=w: cpu.aggregate_rows(graph.rowptr, graph.col, weight, h, rows,
                                                         self_weight, None, w)) for w in WIDTHS}
        out[name] = interleaved_medians(calls, rounds, warmup=False)
    return out


def stage_times(graph, pairs, model, rounds: int) -> dict:
    op = cpu.aggregate_rows

    def whole_rows(*args):
        return op(*args, pass_cols=256)
    times = {"engine": [], "engine, whole rows": [], "reference": []}
    try:
        for r in range(rounds):
            for name in round_order(list(times), r):
                cpu.aggregate_rows = whole_rows if name == "engine, whole rows" else op
                backend = "reference" if name == "reference" else "cpu"
                _, st = lf.predict(graph, pairs, THRESHOLD, model=model, backend=backend, return_stats=True)
                times[name].append(st.time_gnn)
    finally:
        cpu.aggregate_rows = op
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default="benchmarks/results/aggregate_passes")
    args = ap.parse_args()
    if not cpu.available():
        raise SystemExit(f"the C++ ops are not available: {cpu._load_error()}")
    graph, pairs, model = case("ddi-valid")
    ops = op_times(graph, args.rounds)
    stage = stage_times(graph, pairs, model, args.rounds)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    Path(args.out + ".json").write_text(json.dumps({"command": command, "op_seconds": ops,
                                                    "gnn_stage_seconds": stage}, indent=1))
    lines = ["# C++ aggregation: column passes on ogbl-ddi", "", f"Command: `{command}`", "",
             f"Medians of {args.rounds} interleaved calls (ms). Pass width None is the op's own choice.", "",
             "| rows | " + " | ".join(str(w) for w in WIDTHS) + " |", "|---" * (len(WIDTHS) + 1) + "|"]
    for name, t in ops.items():
        lines.append(f"| {name} | " + " | ".join(f"{t[str(w)] * 1e3:.2f}" for w in WIDTHS) + " |")
    lines += ["", "GNN stage (`time_gnn`) of a full ogbl-ddi validation call (ms):", "",
              "| engine | engine, whole rows | reference |", "|---|---|---|",
              "| " + " | ".join(f"{stage[k] * 1e3:.1f}" for k in ("engine", "engine, whole rows", "reference")) + " |"]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
