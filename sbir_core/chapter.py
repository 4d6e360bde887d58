"""What chapters import: setup, glue, a rows collector, intervals, figures, tables and saving.

A chapter makes one ``Chapter`` after its parameters cell::

    ch = Chapter("04_triplet_baseline", SCALE, globals())
    ch.glue("acc1", 0.21)                   # glued as c04_acc1
    ch.add(dataset="style_world", method="triplet_sn", metric="acc_at_1", value=0.21,
           protocol="val_selected", setting="style_gap=2", split="test_unseen", seed=0)
    ch.add_interval(iv, dataset=..., method=..., metric="acc_at_1", ...)
    ch.save()                               # metrics.csv, params.yaml (the parameters cell only), env.json

One vocabulary for the ``split`` column (``SPLITS``): "val", "test", and "test_seen" / "test_unseen"
for the test objects drawn by seen and unseen drawers. A paired difference names its two arms with
" - " in the method column (two methods on the same queries) or in the split column (one method on
two query sets), and its metric is "diff_<metric>". The swept condition goes in ``setting``, as
"name=value" (``style_gap=2``), never inside another column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sbir_core import claims as CL
from sbir_core import stats as ST
from sbir_core.claims import arm
from sbir_core.results import COLUMNS, load_reference, metric_rows, save_results

SPLITS = ("train", "val", "test", "test_seen", "test_unseen", "all")
_KEY = re.compile(r"^[a-z0-9_]+$")


def setup(seed: int = 0):
    """The chapters' first cell: seeds, threads, determinism, plot style (``sbir_core.setup``)."""
    from sbir_core.repro import setup as _setup

    return _setup(seed)


def setting(**values) -> str:
    """The ``setting`` column for a swept condition: ``setting(style_gap=2)`` -> "style_gap=2"."""
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items()))


