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
# # Real sketches: the datasets, loaded safely
#
# Every method in this book runs on the style world, which we built, and on real sketches,
# which nobody on the project drew. This chapter looks at the real data before any model does:
# which datasets are present, how they split, what the sketches look like and how people's
# strokes vary. It runs on whatever the data root holds (`SBIR_DATA`; CI points it at the
# small shared sets) and says plainly which datasets it did not find. One real set is always
# here: a sample of Google's *Quick, Draw!* dataset {cite}`quickdraw` ships inside the package
# (`quickdraw_sample`: 900 drawings of 20 classes, with each drawer's country; CC BY 4.0, see
# `sbir_core/data/quickdraw_sample/ATTRIBUTION.md`), so a fresh clone shows human drawings
# without `SBIR_DATA`; chapter 6 groups its players by country for a real style shift.
#
# > The sample's drawings are from [*The Quick, Draw! Dataset*](https://github.com/googlecreativelab/quickdraw-dataset)
# > by Google, licensed under [CC BY 4.0](https://creativecommons.org/licenses/by/4.0/); we moved and
# > scaled each drawing, simplified its strokes and removed its timestamps (`sbir_core.data.sample`).
#
# All loading goes through `sbir_core.data.load_dataset(name)`: one sample model for every
# dataset (sketch as strokes or image, photo, instance, category, split), a layout check that
# names the missing file, pickles read by an unpickler that admits only numpy arrays, and
# rasters cached outside the data root. Nothing is ever written into the data root. The sets it reads:
# the QMUL ChairV2 and ShoeV2 stroke files {cite}`qmul2017datasets`, the shoe set of 304 photos
# {cite}`shoes304`, PACS {cite}`li2017pacs`, Sketchy {cite}`sangkloy2016sketchy`, TU-Berlin
# {cite}`eitz2012tuberlin` and QuickDraw {cite}`quickdraw,ha2018sketchrnn`.

# %% tags=["remove-cell"]
from sbir_core import setup

setup(seed=0)

# %% tags=["parameters"]
SCALE = "ci"  # which results folder to write: ci | paper
SEED = 0  # seed of the instance / class splits the loaders draw, and of the sample grids
DATASETS = ["quickdraw_sample", "shoes304", "chairv2", "shoev2", "sketchy", "tuberlin", "pacs", "quickdraw"]  # registry names to look for
IMAGE_SIZE = 64  # raster side (pixels) for sample grids and ink statistics
LINE_WIDTH = 1.5  # ink width (pixels at IMAGE_SIZE) when strokes are rasterised
GRID_SAMPLES = 8  # sketches per sample grid
QUICKDRAW_MAX_PER_CLASS = 30  # QuickDraw drawings read per class, the first in each file (None: all)
INK_MAX_SKETCHES = 4000  # image datasets: ink statistics on at most this many sketches (seeded sample)
BUDGET_S = 20  # this chapter's time budget at this scale on 2 CPU cores, seconds (python -m sbir_core.bench book)

# %% [markdown]
# ## What is here
#
# The registry knows each dataset's layout. A dataset counts as found when its layout check
# passes under the data root and it loads without error; otherwise the reason is printed
# (below).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The datasets looked for under the data root: whether each was found (yes, no, or found but unreadable) and what it loaded as, or why it could not be read.", "classes": "sbir-table"}}
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sbir_core import benchmark as B
from sbir_core.chapter import Chapter, absent, prose
from sbir_core.data import DataError, load_dataset
from sbir_core.data.registry import check_layout

ch = Chapter("03_real_data", SCALE, globals())
rng = np.random.default_rng(SEED)
options = {name: {"seed": SEED} for name in DATASETS}
options.get("quickdraw", {}).update(max_per_class=QUICKDRAW_MAX_PER_CLASS)

found, status = {}, []
for name in DATASETS:
    try:
        check_layout(name)
    except DataError:
        status.append({"dataset": name, "found": "no", "loaded as": ""})
        continue
    try:
        found[name] = load_dataset(name, **options[name])
        status.append({"dataset": name, "found": "yes", "loaded as": repr(found[name])})
    except DataError as err:
        status.append({"dataset": name, "found": "unreadable", "loaded as": str(err).splitlines()[0]})
status = pd.DataFrame(status).set_index("dataset")
missing = [n for n in DATASETS if n not in found]
if not found:
    absent(
        "counts per split, sample sketches with their photos, stroke and ink statistics and the "
        "test of whether the sketch index k marks a drawer",
        DATASETS,
    )
else:
    prose(f"Found: {', '.join(found)}. Not found (skipped below, without error): {', '.join(missing) or 'none'}.")
status

