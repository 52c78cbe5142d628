"""Random negatives are never true edges of the dataset nor self-pairs.

Every expected value comes from plain Python sets of unordered pairs built here, not from the
package's own key arithmetic.
"""
import itertools
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from conftest import require_data
from linkexit_fast import datasets
from linkexit_fast.datasets import (EdgeSet, LinkSplit, load_dataset, random_link_split,
                                    sample_negatives, synthetic)
from linkexit_fast.graph import Graph
from linkexit_fast.heart import generate_negatives
from linkexit_fast.train import TrainConfig, build_model, negative_sampler, train

EXAMPLES = settings(max_examples=40, deadline=None)


def pair_set(pairs) -> set:
    """Unordered pairs ``{u, v}`` (u != v) of ``[P, 2]`` pairs, as frozensets."""
    return {frozenset(p) for p in np.asarray(pairs).reshape(-1, 2).tolist() if p[0] != p[1]}


def assert_true_negatives(neg, edges: set, count: int) -> None:
    """``neg`` holds ``count`` distinct unordered pairs, none a self-pair or one of ``edges``."""
    rows = np.asarray(neg).reshape(-1, 2).tolist()
    assert len(rows) == count
    assert all(u != v for u, v in rows), "a self-pair among the negatives"
    found = {frozenset(r) for r in rows}
    assert len(found) == count, "a repeated pair among the negatives"
    assert not found & edges, f"true edges among the negatives: {sorted(map(sorted, found & edges))[:5]}"


def random_graph(n: int, density: float, seed: int) -> np.ndarray:
    """Each of the n (n - 1) / 2 pairs an edge with probability ``density``: ``[E, 2]``."""
    rng = np.random.default_rng(seed)
    pairs = np.array(list(itertools.combinations(range(n), 2)), dtype=np.int64).reshape(-1, 2)
    return pairs[rng.random(len(pairs)) < density]


def as_split(edges: np.ndarray, n: int, held_out: np.ndarray = None) -> LinkSplit:
    empty = torch.empty(0, 2, dtype=torch.int64)
    held = empty if held_out is None else torch.as_tensor(held_out)
    g = Graph.from_edge_index(torch.as_tensor(edges.T.copy()), num_nodes=n)
    return LinkSplit("test", g, torch.as_tensor(edges), held, empty)


# ---------------------------------------------------------------------- the reported case
def test_cora_random_negatives_are_not_edges():
    folder = require_data("planetoid")
    with open(folder / "ind.cora.graph", "rb") as f:  # the trusted raw file, read plainly
        raw = pickle.load(f, encoding="latin1")
    edges = {frozenset((k, v)) for k, vs in raw.items() for v in vs if k != v}
    assert frozenset((2, 1986)) in edges  # the reported negative is a Cora edge
    split = load_dataset("planetoid:cora")
    positives = pair_set(torch.cat([split.train_pos, split.valid_pos, split.test_pos]))
    assert positives == edges  # the split's positives are exactly the raw graph
    for neg, pos in ((split.valid_neg, split.valid_pos), (split.test_neg, split.test_pos)):
        assert_true_negatives(neg, edges, len(pos))


# ---------------------------------------------------------------------- the sampler
@EXAMPLES
@given(n=st.integers(2, 25), density=st.floats(0, 1), seed=st.integers(0, 2**16),
       share=st.floats(0, 1))
def test_sample_negatives_avoids_edges_at_any_density(n, density, seed, share):
    edges = random_graph(n, density, seed)
    non_edges = {frozenset(p) for p in itertools.combinations(range(n), 2)} - pair_set(edges)
    count = int(share * len(non_edges))
    neg = sample_negatives(EdgeSet(edges, n), count, np.random.default_rng(seed))
    assert neg.dtype == np.int64 and neg.shape == (count, 2)
    assert_true_negatives(neg, pair_set(edges), count)
    if count == len(non_edges):  # asking for every non-edge yields exactly them
        assert pair_set(neg) == non_edges
    again = sample_negatives(EdgeSet(edges, n), count, np.random.default_rng(seed))
    assert np.array_equal(neg, again)


@EXAMPLES
@given(n=st.integers(2, 20), missing=st.integers(0, 3), extra=st.integers(1, 5))
def test_sample_negatives_raises_when_too_few_non_edges(n, missing, extra):
    complete = list(itertools.combinations(range(n), 2))
    missing = min(missing, len(complete))
    edges = np.array(complete[missing:], dtype=np.int64).reshape(-1, 2)
    with pytest.raises(ValueError, match=f"has only {missing} non-edges"):
        sample_negatives(EdgeSet(edges, n), missing + extra, np.random.default_rng(0))


def test_sample_negatives_refuses_hopeless_density(monkeypatch):
    # 3 non-edges of 45 pairs: collecting all three takes about 45 * (1 + 1/2 + 1/3) = 82 draws
    # in expectation, over a budget of 2 rounds of 4 draws.
    monkeypatch.setattr(datasets, "_DRAWS_PER_ROUND", 4)
    monkeypatch.setattr(datasets, "_MAX_ROUNDS", 2)
    edges = np.array(list(itertools.combinations(range(10), 2))[3:])
    with pytest.raises(ValueError, match="too few to find by rejection sampling"):
        sample_negatives(EdgeSet(edges, 10), 3, np.random.default_rng(0))


