"""The benchmark suite: each case's name printed as it starts (verbose by default), and a quick set.

    pytest benchmarks --benchmark-only --quick    # the cases marked ``quick``: a few minutes
    pytest benchmarks --benchmark-only            # everything

The durations below are what a fresh run took on this project's 2-core benchmark machine (README,
"Benchmarks"); they are printed in the header so that a long silent case does not read as a hang.
"""
# Measured wall-clock of each set from a fresh clone (bench models not yet trained), minutes.
ESTIMATE_MIN = {"quick": 2, "full": 10}


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true",
                     help="run only the benchmark cases marked quick (about %d min)" % ESTIMATE_MIN["quick"])


def pytest_configure(config):
    # Name each case as it starts: some run for minutes (model training, the 1M-node graph).
    config.option.verbose = max(config.option.verbose, 1)


def pytest_report_header(config):
    which = "quick" if config.getoption("--quick") else "full"
    return (f"benchmark set: {which}, about {ESTIMATE_MIN[which]} min on a 2-core CPU from a fresh "
            f"clone (bench models are trained once, then cached in runs/bench/)")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--quick"):
        return
    keep = [item for item in items if item.get_closest_marker("quick")]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep
