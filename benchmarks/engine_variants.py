"""One engine step two ways, side by side: whole ``predict`` calls on the engine path with the
step as shipped against an alternative, in one run of interleaved rounds per cell.

    python benchmarks/engine_variants.py --compare probe        # -> benchmarks/results/engine_probe.{md,json}
    python benchmarks/engine_variants.py --compare compaction   # -> benchmarks/results/engine_compaction.{md,json}
    python benchmarks/engine_variants.py --compare scatter      # -> benchmarks/results/engine_scatter.{md,json}
    python benchmarks/engine_variants.py --compare probe-first  # -> benchmarks/results/engine_probe-first.{md,json}
    python benchmarks/engine_variants.py --compare exits        # -> benchmarks/results/engine_exits.{md,json}
    python benchmarks/engine_variants.py --compare linear       # -> benchmarks/results/engine_linear.{md,json}
    python benchmarks/engine_variants.py --compare judge        # -> benchmarks/results/engine_judge.{md,json}
    python benchmarks/engine_variants.py --compare probe --sizes 20000 --rounds 5 --out /tmp/probe

Comparisons:

* ``probe``: the open endpoints' exits at layer l + 1 decided before layer l updates its rows
  (``linkexit_fast.engine.run._Run._probe``), so that the layer updates only what the endpoints
  that stay open need. "off": forced off; "shipped": the planner's rule
  (``engine.plan.PROBE_SHARE`` and, once the first call has taught it the model's exit profile
  on the graph, ``PROBE_MIN_EXIT``).
* ``probe-first``: the probe before gcn's first layer, where that layer reads the raw input,
  run before compaction so that the scope leaves out the neighbourhoods of the endpoints it sees
  exit ("shipped", ``engine.run.PROBE_BEFORE_COMPACT``), against the same probe run after
  compaction, on the scope of every endpoint, whose first layer then scatters its rows back into
  that larger scope ("off").
* ``compaction``: the scope's walk and compaction (``engine.scope.compact``) in the cpu backend's
  C++ op ``scope_csr`` ("shipped") against the torch path it is tested against ("off",
  ``engine.scope.NATIVE_COMPACT`` False): the same scope, rows and scores.
* ``exits``: a layer's exit bookkeeping under ``freeze`` (mark the rows that exit, keep the
  open endpoints and the rows that stay) in the cpu backend's C++ op ``exit_update`` ("shipped")
  against the ~17 small torch ops it replaces, its specification ("off",
  ``engine.run.NATIVE_EXITS`` False): the same rows, exit layers and scores.
* ``linear``: gcn's layer updates (aggregation, Linear, bias, GELU but at the last layer) in the
  cpu backend's C++ op ``aggregate_linear_act``, which makes each block of the aggregate in cache
  and writes each output once ("shipped"), against ``aggregate_rows`` then the model's own
  transform, torch's ``addmm`` into the layer's buffer then ``gelu`` in place ("off",
  ``engine.run.NATIVE_LINEAR`` False): the same rows and MACs, scores within float32 rounding.
* ``judge``: a layer's exit heads reading its rows of the states in place (the cpu backend's
  ``exit_decision`` with ``rows``, "shipped") against a gather of those rows into the scratch
  first ("off", ``backends.cpu.JUDGES_ROWS_IN_PLACE`` False): the same decisions and scores.
* ``scatter``: updated rows written back into the states by the cpu backend's C++ op
  ``scatter_rows`` ("shipped") against ``index_copy_`` ("off", ``engine.indexing.NATIVE_SCATTER``
  False): the same states, rows and scores.

Cells: the planner grid's synthetic graphs (``datasets.synthetic``, mean degree 10, 64 features)
x random pairs x thresholds, and the grid's model (node-exit GCN, L = 3, hidden 256, ``freeze``;
``test_engine_bench.synthetic_model``). One uncounted call of each first, then medians of
interleaved rounds in an order shuffled each round. The two must give the same exit layers and
scores to 1e-5 (the engine contract), checked on the uncounted calls.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch

import linkexit_fast as lf
from linkexit_fast.backends import cpu
from linkexit_fast.datasets import synthetic
from linkexit_fast.engine import indexing
from linkexit_fast.engine import plan as planner
from linkexit_fast.engine import run, scope
from linkexit_fast.timing import interleaved_medians, machine_label

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402
from test_engine_bench import synthetic_model  # noqa: E402


@contextlib.contextmanager
def knob(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


# comparison -> (title, {"off": knob setting, "shipped": knob setting}, default cells)
COMPARISONS = {
    "probe": ("The engine's probe: on (the planner's rule) against off",
              {"off": lambda: knob(planner, "PROBE", False), "shipped": lambda: knob(planner, "PROBE", None)},
              dict(sizes="20000,200000,1000000", pairs="100,10000", thresholds="0.5,0.9")),
    "probe-first": ("The probe before gcn's first layer: before compaction against after it",
                    {"off": lambda: knob(run, "PROBE_BEFORE_COMPACT", False),
                     "shipped": lambda: knob(run, "PROBE_BEFORE_COMPACT", True)},
                    dict(sizes="5000,20000,200000,1000000", pairs="100,10000", thresholds="0.5")),
    "scatter": ("The scatter of updated rows into the states: the C++ op (scatter_rows) against index_copy_",
                {"off": lambda: knob(indexing, "NATIVE_SCATTER", False),
                 "shipped": lambda: knob(indexing, "NATIVE_SCATTER", True)},
                dict(sizes="5000,20000,200000", pairs="100,10000", thresholds="0.5")),
    "exits": ("A layer's exit bookkeeping under freeze: the C++ op (exit_update) against the torch ops",
              {"off": lambda: knob(run, "NATIVE_EXITS", False), "shipped": lambda: knob(run, "NATIVE_EXITS", True)},
              dict(sizes="5000,20000,200000", pairs="100,10000", thresholds="0.5,0.9")),
    "linear": ("A layer's update: the C++ op (aggregate_linear_act) against aggregate_rows, torch's addmm and gelu",
               {"off": lambda: knob(run, "NATIVE_LINEAR", False), "shipped": lambda: knob(run, "NATIVE_LINEAR", True)},
               dict(sizes="5000,20000,200000", pairs="100,10000", thresholds="0.5,0.9")),
    "judge": ("A layer's exit heads: the rows read in place (exit_decision's rows) against gathered first",
              {"off": lambda: knob(cpu, "JUDGES_ROWS_IN_PLACE", False),
               "shipped": lambda: knob(cpu, "JUDGES_ROWS_IN_PLACE", True)},
              dict(sizes="5000,20000,200000", pairs="100,10000", thresholds="0.5")),
    "compaction": ("The scope's compaction: the C++ op (scope_csr) against the torch path",
                   {"off": lambda: knob(scope, "NATIVE_COMPACT", False),
                    "shipped": lambda: knob(scope, "NATIVE_COMPACT", True)},
                   dict(sizes="5000,20000,200000,1000000", pairs="100,10000", thresholds="0.5,0.9")),
}


def measure(graph, pairs, model, threshold: float, rounds: int, variants: dict) -> dict:
    def call(variant, stats=False):
        with variants[variant]():
            return lf.predict(graph, pairs, threshold, model=model, plan="engine", return_stats=stats)
    first = {v: call(v, stats=True) for v in variants}  # uncounted; teaches the exit profile
    (off, st_off), (on, st_on) = first["off"], first["shipped"]
    if not torch.equal(st_off.exit_layer, st_on.exit_layer) or float((off - on).abs().max()) > 1e-5:
        raise SystemExit(f"the two variants disagree at threshold {threshold}")
    # Rows and MACs of both once the profile is known, as the timed calls run.
    (_, st_off), (_, st_on) = call("off", stats=True), call("shipped", stats=True)
    med = interleaved_medians({v: (lambda v=v: call(v)) for v in variants}, rounds, warmup=False)
    return {"seconds": med, "speedup": med["off"] / med["shipped"],
            "macs": {"off": st_off.flops_gnn, "shipped": st_on.flops_gnn},
            "rows": {"off": st_off.nodes_updated, "shipped": st_on.nodes_updated},
            "probed": st_on.nodes_probed, "scope_nodes": st_on.scope_nodes,
            "max_abs_diff": float((off - on).abs().max())}


def render(rows, meta) -> str:
    lines = [f"# {meta['title']}", "",
             f"Command: `{meta['command']}`", "", f"Machine: {meta['machine']}.", "",
             f"Whole `predict` calls on the engine path (`plan=\"engine\"`), medians of {meta['rounds']} "
             "interleaved rounds after one uncounted call of each (which teaches the planner the "
             "model's exit profile on the graph). Pairs: uniformly random node pairs. Model: the planner "
             "grid's node-exit GCN (L = 3, hidden 256, freeze). 'rows per layer': rows each layer "
             "updated (GNN stage), off -> shipped; 'probed': the rows the probe computed ahead of each "
             "layer; 'scope': the rows of the call's scope. Scores agree to the 'max diff' column; exit "
             "layers are identical.", "",
             "| graph | pairs | threshold | off ms | shipped ms | speed-up | GNN MACs off -> shipped | "
             "rows per layer off -> shipped | probed | scope | max diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["seconds"]
        lines.append(f"| synthetic {r['nodes']:,} | {r['pairs']:,} | {r['threshold']} | {1e3 * s['off']:.1f} | "
                     f"{1e3 * s['shipped']:.1f} | {r['speedup']:.2f}x | {r['macs']['off'] / 1e6:,.0f}M -> "
                     f"{r['macs']['shipped'] / 1e6:,.0f}M | {r['rows']['off']} -> {r['rows']['shipped']} | "
                     f"{r['probed']} | {r['scope_nodes']:,} | {r['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compare", choices=sorted(COMPARISONS), required=True)
    ap.add_argument("--sizes", default=None, help="synthetic graph sizes (nodes); default: the comparison's")
    ap.add_argument("--pairs", default=None, help="query counts; default: the comparison's")
    ap.add_argument("--thresholds", default=None, help="default: the comparison's")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", default=None, help="default: benchmarks/results/engine_<compare>")
    args = ap.parse_args(argv)
    title, variants, cells = COMPARISONS[args.compare]
    sizes, counts, thresholds = (getattr(args, k) or cells[k] for k in ("sizes", "pairs", "thresholds"))
    model = synthetic_model()
    rows = []
    for n in (int(s) for s in sizes.split(",")):
        graph = synthetic(n, 10, 64, 50, 0).graph
        g = torch.Generator().manual_seed(0)
        for k in (int(s) for s in counts.split(",")):
            pairs = torch.randint(0, n, (k, 2), generator=g)
            for t in (float(s) for s in thresholds.split(",")):
                row = dict(nodes=n, pairs=k, threshold=t, **measure(graph, pairs, model, t, args.rounds, variants))
                rows.append(row)
                print(json.dumps(row), flush=True)
    meta = {"command": results_file.command("engine_variants.py", argv),
            "machine": machine_label(), "rounds": args.rounds, "title": title}
    out = Path(args.out or f"benchmarks/results/engine_{args.compare}")
    results_file.write(out, meta, rows, render(rows, meta))


if __name__ == "__main__":
    main()
