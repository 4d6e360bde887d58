"""One home for each chapter's runs: a chapter's parameters -> the (spec, views, config) it trains.

A chapter, the playground and ``train_cli`` all build a run here, so they ask the store of trained
models for the same key. A chapter that builds on chapter 4 reads chapter 4's parameters
(``load_params("04_triplet_baseline", scale)``) and passes them to ``StyleBench``, which makes the
style world, its views and its trunk features, and chapter 4's baseline and control runs, exactly as
chapter 4 makes them; the later chapters' own recipes take the bench and their own parameters.

``book run --set NAME=VALUE`` reaches every chapter's parameters of that run, the ones a later
chapter reads from chapter 4 included: ``load_params`` applies the overrides in ``$SBIR_PARAMS``
(JSON) to every chapter whose parameters have that name.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from sbir_core import benchmark as B
from sbir_core.errors import SBIRError
from sbir_core.features import feature_view
from sbir_core.models.base import MethodSpec
from sbir_core.paths import chapter_config
from sbir_core.runs import MultiSeedResult, fingerprint, run_identity
from sbir_core.train import TrainConfig, train_seeds

OVERRIDES_ENV = "SBIR_PARAMS"
BASELINE = "04_triplet_baseline"


class RecipeError(SBIRError, ValueError):
    """A chapter's parameters that do not make a run (the message names the parameter)."""


def load_params(chapter: str, scale: str) -> dict:
    """The parameters of one chapter at one scale: its YAML config (``paths.chapter_config``), then the run's
    overrides (``$SBIR_PARAMS``, ``merge``d) for the names the config has."""
    params = chapter_config(chapter, scale)
    overrides = json.loads(os.environ.get(OVERRIDES_ENV) or "{}")
    return merge(params, {k: v for k, v in overrides.items() if k in params})


def merge(params: dict, overrides: dict) -> dict:
    """``params`` with ``overrides``; a mapping overrides a mapping key by key (``WORLD={"seed": 7}`` changes
    the world's seed and keeps its other settings)."""
    return params | {
        k: params[k] | v if isinstance(v, dict) and isinstance(params.get(k), dict) else v for k, v in overrides.items()
    }


def checkpoint_dir(name: str | None) -> str | None:
    """A ``CHECKPOINT_DIR`` parameter as a folder: a relative one under the run's results folder (``paper_runs/``,
    or ``book run --out``'s), so a run into another folder does not leave checkpoints in the book's; "" -> None."""
    from sbir_core.results import results_root

    if not name:
        return None
    return str(name if os.path.isabs(name) else results_root() / name)


def own_config(p: dict, steps: str, batch: str, lr: str, eval_every: str, /, **changes) -> TrainConfig:
    """The TrainConfig of a chapter's own method from the names of its parameters (steps, batch size, learning rate,
    evaluation interval), Acc@1 and Acc@10 on validation, ``PROGRESS`` and ``DEVICE``; ``changes`` on top."""
    config = TrainConfig(
        steps=p[steps], batch_size=p[batch], lr=p[lr], eval_every=p[eval_every], ks=(1, 10), progress=p["PROGRESS"]
    )
    return config.replace(device=p["DEVICE"], **changes)


@dataclass(frozen=True)
class Run:
    """A run a chapter trains: spec, views and config (the seed is set per call)."""

    spec: MethodSpec
    train: object
    val: object | None
    tests: dict | None
    config: TrainConfig
    init: object = None  # seed -> (name, state) the method starts from (``train.train_run``), or None
    val_adapt: tuple | None = None  # (column, support_for, rule): validation adapts first (``train.train_run``)

    def fit(self, seeds, store: bool = True, prefixes=()) -> MultiSeedResult:
        """Each seed trained (or loaded from the store of trained models); ``prefixes``: shorter step counts
        stored as well, as those runs (``train.train_run``)."""
        return train_seeds(
            self.spec,
            self.train,
            self.val,
            self.tests,
            self.config,
            list(seeds),
            store,
            self.init,
            self.val_adapt,
            prefixes,
        )

    def methods(self, seeds) -> list:
        """Each seed's selected model, in eval mode."""
        return self.fit(seeds).methods(self.spec)

    def key(self, seed: int) -> str:
        """The store key of one seed's run."""
        init = self.init(seed)[0] if self.init else None
        return fingerprint(
            run_identity(
                self.spec, self.train, self.val, self.tests, self.config.replace(seed=seed), init, self.val_adapt
            )
        )

    def starts(self):
        """seed -> (this run's store key, a function giving its trained state): a later run that starts from this
        one (``init``); the state is loaded, or this run trained, only when the later run is trained."""
        return lambda seed: (self.key(seed), lambda: self.fit([seed]).runs[0].best_state)


class Views:
    """The benchmark's views of one world, each made when first asked for (``benchmark.VIEW_NAMES``)."""

    def __init__(self, data, make):
        self.data, self._make, self._made = data, make, {}

    def __getattr__(self, name: str):
        if name not in B.VIEW_NAMES:
            raise AttributeError(name)
        if name not in self._made:
            self._made[name] = self._make(name)
        return self._made[name]

    @property
    def tests(self) -> dict:
        return {"test_seen": self.test_seen, "test_unseen": self.test_unseen}

    def forget(self, name: str) -> None:
        """Let go of view ``name`` (made again when next asked for)."""
        self._made.pop(name, None)


