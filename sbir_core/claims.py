"""The papers' claims, their published effects, and the evidence the book measures for each.

``paper_runs/reference/claims.csv`` holds one row per claim (its deciding metric, the paper's; the
sign of the recorded difference when the claim holds; and its kind: a *difference* between two arms,
a claimed *level*, or a *null* claim of no effect). ``claim_effects.csv`` beside it says how the
paper's own relative effect is computed from the published numbers of ``paper_runs/reference/``:
one row per paper dataset (and setting, e.g. ``k=5``), the published rows it combines, the arm it is
relative to, and that arm's trivial value on the paper's benchmark (chance, with its derivation).
The paper's effect of a claim is the smallest over its datasets: "smaller than claimed" then means
smaller than the smallest effect the paper reports.

``assess`` turns a chapter's arms into ``Evidence``: the raw difference, the relative effect
(``sbir_core.stats`` states the unit), the paper's relative effect, the minimum effect the design
detects with 80% power, one of the five outcomes, and whether a one-query or one-seed change would
flip that outcome (``fragile``). ``Chapter.claim`` records it; ``book/10_claims.py`` gathers every
chapter's evidence into one table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from sbir_core import stats as ST
from sbir_core.errors import SBIRError
from sbir_core.paths import RUNS

REFERENCE = RUNS / "reference"
KINDS = ("difference", "level", "null")
LOWER_IS_BETTER = ("rank_v_avg",)  # metrics where a smaller value is the better model
METRIC_TOP = {"acc": 1.0, "map": 1.0, "prec": 1.0, "probe": 1.0}  # a perfect model's value (proportions)


class ClaimError(SBIRError, ValueError):
    """A claim that is not in claims.csv, or a claims or effects file that does not hold together."""


@lru_cache(maxsize=1)
def load_claims() -> pd.DataFrame:
    """claims.csv, indexed by claim_id, with ``direction`` as an int; refused when a row is malformed."""
    path = REFERENCE / "claims.csv"
    df = pd.read_csv(path, keep_default_na=False, dtype=str)
    need = ["claim_id", "chapter", "paper", "claim", "metric", "direction", "kind", "evidence"]
    missing = [c for c in need if c not in df]
    if missing:
        raise ClaimError(f"{path}: missing columns {missing}")
    if df["claim_id"].duplicated().any():
        raise ClaimError(f"{path}: claim ids twice: {sorted(df.loc[df['claim_id'].duplicated(), 'claim_id'])}")
    bad = df[~df["kind"].isin(KINDS) | ~df["direction"].isin(["1", "-1"])]
    if len(bad):
        raise ClaimError(f"{path}: kind must be one of {KINDS} and direction 1 or -1: {bad['claim_id'].tolist()}")
    return df.astype({"direction": int}).set_index("claim_id")


def claim(claim_id: str) -> pd.Series:
    """One row of claims.csv."""
    table = load_claims()
    if claim_id not in table.index:
        raise ClaimError(f"claim {claim_id!r} is not in {REFERENCE / 'claims.csv'} (has {sorted(table.index)})")
    return table.loc[claim_id]


@lru_cache(maxsize=1)
def paper_effects() -> pd.DataFrame:
    """One row per (claim, setting, paper dataset): the published numbers combined into the paper's
    raw effect (percentage points) and its relative effect (``stats`` docstring; for a level claim, the
    level normalised as (value - chance) / (100 - chance))."""
    path = REFERENCE / "claim_effects.csv"
    spec = pd.read_csv(path, keep_default_na=False, dtype=str)
    rows = []
    for r in spec.to_dict("records"):
        if r["claim_id"] not in load_claims().index:
            raise ClaimError(f"{path}: claim {r['claim_id']!r} is not in claims.csv")
        ref = pd.read_csv(REFERENCE / f"{r['reference']}.csv", keep_default_na=False, dtype=str)
        if "setting" not in ref:
            ref["setting"] = ""
        terms = json.loads(r["terms"])
        raw = sum(c * _published(ref, r, t, path) for t, c in terms.items())
        chance = float(r["chance"])
        kind = load_claims().loc[r["claim_id"], "kind"]
        if kind == "level":
            rel = (raw - chance) / (100.0 - chance)
        else:
            margin = _published(ref, r, r["base"], path) - chance
            rel = raw / margin if margin > 0 else math.nan
        rows.append(
            {
                "claim_id": r["claim_id"],
                "setting": r["setting"],
                "dataset": r["dataset"],
                "metric": r["metric"],
                "raw": raw,
                "chance": chance,
                "relative": rel,
                "note": r["note"],
            }
        )
    return pd.DataFrame(rows)


def _published(ref: pd.DataFrame, row: dict, term: str, path) -> float:
    """The one published number of ``ref`` that a claim_effects row's ``term`` ("method" or
    "method|setting") names, at the row's dataset, metric and setting."""
    method, _, setting = term.partition("|")
    setting = setting or row["setting"]
    hit = ref[
        (ref["dataset"] == row["dataset"])
        & (ref["method"] == method)
        & (ref["metric"] == row["metric"])
        & (ref["setting"] == setting)
    ]
    if len(hit) != 1:
        raise ClaimError(
            f"{path}, claim {row['claim_id']}: {len(hit)} rows of {row['reference']}.csv match "
            f"{row['dataset']} / {method} / {row['metric']} / setting {setting!r} (need one)"
        )
    return float(hit["value"].iloc[0])


