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
# # StyleMeUp: meta-learning to ignore the drawer
#
# StyleMeUp (Sain et al., CVPR 2021; METHODS.md §C) asks the book's question head-on: can a model
# be trained so that the photo it finds does not depend on *who* drew the sketch? It splits a
# sketch into a style-invariant code $z_{inv}$, shared with the photo and used for retrieval, and a
# drawer-specific Gaussian style code $z_{var}$ (a cross-modal VAE), with losses that swap style
# codes between two drawers' sketches of one object, translate sketch codes into the photo and
# back, and two triplets (on $z_{inv}$ and on the fused code $z_f = z_{inv} \oplus z_{var}$).
#
# On top of that it meta-learns. One task holds a held-out *seen* drawer $h$: the inner step adapts
# the encoder and decoder $\Omega$ on sketches by other drawers, with feature-transformation (FT)
# layers simulating unseen styles and a learned weighted-L1 regulariser $\psi$ on the invariant
# head; the outer loss judges the adapted model on $h$'s sketches, the pseudo-unseen style:
#
# $$\Omega' = \Omega - \alpha\nabla_\Omega\bigl[L(\Omega, \theta_{FT}; D^{trn}) + \textstyle\sum \psi\odot|W_{inv}|\bigr],
# \qquad (\Omega, \theta_{FT}, \psi) \leftarrow (\Omega, \theta_{FT}, \psi) - \beta\nabla \textstyle\sum_{tasks} L(\Omega'; D^{val}).$$
#
# $\theta_{FT}$ and $\psi$ reach the outer loss only through $\nabla_\Omega$ of the inner loss, so
# they learn only with the second-order graph. The public code runs first-order MAML: there
# $\psi$ never moves from its random start, and the FT layers do not exist (METHODS.md §C lists
# this and the other bugs). Our implementation (`sbir_core.models.stylemeup`) uses `torch.func`
# for the inner step, so the meta-gradient is second-order; `first_order=True` reproduces the
# public code and is one of the ablations below. The episode is the paper's: one photo drawn in
# several styles (the style world has every training object drawn by four seen drawers), so the
# cross-style swap loss has two sketches of the same object to swap between.

# %% tags=["remove-cell"]
from sbir_core.chapter import setup

setup(seed=0)

# %% tags=["parameters"]
SCALE = "ci"  # which results folder to write: ci | paper
SEED = 0  # base seed: the runs use seeds SEED, SEED+1, ...
N_SEEDS = 2  # training seeds of StyleMeUp and each ablation
N_BASE_SEEDS = 5  # Triplet-SN seeds (chapter 4's runs, loaded from the store)
WORLD = {}  # style-world options beyond the defaults (as chapter 4)
STYLE_GAP = 3.0  # the unseen drawers' style gap of the headline numbers
IMAGE_SIZE = 32  # input side in pixels (chapter 4)
LINE_WIDTH = 1.5  # sketch line width at IMAGE_SIZE (chapter 4)
ENCODER = "cnn"  # Triplet-SN baseline: chapter 4's encoder and options (loaded, never retrained here)
ENCODER_OPTIONS = {"width": 16, "depth": 4, "embed_dim": 64, "double_conv": False}  # chapter 4's encoder options
MARGIN = 0.2  # triplet margin (chapter 4, and StyleMeUp's code)
BASE_STEPS = 800  # chapter 4's steps (to find its stored runs)
BASE_BATCH_SIZE = 32  # chapter 4's batch
BASE_EVAL_EVERY = 200  # chapter 4's evaluation interval
LR = 0.0005  # Adam learning rate of Omega (chapter 4's); the code uses 1e-4
SMU_OPTIONS = {"width": 8, "depth": 3, "hidden": 64, "latent": 64, "k": 4}  # StyleMeUp's VAE (latent 64: the paper's best)
META_LR = 0.0005  # Adam learning rate of psi and the FT thetas
INNER_LR = 0.005  # alpha of the inner step (the code's fast lr)
STEPS = 30  # outer steps per seed (each: BATCH_SIZE tasks, one inner step each)
BATCH_SIZE = 2  # tasks per outer step (the code: 12)
EVAL_EVERY = 15  # evaluate on validation every N outer steps
ABLATIONS = ["first_order", "cross_modal"]  # of: first_order, no_ft, fixed_ft, no_reg, cross_modal, meta_sn, latent128
TIMING_STEPS = 3  # outer steps timed on their own for the note
PROGRESS = False  # tqdm progress bars
DEVICE = "cpu"  # cpu (ci) | cuda