class StyleBench:
    """Chapter 4's style world, views, trunk features and runs, from chapter 4's parameters ``p``.

    ``views(gap)``: the benchmark's image views (``benchmark.StyleViews``) at a style gap (default
    ``STYLE_GAP``); ``features(gap)``: the same views as trunk features, the training view grouped by
    category (a negative is another photo of the anchor's category: QMUL's rule, whose sets hold one
    category each). ``baseline()`` and ``control(gap)`` are the Triplet-SN runs of chapter 4.
    """

    def __init__(self, p: dict):
        self.p = p
        self._views: dict = {}
        self._features: dict = {}

    # -- the world
    @property
    def gap(self) -> float:
        return float(self.p["STYLE_GAP"])

    def world(self, gap: float | None = None, detail_gap: float | None = None):
        """The style world at ``gap`` (default ``STYLE_GAP``) and ``detail_gap`` with ``WORLD``'s options. In the
        world of the headline numbers (``STYLE_GAP``, no detail gap), on which most claims are decided, every
        unseen drawer draws every test object where ``EVERY_UNSEEN_DRAWS_TEST`` (``unseen_sketches_per_instance``
        = ``drawers_unseen``): a larger test at evaluation cost only, since the world draws every sketch from its
        own seed, so that the training, validation, seen-drawer test and adaptation sketches are the same ones.
        The other style gaps' and the detail dial's worlds keep ``WORLD``'s (each such world would cost ~30 s
        more to draw, render and read: the book's 15 minutes do not hold it)."""
        from sbir_core.data.synthetic import WorldConfig

        gap = self.gap if gap is None else gap
        options = dict(self.p["WORLD"])
        if self.p.get("EVERY_UNSEEN_DRAWS_TEST") and gap == self.gap and not detail_gap:
            options["unseen_sketches_per_instance"] = options.get("drawers_unseen", WorldConfig.drawers_unseen)
        return B.world(gap, detail_gap, **options)

    def views(self, gap: float | None = None, detail_gap: float | None = None) -> Views:
        """The benchmark's image views of the world at ``gap`` (and ``detail_gap``), each made when first used."""
        key = (self.gap if gap is None else gap, detail_gap)
        if key not in self._views:
            data = self.world(*key)
            self._views[key] = Views(data, lambda n: B.style_view(data, n, self.p["IMAGE_SIZE"], self.p["LINE_WIDTH"]))
        return self._views[key]

    def features(self, gap: float | None = None, detail_gap: float | None = None) -> Views:
        """The views the methods read: trunk features where the trunk is frozen (``FREEZE_TRUNK``), else images;
        the training views grouped by category."""
        key = (self.gap if gap is None else gap, detail_gap)
        if key not in self._features:
            v = self.views(*key)

            def make(name):
                f = self.read(getattr(v, name))
                if f is not getattr(v, name):  # features replace the images: a kernel need not hold both
                    v.forget(name)  # (the unseen test's 6,656 sketches are 109 MB as float32 images)
                return f.within("category") if name in ("train", "control_train") else f

            self._features[key] = Views(v.data, make)
        return self._features[key]

    @cached_property
    def projection(self):
        """The principal directions of the training view's features (``FEATURE_DIMS`` of them; None: all)."""
        from sbir_core.features import principal

        k = int(self.p["FEATURE_DIMS"])
        if not k or not self.p["FREEZE_TRUNK"]:
            return None
        train = feature_view(self.views().train, self.p["TRUNK"])
        return principal(torch.cat([train.queries, train.gallery]), k)

    def read(self, view, projection="world"):
        """A view as the methods read it: its trunk features (frozen trunk), projected on ``projection`` (by
        default the world's; None: not projected), or the view itself (trunk trained end to end)."""
        if not self.p["FREEZE_TRUNK"]:
            return view
        from sbir_core.features import project

        proj = self.projection if isinstance(projection, str) else projection
        f = feature_view(view, self.p["TRUNK"])
        return f if proj is None else project(f, proj)

    # -- Triplet-SN
    @cached_property
    def spec(self) -> MethodSpec:
        """Triplet-SN: the Siamese head on the frozen trunk's features, or on the trunk trained end to end."""
        p = self.p
        if p["FREEZE_TRUNK"]:
            head = {"in_dim": self.feature_dim, **p["HEAD"]}
            return B.triplet_spec("mlp", head, p["MARGIN"], p["NEGATIVES"], p["FLIP"])
        return B.triplet_spec("trunk_mlp", {"trunk": p["TRUNK"], **p["HEAD"]}, p["MARGIN"], p["NEGATIVES"], p["FLIP"])

    @cached_property
    def feature_dim(self) -> int:
        """The size of the features the heads read: the projection's, or the trunk's."""
        from sbir_core.features import trunk
        from sbir_core.models.trunk import TrunkSpec

        return int(self.p["FEATURE_DIMS"]) or trunk(TrunkSpec.of(self.p["TRUNK"])).dim

    def config(self, **changes) -> TrainConfig:
        p = self.p
        base = TrainConfig(
            steps=p["STEPS"],
            batch_size=p["BATCH_SIZE"],
            lr=p["LR"],
            optimizer=p["OPTIMIZER"],
            eval_every=p["EVAL_EVERY"],
            ks=(1, 10),
            checkpoint_dir=checkpoint_dir(p.get("CHECKPOINT_DIR")),
            progress=p["PROGRESS"],
            device=p["DEVICE"],
        )
        return base.replace(**changes)

    @property
    def seeds(self) -> list[int]:
        return list(range(int(self.p["SEED"]), int(self.p["SEED"]) + int(self.p["N_SEEDS"])))

    def baseline(self) -> Run:
        """Triplet-SN on the seen drawers (validated on them), the test views attached: chapter 4's main run."""
        f = self.features()
        return Run(self.spec, f.train, f.val, f.tests, self.config())

    def control(self, gap: float | None = None) -> Run:
        """Triplet-SN trained on the unseen drawers' adaptation split at ``gap``: what their style allows."""
        f = self.features(gap)
        return Run(self.spec, f.control_train, f.control_val, None, self.config())

    def baselines(self) -> list:
        """Chapter 4's trained Triplet-SN models, one per seed (from the store)."""
        return self.baseline().methods(self.seeds)

    def real_views(self, name: str, view=None, photo_less=None) -> dict:
        """A real set's train / val / test views as trunk features (``view``: the view builder, fg_view by
        default; ``photo_less``: the builder for a set found without its photos, e.g. sketch_view), the training
        view grouped by category, with the set (``data``) and the image views (``images``); a DataError when the
        set cannot give them."""
        from sbir_core.data import load_dataset
        from sbir_core.data.views import fg_view
        from sbir_core.features import principal

        data = load_dataset(name, seed=int(self.p["SEED"]))
        make = photo_less if photo_less is not None and not len(data.photos) else (view or fg_view)
        images = {s: make(data, s, self.p["IMAGE_SIZE"], self.p["LINE_WIDTH"]) for s in ("train", "val", "test")}
        proj = None  # the set's own principal directions, from its training split
        if self.p["FREEZE_TRUNK"] and int(self.p["FEATURE_DIMS"]):
            train = feature_view(images["train"], self.p["TRUNK"])
            proj = principal(torch.cat([train.queries, train.gallery]), int(self.p["FEATURE_DIMS"]))
        out = {s: self.read(v, proj) for s, v in images.items()}
        out["train"] = out["train"].within("category")
        return out | {"data": data, "images": images, "projection": proj}

    def real(self, name: str, views: dict) -> Run:
        """Triplet-SN on one real set's views (``real_views``): chapter 4's run on real data."""
        config = self.config(steps=self.p["REAL_STEPS"], eval_every=self.p["REAL_EVAL_EVERY"])
        return Run(self.spec, views["train"], views["val"], {"test": views["test"]}, config)

    @property
    def real_seeds(self) -> list[int]:
        return list(range(int(self.p["SEED"]), int(self.p["SEED"]) + int(self.p["REAL_SEEDS"])))

    def untrained(self, seed: int):
        """The same network untrained (seed ``seed``): what the architecture gives before any training."""
        from sbir_core.repro import seed_everything

        seed_everything(seed)
        return self.spec.build().eval()

    def pixel(self):
        """The parameter-free pixel matcher at the chapter's image size (on image views, not features)."""
        from sbir_core.models.base import build_method

        return build_method("pixel_nn", size=self.p["IMAGE_SIZE"])


