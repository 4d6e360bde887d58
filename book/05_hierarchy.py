# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Cross-modal hierarchy (BMVC 2020)
#
# Sain et al. (*Cross-Modal Hierarchical Modelling for Fine-Grained Sketch Based Image
# Retrieval*, BMVC 2020 {cite}`sain2020hierarchy`; {ref}`appendix B <appendix-hierarchy>`) read a sketch as a set of regions (one box per stroke)
# and a photo as a set of regions (selective-search proposals, the whole photo first). For one
# (sketch, photo) pair, the two sets attend to each other and merge, pair by pair, until each
# holds one vector. One level has two steps:
#
# * **cross-modal co-attention**: $A = (S W_S)(P W_P)^\top$, $\tilde P = \mathrm{softmax}(A/\sqrt{d_h})\,P$,
#   $G = \sigma([S, \tilde P] W_G)$, $\hat S = \mathrm{ReLU}(Z(G \odot (S + \tilde P))) + S$, and the
#   same for the photo;
# * **hierarchical node fusion**: the pair of nodes with the highest $C = (X W_C)(X W_C)^\top$
#   is picked (straight-through Gumbel-softmax in training, argmax at test) and merged by
#   $\mathrm{ReLU}(W_F[x_a; x_b])$.
#
# The loss is the squared-distance triplet $\max(0,\ 0.2 + \lVert s^+ - p^+\rVert^2 - \lVert s^- - p^-\rVert^2)$.
# A sketch's vector depends on the photo it is compared with, so ranking a gallery costs one
# pass of the head per (sketch, photo) pair. The paper's Table 1 adds one part at a time:
# B-Siamese (max-pooled regions), B-Gated-Siamese (self-gating), B-Localised-Coattn
# (co-attention, then max pooling), B-Graph-Hierarchy (fusion, no co-attention) and the
# proposed model (both).
#
# **Fixed from the public code** ({ref}`appendix B <appendix-hierarchy>`): its HEAD never runs the hierarchy (a later
# commit max-pools after one co-attention step; that is the row *code HEAD* here, with the code's
# element-wise gate); its boxes are neither rescaled nor flipped with the images (here they
# follow every resize and flip, `tests/test_hierarchy.py`); its test loop scores every sketch
# against every photo, not only the photos the sketch is ranked among.
#
# **Chosen here, and why** (`sbir_core.models.hierarchy`, measured in `tests/test_hierarchy.py`
# on six toy pairs the full model must memorise, ten seeds): each fusion starts as the mean of its
# two nodes and each co-attention close to the identity (with the default initialisation the last
# node could collapse to zero, where the loss sits at the margin with no gradient); a learning rate
# of 1e-3, not 3e-3 (at 3e-3 the hierarchy's loss falls, then jumps back to the margin: the model
# that "could not fit six pairs" fitted 0 of 10 seeds, now 10 of 10); and the Gumbel noise annealed
# from the paper's τ = 1 to the test's argmax over the first half of training, so that the last
# steps train the merge trees the test uses. And the full hierarchy's nodes are L2-normalised as they
# enter it and after each level's co-attention: the co-attention adds a residual once per level with the
# same weights, and as those weights grew in training the nodes' norm grew level after level, until every
# sketch's vector pointed one way and the model ranked at chance. This showed with more nodes than this
# chapter's (the paper has 16); the measurements are in `sbir_core.models.hierarchy`'s docstring, and
# `tests/test_hierarchy.py` checks the mechanism.
#
# **The ci scale.** The papers train a VGG16 end to end. Here the trunk is chapter 4's frozen
# ImageNet EfficientNet-Lite0, whose 4 × 4 map is computed once per image; a node is the map's
# cells, each weighted by how much of it its box covers, centred and projected on chapter 4's
# principal directions, so that the whole photo's node is exactly the feature chapter 4's
# Triplet-SN reads and the nodes of boxes that tile an image sum to it. Only the head of each
# Table 1 row learns, with the same trainer as every other method, on these ready-made nodes
# (at most `max_nodes` per image, in `HIER_OPTIONS`; later strokes join the last stroke's box). As
# in the paper, the sketch has no whole-sketch node: its nodes are its strokes.

# %% tags=["remove-cell"]
from sbir_core.chapter import setup

setup(seed=0)

