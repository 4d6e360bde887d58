"""Intervals that count both sources of chance: the training seeds and the test sample.

A number such as Acc@1 is a mean of per-query outcomes (rank <= 1) over the queries of one test
set and over the models of S training seeds. Two things would change it on a rerun: another
seed (training chance) and another test set of objects and people (sampling chance). A seed-only
interval ignores the second; on a benchmark of a few hundred queries by eight drawers it is the
larger one. Here:

* **sample part**: the *cluster-robust* variance of the mean of the seed-averaged per-query
  outcomes, which keeps the dependence between sketches of one object or one person: one-way for
  one kind of cluster, and for the crossed objects x drawers of the style world the two-way
  estimator of Cameron, Gelbach and Miller (2011), V_object + V_drawer - V_(object, drawer);
* **seed part**: the variance of the per-seed means on the fixed test set, divided by S;
* total standard error sqrt(sum), and a Student-t interval whose degrees of freedom follow
  Welch-Satterthwaite (the seed part has S - 1, each cluster term G - 1 for its G clusters).

Until December 2026 the sample part was the pigeonhole bootstrap (Owen 2007: resample objects and
drawers independently, a query weighted by the product of its clusters' draws). That bootstrap is
conservative by design: it counts the query-level noise once per factor and once more for their
product, about three times in all. Paired differences of two models on the same queries are mostly
that noise, and on the style world's unseen test (every drawer draws every test object) its
standard error was 1.5 to 1.6 times the true one in simulation (``tests/test_stats.py``); with six drawers,
where the drawers' own effects dominate, it undercovered instead (91% of 300 simulated experiments),
taking its estimate as exact.

``paired_difference`` does the same for a difference of two methods or conditions measured on
the same seeds and the same test objects (possibly different queries of them, e.g. seen vs unseen
drawers): a cluster shared by the two arms sums both arms' influences, so what they share
cancels. Coverage is checked by simulation in ``tests/test_stats.py`` (about 95% over many
simulated experiments with a known true value).

**Effects in units that travel.** A paper measures its effect on its scale (ShoeV2, a VGG-16, Acc@1
28.7 -> 36.5), we on ours; raw points do not transfer. Every claim is therefore also stated as a
*relative effect*: the difference divided by the reference arm's margin over its trivial value,

    relative = direction x (A - B) / (B - floor),

where B is the arm the claim compares against and its floor is the highest of chance, the untrained
model and the pixel nearest neighbour where those were measured (the paper's floor is chance, which
is all it reports). StyleMeUp's ShoeV2 headline is (36.47 - 28.71) / (28.71 - 0.5) = 0.275: a gain
of 27.5% of the baseline's margin over chance. ``ratio`` gives its interval by linearising the ratio
(the delta method on per-query influence values), with the same two sources of variance as every
other interval. ``outcome`` turns that interval into one of five words:

* **not testable**: an arm's own interval reaches its floor (two models that have not learnt are no
  evidence about a method), or the two arms rank every query alike (the switched part cannot act);
* **reproduced**: the interval excludes 0 on the claimed side;
* **contradicted**: it excludes 0 on the other side;
* **smaller than claimed**: it holds 0 and excludes the paper's relative effect;
* **undecided**: it holds both.

``mde`` is the smallest relative effect the design detects with 80% power (two-sided 5% test):
(t_0.975 + t_0.80) standard errors. ``seeds_needed`` plans a design from a pilot: the seed and the
sample parts of the standard error scale apart, so it says how many seeds (at how large a test
sample) would bring the detectable effect down to the paper's, or that no number of seeds would.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats as st

OUTCOMES = ("reproduced", "contradicted", "smaller than claimed", "undecided", "not testable")
# the outcome as a number in a metrics file (checked exactly by ``book check``)
OUTCOME_CODE = {
    "reproduced": 2.0,
    "smaller than claimed": 1.0,
    "undecided": 0.0,
    "contradicted": -1.0,
    "not testable": -2.0,
}


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% (or ``level``) interval and where the uncertainty comes from.

    se_seeds, se_sample: the two parts of the standard error; df: Welch-Satterthwaite degrees
    of freedom over the seed part (S - 1) and the sample part's cluster terms (G - 1 each); inf only when
    neither part has any variance.
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
        return {
            f"{prefix}{k}": getattr(self, k)
            for k in ("estimate", "lo", "hi", "se", "se_seeds", "se_sample", "df", "n_seeds", "n_queries")
        }

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
    """Factorize each cluster dimension's labels over the union of the arms: per dimension, the codes of every
    query of the arms in order (concatenated) and the number of levels."""
    codes, sizes = [], []
    for labels in labels_list:
        c, u = pd.factorize(pd.Series(np.concatenate([np.asarray(x, dtype=object) for x in labels])), sort=True)
        codes.append(c)
        sizes.append(len(u))
    return codes, sizes


def _sample_variance(values, clusters: dict, c) -> tuple[float, float]:
    """(variance, degrees of freedom) of sum_i c_i mean(values_i) over the test sample, clusters kept.

    values: list of (Q_i,) seed-averaged per-query values; clusters: name -> list (one per arm) of (Q_i,)
    labels. A query's influence on the contrast is c_i (y_q - mean_i) / Q_i; clustering by one dimension
    sums the influences per cluster, V = G / (G - 1) sum_g (sum of g's influences)^2 (the CR1 cluster-robust
    variance). Several dimensions combine by inclusion-exclusion over their intersections (Cameron,
    Gelbach and Miller 2011, "Robust inference with multiway clustering"): for objects and drawers
    V = V_object + V_drawer - V_(object, drawer), floored at the larger one-way variance (the sum can fall
    below it in small samples). Degrees of freedom: Satterthwaite, each term with G - 1.
    """
    dev = [(v - v.mean()) / len(v) for v in values]
    arm_of = np.repeat(np.arange(len(values)), [len(v) for v in values])
    codes, sizes = _codes(list(clusters.values()))
    terms, one_way = [], []
    for r in range(1, len(codes) + 1):
        for subset in itertools.combinations(range(len(codes)), r):
            joint = np.zeros(len(arm_of), dtype=np.int64)
            for d in subset:
                joint = joint * sizes[d] + codes[d]
            joint = np.unique(joint, return_inverse=True)[1]
            g = int(joint.max()) + 1
            # per arm, then weighted: two arms of equal values and opposite coefficients cancel exactly
            sums = sum(ci * np.bincount(joint[arm_of == i], d, g) for i, (ci, d) in enumerate(zip(c, dev)))
            v = g / (g - 1) * float((sums**2).sum()) if g > 1 else 0.0
            terms.append((-1.0 if r % 2 == 0 else 1.0, v, g))
            if r == 1:
                one_way.append(v)
    var = max(sum(sign * v for sign, v, _ in terms), *one_way)
    denom = sum(v**2 / (g - 1) for _, v, g in terms if g > 1)
    return var, (var**2 / denom if var > 0 and denom > 0 else math.inf)


def interval(
    outcomes,
    clusters: dict | None = None,
    level: float = 0.95,
    bounds: tuple[float, float] | None = None,
) -> Interval:
    """Mean of per-query outcomes over seeds and queries, with an interval for seeds and test sample.

    Args:
        outcomes: (S, Q) per seed and query, e.g. ``ranks <= 1`` as float (a (Q,) array is one seed).
        clusters: name -> (Q,) labels of what the queries were sampled by (e.g. {"object": instance,
            "drawer": drawer}); None or {} treats queries as independent.
        level: coverage of the interval.
        bounds: the range the mean can take (e.g. (0, 1) for a proportion); the interval is clipped to it.
    """
    y = _as_2d(outcomes)
    arm = Arm(y, clusters or {"query": np.arange(y.shape[1])}, _seeds(y))
    return contrast([(arm, 1.0)], level, bounds)


def _seeds(y: np.ndarray) -> tuple:
    """The seeds of a (S, Q) array of outcomes: 0..S-1, or none for one seed (no seed part)."""
    return tuple(range(y.shape[0])) if y.shape[0] > 1 else ()


def paired_difference(
    a,
    b,
    clusters_a: dict | None = None,
    clusters_b: dict | None = None,
    level: float = 0.95,
) -> Interval:
    """mean(a) - mean(b) for two arms measured on the same seeds (and test sample), with its interval.

    Args:
        a, b: (S, Q_a) and (S, Q_b) per-seed, per-query outcomes; seed s of a is paired with seed s of b.
            With different numbers of seeds, (S_a, Q_a) and (S_b, Q_b), the arms' training runs are
            independent: their seed variances add (each over its own seeds) and the test sample is
            still shared.
        clusters_a, clusters_b: name -> labels per query of each arm (same names in both). Equal labels
            in the two arms are the same cluster, whose influences add up (e.g. the same test
            object queried by a seen and an unseen drawer). When the arms are the same queries (a
            method against another), pass ``clusters_a`` only and the difference is taken per query.
    """
    a, b = _as_2d(a), _as_2d(b)
    if clusters_b is None and a.shape[1] == b.shape[1]:  # the same queries
        clusters_a = clusters_b = clusters_a or {"query": np.arange(a.shape[1])}
        n_queries = a.shape[1]
    else:
        clusters_a = clusters_a or {"query": np.arange(a.shape[1])}
        clusters_b = clusters_b or {"query": np.arange(a.shape[1], a.shape[1] + b.shape[1])}
        n_queries = a.shape[1] + b.shape[1]
    if set(clusters_a) != set(clusters_b):
        raise ValueError(f"both arms need the same cluster names, got {sorted(clusters_a)} and {sorted(clusters_b)}")
    # equal numbers of seeds are paired seed by seed; otherwise the arms' seed variances add
    iv = contrast([(Arm(a, clusters_a, _seeds(a)), 1.0), (Arm(b, clusters_b, _seeds(b)), -1.0)], level)
    return replace(iv, n_queries=n_queries)


@dataclass(frozen=True, eq=False)
class Arm:
    """One model's per-query outcomes on one query set: a term of a contrast.

    values: (S, Q) per training seed and query (float); clusters: name -> (Q,) labels of what the
    queries were sampled by (every arm of one contrast names the same clusters; equal labels are the
    same cluster); seeds: the training seeds, one per row. Arms with equal ``seeds`` (two or more) are
    paired seed by seed; ``()`` marks an arm without training chance (chance, a parameter-free
    matcher, one fixed untrained draw). ``seed_var`` = (variance of one seed's mean, its degrees of
    freedom), a pilot's, for an arm trained with one seed: its seed variance cannot be estimated from
    itself. ``floors``: name -> Arm of the trivial values the arm must beat (chance, the untrained
    model, the pixel nearest neighbour on the same queries), for ``sbir_core.claims``.
    """

    values: np.ndarray
    clusters: dict
    seeds: tuple = ()
    seed_var: tuple | None = None
    name: str = ""
    floors: dict = field(default_factory=dict)

    def __post_init__(self):
        v = _as_2d(self.values)
        object.__setattr__(self, "values", v)
        for k, lab in self.clusters.items():
            if len(lab) != v.shape[1]:
                raise ValueError(
                    f"arm {self.name!r}: cluster labels {k!r} must give one label per query "
                    f"({len(lab)} for {v.shape[1]} queries)"
                )
        if self.seeds and len(self.seeds) != v.shape[0]:
            raise ValueError(f"arm {self.name!r}: {v.shape[0]} rows of outcomes for seeds {self.seeds}")

    @property
    def mean(self) -> float:
        return float(self.values.mean())

    def constant(self, value: float, name: str = "") -> Arm:
        """An arm of ``value`` for every query of this one (chance), without training chance."""
        return Arm(np.full((1, self.values.shape[1]), float(value)), self.clusters, (), None, name)

    def floor(self, higher_is_better: bool = True) -> tuple[str, Arm | None]:
        """The binding floor: the best of the arm's trivial values, as (name, Arm); ("", None) without."""
        if not self.floors:
            return "", None
        pick = max if higher_is_better else min
        name = pick(self.floors, key=lambda k: self.floors[k].mean)
        return name, self.floors[name]

    def own_interval(self, level: float = 0.95, bounds=None) -> Interval:
        """The arm's own mean with its interval (its seed part from ``seed_var`` when it has one seed)."""
        return contrast([(self, 1.0)], level, bounds)