# ---------------------------------------------------------------------- chapter 6: StyleMeUp

# name -> (label, options changed from the full model); the paper's ablations and baselines, and ours
STYLEMEUP_VARIANTS = {
    "full": ("StyleMeUp (second order, FT, psi)", {}),
    "first_order": ("first order, as the public code", {"first_order": True}),
    "no_ft": ("w/o FT layers (w/o MFT)", {"ft": "none"}),
    "fixed_ft": ("fixed FT", {"ft": "fixed"}),
    "no_reg": ("w/o regulariser (w/o RegD)", {"regulariser": False}),
    "same_photos": ("the code's task: outer loss on the inner step's photos", {"outer_photos": "same"}),
    "disjoint_photos": ("outer loss on other photos than the inner step's", {"outer_photos": "disjoint"}),
    "basic_sn": ("B-Basic-SN: the VAE's encoder, triplet only, no meta-learning", {"meta": False, "vae": False}),
    "cross_modal": ("B-Cross-Modal: the VAE without meta-learning", {"meta": False}),
    "meta_sn": ("B-Meta-SN: meta-learned triplet only", {"vae": False}),
    "latent128": ("latent 128 (the code's)", {"latent": 128}),
}


def stylemeup_spec(bench: StyleBench, p: dict, variant: str = "full") -> MethodSpec:
    """StyleMeUp (chapter 6's parameters ``p``) on chapter 4's inputs: the trunk's features (an MLP VAE) or
    images (the conv VAE); ``variant`` one of ``STYLEMEUP_VARIANTS``."""
    if variant not in STYLEMEUP_VARIANTS:
        raise RecipeError(f"StyleMeUp variant {variant!r}; known: {', '.join(STYLEMEUP_VARIANTS)}")
    b = bench.p
    options = {
        "size": b["IMAGE_SIZE"],
        **p["SMU_OPTIONS"],
        "margin": b["MARGIN"],
        "inner_lr": p["INNER_LR"],
        "meta_lr": p["META_LR"],
        "flip": bool(b["FLIP"]),
    }
    if b["FREEZE_TRUNK"]:
        options["in_dim"] = bench.feature_dim
    return MethodSpec("stylemeup", {**options, **STYLEMEUP_VARIANTS[variant][1]})


def stylemeup_config(bench: StyleBench, p: dict, **changes) -> TrainConfig:
    return own_config(p, "SMU_STEPS", "TASKS", "SMU_LR", "SMU_EVAL_EVERY", **changes)


def stylemeup(bench: StyleBench, p: dict, variant: str = "full") -> Run:
    """StyleMeUp trained on the style world's seen drawers (validated on them), the test views attached."""
    f = bench.features()
    return Run(stylemeup_spec(bench, p, variant), f.train, f.val, f.tests, stylemeup_config(bench, p))


def stylemeup_real(bench: StyleBench, p: dict, views: dict) -> Run:
    """StyleMeUp on a real set's views (``StyleBench.real_views``), the sketch index as the style (the
    paper's proxy on sets that name no drawer: ``data.views.index_as_drawer``)."""
    from sbir_core.data.views import index_as_drawer

    config = stylemeup_config(bench, p, steps=p["SMU_REAL_STEPS"], eval_every=p["SMU_REAL_EVAL_EVERY"])
    return Run(stylemeup_spec(bench, p), index_as_drawer(views["train"]), views["val"], {"test": views["test"]}, config)


def region_shift(bench: StyleBench, p: dict, name: str) -> dict:
    """Chapter 6's region shift (``data.regions``) on the QuickDraw-format set ``name`` (its ``REGION_CLASSES``
    most-drawn classes, ``REGION_MAX_PER_CLASS`` drawings read a class): the matched training
    pools as hub views and the two test folds, as the methods read them (projected on the principal
    directions of every drawing outside the test folds), and the runs: Triplet-SN trained on the source
    regions (``triplet_sn``) and on the test region's control pool (``control``), StyleMeUp on the source
    regions with the country as the style of its episodes (``stylemeup``). Returns {"data", "split",
    "images" (the image views: "train" by arm, "tests"), "tests" (the two folds as read), "runs"}."""
    from sbir_core.data import load_dataset
    from sbir_core.data import regions as RG
    from sbir_core.features import features, principal
    from sbir_core.models.trunk import TrunkSpec

    seed = int(p["SEED"])  # the chapter's: another SEED draws other splits as well as other training seeds
    options = {"seed": seed} | ({} if name == "quickdraw_sample" else {"max_per_class": p["REGION_MAX_PER_CLASS"]})
    data = load_dataset(name, **options)
    top = int(p["REGION_CLASSES"] or 0)
    counts = data.sketches["category"].astype(str).value_counts()
    if top and len(counts) > top:  # the most-drawn classes (ties by name): more drawings a class, not more classes
        keep = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
        data = data.subset(data.sketches["category"].astype(str).isin(keep).to_numpy())
    split = RG.shift_split(data.sketches, p["REGIONS"], p["TEST_REGION"], seed)
    images = RG.images_of(data, bench.p["IMAGE_SIZE"], bench.p["LINE_WIDTH"])
    every = int(p["REGION_HUB_EVERY"])
    train = {arm: RG.hub_view(data, split[arm], images, every, seed, f"{name}/{arm}") for arm in ("source", "control")}
    tests = RG.fold_views(data, split, images, name)
    proj = None
    if bench.p["FREEZE_TRUNK"] and int(bench.p["FEATURE_DIMS"]):
        outside = np.setdiff1d(np.arange(len(data)), np.concatenate([split["test_a"], split["test_b"]]))
        f = features(images[torch.as_tensor(outside)], TrunkSpec.of(bench.p["TRUNK"]))
        proj = principal(f, int(bench.p["FEATURE_DIMS"]))
    tsn = bench.config(steps=p["REGION_STEPS"], eval_every=p["REGION_STEPS"])
    smu = stylemeup_spec(bench, p)
    smu = MethodSpec(smu.name, {**smu.options, "k": int(p["REGION_K"])})
    smu_config = stylemeup_config(bench, p, steps=p["REGION_SMU_STEPS"], eval_every=p["REGION_SMU_STEPS"])
    source, control = (bench.read(train[arm], proj) for arm in ("source", "control"))
    runs = {
        "triplet_sn": Run(bench.spec, source, None, None, tsn),
        "control": Run(bench.spec, control, None, None, tsn),
        "stylemeup": Run(smu, source, None, None, smu_config),
    }
    read = [bench.read(v, proj) for v in tests]
    return {"data": data, "split": split, "images": {"train": train, "tests": tests}, "tests": read, "runs": runs}