# %% [markdown]
# A reader with the full datasets points `SBIR_DATA` at a folder holding them in their release layouts (`ShoeV2/ShoeV2_Coordinate`
# and `ShoeV2/photo/`, `sketchy/256x256/...`, `tuberlin/png/<class>/`, ...) and the same cells
# run on them; `sbir_core.data.registry.check_layout(name)` prints the expected layout of any
# dataset whose files are missing.
#
# ## Counts per split
#
# Splits are by **instance** ({numref}`c03-tbl-splits`): a photo and all its sketches fall on the same side.
# ChairV2 and ShoeV2 carry their train/test split in their keys; we move a seeded tenth of the train
# photos to a validation split, because choosing checkpoints on the test set (as the public
# code does, {ref}`appendix <appendix-pitfalls>`) flatters the numbers. The shoe folder and the
# category-level sets get a seeded 70/10/20 split per class; the seed and the instance lists
# are recorded in each dataset's `info`.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Sketches, photos and instances in each split (train, val, test) of each dataset found.", "classes": "sbir-table", "name": "c03-tbl-splits"}}
rows = []
count_tables = []
for name, data in found.items():
    counts = data.split_counts()
    count_tables.append(counts.assign(dataset=name).reset_index().set_index(["dataset", "split"]))
    for split, rec in counts.iterrows():
        for col in ("sketches", "photos", "instances"):
            rows.append(
                {
                    "dataset": name,
                    "method": "data",
                    "protocol": "counts",
                    "split": split,
                    "metric": f"n_{col}",
                    "value": rec[col],
                }
            )
    rows.append(
        {
            "dataset": name,
            "method": "data",
            "protocol": "counts",
            "split": "all",
            "metric": "n_categories",
            "value": data.sketches["category"].nunique(),
        }
    )
counts_table = pd.concat(count_tables) if count_tables else None
counts_table

# %% [markdown]
# ## What the sketches look like
#
# Samples drawn at run time from the data present (figures from real data are never stored in
# the repository). Where a sketch has a paired photo, the photo is shown beneath it.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Random sketches of each real set found under SBIR_DATA (top rows) and, for a set with photos, their photos (bottom rows)."}, "image": {"alt": "Grids of sample sketches from each real dataset present, with the paired photos under them where the dataset has photos."}}
for name, data in found.items():
    pick = np.sort(rng.choice(len(data), min(GRID_SAMPLES, len(data)), replace=False))
    photo_rows = data.photo_index()[pick] if data.photo_files is not None else np.full(len(pick), -1)
    has_photos = (photo_rows >= 0).any()
    fig, axes = plt.subplots(
        1 + has_photos, len(pick), figsize=(1.3 * len(pick), 1.5 * (1 + has_photos)), squeeze=False
    )
    for col, (i, j) in enumerate(zip(pick, photo_rows)):
        axes[0, col].imshow(data.sketch_image(i, IMAGE_SIZE, LINE_WIDTH), cmap="gray", vmin=0, vmax=1)
        axes[0, col].set_title(str(data.sketches.at[i, "category"])[:12], fontsize=8)
        if has_photos and j >= 0:
            axes[1, col].imshow(data.photo_image(j, IMAGE_SIZE))
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"{name}: {GRID_SAMPLES} random sketches" + (" and their photos" if has_photos else ""), fontsize=10)
    plt.show()

# %% [markdown]
# ## How people draw: stroke and ink statistics
#
# For datasets stored as strokes (ChairV2, ShoeV2, QuickDraw and its shipped sample), and for the
# style world's drawers beside them, we count strokes and points per sketch (below)
# and measure the extent (longer side of the bounding box, in units of the 256 canvas)
# with `strokes.sketch_stats`. QuickDraw drawings are normalised to the canvas on loading
# (their raw coordinates have no common scale), and the ChairV2 coordinates were scaled to a
# fixed box by their publishers (they span 33 to 223), so for both the extent is constant by
# construction and the stroke and point counts carry the differences between drawers.
# Datasets stored as images have no strokes; for them we measure ink on the 64-pixel raster:
# the mean darkness, the share of inked pixels and the inked extent as a fraction of the side.
# In {numref}`c03-tbl-stroke-stats` a dash marks a statistic that does not apply to how a set is stored.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Mean and median per sketch of each stroke statistic (for sets stored as strokes: strokes, points, points per stroke, length and extent in canvas units) or ink statistic (for sets stored as images, on the raster), for the style world and each real set found; a dash marks a statistic that does not apply.", "classes": "sbir-table", "name": "c03-tbl-stroke-stats"}}
stroke_cols = ["strokes", "points", "points_per_stroke", "length", "extent"]
ink_cols = ["ink", "ink_pixels", "ink_extent"]
per_sketch, summaries = {}, []
world = B.world()  # the book's style world (chapter 2), whose drawers real drawers are held against
for name, data in {"style_world": world, **found}.items():
    if data.strokes is not None:
        table, cols, proto = data.stroke_stats(), stroke_cols, "stroke_stats"
    else:
        sample = (
            data
            if len(data) <= INK_MAX_SKETCHES
            else data.subset(np.sort(rng.choice(len(data), INK_MAX_SKETCHES, replace=False)))
        )
        table, cols, proto = sample.ink_stats(IMAGE_SIZE, LINE_WIDTH), ink_cols, "ink_stats"
    per_sketch[name] = table
    for col in cols:
        for stat in ("mean", "median"):
            value = float(getattr(table[col], stat)())
            rows.append(
                {
                    "dataset": name,
                    "method": "data",
                    "protocol": proto,
                    "split": "all",
                    "metric": f"{col}_{stat}",
                    "value": value,
                }
            )
            summaries.append({"dataset": name, "statistic": f"{col} ({stat})", "value": value})