def contrast(terms, level: float = 0.95, bounds=None) -> Interval:
    """sum_i c_i mean(arm_i) with an interval for seeds and test sample; ``terms`` = [(Arm, c_i), ...].

    The sample part is the cluster-robust variance of the contrast (``_sample_variance``; a cluster
    shared by two arms sums both arms' influences, so what they share cancels); the seed part adds, over
    each group of arms trained on the same seeds, the variance of the group's per-seed contrast, and for
    a one-seed arm with a pilot ``seed_var`` c_i^2 times it. An arm appearing twice has its coefficients
    summed. The interval is Student's t with Welch-Satterthwaite degrees of freedom over all the parts.
    """
    coefs: dict[int, float] = {}
    arms: dict[int, Arm] = {}
    for arm, c in terms:
        arms[id(arm)] = arm
        coefs[id(arm)] = coefs.get(id(arm), 0.0) + float(c)
    keys = list(arms)
    names = list(arms[keys[0]].clusters)
    if any(set(arms[k].clusters) != set(names) for k in keys):
        raise ValueError(
            f"every arm of a contrast needs the same cluster names, got {[sorted(arms[k].clusters) for k in keys]}"
        )
    c = np.array([coefs[k] for k in keys])
    estimate = float(sum(ci * arms[k].mean for ci, k in zip(c, keys)))
    if names:
        clusters = {n: [arms[k].clusters[n] for k in keys] for n in names}
    else:  # independent queries: each arm's queries are its own
        offsets = np.cumsum([0] + [arms[k].values.shape[1] for k in keys])
        clusters = {"query": [np.arange(offsets[i], offsets[i + 1]) for i in range(len(keys))]}
    var_sample, df_sample = _sample_variance([arms[k].values.mean(0) for k in keys], clusters, c)
    parts, groups = [], {}
    for ci, k in zip(c, keys):
        arm = arms[k]
        if len(arm.seeds) > 1:
            groups.setdefault(arm.seeds, []).append((ci, arm))
        elif arm.seed_var is not None and ci != 0:
            parts.append((ci**2 * float(arm.seed_var[0]), float(arm.seed_var[1])))
    for members in groups.values():
        per_seed = sum(ci * arm.values.mean(1) for ci, arm in members)
        parts.append((float(np.var(per_seed, ddof=1) / len(per_seed)), len(per_seed) - 1))
    var_seeds = sum(v for v, _ in parts)
    var = var_seeds + var_sample
    denom = sum(v**2 / d for v, d in parts + [(var_sample, df_sample)] if d > 0 and math.isfinite(d))
    df = var**2 / denom if var > 0 and denom > 0 else math.inf
    se = math.sqrt(var)
    q = st.t.ppf(0.5 + level / 2, df) if math.isfinite(df) else st.norm.ppf(0.5 + level / 2)
    lo, hi = estimate - q * se, estimate + q * se
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    learnt = [len(arms[k].seeds) for k, ci in zip(keys, c) if ci != 0 and arms[k].seeds]
    n_queries = int(sum(arms[k].values.shape[1] for k, ci in zip(keys, c) if ci != 0))
    return Interval(
        estimate,
        float(lo),
        float(hi),
        se,
        math.sqrt(var_seeds),
        math.sqrt(var_sample),
        float(df),
        min(learnt) if learnt else 1,
        n_queries,
        level,
    )


