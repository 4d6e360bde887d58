"""Metrics against brute-force loops, limits, ties and edge cases."""

import numpy as np
import pytest

from sbir_core import metrics as M


def brute_rank(dist, true_idx):
    ranks = []
    for q in range(dist.shape[0]):
        ranks.append(sum(1 for g in range(dist.shape[1]) if dist[q, g] <= dist[q, true_idx[q]]))
    return np.array(ranks)


def brute_ap(dist, rel, k=None, denominator="min_r_k", interpolated=False):
    out = []
    for q in range(dist.shape[0]):
        # pessimistic ties: sort by distance, irrelevant before relevant at equal distance
        order = sorted(range(dist.shape[1]), key=lambda g: (dist[q, g], rel[q, g]))
        r = [bool(rel[q, g]) for g in order]
        big_r = sum(r)
        if big_r == 0:
            out.append(np.nan)
            continue
        top = r if k is None else r[:k]
        precs = [sum(top[: i + 1]) / (i + 1) for i in range(len(top))]
        if interpolated:
            precs = [max(precs[i:]) for i in range(len(precs))]
        s = sum(p for p, hit in zip(precs, top) if hit)
        z = {"min_r_k": min(big_r, len(top)), "all_relevant": big_r, "retrieved": sum(top)}[denominator]
        out.append(s / z if z else 0.0)
    return np.array(out)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_rank_matches_brute_force_with_ties(rng):
    dist = rng.integers(0, 5, size=(40, 12)).astype(float)  # many ties
    true_idx = rng.integers(0, 12, size=40)
    np.testing.assert_array_equal(M.true_match_rank(dist, true_idx), brute_rank(dist, true_idx))


def test_rank_perfect_and_reversed():
    g = 7
    dist = np.tile(np.arange(g, dtype=float), (g, 1))
    assert (M.true_match_rank(dist, np.zeros(g, int)) == 1).all()
    assert (M.true_match_rank(dist, np.full(g, g - 1)) == g).all()
    assert M.acc_at_k(M.true_match_rank(dist, np.full(g, g - 1)), 1) == 0.0


def test_all_tied_counts_against_method():
    ranks = M.true_match_rank(np.zeros((3, 10)), np.array([0, 4, 9]))
    assert (ranks == 10).all()


def test_acc_at_k_values_and_large_k():
    ranks = np.array([1, 2, 3, 10, 11])
    assert M.acc_at_k(ranks, 1) == pytest.approx(0.2)
    assert M.acc_at_k(ranks, 10) == pytest.approx(0.8)
    assert M.acc_at_k(ranks, 1000) == 1.0
    with pytest.raises(ValueError):
        M.acc_at_k(ranks, 0)


def test_pairwise_distances_matches_loop(rng):
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(6, 4))
    loop = np.array([[np.linalg.norm(x - y) for y in b] for x in a])
    np.testing.assert_allclose(M.pairwise_distances(a, b), loop, atol=1e-10)


@pytest.mark.parametrize("k", [None, 1, 5, 30])
@pytest.mark.parametrize("denominator", M.AP_DENOMINATORS)
@pytest.mark.parametrize("interpolated", [False, True])
def test_average_precision_matches_brute_force(rng, k, denominator, interpolated):
    dist = rng.integers(0, 6, size=(25, 20)).astype(float)
    rel = rng.random((25, 20)) < 0.3
    rel[0] = False  # a query with no relevant item
    got = M.average_precision(dist, rel, k, denominator, interpolated)
    np.testing.assert_allclose(got, brute_ap(dist, rel, k, denominator, interpolated), equal_nan=True)


def test_map_perfect_and_reversed():
    g = 10
    rel = np.zeros((1, g), bool)
    rel[0, :3] = True
    dist = np.arange(g, dtype=float)[None]
    assert M.map_all(dist, rel) == 1.0
    # reversed: relevant items at ranks 8, 9, 10 -> AP = (1/8 + 2/9 + 3/10) / 3
    assert M.map_all(-dist, rel) == pytest.approx((1 / 8 + 2 / 9 + 3 / 10) / 3)
    assert M.prec_at_k(dist, rel, 3) == 1.0
    assert M.prec_at_k(-dist, rel, 3) == 0.0


