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
# # Cross-modal hierarchy (BMVC 2020)
#
# Sain et al. (*Cross-Modal Hierarchical Modelling for Fine-Grained Sketch Based Image
# Retrieval*, BMVC 2020; METHODS.md §B) read a sketch as a set of regions (one box per stroke)
# and a photo as a set of regions (selective-search proposals, the whole photo first). Region
# features come from the backbone's feature map by RoI align and max pooling. For one
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
# **Fixed from the public code** (METHODS.md §B): its HEAD never runs the hierarchy (a later
# commit max-pools after one co-attention step; that is the row *code HEAD* here, with the code's
# element-wise gate); its boxes are neither rescaled nor flipped with the images (here they
# follow every resize and flip, `tests/test_hierarchy.py`); and its test loop scores every
# sketch against every photo (about 136k head passes on ShoeV2), not only the photos the
# sketch is ranked among.
#
# **What the ci scale simplifies.** The paper trains the backbone and the head end to end
# (`END_TO_END = True`, the paper configuration). At the ci scale, on two CPU cores, the backbone
# is chapter 4's trained Triplet-SN encoder, loaded from the store of
# trained models and **frozen**: its first two blocks give an 8 × 8 map, each node's RoI-aligned
# 8 × 8 crop runs through its last two blocks and its head, so a node is the encoder's
# embedding of its region. Every node is computed once per image, and only the head of each
# Table 1 row learns (node projection, co-attention, fusion), on the cached nodes. The whole
# sketch is added as its first node, as the whole photo leads the photo's proposals. Nodes are
# capped at {glue:text}`c05_max_nodes` per image (the whole image and the first strokes or
# proposals; later strokes join the last stroke's box), and the test views are a fixed random
# sample of {glue:text}`c05_n_test` queries each.

# %% tags=["remove-cell"]
from sbir_core.chapter import setup

setup(seed=0)

# %% tags=["parameters"]
SCALE = "ci"  # which results folder to write: ci | paper
SEED = 0  # first seed of the heads (and chapter 4's baseline run whose encoder they all sit on)
N_SEEDS = 2  # training seeds of each head a claim rests on (two or more: its interval holds training chance)
N_BASE_SEEDS = 5  # Triplet-SN seeds loaded from chapter 4's runs (the baseline rows)
N_CONTROL_SEEDS = 3  # chapter 4's control seeds at STYLE_GAP
N_CURVE_SEEDS = 2  # chapter 4's control seeds at the other gaps
WORLD = {}  # style-world options beyond the defaults (as chapter 4)
STYLE_GAP = 3.0  # the unseen drawers' style gap of the headline numbers
STYLE_GAPS = [0.0, 3.0, 6.0]  # gaps of the style-gap curve (chapter 4's)
IMAGE_SIZE = 32  # input side in pixels (chapter 4)
LINE_WIDTH = 1.5  # sketch line width in pixels (chapter 4)
ENCODER = "cnn"  # chapter 4's encoder
ENCODER_OPTIONS = {"width": 16, "depth": 4, "embed_dim": 64, "double_conv": False}  # chapter 4's encoder options
MARGIN = 0.2  # triplet margin of the baseline and of the hierarchy's squared triplet
BASE_STEPS = 800  # chapter 4's steps (so that its runs load from the store)
BASE_BATCH_SIZE = 32  # chapter 4's batch
BASE_LR = 0.0005  # chapter 4's learning rate
BASE_EVAL_EVERY = 200  # chapter 4's evaluation interval
VARIANTS = [
    "b_siamese",
    "b_gated_siamese",
    "b_localised_coattn",
    "b_graph_hierarchy",
    "proposed",
    "code_head",
]  # Table 1 rows
END_TO_END = False  # False: frozen chapter-4 encoder, heads on cached nodes (ci); True: train everything (paper)
HIER_OPTIONS = {"split": 2, "roi_size": 8, "d": 64, "d_h": 32, "max_nodes": 6}  # the frozen design's options
E2E_OPTIONS = {"width": 16, "depth": 2, "d": 64, "d_h": 32, "max_nodes": 16, "roi_size": 3}  # END_TO_END model options
STEPS = 100  # optimiser steps per variant
BATCH_SIZE = 32  # triplets per step
LR = 0.0003  # Adam learning rate of the heads
EVAL_EVERY = 50  # validation every N steps (the val-selected state is kept)
N_TEST = 256  # queries sampled from each test view (0: all of them)
SHORTLIST_M = [3, 5, 10, 20]  # shortlist sizes of two-stage retrieval
RERANKERS = ["proposed", "b_localised_coattn"]  # variants that rerank the Triplet-SN shortlist
CURVE_VARIANTS = ["proposed"]  # variants on the style-gap curve
REAL_DATASETS = ["pacs_sketchy", "shoes304", "chairv2"]  # real sets tried (a set needs paired photos)
REAL_VARIANTS = ["b_siamese", "b_localised_coattn", "proposed"]  # Table 1 rows on real sets
N_BASE_REAL_SEEDS = 3  # chapter 4's Triplet-SN seeds on each real set (from the store)
BASE_REAL_STEPS = 1000  # chapter 4's steps on real sets (so that its runs load from the store)
BASE_REAL_EVAL_EVERY = 100  # chapter 4's evaluation interval on real sets
FIRST_STROKES = [0.25, 0.5, 1.0]  # fractions of strokes kept, in drawing order (sets with strokes)
PROGRESS = False  # progress bars (END_TO_END training)
DEVICE = "cpu"  # where END_TO_END training runs
BUDGET_S = 360  # this chapter's time budget at this scale on 2 CPU cores, seconds (python -m sbir_core.bench book)