# ---------------------------------------------------------------------- chapter 7: Adaptive FG-SBIR


def adaptive_spec(
    bench: StyleBench, p: dict, inner: str = "margin", reg: dict | None = None, level: str = "user", classes=()
) -> MethodSpec:
    """Adaptive FG-SBIR (chapter 7's parameters ``p``) on chapter 4's encoder, split into F and M; ``inner``
    the method (``models.adaptive.INNER``), ``reg`` the regulariser weights (default: the level's)."""
    o = dict(bench.spec.options)
    encoder, margin, flip = o.pop("encoder"), o.pop("margin"), o.pop("flip", False)
    o.pop("negatives", None)
    reg = p["REG" if level == "user" else "CATEGORY_REG"] if reg is None else reg
    return MethodSpec(
        "adaptive_fgsbir",
        {
            "encoder": encoder,
            "encoder_options": o,
            "level": level,
            "inner": inner,
            "classes": list(classes),
            "reg": dict(reg),
            "inner_lr": p["INNER_LR"],
            "margin": margin,
            "k_support": p["K_SUPPORT"],
            "k_query": p["K_QUERY"],
            "flip": bool(flip),
        },
    )


def adaptive_config(bench: StyleBench, p: dict) -> TrainConfig:
    return bench.config(
        steps=p["META_STEPS"],
        batch_size=p["TASKS"],
        lr=p["META_LR"],
        eval_every=p["META_EVAL_EVERY"],
        ks=(1, 5),
        progress=p["PROGRESS"],
        device=p["DEVICE"],
        checkpoint_dir=None,
    )


def adaptive(
    bench: StyleBench, p: dict, inner: str = "margin", reg: dict | None = None, from_baseline: bool = True
) -> Run:
    """The user level: meta-trained on the seen drawers' episodes from chapter 4's baseline of the same seed
    (``from_baseline=False``: from F and M untrained, on the same trunk features, the check that the
    meta-learner learns at all)."""
    f = bench.features()
    start = bench.baseline().starts() if from_baseline else None
    config = adaptive_config(bench, p)
    return Run(
        adaptive_spec(bench, p, inner, reg), f.train, f.val, None, config, start, val_support(p, f.train, "drawer")
    )


def val_support(p: dict, train, column: str) -> tuple:
    """A meta-learner's validation, as it is used (chapter 7's parameters ``p``): each ``column`` value (a seen
    drawer, a seen category) of the validation view adapts on ``K_SUPPORT`` of its sketches in ``train`` (other
    objects than the ones it is then validated on; all it has where it has fewer, as on a small real set),
    drawn with ``SUPPORT_SEED``; the run's val metrics and the step it keeps are the adapted ones. (column,
    support_for, rule) for ``Run.val_adapt``."""
    from sbir_core.data.support import support_from

    k, seed = int(p["K_SUPPORT"]), int(p["SUPPORT_SEED"])
    rule = f"adapted per {column} to {k} (at most) of its training sketches (support seed {seed})"
    return column, support_from(train, column, k, seed, at_most=True), rule


def category_views(bench: StyleBench, data=None) -> dict:
    """The category level (``data.support.category_views``) of the style world, or of a real set ``data``
    (split by ``hold_out_support``), as the methods read it, with the image views under ``"images"``. A
    real set is projected on its own training split's principal directions (``real_views``'s rule)."""
    from sbir_core.data.support import category_views as views
    from sbir_core.features import principal

    images = views(bench.world() if data is None else data, bench.p["IMAGE_SIZE"], bench.p["LINE_WIDTH"])
    proj = "world"
    if data is not None and bench.p["FREEZE_TRUNK"] and int(bench.p["FEATURE_DIMS"]):
        train = feature_view(images["train"], bench.p["TRUNK"])
        proj = principal(torch.cat([train.queries, train.gallery]), int(bench.p["FEATURE_DIMS"]))
    return {name: bench.read(view, proj) for name, view in images.items()} | {"images": images}


def category_baseline(bench: StyleBench, views: dict) -> Run:
    """Triplet-SN as chapter 4 trains it, on the seen categories only (``views``: ``category_views``): the
    category level's start, so that its unseen categories are unseen."""
    return Run(bench.spec, views["train"], views["val"], None, bench.config())


def category_adaptive(bench: StyleBench, p: dict, views: dict, inner: str = "margin", reg: dict | None = None) -> Run:
    """The category level: meta-trained on the seen categories' episodes from ``category_baseline``."""
    classes = sorted(views["train"].table["category"].astype(str).unique())
    spec = adaptive_spec(bench, p, inner, reg, "category", classes)
    start = category_baseline(bench, views).starts()
    adapt = val_support(p, views["train"], "category")
    return Run(spec, views["train"], views["val"], None, adaptive_config(bench, p), start, adapt)


# ---------------------------------------------------------------------- chapter 8: Sketching with Style


