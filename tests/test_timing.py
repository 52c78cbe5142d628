"""The timing helpers' schedule: interleaved rounds whose order varies each variant's predecessor."""
import collections

from linkexit_fast.timing import interleaved_medians, interleaved_times, round_order


def test_round_order_is_a_seeded_permutation():
    names = ["auto", "dense", "engine", "reference"]
    for r in range(20):
        assert sorted(round_order(names, r)) == sorted(names)
        assert round_order(names, r) == round_order(names, r)  # the same schedule every run


def test_every_variant_follows_several_predecessors():
    # A rotated fixed order keeps each variant behind the same one (cyclic order unchanged):
    # count predecessors across the concatenated rounds as the calls really run.
    names = ["auto", "dense", "engine", "reference"]
    calls = [n for r in range(12) for n in round_order(names, r)]
    before = collections.defaultdict(set)
    for prev, cur in zip(calls, calls[1:]):
        before[cur].add(prev)
    assert all(len(before[n] - {n}) >= 2 for n in names), dict(before)


def test_interleaved_times_calls_each_variant_once_a_round():
    calls = []
    fns = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    times = interleaved_times(fns, rounds=5, warmup=True)
    assert collections.Counter(calls) == {"a": 6, "b": 6, "c": 6}  # 1 warm-up + 5 rounds
    assert {n: len(t) for n, t in times.items()} == {"a": 5, "b": 5, "c": 5}
    assert all(t >= 0 for ts in times.values() for t in ts)
    med = interleaved_medians(fns, rounds=3, warmup=False)
    assert set(med) == set("abc") and collections.Counter(calls) == {"a": 9, "b": 9, "c": 9}
