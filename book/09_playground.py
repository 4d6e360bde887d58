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
# # The sketch playground
#
# Every other chapter queries its models with sketches from a dataset. This one lets you draw.
# The playground (`sbir_core.widgets`) is a sketch pad and a retrieval explorer: pick a trained
# method of the book, pick a gallery (a style-world category, the PACS photos, or a folder of your
# own images), and the nearest photos appear after every stroke, with their distances. A world
# sketch is shown to copy; while you copy it, the rank of its photo is shown stroke by stroke,
# which is *early retrieval*: how soon a partial drawing finds its object. A second tab moves the
# style code of your drawing towards another drawer's (StyleMeUp, chapter 6) and shows the decoded
# sketch and what it retrieves.
#
# **Open it live.** `make app` serves it as a page with no code (voila) and prints its address;
# in Jupyter (`make lab`), a cell with
#
# ```python
# from sbir_core.widgets import Playground
# Playground().widget
# ```
#
# shows the same widgets. A method appears once its chapter has trained it at the chosen scale
# (it is in the store of trained models); a missing one can be trained from the page.
#
# The static book cannot draw, so this chapter shows a drawing made by the browser test
# (`tests/test_browser.py`): Chromium, driven by Playwright, copies a world sketch into the page
# with real mouse events, one stroke at a time, and a screenshot is taken after each. Then it
# measures what the page shows for every test sketch at once: the ranks after part of a drawing,
# and how long a query takes.

# %% tags=["remove-cell"]
from sbir_core.chapter import setup

setup(seed=0)

# %% tags=["parameters"]
SCALE = "ci"  # which results folder to write and which scale's trained models to use: ci | paper
SEED = 0  # seed of chapter 4's Triplet-SN that the playground queries
CATEGORY = "shoe"  # the world category whose photos the recorded drawing searches
FRACTIONS = [0.25, 0.5, 0.75, 1.0]  # parts of each test sketch (first strokes) for early retrieval
RECORD = True  # draw in Chromium now when no recording of this model exists (needs Chromium + playwright)
LATENCY_QUERIES = 100  # drawn queries timed end to end (strokes to top 10)
BUDGET_S = 150  # this chapter's time budget at this scale on 2 CPU cores, seconds (python -m sbir_core.bench book)

# %% tags=["hide-input"]
import dataclasses
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from PIL import Image

from sbir_core import playground as P
from sbir_core import strokes as SK
from sbir_core.chapter import Chapter, fmt, interval_of, note, prose, setting
from sbir_core.data.base import cache_dir
from sbir_core.data.views import sketch_tensor
from sbir_core.evaluation import evaluate

t_start = time.perf_counter()
ch = Chapter("09_playground", SCALE, globals())
overrides = {"SEED": SEED}  # chapter 4's other parameters, WORLD too, reach the bench through --set
tsn = P.choice("04_triplet_baseline", SCALE, **overrides)
engine = P.load(tsn, train=True, progress=False)  # from the store: chapter 4 trained it
gallery = P.world_gallery(engine.views, CATEGORY)

# %% [markdown]
# ## A drawing, stroke by stroke
#
# The browser test picks the first {glue:text}`c09_category` sketch that the model ranks first
# from the dataset's own strokes, and draws it in the page. Each frame is the page after one
# more stroke: the pad, the sketch to copy with the rank of its photo, and the top ten
# (below; the rank after every stroke in {numref}`c09-tbl-trail`).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The playground drawn in by a browser test, stroke by stroke: the page after four of the strokes, with the target photo's rank."}, "image": {"alt": "Four screenshots of the playground page, a sketch being drawn on the pad and the grid of retrieved photos updating."}}
frames_dir = cache_dir() / "playground" / "frames"
rec = None
if (frames_dir / "frames.json").exists():
    rec = json.loads((frames_dir / "frames.json").read_text())
    if rec.get("key") != tsn.key or rec.get("category") != CATEGORY:
        rec = None  # recorded with another model or gallery
if rec is None and RECORD:
    from sbir_core import browser as BR

    target = engine.first_ranked_target(gallery)
    try:
        if target is None:
            raise BR.BrowserError(f"the model ranks no {CATEGORY} sketch's photo first")
        rec = BR.record(frames_dir, category=CATEGORY, target=target, overrides=overrides, scale=SCALE)
    except BR.BrowserError as err:
        note(f"**No recording:** {err}. The browser tests (`make test`) record one.")