# %% tags=["hide-input"]
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from sbir_core import benchmark as B
from sbir_core import train as T
from sbir_core.chapter import Chapter, fmt, interval_of, paired_of, published_vs_ours, setting
from sbir_core.evaluation import evaluate
from sbir_core.models.base import MethodSpec
from sbir_core.models.stylemeup import rank_consistency
from sbir_core.samplers import get_sampler

t_start = time.perf_counter()
ch = Chapter("06_stylemeup", SCALE, globals())
seeds = list(range(SEED, SEED + N_SEEDS))
views = B.style_views(B.world(STYLE_GAP, **WORLD), IMAGE_SIZE, LINE_WIDTH)
config = T.TrainConfig(steps=STEPS, batch_size=BATCH_SIZE, lr=LR, eval_every=EVAL_EVERY, ks=(1, 10),
                       progress=PROGRESS, device=DEVICE)
base_config = T.TrainConfig(steps=BASE_STEPS, batch_size=BASE_BATCH_SIZE, lr=LR, eval_every=BASE_EVAL_EVERY, ks=(1, 10),
                            progress=PROGRESS, device=DEVICE)
VARIANTS = {  # name -> (label, options changed from the full model)
    "full": ("StyleMeUp (second order, FT, psi)", {}),
    "first_order": ("first order, as the public code", {"first_order": True}),
    "no_ft": ("w/o FT layers (w/o MFT)", {"ft": "none"}),
    "fixed_ft": ("fixed FT", {"ft": "fixed"}),
    "no_reg": ("w/o regulariser (w/o RegD)", {"regulariser": False}),
    "cross_modal": ("B-Cross-Modal: the VAE without meta-learning", {"meta": False}),
    "meta_sn": ("B-Meta-SN: meta-learned triplet only", {"vae": False}),
    "latent128": ("latent 128 (the code's)", {"latent": 128}),
}


def smu_spec(**changes) -> MethodSpec:
    options = {"size": IMAGE_SIZE, **SMU_OPTIONS, "margin": MARGIN, "inner_lr": INNER_LR, "meta_lr": META_LR}
    return MethodSpec("stylemeup", {**options, **changes})


# %% [markdown]
# ## Training
#
# One outer step draws `BATCH_SIZE` tasks of `k` photos each; for every task it takes one inner
# step (FT layers on, regulariser added) and the outer loss on the held-out drawer's sketches.
# First, how long one outer step takes on this machine (the inner loop runs on the CPU at ci scale):

# %% tags=["hide-input"]
probe = smu_spec().build()
probe_opts = probe.configure_optimizers(config)
gen = torch.Generator().manual_seed(SEED)
wall, cpu = [], []
for _ in range(TIMING_STEPS):
    batch = get_sampler(probe.sampler)(views.train, BATCH_SIZE, gen, **probe.sampler_options)
    w0, c0 = time.perf_counter(), time.process_time()
    probe.train_step(batch, probe_opts)
    wall.append(time.perf_counter() - w0)
    cpu.append(time.process_time() - c0)
ch.glue("step_wall", float(np.median(wall)))
ch.glue("step_cpu", float(np.median(cpu)))
ch.glue("tasks", BATCH_SIZE)
ch.glue("k", SMU_OPTIONS.get("k", 8))
del probe, probe_opts

runs, models = {}, {}
for name in ["full", *ABLATIONS]:
    spec = smu_spec(**VARIANTS[name][1])
    runs[name] = T.train_seeds(spec, views.train, views.val, views.tests, config, seeds)
    models[name] = runs[name].methods(spec)
base_spec = B.triplet_spec(ENCODER, ENCODER_OPTIONS, MARGIN)
base_runs = B.baseline(views, base_spec, base_config, list(range(N_BASE_SEEDS)))
models["triplet_sn"] = base_runs.methods(base_spec)