# %% tags=["hide-input"]
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from sbir_core import benchmark as B
from sbir_core import train as T
from sbir_core.chapter import Chapter, arm, fmt, gap_curve_figure, interval_of, paired_of, prose, setting
from sbir_core.data.synthetic import detail_subset
from sbir_core.evaluation import evaluate
from sbir_core.models import hierarchy as H
from sbir_core.models.base import MethodSpec, build_method

t_start = time.perf_counter()
torch.set_num_threads(1)  # the head's many small products run faster on one thread than on two shared ones
ch = Chapter("05_hierarchy", SCALE, globals())
tag = setting(style_gap=STYLE_GAP)
base_spec = B.triplet_spec(ENCODER, ENCODER_OPTIONS, MARGIN)
base_config = T.TrainConfig(
    steps=BASE_STEPS,
    batch_size=BASE_BATCH_SIZE,
    lr=BASE_LR,
    eval_every=BASE_EVAL_EVERY,
    ks=(1, 10),
    progress=PROGRESS,
    device=DEVICE,
)
views = B.style_views(B.world(STYLE_GAP, **WORLD), IMAGE_SIZE, LINE_WIDTH)
base_runs = B.baseline(views, base_spec, base_config, range(SEED, SEED + N_BASE_SEEDS))
base_models = base_runs.methods(base_spec)
encoder = base_models[0].encoder  # seed SEED's val-selected Triplet-SN


def sample(view, n=N_TEST, seed=SEED):
    """A fixed random sample of a view's queries (the same for every method)."""
    if not n or n >= len(view):
        return view
    keep = np.zeros(len(view), bool)
    keep[np.random.default_rng(seed).choice(len(view), n, replace=False)] = True
    return view.subset(keep)


tests = {name: sample(v) for name, v in views.tests.items()}
NAMES = {
    "b_siamese": "B-Siamese",
    "b_gated_siamese": "B-Gated-Siamese",
    "b_localised_coattn": "B-Localised-Coattn",
    "b_graph_hierarchy": "B-Graph-Hierarchy",
    "proposed": "Proposed",
    "code_head": "code HEAD",
}
KEY_OF = {"Triplet-SN": "triplet_sn", **{n: f"hierarchy_{v}" for v, n in NAMES.items()}}  # row label -> method column


_nodes = {}


def nodes_of(model, view):
    """The frozen design's nodes of a view, computed once: every row sits on the same frozen encoder with
    the same node options, so one row's nodes are every row's (None end to end: each model embeds)."""
    if END_TO_END:
        return None
    if id(view) not in _nodes:
        _nodes[id(view)] = (view, H.cache_nodes(model, view))  # the view is kept so that its id stays unique
    return _nodes[id(view)][1]


# %% [markdown]
# ## Training the heads
#
# Each Table 1 row is trained on the seen drawers' training sketches (negatives: the photo of
# a random other training sketch, as for the baseline), validated on their validation sketches,
# and the state with the best validation Acc@1 is kept: {glue:text}`c05_n_seeds` seeds of each head
# a claim rests on (B-Siamese, B-Localised-Coattn, the proposed model) and one of the other rows,
# all on the same frozen encoder (its seed {glue:text}`c05_seed`), so that the claims' intervals hold
# the heads' training chance.

# %% tags=["hide-input"]
seeds = list(range(SEED, SEED + N_SEEDS))
CLAIMED = ("b_siamese", "b_localised_coattn", "proposed")  # heads a claim rests on: every seed, checked as intervals
seeds_of = {v: seeds if v in CLAIMED else seeds[:1] for v in VARIANTS}
seed_models, hists, t_train = {}, {}, {}
first = H.on_encoder(encoder, "b_siamese", **HIER_OPTIONS)
train_nodes, val_nodes = nodes_of(first, views.train), nodes_of(first, views.val)
for v in VARIANTS:
    t0 = time.perf_counter()
    if END_TO_END:
        spec = MethodSpec("hierarchy", {"variant": v, "margin": MARGIN, **E2E_OPTIONS})
        cfg = base_config.replace(steps=STEPS, batch_size=BATCH_SIZE, lr=LR, eval_every=EVAL_EVERY)
        run = T.train_seeds(spec, views.train, views.val, None, cfg, seeds_of[v])
        seed_models[v] = [m.eval() for m in run.methods(spec)]
        hists[v] = run.histories().assign(variant=NAMES[v])
    else:
        seed_models[v], parts = [], []
        for s_ in seeds_of[v]:
            torch.manual_seed(s_)
            m_ = H.on_encoder(encoder, v, margin=MARGIN, **HIER_OPTIONS)
            parts.append(
                H.train_heads(
                    m_,
                    views.train,
                    train_nodes,
                    views.val,
                    val_nodes,
                    steps=STEPS,
                    batch_size=BATCH_SIZE,
                    lr=LR,
                    seed=s_,
                    eval_every=EVAL_EVERY,
                ).assign(seed=s_)
            )
            seed_models[v].append(m_)
        hists[v] = pd.concat(parts, ignore_index=True).assign(variant=NAMES[v])
    t_train[v] = time.perf_counter() - t0
models = {v: ms[0] for v, ms in seed_models.items()}  # the first seed's heads: figures and two-stage retrieval
hist = pd.concat(hists.values(), ignore_index=True)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for name, g in hist.groupby("variant", sort=False):
    g = g.groupby("step")[["loss", "val/acc_at_10"]].mean()  # mean over seeds
    axes[0].plot(g.index, g["loss"], "o-", label=name)
    axes[1].plot(g.index, g["val/acc_at_10"], "o-", label=name)