def paper_effect(claim_id: str, setting: str = "") -> float:
    """The paper's relative effect of a claim: the smallest over its datasets (at ``setting`` where the
    paper reports one per setting, e.g. "k=5": a published row applies when its setting's items are all
    in ``setting``); NaN where the paper gives no size."""
    pe = paper_effects()
    have = set(filter(None, setting.split(",")))
    applies = np.array(
        [set(filter(None, s.split(","))) <= have for s in pe["setting"]], dtype=bool
    )  # "k=5" in "k=5,level=category"
    rows = pe[(pe["claim_id"] == claim_id) & applies]
    return float(rows["relative"].min()) if len(rows) else math.nan


# ----------------------------------------------------------------------------------------- arms


def arm(
    evaluations,
    metric: str,
    seeds=(),
    columns=("instance", "drawer"),
    name: str = "",
    floors: dict | None = None,
    seed_var=None,
) -> ST.Arm:
    """An ``Arm`` of ``metric``'s per-query outcomes from one ``Evaluation`` per seed.

    seeds: the training seeds of the evaluations (() for a model without training chance); floors:
    name -> trivial value (a number, e.g. chance) or ``Arm`` (the untrained model, the pixel nearest
    neighbour) on the same queries, which the arm must beat for a claim resting on it to be testable.
    """
    evaluations = list(evaluations)
    values = np.stack([ev.outcome(metric) for ev in evaluations])
    table = evaluations[0].table
    clusters = {c: table[c].to_numpy() for c in columns if c in table and (table[c] != "").any()}
    seeds = tuple(seeds)
    if seeds and len(seeds) != len(evaluations):
        raise ValueError(f"arm {name!r}: {len(evaluations)} evaluations for seeds {seeds}")
    a = ST.Arm(values, clusters, seeds, seed_var, name)
    a.floors.update({k: (v if isinstance(v, ST.Arm) else a.constant(v, k)) for k, v in (floors or {}).items()})
    return a


# ------------------------------------------------------------------------------------- evidence