hist = runs["full"].histories()
g = hist.groupby("step")
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(g["loss"].mean().index, g["loss"].mean(), "o-", color="k")
axes[0].set(xlabel="outer step", ylabel="outer (meta-test) loss", title="StyleMeUp training (mean over seeds)")
for col, label in (("val/acc_at_10", "val, seen"), ("test_seen/acc_at_10", "test, seen"),
                   ("test_unseen/acc_at_10", "test, unseen")):
    axes[1].plot(g[col].mean().index, g[col].mean(), "o-", label=label)
axes[1].axhline(views.test_seen.chance(10), color="grey", ls=":", lw=1, label="chance")
axes[1].set(xlabel="outer step", ylabel="Acc@10 within category")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# One outer step of {glue:text}`c06_tasks` tasks of {glue:text}`c06_k` photos took
# {glue:text}`c06_step_wall:.2f` s of wall time ({glue:text}`c06_step_cpu:.2f` s of CPU time) here;
# the first-order variant skips the second-order graph and is cheaper.
#
# ## Seen and unseen drawers, against Triplet-SN
#
# Triplet-SN is chapter 4's model, loaded from the store. Every difference is paired on the same
# test queries, with a 95% interval over seeds and test objects and drawers.

# %% tags=["hide-input"]
evals = {name: {split: [evaluate(m, view) for m in ms] for split, view in views.tests.items()}
         for name, ms in models.items()}
labels = {"triplet_sn": "Triplet-SN (chapter 4)", **{k: v[0] for k, v in VARIANTS.items()}}
tag = setting(style_gap=STYLE_GAP)
rows = []
for name in evals:
    row = {"method": labels[name]}
    for split in ("test_seen", "test_unseen"):
        for k in (1, 10):
            iv = interval_of(evals[name][split], f"acc_at_{k}")
            ch.add_interval(iv, "style_world", name, f"acc_at_{k}", T.PROTOCOL_VAL, tag, split)
            row[f"{split.split('_')[1]} Acc@{k}"] = fmt(iv)
    rows.append(row)
headline = {k: paired_of(evals["full"]["test_unseen"], evals["triplet_sn"]["test_unseen"], f"acc_at_{k}")
            for k in (1, 10)}
for k, iv in headline.items():
    ch.add_interval(iv, "style_world", "stylemeup - triplet_sn", f"diff_acc_at_{k}", T.PROTOCOL_VAL, tag, "test_unseen")
    ch.glue(f"gain{k}", iv.estimate * 100)
    ch.glue(f"gain{k}_lo", iv.lo * 100)
    ch.glue(f"gain{k}_hi", iv.hi * 100)
ch.glue("claim_beats", ch.add_claim("stylemeup_beats_triplet_unseen", headline[10], +1, "style_world",
                                    "stylemeup - triplet_sn", "diff_acc_at_10", T.PROTOCOL_VAL, "test_unseen"))
ch.glue("n_seeds", N_SEEDS)
ch.glue("steps", STEPS)
ch.glue("base_steps", BASE_STEPS)
pd.DataFrame(rows).set_index("method")

# %% [markdown]
# On the unseen drawers, StyleMeUp minus Triplet-SN is **{glue:text}`c06_gain10:.1f` points of
# Acc@10** [{glue:text}`c06_gain10_lo:.1f`, {glue:text}`c06_gain10_hi:.1f`] and
# {glue:text}`c06_gain1:.1f` points of Acc@1 [{glue:text}`c06_gain1_lo:.1f`, {glue:text}`c06_gain1_hi:.1f`]:
# the paper's headline claim is **{glue:text}`c06_claim_beats`** at this scale. Read it with its
# scale: StyleMeUp here trains {glue:text}`c06_n_seeds` seeds for {glue:text}`c06_steps` outer
# steps, because the second-order inner loop is what the CPU budget can afford, while the
# baseline had {glue:text}`c06_base_steps` ordinary steps; the ci scale tests that the method runs and is measured the
# same way, not that it converges. The paper scale (`paper_runs/configs/paper/06_stylemeup.yaml`)
# trains it as the paper does.
#
# ## Ablations
#
# Each ablated part, as the full model minus the variant on the same unseen-drawer queries
# (Acc@10). The paper claims every part costs accuracy when removed.

