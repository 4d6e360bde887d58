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

import json
import os
from dataclasses import dataclass
from functools import cached_property

import torch
import yaml

from sbir_core import benchmark as B
from sbir_core.errors import SBIRError
from sbir_core.features import feature_view
from sbir_core.models.base import MethodSpec
from sbir_core.paths import CONFIGS
from sbir_core.runs import MultiSeedResult, fingerprint, run_identity
from sbir_core.train import TrainConfig, train_seeds

OVERRIDES_ENV = "SBIR_PARAMS"
BASELINE = "04_triplet_baseline"


class RecipeError(SBIRError, ValueError):
    """A chapter's parameters that do not make a run (the message names the parameter)."""


def load_params(chapter: str, scale: str) -> dict:
    """The parameters of one chapter at one scale: its YAML config, then the run's overrides (``$SBIR_PARAMS``)
    for the names the config has."""
    path = CONFIGS / scale / f"{chapter}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no config for {chapter} at scale {scale}: expected {path}")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) and k.isupper() for k in params):
        raise ValueError(f"{path}: parameters must be a mapping of UPPER_CASE names")
    overrides = json.loads(os.environ.get(OVERRIDES_ENV) or "{}")
    return params | {k: v for k, v in overrides.items() if k in params} | {"SCALE": scale}


@dataclass(frozen=True)
class Run:
    """A run a chapter trains: spec, views and config (the seed is set per call)."""

    spec: MethodSpec
    train: object
    val: object | None
    tests: dict | None
    config: TrainConfig

    def fit(self, seeds, store: bool = True) -> MultiSeedResult:
        """Each seed trained (or loaded from the store of trained models)."""
        return train_seeds(self.spec, self.train, self.val, self.tests, self.config, list(seeds), store)

    def methods(self, seeds) -> list:
        """Each seed's selected model, in eval mode."""
        return self.fit(seeds).methods(self.spec)

    def key(self, seed: int) -> str:
        """The store key of one seed's run."""
        return fingerprint(run_identity(self.spec, self.train, self.val, self.tests, self.config.replace(seed=seed)))


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
        return B.world(self.gap if gap is None else gap, detail_gap, **self.p["WORLD"])

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
            checkpoint_dir=p.get("CHECKPOINT_DIR") or None,
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

    def real_views(self, name: str, view=None) -> dict:
        """A real set's train / val / test views as trunk features (``view``: the view builder, fg_view by
        default), the training view grouped by category, with the set (``data``) and the image views
        (``images``); a DataError when the set cannot give them."""
        from sbir_core.data import load_dataset
        from sbir_core.data.views import fg_view
        from sbir_core.features import principal

        data = load_dataset(name, seed=int(self.p["SEED"]))
        make = view or fg_view
        images = {s: make(data, s, self.p["IMAGE_SIZE"], self.p["LINE_WIDTH"]) for s in ("train", "val", "test")}
        proj = None  # the set's own principal directions, from its training split
        if self.p["FREEZE_TRUNK"] and int(self.p["FEATURE_DIMS"]):
            train = feature_view(images["train"], self.p["TRUNK"])
            proj = principal(torch.cat([train.queries, train.gallery]), int(self.p["FEATURE_DIMS"]))
        out = {s: self.read(v, proj) for s, v in images.items()}
        out["train"] = out["train"].within("category")
        return out | {"data": data, "images": images}

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


def bench(scale: str) -> StyleBench:
    """Chapter 4's bench at ``scale`` (its parameters with the run's overrides)."""
    return StyleBench(load_params(BASELINE, scale))


def main_run(chapter: str, scale: str) -> tuple[Run, int]:
    """A chapter's main trained model as a run and its seed (``train_cli``, the playground)."""
    if chapter == BASELINE:
        b = bench(scale)
        return b.baseline(), b.seeds[0]
    raise RecipeError(f"no main run for chapter {chapter!r}; chapters with one: {', '.join(MAIN_RUNS)}")


MAIN_RUNS = (BASELINE,)
