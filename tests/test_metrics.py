import math
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from linkexit_fast.metrics import (EXISTING_KS, HEART_KS, evaluate_scores, existing_metrics,
                                   heart_metrics, heart_ranks)


# ---------------------------------------------------------------------- slow references
def slow_heart_ranks(pos, neg):
    out = []
    for p, row in zip(pos.tolist(), neg.tolist()):
        ge = sum(1 for n in row if n >= p)
        gt = sum(1 for n in row if n > p)
        out.append(1 + 0.5 * (ge + gt))
    return out


def slow_auc(pos, neg):
    wins = 0.0
    for p in pos.tolist():
        for n in neg.tolist():
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(pos) * len(neg))


def slow_ap(pos, neg):
    """Step-wise AP straight from the definition: walk the distinct thresholds downwards."""
    scored = [(s, 1) for s in pos.tolist()] + [(s, 0) for s in neg.tolist()]
    total_pos = len(pos)
    ap, prev_recall = 0.0, 0.0
    for t in sorted({s for s, _ in scored}, reverse=True):
        tp = sum(1 for s, y in scored if s >= t and y == 1)
        seen = sum(1 for s, _ in scored if s >= t)
        recall = tp / total_pos
        ap += (recall - prev_recall) * (tp / seen)
        prev_recall = recall
    return ap


def slow_ogb_hits(pos, neg, k):
    if len(neg) < k:
        return 1.0
    kth = sorted(neg.tolist(), reverse=True)[k - 1]
    return sum(1 for p in pos.tolist() if p > kth) / len(pos)


# ---------------------------------------------------------------------- HeaRT setting
def test_heart_ranks_hand_cases():
    pos = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    neg = torch.tensor([[0.0, 0.0, 0.0],   # all below: rank 1
                        [2.0, 2.0, 2.0],   # all above: rank K + 1
                        [1.0, 1.0, 1.0],   # all tied: 1 + (3 + 0) / 2
                        [2.0, 1.0, 0.0],   # one above, one tied: 1 + (2 + 1) / 2
                        [0.0, -1.0, 5.0]])
    assert heart_ranks(pos, neg).tolist() == [1.0, 4.0, 2.5, 2.5, 2.5]


def test_heart_ranks_all_negatives_equal_to_positive():
    k = 500
    ranks = heart_ranks(torch.zeros(3), torch.zeros(3, k))
    assert ranks.tolist() == [1 + k / 2] * 3


def test_heart_metrics_hand_case_and_hit_thresholds():
    pos = torch.tensor([5.0, 5.0, 5.0, 5.0])
    neg = torch.tensor([[1.0, 2.0, 3.0],    # rank 1
                        [5.0, 1.0, 1.0],    # rank 1.5: a tie is not a Hits@1
                        [6.0, 7.0, 5.0],    # rank 3.5
                        [9.0, 9.0, 9.0]])   # rank 4
    m = heart_metrics(pos, neg, ks=(1, 2, 3, 4))
    assert m["mrr"] == pytest.approx((1 + 1 / 1.5 + 1 / 3.5 + 1 / 4) / 4)
    assert m["hits@1"] == 0.25
    assert m["hits@2"] == 0.5
    assert m["hits@3"] == 0.5
    assert m["hits@4"] == 1.0


def test_heart_metrics_default_keys():
    m = heart_metrics(torch.rand(4), torch.rand(4, 7))
    assert list(m) == ["mrr"] + [f"hits@{k}" for k in HEART_KS]


finite = st.floats(min_value=-4, max_value=4, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 9), st.data())
def test_heart_ranks_match_slow_loop(p, k, data):
    # Scores from a few values, so ties between positives and negatives are common.
    values = st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]) | finite
    pos = torch.tensor(data.draw(st.lists(values, min_size=p, max_size=p)), dtype=torch.float32)
    neg = torch.tensor(data.draw(st.lists(st.lists(values, min_size=k, max_size=k),
                                          min_size=p, max_size=p)), dtype=torch.float32)
    expected = slow_heart_ranks(pos, neg)
    assert heart_ranks(pos, neg).tolist() == expected
    m = heart_metrics(pos, neg, ks=(1, 3))
    assert m["mrr"] == pytest.approx(sum(1 / r for r in expected) / p)
    assert m["hits@3"] == pytest.approx(sum(r <= 3 for r in expected) / p)


def test_heart_ranks_at_ogbl_ddi_size_is_fast():
    p, k = 133_489, 500
    pos = torch.full((p,), 10.0)
    neg = torch.arange(k, dtype=torch.float32).repeat(p, 1)  # 0..499: 489 above 10, one tie
    start = time.perf_counter()
    ranks = heart_ranks(pos, neg)
    assert time.perf_counter() - start < 30.0
    assert bool((ranks == 1 + (490 + 489) / 2).all())


def test_integer_and_mixed_dtypes_are_promoted():
    pos = torch.tensor([2, 0])
    neg = torch.tensor([[1.5, 2.0], [0.0, -1.0]], dtype=torch.float64)
    assert heart_ranks(pos, neg).tolist() == [1.5, 1.5]


# ---------------------------------------------------------------------- existing setting
def test_existing_hits_use_strictly_above_kth_negative():
    neg = torch.tensor([0.9, 0.8, 0.7, 0.1])
    pos = torch.tensor([0.95, 0.9, 0.85, 0.7, 0.75])
    m = existing_metrics(pos, neg, ks=(1, 2, 3, 4))
    assert m["hits@1"] == pytest.approx(1 / 5)   # only 0.95 > 0.9; the tie 0.9 does not count
    assert m["hits@2"] == pytest.approx(3 / 5)   # > 0.8
    assert m["hits@3"] == pytest.approx(4 / 5)   # > 0.7
    assert m["hits@4"] == pytest.approx(5 / 5)   # > 0.1


