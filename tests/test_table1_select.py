"""benchmarks/table1.py's tuning: per seed, the run best on validation MRR over the lr x dropout grid."""
import importlib.util
import itertools
import random
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("table1", Path(__file__).resolve().parents[1] / "benchmarks" / "table1.py")
table1 = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(table1)


def _records(valid):
    return [{"lr": lr, "dropout": do, "valid": {"mrr": v}, "test": {"mrr": -v}}
            for (lr, do), v in valid.items()]


@pytest.mark.parametrize("seed", range(20))
def test_select_picks_the_best_validation_run_and_reports_both_grids(seed):
    rng = random.Random(seed)
    lrs, dropouts = [0.0005, 0.001, 0.002], [0.0, 0.1, 0.2]
    valid = {(lr, do): rng.random() for lr, do in itertools.product(lrs, dropouts)}
    best_lr, best_do = max(valid, key=valid.get)  # brute force, independent of select's code
    got = table1.select(_records(valid))
    assert (got["lr"], got["dropout"]) == (best_lr, best_do)
    assert got["test"]["mrr"] == -valid[(best_lr, best_do)]  # the chosen run's test metric, not the best test
    assert got["lr_grid"] == {str(lr): max(valid[(lr, do)] for do in dropouts) for lr in lrs}
    assert got["dropout_grid"] == {str(do): max(valid[(lr, do)] for lr in lrs) for do in dropouts}


def test_select_never_picks_on_test():
    recs = _records({(0.001, 0.1): 0.20, (0.002, 0.1): 0.19})
    recs[1]["test"]["mrr"] = 0.99  # the better test run loses on validation
    assert table1.select(recs)["lr"] == 0.001


@pytest.mark.parametrize("seed", range(10))
def test_a_grid_extended_later_selects_as_if_trained_at_once(seed):
    """--records: a seed's earlier selection (its record, with its grids) competes with the runs of
    the grid's new values; the result is the selection over every run, brute force."""
    rng = random.Random(seed)
    lrs, dropouts = [0.0005, 0.001, 0.002, 0.005], [0.0, 0.1, 0.2]
    valid = {(lr, do): rng.random() for lr, do in itertools.product(lrs, dropouts)}
    earlier = {k: v for k, v in valid.items() if k[0] != 0.005}
    later = {k: v for k, v in valid.items() if k[0] == 0.005}
    merged = table1.select([table1.select(_records(later)), table1.select(_records(earlier))])
    best = max(valid, key=valid.get)
    assert (merged["lr"], merged["dropout"]) == best and merged["test"]["mrr"] == -valid[best]
    assert merged["lr_grid"] == {str(lr): max(valid[(lr, do)] for do in dropouts) for lr in lrs}
    assert merged["dropout_grid"] == {str(do): max(valid[(lr, do)] for lr in lrs) for do in dropouts}