# %% tags=["parameters"]
SCALE = "ci"  # which results folder to write: ci | paper
SEED = 0  # base seed: heads use seeds SEED, SEED+1, ... (and the test sample is drawn with SEED)
HIER_SEEDS = 3  # training seeds of each head a claim rests on (the other Table 1 rows: one)
VARIANTS = ["b_siamese", "b_gated_siamese", "b_localised_coattn", "b_graph_hierarchy", "proposed", "code_head"]  # Table 1 rows
CLAIMED = ["b_siamese", "b_localised_coattn", "proposed"]  # the rows the paper's claims rest on
HIER_OPTIONS = {"d": 128, "d_h": 64, "max_nodes": 4}  # node size, attention size, nodes per image
ANNEAL = 0.5  # fraction of training over which the Gumbel noise falls from the paper's tau 1 to argmax
HIER_STEPS = 800  # optimiser steps per head
HIER_BATCH = 64  # triplets per step
HIER_LR = 0.001  # Adam learning rate of the heads
HIER_EVAL_EVERY = 200  # validation every N steps (the val-selected state is kept)
PROPOSALS = "single"  # selective search strategy: single (fast, ci) | fast (the paper's code)
N_TEST = 1024  # test queries sampled once from each test view (0: all of them)
SHORTLIST_M = [3, 5, 10, 20]  # shortlist sizes of two-stage retrieval
RERANKERS = ["proposed", "b_localised_coattn"]  # heads that rerank the Triplet-SN shortlist
REAL_VARIANTS = ["b_siamese", "b_localised_coattn", "proposed"]  # Table 1 rows on real sets
HIER_REAL_STEPS = 300  # steps per head on each real set
HIER_REAL_EVAL_EVERY = 100  # validation interval on real sets
FIRST_STROKES = [0.25, 0.5, 1.0]  # fractions of strokes kept, in drawing order (sets with strokes)
PROGRESS = False  # tqdm progress bars
DEVICE = "cpu"  # cpu (ci) | cuda
BUDGET_S = 320  # this chapter's time budget at this scale on 2 CPU cores, seconds (python -m sbir_core.bench book)

# %% tags=["hide-input"]
import numpy as np
import pandas as pd

from sbir_core import chapter as C
from sbir_core import recipes as R
from sbir_core import strokes as SK
from sbir_core import train as T
from sbir_core.data import DataError, available
from sbir_core.data.synthetic import detail_subset
from sbir_core.data.views import redraw
from sbir_core.evaluation import evaluate
from sbir_core.models import hierarchy as H
from sbir_core.repro import seed_everything
from sbir_core.results import load_reference

ch = C.Chapter("05_hierarchy", SCALE, globals())
p = ch.params()
bench = R.bench(SCALE)
views, nodes = bench.views(), R.hierarchy_views(bench, p)
images = {s: R.test_sample(p, views.tests[s]) for s in views.tests}  # the same sampled queries as images,
feats = {s: R.test_sample(p, bench.features().tests[s]) for s in views.tests}  # as trunk features and as nodes
NAMES = {"b_siamese": "B-Siamese", "b_gated_siamese": "B-Gated-Siamese", "b_localised_coattn": "B-Localised-Coattn",
         "b_graph_hierarchy": "B-Graph-Hierarchy", "proposed": "Proposed", "code_head": "code HEAD",
         "triplet_sn": "Triplet-SN (chapter 4)"}
mid = lambda v: v if v == "triplet_sn" else f"hierarchy_{v}"
seeds_of = {v: list(range(SEED, SEED + (HIER_SEEDS if v in CLAIMED else 1))) for v in VARIANTS}
seeds_of["triplet_sn"] = bench.seeds

# %% [markdown]
# ## Training the heads
#
# Each Table 1 row trains on the seen drawers' training sketches (a negative is another photo of
# the anchor's category, as for chapter 4's baseline), is validated on their validation sketches,
# and keeps the state with the best validation Acc@1 ({numref}`c05-fig-training`):
# {glue:text}`c05_hier_seeds` seeds of each head a claim rests on, one of the others.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Each Table 1 row's head trained on the seen drawers: training loss and validation Acc@1 (mean over seeds, band: their range).", "name": "c05-fig-training"}, "image": {"alt": "Line plots of training loss and validation accuracy over steps, one line per model variant."}}
runs = {v: R.hierarchy(bench, p, v, nodes).fit(seeds_of[v]) for v in VARIANTS}
models = {v: r.methods(R.hierarchy_spec(bench, p, v)) for v, r in runs.items()}
models["triplet_sn"] = bench.baselines()
C.training_curves({NAMES[v]: runs[v].histories() for v in VARIANTS}, chance=nodes.val.chance(1),
                  title="the heads on the seen drawers (mean over seeds, band: their range)")