axes[1].axhline(views.val.chance(10), color="grey", ls=":", lw=1, label="chance")
axes[0].set(xlabel="step", ylabel="triplet loss (mean since last eval)", title="training the heads (mean over seeds)")
axes[1].set(xlabel="step", ylabel="val Acc@10 within category", title="validation, seen drawers")
axes[1].legend(fontsize=7)
fig.tight_layout()
plt.show()
ch.glue("steps", STEPS)
ch.glue("n_seeds", N_SEEDS)
ch.glue("seed", SEED)

# %% [markdown]
# ## Table 1 on the style world
#
# Within-category Acc@1 and Acc@10 of every row on the same sampled test queries, seen and
# unseen drawers (`style_gap` = {glue:text}`c05_style_gap`), beside chapter 4's Triplet-SN
# ({glue:text}`c05_n_base` seeds, from the store), chance and the floors a head must clear to be
# evidence: pixel matching (no parameters) and each head untrained on the same frozen encoder.
# Intervals are 95% over the heads' seeds and the test sample (objects and drawers). The recorded
# checks follow one rule fixed before the results: Triplet-SN's Acc@10 and the rows the claims
# rest on (B-Siamese, B-Localised-Coattn, the proposed model) are recorded as intervals; every
# other accuracy per seed, each Table 1 row also through its paired difference from the proposed
# model.

# %% tags=["hide-input"]
evals = {
    v: {split: [evaluate(m, view, features=nodes_of(m, view)) for m in seed_models[v]] for split, view in tests.items()}
    for v in VARIANTS
}
base_evals = {split: [evaluate(m, view) for m in base_models] for split, view in tests.items()}
pixel = build_method("pixel_nn", size=IMAGE_SIZE)  # no parameters: what pixels alone find (chapter 4)
pixel_evals = {split: [evaluate(pixel, view)] for split, view in tests.items()}
untrained_evals = {}
for v in CLAIMED:  # each claimed head untrained (seed SEED) on the same frozen encoder
    torch.manual_seed(SEED)
    u = H.on_encoder(encoder, v, margin=MARGIN, **HIER_OPTIONS).eval()
    untrained_evals[v] = {split: [evaluate(u, view, features=nodes_of(u, view))] for split, view in tests.items()}
rows = []
for split, view in tests.items():
    for k in (1, 10):
        metric = f"acc_at_{k}"
        ch.add("style_world", "chance", metric, view.chance(k), "", tag, split)
        ch.add("style_world", "category_oracle", metric, view.category_oracle(k), "", tag, split)
        if k == 10:  # the rule: Triplet-SN's Acc@10 is an interval row; everything else per seed
            ch.add_interval(
                interval_of(base_evals[split], metric), "style_world", "triplet_sn", metric, T.PROTOCOL_VAL, tag, split
            )
        else:
            for s_, ev in zip(range(SEED, SEED + N_BASE_SEEDS), base_evals[split]):
                ch.add("style_world", "triplet_sn", metric, ev.metrics[metric], T.PROTOCOL_VAL, tag, split, s_)
        ch.add("style_world", "pixel_nn", metric, pixel_evals[split][0].metrics[metric], "", tag, split)
        for v in VARIANTS:
            if v in CLAIMED:
                ch.add_interval(
                    interval_of(evals[v][split], metric),
                    "style_world",
                    f"hierarchy_{v}",
                    metric,
                    T.PROTOCOL_VAL,
                    tag,
                    split,
                )
                ch.add(
                    "style_world",
                    f"hierarchy_{v}_untrained",
                    metric,
                    untrained_evals[v][split][0].metrics[metric],
                    "",
                    tag,
                    split,
                )
            for s_, ev in zip(seeds_of[v], evals[v][split]):
                ch.add("style_world", f"hierarchy_{v}", metric, ev.metrics[metric], T.PROTOCOL_VAL, tag, split, s_)
            if v != "proposed":
                d = paired_of(evals["proposed"][split], evals[v][split], metric)
                ch.add_interval(
                    d,
                    "style_world",
                    f"hierarchy_proposed - hierarchy_{v}",
                    f"diff_{metric}",
                    T.PROTOCOL_VAL,
                    tag,
                    split,
                )
table = {}
for who, ev in (
    [(NAMES[v], evals[v]) for v in VARIANTS]
    + [("Triplet-SN (chapter 4)", base_evals)]
    + [("pixel NN (no training)", pixel_evals)]
    + [(f"{NAMES[v]}, untrained head", untrained_evals[v]) for v in CLAIMED]
):
    table[who] = {f"{s.split('_')[1]} Acc@{k}": fmt(interval_of(ev[s], f"acc_at_{k}")) for s in tests for k in (1, 10)}
table["chance = category oracle"] = {
    f"{s.split('_')[1]} Acc@{k}": f"{100 * tests[s].chance(k):.1f} %" for s in tests for k in (1, 10)
}
ch.glue("style_gap", STYLE_GAP)
ch.glue("n_base", N_BASE_SEEDS)
ch.glue("n_test", len(tests["test_seen"]))
ch.glue("max_nodes", int(HIER_OPTIONS["max_nodes"] if not END_TO_END else E2E_OPTIONS["max_nodes"]))
pd.DataFrame(table).T.rename_axis("row")