def test_interpolated_is_never_below_plain(rng):
    dist = rng.random((30, 15))
    rel = rng.random((30, 15)) < 0.4
    plain = M.average_precision(dist, rel)
    interp = M.average_precision(dist, rel, interpolated=True)
    ok = ~np.isnan(plain)
    assert (interp[ok] >= plain[ok] - 1e-12).all()


def test_denominators_differ_as_documented():
    # 5 relevant items, only one in the top 3 at rank 3
    dist = np.arange(10, dtype=float)[None]
    rel = np.array([[0, 0, 1, 1, 1, 1, 1, 0, 0, 0]], bool)
    assert M.map_at_k(dist, rel, 3, "min_r_k") == pytest.approx((1 / 3) / 3)
    assert M.map_at_k(dist, rel, 3, "all_relevant") == pytest.approx((1 / 3) / 5)
    assert M.map_at_k(dist, rel, 3, "retrieved") == pytest.approx(1 / 3)
    assert M.prec_at_k(dist, rel, 20, "k") == pytest.approx(5 / 20)
    assert M.prec_at_k(dist, rel, 20, "min_r_k") == 1.0


def test_queries_without_relevant_items_are_excluded():
    dist = np.array([[0.0, 1.0], [0.0, 1.0]])
    rel = np.array([[True, False], [False, False]])
    assert M.map_all(dist, rel) == 1.0
    assert M.n_valid(rel) == 1
    assert np.isnan(M.map_all(dist, np.zeros((2, 2), bool)))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="dist"):
        M.true_match_rank(np.zeros(3), np.zeros(3, int))
    with pytest.raises(ValueError, match="true_idx"):
        M.true_match_rank(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="NaN"):
        M.map_all(np.array([[np.nan]]), np.array([[True]]))
    with pytest.raises(ValueError, match="denominator"):
        M.map_at_k(np.zeros((1, 2)), np.ones((1, 2), bool), 1, "bogus")


def test_accepts_torch_tensors():
    import torch

    d = torch.tensor([[0.5, 0.1], [0.2, 0.9]])
    np.testing.assert_array_equal(M.true_match_rank(d, torch.tensor([0, 0])), [2, 1])


def test_tie_rules_bracket_each_other(rng):
    dist = rng.integers(0, 3, size=(200, 9)).astype(float)
    true_idx = rng.integers(0, 9, size=200)
    against = M.true_match_rank(dist, true_idx)
    favour = M.true_match_rank(dist, true_idx, ties="for")
    rand = M.true_match_rank(dist, true_idx, ties="random", rng=np.random.default_rng(1))
    assert (favour <= rand).all() and (rand <= against).all()
    assert (favour < against).any()
    brute_for = [1 + sum(dist[q, g] < dist[q, true_idx[q]] for g in range(9)) for q in range(200)]
    np.testing.assert_array_equal(favour, brute_for)
    with pytest.raises(ValueError, match="rng"):
        M.true_match_rank(dist, true_idx, ties="random")
    with pytest.raises(ValueError, match="ties"):
        M.true_match_rank(dist, true_idx, ties="sometimes")


def test_candidates_rank_within_a_subset_like_a_smaller_gallery():
    rng = np.random.default_rng(5)
    dist = rng.random((20, 12))
    true = rng.integers(0, 6, 20)
    cand = np.zeros((20, 12), bool)
    cand[:, :6] = True  # every query is ranked against the first six items only
    ranks = M.true_match_rank(dist, true, candidates=cand)
    assert np.array_equal(ranks, M.true_match_rank(dist[:, :6], true))
    with pytest.raises(ValueError, match="true match must be among"):
        M.true_match_rank(dist, np.full(20, 8), candidates=cand)
    with pytest.raises(ValueError, match="shape"):
        M.true_match_rank(dist, true, candidates=cand[:, :3])


def test_chance_acc_at_k_is_the_mean_of_k_over_gallery_sizes():
    assert M.chance_acc_at_k([50, 50], 1) == pytest.approx(1 / 50)
    assert M.chance_acc_at_k([5, 20], 10) == pytest.approx((1 + 0.5) / 2)
    # a random ranking scores it, measured
    rng = np.random.default_rng(0)
    sizes = np.array([7, 13, 30] * 400)
    ranks = np.array([rng.integers(1, n + 1) for n in sizes])
    assert M.acc_at_k(ranks, 5) == pytest.approx(M.chance_acc_at_k(sizes, 5), abs=0.03)
    with pytest.raises(ValueError):
        M.chance_acc_at_k([0, 3], 1)