ch.glue("hier_seeds", HIER_SEEDS)

# %% [markdown]
# ## Table 1 on the style world
#
# Within-category Acc@1 and Acc@10 of every row ({numref}`c05-tbl-table1`) on the same
# {glue:text}`c05_n_test` sampled test queries of the seen and unseen drawers (`style_gap` =
# {glue:text}`c05_style_gap`), beside chapter 4's Triplet-SN (from the store) and the floors a head must
# clear to be evidence: chance, pixel matching (no parameters) and the head untrained on the same nodes.
# Intervals are 95% over the heads' seeds and the test sample (objects and drawers).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Table 1 on the style world: within-category Acc@1 and Acc@10 (%) of every Table 1 row and chapter 4's Triplet-SN on the sampled test queries of the seen and unseen drawers (95% intervals over seeds and test objects and drawers), followed by the floors: pixel matching, each claimed head untrained, and chance (equal to the category oracle).", "classes": "sbir-table", "name": "c05-tbl-table1"}}
ev = {v: {s: [evaluate(m, (feats if v == "triplet_sn" else nodes.tests)[s]) for m in ms] for s in views.tests}
      for v, ms in models.items()}
floor_ev = {s: {"pixel_nn": [evaluate(bench.pixel(), images[s])]} for s in views.tests}
for v in CLAIMED:  # each claimed head untrained (seed SEED), on the same nodes
    seed_everything(SEED)
    floor_ev = {s: fe | {f"{mid(v)}_untrained": [evaluate(R.hierarchy_spec(bench, p, v).build().eval(), nodes.tests[s])]}
                for s, fe in floor_ev.items()}
world = ch.scope("style_world", T.PROTOCOL_VAL, C.setting(style_gap=bench.gap))


def arm_of(v, split, metric):
    """A head's arm of a claim, with its floors on the same queries: chance, pixel matching and the head untrained."""
    own = {n: C.arm(e, metric) for n, e in floor_ev[split].items() if n in ("pixel_nn", f"{mid(v)}_untrained")}
    return C.arm(ev[v][split], metric, seeds_of[v], name=NAMES[v], floors={"chance": images[split].chance(int(metric[7:])), **own})


rows = []
for s, view in images.items():
    for k in (1, 10):
        metric = f"acc_at_{k}"
        world.value("chance", metric, view.chance(k), s, protocol="")
        world.value("category_oracle", metric, view.category_oracle(k), s, protocol="")
        for n, e in floor_ev[s].items():
            world.value(n, metric, e[0].metrics[metric], s, protocol="")
for v in ["triplet_sn", *VARIANTS]:
    row = {"row": NAMES[v], "seeds": len(models[v])}
    for s in views.tests:
        for k in (1, 10):
            metric = f"acc_at_{k}"
            if v in ("triplet_sn", *CLAIMED):  # checked as intervals, with whether they clear every floor
                row[f"{s[5:]} Acc@{k}"] = world.interval(ev[v][s], metric, mid(v), s).text
                own = {n: e for n, e in floor_ev[s].items() if n == "pixel_nn" or n == f"{mid(v)}_untrained"}
                world.learnt(ev[v][s], own, metric, mid(v), s)
            else:
                row[f"{s[5:]} Acc@{k}"] = C.fmt(C.interval_of(ev[v][s], metric))
            world.per_seed(ev[v][s], metric, mid(v), seeds_of[v], s)
    rows.append(row)
value = lambda n, s, k: images[s].chance(k) if n == "chance = category oracle" else floor_ev[s][n][0].metrics[f"acc_at_{k}"]
rows += [{"row": n.replace("hierarchy_", "").replace("_", " "), "seeds": 0, **{f"{s[5:]} Acc@{k}": f"{100 * value(n, s, k):.1f} %"
         for s in views.tests for k in (1, 10)}} for n in [*floor_ev["test_seen"], "chance = category oracle"]]
ch.glue("style_gap", bench.gap)
ch.glue("n_test", len(images["test_seen"]))
pd.DataFrame(rows).set_index("row")

