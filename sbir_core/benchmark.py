"""The style benchmark: the style world's views for the book's fine-grained questions, one definition.

Every method chapter asks the same questions of the style world (chapter 2) and compares with the
same Triplet-SN baseline and control (chapter 4), so the views are made here, once:

* ``train``: seen drawers' sketches of training objects. Negatives come from any other training
  sketch (QMUL's rule; its datasets hold one category, so there it is the category's own).
* ``val``: seen drawers' sketches of validation objects, ranked within the category.
* ``test_seen`` / ``test_unseen``: the test objects drawn by seen and by unseen drawers, each query
  ranked against the test photos of its own category (``RetrievalView.group = "category"``).
* ``control_train`` / ``control_val``: the unseen drawers' adaptation split (their sketches of
  training and validation objects, never of test objects): the **control** model trained on their
  style with the same steps and the same objects shows what is recoverable at each gap.

``baseline(...)`` trains (or loads from the store) Triplet-SN on ``train`` for the given seeds with
the test views of the same world attached, exactly as chapter 4 does; ``control(...)`` does the
same on the adaptation split. Ask with the same options and the stored runs are reused.
"""

from __future__ import annotations

from dataclasses import dataclass

from sbir_core.data.base import SBIRData
from sbir_core.data.registry import load_dataset
from sbir_core.data.views import RetrievalView, fg_view
from sbir_core.models.base import MethodSpec
from sbir_core.train import MultiSeedResult, TrainConfig, train_seeds

VIEW_NAMES = ("train", "val", "test_seen", "test_unseen", "control_train", "control_val")


@dataclass
class StyleViews:
    """The style benchmark's views of one world (see the module docstring)."""

    data: SBIRData
    train: RetrievalView
    val: RetrievalView
    test_seen: RetrievalView
    test_unseen: RetrievalView
    control_train: RetrievalView
    control_val: RetrievalView

    @property
    def tests(self) -> dict[str, RetrievalView]:
        return {"test_seen": self.test_seen, "test_unseen": self.test_unseen}


def world(style_gap: float | None = None, detail_gap: float | None = None, **options) -> SBIRData:
    """The style world with the given gaps (None: the world's defaults) and other ``WorldConfig`` options."""
    gaps = {k: v for k, v in (("style_gap", style_gap), ("detail_gap", detail_gap)) if v is not None}
    return load_dataset("style_world", **options, **gaps)


# each view: (split, drawers, group)
VIEWS = {
    "train": ("train", "seen", None),
    "val": ("val", "seen", "category"),
    "test_seen": ("test", "seen", "category"),
    "test_unseen": ("test", "unseen", "category"),
    "control_train": ("train", "unseen", None),
    "control_val": ("val", "unseen", "category"),
}


def style_view(data: SBIRData, name: str, size: int = 32, line_width: float = 1.5) -> RetrievalView:
    """One of the benchmark's views (``VIEW_NAMES``) of ``data`` at ``size`` pixels."""
    split, drawers, group = VIEWS[name]
    return fg_view(data, split, size, line_width, group=group, where={"drawer_split": drawers})


def style_views(data: SBIRData, size: int = 32, line_width: float = 1.5) -> StyleViews:
    """The benchmark's views of ``data`` at ``size`` pixels (sketches drawn ``line_width`` pixels wide)."""
    return StyleViews(data, *(style_view(data, name, size, line_width) for name in VIEW_NAMES))


def triplet_spec(
    encoder: str = "cnn",
    encoder_options: dict | None = None,
    margin: float = 0.2,
    negatives: str = "random",
    flip: bool = True,
) -> MethodSpec:
    """The Triplet-SN method spec the book trains (chapter 4's parameters)."""
    return MethodSpec(
        "triplet_sn",
        {"encoder": encoder, **(encoder_options or {}), "margin": margin, "negatives": negatives, "flip": flip},
    )


def baseline(views: StyleViews, spec: MethodSpec, config: TrainConfig, seeds) -> MultiSeedResult:
    """Triplet-SN trained on the seen drawers (validated on them), the world's test views attached."""
    return train_seeds(spec, views.train, views.val, views.tests, config, seeds)


def control(views: StyleViews, spec: MethodSpec, config: TrainConfig, seeds) -> MultiSeedResult:
    """The same method trained on the unseen drawers' adaptation split, validated on their val sketches."""
    return train_seeds(spec, views.control_train, views.control_val, None, config, seeds)