class Chapter:
    """A chapter's rows, glue and results; ``namespace`` is the notebook's ``globals()``."""

    def __init__(self, name: str, scale: str, namespace: dict):
        if not re.fullmatch(r"\d\d_[a-z0-9_]+", name):
            raise ValueError(f"chapter names look like 04_triplet_baseline, got {name!r}")
        self.name, self.scale, self.namespace = name, scale, namespace
        self.prefix = f"c{name[:2]}_"
        self.rows: list[dict] = []

    # -- glue
    def glue(self, key: str, value, display: bool = False):
        """``myst_nb.glue`` under ``c<NN>_<key>``; NumPy scalars become Python numbers (NumPy 2 prints
        ``np.float64(0.5)``, which the book's ``:.1%`` formatting cannot parse)."""
        from myst_nb import glue as _glue

        if not _KEY.match(key):
            raise ValueError(
                f"glue key {key!r}: lower-case letters, digits and _ only (the c{self.name[:2]}_ prefix is added)"
            )
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            value = value.item()
        return _glue(self.prefix + key, value, display=display)

    def glue_interval(self, key: str, iv: ST.Interval) -> None:
        """Glue an interval's estimate as ``key`` and its half-width, bounds as ``key_half``, ``_lo``, ``_hi``."""
        self.glue(key, iv.estimate)
        self.glue(f"{key}_half", iv.half)
        self.glue(f"{key}_lo", iv.lo)
        self.glue(f"{key}_hi", iv.hi)

    # -- rows
    def add(
        self,
        dataset: str,
        method: str,
        metric: str,
        value: float,
        protocol: str = "",
        setting: str = "",
        split: str = "test",
        seed: int = -1,
    ) -> None:
        """One tidy metric row (``results.COLUMNS``)."""
        base = split.split(" - ")
        if any(s not in SPLITS for s in base):
            raise ValueError(f"split {split!r}: use {SPLITS} (or 'a - b' of two of them)")
        self.rows.append(
            dict(
                dataset=dataset,
                method=method,
                protocol=protocol,
                setting=setting,
                split=split,
                metric=metric,
                value=float(value),
                seed=int(seed),
            )
        )

    def add_interval(
        self,
        iv: ST.Interval,
        dataset: str,
        method: str,
        metric: str,
        protocol: str = "",
        setting: str = "",
        split: str = "test",
    ) -> None:
        """Three rows: the estimate as ``metric`` and its bounds as ``metric_ci95_lo`` / ``_ci95_hi`` (seed -1)."""
        for suffix, value in (("", iv.estimate), ("_ci95_lo", iv.lo), ("_ci95_hi", iv.hi)):
            self.add(dataset, method, metric + suffix, value, protocol, setting, split)

    def claim(
        self,
        claim_id: str,
        effect,
        reference: ST.Arm,
        dataset: str,
        method: str,
        split: str,
        protocol: str = "",
        where: str = "",
        other: dict | None = None,
        metric: str | None = None,
    ) -> CL.Evidence:
        """A claim's evidence (``claims.assess``: the raw and relative effect with intervals, the paper's
        relative effect, the minimum detectable effect, the outcome code and whether it is fragile) as
        rows under ``setting`` "claim=<id>" (then ``where``, e.g. "k=5", the setting the paper's effect
        is looked up at; ``metric`` only where the protocol lacks the claim's own). Returns the
        ``Evidence`` (``.outcome``, ``.text()``)."""
        ev = CL.assess(claim_id, effect, reference, where, other, metric)
        tag = ",".join([f"claim={claim_id}"] + ([where] if where else []) + ([f"metric={metric}"] if metric else []))
        for r in CL.evidence_rows(ev):
            self.add(dataset, method, r["metric"], r["value"], protocol, tag, split)
        return ev

    def design_text(self, dataset: str = "style_world") -> str:
        """A paragraph on the power of this chapter's design for its claims on ``dataset``, with this run
        as the pilot: the seed and test-sample parts of the error and the seeds that would bring the
        paper's effects within reach (``claims.design_text``)."""
        frame = self.frame()
        return CL.design_text(CL.design(CL.evidence_table(frame[frame["dataset"] == dataset])))

    def scope(self, dataset: str, protocol: str = "", setting: str = "", columns=("instance", "drawer")) -> Scope:
        """Rows of one dataset, protocol and setting, recorded from evaluations (``Scope``)."""
        return Scope(self, dataset, protocol, setting, columns)

    def frame(self) -> pd.DataFrame:
        return metric_rows(self.name, self.rows)

    def flag_floors(self) -> int:
        """For every recorded score with a 95% interval and a trivial value (``book.trivial_values``: the best of
        chance, the category oracle and the untrained model at the same place), a ``learnt_<metric>`` row: 1 when
        the interval's lower end clears the trivial value, else 0 (checked exactly, so a score that reaches its
        floor is said to, and one that leaves it changes the row). Returns how many scores reach their floor."""
        from sbir_core.book import trivial_values

        df = self.frame()
        df["trivial"] = trivial_values(df.assign(chapter=self.name))
        key = ["dataset", "method", "protocol", "setting", "split"]
        lows = df[df["metric"].str.endswith("_ci95_lo")].set_index([*key, "metric"])["value"]
        done = {tuple(r[k] for k in [*key, "metric"]) for r in df.to_dict("records")}  # flags the chapter set itself
        at_floor = 0
        for r in df[df["trivial"].notna() & (df["seed"] == -1)].to_dict("records"):
            lo = lows.get((*(r[k] for k in key), f"{r['metric']}_ci95_lo"))
            flag = (*(r[k] for k in key), f"learnt_{r['metric']}")
            if lo is None or flag in done:
                continue
            done.add(flag)
            ok = float(lo) > r["trivial"]
            at_floor += not ok
            self.add(
                r["dataset"], r["method"], f"learnt_{r['metric']}", float(ok), r["protocol"], r["setting"], r["split"]
            )
        return at_floor

    def params(self) -> dict:
        """The values of the chapter's parameters cell (and nothing else) from the namespace."""
        from sbir_core.book import chapter_defaults

        names = chapter_defaults(self.name)
        return {k: self.namespace.get(k, v) for k, v in names.items()}

    def save(self, flag_floors: bool = False):
        """Write ``paper_runs/<scale>/<chapter>/`` (metrics.csv, params.yaml, env.json); return the folder.
        flag_floors: first record which scores clear their floor (``flag_floors``)."""
        if flag_floors:
            self.flag_floors()
        return save_results(self.name, self.scale, self.frame(), self.params())


# ---------------------------------------------------------------------- recording from evaluations


@dataclass
class Recorded:
    """An interval a scope recorded: the ``Interval`` (its fields are read through) and its text for tables."""

    iv: ST.Interval
    text: str

    def __getattr__(self, name):
        return getattr(self.iv, name)