# %% [markdown]
# ## The paper's orderings
#
# The paper's two orderings of Table 1, as paired differences on the same queries (seen
# drawers, Acc@1 as in the paper's table): the full hierarchy against co-attention alone, and
# co-attention against B-Siamese ({numref}`c05-tbl-orderings`). Each outcome is computed from the
# interval of the relative effect (the difference over the weaker head's margin above its floor) and
# the paper's own relative effect (Table 1 on ShoeV2): *not testable* when a head's interval reaches a floor,
# *reproduced* or *contradicted* when the interval excludes zero, *smaller than claimed* when it
# holds zero and excludes the paper's effect, *undecided* when it holds both.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The paper's two orderings of Table 1 on the seen drawers, as paired differences on the same queries: Acc@1 in points with its relative effect and outcome (deciding), and Acc@10 in points (beside); 95% intervals over seeds and test objects and drawers.", "classes": "sbir-table", "name": "c05-tbl-orderings"}}
claims = []
for claim, a, b in (("hierarchy_beats_coattn", "proposed", "b_localised_coattn"),
                    ("coattn_beats_siamese", "b_localised_coattn", "b_siamese")):
    arms = {m: (arm_of(a, "test_seen", m), arm_of(b, "test_seen", m)) for m in ("acc_at_1", "acc_at_10")}
    e = world.claim(claim, [(arms["acc_at_1"][0], 1), (arms["acc_at_1"][1], -1)], arms["acc_at_1"][1],
                    f"{mid(a)} - {mid(b)}", "test_seen", other={"acc_at_10": [(arms["acc_at_10"][0], 1), (arms["acc_at_10"][1], -1)]})
    ch.glue(f"claim_{claim}", e.outcome)
    claims.append({"claim": f"{NAMES[a]} > {NAMES[b]}", "Acc@1 (deciding)": e.text(markdown=False),
                   "Acc@10 (beside)": C.fmt(e.other["acc_at_10"], signed=True) + " points"})
pd.DataFrame(claims).set_index("claim")

# %% [markdown]
# *Hierarchy beats co-attention*: **{glue:text}`c05_claim_hierarchy_beats_coattn`**;
# *co-attention beats B-Siamese*: **{glue:text}`c05_claim_coattn_beats_siamese`** (chapter 10
# gathers every claim of the book).
#
# ## Two-stage retrieval
#
# Scoring every (sketch, photo) pair costs one head pass per pair. The two-stage search lets
# Triplet-SN (one embedding per image, compared by distance) shortlist the M nearest photos of
# each query's gallery, and the head reranks only those; a true photo outside the shortlist keeps
# the baseline's rank (beyond M). Below: head passes and accuracy of both ways on the seen
# drawers' sampled queries, and the paired difference two-stage minus exhaustive
# ({numref}`c05-tbl-two-stage`).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Two-stage retrieval: Triplet-SN shortlists M photos and the pairwise head reranks them; accuracy against M beside the exhaustive pairwise search."}, "image": {"alt": "Line plot of accuracy against the shortlist size M for each reranker, with horizontal marks for the exhaustive search."}}
two_rows, curve2 = [], []
for v in RERANKERS:
    full = ev[v]["test_seen"][0]  # the first seed's head
    for m_ in [0, *SHORTLIST_M]:
        e = full if not m_ else evaluate(models[v][0], nodes.test_seen, shortlist=(models["triplet_sn"][0], m_, feats["test_seen"]))
        two = ch.scope("style_world", T.PROTOCOL_VAL, C.setting(style_gap=bench.gap, m=m_))
        two.value(mid(v), "head_passes", e.pair_evaluations, "test_seen", protocol="")
        row = {"reranker": NAMES[v], "M": m_ or "all (exhaustive)", "head passes": e.pair_evaluations,
               "fewer passes": f"{full.pair_evaluations / e.pair_evaluations:.1f}x"}
        for k in (1, 10):
            two.per_seed([e], f"acc_at_{k}", mid(v), [SEED], "test_seen")
            row[f"Acc@{k}"] = C.fmt(C.interval_of([e], f"acc_at_{k}"))
            if m_:
                d = two.paired([e], [full], f"acc_at_{k}", f"{mid(v)} two_stage - exhaustive", "test_seen")
                row[f"two-stage - exhaustive, Acc@{k}"] = d.text
                if k == 10:
                    curve2.append({"reranker": NAMES[v], "M": m_, "ratio": full.pair_evaluations / e.pair_evaluations,
                                   "d": d, "acc10": C.interval_of([e], "acc_at_10")})
        two_rows.append(row)
