"""Intervals over seeds and test sample: exact cases, and coverage measured by simulation."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from sbir_core import stats as ST
from sbir_core.stats import Interval, interval, paired_difference, verdict


def simulate(rng, n_obj=60, n_drw=20, per_obj=3, n_seeds=5, mu=0.0, sd_obj=0.8, sd_drw=0.6, sd_seed=0.25,
             shared_objects=None):
    """One simulated experiment of a probit model with object, drawer and seed effects.

    Returns (outcomes (S, Q), clusters, objects): each object drawn by ``per_obj`` distinct drawers.
    """
    objects = rng.normal(0, sd_obj, n_obj) if shared_objects is None else shared_objects
    drawers = rng.normal(0, sd_drw, n_drw)
    seeds = rng.normal(0, sd_seed, n_seeds)
    obj = np.repeat(np.arange(n_obj), per_obj)
    drw = np.concatenate([rng.choice(n_drw, per_obj, replace=False) for _ in range(n_obj)])
    latent = mu + objects[obj] + drawers[drw] + seeds[:, None] + rng.normal(0, 1, (n_seeds, len(obj)))
    return (latent > 0).astype(float), {"object": obj, "drawer": drw}, objects


def truth(mu, sd_obj=0.8, sd_drw=0.6, sd_seed=0.25):
    return norm.cdf(mu / math.sqrt(1 + sd_obj ** 2 + sd_drw ** 2 + sd_seed ** 2))


def test_interval_of_constant_outcomes_is_a_point():
    iv = interval(np.ones((3, 40)), {"object": np.arange(40) // 4})
    assert iv.estimate == 1 and iv.lo == iv.hi == 1 and iv.se == 0


def test_one_seed_counts_only_the_sample():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.3).astype(float)
    iv = interval(y)
    assert iv.n_seeds == 1 and iv.se_seeds == 0 and math.isinf(iv.df)
    # independent queries: the bootstrap standard error is the binomial one
    assert iv.se == pytest.approx(math.sqrt(y.mean() * (1 - y.mean()) / len(y)), rel=0.1)


def test_seed_part_is_the_variance_of_seed_means():
    y = np.zeros((4, 10))
    y[:2] = 1  # two seeds get everything right, two nothing: no query-level spread after averaging
    iv = interval(y, {"object": np.arange(10)})
    assert iv.se_sample == 0
    assert iv.se_seeds == pytest.approx(np.std([1, 1, 0, 0], ddof=1) / 2)
    assert iv.df == pytest.approx(3)  # all the variance is the seeds', with S - 1 degrees of freedom


def test_clusters_widen_the_interval():
    rng = np.random.default_rng(1)
    y, clusters, _ = simulate(rng, n_obj=40, n_drw=6, sd_drw=1.0)
    naive = interval(y)
    clustered = interval(y, clusters)
    assert clustered.se_sample > 1.5 * naive.se_sample


def test_paired_difference_of_same_queries_cancels_shared_difficulty():
    rng = np.random.default_rng(2)
    y, clusters, _ = simulate(rng)
    iv = paired_difference(y, y, clusters)
    assert iv.estimate == 0 and iv.se == 0
    flipped = paired_difference(np.ones_like(y), y, clusters)
    assert flipped.estimate == pytest.approx(1 - y.mean())


@pytest.mark.parametrize("mu", [-0.8, 0.3])
def test_coverage_of_the_mean_is_about_95_percent(mu):
    rng = np.random.default_rng(10 + int(mu * 10))
    n_sim = 300
    hits = sum(interval(*simulate(rng, mu=mu)[:2], n_boot=400, seed=k).contains(truth(mu)) for k in range(n_sim))
    coverage = hits / n_sim
    # a 95% interval: the binomial standard error of 300 trials is 1.3 points; 0.91-0.99 is +-3 of them
    assert 0.91 <= coverage <= 0.99, coverage


def test_coverage_of_a_paired_difference_on_shared_objects():
    """Seen vs unseen drawers on the same test objects: different drawers, shared objects and seeds."""
    rng = np.random.default_rng(7)
    mu_a, mu_b, hits, n_sim = 0.2, -0.3, 0, 300
    true_diff = truth(mu_a) - truth(mu_b)
    for k in range(n_sim):
        ya, ca, objects = simulate(rng, mu=mu_a)
        yb, cb, _ = simulate(rng, mu=mu_b, shared_objects=objects)
        cb = {"object": cb["object"], "drawer": cb["drawer"] + 1000}  # other people
        hits += paired_difference(ya, yb, ca, cb, n_boot=400, seed=k).contains(true_diff)
    assert 0.91 <= hits / n_sim <= 0.99, hits / n_sim


def test_a_seed_only_interval_would_undercover():
    """Why the sample part is needed: on the same simulations, the seed-only t-interval misses often."""
    from scipy import stats as st

    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(200):
        y, _, _ = simulate(rng)
        m = y.mean(1)
        half = st.t.ppf(0.975, len(m) - 1) * m.std(ddof=1) / math.sqrt(len(m))
        hits += abs(m.mean() - truth(0.0)) <= half
    assert hits / 200 < 0.9  # nominal 95%; the binomial SE of 200 trials is 1.5 points


def test_unpaired_seeds_add_their_seed_variances():
    a = np.array([[1.0] * 6, [0.0] * 6, [1.0] * 6])  # per-seed means 1, 0, 1
    b = np.array([[0.0] * 6, [1.0] * 6])            # per-seed means 0, 1
    iv = paired_difference(a, b, {"object": np.arange(6)})
    assert iv.estimate == pytest.approx(2 / 3 - 1 / 2) and iv.se_sample == pytest.approx(0, abs=1e-12)
    assert iv.se_seeds ** 2 == pytest.approx(np.var([1, 0, 1], ddof=1) / 3 + np.var([0, 1], ddof=1) / 2)


def test_verdicts_come_from_the_interval():
    iv = lambda lo, hi: Interval((lo + hi) / 2, lo, hi, 0, 0, 0, 4, 5, 100)  # noqa: E731
    assert verdict(iv(0.01, 0.05)) == "reproduced"
    assert verdict(iv(-0.05, -0.01)) == "not reproduced"
    assert verdict(iv(-0.01, 0.05)) == "inconclusive"
    assert verdict(iv(-0.05, -0.01), direction=-1) == "reproduced"
    with pytest.raises(ValueError):
        verdict(iv(0, 1), direction=0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        interval(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="one label per query"):
        interval(np.ones((2, 5)), {"object": np.arange(4)})


def test_holm_matches_the_step_down_rule():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005=0.02, 3*0.01=0.03, 2*0.03=0.06, 1*0.04 -> max(0.06, 0.04)
    assert np.allclose(ST.holm(p), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(ST.holm([0.5, 0.9]), [1.0, 1.0])


def test_friedman_is_blocked_by_photo():
    """A shift by level hidden under large between-photo differences: blocking finds it, and a
    level with no effect gives no small p-value."""
    import pandas as pd
    from scipy.stats import kruskal

    rng = np.random.default_rng(0)
    photos = rng.normal(0, 10, 60)
    rows = [{"photo": i, "k": k, "x": photos[i] + 0.5 * k + rng.normal(0, 0.3), "null": photos[i] + rng.normal()}
            for i in range(60) for k in (1, 2, 3)]
    rows.append({"photo": 99, "k": 1, "x": 0.0, "null": 0.0})  # an incomplete block is left out
    t = pd.DataFrame(rows)
    res = ST.friedman_by_block(t, "x", "k", "photo", ["1", "2", "3"])
    assert res["n_blocks"] == 60 and res["p"] < 1e-10
    assert res["means"]["3"] > res["means"]["1"]
    unblocked = kruskal(*[g["x"] for _, g in t[t.photo < 99].groupby("k")]).pvalue
    assert unblocked > 0.05  # the same data, tested without blocks, sees nothing
    assert ST.friedman_by_block(t, "null", "k", "photo", [1, 2, 3])["p"] > 0.01