def test_sample_negatives_argument_errors():
    with pytest.raises(ValueError, match="out of range for num_nodes=3"):
        EdgeSet([[0, 3]], 3)
    with pytest.raises(ValueError, match="count must be >= 0"):
        sample_negatives(EdgeSet([[0, 1]], 3), -1, np.random.default_rng(0))


# ---------------------------------------------------------------------- every split
@EXAMPLES
@given(n=st.integers(3, 30), density=st.floats(0.05, 1), seed=st.integers(0, 2**16),
       held=st.integers(0, 3))
def test_random_link_split_negatives_avoid_every_positive(n, density, seed, held):
    edges = random_graph(n, density, seed)
    # Some true edges come as the input's validation positives: the new split drops them, yet
    # they stay true edges that no negative may be.
    held_out, edges = edges[:held], edges[held:]
    split = as_split(edges, n, held_out)
    all_edges = pair_set(edges) | pair_set(held_out)
    non_edges = n * (n - 1) // 2 - len(all_edges)
    want = int(0.05 * len(edges)) + int(0.10 * len(edges))
    if want > non_edges:
        with pytest.raises(ValueError, match=f"has only {non_edges} non-edges"):
            random_link_split(split, seed=seed)
        return
    out = random_link_split(split, seed=seed)
    assert pair_set(torch.cat([out.train_pos, out.valid_pos, out.test_pos])) == pair_set(edges)
    assert_true_negatives(torch.cat([out.valid_neg, out.test_neg]), all_edges, want)


@EXAMPLES
@given(n=st.integers(4, 60), degree=st.floats(0.5, 60), seed=st.integers(0, 2**16))
def test_synthetic_negatives_avoid_every_positive(n, degree, seed):
    try:
        split = synthetic(num_nodes=n, avg_degree=degree, num_features=2, num_communities=2, seed=seed)
    except ValueError as e:  # dense enough that the negatives cannot all be non-edges
        assert "non-edges" in str(e)
        return
    edges = pair_set(torch.cat([split.train_pos, split.valid_pos, split.test_pos]))
    assert_true_negatives(split.valid_neg, edges, len(split.valid_pos))
    assert_true_negatives(split.test_neg, edges, len(split.test_pos))
    assert not pair_set(split.valid_neg) & pair_set(split.test_neg)


def test_dense_synthetic_raises_clearly():
    # 6 nodes, at most 15 pairs, asked for an average degree of 40: (nearly) complete.
    with pytest.raises(ValueError, match=r"cannot draw \d+ distinct negatives: a graph of 6 nodes"):
        synthetic(num_nodes=6, avg_degree=40, num_features=2, num_communities=1)


# ---------------------------------------------------------------------- training negatives
@EXAMPLES
@given(n=st.integers(2, 25), density=st.floats(0, 1), seed=st.integers(0, 2**16),
       share=st.floats(0, 1))
def test_training_negatives_avoid_training_edges(n, density, seed, share):
    edges = random_graph(n, density, seed)
    graph = Graph.from_edge_index(torch.as_tensor(edges.T.copy()), num_nodes=n)
    free = n * (n - 1) // 2 - len(edges)
    count = int(share * free)
    sample = negative_sampler(graph, seed)
    first, second = sample(count), sample(count)
    for neg in (first, second):
        assert neg.dtype == torch.int64
        assert_true_negatives(neg, pair_set(edges), count)
    assert torch.equal(first, negative_sampler(graph, seed)(count))  # seeded, one stream
    with pytest.raises(ValueError, match=f"has only {free} non-edges"):
        sample(free + 1)


def test_train_loop_uses_true_training_negatives():
    split = synthetic(num_nodes=120, avg_degree=30, num_features=4, num_communities=2, seed=1)
    model = build_model(split, hidden=8, layers=2)
    scored = []
    score = model.score
    model.score = lambda z, pairs: (scored.append(pairs.clone()), score(z, pairs))[1]
    train(model, split, TrainConfig(epochs=1, batch_size=256, eval_every=1), progress=False)
    # Per step the loop scores the batch's positives, then as many negatives.
    train_edges = pair_set(split.train_pos)
    negs = scored[1:2 * (len(split.train_pos) + 255) // 256:2]
    assert len(negs) == (len(split.train_pos) + 255) // 256
    for batch_neg in negs:
        assert_true_negatives(batch_neg, train_edges, len(batch_neg))


# ---------------------------------------------------------------------- HeaRT's random fill
def test_heart_fill_never_picks_a_true_edge():
    # Path 0-1-2 and isolated 3..9. Corrupting 0 for the validation positive (0, 2) leaves only
    # zero-score candidates 3..9; (0, 3), (0, 4), (0, 5) are test positives, so the four random
    # picks must be exactly 6..9.
    g = Graph.from_edge_index(torch.tensor([[0, 1], [1, 2]]), num_nodes=10)
    split = LinkSplit("path", g, torch.tensor([[0, 1], [1, 2]]), torch.tensor([[0, 2]]),
                      torch.tensor([[0, 3], [0, 4], [0, 5]]))
    for seed in range(5):
        neg = generate_negatives(split, "valid", k=8, progress=False, seed=seed)
        assert sorted(neg[0, :4, 1].tolist()) == [6, 7, 8, 9]