ok = [c for c in curve2 if c["ratio"] >= 10 and c["d"].lo <= 0 <= c["d"].hi]
world.value("hierarchy_proposed", "two_stage_goal_met", float(any(c["reranker"] == "Proposed" for c in ok)), "test_seen", protocol="")
C.two_stage_figure(pd.DataFrame(curve2), {NAMES[v]: C.interval_of(ev[v]["test_seen"][:1], "acc_at_10") for v in RERANKERS},
                   "two-stage retrieval, seen drawers: Triplet-SN shortlist, hierarchy rerank")
best = max(ok, key=lambda c: c["ratio"]) if ok else None
C.prose("At every shortlist of M ≤ 10 the two-stage Acc@10 is the baseline's own: a true photo in the shortlist ranks "
        "≤ M ≤ 10, one outside it keeps the baseline's rank. "
        + (f"Acc@10 equal to exhaustive within its interval with ≥ 10× fewer head passes: {best['reranker']} at M = "
           f"{best['M']} ({best['ratio']:.1f}× fewer, difference {best['d'].text} points)." if best else
           "No reranker keeps exhaustive Acc@10 within its interval with ≥ 10× fewer head passes at these M."))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Two-stage retrieval on the seen drawers' sampled test queries, for each reranker's first seed: head passes, Acc@1 and Acc@10 (%) of the exhaustive search and of each shortlist size M, and the paired difference two-stage minus exhaustive in points (95% intervals over test objects and drawers).", "classes": "sbir-table", "name": "c05-tbl-two-stage"}}
pd.DataFrame(two_rows).set_index(["reranker", "M"]).fillna("")

# %% [markdown]
# ## Coarse sketches
#
# Every stroke of the style world carries a detail level (chapter 2): 0 for the outline, 1 and
# 2 for finer parts. The same seen test queries are redrawn from their level-0 strokes only, from
# levels 0–1 and in full ({numref}`c05-tbl-coarse`); the paper's slides show its *coarse++* below its
# *coarse*, so its coarse++ is the sparser sketch, which is our level 0. The claim: the proposed model
# loses less Acc@10 from full to the sparsest sketches than B-Siamese.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Acc@10 (%) of Triplet-SN, B-Siamese and the proposed model on the seen drawers' sampled test queries, redrawn from their level-0 strokes only, from levels 0-1, and in full (95% intervals over seeds and test objects and drawers).", "classes": "sbir-table", "name": "c05-tbl-coarse"}}
levels = views.data.info["detail_levels_by_id"]
im = images["test_seen"]
detail, det_rows = {}, []
for lv, label in ((0, "level0"), (1, "level01")):
    dv = redraw(im, [detail_subset(s, levels[i], lv) for s, i in zip(im.strokes, im.table["sketch_id"])], bench.p["LINE_WIDTH"])
    dn, df = R.node_view(bench, p, dv), bench.read(dv)
    detail[label] = {v: [evaluate(m, df if v == "triplet_sn" else dn) for m in models[v]] for v in ("triplet_sn", "b_siamese", "proposed")}
detail["full"] = {v: ev[v]["test_seen"] for v in ("triplet_sn", "b_siamese", "proposed")}
for v in ("triplet_sn", "b_siamese", "proposed"):
    det_rows.append({"model": NAMES[v], **{lab: C.fmt(C.interval_of(detail[lab][v], "acc_at_10")) for lab in ("level0", "level01", "full")}})
sia_full, prop_full = arm_of("b_siamese", "test_seen", "acc_at_10"), arm_of("proposed", "test_seen", "acc_at_10")
sia_sparse = C.arm(detail["level0"]["b_siamese"], "acc_at_10", seeds_of["b_siamese"], name="B-Siamese, level 0")
prop_sparse = C.arm(detail["level0"]["proposed"], "acc_at_10", seeds_of["proposed"], name="Proposed, level 0")
robust = world.claim("hierarchy_robust_to_coarse", [(sia_full, 1), (sia_sparse, -1), (prop_full, -1), (prop_sparse, 1)],
                     sia_full, "hierarchy_b_siamese - hierarchy_proposed", "test_seen")
ch.glue("claim_coarse", robust.outcome)
ch.glue("robust_text", robust.text())
ch.glue("drop_prop", 100 * (prop_full.mean - prop_sparse.mean))
ch.glue("drop_sia", 100 * (sia_full.mean - sia_sparse.mean))
pd.DataFrame(det_rows).set_index("model").rename(columns={"level0": "level 0 (sparsest)", "level01": "levels 0-1"})