@dataclass
class Evidence:
    """What a chapter measured for one claim on one dataset (and setting).

    diff: the raw difference in the metric's units, with the recorded sign (arm a minus arm b);
    rel: the relative effect, positive on the claimed side (for a level claim, the normalised level);
    paper_rel: the paper's relative effect (NaN where it gives no size); mde_rel: the smallest relative
    effect the design detects with 80% power; outcome: one of ``stats.OUTCOMES``; reason: why a claim
    is not testable; fragile: "" or what would flip the outcome ("one query", "one seed");
    floor / floor_name: the reference arm's binding trivial value; other: metric -> raw difference of
    another metric, shown beside the deciding one.
    """

    claim: str
    metric: str
    kind: str
    direction: int
    diff: ST.Interval
    rel: ST.Interval | None
    paper_rel: float
    mde_rel: float
    outcome: str
    reason: str = ""
    fragile: str = ""
    floor: float = math.nan
    floor_name: str = ""
    setting: str = ""
    other: dict = field(default_factory=dict)

    @property
    def code(self) -> float:
        return ST.OUTCOME_CODE[self.outcome]

    def text(self, points: bool = True, markdown: bool = True, verdict: bool = True) -> str:
        """ "+3.1 [−0.5, 6.7] points; relative +0.12 [−0.02, 0.26] (paper 0.27, detectable 0.18): **undecided**".
        markdown: the outcome in bold for prose; False for a table's cell, where the HTML would show the asterisks.
        verdict: False for a table whose next column is the ``verdict``, so the outcome is not read twice."""
        scale, unit = (100, " points") if points and self.metric != "rank_v_avg" else (1, "")
        d = self.diff
        out = f"{scale * d.estimate:+.1f} [{scale * d.lo:.1f}, {scale * d.hi:.1f}]{unit}"
        if self.rel is not None:
            out += f"; relative {self.rel.estimate:+.2f} [{self.rel.lo:.2f}, {self.rel.hi:.2f}]"
            size = [f"paper {self.paper_rel:.2f}"] if math.isfinite(self.paper_rel) else ["paper: no size"]
            # inf: the reference's margin over its floor is so uncertain that no relative effect is found (ratio_mde)
            size.append(f"detectable {self.mde_rel:.2f}" if math.isfinite(self.mde_rel) else "none detectable")
            out += f" ({', '.join(size)})"
        return f"{out}: {self.verdict(markdown)}" if verdict else out

    def verdict(self, markdown: bool = True) -> str:
        """The outcome (bold for prose) with why it is not testable and what would flip it, where either applies."""
        out = f"**{self.outcome}**" if markdown else self.outcome
        if self.reason:
            out += f" ({self.reason})"
        if self.fragile:
            out += f", fragile ({self.fragile} would flip it)"
        return out


def _reaches(a: ST.Arm, higher: bool) -> str:
    """ "" when the arm's own interval clears its binding floor, else a sentence saying which floor it reaches."""
    name, f = a.floor(higher)
    if f is None:
        return ""
    iv = a.own_interval()
    clear = iv.lo > f.mean if higher else iv.hi < f.mean
    if clear:
        return ""
    label = a.name or "an arm"
    return f"{label}'s interval [{iv.lo:.3g}, {iv.hi:.3g}] reaches its floor ({name} {f.mean:.3g})"


def assess(
    claim_id: str,
    effect,
    reference: ST.Arm,
    setting: str = "",
    other: dict | None = None,
    metric: str | None = None,
) -> Evidence:
    """The evidence for one claim of claims.csv from the chapter's arms (``judge`` with the claim's
    kind, direction and metric, and the paper's relative effect at ``setting``). ``metric`` replaces
    the claim's deciding metric only where a protocol does not have it (mAP@all at the category
    level, where the paper's Acc@1 is undefined); the relative effect is compared in its own unit."""
    row = claim(claim_id)
    return judge(
        effect,
        reference,
        row["kind"],
        int(row["direction"]),
        metric or row["metric"],
        paper_effect(claim_id, setting),
        claim_id,
        setting,
        other,
    )