# %% tags=["hide-input"]
# which numbers reach down to chance: said from the intervals, not typed
near, above = [], []
for v in VARIANTS:
    for split in tests:
        iv = interval_of(evals[v][split], "acc_at_10")
        floor = max(
            tests[split].chance(10),
            pixel_evals[split][0].metrics["acc_at_10"],
            *([untrained_evals[v][split][0].metrics["acc_at_10"]] if v in CLAIMED else []),
        )
        (near if iv.lo <= floor else above).append(f"{NAMES[v]} ({split.split('_')[1]})")
prose(
    "Acc@10 intervals that reach down to a floor (chance, pixel matching, or the head untrained): "
    + (", ".join(near) if near else "none")
    + ". Above every floor: "
    + (", ".join(above) if above else "none")
    + "."
)

# %% [markdown]
# ## The paper's orderings
#
# The paper's two orderings of Table 1, as paired differences on the same queries (seen
# drawers, Acc@1 as in the paper's table): the full hierarchy against co-attention alone, and
# co-attention against B-Siamese.


# %% tags=["hide-input"]
def head_arm(v, split, metric, evs=None, view=None, with_floors=True):
    """A head's arm of a claim: its seeds' evaluations, with the floors it must clear."""
    k = int(metric.rsplit("_", 1)[1])
    view = tests[split] if view is None else view
    floors = (
        {
            "chance": view.chance(k),
            "pixel NN": arm(pixel_evals[split], metric),
            "untrained head": arm(untrained_evals[v][split], metric),
        }
        if with_floors
        else None
    )
    return arm(evals[v][split] if evs is None else evs, metric, seeds, name=NAMES[v], floors=floors)


claims = []
for claim, a, b in (
    ("hierarchy_beats_coattn", "proposed", "b_localised_coattn"),
    ("coattn_beats_siamese", "b_localised_coattn", "b_siamese"),
):
    arms1 = {v: head_arm(v, "test_seen", "acc_at_1") for v in (a, b)}
    arms10 = {v: head_arm(v, "test_seen", "acc_at_10") for v in (a, b)}
    ev = ch.claim(
        claim,
        [(arms1[a], 1), (arms1[b], -1)],
        arms1[b],
        "style_world",
        f"hierarchy_{a} - hierarchy_{b}",
        "test_seen",
        T.PROTOCOL_VAL,
        other={"acc_at_10": [(arms10[a], 1), (arms10[b], -1)]},
    )
    ch.glue(f"claim_{claim}", ev.outcome)
    claims.append(
        {
            "claim": f"{NAMES[a]} > {NAMES[b]}",
            "Acc@1 (deciding)": ev.text(),
            "Acc@10 (beside)": fmt(ev.other["acc_at_10"], signed=True) + " points",
        }
    )
pd.DataFrame(claims).set_index("claim")

# %% [markdown]
# *Hierarchy beats co-attention*: **{glue:text}`c05_claim_hierarchy_beats_coattn`**;
# *co-attention beats B-Siamese*: **{glue:text}`c05_claim_coattn_beats_siamese`**. Each outcome is
# computed from the interval of the relative effect (the difference over the weaker head's margin
# above its floor) and the paper's own relative effect (Table 1 on ShoeV2, the smaller of its two
# sets): *not testable* when a head's interval reaches a floor, *reproduced* or *contradicted* when
# the interval excludes zero, *smaller than claimed* when it holds zero and excludes the paper's
# effect, *undecided* when it holds both (chapter 10 gathers every claim of the book). Acc@1 decides,
# as in the paper's table; Acc@10 is shown beside it.
#
# ## Two-stage retrieval
#
# Scoring every (sketch, photo) pair costs one head pass per pair. The two-stage search lets
# Triplet-SN (one embedding per image, compared by distance) shortlist the M nearest photos of
# each query's gallery, and the hierarchy reranks only those; a true photo outside the
# shortlist keeps the baseline's rank (beyond M). Below: head passes and accuracy of both ways
# on the seen drawers' sampled queries, and the paired difference two-stage minus exhaustive.

# %% tags=["hide-input"]
view = tests["test_seen"]
two_rows, curve2 = [], []
for v in RERANKERS:
    feats = nodes_of(models[v], view)
    full = evals[v]["test_seen"][0]  # the first seed's head
    for m_ in [None] + list(SHORTLIST_M):
        ev = full if m_ is None else evaluate(models[v], view, shortlist=(base_models[0], m_), features=feats)
        passes = ev.pair_evaluations
        ratio = full.pair_evaluations / passes
        row = {
            "reranker": NAMES[v],
            "M": "all (exhaustive)" if m_ is None else m_,
            "head passes": passes,
            "fewer passes": f"{ratio:.1f}x",
        }
        mtag = setting(style_gap=STYLE_GAP, m=0 if m_ is None else m_)
        ch.add("style_world", f"hierarchy_{v}", "head_passes", passes, "", mtag, "test_seen")
        for k in (1, 10):
            iv = interval_of([ev], f"acc_at_{k}")
            row[f"Acc@{k}"] = fmt(iv)
            ch.add("style_world", f"hierarchy_{v}", f"acc_at_{k}", iv.estimate, T.PROTOCOL_VAL, mtag, "test_seen", SEED)
            if m_ is not None:
                d = paired_of([ev], [full], f"acc_at_{k}")
                row[f"two-stage - exhaustive, Acc@{k}"] = fmt(d, signed=True)
                ch.add_interval(
                    d,
                    "style_world",
                    f"hierarchy_{v} two_stage - exhaustive",
                    f"diff_acc_at_{k}",
                    T.PROTOCOL_VAL,
                    mtag,
                    "test_seen",
                )
                if k == 10:
                    curve2.append({"reranker": NAMES[v], "M": m_, "ratio": ratio, "d": d, "acc10": iv})
        two_rows.append(row)