def ratio(numerator, denominator, level: float = 0.95) -> Interval:
    """N / D for two contrasts of the same arms, N = sum c_i mean(arm_i), D = sum d_j mean(arm_j), with
    an interval from the linearised ratio: (N - r D) / D has the same sample and seed parts as
    any contrast, and its interval, shifted by r = N / D, is the ratio's (the delta method).

    D must be positive (a reference arm above its floor); the interval is not reliable when D is
    small against its own error, which is what ``outcome``'s "not testable" catches first.
    """
    num = sum(c * a.mean for a, c in numerator)
    den = sum(d * a.mean for a, d in denominator)
    if not den > 0:
        raise ValueError(f"ratio: the denominator must be positive, got {den:.4g}")
    r = num / den
    lin = contrast([(a, c / den) for a, c in numerator] + [(a, -r * d / den) for a, d in denominator], level)
    return Interval(
        float(r),
        float(r + lin.lo - lin.estimate),
        float(r + lin.hi - lin.estimate),
        lin.se,
        lin.se_seeds,
        lin.se_sample,
        lin.df,
        lin.n_seeds,
        lin.n_queries,
        level,
    )


def mde(iv: Interval, power: float = 0.8) -> float:
    """The smallest true effect a two-sided test at the interval's level detects with ``power``:
    (t_{1 - alpha/2} + t_{power}) standard errors (normal quantiles when df is infinite)."""
    return float(_power_factor(iv.df, iv.level, power) * iv.se)