def judge(
    effect,
    reference: ST.Arm,
    kind: str = "difference",
    direction: int = 1,
    metric: str = "acc_at_1",
    paper: float = math.nan,
    claim_id: str = "",
    setting: str = "",
    other: dict | None = None,
) -> Evidence:
    """The outcome of a comparison from its arms.

    effect: [(Arm, coefficient), ...] whose weighted sum is the recorded difference (e.g. [(a, 1),
    (b, -1)]; a difference of differences for a gain that grows); for a level claim [(arm, 1)]; for a
    null claim the measured effect (e.g. a probe's accuracy and its chance). reference: the arm the
    claim compares against: its margin over its floor is the unit of the relative effect (for a level
    claim, the arm whose level is claimed; for a null claim, the arm that shows how large the effect
    could be). direction: the sign of the recorded difference when the claim holds. paper: the
    paper's relative effect (NaN: no size). Every arm with floors must clear them, and every trained
    arm needs two or more seeds (or a pilot's ``seed_var``): otherwise the claim is "not testable",
    with the reason (its difference is recorded; its interval lacks the training seeds' part). other:
    metric -> effect terms of another metric, recorded beside (no outcome).
    """
    higher = metric not in LOWER_IS_BETTER
    g = 1.0 if higher else -1.0
    arms = list(dict.fromkeys([a for a, _ in effect] + [reference]))
    single = [a.name or "an arm" for a in arms if len(a.seeds) == 1 and a.seed_var is None]
    diff = ST.contrast(effect)
    # each reason once: an arm may come in twice as two objects (the reference rebuilt beside the effect's terms)
    reasons = list(dict.fromkeys(r for r in (_reaches(a, higher) for a in arms) if r))
    if single:  # e.g. a reader's quick run with one seed (--set N_SEEDS=1): the chapter runs on, the claim says why
        reasons.insert(
            0,
            f"{', '.join(single)} trained with one seed: its interval holds the test sample's chance, not "
            f"training's (two or more seeds of every trained arm, or a pilot's seed variance, make it testable)",
        )
    if kind != "level" and _alike(effect):
        reasons.append("the arms rank every query alike: the switched part changes nothing the evaluation sees")
    floor_name, f = reference.floor(higher)
    if f is None:
        raise ClaimError(f"{claim_id}: the reference arm {reference.name!r} has no floor (chance, untrained, pixel NN)")
    rel = None
    if kind == "level":
        top = reference.constant(1.0)
        rel = ST.ratio([(reference, 1.0), (f, -1.0)], [(top, 1.0), (f, -1.0)])
    elif g * (reference.mean - f.mean) > 0:
        rel = ST.ratio([(a, direction * c) for a, c in effect], [(reference, g), (f, -g)])
    word = ST.outcome(rel, paper, not reasons, kind) if rel is not None else "not testable"
    if word == "not testable":  # an effect relative to a floor a model has not cleared says nothing
        rel, mde = None, math.nan
    elif kind == "level":
        mde = ST.mde(rel)
    else:
        mde = ST.ratio_mde([(a, direction * c) for a, c in effect], [(reference, g), (f, -g)])
    fragile = _fragility(effect, reference, f, rel, paper, kind, direction, g, word) if rel is not None else ""
    others = {m: ST.contrast(t) for m, t in (other or {}).items()}
    return Evidence(
        claim_id,
        metric,
        kind,
        direction,
        diff,
        rel,
        paper,
        mde,
        word,
        "; ".join(reasons),
        fragile,
        f.mean,
        floor_name,
        setting,
        others,
    )


def _alike(effect) -> bool:
    """Whether the effect is zero query by query and seed by seed (arms of one shape): nothing differs."""
    shapes = {a.values.shape for a, _ in effect}
    if len(shapes) != 1:
        return False
    return bool(np.all(sum(c * a.values for a, c in effect) == 0))