ch.glue("category", CATEGORY)
if rec is not None:
    frames = rec["frames"]
    picks = sorted({0, len(frames) // 3, (2 * len(frames)) // 3, len(frames) - 1})
    fig, axes = plt.subplots(2, 2, figsize=(13, 11))
    for ax in axes.flat[len(picks) :]:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        ax.imshow(Image.open(frames_dir / frames[i]["file"]))
        ax.set_title(f"after stroke {frames[i]['stroke']} of {rec['strokes']}: rank {frames[i]['rank']}", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    plt.show()
    trail = pd.DataFrame(
        {
            "stroke": [f["stroke"] for f in frames],
            "rank shown in the page": [f["rank"] for f in frames],
            "rank of the dataset's strokes": [f["offline_rank"] for f in frames],
        }
    )
    ch.glue("rec_final", frames[-1]["rank"])
    ch.glue("rec_strokes", rec["strokes"])
    ch.glue("rec_gallery", rec["gallery"])
    prose(
        f"Sketch `{rec['sketch_id']}`: after its {rec['strokes']} strokes the page ranks its photo "
        f"{frames[-1]['rank']} of {rec['gallery']}. The mouse lands on whole or fractional pixels of "
        f"the page, not on the dataset's coordinates, so the page's rank can differ by a few places "
        f"from the rank of the dataset's own strokes (bottom row) while the near photos are close."
    )

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The recorded drawing, stroke by stroke: the rank of the target photo that the page shows after each stroke, and the rank that the dataset's own strokes give.", "classes": "sbir-table", "name": "c09-tbl-trail"}}
if rec is not None:
    display(trail.set_index("stroke").T)

# %% [markdown]
# ## Early retrieval over the whole test set
#
# The page above is one sketch. The same question for every test sketch of the seen drawers:
# keep the first part of its strokes (a quarter, a half, ...), rasterise it as the pad does and
# rank the photos of its category ({numref}`c09-fig-early` and {numref}`c09-tbl-early`). Intervals are over
# the test objects and drawers (one trained seed: the seeds' spread is chapter 4's).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Early retrieval: Triplet-SN's Acc@1 and Acc@10 on the seen drawers when only the first strokes of each sketch are kept (dotted: chance; 95% intervals).", "name": "c09-fig-early"}, "image": {"alt": "Line plot of accuracy rising with the share of strokes kept, for Acc@1 and Acc@10."}}
view = engine.views.test_seen
rows, evals = [], {}
for f in FRACTIONS:
    parts = [SK.truncate(s, f) for s in view.strokes]
    qv = view if f == 1.0 else dataclasses.replace(  # every stroke: the view's own rasters
        view, queries=sketch_tensor(SK.rasterise_many(parts, engine.size, engine.line_width)))
    ev = evaluate(engine.method, qv)
    evals[f] = ev
    for k in (1, 10):
        iv = interval_of([ev], f"acc_at_{k}")
        ch.add_interval(iv, "style_world", "triplet_sn", f"acc_at_{k}", "val_selected", setting(strokes=f), "test_seen")
        rows.append(
            {"strokes kept (%)": 100 * f, "K": k, "Acc@K": fmt(iv), "estimate": iv.estimate, "lo": iv.lo, "hi": iv.hi}
        )
    ch.add(
        "style_world",
        "triplet_sn",
        "mean_rank",
        float(ev.per_query["rank"].mean()),
        "val_selected",
        setting(strokes=f),
        "test_seen",
        SEED,
    )
for k in (1, 10):
    ch.add("style_world", "chance", f"acc_at_{k}", view.chance(k), "", "", "test_seen")
early = pd.DataFrame(rows)
fig, ax = plt.subplots(figsize=(6, 3.4))
for k, g in early.groupby("K"):
    x = g["strokes kept (%)"]
    ax.plot(x, 100 * g["estimate"], marker="o", label=f"Acc@{k}")
    ax.fill_between(x, 100 * g["lo"], 100 * g["hi"], alpha=0.2)
    ax.axhline(100 * view.chance(k), ls=":", c=ax.lines[-1].get_color(), lw=1)
ax.set_xlabel("strokes kept (%, first strokes)")
ax.set_ylabel("accuracy (%)")
ax.set_title("early retrieval, Triplet-SN, seen drawers (dotted: chance)")
ax.legend()
fig.tight_layout()
plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Early retrieval: Triplet-SN's Acc@1 and Acc@10 on the seen drawers' test sketches by the share of each sketch's first strokes kept (95% intervals over test objects and drawers; one trained seed).", "classes": "sbir-table", "name": "c09-tbl-early"}}
early.pivot(index="strokes kept (%)", columns="K", values="Acc@K").rename(columns=lambda k: f"Acc@{k}")

# %% tags=["hide-input"]
half = interval_of([evals[0.5]], "acc_at_10") if 0.5 in evals else None
full = interval_of([evals[1.0]], "acc_at_10") if 1.0 in evals else None
if half is not None and full is not None:
    ch.glue("half10", half.estimate)
    ch.glue("full10", full.estimate)
    ch.glue("chance10", view.chance(10))
    gain = full.estimate - view.chance(10)
    share = (half.estimate - view.chance(10)) / gain if gain > 0 else float("nan")
    ch.glue("half_share", share)
    prose(
        f"Half of the strokes give Acc@10 {fmt(half)}, all of them {fmt(full)}; chance is "
        f"{view.chance(10):.1%}. "
        + (f"By half of the drawing, {share:.0%} of the full drawing's gain over chance is there (a ratio of two "
           f"estimates, without an interval). This is the number a reader feels in the playground: how long the "
           f"photo takes to climb into the top ten."
           if gain > 0 else "The whole drawing gains nothing over chance here, so half of it has no share of a gain.")
    )

# %% [markdown]
# ## How fast a query is
#
# A drawn query goes strokes → raster → encoder → the nearest of the gallery's cached embeddings.
# Timed here ({numref}`c09-tbl-latency`) one query at a time over test sketches against the
# {glue:text}`c09_category` gallery (machine-dependent, so not a checked number;
# `python -m sbir_core.bench query` measures it against 10,000 and, with FAISS, 1,000,000 embeddings).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Query latency on this machine: the median (p50) and 95th-percentile (p95) time in ms from a drawing's strokes to its top 10, over the timed test sketches, and the size of the category's gallery.", "classes": "sbir-table", "name": "c09-tbl-latency"}}
lat = []
for s in view.strokes[:LATENCY_QUERIES]:
    t = time.perf_counter()
    engine.query(s, gallery, 10)
    lat.append(1000 * (time.perf_counter() - t))
lat = np.array(lat)
pd.DataFrame(
    {
        "queries": [len(lat)],
        "p50 (ms)": [np.percentile(lat, 50)],
        "p95 (ms)": [np.percentile(lat, 95)],
        "gallery": [len(gallery)],
    }
).style.format(precision=2).hide(axis="index")

# %% tags=["hide-input"]
if rec is not None and "open_s" in rec:
    answers = np.array([f["answer_ms"] for f in rec["frames"]])
    prose(
        f"In the browser, as a user feels it (the recording above, one page load): the page took "
        f"{rec['open_s']:.1f} s from being asked for to a pad that takes strokes (a fresh kernel loads the model "
        f"and its gallery), and each stroke's results showed {np.percentile(answers, 50):.0f} ms after the mouse's "
        f"release (median over its {len(answers)} strokes; p95 {np.percentile(answers, 95):.0f} ms). "
        f"`python -m sbir_core.bench page` measures more page loads."
    )

# %% [markdown]
# ## Style swap
#
# With StyleMeUp trained (chapter 6), the second tab of the playground decodes a drawing's
# style-invariant code with its style code moved towards another drawer's. Below, one test sketch
# with the style of another sketch of the same category, moved a quarter, half and all the way.
# At the `ci` scale StyleMeUp reads the frozen trunk's features (chapter 6), so its decoder redraws
# features, not sketches: there is no picture to show. What the swapped code *retrieves* can be shown
# at any scale ({numref}`c09-tbl-swap`), and it is the question StyleMeUp asks: if the invariant code ignores
# style, moving the style code towards another drawer's should leave the drawing's own photo where it ranks.

# %% tags=["hide-input"]
smu = next((c for c in P.methods(SCALE, **overrides) if c.recipe.chapter == "06_stylemeup"), None)
smu_engine = P.load(smu) if smu is not None and smu.stored else None
if smu_engine is None:
    note("**StyleMeUp is not trained at this scale** (chapter 6 trains it): no style swap here.")
else:
    g6 = P.world_gallery(smu_engine.views, CATEGORY)
    a, b = g6.targets[0], g6.targets[len(g6.targets) // 2]
    amounts = [0.0, 0.25, 0.5, 1.0]

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Style swap where StyleMeUp reads trunk features (its decoder redraws features, not a picture): as the drawing's style code moves towards another drawer's, the rank of the drawing's own photo and the top 5 photos the swapped code retrieves.", "classes": "sbir-table", "name": "c09-tbl-swap"}}
if smu_engine is not None and isinstance(smu_engine.method, P.OnImages):
    swapped = []
    for m in amounts:
        _, hits = smu_engine.swap_hits(a.strokes, b.strokes, m, g6, 5, target=a.index)
        swapped.append({"style moved towards the other drawer's": f"{m:.0%}",
                        "rank of the drawing's own photo": hits.target_rank,
                        "top 5 of the swapped code": ", ".join(g6.labels[i] for i in hits.index)})
    display(pd.DataFrame(swapped).set_index("style moved towards the other drawer's"))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Style swap where StyleMeUp reads images: the drawing, the other drawer's sketch, and the drawing decoded with its style code moved 0, 25, 50 and 100% of the way towards the other's.", "name": "c09-fig-swap"}, "image": {"alt": "A row of small sketch images: the drawing, the other style, and four decodings that move from the first towards the second."}}
if smu_engine is not None and not isinstance(smu_engine.method, P.OnImages):
    fig, axes = plt.subplots(1, len(amounts) + 2, figsize=(1.8 * (len(amounts) + 2), 2.2))
    pics = [("drawing", smu_engine.raster(a.strokes)), ("other style", smu_engine.raster(b.strokes))]
    pics += [(f"decoded, {m:.0%}", smu_engine.swap_style(a.strokes, b.strokes, m)) for m in amounts]
    for ax, (title, img) in zip(axes, pics):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    plt.show()

# %% tags=["hide-input"]
ch.glue("minutes", (time.perf_counter() - t_start) / 60)
ch.save()

# %% [markdown]
# This chapter ran in {glue:text}`c09_minutes:.1f` minutes here.
