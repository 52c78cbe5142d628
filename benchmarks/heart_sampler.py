"""HeaRT negative sampler: fidelity to the official CiteSeer file, and speed and memory at scale.

    python benchmarks/heart_sampler.py [--data PATH] [--skip-ddi] [--threads N] [--progress]

* CiteSeer validation: mean per-positive overlap |ours ∩ official| / 500 with the official
  ``heart_valid_samples.npy``, rows reproduced exactly (order included), wall time;
* CiteSeer test: generated and saved (the official test file is not available);
* Cora test, on a seeded 85/5/10 split (no HeaRT Cora files here): generated twice (determinism);
* ogbl-ddi test (133,489 positives x 500): wall time and the process's peak RSS.

Data: ``--data``, else ``$LINKEXIT_DATA``, else ``../shared/data`` relative to the repository.
Writes benchmarks/results/heart_sampler.{json,md} and the negatives to
runs/negatives/{citeseer,cora,ogbl_ddi}_test_heart.npy (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from linkexit_fast.datasets import load_dataset, load_heart, load_ogbl  # noqa: E402
from linkexit_fast.heart import default_eps, generate_negatives, save_negatives  # noqa: E402

COMMAND = "python benchmarks/heart_sampler.py"


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def overlap_with(ours: torch.Tensor, official: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Per-positive share of our pairs that the official row also holds, float ``[P]``."""
    a = ours[..., 0] * num_nodes + ours[..., 1]
    b = official[..., 0] * num_nodes + official[..., 1]
    return torch.tensor([torch.isin(a[i], b[i]).float().mean().item() for i in range(len(a))])


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def citeseer(root: Path, out_dir: Path, progress: bool) -> dict:
    split = load_heart("citeseer", root)
    neg, valid_s = timed(lambda: generate_negatives(split, "valid", progress=progress))
    ov = overlap_with(neg, split.valid_neg, split.graph.num_nodes)
    exact = int(sum(torch.equal(neg[i], split.valid_neg[i]) for i in range(len(neg))))
    test = test_negatives("citeseer", split, out_dir, progress)
    return {"valid_positives": len(split.valid_pos), "k": int(neg.shape[1]),
            "eps": default_eps(split.graph),
            "valid_overlap_mean": float(ov.mean()), "valid_overlap_min": float(ov.min()),
            "valid_rows_below_0.99": int((ov < 0.99).sum()), "valid_rows_identical": exact,
            "valid_seconds": round(valid_s, 2), "test_positives": test["test_positives"],
            "test_seconds": test["test_seconds"], "test_negatives_file": test["test_negatives_file"]}


def test_negatives(name: str, split, out_dir: Path, progress: bool, check_determinism=False) -> dict:
    """Generate, time and save ``split``'s test negatives; optionally generate them twice."""
    rss_before = current_rss_mib()
    neg, seconds = timed(lambda: generate_negatives(split, "test", progress=progress))
    peak = peak_rss_mib()
    path = out_dir / f"{name}_test_heart.npy"
    save_negatives(neg, path)
    res = {"test_positives": len(split.test_pos), "k": int(neg.shape[1]),
           "eps": default_eps(split.graph), "test_seconds": round(seconds, 2),
           "output_mib": round(neg.numel() * neg.element_size() / 2**20, 1),
           "rss_before_generation_mib": round(rss_before, 1), "peak_rss_mib": round(peak, 1),
           "test_negatives_file": str(path.relative_to(REPO))}
    if check_determinism:
        res["same_output_on_a_second_run"] = torch.equal(neg, generate_negatives(split, "test"))
    return res


def cora(root: Path, out_dir: Path, progress: bool) -> dict:
    split = load_dataset("planetoid:cora", root)  # seeded 85/5/10 split: no HeaRT Cora files here
    return dict(test_negatives("cora", split, out_dir, progress, check_determinism=True),
                split=split.name)


def ogbl_ddi(root: Path, out_dir: Path, progress: bool) -> dict:
    return test_negatives("ogbl_ddi", load_ogbl("ogbl-ddi", root), out_dir, progress)