summary = (
    pd.DataFrame(summaries, columns=["dataset", "statistic", "value"]).pivot(
        index="statistic", columns="dataset", values="value"
    )
    if summaries
    else None
)
# a stroke statistic of a set stored as images (or an ink one of a set stored as strokes) does not apply: a dash
summary if summary is None else summary.round(3).astype(object).where(summary.notna(), "—")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Strokes, points and stroke length per sketch in the style world and in each real set stored as strokes."}, "image": {"alt": "Three histograms, one line per dataset, of strokes per sketch, points per sketch and length per sketch."}}
stroke_sets = ["style_world"] + [n for n in found if found[n].strokes is not None]
if len(stroke_sets) > 1:
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    top = {c: max(per_sketch[n][c].quantile(0.99) for n in stroke_sets) for c in ("points", "length")}
    bins = [np.arange(0.5, 40.5), np.linspace(0, top["points"], 41), np.linspace(0, top["length"], 41)]
    for name in stroke_sets:
        t = per_sketch[name]
        for ax, col, b in zip(axes, ["strokes", "points", "length"], bins):
            ax.hist(t[col], bins=b, density=True, histtype="step", label=name)
            ax.set_xlabel(f"{col} per sketch" + (" (canvas units)" if col == "length" else ""))
    axes[0].legend()
    plt.tight_layout()
    plt.show()
else:
    absent("histograms of strokes, points and stroke length per sketch", ["chairv2", "shoev2", "quickdraw"])

if "quickdraw_sample" in per_sketch:
    w, q = per_sketch["style_world"], per_sketch["quickdraw_sample"]
    prose(
        f"The style world's drawers make a median of {w['strokes'].median():.0f} strokes and {w['points'].median():.0f} "
        f"points a sketch ({w['points_per_stroke'].median():.1f} points a stroke); the QuickDraw players of the shipped "
        f"sample {q['strokes'].median():.0f} strokes and {q['points'].median():.0f} points "
        f"({q['points_per_stroke'].median():.1f} a stroke, after QuickDraw's own simplification)."
    )
if "chairv2" in per_sketch:
    t = per_sketch["chairv2"]
    prose(
        f"A ChairV2 sketch has a median of {t['strokes'].median():.0f} strokes and {t['points'].median():.0f} "
        f"points, and at most {t['strokes'].max():.0f} strokes; {(t['strokes'] == t['strokes'].max()).mean():.0%} "
        "of the sketches have exactly that many, a pile-up at the maximum that suggests the published file keeps "
        "only the first strokes of longer drawings. QuickDraw's doodles, made against a 20-second clock, have "
        "fewer and longer strokes. These are the numbers the style world's drawers should resemble."
    )

# %% [markdown]
# ## Statistics by sketch index: shoes304 and ChairV2
#
# Both fine-grained sets hold several sketches of each photo, numbered by a suffix *k*. Is *k*
# a person, so that "all sketches with k = 1" share a style? The datasets do not say
# (`../shared/data/README.md`). If *k* marked a drawer, or a fixed drawing session, statistics
# would differ systematically by *k*; if *k* were an arbitrary number, they would not. The
# sketches k = 1, 2, 3 are of the **same photos**, so the test is blocked by photo: a Friedman
# test (ranks within each photo, so a photo that is hard to draw does not count as a
# difference between indices; `sbir_core.stats.friedman_by_block`), on the photos with all
# three sketches (below). Several statistics are tested, so the p-values are
# adjusted for the number of tests run with Holm's method (`sbir_core.stats.holm`), and a statistic
# differs by *k* only when its adjusted p-value is below 0.05. For the shoes we also have 13 part attributes
# per sketch and per photo: their agreement measures how faithfully each sketch index draws the
# parts the photo has.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Statistics by sketch index k in shoes304 and ChairV2, on the photos with all three sketches: the mean for k = 1, 2 and 3, the Friedman chi-squared statistic blocked by photo, and its p-value, raw and Holm-adjusted over all the tests.", "classes": "sbir-table"}}
from IPython.display import display

