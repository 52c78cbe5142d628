"""Seconds per training epoch on CiteSeer (HeaRT split), GCN node exit L = 8, hidden 256, dropout
0.1, 3-layer scorer, batch 1024: this checkout against another one (e.g. an older commit), in
interleaved rounds of separate processes (1 thread each), medians and their ratio.

    git worktree add /tmp/before abff8cb
    python benchmarks/train_throughput.py --before /tmp/before --rounds 5

Writes ``benchmarks/results/train_throughput.{md,json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 3  # timed, after one untimed warm-up epoch


def child():
    """Time EPOCHS training epochs with whatever ``linkexit_fast`` is on the path; print seconds/epoch."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    from linkexit_fast.datasets import load_dataset
    from linkexit_fast.train import build_model, negative_sampler
    split = load_dataset("heart:citeseer")
    torch.manual_seed(0)
    model = build_model(split, layers=8, backbone="gcn", exit="node", dropout=0.1, predictor_layers=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    graph, pos, sample = split.graph, split.train_pos, negative_sampler(split.graph, 0)
    gen = torch.Generator().manual_seed(0)

    def epoch():  # the loop of linkexit_fast.train.train, without evaluation
        model.train()
        perm = torch.randperm(len(pos), generator=gen)
        for s in range(0, len(perm), 1024):
            batch = pos[perm[s:s + 1024]]
            res = model(graph.remove_edges(batch), generator=gen)
            neg = sample(len(batch))
            out_p, out_n = model.score(res.z, batch), model.score(res.z, neg)
            loss = (F.binary_cross_entropy_with_logits(out_p, torch.ones_like(out_p))
                    + F.binary_cross_entropy_with_logits(out_n, torch.zeros_like(out_n)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    epoch()
    start = time.perf_counter()
    for _ in range(EPOCHS):
        epoch()
    print(json.dumps((time.perf_counter() - start) / EPOCHS))


def run(code: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                         check=True, cwd=code)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=False, help="another checkout's root (the 'before' code)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child()
    # Here, not at the top: the child imports this file with the other checkout's package first.
    from linkexit_fast.timing import round_order
    roots = {"before": Path(args.before), "after": ROOT}
    times = {name: [] for name in roots}
    before, after = times["before"], times["after"]
    for i in range(args.rounds):
        for name in round_order(list(roots), i):
            times[name].append(run(roots[name]))
        print(f"round {i + 1}: before {before[-1]:.3f} s/epoch, after {after[-1]:.3f} s/epoch", flush=True)
    commit = subprocess.run(["git", "-C", args.before, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    mb, ma = statistics.median(before), statistics.median(after)
    result = {"before_commit": commit, "before_s_per_epoch": before, "after_s_per_epoch": after,
              "median_before": mb, "median_after": ma, "speedup": mb / ma}
    text = (f"# Training throughput: CiteSeer, GCN node exit L=8, hidden 256, batch 1024, 1 thread\n\n"
            f"Command: `python benchmarks/train_throughput.py --before <checkout of {commit}> --rounds {args.rounds}`"
            f"\n\nSeconds per epoch (4 steps, no evaluation), median of {args.rounds} interleaved rounds of "
            f"separate processes (each: 1 warm-up epoch, then {EPOCHS} timed): before ({commit}) "
            f"{mb:.3f} s, after {ma:.3f} s, {mb / ma:.2f}x. Machine: 2-core Intel Xeon, torch 2.13 CPU, "
            f"shared with other work (medians and the ratio are what to read).\n")
    out = ROOT / "benchmarks" / "results" / "train_throughput"
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