class Scope:
    """The rows of one dataset, protocol and setting, recorded from evaluations.

    Each call takes one ``Evaluation`` per seed, computes the interval (seeds and test sample, clusters
    ``columns``), adds its rows and, with ``glue="key"``, glues the estimate as ``key`` and its half-width
    and bounds as ``key_half``, ``key_lo``, ``key_hi``; it returns the ``Recorded`` interval with its text.
    """

    def __init__(
        self, ch: Chapter, dataset: str, protocol: str = "", setting: str = "", columns=("instance", "drawer")
    ):
        self.ch, self.dataset, self.protocol, self.setting, self.columns = ch, dataset, protocol, setting, columns

    def _record(self, iv: ST.Interval, method: str, metric: str, split: str, glue: str | None, text: str) -> Recorded:
        self.ch.add_interval(iv, self.dataset, method, metric, self.protocol, self.setting, split)
        if glue:
            self.ch.glue_interval(glue, iv)
        return Recorded(iv, text)

    def interval(
        self, evaluations, metric: str, method: str, split: str = "test", glue: str | None = None, percent: bool = True
    ) -> Recorded:
        """A method's ``metric`` over its seeds and the test sample (a proportion, kept within [0, 1])."""
        iv = interval_of(list(evaluations), metric, self.columns)
        return self._record(iv, method, metric, split, glue, fmt(iv, percent))

    def paired(
        self,
        a,
        b,
        metric: str,
        method: str,
        split: str = "test",
        same_queries: bool = True,
        glue: str | None = None,
        percent: bool = True,
    ) -> Recorded:
        """The paired difference a - b of ``metric`` (recorded as ``diff_<metric>``)."""
        iv = paired_of(list(a), list(b), metric, self.columns, same_queries)
        return self._record(iv, method, f"diff_{metric}", split, glue, fmt(iv, percent, signed=True))

    def value(
        self, method: str, metric: str, value: float, split: str = "test", seed: int = -1, protocol: str | None = None
    ) -> float:
        """One number (a trivial value, a count, one seed's score)."""
        self.ch.add(
            self.dataset,
            method,
            metric,
            value,
            self.protocol if protocol is None else protocol,
            self.setting,
            split,
            seed,
        )
        return float(value)

    def learnt(
        self, evaluations, floors: dict, metric: str, method: str, split: str = "test", glue: str | None = None
    ) -> bool:
        """Whether ``method`` is shown to have learnt: its paired difference from each floor (name -> one
        evaluation per seed, on the same queries) recorded as ``<method> - <floor>`` (glued as
        ``<glue>_<floor>`` with ``glue``), and a ``learnt_<metric>`` row, 1 when every difference's interval
        lies above zero, else 0 (checked exactly: a model that stops clearing a floor, or starts to, changes it)."""
        ok = True
        for name, evs in floors.items():
            key = f"{glue}_{name}" if glue else None
            ok &= self.paired(evaluations, evs, metric, f"{method} - {name}", split, glue=key).lo > 0
        self.value(method, f"learnt_{metric}", float(ok), split)
        return bool(ok)

    def per_seed(self, evaluations, metric: str, method: str, seeds, split: str = "test") -> None:
        """Each seed's value of ``metric`` (kept, not checked: the intervals and differences check them)."""
        for s, ev in zip(seeds, evaluations):
            self.value(method, metric, ev.metrics[metric], split, s)

    def arm(self, evaluations, metric: str, seeds, name: str, floors: dict | None = None, seed_var=None) -> ST.Arm:
        """A claim's arm (``claims.arm``) with this scope's clusters."""
        return arm(evaluations, metric, seeds, self.columns, name, floors, seed_var)

    def claim(
        self,
        claim_id: str,
        effect,
        reference: ST.Arm,
        method: str,
        split: str = "test",
        where: str = "",
        other: dict | None = None,
        metric: str | None = None,
    ) -> CL.Evidence:
        """A claim's evidence in this scope (``Chapter.claim``)."""
        return self.ch.claim(
            claim_id, effect, reference, self.dataset, method, split, self.protocol, where, other, metric
        )


# ---------------------------------------------------------------------- intervals from evaluations


def outcomes(evaluations, metric: str) -> np.ndarray:
    """(S, Q) per-seed, per-query outcomes of ``metric`` from one ``Evaluation`` per seed."""
    return np.stack([ev.outcome(metric) for ev in evaluations])


def clusters(table: pd.DataFrame, columns=("instance", "drawer")) -> dict:
    """The cluster labels of the queries for ``stats``: the columns that exist and are not blank."""
    return {c: table[c].to_numpy() for c in columns if c in table and (table[c] != "").any()}