# %% [markdown]
# From full to level-0 sketches, the proposed model loses {glue:text}`c05_drop_prop:.1f` points
# of Acc@10 and B-Siamese {glue:text}`c05_drop_sia:.1f`; B-Siamese's loss minus the proposed
# model's is {glue:text}`c05_robust_text` (relative to B-Siamese's full-sketch margin over its
# floors; the sparse arms need no floor, their fall is the point).
#
# ## The style-gap curve
#
# The heads and the baseline are trained once on the seen drawers and tested on the unseen
# drawers of each gap (the seen drawers, objects and photos do not change with the gap,
# chapter 2), beside chapter 4's control trained on the unseen drawers' own style
# ({numref}`c05-fig-gap-curve`).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Acc@1 within category (validation-selected) on the unseen drawers as the style gap grows, for each row of Table 1 (95% intervals).", "name": "c05-fig-gap-curve"}, "image": {"alt": "Line plot of accuracy against the style gap, one line per hierarchy variant and the baseline."}}
curve = []
for gap in bench.p["STYLE_GAPS"]:
    tn, tf = R.hierarchy_views(bench, p, gap).test_unseen, R.test_sample(p, bench.features(gap).test_unseen)
    n_ctrl = bench.p["N_CONTROL_SEEDS"] if gap == bench.gap else bench.p["N_CURVE_SEEDS"]
    arms = {"control, trained on their style": [evaluate(m, tf) for m in bench.control(gap).methods(range(SEED, SEED + n_ctrl))]}
    for v in ("triplet_sn", "proposed", "b_siamese"):
        arms[NAMES[v]] = ev[v]["test_unseen"] if gap == bench.gap else [evaluate(m, tf if v == "triplet_sn" else tn) for m in models[v]]
    for who, e in arms.items():
        iv = C.interval_of(e, "acc_at_1")
        curve.append({"gap": gap, "who": who, "estimate": iv.estimate, "lo": iv.lo, "hi": iv.hi})
        key = {v_: mid(k) for k, v_ in NAMES.items()}.get(who, "control")
        if gap != bench.gap or key == "control":
            ch.scope("style_world", T.PROTOCOL_VAL, C.setting(style_gap=gap)).interval(e, "acc_at_1", key, "test_unseen")
curve = pd.DataFrame(curve)
C.gap_curve_figure(curve, images["test_unseen"].chance(1), "unseen drawers: heads, Triplet-SN and the control (95% CI)",
                   ylabel="Acc@1 within category (val-selected)")
at = curve.set_index(["who", "gap"])["estimate"]
ch.glue("gap_max", max(bench.p["STYLE_GAPS"]))
ch.glue("curve_prop_max", at[("Proposed", max(bench.p["STYLE_GAPS"]))])
ch.glue("curve_base_max", at[(NAMES["triplet_sn"], max(bench.p["STYLE_GAPS"]))])

# %% [markdown]
# At gap {glue:text}`c05_gap_max` the proposed model ranks {glue:text}`c05_curve_prop_max:.1%` of
# the unseen drawers' photos first, Triplet-SN {glue:text}`c05_curve_base_max:.1%`.
#
# ## One pair, merged
#
# What the proposed head does with one seen drawer's sketch and its own photo: the first
# level's attention of each stroke over the photo's regions, and the order in which each branch
# merged its nodes (photo node 0 is the whole photo; the merged node keeps the first slot).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "A sketch's stroke boxes and its photo's proposal boxes (the nodes), and the co-attention between them."}, "image": {"alt": "A sketch and a photo with coloured boxes around strokes and regions, and a matrix of attention weights between the two sets of boxes."}}
qi = int(np.argmax([len(s) for s in im.strokes[:16]]))
gi = int(im.target[qi])
tr = H.merge_trace(models["proposed"][0], nodes.test_seen.queries[qi], nodes.test_seen.gallery[gi], im.strokes[qi])
k_max = HIER_OPTIONS["max_nodes"]
C.nodes_figure(im.queries[qi, 0], im.gallery[gi], H.sketch_node_boxes(im.queries[qi:qi + 1], [im.strokes[qi]], k_max, bench.p["LINE_WIDTH"] / 2)[0],
               H.photo_node_boxes(im.gallery[gi:gi + 1], k_max, strategy=PROPOSALS)[0], tr["attention"])