class StyledBench:
    """A sketch-plus-style benchmark (chapter 8's parameters ``p`` on chapter 4's bench): its problems as rows
    (``data.styled.Styled``: "train" and the query sets) and what fills them.

    ``view(name)``: a problem as the model reads it: trunk features computed once per image (sketches by
    chapter 4's trunk; an image as [chapter 4's trunk on its edge map; the style trunk on its RGB], each
    projected on principal directions of the training problem's), or the images where the trunk is
    trained; or as the pixel floor or chapter 4's Triplet-SN read it. ``run()``: the model's run;
    ``evaluate``, ``floors`` and ``probes``: what the chapter measures; ``media``: the gallery's media.
    """

    def __init__(self, bench: StyleBench, p: dict, media, problems: dict, name: str, reuse: dict | None = None):
        self.bench, self.p, self.media, self.problems, self.name = bench, p, list(media), problems, name
        self.dropped_classes: list = []  # classes the benchmark's rule left out (with_style_real)
        self._reuse = reuse or {}  # dataset name -> sketch_id -> chapter 4's projected features of that sketch
        self._tables, self._views = {}, {}

    def __getitem__(self, name: str):
        return self.problems[name][0]

    # -- what fills the problems
    def view(self, name: str, medium: str | None = None, reads: str = "model", rows=None):
        """Problem ``name`` (with ``medium``: its sketch-only search in that medium, "all" for every medium;
        ``rows``: some of its queries) as ``reads`` reads it: "model" (trunk features, or the images where
        the trunk is trained), "structure" (chapter 4's Triplet-SN: an image's structure features alone),
        "pixel" (the pixel floor) or "image"."""
        from sbir_core.data.styled import Pixels

        key = (name, medium, reads)
        if rows is None and key in self._views:
            return self._views[key]
        styled, sk, ph = self.problems[name]
        styled = styled if medium is None else styled.sketch_only(None if medium == "all" else medium)
        styled = styled if rows is None else styled.subset(rows)
        b = self.bench.p
        if reads == "image" or (reads != "pixel" and not b["FREEZE_TRUNK"]):
            v = styled.view(Pixels(sk, b["IMAGE_SIZE"], b["LINE_WIDTH"]), Pixels(ph, b["IMAGE_SIZE"], b["LINE_WIDTH"]))
        else:
            kind = "pixel" if reads == "pixel" else "trunk"
            v = styled.view(self._table(sk, kind), self._table(ph, kind))
            v = dataclasses.replace(v, gallery=v.gallery[:, : self.split]) if reads == "structure" else v
        if rows is None:
            self._views[key] = v
        return v

    def evaluate(self, methods, name: str, medium: str | None = None, mode: str | None = None) -> list:
        """Each method's ``Evaluation`` on a problem (``view``'s ``name`` and ``medium``), read as it reads:
        Sketching with Style (in ``mode``) the model's view, the pixel floor its own, others (chapter 4's
        Triplet-SN) an image's structure features."""
        from sbir_core.evaluation import evaluate
        from sbir_core.models.with_style import ColourPixelNN, WithStyle

        out = []
        for m in methods:
            reads = "model" if isinstance(m, WithStyle) else "pixel" if isinstance(m, ColourPixelNN) else "structure"
            out.append(evaluate(m.with_mode(mode) if mode else m, self.view(name, medium, reads)))
        return out

    def floors(self, name: str, medium: str | None = None, styled: bool | None = None) -> dict:
        """A search's floors, name -> [Evaluation]: "chance" (a random ranking), "untrained" (the model
        untrained, seed ``SEED``) and "pixel_nn" (the pixel floor). ``styled`` (default: without
        ``medium``): the floors of a search that reads the style (the fused model; the pixel floor guessing
        the wanted medium by colour), else of one that ignores it (the structure stream; pixel matching)."""
        from sbir_core.evaluation import random_ranking

        styled = medium is None if styled is None else styled
        untrained = self.untrained(int(self.p["SEED"]))
        return {
            "chance": [random_ranking(self.view(name, medium))],
            "untrained": self.evaluate([untrained], name, medium, "fused" if styled else "structure"),
            "pixel_nn": self.evaluate([self.pixel_floor(styled)], name, medium),
        }

    def probes(self, models, test: str) -> dict:
        """(stream, target) -> (S, M) outcomes of a linear probe (``evaluation.linear_probe``) fitted on each
        model's ``stream`` embedding ("style", "structure") of the training images to predict their
        ``target`` ("medium", "category"), applied to the gallery images of problem ``test``."""
        from sbir_core.evaluation import embed, linear_probe

        train, tests = self.view("train"), self.view(test)
        out = {}
        for stream in ("style", "structure"):
            for target in ("medium", "category"):
                rows = []
                for i, m in enumerate(models):
                    x = m.with_mode(stream)
                    ftr, fte = embed(x.embed_gallery, train.gallery), embed(x.embed_gallery, tests.gallery)
                    y_tr, y_te = train.gallery_table[target].tolist(), tests.gallery_table[target].tolist()
                    rows.append(linear_probe(ftr, y_tr, fte, y_te, seed=i))
                out[(stream, target)] = np.stack(rows)
        return out

    def _rows(self, data):
        """The sketch and photo rows of ``data`` that some problem asks for."""
        sk, ph = set(), set()
        for styled, sk_data, ph_data in self.problems.values():
            if sk_data is data:
                sk.update(styled.q_rows.tolist())
            if ph_data is data:
                ph.update(styled.g_rows.tolist())
                ph.update([] if styled.style_rows is None else styled.style_rows.reshape(-1).tolist())
        return np.array(sorted(sk), np.int64), np.array(sorted(ph), np.int64)

    def _table(self, data, kind: str):
        key = (id(data), kind)
        if key not in self._tables:
            self._tables[key] = (self._trunk_table if kind == "trunk" else self._pixel_table)(data)
        return self._tables[key]

    @cached_property
    def _specs(self):
        from sbir_core.models.trunk import TrunkSpec

        trunk = self.bench.p["TRUNK"]
        return TrunkSpec.of(trunk), TrunkSpec.of({**trunk, **self.p["WS_STYLE_TRUNK"]})

    def _raw(self, data) -> dict:
        """Unprojected trunk features of the rows of ``data`` the problems ask for (of its sketches, none
        where chapter 4's are reused): sketches by the structure trunk, photos by both."""
        from sbir_core.data.styled import Pixels
        from sbir_core.features import features

        key = (id(data), "raw")
        if key not in self._tables:
            px = Pixels(data, self.bench.p["IMAGE_SIZE"], self.bench.p["LINE_WIDTH"])
            (structure, style), (sk, ph) = self._specs, self._rows(data)
            out = {"sketch_rows": sk, "photo_rows": ph, "sketch": None}
            if len(sk) and data.name not in self._reuse:
                out["sketch"] = features(px.sketches(sk), structure)
            img = px.photos(ph) if len(ph) else None
            out["edges"], out["rgb"] = (features(img, t) if len(ph) else torch.zeros(0, 1) for t in (structure, style))
            self._tables[key] = out
        return self._tables[key]

    @cached_property
    def projections(self) -> tuple:
        """(structure, style) projections on ``FEATURE_DIMS`` principal directions of the "train" problem's
        features (chapter 4's own for the structure of its world), or (None, None)."""
        from sbir_core.features import principal

        k = int(self.bench.p["FEATURE_DIMS"])
        if not k:
            return None, None
        styled, sk_data, ph_data = self.problems["train"]
        s, g = self._raw(sk_data), self._raw(ph_data)
        gi = np.searchsorted(g["photo_rows"], styled.g_rows)
        style = principal(g["rgb"][gi], k) if g["rgb"].shape[1] > k else None  # a small trunk feature stays whole
        if sk_data.name in self._reuse:
            return self.bench.projection, style
        si = np.searchsorted(s["sketch_rows"], np.unique(styled.q_rows))
        return principal(torch.cat([s["sketch"][si], g["edges"][gi]]), k), style

    def _trunk_table(self, data):
        from sbir_core.data.styled import Table

        r, (proj, style) = self._raw(data), self.projections
        on = lambda f, x: x if f is None else f(x)  # noqa: E731
        ids = data.sketches["sketch_id"].to_numpy()[r["sketch_rows"]]
        if data.name in self._reuse:
            sk = torch.stack([self._reuse[data.name][i] for i in ids]) if len(ids) else torch.zeros(0, 1)
        else:
            sk = on(proj, r["sketch"]) if r["sketch"] is not None else torch.zeros(0, 1)
        ph = torch.cat([on(proj, r["edges"]), on(style, r["rgb"])], 1) if len(r["photo_rows"]) else torch.zeros(0, 1)
        return Table.of(data, r["sketch_rows"], sk, r["photo_rows"], ph)

    def _pixel_table(self, data):
        from sbir_core.data.styled import Pixels, Table

        px, pixel = Pixels(data, self.bench.p["IMAGE_SIZE"], self.bench.p["LINE_WIDTH"]), self.bench.pixel()
        sk_rows, ph_rows = self._rows(data)
        with torch.no_grad():
            f_sk = pixel.embed_query(px.sketches(sk_rows)) if len(sk_rows) else torch.zeros(0, 1)
            img = px.photos(ph_rows) if len(ph_rows) else None
            f_ph = torch.cat([pixel.embed_gallery(img), (img + 1).mean((2, 3)) / 2], 1) if len(ph_rows) else None
        return Table.of(data, sk_rows, f_sk, ph_rows, torch.zeros(0, 1) if f_ph is None else f_ph)

    # -- the model and its floors
    @cached_property
    def split(self) -> int:
        return int(self.bench.feature_dim)

    @cached_property
    def spec(self) -> MethodSpec:
        """Sketching with Style on chapter 4's inputs: two MLP heads (chapter 4's) on the trunk's features, or
        the trunk trained end to end in each stream (the structure stream sees edge maps, the style stream RGB)."""
        from sbir_core.features import trunk
        from sbir_core.models.trunk import TrunkSpec

        b, p = self.bench.p, self.p
        style_trunk = {**b["TRUNK"], **p["WS_STYLE_TRUNK"]}
        if b["FREEZE_TRUNK"]:
            style_dim = trunk(TrunkSpec.of(style_trunk)).dim
            style_dim = min(style_dim, int(b["FEATURE_DIMS"]) or style_dim)
            streams = {
                "structure": {"encoder": "mlp", "in_dim": self.split, **b["HEAD"]},
                "style": {"encoder": "mlp", "in_dim": style_dim, **b["HEAD"]},
                "split": self.split,
            }
        else:
            streams = {
                "structure": {"encoder": "trunk_mlp", "trunk": b["TRUNK"], **b["HEAD"]},
                "style": {"encoder": "trunk_mlp", "trunk": style_trunk, **b["HEAD"]},
                "split": None,
            }
        options = {
            "n_media": len(self.media),
            "embed_dim": p["WS_FUSED_DIM"],
            "margin": b["MARGIN"],
            "pretrain_steps": p["WS_PRETRAIN_STEPS"],
            "ce_weight": p["WS_CE_WEIGHT"],
            "train_exemplars": p["WS_TRAIN_EXEMPLARS"],
        }
        return MethodSpec("with_style", {**streams, **options})

    def run(self, steps: int | None = None) -> Run:
        """The model trained on the "train" problem: ``steps`` (default ``WS_STEPS``) steps of ``WS_BATCH``
        sketches with chapter 4's learning rate and optimiser; no validation: a seed's model is its last state."""
        p = self.p
        steps = int(p["WS_STEPS"] if steps is None else steps)
        config = self.bench.config(
            steps=steps,
            batch_size=p["WS_BATCH"],
            eval_every=max(1, steps // p["WS_CURVE_POINTS"]),
            ks=(1,),
            progress=p["PROGRESS"],
            device=p["DEVICE"],
        )
        return Run(self.spec, self.view("train"), None, None, config)

    def untrained(self, seed: int):
        """The same model untrained (seed ``seed``)."""
        from sbir_core.repro import seed_everything

        seed_everything(seed)
        return self.spec.build().eval()

    def pixel_floor(self, styled: bool = True):
        """The parameter-free floor on ``pixel_view``s (``models.with_style.ColourPixelNN``): pixel matching,
        with (``styled``) the wanted medium guessed by mean colour from the training images'."""
        from sbir_core.models.with_style import ColourPixelNN

        if not styled:
            return ColourPixelNN()
        train = self.view("train", reads="pixel")
        colour, media = train.gallery[:, -3:], train.gallery_table["medium"].to_numpy()
        return ColourPixelNN(torch.stack([colour[torch.as_tensor(media == m)].mean(0) for m in self.media]))


def with_style_world(bench: StyleBench, p: dict) -> StyledBench:
    """Chapter 8's style world: chapter 4's world (its sketches, gap and seed) with ``WS_OBJECTS`` objects of
    each seen category per split drawn in each of ``WS_MEDIA``; "train": the seen drawers' sketches of the
    training objects against those objects in every medium; "seen" / "unseen": ``WS_QUERIES_PER_OBJECT``
    sketches of each test object by seen / unseen drawers, each asked once per medium with
    ``WS_EXEMPLARS`` exemplars from the training objects, against the test objects in every medium."""
    from sbir_core.data.styled import styled_problem, styled_train, world_in_media

    base, media, seed = bench.world(), list(p["WS_MEDIA"]), int(p["SEED"])
    objects = base.photos.drop_duplicates("instance")
    objects = objects[objects["category_split"] == "seen"].sample(frac=1.0, random_state=seed)
    chosen = objects.groupby(["split", "category"]).head(p["WS_OBJECTS"])
    chosen = chosen[chosen["split"].isin(["train", "test"])]
    data = world_in_media(base, media, sorted(chosen["instance"]))
    problems = {
        "train": styled_train(data, "train", media, {"drawer_split": "seen", "instance": list(chosen["instance"])})
    }
    sk = data.sketches
    for drawers in ("seen", "unseen"):
        mine = sk[(sk["split"] == "test") & (sk["drawer_split"] == drawers) & sk["instance"].isin(chosen["instance"])]
        ids = mine.groupby("instance").head(p["WS_QUERIES_PER_OBJECT"])["sketch_id"].tolist()
        problems[drawers] = styled_problem(
            data, {"sketch_id": ids}, {"split": "test"}, {"split": "train"}, p["WS_EXEMPLARS"], seed, media,
            f"style_world/{drawers} drawers",
        )  # fmt: skip
    problems = {k: (v, data, data) for k, v in problems.items()}
    f = bench.features()
    reuse = {}
    for v in (f.train, f.test_seen, f.test_unseen):  # chapter 4's features of the same sketches
        reuse.update(zip(v.table["sketch_id"], v.queries))
    return StyledBench(bench, p, media, problems, "style_world", {data.name: reuse})


def with_style_real(bench: StyleBench, p: dict) -> StyledBench:
    """QuickDraw sketches searching PACS's media (its photos, art paintings and cartoons) with style exemplars:
    "train": ``WS_REAL_PER_CLASS`` PACS training sketches of each of ``WS_REAL_CLASSES`` against as many PACS
    training images of each class and medium; "quickdraw": ``WS_REAL_QUERIES`` QuickDraw drawings of each
    class, each asked once per PACS medium with exemplars from the PACS training images, against
    ``WS_REAL_GALLERY`` PACS test images of each class and medium. A class without a PACS training sketch, or
    without a training and a test image in every medium, is left out (``styled.complete_classes``; named in the
    bench's ``dropped_classes``). A DataError when a set is absent or fewer than two classes are left."""
    from sbir_core.data import DataError, load_dataset
    from sbir_core.data.styled import class_sample, complete_classes, cross_styled, styled_train

    seed, n = int(p["SEED"]), int(p["WS_REAL_PER_CLASS"])
    pacs = load_dataset("pacs")
    classes = complete_classes(pacs, list(p["WS_REAL_CLASSES"]), ["train"], ["train", "test"])
    if len(classes) < 2:
        raise DataError(
            f"pacs: {len(classes)} of the classes {list(p['WS_REAL_CLASSES'])} have a training sketch and training and "
            f"test images in every medium: the search needs 2+"
        )
    pacs = class_sample(pacs, classes, {"train": n}, {"train": n, "test": p["WS_REAL_GALLERY"]}, seed)
    qd = load_dataset("quickdraw", classes=classes)
    media = sorted(set(pacs.photos["medium"]))
    train = styled_train(pacs, "train", media, paired=False)
    queries = cross_styled(qd, pacs, classes, p["WS_EXEMPLARS"], seed, None, max_per_class=p["WS_REAL_QUERIES"])
    problems = {"train": (train, pacs, pacs), "quickdraw": (queries, qd, pacs)}
    out = StyledBench(bench, p, media, problems, "pacs_quickdraw")
    out.dropped_classes = [c for c in p["WS_REAL_CLASSES"] if c not in classes]
    return out


def with_style(bench: StyleBench, p: dict) -> Run:
    """Sketching with Style on the style world in ``WS_MEDIA`` (``with_style_world``): chapter 8's main run."""
    return with_style_world(bench, p).run()


def quickdraw_pacs(bench: StyleBench, max_per_class: int, n_support: int, seed: int) -> dict:
    """The category level on real data: QuickDraw drawings of the classes PACS also has against PACS's test
    photos of those classes (relevant: same class), as the world's methods read them. Each class's drawings
    (the first ``max_per_class`` of its file) are shuffled once (``data.support.support_pool``): the first
    ``n_support`` are its support pool, the rest its queries. Returns {"view", "images" (the same as
    images), "support": k -> support_for, "classes", "n_support_photos", "dropped_classes"}; a DataError when they
    share < 2 classes with PACS photos in both the test and the training split."""
    import numpy as np

    from sbir_core.data import DataError, load_dataset
    from sbir_core.data.quickdraw import find
    from sbir_core.data.support import support_for_class, support_pool
    from sbir_core.data.views import CategoryView, photo_tensor, sketch_tensor

    pacs = load_dataset("pacs", seed=int(bench.p["SEED"]))
    photo = pacs.photos["medium"] == "photo"
    shared = sorted(set(pacs.photos.loc[photo, "category"].astype(str)) & set(find()[1]))
    # a class needs PACS photos in the test split (its relevant gallery items) and in the training split (its
    # support); one without either is left out and named in "dropped_classes"
    split = pacs.photos["split"]
    has = {s: set(pacs.photos.loc[photo & (split == s), "category"].astype(str)) for s in ("test", "train")}
    classes = [c for c in shared if c in has["test"] and c in has["train"]]
    if len(classes) < 2:
        raise DataError(
            f"QuickDraw and PACS share {len(classes)} classes with PACS photos in both the test and the training split "
            f"({classes}; shared by name: {shared}): the category level needs 2+"
        )
    qd = load_dataset("quickdraw", classes=classes, max_per_class=max_per_class)
    pool, queries = support_pool(qd.sketches, n_support, seed)
    photo &= pacs.photos["category"].astype(str).isin(classes)
    gal, sup = (np.flatnonzero(photo & (pacs.photos["split"] == s)) for s in ("test", "train"))
    sketches = sketch_tensor(qd.sketch_images(bench.p["IMAGE_SIZE"], bench.p["LINE_WIDTH"]))
    photos = photo_tensor(pacs.photo_images(bench.p["IMAGE_SIZE"]))
    images = CategoryView(
        "quickdraw->pacs/category",
        sketches[torch.as_tensor(queries)],
        photos[torch.as_tensor(gal)],
        qd.sketches.iloc[queries],
        pacs.photos.iloc[gal],
    )
    pooled = CategoryView(
        "quickdraw->pacs/support", sketches, photos[torch.as_tensor(sup)], qd.sketches, pacs.photos.iloc[sup]
    )
    view, support = bench.read(images), bench.read(pooled)
    cls = pacs.photos["category"].iloc[sup].astype(str).to_numpy()
    return {
        "view": view,
        "images": images,
        "classes": classes,
        "n_support_photos": len(sup),
        "dropped_classes": [c for c in shared if c not in classes],
        "support": lambda k: support_for_class(support.queries, pool, support.gallery, cls, k, seed),
    }


# ---------------------------------------------------------------------- chapter 5: the cross-modal hierarchy


def hierarchy_spec(bench: StyleBench, p: dict, variant: str = "proposed", steps: int | None = None) -> MethodSpec:
    """Sain et al.'s model (chapter 5's parameters ``p``), one Table 1 row (``variant``) trained ``steps`` steps
    (default ``HIER_STEPS``; the Gumbel noise is annealed over the first ``ANNEAL`` of them): on chapter 4's frozen
    trunk, a head on ready-made nodes (``node_view``); else the trunk and the head together, on images."""
    b = bench.p
    options = {"variant": variant, "margin": b["MARGIN"], **p["HIER_OPTIONS"]}
    options["anneal_steps"] = round(p["ANNEAL"] * (steps or p["HIER_STEPS"]))
    if b["FREEZE_TRUNK"]:
        options |= {"channels": bench.feature_dim, "flip": False}
    else:
        options |= {"trunk": b["TRUNK"], "flip": bool(b["FLIP"]), "proposals": p["PROPOSALS"]}
    return MethodSpec("hierarchy", options)


def hierarchy_config(bench: StyleBench, p: dict, **changes) -> TrainConfig:
    return own_config(p, "HIER_STEPS", "HIER_BATCH", "HIER_LR", "HIER_EVAL_EVERY", **changes)


def node_view(bench: StyleBench, p: dict, view, projection="world"):
    """``view`` as the hierarchy reads it. On a frozen trunk: each sketch's and photo's nodes, computed once
    (``hierarchy.map_nodes``): the trunk's cached feature map (``features.feature_view``), cells in place, per
    stroke box (per piece of ink where a set has no strokes) and per selective-search box, on ``projection``'s
    principal directions (by default the world's). With the trunk trained end to end: the images themselves."""
    if not bench.p["FREEZE_TRUNK"]:
        return view
    from sbir_core.models import hierarchy as H
    from sbir_core.models.trunk import TrunkSpec

    k, size, grid = p["HIER_OPTIONS"]["max_nodes"], view.queries.shape[-1], TrunkSpec.of(bench.p["TRUNK"]).pool
    proj = bench.projection if isinstance(projection, str) else projection
    f = feature_view(view, bench.p["TRUNK"])
    sketch_boxes = H.sketch_node_boxes(view.queries, view.strokes, k, pad=bench.p["LINE_WIDTH"] / 2)
    photo_boxes = H.photo_node_boxes(view.gallery, k, strategy=p["PROPOSALS"])
    q, g = (
        H.map_nodes(x.view(len(x), -1, grid, grid), boxes, size, k, "cells", projection=proj)
        for x, boxes in ((f.queries, sketch_boxes), (f.gallery, photo_boxes))
    )
    return dataclasses.replace(view, name=f"{view.name}@nodes", queries=q, gallery=g, strokes=None)


def test_sample(p: dict, view):
    """The test queries every arm of chapter 5 is evaluated on: ``N_TEST`` of ``view``'s queries drawn once with
    ``SEED`` (all of them: 0). Image, feature and node views of the same queries get the same sample."""
    n = int(p["N_TEST"])
    if not n or n >= len(view):
        return view
    keep = np.zeros(len(view), bool)
    keep[np.random.default_rng(int(p["SEED"])).choice(len(view), n, replace=False)] = True
    return view.subset(keep)


def hierarchy_views(bench: StyleBench, p: dict, gap: float | None = None) -> Views:
    """The benchmark's views at ``gap`` as the hierarchy reads them (``node_view``), each made when first used:
    the training view grouped by category (as chapter 4's), the test views sampled (``test_sample``)."""
    v = bench.views(gap)

    def make(name):
        nodes = node_view(bench, p, getattr(v, name))
        if name in ("train", "control_train"):
            return nodes.within("category")
        return test_sample(p, nodes) if name.startswith("test") else nodes

    return Views(v.data, make)


def hierarchy(bench: StyleBench, p: dict, variant: str = "proposed", views: Views | None = None) -> Run:
    """One Table 1 row trained on the style world's seen drawers, validated on them (tests evaluated apart)."""
    v = views or hierarchy_views(bench, p)
    return Run(hierarchy_spec(bench, p, variant), v.train, v.val, None, hierarchy_config(bench, p))


def hierarchy_real(bench: StyleBench, p: dict, rv: dict, variant: str = "proposed") -> tuple[Run, dict]:
    """One Table 1 row on a real set (``StyleBench.real_views``) and the set's node views (train, val, test),
    on the set's own principal directions."""
    nodes = {s: node_view(bench, p, rv["images"][s], rv["projection"]) for s in ("train", "val", "test")}
    nodes["train"] = nodes["train"].within("category")
    config = hierarchy_config(bench, p, steps=p["HIER_REAL_STEPS"], eval_every=p["HIER_REAL_EVAL_EVERY"])
    spec = hierarchy_spec(bench, p, variant, p["HIER_REAL_STEPS"])
    return Run(spec, nodes["train"], nodes["val"], None, config), nodes


_BENCHES: dict[str, StyleBench] = {}


def bench(scale: str) -> StyleBench:
    """Chapter 4's bench at ``scale`` (its parameters with the run's overrides), one per process and parameters:
    the chapters of one process (the playground lists three) share its views, trunk features and projection,
    which are then read and computed once (the playground's page opened in about half the time)."""
    import json

    p = load_params(BASELINE, scale)
    key = json.dumps(p, sort_keys=True, default=str)
    if key not in _BENCHES:
        _BENCHES[key] = StyleBench(p)
    return _BENCHES[key]


def main(chapter: str, scale: str) -> tuple[StyleBench, Run, int]:
    """A chapter's bench, main trained model as a run, and its seed (``train_cli``, the playground)."""
    if chapter not in MAIN_RUNS:
        raise RecipeError(f"no main run for chapter {chapter!r}; chapters with one: {', '.join(MAIN_RUNS)}")
    b = bench(scale)
    if chapter == BASELINE:
        return b, b.baseline(), b.seeds[0]
    p = load_params(chapter, scale)
    return b, MAIN_RUNS[chapter](b, p), int(p["SEED"])


def main_run(chapter: str, scale: str) -> tuple[Run, int]:
    """A chapter's main trained model as a run and its seed."""
    return main(chapter, scale)[1:]


MAIN_RUNS = {
    BASELINE: None,
    "05_hierarchy": hierarchy,
    "06_stylemeup": stylemeup,
    "07_adaptive": adaptive,
    "08_with_style": with_style,
}
