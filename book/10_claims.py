# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The claims, together
#
# Every method chapter ends by putting the paper's headline claims to the test. This chapter
# gathers them: one row per claim (and per setting where the paper gives one per setting, e.g. k
# support sketches), with the paper's own effect beside ours, in one unit that travels between
# their scale and ours. Nothing here is trained or typed: the table is read from the chapters'
# results files (`paper_runs/<scale>/<chapter>/metrics.csv`) and from the published numbers
# (`paper_runs/reference/claims.csv` and `claim_effects.csv`).
#
# **The unit.** A paper measures its effect on its benchmark (ShoeV2, a VGG-16, Acc@1 28.7 →
# 36.5), we on ours (the style world, a 32-pixel CNN). Raw points do not transfer, so every
# effect is also divided by the margin of the arm it is compared against over that arm's trivial
# value: chance, or on our side the untrained model or the pixel nearest neighbour where that is
# higher. StyleMeUp's ShoeV2 gain over Triplet-SN is (36.47 − 28.71) / (28.71 − 0.5) = 0.28 of
# Triplet-SN's margin over chance. The paper's relative effect of a claim is the smallest over the
# datasets it reports (`sbir_core.claims.paper_effects`).
#
# **The outcome** comes from the 95% interval of our relative effect (over training seeds and the
# test sample, `sbir_core.stats`). The test sample's part keeps the dependence between sketches of one
# object and of one drawer: on the style world, where objects and drawers are crossed, it is the two-way
# cluster-robust variance {cite}`cameron2011multiway`, whose standard error matches the spread of repeated
# experiments in simulation; the resampling bootstrap used before counted the query-level noise about
# three times, and on the unseen drawers' test overstated the standard error by about half (`tests/test_stats.py`).
#
# | outcome | when |
# |---|---|
# | *not testable* | an arm's own interval reaches its floor (chance, untrained, pixel NN), or the compared arms rank every query alike: two models that have not learnt, or a part that cannot act, are no evidence about a method |
# | *reproduced* | the interval excludes 0 on the claimed side |
# | *contradicted* | it excludes 0 on the other side |
# | *smaller than claimed* | it holds 0 and excludes the paper's relative effect |
# | *undecided* | it holds both: this design cannot tell |
#
# A claimed *level* (a per-medium mAP of at least 0.81) is reproduced when the whole interval of
# our normalised level lies at or above the paper's, smaller than claimed when below it. A claim
# of *no effect* (independence) can be contradicted, never reproduced by a finite sample.
# *Detectable* is the smallest relative effect each design finds with 80% power; a design whose
# detectable effect exceeds the paper's could not have reproduced the claim even if it holds.

# %% tags=["remove-cell"]
from sbir_core.chapter import setup

setup(seed=0)

# %% tags=["parameters"]
SCALE = "ci"  # whose results to gather: ci | paper
ALPHA = 0.05  # family-wise error rate of the Holm adjustment across every decided comparison
XLIM = [-1.5, 1.5]  # relative effects shown in the figure (wider intervals are drawn to the edge, marked)
BUDGET_S = 15  # this chapter's time budget at this scale on 2 CPU cores, seconds (python -m sbir_core.bench book)

# %% tags=["hide-input"]
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sbir_core import stats as ST
from sbir_core.chapter import Chapter, metric_label, note
from sbir_core.claims import SAMPLE_FACTOR, design, evidence_table, load_claims, paper_effects, seeds_for_share
from sbir_core.data.registry import LOADERS, available
from sbir_core.results import load_metrics

ch = Chapter("10_claims", SCALE, globals())
claims = load_claims()
evidence = evidence_table(load_metrics(SCALE))
evidence = evidence[evidence["claim_id"].isin(claims.index)].copy()
evidence["p_holm"] = np.nan
decided = evidence["p"].notna() & (evidence["outcome"] != "not testable")
evidence.loc[decided, "p_holm"] = ST.holm(evidence.loc[decided, "p"].to_numpy())
evidence["holds_after_holm"] = evidence["p_holm"] < ALPHA
evidence["fragile"] = evidence["fragile"].fillna(0).astype(bool)
WORLD = "style_world"


def rel_text(r) -> str:
    if not math.isfinite(r["rel_effect"]):
        return "–"
    return f"{r['rel_effect']:+.2f} [{r['rel_effect_ci95_lo']:.2f}, {r['rel_effect_ci95_hi']:.2f}]"


def setting_of(s: str) -> str:
    """The setting a claim is read at, without the metric override: "k=5"."""
    return ",".join(x for x in s.split(",") if x and not x.startswith("metric=") and not x.startswith("level="))