C.prose("Merge order (slot a absorbs slot b), sketch: " + ", ".join(f"{a}←{b}" for a, b in tr["sketch_merges"])
        + "; photo: " + ", ".join(f"{a}←{b}" for a, b in tr["photo_merges"]) + ".")

# %% [markdown]
# ## Real sketches
#
# On each of chapter 4's real sets with paired photos, the heads of B-Siamese,
# B-Localised-Coattn and the proposed model train on the set's nodes (the set's own principal
# directions); Triplet-SN is chapter 4's run on the same set, from the store. A sketch's nodes are
# its strokes where the set has them; PACS-Sketchy and shoes304 are images without strokes, so
# each **connected piece of ink** stands in for a stroke (largest first; touching strokes make one
# piece), a proxy stated as such. Where strokes exist, the first-strokes study redraws the test
# sketches from their first strokes (drawing order runs coarse to fine). Intervals are over seeds
# and test photos (instances).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Real sketches, on each set with paired photos. Top: Acc@1 and Acc@10 (%) of chapter 4's Triplet-SN, B-Siamese, B-Localised-Coattn and the proposed model, beside pixel matching and chance; below: the paper's two orderings as paired differences in Acc@1 (points, with the outcome); where a set has strokes, a last table gives Acc@10 (%) by the fraction of strokes kept. Intervals are 95% over seeds and test photos.", "classes": "sbir-table"}}
real_rows, real_claims, first_rows = [], [], []
r_seeds = list(range(SEED, SEED + HIER_SEEDS))
for name in bench.p["REAL_DATASETS"]:
    if not available(name):
        C.absent(f"the Table 1 rows and the first-strokes study on {name}", name)
        continue
    try:
        rv = bench.real_views(name)
    except DataError as err:  # a set without its photos (ChairV2 here) cannot be searched for photos
        C.note(f"**{name}: not run**, the hierarchy needs paired photos. {err}")
        continue
    scope = ch.scope(name, T.PROTOCOL_VAL, columns=("instance",))
    tsn = bench.real(name, rv).methods(bench.real_seeds)  # chapter 4's run on this set, from the store
    r_ev = {"triplet_sn": [evaluate(m, rv["test"]) for m in tsn]}
    r_floor, r_models = {"pixel_nn": [evaluate(bench.pixel(), rv["images"]["test"])]}, {}
    for v in REAL_VARIANTS:
        run, rn = R.hierarchy_real(bench, p, rv, v)
        r_models[v] = run.methods(r_seeds)
        r_ev[v] = [evaluate(m, rn["test"]) for m in r_models[v]]
        seed_everything(SEED)
        r_floor[f"{mid(v)}_untrained"] = [evaluate(run.spec.build().eval(), rn["test"])]
    te = rv["images"]["test"]
    r_arm = lambda v, m: scope.arm(r_ev[v], m, r_seeds, NAMES[v], {"chance": te.chance(int(m[7:])), "pixel NN": C.arm(
        r_floor["pixel_nn"], m, columns=("instance",)), "untrained head": C.arm(r_floor[f"{mid(v)}_untrained"], m, columns=("instance",))})
    for k in (1, 10):
        metric = f"acc_at_{k}"
        for n, e in r_floor.items():
            scope.value(n, metric, e[0].metrics[metric], protocol="")
        scope.value("chance", metric, te.chance(k), protocol="")
        row = {"dataset": name, "metric": f"Acc@{k}", "pixel NN": f"{100 * r_floor['pixel_nn'][0].metrics[metric]:.1f} %",
               "chance": f"{100 * te.chance(k):.1f} %"}
        for v, evs in r_ev.items():
            row[NAMES[v]] = scope.interval(evs, metric, mid(v)).text
            scope.per_seed(evs, metric, mid(v), bench.real_seeds if v == "triplet_sn" else r_seeds)
        real_rows.append(row)
    for claim, a, b in (("hierarchy_beats_coattn", "proposed", "b_localised_coattn"), ("coattn_beats_siamese", "b_localised_coattn", "b_siamese")):
        if a in r_ev and b in r_ev:
            e = scope.claim(claim, [(r_arm(a, "acc_at_1"), 1), (r_arm(b, "acc_at_1"), -1)], r_arm(b, "acc_at_1"), f"{mid(a)} - {mid(b)}")
            real_claims.append({"dataset": name, "claim": f"{NAMES[a]} > {NAMES[b]}", "Acc@1 (deciding)": e.text(markdown=False)})
    if te.strokes is not None:  # the first strokes of each test sketch, drawn in order
        for frac in FIRST_STROKES:
            fv = te if frac == 1 else redraw(te, [SK.truncate(st, frac) for st in te.strokes], bench.p["LINE_WIDTH"])
            fn, ff = R.node_view(bench, p, fv, rv["projection"]), bench.read(fv, rv["projection"])
            for v in ("triplet_sn", *(x for x in ("b_siamese", "proposed") if x in r_models)):
                ms = tsn if v == "triplet_sn" else r_models[v]
                evs = [evaluate(m, ff if v == "triplet_sn" else fn) for m in ms]
                first_rows.append({"dataset": name, "strokes kept": f"{frac:.0%}", "model": NAMES[v],
                                   "Acc@10": C.fmt(C.interval_of(evs, "acc_at_10", columns=("instance",)))})
                if frac < 1:
                    ch.scope(name, T.PROTOCOL_VAL, C.setting(strokes=frac)).per_seed(
                        evs, "acc_at_10", mid(v), bench.real_seeds if v == "triplet_sn" else r_seeds)
