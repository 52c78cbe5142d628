"""How far the engine's scores lie from the dense reference's, against how far float32 rounding
alone moves the reference's own: the reference run again on input features (or, for a model
with learnt node embeddings, those embeddings) scaled by ``1 + 1e-7 * noise`` (about one
float32 ulp, fresh standard-normal noise per seed).

    python benchmarks/score_conditioning.py                  # -> benchmarks/results/score_conditioning.{md,json}
    python benchmarks/score_conditioning.py --cases citeseer-test --thresholds 1.0 --out /tmp/cond

The engine contract's 1e-5 on scores holds on the random graphs of the tests. A deep model can
be worse conditioned than that. CiteSeer's L = 8 GCN with exits off: the dense and engine paths
both differ from the reference by up to 8.3e-5 (20 of 227,955 test scores over 1e-5), and
one-ulp noise on the features moves the reference's own scores by 4.2e-5 to 1.7e-4 (34-51 over
1e-5, three seeds): the same summation-order rounding, amplified by eight layers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import linkexit_fast as lf
from linkexit_fast.timing import machine_label

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402
from test_engine_bench import case  # noqa: E402

PLANS = ("dense", "engine")


def measure(name: str, threshold: float, seeds: int) -> dict:
    graph, pairs, model = case(name)
    ref = lf.predict(graph, pairs, threshold, model=model, backend="reference")
    row = {"case": name, "threshold": threshold, "pairs": int(pairs.shape[0])}
    for plan in PLANS:
        diff = (lf.predict(graph, pairs, threshold, model=model, plan=plan) - ref).abs()
        row[plan] = {"max": float(diff.max()), "over_1e-5": int((diff > 1e-5).sum())}
    noisy = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        if model.embedding is None:  # features: the graph's
            x = graph.x * (1 + 1e-7 * torch.randn(graph.x.shape, generator=g))
            scores = lf.predict(graph.with_features(x), pairs, threshold, model=model, backend="reference")
        else:  # learnt node embeddings (ogbl-ddi): the model's, restored afterwards
            weight = model.embedding.weight
            kept = weight.detach().clone()
            with torch.no_grad():
                weight.mul_(1 + 1e-7 * torch.randn(weight.shape, generator=g))
            try:
                scores = lf.predict(graph, pairs, threshold, model=model, backend="reference")
            finally:
                with torch.no_grad():
                    weight.copy_(kept)
        diff = (scores - ref).abs()
        noisy.append({"max": float(diff.max()), "over_1e-5": int((diff > 1e-5).sum())})
    row["reference_under_noise"] = noisy
    return row


def render(rows, meta) -> str:
    lines = ["# Score conditioning: the engine's deviation from the reference against float32 rounding's",
             "", f"Command: `{meta['command']}`", "", f"Machine: {meta['machine']}.", "",
             "Max |score - reference score| over the pairs, and how many exceed 1e-5 (the engine "
             "contract's bound on the tests' random graphs). 'reference under noise': the reference "
             "again with the input features (ogbl-ddi: the learnt node embeddings) scaled by 1 + 1e-7 x standard-normal noise, one column "
             "entry per seed. Models and pairs as in planner_grid.py (CiteSeer: its L = 8 node-exit "
             "GCN, the HeaRT-style test pairs; ogbl-ddi: its L = 3 GCN, OGB's validation pairs). "
             "Threshold 1.0 = exits off.", "",
             "| case | pairs | threshold | dense path | engine path | reference under noise |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        cell = lambda d: f"{d['max']:.1e} ({d['over_1e-5']} over 1e-5)"  # noqa: E731
        noise = "; ".join(cell(d) for d in r["reference_under_noise"])
        lines.append(f"| {r['case']} | {r['pairs']:,} | {r['threshold']} | {cell(r['dense'])} | "
                     f"{cell(r['engine'])} | {noise} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="citeseer-test,ddi-valid")
    ap.add_argument("--thresholds", default="0.5,0.9,1.0")
    ap.add_argument("--seeds", type=int, default=3, help="noise draws of the reference")
    ap.add_argument("--out", default="benchmarks/results/score_conditioning")
    args = ap.parse_args(argv)
    rows = []
    for name in [c for c in args.cases.split(",") if c]:
        for t in [float(t) for t in args.thresholds.split(",") if t]:
            rows.append(measure(name, t, args.seeds))
            print(json.dumps(rows[-1]), flush=True)
    meta = {"command": results_file.command("score_conditioning.py", argv),
            "machine": machine_label()}
    results_file.write(Path(args.out), meta, rows, render(rows, meta))


if __name__ == "__main__":
    main()
