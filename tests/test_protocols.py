"""The protocol simulations behave as their theory says."""

import numpy as np
import pytest

from sbir_core import protocols as P


def test_best_of_one_is_unbiased_and_test_selection_is_optimistic():
    rng = np.random.default_rng(0)
    one = P.simulate_checkpoint_selection(1, 200, accuracy=0.3, n_trials=400, rng=rng)
    assert abs(one.optimism) < 0.01
    many = P.simulate_checkpoint_selection(50, 200, accuracy=0.3, n_trials=400, rng=rng)
    assert many.optimism > 0.01
    assert abs(many.val_bias) < 0.005


def test_optimism_shrinks_with_test_size():
    rng = np.random.default_rng(1)
    small = P.simulate_checkpoint_selection(20, 50, n_trials=300, rng=rng).optimism
    large = P.simulate_checkpoint_selection(20, 2000, n_trials=300, rng=rng).optimism
    assert small > 2 * large


def test_selection_rejects_bad_arguments():
    with pytest.raises(ValueError):
        P.simulate_checkpoint_selection(0, 10)
    with pytest.raises(ValueError):
        P.simulate_checkpoint_selection(2, 10, rho=1.0)


def test_hashed_retrieval_has_more_ties_with_fewer_bits():
    rng = np.random.default_rng(2)
    d8, _ = P.hashed_retrieval(50, 30, 16, 8, 0.5, rng)
    d64, _ = P.hashed_retrieval(50, 30, 16, 64, 0.5, rng)
    assert d8.shape == (50, 30)
    tied = [(d == d[:, :1]).sum(1).mean() for d in (d8, d64)]  # items tied with the first one
    assert tied[0] > tied[1]


def test_category_retrieval_relevance_counts_match_class_sizes():
    dist, rel = P.category_retrieval([3, 5], 2, 1.0, np.random.default_rng(3))
    assert dist.shape == (4, 8)
    np.testing.assert_array_equal(rel.sum(1), [3, 3, 5, 5])