evidence["at"] = evidence["setting"].map(setting_of)

# %% [markdown]
# ## The table
#
# One row per claim and setting on the style world ({numref}`c10-tbl-world`), the benchmark every reader
# regenerates: *paper* is the paper's relative effect (the smallest over its datasets; – where it states no
# size), *ours* our relative effect with its 95% interval, then the outcome and the *detectable*
# relative effect of our design (80% power). The real sets follow in a second table.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The claims on the style world, one row per claim and setting: the paper's relative effect (the smallest over its datasets), ours with its 95% interval over training seeds and the test sample, the outcome, and the smallest relative effect our design detects with 80% power.", "classes": "sbir-table", "name": "c10-tbl-world"}}
pe = paper_effects()


def paper_at(claim_id, at):
    rows = pe[pe["claim_id"] == claim_id]
    rows = rows[[set(filter(None, s_.split(","))) <= set(filter(None, at.split(","))) for s_ in rows["setting"]]]
    return rows["relative"].min() if len(rows) else float("nan")


rows = []
for claim_id, c in claims.iterrows():
    ev = evidence[(evidence["claim_id"] == claim_id) & (evidence["dataset"] == WORLD)]
    for _, r in ev.iterrows() if len(ev) else [(None, None)]:
        at = r["at"] if r is not None else ""
        paper = paper_at(claim_id, at)
        rows.append(
            {
                "chapter": c["chapter"][:2],
                "claim": claim_id,
                "setting": at or "–",
                "paper": f"{paper:.2f}" if math.isfinite(paper) else "–",
                "ours": rel_text(r) if r is not None else "not run",
                "outcome": (r["outcome"] + (" (fragile)" if r["fragile"] else "")) if r is not None else "–",
                "detectable": f"{r['mde_rel']:.2f}" if r is not None and math.isfinite(r["mde_rel"]) else "–",
            }
        )
pd.DataFrame(rows).set_index(["chapter", "claim", "setting"])

# %% [markdown]
# On real sketches ({numref}`c10-tbl-real`): each real set a chapter tests the claim on, filled where
# `SBIR_DATA` holds it (and the set has what the protocol needs, e.g. paired photos); otherwise the data it
# would need.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The claims on real sketch sets, one row per claim, dataset and setting: the paper's relative effect, ours with its 95% interval (with the metric where it is not the claim's own) and the outcome, or the data a row needs where it was not run.", "classes": "sbir-table", "name": "c10-tbl-real"}}
real_rows = []
for claim_id, c in claims.iterrows():
    for d in filter(None, c["real_sets"].split(";")):
        ev = evidence[(evidence["claim_id"] == claim_id) & (evidence["dataset"] == d)]
        need = [d] if d in LOADERS else d.split("_")  # pacs_quickdraw: QuickDraw queries, PACS photos
        if not len(ev):
            real_rows.append(
                {
                    "claim": claim_id,
                    "dataset": d,
                    "setting": "–",
                    "paper": "",
                    "ours": "",
                    "outcome": "not run here"
                    if all(available(n) for n in need)
                    else f"needs {' + '.join(need)} (SBIR_DATA)",
                }
            )
        for _, r in ev.iterrows():
            paper = paper_at(claim_id, r["at"])
            real_rows.append(
                {
                    "claim": claim_id,
                    "dataset": d,
                    "setting": r["at"] or "–",
                    "paper": f"{paper:.2f}" if math.isfinite(paper) else "–",
                    "ours": rel_text(r) + (f" ({metric_label(r['metric'])})" if "metric=" in r["setting"] else ""),
                    "outcome": r["outcome"] + (" (fragile)" if r["fragile"] else ""),
                }
            )
pd.DataFrame(real_rows, columns=["claim", "dataset", "setting", "paper", "ours", "outcome"]).set_index(
    ["claim", "dataset", "setting"]
)

# %% [markdown]
# The claims themselves, in the papers' words as `claims.csv` records them, with the evidence each
# paper gives ({numref}`c10-tbl-claims`):

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The claims as claims.csv records them: the chapter that tests each, the paper, the claim in the paper's words, its metric and the evidence the paper gives.", "classes": "sbir-table", "name": "c10-tbl-claims"}}
claims[["chapter", "paper", "claim", "metric", "evidence"]].rename_axis("claim_id")