def interval_of(evaluations, metric: str, columns=("instance", "drawer"), **kw) -> ST.Interval:
    """The interval of ``metric`` (a proportion, kept within [0, 1]) over seeds and test sample, from one
    ``Evaluation`` per seed."""
    return ST.interval(outcomes(evaluations, metric), clusters(evaluations[0].table, columns), bounds=(0.0, 1.0), **kw)


def paired_of(
    evals_a, evals_b, metric: str, columns=("instance", "drawer"), same_queries: bool = True, **kw
) -> ST.Interval:
    """The paired difference a - b of ``metric`` (two methods on the same queries, or one method on two
    query sets of the same objects with ``same_queries=False``)."""
    a, b = outcomes(evals_a, metric), outcomes(evals_b, metric)
    if same_queries:
        return ST.paired_difference(a, b, clusters(evals_a[0].table, columns), **kw)
    return ST.paired_difference(a, b, clusters(evals_a[0].table, columns), clusters(evals_b[0].table, columns), **kw)


def fmt(iv: ST.Interval, percent: bool = True, signed: bool = False) -> str:
    """ "12.3% [10.1, 14.5]" (points for a difference with ``signed``)."""
    if percent:
        sign = "+" if signed and iv.estimate > 0 else ""
        return f"{sign}{100 * iv.estimate:.1f} [{100 * iv.lo:.1f}, {100 * iv.hi:.1f}]" + ("" if signed else " %")
    return f"{iv.estimate:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]"


# ---------------------------------------------------------------------- figures and tables


def training_curves(
    histories: dict,
    panels=(("loss", "training loss"), ("val/acc_at_1", "validation Acc@1")),
    xlabel: str = "step",
    chance: float | None = None,
    title: str | None = None,
):
    """The one training-curves figure: for each run (label -> history with a ``step`` column and, over seeds,
    a ``seed`` column) the mean over seeds of each panel's column, with its range over seeds as a band."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.2), squeeze=False)
    for label, hist in histories.items():
        g = hist.groupby("step")
        for ax, (col, name) in zip(axes[0], panels):
            if col not in hist:
                continue
            mean = g[col].mean()
            (line,) = ax.plot(mean.index, mean.values, "o-", ms=3, label=label)
            if "seed" in hist and hist["seed"].nunique() > 1:
                ax.fill_between(mean.index, g[col].min(), g[col].max(), alpha=0.15, color=line.get_color())
            ax.set(xlabel=xlabel, ylabel=name)
    if chance is not None:
        for ax, (col, _) in zip(axes[0], panels):
            if "acc" in col:
                ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
    axes[0][-1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.show()
    return fig


def gap_curve_figure(
    curve: pd.DataFrame,
    chance: float,
    title: str,
    seen: ST.Interval | None = None,
    ylabel: str = "Acc@10 within category (val-selected)",
):
    """The style-gap curve: a score (``estimate``, ``lo``, ``hi``) against ``gap``, one line and band per
    ``who`` in order of appearance, chance as a dotted line, and the seen drawers' interval as a band."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    if seen is not None:
        ax.axhline(seen.estimate, color="k", lw=1.2, label="seen drawers")
        ax.axhspan(seen.lo, seen.hi, color="k", alpha=0.08)
    for who, grp in curve.groupby("who", sort=False):
        ax.plot(grp["gap"], grp["estimate"], "o-", label=who)
        ax.fill_between(grp["gap"], grp["lo"], grp["hi"], alpha=0.2)
    ax.axhline(chance, color="grey", ls=":", lw=1, label="chance = category oracle")
    ax.set(xlabel="style_gap of the unseen drawers", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()
    return fig


def two_stage_figure(points: pd.DataFrame, exhaustive: dict, title: str):
    """Two-stage retrieval: Acc@10 (``acc10``, an interval) against the head passes saved (``ratio``), one line per
    ``reranker``, beside each reranker's exhaustive Acc@10 (``exhaustive``: reranker -> interval) as a dashed line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for name, grp in points.groupby("reranker", sort=False):
        est = np.array([c.estimate for c in grp["acc10"]])
        err = [est - [c.lo for c in grp["acc10"]], [c.hi for c in grp["acc10"]] - est]
        (line,) = ax.errorbar(grp["ratio"], est, yerr=err, fmt="o-", capsize=3, label=f"{name}, two-stage")[:1]
        ax.axhline(exhaustive[name].estimate, ls="--", lw=1, color=line.get_color(), label=f"{name}, exhaustive")
    ax.axvline(10, color="grey", ls=":", lw=1)
    ax.set(xscale="log", xlabel="head passes saved (exhaustive / two-stage)", ylabel="Acc@10", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    plt.show()
    return fig


def nodes_figure(sketch, photo, sketch_boxes, photo_boxes, attention):
    """One (sketch, photo) pair's node boxes, numbered (sketch (S, S) ink = 1, photo (3, S, S) in [-1, 1]), and the
    first level's sketch-to-photo attention (ks, kp), or None."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 1, 1.3]})
    axes[0].imshow(1 - np.asarray(sketch), cmap="gray", vmin=0, vmax=1)
    axes[1].imshow(np.clip((np.asarray(photo).transpose(1, 2, 0) + 1) / 2, 0, 1))
    for ax, boxes, what in ((axes[0], sketch_boxes, "sketch nodes (strokes)"), (axes[1], photo_boxes, "photo nodes")):
        for j, (x1, y1, x2, y2) in enumerate(boxes):
            colour = plt.cm.tab10(j % 10)
            ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, lw=1, color=colour))
            ax.text(x1, y1 + 3, str(j), color=colour, fontsize=7)
        ax.set(title=what, xticks=[], yticks=[])
    if attention is not None:
        img = axes[2].imshow(attention, cmap="viridis", aspect="auto")
        fig.colorbar(img, ax=axes[2])
    axes[2].set(xlabel="photo node", ylabel="sketch node", title="first-level attention, sketch → photo")
    fig.tight_layout()
    plt.show()
    return fig