def write_markdown(path: Path, res: dict) -> None:
    c, d = res["citeseer"], res.get("ogbl_ddi")
    lines = [
        "# HeaRT negative sampler",
        "",
        f"Command: `{res['command']}` ({res['date']}, {res['machine']}, torch {res['torch']}, "
        f"{res['threads']} threads; load average {res['load_average_at_start'][0]} at the start: "
        "the machine is shared, so times are wall-clock under that load).",
        "",
        "Defaults: `generate_negatives(split, which, k=500, cn=\"RA\", agg=\"min\", alpha=0.15, "
        "reproduce_heart=True)`.",
        "",
        "## CiteSeer (HeaRT split) against the official `heart_valid_samples.npy`",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| mean per-positive overlap (valid, {c['valid_positives']} x {c['k']}) | "
        f"{c['valid_overlap_mean']:.5f} |",
        f"| min per-positive overlap | {c['valid_overlap_min']:.3f} |",
        f"| positives below 0.99 overlap | {c['valid_rows_below_0.99']} |",
        f"| rows identical to the official file, order included | {c['valid_rows_identical']} "
        f"of {c['valid_positives']} |",
        f"| valid generation time | {c['valid_seconds']:.2f} s |",
        f"| test generation time ({c['test_positives']} positives) | {c['test_seconds']:.2f} s |",
        f"| PPR tolerance eps | {c['eps']:g} |",
        "",
        f"Test negatives: `{c['test_negatives_file']}` (generated here; no official file).",
    ]
    k = res.get("cora")
    if k:
        lines += [
            "",
            "## Cora test negatives",
            "",
            f"Split `{k['split']}`: HeaRT's Cora split files are not in the data folder, so this is "
            "a seeded 85/5/10 random split of the Planetoid edges (`load_dataset(\"planetoid:cora\")`).",
            "",
            "| metric | value |",
            "| --- | --- |",
            f"| positives x negatives | {k['test_positives']:,} x {k['k']} |",
            f"| generation time | {k['test_seconds']:.2f} s |",
            f"| peak RSS of the process so far | {k['peak_rss_mib']:,.0f} MiB |",
            f"| same output on a second run (seed 0) | {k['same_output_on_a_second_run']} |",
            f"| PPR tolerance eps | {k['eps']:g} |",
            "",
            f"Negatives: `{k['test_negatives_file']}`.",
        ]
    if d:
        lines += [
            "",
            "## ogbl-ddi test negatives",
            "",
            "| metric | value |",
            "| --- | --- |",
            f"| positives x negatives | {d['test_positives']:,} x {d['k']} |",
            f"| generation time | {d['test_seconds']:.1f} s |",
            f"| peak RSS of the process | {d['peak_rss_mib']:,.0f} MiB |",
            f"| RSS before generation (data loaded) | {d['rss_before_generation_mib']:,.0f} MiB |",
            f"| output tensor | {d['output_mib']:,.0f} MiB |",
            f"| PPR tolerance eps | {d['eps']:g} |",
            "",
            f"Negatives: `{d['test_negatives_file']}`.",
        ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None,
                    help="data folder (default $LINKEXIT_DATA or ../shared/data)")
    ap.add_argument("--skip-ddi", action="store_true", help="CiteSeer only")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's); on a busy machine 1 can be faster")
    ap.add_argument("--progress", action="store_true", help="show progress bars")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.data or os.environ.get("LINKEXIT_DATA", "../shared/data"))
    root = root if root.is_absolute() else (REPO / root).resolve()
    if not root.is_dir():
        sys.exit(f"data folder not found: {root} (use --data or LINKEXIT_DATA)")
    out_dir = REPO / "runs" / "negatives"
    flags = ((" --skip-ddi" if args.skip_ddi else "")
             + (f" --threads {args.threads}" if args.threads else ""))
    res = {"command": COMMAND + flags,
           "date": time.strftime("%Y-%m-%d %H:%M"),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "torch": torch.__version__, "threads": torch.get_num_threads(),
           "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}
    res["citeseer"] = citeseer(root, out_dir, args.progress)
    print(json.dumps(res["citeseer"], indent=2))
    res["cora"] = cora(root, out_dir, args.progress)
    print(json.dumps(res["cora"], indent=2))
    if not args.skip_ddi:
        res["ogbl_ddi"] = ogbl_ddi(root, out_dir, args.progress)
        print(json.dumps(res["ogbl_ddi"], indent=2))
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "heart_sampler.json").write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(results / "heart_sampler.md", res)


if __name__ == "__main__":
    main()