from sbir_core.stats import friedman_by_block, holm

by_index, tests = {}, []
if "shoes304" in per_sketch:
    t = per_sketch["shoes304"].copy()
    data = found["shoes304"]
    if "attr_0" in data.sketches:
        attrs = [f"attr_{j}" for j in range(13)]
        photo_attr = data.photos.set_index("photo_id").loc[data.sketches["photo_id"], attrs].to_numpy()
        t["attribute_agreement"] = (data.sketches[attrs].to_numpy() == photo_attr).mean(1)
    by_index["shoes304"] = (t, [c for c in ["ink", "ink_pixels", "ink_extent", "attribute_agreement"] if c in t])
if "chairv2" in per_sketch:
    t = per_sketch["chairv2"].copy()
    t["sketch_index"] = t["sketch_index"].where(t["sketch_index"].isin(["1", "2", "3"]), "other")
    by_index["chairv2"] = (t, ["strokes", "points", "points_per_stroke", "length"])
for name, (t, cols) in by_index.items():
    means = t.groupby("sketch_index")[cols].mean()
    for k, rec in means.iterrows():
        for col, value in rec.items():
            rows.append(
                {
                    "dataset": name,
                    "method": "data",
                    "protocol": f"sketch_index={k}",
                    "split": "all",
                    "metric": f"{col}_mean",
                    "value": float(value),
                }
            )
    for col in cols:
        res = friedman_by_block(t, col, "sketch_index", "instance", ["1", "2", "3"])
        tests.append(
            {
                "dataset": name,
                "statistic": col,
                "photos": res["n_blocks"],
                **{f"mean, k={k}": v for k, v in res["means"].items()},
                "Friedman chi2": res["statistic"],
                "p": res["p"],
            }
        )
if tests:
    tests = pd.DataFrame(tests)
    tests["p, Holm"] = holm(tests["p"])
    for rec in tests.to_dict("records"):
        for metric, key in (("chi2", "Friedman chi2"), ("p", "p"), ("p_holm", "p, Holm")):
            rows.append(
                {
                    "dataset": rec["dataset"],
                    "method": "friedman",
                    "protocol": "sketch_index_1_2_3_by_photo",
                    "split": "all",
                    "metric": f"{rec['statistic']}_{metric}",
                    "value": float(rec[key]),
                }
            )
    display(
        tests.set_index(["dataset", "statistic"]).style.format(
            {"p": "{:.2g}", "p, Holm": "{:.2g}", "Friedman chi2": "{:.1f}"}, precision=3
        )
    )
    lines = []
    for rec in tests.to_dict("records"):
        by_k = ", ".join(f"{rec[f'mean, k={k}']:.3g}" for k in ("1", "2", "3"))
        verdict = "differs by k" if rec["p, Holm"] < 0.05 else "no difference by k shown"
        lines.append(
            f"- {rec['dataset']}, {rec['statistic'].replace('_', ' ')}: {by_k} for k = 1, 2, 3 "
            f"(Holm-adjusted p = {rec['p, Holm']:.2g}, {len(tests)} tests): **{verdict}**."
        )
    prose("Means by sketch index on the photos with all three sketches, and the verdicts:\n\n" + "\n".join(lines))
else:
    absent(
        "whether the sketch index k of shoes304 and ChairV2 marks a drawer: statistics by k with a Friedman "
        "test blocked by photo, Holm-adjusted",
        ["shoes304", "chairv2"],
    )

# %% [markdown]
# A small adjusted p-value says the sketch index is not arbitrary: sketches with the same *k*
# share something, such as the drawer or the session, that shows in how they are drawn, even
# when they are equally faithful to the photo. A large one is what an arbitrary numbering
# gives. Neither makes *k* a user id: the book treats a systematic difference as a hint that
# *k* may group drawers (so a split that holds out one *k* is a rough proxy for unseen users),
# and otherwise treats *k* as a plain sketch index. Style is measured on the style world,
# where drawers are known; these sets serve retrieval across sketches of the same object and
# partial-sketch studies.

# %% tags=["remove-cell"]
# with no dataset found there is nothing to record, but the (empty) results file is still written
ch.rows = rows
ch.save()
print(f"{len(rows)} metric rows saved")