two = pd.DataFrame(two_rows).set_index(["reranker", "M"]).fillna("")
# the goal: Acc@10 equal to exhaustive within its interval with at least 10x fewer head passes
ok = [c for c in curve2 if c["ratio"] >= 10 and c["d"].lo <= 0 <= c["d"].hi]
ch.glue("exhaustive_passes", int(evals["proposed"]["test_seen"][0].pair_evaluations))
best = max(ok, key=lambda c: c["ratio"]) if ok else None
ch.add(
    "style_world",
    "hierarchy_proposed",
    "two_stage_goal_met",
    float(any(c["reranker"] == "Proposed" for c in ok)),
    "",
    tag,
    "test_seen",
)
display(two)
fig, ax = plt.subplots(figsize=(6.5, 3.4))
for name, grp in pd.DataFrame(curve2).groupby("reranker", sort=False):
    ax.errorbar(
        grp["ratio"],
        [c.estimate for c in grp["acc10"]],
        yerr=[[c.estimate - c.lo for c in grp["acc10"]], [c.hi - c.estimate for c in grp["acc10"]]],
        fmt="o-",
        capsize=3,
        label=f"{name}, two-stage",
    )
    full_iv = interval_of(evals[[k for k, n in NAMES.items() if n == name][0]]["test_seen"][:1], "acc_at_10")
    ax.axhspan(full_iv.lo, full_iv.hi, alpha=0.12)
    ax.axhline(full_iv.estimate, ls="--", lw=1, label=f"{name}, exhaustive")
ax.axvline(10, color="grey", ls=":", lw=1)
ax.set(
    xscale="log",
    xlabel="head passes saved (exhaustive / two-stage)",
    ylabel="Acc@10, seen drawers",
    title="two-stage retrieval: Triplet-SN shortlist, hierarchy rerank",
)
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()
prose(
    "At every shortlist of M ≤ 10 the two-stage Acc@10 is the baseline's own: a true photo in the shortlist "
    "ranks ≤ M ≤ 10, one outside it keeps the baseline's rank. "
    + (
        f"The goal (Acc@10 equal to exhaustive within its interval, with ≥ 10× fewer head passes) is met by "
        f"{best['reranker']} at M = {best['M']} ({best['ratio']:.1f}× fewer passes, difference "
        f"{fmt(best['d'], signed=True)} points)"
        + ("" if any(c["reranker"] == "Proposed" for c in ok) else "; not by the proposed model")
        + "."
        if ok
        else "No reranker meets the goal (Acc@10 equal to exhaustive within its interval with ≥ 10× fewer "
        "head passes) at these M."
    )
    + " Where the exhaustive hierarchy ranks worse than the baseline, the shortlist *raises* Acc@10: the baseline "
    "does the finding, and the reranker can only reorder what it found."
)

# %% [markdown]
# ## Coarse sketches
#
# Every stroke of the style world carries a detail level (chapter 2): 0 for the outline, 1 and
# 2 for finer parts. The same test queries are redrawn from their level-0 strokes only (the
# world's *coarse*), from levels 0–1 (*coarse++*) and in full; the paper's slides show its
# *coarse++* below its *coarse*, so its coarse++ is the sparser sketch, which is our level 0.
# The claim: the proposed model loses less Acc@10 from full to the sparsest sketches than
# B-Siamese.

# %% tags=["hide-input"]
levels_by_id = views.data.info["detail_levels_by_id"]
view = tests["test_seen"]
ids = view.table["sketch_id"].tolist()
detail = {}
DETAIL_KEY = {"level 0 (sparsest)": "level0", "levels 0-1": "level01"}
for lv, label in ((0, "level 0 (sparsest)"), (1, "levels 0-1"), (2, "full")):
    dv = (
        view
        if lv == 2
        else H.restroke(view, [detail_subset(s, levels_by_id[i], lv) for s, i in zip(view.strokes, ids)], LINE_WIDTH)
    )
    detail[label] = {"Triplet-SN": [evaluate(m, dv) for m in base_models]}
    for v in ("b_siamese", "proposed"):
        detail[label][NAMES[v]] = (
            evals[v]["test_seen"] if lv == 2 else [evaluate(m, dv, features=nodes_of(m, dv)) for m in seed_models[v]]
        )
det_rows = []
for who in detail["full"]:
    row = {"model": who}
    for label in detail:
        iv = interval_of(detail[label][who], "acc_at_10")
        row[label] = fmt(iv)
        if label != "full":
            for s_, e in zip(seeds if who != "Triplet-SN" else range(SEED, SEED + N_BASE_SEEDS), detail[label][who]):
                ch.add(
                    "style_world",
                    KEY_OF[who],
                    "acc_at_10",
                    e.metrics["acc_at_10"],
                    T.PROTOCOL_VAL,
                    setting(style_gap=STYLE_GAP, detail=DETAIL_KEY[label]),
                    "test_seen",
                    s_,
                )
    det_rows.append(row)

# B-Siamese's drop from full to the sparsest sketches minus the proposed model's, relative to
# B-Siamese's full-sketch margin over its floors (the sparse arms need no floor: their fall is the point)
sparse = "level 0 (sparsest)"
sia_full, prop_full = head_arm("b_siamese", "test_seen", "acc_at_10"), head_arm("proposed", "test_seen", "acc_at_10")
sia_sparse = head_arm("b_siamese", "test_seen", "acc_at_10", detail[sparse]["B-Siamese"], with_floors=False)
prop_sparse = head_arm("proposed", "test_seen", "acc_at_10", detail[sparse]["Proposed"], with_floors=False)
robust = ch.claim(
    "hierarchy_robust_to_coarse",
    [(sia_full, 1), (sia_sparse, -1), (prop_full, -1), (prop_sparse, 1)],
    sia_full,
    "style_world",
    "hierarchy_b_siamese - hierarchy_proposed",
    "test_seen",
    T.PROTOCOL_VAL,
)
ch.glue("claim_coarse", robust.outcome)
ch.glue("robust_text", robust.text())
ch.glue("drop_prop", 100 * (prop_full.mean - prop_sparse.mean))
ch.glue("drop_sia", 100 * (sia_full.mean - sia_sparse.mean))
pd.DataFrame(det_rows).set_index("model")