# %% [markdown]
# ## The figure
#
# Our relative effects with their 95% intervals ({numref}`c10-fig-forest`; one line per claim, setting and
# dataset; filled markers on the style world, open ones on real sets) and the paper's relative effect
# (red cross). Zero is no effect; the shaded band around each of our effects shows the detectable effect
# of that design. Intervals wider than the axis run to its edge and end in an arrow.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Every testable claim: our relative effect with its 95% interval and the paper's (red x), in one unit: the difference over the compared arm's margin above its floor.", "name": "c10-fig-forest"}, "image": {"alt": "A forest plot, one row per claim and setting, with our interval and a red cross for the paper's effect."}}
shown = evidence[np.isfinite(evidence["rel_effect"])].sort_values(["claim_id", "at", "dataset"]).reset_index(drop=True)
colors = {
    "reproduced": "tab:green",
    "contradicted": "tab:red",
    "smaller than claimed": "tab:blue",
    "undecided": "tab:grey",
    "not testable": "black",
}
fig, ax = plt.subplots(figsize=(9, 0.32 * len(shown) + 1.5))
for i, r in shown.iterrows():
    y = len(shown) - i
    lo, hi = np.clip([r["rel_effect_ci95_lo"], r["rel_effect_ci95_hi"]], *XLIM)
    ax.plot([lo, hi], [y, y], color=colors[r["outcome"]], lw=2)
    if r["rel_effect_ci95_hi"] > XLIM[1]:
        ax.annotate(
            "", (XLIM[1], y), (XLIM[1] - 0.05, y), arrowprops={"arrowstyle": "->", "color": colors[r["outcome"]]}
        )
    if r["rel_effect_ci95_lo"] < XLIM[0]:
        ax.annotate(
            "", (XLIM[0], y), (XLIM[0] + 0.05, y), arrowprops={"arrowstyle": "->", "color": colors[r["outcome"]]}
        )
    ax.plot(
        np.clip(r["rel_effect"], *XLIM),
        y,
        "o",
        color=colors[r["outcome"]],
        mfc=colors[r["outcome"]] if r["dataset"] == WORLD else "white",
    )
    if math.isfinite(r["paper_rel_effect"]):
        ax.plot(np.clip(r["paper_rel_effect"], *XLIM), y, "x", color="tab:red", ms=7)
    if math.isfinite(r["mde_rel"]):
        ax.barh(y, min(r["mde_rel"], XLIM[1]), left=0, height=0.5, color=colors[r["outcome"]], alpha=0.12)
ax.axvline(0, color="k", lw=0.8)
ax.set_yticks(range(len(shown), 0, -1))
ax.set_yticklabels(
    [f"{r['claim_id']} {r['at']} ({r['dataset']})".replace("  ", " ") for _, r in shown.iterrows()], fontsize=7
)
ax.set(
    xlim=XLIM,
    xlabel="relative effect: difference / reference arm's margin over its floor",
    title="Our relative effects (95% CI) and the papers' (red x)",
)
ax.legend(
    handles=[plt.Line2D([], [], color=c_, lw=2, label=w) for w, c_ in colors.items()]
    + [plt.Line2D([], [], color="tab:red", marker="x", ls="", label="paper")],
    fontsize=7,
    loc="lower right",
)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What each design would need
#
# A row is *undecided* when its interval holds both zero and the paper's effect: the design was too
# weak for that effect. How much stronger it would have to be follows from the run itself as a pilot
# (`sbir_core.claims.design`, {numref}`c10-tbl-power`): the interval's standard error has a part from the
# training seeds, which falls with more seeds, and a part from the test sample, which falls with more
# test objects and drawers (the style world draws those at evaluation cost only). *Seeds needed* is the
# fewest seeds of every trained arm that would detect the paper's relative effect with 80% power, at
# this test sample and at four times it; "none" means that no number of seeds is enough at that test
# size. The planning holds the power factor and the effect-dependent part of a ratio's error at the
# pilot's (an approximation, checked by simulation in `tests/test_stats.py`).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Every style-world claim row with a paper size and an interval: the outcome, the share of its variance from training seeds, the seeds run, the detectable relative effect against the paper's, and the seeds of every arm that would detect the paper's effect at this test sample and at 4x the test objects and drawers.", "classes": "sbir-table", "name": "c10-tbl-power"}}
plan = design(evidence[evidence["dataset"] == WORLD])
plan = plan[plan["seeds_needed"].notna()].sort_values(["chapter", "claim_id", "setting"])


def need_text(x) -> str:
    return "none" if not math.isfinite(x) else f"{int(x)}"