for frame, index in ((real_rows, ["dataset", "metric"]), (real_claims, ["dataset", "claim"])):
    if frame:
        display(pd.DataFrame(frame).set_index(index))
if first_rows:
    display(pd.DataFrame(first_rows).pivot(index=["dataset", "model"], columns="strokes kept", values="Acc@10"))
elif real_rows:
    C.prose("No set found here has both strokes and paired photos, so the first-strokes study on real sketches did not "
            "run; it runs on sets that have both (e.g. ShoeV2 or ChairV2 with their photos).")

# %% [markdown]
# ## Beside the paper
#
# The paper's Table 1 on ChairV2, ShoeV2 and SWIRE (VGG16 at 256 pixels, trained end to end)
# beside this chapter's rows on the style world ({numref}`c05-tbl-paper`;
# `paper_runs/reference/hierarchy.csv`). The numbers are not comparable in level; what can be
# compared is the order of the rows.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The paper's Table 1 Acc@1 (%) on ChairV2, ShoeV2 and SWIRE (published, VGG16 trained end to end), beside this chapter's Acc@1 (%) on the style world's seen drawers (mean over seeds).", "classes": "sbir-table", "name": "c05-tbl-paper"}}
ref = load_reference("hierarchy")
ref = ref[ref["method"].isin(NAMES.values()) & (ref["metric"] == "acc_at_1")]
pub = ref.pivot_table(index="method", columns="dataset", values="value", aggfunc="first")
pub["this book: style world, seen (%)"] = [100 * np.mean([e.metrics["acc_at_1"] for e in ev[v]["test_seen"]]) for v in
                                           [next(v for v, n in NAMES.items() if n == m) for m in pub.index]]
pub.reindex([n for n in NAMES.values() if n in pub.index]).round(1).rename_axis("Acc@1 (%)")

# %% [markdown]
# ## The design's power
#
# Whether this design could have decided its style-world claims at the paper's size, with this run as
# the pilot: its intervals' width split into the training seeds' part and the test sample's, and the
# seeds each claim row would need (chapter 10 lists every row, {numref}`c10-tbl-power`).

# %% tags=["hide-input"]
C.prose(ch.design_text())

# %% [markdown]
# ## Verdict
#
# The orderings of the paper on the style world at the ci scale: hierarchy over co-attention
# **{glue:text}`c05_claim_hierarchy_beats_coattn`**, co-attention over B-Siamese
# **{glue:text}`c05_claim_coattn_beats_siamese`**, less loss on sparse sketches
# **{glue:text}`c05_claim_coarse`**. Read them with what the ci scale is: heads on a frozen
# trunk's 4 × 4 map, whose stroke regions are a few cells at most, trained
# {glue:text}`c05_steps` steps; which rows clear their floors is in the `learnt_*` rows of Table 1
# (chapter 10 lists them). On the real sets with paired photos found here the same rule gives
# each set its own outcome (*Real sketches*).

# %% tags=["remove-cell"]
ch.glue("steps", HIER_STEPS)
ch.save(flag_floors=True)  # with learnt_<metric> rows: which scores clear their floor (Chapter.flag_floors)