# %% [markdown]
# From full to level-0 sketches, the proposed model loses {glue:text}`c05_drop_prop:.1f` points
# of Acc@10 and B-Siamese {glue:text}`c05_drop_sia:.1f`; B-Siamese's loss minus the proposed
# model's is {glue:text}`c05_robust_text`. A model whose accuracy is at its floor cannot lose much,
# which is why the outcome is *not testable* when a full-sketch arm reaches its floor.
#
# ## The style-gap curve
#
# The heads and the baseline are trained once on the seen drawers and tested on the unseen
# drawers of each gap (the seen drawers, objects and photos do not change with the gap,
# chapter 2), beside chapter 4's control trained on the unseen drawers' own style.

# %% tags=["hide-input"]
curve = []
for gap in STYLE_GAPS:
    gv = views if gap == STYLE_GAP else B.style_views(B.world(gap, **WORLD), IMAGE_SIZE, LINE_WIDTH)
    tv = tests["test_unseen"] if gap == STYLE_GAP else sample(gv.test_unseen)
    n_ctrl = N_CONTROL_SEEDS if gap == STYLE_GAP else N_CURVE_SEEDS
    ctrl = B.control(gv, base_spec, base_config, range(SEED, SEED + n_ctrl)).methods(base_spec)
    arms = {
        "Triplet-SN": [evaluate(m, tv) for m in base_models] if gap != STYLE_GAP else base_evals["test_unseen"],
        "control, trained on their style": [evaluate(m, tv) for m in ctrl],
    }
    for v in CURVE_VARIANTS:
        arms[NAMES[v]] = (
            evals[v]["test_unseen"]
            if gap == STYLE_GAP
            else [evaluate(m, tv, features=nodes_of(m, tv)) for m in seed_models[v]]
        )
    for who, ev in arms.items():
        iv = interval_of(ev, "acc_at_10")
        curve.append({"gap": gap, "who": who, "estimate": iv.estimate, "lo": iv.lo, "hi": iv.hi})
        key = {"Triplet-SN": "triplet_sn", "control, trained on their style": "control"}.get(who) or KEY_OF[who]
        if gap != STYLE_GAP or key == "control":
            ch.add_interval(iv, "style_world", key, "acc_at_10", T.PROTOCOL_VAL, setting(style_gap=gap), "test_unseen")
curve = pd.DataFrame(curve)
gap_curve_figure(
    curve,
    tests["test_unseen"].chance(10),
    "unseen drawers: the hierarchy's heads, Triplet-SN and the control (95% CI over seeds and test sample)",
)
at = curve.set_index(["who", "gap"])["estimate"]
ch.glue("curve_gap_max", max(STYLE_GAPS))
ch.glue("curve_prop_max", at[("Proposed", max(STYLE_GAPS))] if "proposed" in CURVE_VARIANTS else float("nan"))
ch.glue("curve_base_max", at[("Triplet-SN", max(STYLE_GAPS))])

# %% [markdown]
# At gap {glue:text}`c05_curve_gap_max` the proposed model finds {glue:text}`c05_curve_prop_max:.1%`
# of the unseen drawers' photos in its top ten, Triplet-SN {glue:text}`c05_curve_base_max:.1%`.
#
# ## One pair, merged
#
# What the proposed head does with one seen drawer's sketch and its own photo: the first
# level's attention of each sketch node over the photo's nodes, and the order in which each
# branch merged its nodes (node 0 is the whole image; the merged node keeps the first slot).

# %% tags=["hide-input"]
view = tests["test_seen"]
qi = int(np.argmax([len(s) for s in view.strokes[:16]]))
gi = int(view.target[qi])
m = models["proposed"]
qn = nodes_of(m, view)[0][qi] if not END_TO_END else None
gn = nodes_of(m, view)[1][gi] if not END_TO_END else None
if qn is not None:
    tr = H.merge_trace(m, qn, gn)
    sboxes = m.sketch_boxes([view.strokes[qi]], IMAGE_SIZE)[0]
    pboxes = m.photo_boxes(view.gallery[gi : gi + 1])[0]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 1, 1.3]})
    axes[0].imshow(1 - view.queries[qi, 0].numpy(), cmap="gray", vmin=0, vmax=1)
    axes[1].imshow(np.clip((view.gallery[gi].permute(1, 2, 0).numpy() + 1) / 2, 0, 1))
    for ax, boxes, title in ((axes[0], sboxes, "sketch nodes (strokes)"), (axes[1], pboxes, "photo nodes (proposals)")):
        for j, (x1, y1, x2, y2) in enumerate(boxes):
            ax.add_patch(
                plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, lw=1, color=plt.cm.tab10(j % 10))
            )
            ax.text(x1, y1 + 1.5, str(j), color=plt.cm.tab10(j % 10), fontsize=7)
        ax.set(title=title, xticks=[], yticks=[])
    im = axes[2].imshow(tr["attention"], cmap="viridis", aspect="auto")
    axes[2].set(xlabel="photo node", ylabel="sketch node", title="first-level attention, sketch → photo")
    fig.colorbar(im, ax=axes[2])
    fig.tight_layout()
    plt.show()
    prose(
        "Merge order (slot a absorbs slot b), sketch: "
        + ", ".join(f"{a}←{b}" for a, b in tr["sketch_merges"])
        + "; photo: "
        + ", ".join(f"{a}←{b}" for a, b in tr["photo_merges"])
        + "."
    )