power_rows = pd.DataFrame({
    "chapter": plan["chapter"].str[:2],
    "claim": plan["claim_id"],
    "setting": plan["setting"].map(setting_of).replace("", "–"),
    "outcome": plan["outcome"],
    "seed share": plan["seed_share"].map(lambda x: f"{x:.0%}"),
    "seeds run": plan["rel_effect_n_seeds"].astype(int),
    "detectable": plan["mde_rel"].map(lambda x: f"{x:.2f}" if math.isfinite(x) else "–"),
    "paper": plan["paper_rel_effect"].map(lambda x: f"{x:.2f}"),
    "seeds needed": plan["seeds_needed"].map(need_text),
    f"seeds needed, {SAMPLE_FACTOR}x test": plan["seeds_needed_more_test"].map(need_text),
})
by_chapter = []
for chap, g in plan.groupby("chapter"):
    by_chapter.append({"chapter": chap, "rows": len(g), "decided": int(g["decided"].sum()),
                       "detectable now": int(g["detectable"].sum()),
                       "seeds for 3 in 4": need_text(seeds_for_share(g["seeds_needed"], 0.75)),
                       f"seeds for 3 in 4, {SAMPLE_FACTOR}x test": need_text(seeds_for_share(g["seeds_needed_more_test"], 0.75))})
    ch.add(WORLD, "claims", "n_detectable", int(g["detectable"].sum()), "", f"chapter={chap}", "all")
    ch.add(WORLD, "claims", "n_decided", int(g["decided"].sum()), "", f"chapter={chap}", "all")
ch.glue("n_power_chapters", len(by_chapter))
ch.glue("n_chapters_powered", sum(r["detectable now"] >= 0.75 * r["rows"] for r in by_chapter))
power_rows.set_index(["chapter", "claim", "setting"])

# %% [markdown]
# By chapter ({numref}`c10-tbl-power-chapters`): how many of each chapter's sized style-world rows are decided and
# could be, and the seeds that would put three of every four within reach.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "By chapter: the style-world claim rows with a paper size, how many are decided and how many the design could decide at the paper's effect, and the seeds of every trained arm that would bring three of every four within reach, at this test sample and at 4x it.", "classes": "sbir-table", "name": "c10-tbl-power-chapters"}}
pd.DataFrame(by_chapter, columns=["chapter", "rows", "decided", "detectable now", "seeds for 3 in 4",
                                  f"seeds for 3 in 4, {SAMPLE_FACTOR}x test"]).set_index("chapter")

# %% [markdown]
# ## Multiplicity and fragility
#
# The book makes many comparisons, and with many 95% intervals a few exclude zero by chance. Holm's
# step-down adjustment controls the family-wise error rate at `ALPHA` across every comparison whose
# outcome is decided on an interval (all but the not testable ones); the per-claim interval stays
# the outcome, and a column of {numref}`c10-tbl-holm` says whether a *reproduced* or *contradicted* survives
# the adjustment. The p-values are two-sided, from the relative effect and its interval (normal
# approximation: where an interval has few degrees of freedom, a little smaller than its t would give). A verdict is
# *fragile* when moving the estimate by what one test query, or one training seed, could change
# would flip it.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Every comparison decided on an interval, by claim, setting and dataset: its outcome, the two-sided p-value and Holm's adjusted p-value across the family, whether the verdict holds after the adjustment at the family-wise rate ALPHA, and whether it is fragile.", "classes": "sbir-table", "name": "c10-tbl-holm"}}
fam = evidence[decided].assign(
    **{"Holm p": lambda d: d["p_holm"].map(lambda p: f"{p:.3g}"), "p": lambda d: d["p"].map(lambda p: f"{p:.3g}")}
)
fam = fam[["claim_id", "at", "dataset", "outcome", "p", "Holm p", "holds_after_holm", "fragile"]]
n_family = int(decided.sum())
n_sides = int(evidence.loc[decided, "outcome"].isin(["reproduced", "contradicted"]).sum())
n_survive = int(
    (
        evidence.loc[decided, "outcome"].isin(["reproduced", "contradicted"])
        & evidence.loc[decided, "holds_after_holm"]
    ).sum()
)
fam.set_index(["claim_id", "at", "dataset"])