def test_existing_hits_with_fewer_negatives_than_k_is_one():
    m = existing_metrics(torch.tensor([-5.0, -6.0]), torch.tensor([1.0, 2.0, 3.0]), ks=(3, 4, 100))
    assert m["hits@3"] == 0.0
    assert m["hits@4"] == 1.0 and m["hits@100"] == 1.0


def test_existing_hand_auc_ap_mrr():
    pos = torch.tensor([1.0, 2.0, 0.3])
    neg = torch.tensor([1.0, 0.5, 0.2])
    m = existing_metrics(pos, neg, ks=())
    assert m["auc"] == pytest.approx(6.5 / 9)
    # Thresholds 2, 1, 0.5, 0.3, 0.2: precisions 1, 2/3, -, 3/5, - at recall steps of 1/3.
    assert m["ap"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # Ranks against all negatives: 1 + (1 + 0) / 2, 1, 1 + (2 + 2) / 2.
    assert m["mrr"] == pytest.approx((1 / 1.5 + 1 + 1 / 3) / 3)


def test_existing_perfect_and_reversed_separation():
    good = existing_metrics(torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0, 2.0]))
    assert good["auc"] == 1.0 and good["ap"] == 1.0
    bad = existing_metrics(torch.tensor([0.0]), torch.tensor([1.0, 2.0]))
    assert bad["auc"] == 0.0 and bad["ap"] == pytest.approx(1 / 3)


def test_existing_default_keys():
    m = existing_metrics(torch.rand(5), torch.rand(200))
    assert set(m) == {f"hits@{k}" for k in EXISTING_KS} | {"mrr", "auc", "ap"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]) | finite, min_size=1, max_size=15),
       st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]) | finite, min_size=1, max_size=15))
def test_existing_metrics_match_slow_references(pos, neg):
    pos_t, neg_t = torch.tensor(pos), torch.tensor(neg)
    m = existing_metrics(pos_t, neg_t, ks=(1, 3, 20))
    assert m["auc"] == pytest.approx(slow_auc(pos_t, neg_t), abs=1e-12)
    assert m["ap"] == pytest.approx(slow_ap(pos_t, neg_t), abs=1e-12)
    for k in (1, 3, 20):
        assert m[f"hits@{k}"] == pytest.approx(slow_ogb_hits(pos_t, neg_t, k))
    ranks = [1 + 0.5 * (sum(n >= p for n in neg) + sum(n > p for n in neg)) for p in pos]
    assert m["mrr"] == pytest.approx(sum(1 / r for r in ranks) / len(pos))


def test_existing_auc_ap_on_larger_random_input():
    rng = np.random.default_rng(0)
    pos = torch.from_numpy(rng.normal(1.0, 1.0, 300).round(1))
    neg = torch.from_numpy(rng.normal(0.0, 1.0, 400).round(1))
    m = existing_metrics(pos, neg)
    assert m["auc"] == pytest.approx(slow_auc(pos, neg), abs=1e-12)
    assert m["ap"] == pytest.approx(slow_ap(pos, neg), abs=1e-12)


# ---------------------------------------------------------------------- entry point and errors
def test_evaluate_scores_picks_the_setting_from_the_negatives_shape():
    pos, neg2, neg1 = torch.rand(6), torch.rand(6, 10), torch.rand(30)
    assert evaluate_scores(pos, neg2) == heart_metrics(pos, neg2)
    assert evaluate_scores(pos, neg1) == existing_metrics(pos, neg1)
    assert evaluate_scores(pos.numpy(), neg1.numpy()) == existing_metrics(pos, neg1)


@pytest.mark.parametrize("pos, neg, fragment", [
    (torch.rand(3, 1), torch.rand(3, 4), r"pos_scores must have shape \[P\].*\[3, 1\]"),
    (torch.rand(3), torch.rand(4, 5), r"\[P, K\] with P = 3.*\[4, 5\]"),
    (torch.rand(3), torch.rand(3, 0), r"K >= 1.*\[3, 0\]"),
    (torch.rand(0), torch.rand(0, 5), r"P >= 1, got \[0\]"),
    (torch.rand(3), torch.rand(12), r"\[P, K\].*got \[12\]"),
])
def test_heart_bad_shapes(pos, neg, fragment):
    with pytest.raises(ValueError, match=fragment):
        heart_metrics(pos, neg)


@pytest.mark.parametrize("pos, neg, fragment", [
    (torch.rand(3), torch.rand(3, 4), r"neg_scores must have shape \[Q\], got \[3, 4\]"),
    (torch.rand(2, 2), torch.rand(4), r"pos_scores must have shape \[P\].*\[2, 2\]"),
    (torch.rand(3), torch.rand(0), r"at least one negative"),
])
def test_existing_bad_shapes(pos, neg, fragment):
    with pytest.raises(ValueError, match=fragment):
        existing_metrics(pos, neg)


def test_evaluate_scores_rejects_other_ranks_and_nan_and_bad_ks():
    with pytest.raises(ValueError, match=r"\[P, K\] \(HeaRT\) or \[Q\].*\[2, 3, 4\]"):
        evaluate_scores(torch.rand(2), torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="neg_scores contains NaN"):
        evaluate_scores(torch.rand(2), torch.tensor([[0.1, math.nan], [0.2, 0.3]]))
    with pytest.raises(ValueError, match="ks must be positive integers, got 0"):
        heart_metrics(torch.rand(2), torch.rand(2, 3), ks=(1, 0))
    with pytest.raises(TypeError, match="real scores"):
        heart_metrics(torch.rand(2), torch.rand(2, 3, dtype=torch.complex64))
