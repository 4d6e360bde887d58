"""Intervals that count both sources of chance: the training seeds and the test sample.

A number such as Acc@1 is a mean of per-query outcomes (rank <= 1) over the queries of one test
set and over the models of S training seeds. Two things would change it on a rerun: another
seed (training chance) and another test set of objects and people (sampling chance). A seed-only
interval ignores the second; on a benchmark of a few hundred queries by eight drawers it is the
larger one. Here:

* **sample part**: a multi-way *cluster* bootstrap of the seed-averaged per-query outcomes,
  resampling the clusters the queries come from (test objects and drawers, each with replacement;
  a query's weight is the product of its clusters' draws; Owen 2007, "The pigeonhole bootstrap"),
  which keeps the dependence between sketches of one object or one person;
* **seed part**: the variance of the per-seed means on the fixed test set, divided by S;
* total standard error sqrt(sum), and a Student-t interval whose degrees of freedom follow
  Welch-Satterthwaite (the seed part has S - 1, the bootstrap part is treated as known).

``paired_difference`` does the same for a difference of two methods or conditions measured on
the same seeds and the same test objects (possibly different queries of them, e.g. seen vs unseen
drawers): shared clusters get the same bootstrap weights in both arms, so what the two arms share
cancels. Coverage is checked by simulation in ``tests/test_stats.py`` (about 95% over many
simulated experiments with a known true value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

VERDICTS = ("reproduced", "not reproduced", "inconclusive")


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% (or ``level``) interval and where the uncertainty comes from.

    se_seeds, se_sample: the two parts of the standard error; df: Welch-Satterthwaite degrees
    of freedom (inf with one seed, when the seed part cannot be estimated and is left out).
    """

    estimate: float
    lo: float
    hi: float
    se: float
    se_seeds: float
    se_sample: float
    df: float
    n_seeds: int
    n_queries: int
    level: float = 0.95

    @property
    def half(self) -> float:
        """Half the interval's width."""
        return (self.hi - self.lo) / 2

    def excludes(self, value: float = 0.0) -> bool:
        return not (self.lo <= value <= self.hi)

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    def as_dict(self, prefix: str = "") -> dict:
        return {f"{prefix}{k}": getattr(self, k) for k in ("estimate", "lo", "hi", "se", "se_seeds", "se_sample",
                                                            "df", "n_seeds", "n_queries")}

    def __str__(self) -> str:
        return f"{self.estimate:.4g} [{self.lo:.4g}, {self.hi:.4g}]"