def _power_factor(df: float, level: float, power: float) -> float:
    dist = st.t(df) if math.isfinite(df) else st.norm()
    return float(dist.ppf(0.5 + level / 2) + dist.ppf(power))


def ratio_mde(numerator, denominator, power: float = 0.8, level: float = 0.95) -> float:
    """The smallest true ratio N / D detected with ``power``, with the ratio's standard error taken at
    that ratio: a ratio's error grows with it (the denominator's own error counts r times), so the
    standard error at zero effect would promise more power than the design has.

    The linearised variance V(r) = V0 - 2 r C + r^2 V_D is quadratic in the ratio r (the
    cluster-robust variance is a quadratic form in the contrast's coefficients, wherever its floor does
    not bind), so three contrasts (r = 0, 1, -1) give it exactly; r = k sqrt(V(r)), with k the
    two quantiles of ``mde``, is then a quadratic equation. Returns inf when it has no positive root:
    the denominator is so uncertain that no effect, however large, is found with that power.
    """
    den = sum(d * a.mean for a, d in denominator)
    if not den > 0:
        raise ValueError(f"ratio_mde: the denominator must be positive, got {den:.4g}")

    def lin(r):
        return contrast([(a, c / den) for a, c in numerator] + [(a, -r * d / den) for a, d in denominator], level)

    v0, v1, vm = (lin(r).se ** 2 for r in (0.0, 1.0, -1.0))
    vd, cov = (v1 + vm) / 2 - v0, (vm - v1) / 4
    r, df = 0.0, lin(0.0).df
    for _ in range(2):  # the quantiles depend on the degrees of freedom at the solution
        k2 = _power_factor(df, level, power) ** 2
        a_, b_, c_ = 1 - k2 * vd, 2 * k2 * cov, -k2 * v0
        if a_ <= 0:
            return math.inf
        r = (-b_ + math.sqrt(max(b_ * b_ - 4 * a_ * c_, 0.0))) / (2 * a_)
        df = lin(r).df
    return float(r)