# %% [markdown]
# ## Claims this scale cannot test
#
# Listed in {numref}`c10-tbl-not-testable` with the reason each was judged *not testable*, and the claims no
# chapter produced evidence for here (their data absent, or a protocol this book does not run yet).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The claims judged not testable at this scale, by setting and dataset, with the reason, and the claims with no evidence recorded at this scale.", "classes": "sbir-table", "name": "c10-tbl-not-testable"}}
nt = evidence[evidence["outcome"] == "not testable"]
WHY = {
    1.0: "a compared model's interval reaches its floor (chance, untrained or pixel NN)",
    2.0: "the compared arms rank every query alike: the switched part cannot act at this scale",
}
reasons = []
for _, r in nt.iterrows():
    reasons.append(
        {
            "claim": r["claim_id"],
            "setting": r["at"] or "–",
            "dataset": r["dataset"],
            "why": WHY.get(r.get("not_testable_why", float("nan")), "see the chapter"),
        }
    )
missing = [c for c in claims.index if c not in set(evidence["claim_id"])]
for c in missing:
    reasons.append({"claim": c, "setting": "–", "dataset": "–", "why": "no evidence recorded at this scale"})
pd.DataFrame(reasons, columns=["claim", "setting", "dataset", "why"]).set_index(["claim", "setting", "dataset"])

# %% tags=["hide-input"]
counts = {w: int((evidence["outcome"] == w).sum()) for w in ST.OUTCOMES}
world = evidence[evidence["dataset"] == WORLD]
world_counts = {w: int((world["outcome"] == w).sum()) for w in ST.OUTCOMES}
sized = world[np.isfinite(world["paper_rel_effect"]) & np.isfinite(world["mde_rel"])]
powered = int((sized["mde_rel"] <= sized["paper_rel_effect"]).sum())
for w, n in counts.items():
    ch.glue(f"n_{w.replace(' ', '_')}", n)
    ch.glue(f"world_{w.replace(' ', '_')}", world_counts[w])
    ch.add(WORLD, "claims", f"n_{w.replace(' ', '_')}", world_counts[w], "", "", "all")  # real sets vary with SBIR_DATA
ch.glue("n_evidence", len(evidence))
ch.glue("n_world", len(world))
ch.glue("n_claims", len(claims))
ch.glue("n_missing", len(missing))
ch.glue("n_family", n_family)
ch.glue("n_sides", n_sides)
ch.glue("n_survive", n_survive)
ch.glue("n_fragile", int(evidence["fragile"].sum()))
ch.glue("n_sized", len(sized))
ch.glue("n_powered", powered)
ch.glue("median_mde", float(sized["mde_rel"].median()) if len(sized) else float("nan"))
ch.glue("median_paper", float(sized["paper_rel_effect"].median()) if len(sized) else float("nan"))
ch.glue(
    "n_decided_world", world_counts["reproduced"] + world_counts["contradicted"] + world_counts["smaller than claimed"]
)
if not len(evidence):
    note("No chapter has recorded claim evidence at this scale yet: run the method chapters first.")

# %% [markdown]
# ## Conclusion
#
# The book tests {glue:text}`c10_n_claims` claims of the five papers. Across the style world and
# the real sets found here it records {glue:text}`c10_n_evidence` pieces of evidence:
# {glue:text}`c10_n_reproduced` reproduced, {glue:text}`c10_n_contradicted` contradicted,
# {glue:text}`c10_n_smaller_than_claimed` smaller than claimed, {glue:text}`c10_n_undecided`
# undecided and {glue:text}`c10_n_not_testable` not testable; {glue:text}`c10_n_missing` claims
# have no evidence at this scale. On the style world alone ({glue:text}`c10_n_world` rows),
# {glue:text}`c10_n_decided_world` are decided one way or the other (reproduced, contradicted or
# smaller than claimed) and {glue:text}`c10_world_not_testable` are not testable.
#
# Of the {glue:text}`c10_n_family` comparisons decided on an interval, {glue:text}`c10_n_sides`
# exclude zero, and {glue:text}`c10_n_survive` of them still do after Holm's adjustment across
# the family; {glue:text}`c10_n_fragile` verdicts are fragile. Where the paper states a size
# ({glue:text}`c10_n_sized` style-world rows), the median detectable relative effect of our
# designs is {glue:text}`c10_median_mde:.2f` against a median paper effect of
# {glue:text}`c10_median_paper:.2f`: {glue:text}`c10_n_powered` of those designs could detect the
# paper's effect with 80% power. An *undecided* row is not a failure of the method; it is a design
# too weak for that effect at this scale. Of the {glue:text}`c10_n_power_chapters` method chapters with
# sized style-world rows, {glue:text}`c10_n_chapters_powered` could detect the paper's effect in three of
# every four; {numref}`c10-tbl-power-chapters` gives the seeds and the test sample the others would need.

# %% tags=["remove-cell"]
ch.save()