def _fragility(effect, reference, f, rel, paper, kind, direction, g, word) -> str:
    """Whether the outcome flips when the interval moves by what one query or one seed could change."""
    if rel is None:
        return ""
    margin = g * (reference.mean - f.mean) if kind != "level" else 1.0 - f.mean
    if not margin > 0:
        return ""
    # one query: the largest change of one query's seed-averaged value, over the arm's queries
    per_query = max(abs(c) * float(np.ptp(a.values.mean(0))) / a.values.shape[1] for a, c in effect) / margin
    # one seed: the largest change of the estimate when one seed of a seed group is left out
    per_seed = 0.0
    groups: dict[tuple, list] = {}
    for a, c in effect:
        if len(a.seeds) > 1:
            groups.setdefault(a.seeds, []).append((a, c))
    for members in groups.values():
        per = sum(c * a.values.mean(1) for a, c in members)
        for s in range(len(per)):
            per_seed = max(per_seed, abs(np.delete(per, s).mean() - per.mean()) / margin)
    for label, delta in (("one query", per_query), ("one seed", per_seed)):
        for shift in (-delta, delta):
            moved = ST.Interval(
                rel.estimate + shift,
                rel.lo + shift,
                rel.hi + shift,
                rel.se,
                rel.se_seeds,
                rel.se_sample,
                rel.df,
                rel.n_seeds,
                rel.n_queries,
            )
            if delta > 0 and ST.outcome(moved, paper, True, kind) != word:
                return label
    return ""


def evidence_rows(ev: Evidence) -> list[dict]:
    """The metric rows of one piece of evidence (``Chapter.claim`` adds dataset, method, split, ...)."""
    rows = []

    def add(metric, value):
        rows.append({"metric": metric, "value": float(value)})

    def add_iv(metric, iv):
        add(metric, iv.estimate)
        add(f"{metric}_ci95_lo", iv.lo)
        add(f"{metric}_ci95_hi", iv.hi)

    add_iv(f"diff_{ev.metric}", ev.diff)
    for m, iv in ev.other.items():
        add_iv(f"diff_{m}", iv)
    rel = ev.rel if ev.rel is not None else ST.Interval(math.nan, math.nan, math.nan, 0, 0, 0, math.inf, 0, 0)
    add_iv("rel_effect", rel)
    if ev.rel is not None:  # the pilot for planning a design (``design``): the two parts of the error
        add("rel_effect_se_seeds", rel.se_seeds)
        add("rel_effect_se_sample", rel.se_sample)
        add("rel_effect_n_seeds", rel.n_seeds)
    add("paper_rel_effect", ev.paper_rel)
    add("mde_rel", ev.mde_rel)
    add("floor", ev.floor)
    add("outcome", ev.code)
    add("fragile", 1.0 if ev.fragile else 0.0)
    if ev.outcome == "not testable":  # 1: an arm reaches its floor; 2: the arms rank every query alike
        add("not_testable_why", 2.0 if "alike" in ev.reason else 1.0)
    return rows