# %% tags=["hide-input"]
abl = []
for name in ABLATIONS:
    iv = paired_of(evals["full"]["test_unseen"], evals[name]["test_unseen"], "acc_at_10")
    word = ch.add_claim(f"stylemeup_ablation_{name}", iv, +1, "style_world", f"stylemeup - {name}", "diff_acc_at_10",
                        T.PROTOCOL_VAL, "test_unseen")
    abl.append({"variant": labels[name], "full minus variant, unseen Acc@10 (points)": fmt(iv, signed=True),
                "verdict": word})
pd.DataFrame(abl).set_index("variant") if abl else "no ablations at this scale"

# %% [markdown]
# ## Rank consistency
#
# The paper's slides measure style-agnosticism directly: for a photo drawn by several people, how
# much does its rank vary between their sketches? $V_{avg}$ is the mean over photos of the
# variance of their sketches' ranks (lower: the drawer matters less), here on the unseen drawers.

# %% tags=["hide-input"]
cons = []
photo = views.test_unseen.target.numpy()
for name in evals:
    per_seed = [rank_consistency(ev.per_query["rank"], photo) for ev in evals[name]["test_unseen"]]
    for s, r in enumerate(per_seed):
        ch.add("style_world", name, "rank_v_avg", r["v_avg"], T.PROTOCOL_VAL, tag, "test_unseen", s)
        ch.add("style_world", name, "rank_avg", r["rank_avg"], T.PROTOCOL_VAL, tag, "test_unseen", s)
    cons.append({"method": labels[name], "mean rank": np.mean([r["rank_avg"] for r in per_seed]),
                 "V_avg": np.mean([r["v_avg"] for r in per_seed])})
pd.DataFrame(cons).set_index("method").round(2)

# %% [markdown]
# ## Swapping style codes
#
# Two unseen drawers' sketches of one test object: each decoded with its own codes, and with the
# invariant code of one and the style code of the other.

# %% tags=["hide-input"]
m = models["full"][0].eval()
t = views.test_unseen.table
inst = t.groupby("instance")["drawer"].nunique()
obj = inst[inst >= 2].index[0]
rows_ = t.index[t["instance"] == obj][:2].to_numpy()
a, b = views.test_unseen.queries[rows_[:1]], views.test_unseen.queries[rows_[1:2]]
with torch.no_grad():
    pics = {"sketch A": a, "sketch B": b, "Dec(A)": m.swap(a, a), "Dec(B)": m.swap(b, b),
            "inv A + style B": m.swap(a, b), "inv B + style A": m.swap(b, a),
            "photo": views.test_unseen.gallery[views.test_unseen.target[rows_[:1]]]}
fig, axes = plt.subplots(1, len(pics), figsize=(1.6 * len(pics), 1.9))
for ax, (title, x) in zip(axes, pics.items()):
    x = x[0]
    img = (1 - x[0]) if x.shape[0] == 1 else ((x.permute(1, 2, 0) + 1) / 2).clamp(0, 1)
    ax.imshow(img.numpy(), cmap="gray" if x.shape[0] == 1 else None, vmin=0, vmax=1)
    ax.set_title(title, fontsize=7)
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Beside the paper
#
# The paper's numbers on ChairV2 and ShoeV2 (`paper_runs/reference/stylemeup.csv`, its table of
# FG-SBIR results) come from the full-size setting of `paper_runs/configs/paper/06_stylemeup.yaml`;
# ours from the style world at ci scale. They are printed together below, not compared. Not done here yet: the style-gap curve beside the
# control, the real-data sections (ChairV2 and shoes304 with the sketch index as a style proxy,
# PACS–Sketchy) and the category-level numbers; they are listed as open in the chapter's issue.

# %% tags=["hide-input"]
ours = ch.frame()
ours = ours[(ours["split"] == "test_unseen") & ours["metric"].isin(["acc_at_1", "acc_at_10"])]
published_vs_ours("stylemeup", ours)

# %% tags=["remove-cell"]
ch.glue("minutes", (time.perf_counter() - t_start) / 60)
ch.save()
