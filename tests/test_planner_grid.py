"""benchmarks/planner_grid.py's verdicts (#17's three criteria) on timings made up here, each
expected value worked out by hand from the criteria's wording."""
import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))  # the script imports test_engine_bench from beside it
SPEC = importlib.util.spec_from_file_location("planner_grid", BENCH / "planner_grid.py")
grid = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(grid)


def seconds(auto, dense, engine, reference):
    return {"auto": auto, "dense": dense, "engine": engine, "reference": reference}


def test_each_criterion_misses_on_its_own():
    # auto 1.06 s against a best of 1.00: 6 % over
    assert grid.verdict(seconds(1.06, 1.00, 1.20, 5.0), 1.0)["misses"] == ["5%"]
    # auto 1.04 against 1.00 is within 5 %; slower than a 1.02 s reference
    assert grid.verdict(seconds(1.04, 1.00, 1.10, 1.02), 1.0)["misses"] == ["reference"]
    # engine the faster: 10 / 1 = 10x against 0.8 x 13 = 10.4x
    v = grid.verdict(seconds(1.0, 2.0, 1.0, 10.0), 13.0)
    assert v["misses"] == ["flops"] and v["engine_speedup_vs_reference"] == 10.0
    # the same speed-up against a FLOP ratio of 12.5: 0.8 x 12.5 = 10x, met
    assert grid.verdict(seconds(1.0, 2.0, 1.0, 10.0), 12.5)["misses"] == []
    # the FLOP criterion applies only where the engine path is the faster
    assert grid.verdict(seconds(1.0, 1.0, 1.01, 2.0), 100.0)["misses"] == []


def test_the_rerun_decides_and_the_summary_counts_it():
    first = dict(seconds=seconds(1.10, 1.00, 1.05, 3.0), **grid.verdict(seconds(1.10, 1.00, 1.05, 3.0), 1.0))
    again = seconds(1.01, 1.00, 1.04, 3.0)
    work = {"auto": [[10, 10], [0, 0]], "dense": [[10, 10], [0, 0]], "engine": [[4, 2], [3, 0]]}
    row = dict(graph="g", pairs="p", threshold=0.5, plan="dense (x)", engine_flop_ratio=1.0, work=work, **first,
               rerun=dict(seconds=again, rounds=20, **grid.verdict(again, 1.0)))
    assert first["misses"] == ["5%"] and grid.decided(row)["auto_over_best"] == 1.01
    bad_again = seconds(1.07, 1.00, 1.04, 3.0)
    bad = dict(row, rerun=dict(seconds=bad_again, rounds=20, **grid.verdict(bad_again, 1.0)))
    meta = dict(command="c", machine="m", rounds=5, reference_rounds=1, slow_reference=3.0)
    text = grid.render([row], meta)
    assert "Worst auto / best: 1.010; cells more than 5 % over: 0." in text
    text = grid.render([row, dict(bad, graph="h")], meta)
    assert "Worst auto / best: 1.070; cells more than 5 % over: 1 (h p t=0.5), of which 0 with auto on another plan" in text
    # The same timings with auto on the engine path, or on the dense path with other rows: a planner miss.
    for other in (dict(bad, graph="h", plan="engine (x)"),
                  dict(bad, graph="h", work=dict(work, auto=[[10, 9], [0, 0]]))):
        text = grid.render([row, other], meta)
        assert "over: 1 (h p t=0.5), of which 1 with auto on another plan" in text
        assert "(planner misses: h p t=0.5)" in text