# %% [markdown]
# ## Real sketches
#
# On a real set with paired photos, the same design sits on chapter 4's Triplet-SN trained on
# that set (seed {glue:text}`c05_seed`, from the store), and the heads of B-Siamese,
# B-Localised-Coattn and the proposed model train on its training pairs as above. A sketch's
# nodes are its strokes where the set has them. PACS-Sketchy and shoes304 are images without
# strokes: there each **connected piece of ink** stands in for a stroke (largest first; touching
# strokes make one piece), a proxy stated as such. Where strokes exist, the first-strokes study
# redraws the test sketches from their first strokes (drawing order runs coarse to fine).
# Intervals are over the test photos (instances); the Triplet-SN rows are chapter 4's
# {glue:text}`c05_n_base_real` seeds. The real-set rows use this frozen design at both scales
# (end-to-end training needs strokes, which PACS-Sketchy and shoes304 lack).

# %% tags=["hide-input"]
from sbir_core import strokes as SK
from sbir_core.chapter import absent
from sbir_core.data.base import DataError
from sbir_core.data.registry import load_dataset
from sbir_core.data.views import fg_view

base_real_config = base_config.replace(steps=BASE_REAL_STEPS, eval_every=BASE_REAL_EVAL_EVERY)
real_status, real_rows, first_rows, real_claims = [], [], [], []
for name in REAL_DATASETS:
    try:
        data = load_dataset(name, seed=SEED)
    except DataError:
        absent(f"the Table 1 rows and the first-strokes study on {name}", name)
        continue
    try:  # a set without its photos (ChairV2 here) cannot be searched for photos
        tr, va, te = (fg_view(data, s, IMAGE_SIZE, LINE_WIDTH) for s in ("train", "val", "test"))
    except DataError as err:
        real_status.append(
            {"dataset": name, "sketches": len(data), "strokes": data.strokes is not None, "used": f"no: {err}"}
        )
        continue
    real_status.append(
        {
            "dataset": name,
            "sketches": len(data),
            "strokes": data.strokes is not None,
            "used": "yes, nodes from " + ("strokes" if te.strokes is not None else "pieces of ink"),
        }
    )
    tr = tr.within(None)  # as chapter 4 trained it, so that its runs load from the store
    tsn = T.train_seeds(base_spec, tr, va, {"test": te}, base_real_config, range(SEED, SEED + N_BASE_REAL_SEEDS))
    tsn_models = tsn.methods(base_spec)
    r_first = H.on_encoder(tsn_models[0].encoder, "b_siamese", **HIER_OPTIONS)
    r_nodes = {k: H.cache_nodes(r_first, v) for k, v in (("train", tr), ("val", va), ("test", te))}
    r_ev = {"Triplet-SN (chapter 4)": [evaluate(m, te) for m in tsn_models]}
    r_models, r_untrained = {}, {}
    for v in REAL_VARIANTS:
        r_models[v] = []
        for s_ in seeds:
            torch.manual_seed(s_)
            m_ = H.on_encoder(tsn_models[0].encoder, v, margin=MARGIN, **HIER_OPTIONS)
            H.train_heads(
                m_,
                tr,
                r_nodes["train"],
                va,
                r_nodes["val"],
                steps=STEPS,
                batch_size=BATCH_SIZE,
                lr=LR,
                seed=s_,
                eval_every=EVAL_EVERY,
            )
            r_models[v].append(m_)
        r_ev[NAMES[v]] = [evaluate(m_, te, features=r_nodes["test"]) for m_ in r_models[v]]
        torch.manual_seed(SEED)
        r_untrained[v] = [
            evaluate(
                H.on_encoder(tsn_models[0].encoder, v, margin=MARGIN, **HIER_OPTIONS).eval(),
                te,
                features=r_nodes["test"],
            )
        ]
    r_pixel = [evaluate(pixel, te)]

    def real_arm(v, metric):
        k = int(metric.rsplit("_", 1)[1])
        return arm(
            r_ev[NAMES[v]],
            metric,
            seeds,
            ("instance",),
            NAMES[v],
            {
                "chance": te.chance(k),
                "pixel NN": arm(r_pixel, metric, columns=("instance",)),
                "untrained head": arm(r_untrained[v], metric, columns=("instance",)),
            },
        )

    for k in (1, 10):
        metric = f"acc_at_{k}"
        ch.add(name, "chance", metric, te.chance(k), "", "", "test")
        ch.add(name, "category_oracle", metric, te.category_oracle(k), "", "", "test")
        ch.add(name, "pixel_nn", metric, r_pixel[0].metrics[metric], "", "", "test")
        row = {"dataset": name, "metric": f"Acc@{k}"}
        for who, evs in r_ev.items():
            iv = interval_of(evs, metric, columns=("instance",))
            row[who] = fmt(iv)
            if who.startswith("Triplet-SN") and k == 10 or who in {NAMES[v] for v in CLAIMED}:
                ch.add_interval(iv, name, KEY_OF.get(who, "triplet_sn"), metric, T.PROTOCOL_VAL, "", "test")
            for s_, e in zip(range(SEED, SEED + len(evs)), evs):
                ch.add(name, KEY_OF.get(who, "triplet_sn"), metric, e.metrics[metric], T.PROTOCOL_VAL, "", "test", s_)
        row["pixel NN"] = f"{100 * r_pixel[0].metrics[metric]:.1f} %"
        row["chance"] = f"{100 * te.chance(k):.1f} %"
        real_rows.append(row)
    for claim, a, b in (
        ("hierarchy_beats_coattn", "proposed", "b_localised_coattn"),
        ("coattn_beats_siamese", "b_localised_coattn", "b_siamese"),
    ):
        if a in r_models and b in r_models:
            arms1, arms10 = ({v: real_arm(v, m) for v in (a, b)} for m in ("acc_at_1", "acc_at_10"))
            ev = ch.claim(
                claim,
                [(arms1[a], 1), (arms1[b], -1)],
                arms1[b],
                name,
                f"hierarchy_{a} - hierarchy_{b}",
                "test",
                T.PROTOCOL_VAL,
                other={"acc_at_10": [(arms10[a], 1), (arms10[b], -1)]},
            )
            real_claims.append({"dataset": name, "claim": f"{NAMES[a]} > {NAMES[b]}", "Acc@1 (deciding)": ev.text()})
    if te.strokes is not None:  # the first strokes of each test sketch, drawn in order
        for frac in FIRST_STROKES:
            fv = te if frac == 1 else H.restroke(te, [SK.truncate(st, frac) for st in te.strokes], LINE_WIDTH)
            arms = {"Triplet-SN (chapter 4)": [evaluate(m, fv) for m in tsn_models]}
            for v in ("b_siamese", "proposed"):
                if v in r_models:
                    arms[NAMES[v]] = (
                        r_ev[NAMES[v]]
                        if frac == 1
                        else [evaluate(m_, fv, features=H.cache_nodes(m_, fv)) for m_ in r_models[v]]
                    )
            for who, evs in arms.items():
                iv = interval_of(evs, "acc_at_10", columns=("instance",))
                first_rows.append({"dataset": name, "strokes kept": f"{frac:.0%}", "model": who, "Acc@10": fmt(iv)})
                if frac < 1:
                    for s_, e in zip(range(SEED, SEED + len(evs)), evs):
                        ch.add(
                            name,
                            KEY_OF.get(who, "triplet_sn"),
                            "acc_at_10",
                            e.metrics["acc_at_10"],
                            T.PROTOCOL_VAL,
                            setting(strokes=frac),
                            "test",
                            s_,
                        )
