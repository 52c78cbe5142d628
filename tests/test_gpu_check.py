"""benchmarks/gpu_check.py without a GPU: the script runs, skips its GPU parts, and its target
arithmetic and report are right."""
import importlib.util
import json
from pathlib import Path

import pytest

from conftest import require_optional
from linkexit_fast.backends import available_backends

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _case(ref_ms, engine_ms, t05_ms, t1_ms, pyg_ms, ratio, ratio05, full=True):
    timing = lambda ms: {"median_ms": ms}  # noqa: E731
    return {"full_evaluation": full,
            "timings": {"reference": timing(ref_ms), "engine_triton": timing(engine_ms),
                        "engine_triton_t0.5": timing(t05_ms), "engine_triton_t1.0": timing(t1_ms),
                        "pyg_fixed_depth": timing(pyg_ms)},
            "stats_triton_t0.9": {"flop_ratio": ratio}, "stats_triton_t0.5": {"flop_ratio": ratio05}}


def test_targets_are_computed_from_the_measurements(gpu_check):
    results = {"engine": {"big": _case(40.0, 20.0, 20.0, 24.0, 30.0, 2.5, 5.0),
                          "small": _case(6.0, 12.0, 12.0, 12.0, 8.0, 1.0, 1.0),
                          "query": _case(30.0, 1.0, 1.0, 1.0, 90.0, 50.0, 50.0, full=False)},
               "aggregate_rows": {"all_rows_self": {"triton": {"GB_per_s": 1200.0}}},
               "copy_bandwidth": {"GB_per_s": 3000.0}}
    t = gpu_check.evaluate_targets(results)
    big = t["big"]["speedup_vs_reference_t0.9"]
    assert big["speedup"] == pytest.approx(2.0) and big["needed"] == pytest.approx(1.75) and big["met"]
    assert not t["big"]["speedup_vs_reference_t0.5"]["met"]  # 2.0x < 0.7 x 5.0
    assert t["big"]["no_exit_overhead_vs_pyg"]["ratio"] == pytest.approx(0.8)
    assert not t["small"]["speedup_vs_reference_t0.9"]["met"]
    assert not t["small"]["no_exit_overhead_vs_pyg"]["met"]  # 12 / 8 = 1.5 > 1.2
    assert "query" not in t  # small queries are timed, not held to the full-evaluation targets
    assert t["aggregation_bandwidth"]["share_of_copy"] == pytest.approx(0.4)
    assert not t["aggregation_bandwidth"]["met"]


def test_markdown_of_the_committed_h100_run(gpu_check):
    report = json.loads((REPO / "benchmarks" / "results" / "gpu_check.json").read_text())
    md = gpu_check.render_markdown(report)
    assert "H100" in md and "| aggregation bandwidth" in md
    ddi = report["benchmark"]["engine"]["ogbl-ddi"]
    assert f"{ddi['timings']['reference']['median_ms']:.2f}" in md
    assert md == (REPO / "benchmarks" / "results" / "gpu_check.md").read_text()


def test_script_runs_without_a_gpu(gpu_check, tmp_path, monkeypatch):
    require_optional("triton" in available_backends(), "triton")
    # The script's correctness cases are tests/test_triton_ops.py's, which this suite runs
    # itself: here one case per op shows that the script runs and reports them (all of them
    # took 38 s of the suite through the interpreter).
    cases = gpu_check.load_test_cases()
    for group in ("AGGREGATE_CASES", "EXIT_CASES", "SCORE_CASES"):
        monkeypatch.setattr(cases, group, getattr(cases, group)[:1])
    monkeypatch.setattr(gpu_check, "load_test_cases", lambda: cases)
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["correctness"]["passed"] == report["correctness"]["cases"] == 3
    assert "no CUDA device" in report["skipped"] and "benchmark" not in report