def evidence_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every claim's evidence in a metrics frame (``results.load_metrics``): one row per claim, dataset
    and setting, with the outcome word, relative effect and interval, paper's effect, minimum
    detectable effect, raw difference and a two-sided p-value (normal approximation from the
    interval, conservative when its degrees of freedom are few)."""
    from scipy.stats import norm

    ev = metrics[metrics["setting"].str.startswith("claim=")].copy()
    if ev.empty:
        return pd.DataFrame(columns=["claim_id", "chapter", "dataset", "setting", "outcome"])
    parts = ev["setting"].str.split(",", n=1, expand=True)
    ev["claim_id"] = parts[0].str.removeprefix("claim=")
    ev["where"] = parts[1].fillna("") if parts.shape[1] > 1 else ""
    key = ["claim_id", "chapter", "dataset", "where", "method", "split"]
    wide = ev.pivot_table(index=key, columns="metric", values="value", aggfunc="first").reset_index()
    # a metric NaN in every row (no claim testable: no relative effect anywhere) is dropped by the pivot
    always = ["rel_effect", "rel_effect_ci95_lo", "rel_effect_ci95_hi", "paper_rel_effect", "mde_rel", "floor"]
    wide = wide.reindex(columns=[*wide.columns, *(c for c in always if c not in wide.columns)])
    code_word = {v: k for k, v in ST.OUTCOME_CODE.items()}
    wide["outcome"] = wide["outcome"].map(lambda c: code_word.get(float(c), "?"))
    se = (wide["rel_effect_ci95_hi"] - wide["rel_effect_ci95_lo"]) / (2 * norm.ppf(0.975))
    kinds = load_claims()["kind"].reindex(wide["claim_id"]).to_numpy()
    null = np.where(kinds == "level", wide["paper_rel_effect"], 0.0)  # a level is tested against the claimed one
    z = ((wide["rel_effect"] - null).abs() / se).where(se > 0)
    wide["p"] = 2 * norm.sf(z)
    deciding = load_claims()["metric"]
    wide["metric"] = [
        w.split("metric=", 1)[1].split(",")[0] if "metric=" in w else deciding.get(c, "")
        for w, c in zip(wide["where"], wide["claim_id"])
    ]
    raw = []
    for r in wide.to_dict("records"):
        m = f"diff_{r['metric']}"
        raw.append((r.get(m, math.nan), r.get(f"{m}_ci95_lo", math.nan), r.get(f"{m}_ci95_hi", math.nan)))
    wide[["raw", "raw_lo", "raw_hi"]] = pd.DataFrame(raw, index=wide.index)
    return wide.rename(columns={"where": "setting"})


def pilot(a: ST.Arm) -> tuple[float, int] | None:
    """A pilot's seed variance for a one-seed arm of the same design: the variance of ``a``'s per-seed
    means (ddof 1) and its degrees of freedom, S - 1 (``arm(..., seed_var=pilot(full))``). None where ``a``
    has one seed itself: there is no pilot, and a claim on the one-seed arm is not testable (``judge``)."""
    per_seed = a.values.mean(1)
    if len(per_seed) < 2:
        return None
    return float(np.var(per_seed, ddof=1)), len(per_seed) - 1


SAMPLE_FACTOR = 4  # the larger test sample a design table prices: 4x the objects and drawers


def design(table: pd.DataFrame, sample_factor: float = SAMPLE_FACTOR) -> pd.DataFrame:
    """Each decidable claim row of ``evidence_table`` as a pilot for planning (``stats.seeds_needed``):
    the seeds' share of the relative effect's variance, and the fewest seeds with which the design
    would detect the paper's relative effect, at the test sample used and at ``sample_factor`` times
    it (inf: no number of seeds is enough, the test sample's part alone is too large; nan: no paper
    size, a level or "no effect" claim, or no pilot), and how many times the test sample it would need
    with unlimited seeds. Rows without a relative effect (not testable) are left out."""
    cols = ["rel_effect", "mde_rel", "paper_rel_effect", "rel_effect_se_seeds", "rel_effect_se_sample"]
    cols += ["rel_effect_n_seeds", "claim_id", "chapter", "setting", "outcome"]
    t = table.reindex(columns=[*table.columns, *(c for c in cols if c not in table.columns)])
    t = t[t["rel_effect"].notna() & t["rel_effect_se_seeds"].notna()].copy()
    var = t["rel_effect_se_seeds"] ** 2 + t["rel_effect_se_sample"] ** 2
    kinds = load_claims()["kind"].reindex(t["claim_id"]).to_numpy()  # a level or null claim has no effect to plan for
    t["seed_share"] = (t["rel_effect_se_seeds"] ** 2 / var).where(var > 0)
    for name, factor in (("seeds_needed", 1.0), ("seeds_needed_more_test", float(sample_factor))):
        t[name] = [
            ST.seeds_needed(
                abs(r.paper_rel_effect),
                r.mde_rel,
                r.rel_effect_se_seeds,
                r.rel_effect_se_sample,
                int(r.rel_effect_n_seeds),
                factor,
            )
            if kind == "difference" and math.isfinite(r.paper_rel_effect) and r.paper_rel_effect != 0
            else math.nan
            for r, kind in zip(t.itertuples(), kinds)
        ]
    t["sample_factor_needed"] = [
        ST.sample_factor_needed(abs(r.paper_rel_effect), r.mde_rel, r.rel_effect_se_seeds, r.rel_effect_se_sample)
        if not math.isnan(s)
        else math.nan
        for r, s in zip(t.itertuples(), t["seeds_needed"])
    ]
    t["detectable"] = t["mde_rel"] <= t["paper_rel_effect"].abs()
    t["decided"] = ~t["outcome"].isin(["undecided", "not testable"])
    return t.reset_index(drop=True)


def seeds_for_share(values, share: float = 0.75) -> float:
    """The seeds that bring ``share`` of the rows within reach: the ceil(share * n)-th smallest need."""
    v = sorted(values)
    return v[max(0, math.ceil(share * len(v)) - 1)] if v else math.nan


def design_text(plan: pd.DataFrame, share: float = 0.75, sample_factor: float = SAMPLE_FACTOR) -> str:
    """One paragraph on a chapter's design from ``design(...)`` of its style-world rows: how its
    error splits between seeds and test sample, how many rows it decides and could decide, and the
    seeds that would bring ``share`` of the rows with a paper size within reach (as run, and with
    ``sample_factor`` times the test sample)."""
    sized = plan[plan["seeds_needed"].notna()]
    if sized.empty:
        return "No claim row of this chapter has both a paper size and an interval here: there is no design to plan."
    n, s_now, s_max = len(sized), int(sized["rel_effect_n_seeds"].min()), int(sized["rel_effect_n_seeds"].max())
    need, need_more = (
        seeds_for_share(sized["seeds_needed"], share),
        seeds_for_share(sized["seeds_needed_more_test"], share),
    )

    def seeds(x):
        return f"{int(x)} seeds of every trained arm" if math.isfinite(x) else "no number of seeds"

    decided, detectable, share_of = int(sized["decided"].sum()), int(sized["detectable"].sum()), sized["seed_share"]
    out = (
        f"**The design's power** (this run as the pilot, `sbir_core.claims.design`): of the {n} style-world claim "
        f"row{'s' if n != 1 else ''} with a paper size, {decided} {'is' if decided == 1 else 'are'} decided and "
        f"{detectable} could detect the paper's relative effect with 80% power. Training seeds make up "
        f"{100 * share_of.median():.0f}% of the median row's variance"
        + (f" (between {100 * share_of.min():.0f}% and {100 * share_of.max():.0f}%)" if n > 1 else "")
        + ", the test sample the rest"
        + (
            f" (a rough split: with {s_max} seeds the seed part has {s_max - 1} degree{'s' if s_max > 2 else ''} "
            "of freedom)"
            if s_max <= 3
            else ""
        )
        + f". To reach the paper's effect in {share:.0%} of these rows would take "
        f"{seeds(need)} (now {s_now if s_now == s_max else f'{s_now} to {s_max}'}) at this test sample"
    )
    if math.isfinite(need_more):
        out += f", or {seeds(need_more)} with {sample_factor:g}x the test objects and drawers"
    else:
        out += f", and {seeds(need_more)} even with {sample_factor:g}x the test objects and drawers"
    if math.isfinite(need) or math.isfinite(need_more):
        best = min(need, need_more)
        out += f": about {best / s_max:.0f}x this chapter's training time"
    grow = seeds_for_share(sized["sample_factor_needed"], share)
    out += (
        f". With unlimited seeds, the test sample would have to grow {grow:,.0f}-fold for {share:.0%} of the rows "
        "(the style world draws more test objects and drawers at evaluation cost)."
    )
    return out