def _as_2d(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"outcomes must be (seeds, queries) with at least one query, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("outcomes hold NaN or infinite values")
    return x


def _codes(labels_list) -> tuple[list[np.ndarray], list[int]]:
    """Factorize each cluster dimension's labels over the union of the arms: codes per arm, level counts."""
    codes, sizes = [], []
    for labels in labels_list:
        c, u = pd.factorize(pd.Series(np.concatenate([np.asarray(x, dtype=object) for x in labels])), sort=True)
        codes.append(c)
        sizes.append(len(u))
    return codes, sizes


def _bootstrap_means(arms, clusters, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_arms) weighted means of each arm's per-query values under a multi-way cluster bootstrap.

    arms: list of (Q_a,) values; clusters: dict name -> list (one per arm) of (Q_a,) labels.
    """
    lengths = [len(a) for a in arms]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    values = np.concatenate(arms)
    weight = np.ones((n_boot, len(values)))
    for name, labels in clusters.items():
        if len(labels) != len(arms) or any(len(lab) != n for lab, n in zip(labels, lengths)):
            raise ValueError(f"cluster labels {name!r} must give one label per query of every arm")
        (code,), (size,) = _codes([labels])
        counts = rng.multinomial(size, np.full(size, 1.0 / size), size=n_boot).astype(np.float64)
        weight *= counts[:, code]
    out = np.empty((n_boot, len(arms)))
    for a in range(len(arms)):
        w = weight[:, bounds[a]:bounds[a + 1]]
        tot = w.sum(1)
        mean = np.divide(w @ values[bounds[a]:bounds[a + 1]], tot, out=np.full(n_boot, np.nan), where=tot > 0)
        out[:, a] = mean
    return out


def _seed_part(per_seed_arms) -> tuple[float, float]:
    """Variance of the mean over seeds and its Welch-Satterthwaite df, summed over independent arms."""
    parts = [(float(np.var(x, ddof=1) / len(x)), len(x) - 1) for x in per_seed_arms if len(x) > 1]
    var = sum(v for v, _ in parts)
    denom = sum(v ** 2 / d for v, d in parts)
    return var, (var ** 2 / denom if denom > 0 else math.inf)


def _combine(estimate, per_seed, boot, n_queries, level, independent_arms=None, bounds=None) -> Interval:
    n_seeds = len(per_seed) if independent_arms is None else min(len(a) for a in independent_arms)
    boot = boot[np.isfinite(boot)]  # a replicate that drew no query of an arm has no mean
    var_sample = float(boot.var(ddof=1)) if len(boot) > 1 else 0.0
    var_seeds, df_seeds = _seed_part([per_seed] if independent_arms is None else independent_arms)
    var = var_seeds + var_sample
    se = math.sqrt(var)
    if var_seeds > 0 and math.isfinite(df_seeds):
        df = var ** 2 / (var_seeds ** 2 / df_seeds)
    else:
        df = math.inf
    q = st.t.ppf(0.5 + level / 2, df) if math.isfinite(df) else st.norm.ppf(0.5 + level / 2)
    lo, hi = float(estimate - q * se), float(estimate + q * se)
    if bounds is not None:  # a proportion's interval stays within what the proportion can be
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return Interval(float(estimate), lo, hi, se, math.sqrt(var_seeds), math.sqrt(var_sample), float(df), n_seeds,
                    n_queries, level)


def interval(outcomes, clusters: dict | None = None, level: float = 0.95, n_boot: int = 2000,
             seed: int = 0, bounds: tuple[float, float] | None = None) -> Interval:
    """Mean of per-query outcomes over seeds and queries, with an interval for seeds and test sample.

    Args:
        outcomes: (S, Q) per seed and query, e.g. ``ranks <= 1`` as float (a (Q,) array is one seed).
        clusters: name -> (Q,) labels of what the queries were sampled by (e.g. {"object": instance,
            "drawer": drawer}); None or {} treats queries as independent.
        level: coverage of the interval; n_boot: bootstrap replicates; seed: of the bootstrap.
        bounds: the range the mean can take (e.g. (0, 1) for a proportion); the interval is clipped to it.
    """
    y = _as_2d(outcomes)
    clusters = clusters or {"query": np.arange(y.shape[1])}
    boot = _bootstrap_means([y.mean(0)], {k: [v] for k, v in clusters.items()}, n_boot,
                            np.random.default_rng(seed))[:, 0]
    return _combine(y.mean(), y.mean(1), boot, y.shape[1], level, bounds=bounds)


def paired_difference(a, b, clusters_a: dict | None = None, clusters_b: dict | None = None,
                      level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Interval:
    """mean(a) - mean(b) for two arms measured on the same seeds (and test sample), with its interval.

    Args:
        a, b: (S, Q_a) and (S, Q_b) per-seed, per-query outcomes; seed s of a is paired with seed s of b.
            With different numbers of seeds, (S_a, Q_a) and (S_b, Q_b), the arms' training runs are
            independent: their seed variances add (each over its own seeds) and the test sample is
            still shared.
        clusters_a, clusters_b: name -> labels per query of each arm (same names in both). Equal labels
            in the two arms are the same cluster and get the same bootstrap weight (e.g. the same test
            object queried by a seen and an unseen drawer). When the arms are the same queries (a
            method against another), pass ``clusters_a`` only and the difference is taken per query.
    """
    a, b = _as_2d(a), _as_2d(b)
    rng = np.random.default_rng(seed)
    paired_seeds = a.shape[0] == b.shape[0]
    if clusters_b is None and a.shape == b.shape:
        return interval(a - b, clusters_a, level, n_boot, seed)
    if clusters_b is None and a.shape[1] == b.shape[1]:  # same queries, unpaired seeds
        clusters_b = clusters_a
    clusters_a = clusters_a or {"query": np.arange(a.shape[1])}
    clusters_b = clusters_b or {"query": np.arange(a.shape[1], a.shape[1] + b.shape[1])}
    if set(clusters_a) != set(clusters_b):
        raise ValueError(f"both arms need the same cluster names, got {sorted(clusters_a)} and {sorted(clusters_b)}")
    boot = _bootstrap_means([a.mean(0), b.mean(0)], {k: [clusters_a[k], clusters_b[k]] for k in clusters_a},
                            n_boot, rng)
    diff = boot[:, 0] - boot[:, 1]
    if paired_seeds:
        return _combine(a.mean() - b.mean(), a.mean(1) - b.mean(1), diff, a.shape[1] + b.shape[1], level)
    return _combine(a.mean() - b.mean(), None, diff, a.shape[1] + b.shape[1], level, [a.mean(1), b.mean(1)])


def verdict(iv: Interval, direction: int = 1) -> str:
    """One word for a claim that the difference is positive (``direction`` 1) or negative (-1):
    "reproduced" when the interval lies wholly on the claimed side of zero, "not reproduced" when it
    lies wholly on the other side, "inconclusive" when it contains zero."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be 1 or -1, got {direction}")
    lo, hi = (iv.lo, iv.hi) if direction == 1 else (-iv.hi, -iv.lo)
    if lo > 0:
        return "reproduced"
    if hi < 0:
        return "not reproduced"
    return "inconclusive"


def friedman_by_block(table, value: str, treatment: str, block: str, levels) -> dict:
    """Friedman test of ``value`` across ``levels`` of ``treatment``, blocked by ``block``.

    For repeated measures: sketches k = 1, 2, 3 of the same photo are a block, so the photo's own
    difficulty cancels. Only blocks holding every level exactly once are used.
    Returns {"statistic", "p", "n_blocks", "means": {level: mean over the used blocks}}.
    """
    from scipy.stats import friedmanchisquare

    levels = [str(v) for v in levels]
    t = table[[block, treatment, value]].dropna().astype({treatment: str})
    t = t[t[treatment].isin(levels)]
    wide = t.pivot_table(index=block, columns=treatment, values=value, aggfunc=["first", "count"])
    full = wide["count"].reindex(columns=levels).eq(1).all(axis=1)
    cols = wide["first"].reindex(columns=levels)[full]
    if len(cols) < 2:
        raise ValueError(f"Friedman test of {value}: {len(cols)} complete blocks of {block} (need 2 or more)")
    res = friedmanchisquare(*[cols[v].to_numpy(float) for v in levels])
    return {"statistic": float(res.statistic), "p": float(res.pvalue), "n_blocks": int(len(cols)),
            "means": {v: float(cols[v].mean()) for v in levels}}


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate).

    Adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)), in ascending order of p.
    """
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out
