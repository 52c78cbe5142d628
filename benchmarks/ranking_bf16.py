"""Exact HeaRT evaluation with the bf16 scorer vs the fp32 and reference evaluations.

    LINKEXIT_DATA=/work/shared/data python benchmarks/ranking_bf16.py   # -> results/ranking_bf16.{json,md}

Timed end to end (embeddings + scoring + metrics) on CiteSeer's HeaRT test set (455 positives x
500 hard negatives, the node-exit GCN of ``test_engine_bench.case``), interleaved rounds, medians:

* ``reference``: ``predict(..., backend="reference")`` + ``metrics.heart_metrics``;
* ``fp32``: ``predict`` (auto backend) + ``metrics.heart_metrics``;
* ``bf16_exact``: ``ranking.exact_heart_metrics`` (bf16 negatives, fp32 re-scoring).

Exactness (metrics ``==`` the fp32 evaluation's, every key) is checked on CiteSeer, on Cora
(``planetoid:cora`` random split, HeaRT negatives from ``heart.generate_negatives``, the same
node-exit GCN as CiteSeer's trained 1.5 minutes on Cora) and on ogbl-ddi (the benchmark's
trained model; 2000 validation positives x 500 negatives drawn from the shared validation
negatives: HeaRT negatives for ddi are not generated here).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_bench import RUNS, THRESHOLD, _heart_test_negatives, _train, case  # noqa: E402

import linkexit_fast as lf  # noqa: E402
from linkexit_fast.backends.bf16 import bf16_isa  # noqa: E402
from linkexit_fast.datasets import data_root, load_dataset, load_heart, load_ogbl  # noqa: E402
from linkexit_fast.metrics import heart_metrics  # noqa: E402
from linkexit_fast.ranking import exact_heart_metrics  # noqa: E402
from linkexit_fast.timing import cpu_model, interleaved_times  # noqa: E402


def fp32_eval(graph, pos, neg, model, backend="auto"):
    P, K = neg.shape[:2]
    s = lf.predict(graph, torch.cat([pos, neg.reshape(-1, 2)]), THRESHOLD, model=model, backend=backend)
    return heart_metrics(s[:P], s[P:].view(P, K))


def citeseer():
    split = load_heart("citeseer", data_root())
    graph, _, model = case("citeseer-test")
    return graph, split.test_pos, _heart_test_negatives(split), model


def cora():
    from linkexit_fast.heart import generate_negatives, load_negatives, save_negatives
    split = load_dataset("planetoid:cora")
    path = RUNS / "cora_test_heart.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_negatives(generate_negatives(split, which="test", k=500, progress=False), path)
    # A trained model, as CiteSeer's (an untrained one ties almost every score, so every
    # negative was re-scored in fp32 and the check decided nothing)
    model = _train("cora", split, 8, 256, 1.5)
    return split.graph, split.test_pos, load_negatives(path), model


def ddi():
    split = load_ogbl("ogbl-ddi", data_root())
    graph, _, model = case("ddi-valid")
    g = torch.Generator().manual_seed(0)
    pos = split.valid_pos[torch.randperm(len(split.valid_pos), generator=g)[:2000]]
    neg = split.valid_neg[torch.randint(0, len(split.valid_neg), (2000, 500), generator=g)]
    return graph, pos, neg, model


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/ranking_bf16")
    args = ap.parse_args()
    rows = {}
    for name, load in (("citeseer", citeseer), ("cora", cora), ("ogbl-ddi", ddi)):
        graph, pos, neg, model = load()
        want = fp32_eval(graph, pos, neg, model)
        got = exact_heart_metrics(model, graph, pos, neg, THRESHOLD)
        rows[name] = {"positives": len(pos), "negatives_per_positive": neg.shape[1],
                      "identical": all(got[k] == v for k, v in want.items()), "fp32": want,
                      "bf16_exact": got}
        print(name, json.dumps(rows[name]), flush=True)
    graph, pos, neg, model = citeseer()
    methods = {"reference": lambda: fp32_eval(graph, pos, neg, model, "reference"),
               "fp32": lambda: fp32_eval(graph, pos, neg, model),
               "bf16_exact": lambda: exact_heart_metrics(model, graph, pos, neg, THRESHOLD)}
    for f in methods.values():  # warm-up: oneDNN primitive creation, page faults
        f()
    load_before = _load()
    # interleaved: load from other users hits every method alike
    times = interleaved_times(methods, args.rounds, warmup=False)
    med = {m: statistics.median(v) for m, v in times.items()}
    result = {"machine": {"cpu": cpu_model(), "bf16_isa": bf16_isa(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__, "python": platform.python_version(),
                          "load_before": load_before, "load_after": _load()},
              "command": "LINKEXIT_DATA=/work/shared/data python benchmarks/ranking_bf16.py"
                         + (f" --rounds {args.rounds}" if args.rounds != 7 else ""),
              "citeseer_seconds": times, "citeseer_median_s": med,
              "speedup_vs_reference": med["reference"] / med["bf16_exact"],
              "speedup_vs_fp32": med["fp32"] / med["bf16_exact"], "exactness": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = ["# Exact HeaRT-protocol ranking with a bf16 scorer", "",
             f"`{result['command']}` on {result['machine']['cpu']} (bf16 ISA: {result['machine']['bf16_isa']}, "
             f"{result['machine']['threads']} threads, torch {torch.__version__}; a shared machine: "
             f"`uptime` before: {load_before}; after: {result['machine']['load_after']}).", "",
             f"CiteSeer test ({len(pos)} positives x {neg.shape[1]} HeaRT-style hard negatives from "
             "linkexit_fast's sampler, not HeaRT's official file; exit threshold "
             f"{THRESHOLD}), end to end, median of {args.rounds} interleaved rounds; baseline: the "
             "`reference` backend (dense forward, gather-then-MLP) and fp32 `predict`:", "",
             "| evaluation | median s | vs reference | vs fp32 |", "|---|---|---|---|"]
    for m in methods:
        lines.append(f"| {m} | {med[m]:.3f} | {med['reference'] / med[m]:.2f}x | {med['fp32'] / med[m]:.2f}x |")
    lines += ["", "Exactness (bf16_exact metrics == fp32 predict + heart_metrics, every key). Negatives: "
              "CiteSeer and Cora, HeaRT-style hard negatives from linkexit_fast's sampler (not HeaRT's "
              "official files); ogbl-ddi, K negatives per positive drawn from OGB's shared random "
              "validation negatives (NOT HeaRT):", "",
              "| dataset | P x K | identical | MRR | refined with 3 bf16 products | rescored in fp32 |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        b = r["bf16_exact"]
        lines.append(f"| {name} | {r['positives']} x {r['negatives_per_positive']} | {r['identical']} | "
                     f"{b['mrr']:.4f} | {100 * b['refined_bf16x3'] / (r['positives'] * r['negatives_per_positive']):.2f}% | "
                     f"{100 * b['rescored_share']:.2f}% |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