def seeds_needed(
    target: float,
    mde_now: float,
    se_seeds: float,
    se_sample: float,
    n_seeds: int,
    sample_factor: float = 1.0,
) -> float:
    """The fewest training seeds with which a design detects ``target`` (80% power), from a pilot.

    The pilot (this design, run with ``n_seeds`` seeds) measured the standard error's two parts:
    ``se_seeds`` (falls as 1 / sqrt(seeds)) and ``se_sample`` (falls as 1 / sqrt(the test sample's
    size, i.e. its objects and drawers; ``sample_factor`` times the pilot's). Its detectable effect
    ``mde_now`` over its standard error is the power factor k, held fixed (an approximation: the t
    quantile's degrees of freedom and the part of a ratio's error that grows with the effect are the
    pilot's). The answer solves k sqrt(se_seeds^2 n_seeds / S + se_sample^2 / sample_factor) <= target
    for the integer S >= 2; inf when the sample part alone is too large (no number of seeds is enough
    at that test size), nan without a pilot (no standard error).
    """
    k = _planning_factor(mde_now, se_seeds, se_sample)
    if not (math.isfinite(k) and target > 0 and n_seeds >= 1):
        return math.nan
    room = (target / k) ** 2 - se_sample**2 / sample_factor  # what the seed part may still take
    if room <= 0:
        return math.inf
    return float(max(2, math.ceil(se_seeds**2 * n_seeds / room)))