def retrieval_grid(view, method, rows, k: int = 5, title: str | None = None, ranked_on=None):
    """A figure: each query of ``rows`` (sketch on the left, then its style exemplars when the view has
    them) and its ``k`` nearest candidates, the true photo (a category view: each relevant image) outlined
    in green. Uses the method's own ranking over the query's candidates, computed on ``ranked_on`` (the
    same view as trunk features, for a method that reads them) or on ``view``."""
    import matplotlib.pyplot as plt
    import torch

    from sbir_core.evaluation import distances

    rows = list(rows)
    was = method.training
    method.eval()
    src = view if ranked_on is None else ranked_on
    idx = torch.as_tensor(rows)
    style = src.style[idx] if getattr(method, "styled", False) and getattr(src, "style", None) is not None else None
    try:
        dist = distances(method, src.queries[idx], src.gallery, style=style)
    finally:
        method.train(was)
    cand = view.candidates() if hasattr(view, "candidates") else None
    if cand is not None:
        dist = np.where(cand[rows], dist, np.inf)
    hit = view.relevant()[rows] if hasattr(view, "relevant") else None
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    shown = [] if getattr(view, "style", None) is None else list(range(view.style.shape[1]))
    n = 1 + len(shown) + k
    fig, axes = plt.subplots(len(rows), n, figsize=(1.25 * n, 1.3 * len(rows)), squeeze=False)
    for r, (q, near) in enumerate(zip(rows, nearest)):
        axes[r, 0].imshow(_image(view.queries[q]), cmap="gray", vmin=0, vmax=1)
        for e in shown:
            axes[r, 1 + e].imshow(_image(view.style[q, e]))
        for c, g in enumerate(near, start=1 + len(shown)):
            axes[r, c].imshow(_image(view.gallery[g]), cmap="gray", vmin=0, vmax=1)
            if hit[r, g] if hit is not None else g == int(view.target[q]):
                for side in axes[r, c].spines.values():
                    side.set(color="tab:green", linewidth=4)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("query", fontsize=9)
    for e in shown:
        axes[0, 1 + e].set_title(f"style {e + 1}", fontsize=9)
    for c in range(1, k + 1):
        axes[0, len(shown) + c].set_title(f"#{c}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def image_row(images, titles, title: str | None = None):
    """A figure: one row of view images (sketches (1, S, S), photos (3, S, S)) with their titles."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images), figsize=(1.3 * len(images), 1.6), squeeze=False)
    for ax, img, name in zip(axes[0], images, titles):
        ax.imshow(_image(img), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _image(t):
    """A view tensor as something imshow draws: sketches (1, S, S) ink = 1 -> black on white; photos -> RGB."""
    x = t.detach().cpu().numpy()
    if x.shape[0] == 1:
        return 1 - x[0]
    return np.clip((x.transpose(1, 2, 0) + 1) / 2, 0, 1)


def metric_label(metric: str) -> str:
    """A metric's name as a reader reads it: ``acc_at_5`` -> "Acc@5", ``map_all`` -> "mAP@all",
    ``map_all_sketch_only_best_medium`` -> "mAP@all, sketch only best medium"; other names with spaces."""
    import re

    if m := re.fullmatch(r"acc_at_(\d+)", metric):
        return f"Acc@{m[1]}"
    for raw, shown in (("map_all", "mAP@all"), ("map_at_", "mAP@"), ("precision_at_", "P@")):
        if metric.startswith(raw):
            rest = metric[len(raw) :]
            head, _, tail = rest.partition("_") if raw != "map_all" else ("", "", rest.lstrip("_"))
            return f"{shown}{head}" + (f", {tail.replace('_', ' ')}" if tail else "")
    return metric.replace("_", " ")


def published_vs_ours(
    reference: str, ours: pd.DataFrame, match: dict | None = None, method: str | None = None
) -> pd.DataFrame:
    """The published numbers of ``paper_runs/reference/<reference>.csv`` and ours, like beside like.

    ours: rows with dataset, metric, value (a fraction) and optional ``kind`` ("real" or "style world"),
    ``protocol`` and ``backbone``; values are shown in percent as the papers print them. ``match``
    renames our datasets. ``method`` keeps that method's published rows only (a reference file that
    holds a paper's baselines too). One row per (kind, who, dataset), one column per metric (several published
    figures for one number are all shown, "a / b"), then selection and backbone: real data first
    (published, then this book), the style world apart at the end.
    """
    ref = load_reference(reference).copy()
    if method is not None:
        if method not in set(ref["method"]):
            raise KeyError(f"{reference}: no published rows of method {method!r} (has {sorted(set(ref['method']))})")
        ref = ref[ref["method"] == method]
    ref["value"] = pd.to_numeric(ref["value"])
    ref = ref.assign(
        who="published",
        kind="real",
        protocol="best on test",
        backbone=ref["backbone"].str.split("(").str[0].str.strip().replace("not stated in the table", "not stated"),
    )
    ours = ours.copy()
    ours["value"] = 100 * ours["value"]
    if match:
        ours["dataset"] = ours["dataset"].replace(match)
    ours = ours.assign(who="this book")
    if "kind" not in ours:
        ours["kind"] = "real"
    both = pd.concat([ref, ours], ignore_index=True)
    both["metric"] = [metric_label(m) + (" (%)" if m.startswith("acc_at_") else "") for m in both["metric"]]
    index = ["kind", "who", "dataset"]
    # as printed: the papers' two decimals, ours to one
    both["shown"] = [f"{v:.2f}" if w == "published" else f"{v:.1f}" for v, w in zip(both["value"], both["who"])]
    values = (
        both.groupby(index + ["metric"], sort=False)["shown"]
        .agg(lambda v: " / ".join(dict.fromkeys(v)))
        .unstack("metric")
    )
    info = both.groupby(index, sort=False)[["protocol", "backbone"]].agg(lambda v: " / ".join(dict.fromkeys(v)))
    table = values.join(info).reset_index()
    order = {("real", "published"): 0, ("real", "this book"): 1}
    table["_order"] = [order.get((k, w), 2) for k, w in zip(table["kind"], table["who"])]
    table = table.sort_values(["_order", "dataset"]).drop(columns="_order")
    table.columns.name = None
    return table.set_index(index).rename(columns={"protocol": "selection"}).fillna("")


__all__ = [
    "COLUMNS",
    "Chapter",
    "Recorded",
    "Scope",
    "SPLITS",
    "arm",
    "clusters",
    "fmt",
    "gap_curve_figure",
    "image_row",
    "interval_of",
    "metric_label",
    "outcomes",
    "paired_of",
    "published_vs_ours",
    "retrieval_grid",
    "setting",
    "setup",
    "training_curves",
]


def note(text: str) -> None:
    """A MyST ``{note}`` box in the rendered book (Markdown output; ``nb_render_markdown_format: myst``)."""
    from IPython.display import Markdown, display

    display(Markdown(f":::{{note}}\n{text}\n:::"))


def prose(text: str) -> None:
    """Prose made from results (a paragraph whose numbers exist only when its data does)."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def absent(what: str, datasets, how: str = "SBIR_DATA=/path/to/datasets make book") -> None:
    """The one note a section whose data is absent shows: what it would show and how to enable it."""
    names = ", ".join(f"`{d}`" for d in ([datasets] if isinstance(datasets, str) else datasets))
    note(
        f"**Not run here: {names} not found.** With the data this section shows {what}. "
        f"To enable it, point `SBIR_DATA` at the folder holding the datasets (README, *Real data*): "
        f"`{how}`."
    )