ch.glue("n_base_real", N_BASE_REAL_SEEDS)  # (the seed is glued once, above: a second glue fails the strict build)
if real_status:
    display(pd.DataFrame(real_status).set_index("dataset"))
if real_rows:
    display(pd.DataFrame(real_rows).set_index(["dataset", "metric"]).fillna(""))
if real_claims:
    display(pd.DataFrame(real_claims).set_index(["dataset", "claim"]))
if first_rows:
    display(pd.DataFrame(first_rows).pivot(index=["dataset", "model"], columns="strokes kept", values="Acc@10"))
elif real_rows:
    prose(
        "No set found here has both strokes and paired photos, so the first-strokes study on real sketches did "
        "not run; it runs on sets that have both (e.g. ShoeV2 or ChairV2 with their photos)."
    )

# %% [markdown]
# ## Beside the paper
#
# The paper's Table 1 on ChairV2, ShoeV2 and SWIRE (VGG16 at 256 pixels, trained end to end)
# beside the rows of this chapter on the style world (a frozen 32-pixel encoder with trained
# heads, `paper_runs/reference/hierarchy.csv`). The numbers are not comparable in level; what
# can be compared is the order of the rows.

# %% tags=["hide-input"]
from sbir_core.results import load_reference

ref = load_reference("hierarchy")
ref = ref[ref["method"].isin(NAMES.values()) & (ref["metric"] == "acc_at_1")]
pub = ref.pivot_table(index="method", columns="dataset", values="value", aggfunc="first")
pub["this book: style world, seen (%)"] = [
    100 * np.mean([e.metrics["acc_at_1"] for e in evals[k]["test_seen"]]) if k in evals else np.nan
    for k in [next(k for k, n in NAMES.items() if n == m) for m in pub.index]
]
pub = pub.reindex([NAMES[v] for v in NAMES if NAMES[v] in pub.index])
pub.round(1).rename_axis("Acc@1 (%)")

# %% [markdown]
# ## Verdict
#
# The orderings of the paper on the style world at the ci scale: hierarchy over co-attention
# **{glue:text}`c05_claim_hierarchy_beats_coattn`**, co-attention over B-Siamese
# **{glue:text}`c05_claim_coattn_beats_siamese`**, less loss on sparse sketches
# **{glue:text}`c05_claim_coarse`**. Read them with what the ci scale is: a frozen 32-pixel
# encoder whose regions are a few pixels wide, heads trained for {glue:text}`c05_steps`
# steps, {glue:text}`c05_n_seeds` seeds; which rows reach down to a floor is listed under Table 1. The
# package's tests found the same weakness end to end: the full hierarchy does not overfit six toy
# pairs (`tests/test_hierarchy.py`, a strict expected failure), while the rows without node fusion
# do. On the real sets with paired photos found here (*Real sketches*) the heads sit on chapter 4's
# Triplet-SN of that set, with pieces of ink for strokes where a set has none; the same rule gives
# each real set its own outcome there.

# %% tags=["remove-cell"]
ch.save(flag_floors=True)  # with learnt_<metric> rows: which scores clear their floor (Chapter.flag_floors)