def sample_factor_needed(target: float, mde_now: float, se_seeds: float, se_sample: float) -> float:
    """How many times the pilot's test sample (objects and drawers) a design would need to detect ``target``
    with unlimited seeds: (k se_sample / target)^2, k as in ``seeds_needed``; nan without a pilot."""
    k = _planning_factor(mde_now, se_seeds, se_sample)
    if not (math.isfinite(k) and target > 0):
        return math.nan
    return float((k * se_sample / target) ** 2)


def _planning_factor(mde_now: float, se_seeds: float, se_sample: float) -> float:
    """The pilot's detectable effect over its standard error (nan without an error). Where that effect is
    infinite (a ratio whose denominator is too uncertain, ``ratio_mde``), the normal quantiles: the plan is
    then optimistic."""
    se = math.hypot(se_seeds, se_sample)
    if not (se > 0 and math.isfinite(se)):
        return math.nan
    return mde_now / se if math.isfinite(mde_now) and mde_now > 0 else _power_factor(math.inf, 0.95, 0.8)


def p_value(iv: Interval, null: float = 0.0) -> float:
    """Two-sided p-value of ``null`` for the interval's estimate and standard error (t with its df)."""
    if iv.se == 0:
        return 0.0 if iv.estimate != null else 1.0
    dist = st.t(iv.df) if math.isfinite(iv.df) else st.norm()
    return float(2 * dist.sf(abs(iv.estimate - null) / iv.se))


def outcome(rel: Interval, paper: float = math.nan, testable: bool = True, kind: str = "difference") -> str:
    """One of ``OUTCOMES`` for a relative effect whose claimed side is positive.

    kind "difference": the five rules of the module docstring (with no published size, a result that
    holds 0 is "undecided"). kind "level": the claim is a level (``rel`` the measured normalised
    level, ``paper`` the claimed one): reproduced when the interval lies at or above it, smaller than
    claimed when below, undecided when it holds it. kind "null": the claim is "no effect"
    (independence): contradicted when the interval excludes 0, else undecided (no finite sample
    proves a zero effect).
    """
    if not testable:
        return "not testable"
    if kind == "level":
        if not math.isfinite(paper):
            raise ValueError("a level claim needs the claimed level")
        return "reproduced" if rel.lo >= paper else "smaller than claimed" if rel.hi < paper else "undecided"
    if kind == "null":
        return "contradicted" if rel.excludes(0.0) else "undecided"
    if kind != "difference":
        raise ValueError(f"kind must be difference, level or null, got {kind!r}")
    if rel.lo > 0:
        return "reproduced"
    if rel.hi < 0:
        return "contradicted"
    if math.isfinite(paper) and rel.hi < paper:
        return "smaller than claimed"
    return "undecided"


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
    return {
        "statistic": float(res.statistic),
        "p": float(res.pvalue),
        "n_blocks": int(len(cols)),
        "means": {v: float(cols[v].mean()) for v in levels},
    }


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
