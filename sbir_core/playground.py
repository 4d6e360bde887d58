"""The playground's engine: trained methods from the store, galleries, and queries from drawn strokes.

The widgets (``sbir_core.widgets``) are only its face; everything they do is here and tested
without a browser:

* ``methods(scale)``: the trained methods a reader can query, one per method chapter of the book
  (``RECIPES``; a method whose chapter does not exist yet is simply absent). Each is rebuilt from
  that chapter's own parameters (``paper_runs/configs/<scale>/``), so its store key is the very run
  the chapter trained; ``Choice.stored`` says whether the store holds it, ``load(choice, train=True)``
  trains it at that scale (with a progress bar) when it does not.
* galleries: a style-world category (the test photos, exactly the evaluator's gallery), the PACS
  photos (when ``SBIR_DATA`` has PACS), or a folder of the reader's own images (unreadable or huge
  files are skipped and listed).
* ``Engine``: strokes -> the package's one rasteriser -> the method's query encoder -> the nearest
  gallery items (``sbir_core.search``), with the gallery's embeddings computed once per (trained
  model, gallery) and cached under the model's store key.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sbir_core import strokes as SK
from sbir_core.data.base import DataError, image_tree, load_image, safe_text
from sbir_core.data.views import photo_tensor, sketch_tensor
from sbir_core.errors import SBIRError

MAX_POINTS = 20_000  # a drawing longer than this is cut (a 10,000-point scribble still fits)
MAX_GALLERY = 5_000  # images read from one folder at most (the rest are listed as skipped)


class PlaygroundError(SBIRError, RuntimeError):
    """Something the playground cannot do, said in words a reader can act on."""


# ---------------------------------------------------------------------- trained methods

_VIEWS: dict = {}


def _views(p: dict):
    """The style benchmark's image views of chapter 4's world (``p``: its parameters), made once per process."""
    from sbir_core import recipes as R

    key = repr(
        (
            p["STYLE_GAP"],
            sorted(p["WORLD"].items()),
            bool(p.get("EVERY_UNSEEN_DRAWS_TEST")),
            p["IMAGE_SIZE"],
            p["LINE_WIDTH"],
        )
    )
    if key not in _VIEWS:
        _VIEWS[key] = R.StyleBench(p).views()
    return _VIEWS[key]


class OnImages(torch.nn.Module):
    """A method that reads trunk features (a chapter at a frozen-trunk scale), made to read images as the
    chapter's views were made: the frozen trunk, the chapter's projection, then the method. Adapting it
    (``adapt``) adapts the method on the support's features."""

    def __init__(self, method, trunk_spec, projection=None):
        super().__init__()
        self.method, self.trunk_spec, self.projection = method, trunk_spec, projection

    def features(self, x: torch.Tensor) -> torch.Tensor:
        from sbir_core.features import trunk

        f = trunk(self.trunk_spec)(x)
        return f if self.projection is None else self.projection(f)

    def embed_query(self, x: torch.Tensor, style=None) -> torch.Tensor:
        return self.method.embed_query(self.features(x))

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.embed_gallery(self.features(x))

    @property
    def adaptive(self) -> bool:
        return bool(getattr(self.method, "adaptive", False))

    def adapt(self, support: dict):
        read = {k: self.features(v) if k in ("sketch", "photo", "neg") else v for k, v in support.items()}
        return OnImages(self.method.adapt(read), self.trunk_spec, self.projection)


@dataclass(frozen=True)
class Recipe:
    """A chapter whose main trained model the playground offers (``recipes.MAIN_RUNS`` builds its run)."""

    chapter: str
    label: str


RECIPES = (
    Recipe("04_triplet_baseline", "Triplet-SN (chapter 4)"),
    Recipe("06_stylemeup", "StyleMeUp (chapter 6)"),
    Recipe("07_adaptive", "Adaptive FG-SBIR (chapter 7)"),
)


@dataclass
class Choice:
    """One queryable method: its recipe, scale, the run's store key and whether it is stored."""

    recipe: Recipe
    scale: str
    params: dict
    key: str
    seed: int = 0
    stored: bool = False
    overrides: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.recipe.label + ("" if self.stored else " — not trained yet")


_SETUPS: dict = {}


def _setup(recipe: Recipe, scale: str, overrides: dict | None = None):
    """(bench, run, seed) of a chapter's main run (``recipes.main``), with ``overrides`` of its parameters on top of
    the run's own (``$SBIR_PARAMS``), computed once per process.

    The process computes on the chapters' thread count first (``repro.set_threads``): a run's store key names the
    count it was trained on (``runs.run_identity``; one and two threads round differently), so a process left at
    torch's default (a notebook without ``chapter.setup``, ``python -m sbir_core.bench page``) would otherwise look
    for runs the book never trained, call the book's trained models untrained, and train others."""
    import json
    import os

    from sbir_core import recipes as R
    from sbir_core.repro import DEFAULT_THREADS, set_threads

    if torch.get_num_threads() != DEFAULT_THREADS:
        set_threads()
    key = (recipe.chapter, scale, repr(sorted((overrides or {}).items())), os.environ.get(R.OVERRIDES_ENV))
    if key not in _SETUPS:
        before = os.environ.get(R.OVERRIDES_ENV)
        merged = json.loads(before or "{}") | dict(overrides or {})
        os.environ[R.OVERRIDES_ENV] = json.dumps(merged)
        try:
            _SETUPS[key] = R.main(recipe.chapter, scale)
        finally:
            if before is None:
                os.environ.pop(R.OVERRIDES_ENV, None)
            else:
                os.environ[R.OVERRIDES_ENV] = before
    return _SETUPS[key]


def scales() -> list[str]:
    """The scales there are configs for (the folders of ``paper_runs/configs/``)."""
    from sbir_core.paths import CONFIGS

    return sorted(p.name for p in CONFIGS.iterdir() if p.is_dir())


def methods(scale: str = "ci", **overrides) -> list[Choice]:
    """The methods whose chapter exists in the book, each with its store key and whether it is stored.

    scale: one of ``scales()``, checked first: it names the config folder read, and may come from the app's URL.
    overrides: chapter parameters to change, e.g. ``SEED=1`` or ``WORLD={"seed": 1}`` (a re-run of the
    book with other seeds finds its own models)."""
    from sbir_core import store as S
    from sbir_core.book import chapters

    if scale not in scales():
        raise PlaygroundError(f"no scale {scale!r}: the configs have {', '.join(scales())}")
    present = set(chapters())
    out = []
    for recipe in RECIPES:
        if recipe.chapter not in present:
            continue
        bench, run, seed = _setup(recipe, scale, overrides)
        key = run.key(seed)
        out.append(Choice(recipe, scale, bench.p, key, seed, (S.root() / f"{key}.pt").exists(), overrides))
    return out


def choice(chapter: str, scale: str = "ci", **overrides) -> Choice:
    """The queryable method of one chapter (a PlaygroundError when the book has no such chapter)."""
    for c in methods(scale, **overrides):
        if c.recipe.chapter == chapter:
            return c
    raise PlaygroundError(
        f"no playground method for chapter {chapter!r}; the book has: "
        f"{[c.recipe.chapter for c in methods(scale, **overrides)]}"
    )


def load(choice: Choice, train: bool = False, progress: bool = True) -> Engine:
    """The trained model of ``choice`` from the store; trained first (at its scale, and the run it starts from
    when that is not stored either) when ``train``, else a PlaygroundError saying which chapter makes it."""
    import dataclasses

    from sbir_core import store as S
    from sbir_core.models.trunk import TrunkSpec

    bench, run, seed = _setup(choice.recipe, choice.scale, choice.overrides)
    if not (S.root() / f"{choice.key}.pt").exists() and not train:
        raise PlaygroundError(
            f"{choice.recipe.label} is not trained at the {choice.scale} scale yet: run its chapter "
            f"(python -m sbir_core.book run --only {choice.recipe.chapter}) or train it here"
        )
    run = dataclasses.replace(run, config=run.config.replace(progress=progress))
    method = run.fit([seed]).methods(run.spec)[0]
    choice.stored = True
    if bench.p["FREEZE_TRUNK"]:  # the chapter's model reads trunk features: the engine gives it images
        method = OnImages(method, TrunkSpec.of(bench.p["TRUNK"]), bench.projection)
    p = bench.p
    return Engine(
        method.eval(), choice.key, int(p["IMAGE_SIZE"]), float(p["LINE_WIDTH"]), choice.recipe.label, bench.views()
    )


# ---------------------------------------------------------------------- galleries


@dataclass
class Target:
    """A world sketch to copy: its strokes and the gallery row of its photo."""

    sketch_id: str
    strokes: np.ndarray
    index: int


@dataclass
class Gallery:
    """Images to search: (M, S, S, 3) uint8 at the model's input size, a label each, what was skipped."""

    name: str
    images: np.ndarray
    labels: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or len(self.images) != len(self.labels):
            raise PlaygroundError(f"gallery {self.name}: {self.images.shape} images for {len(self.labels)} labels")
        if len(self.images) == 0:
            raise PlaygroundError(
                f"gallery {self.name} has no image to search"
                + (f" ({len(self.skipped)} files skipped)" if self.skipped else "")
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def digest(self) -> str:
        h = hashlib.sha1(self.images.tobytes())
        h.update("\0".join(self.labels).encode())
        return h.hexdigest()[:16]

    @property
    def message(self) -> str:
        """What a reader should know about this gallery ("" when nothing)."""
        parts = []
        if len(self) == 1:
            parts.append("this gallery holds one image: every drawing ranks it first")
        if self.skipped:
            parts.append(
                f"{len(self.skipped)} file(s) skipped: "
                + "; ".join(f"{Path(p).name} ({why})" for p, why in self.skipped[:5])
                + (" ..." if len(self.skipped) > 5 else "")
            )
        return ". ".join(parts)


def world_categories(views) -> list[str]:
    """The style world's categories of the test gallery, sorted."""
    return sorted(views.test_seen.gallery_table["category"].unique())


def world_gallery(views, category: str, drawers: str = "seen") -> Gallery:
    """The test photos of one world category (each query's gallery in the evaluator), with the test
    sketches of that category by ``drawers`` ("seen" | "unseen") as targets to copy."""
    view = views.test_seen if drawers == "seen" else views.test_unseen
    gal = view.gallery_table
    rows = np.flatnonzero((gal["category"] == category).to_numpy())
    if len(rows) == 0:
        raise PlaygroundError(f"no test photos of category {category!r}; categories: {world_categories(views)}")
    images = ((view.gallery[rows].permute(0, 2, 3, 1).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    where = {int(r): i for i, r in enumerate(rows)}
    targets = [
        Target(str(view.table["sketch_id"].iloc[q]), view.strokes[q], where[int(view.target[q])])
        for q in np.flatnonzero((view.table["category"] == category).to_numpy())
    ]
    return Gallery(f"world: {category}", images, gal["instance"].iloc[rows].astype(str).tolist(), [], targets)


def folder_gallery(folder, size: int, name: str | None = None, limit: int = MAX_GALLERY) -> Gallery:
    """Every image file in ``folder`` and its sub-folders, once (``image_tree``: link loops add nothing);
    label: the sub-folder, else the file name, with bytes that are not UTF-8 shown as ``\\xNN``. Unreadable
    and huge files and folders that cannot be listed are skipped and listed, never fatal."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise PlaygroundError(f"{safe_text(str(folder))} is not a folder")
    files, skipped = image_tree(folder)
    skipped += [(str(f), f"over the {limit}-image limit") for f in files[limit:]]
    images, labels = [], []
    for f in files[:limit]:
        try:
            images.append(load_image(f, size, "RGB"))
        except DataError as err:
            skipped.append((str(f), str(err.__cause__ or err).split(": ", 1)[-1]))
            continue
        labels.append(safe_text(f.parent.name if f.parent != folder else f.stem))
    skipped = [(safe_text(p), safe_text(why)) for p, why in skipped]
    if not images:
        raise PlaygroundError(
            f"no readable image in {safe_text(str(folder))}"
            + (
                f" ({len(skipped)} skipped: " + "; ".join(f"{Path(p).name}: {w}" for p, w in skipped[:3]) + ")"
                if skipped
                else ""
            )
        )
    return Gallery(name or f"folder: {folder.name}", np.stack(images), labels, skipped)


def pacs_gallery(size: int) -> Gallery:
    """The PACS photo domain (7 classes), from ``SBIR_DATA``; a PlaygroundError when PACS is absent."""
    from sbir_core.data.registry import check_layout

    try:
        base = check_layout("pacs")
    except DataError as err:
        raise PlaygroundError(f"the PACS photos are not available: {err}") from None
    return folder_gallery(base / "photo", size, "PACS photos")


# ---------------------------------------------------------------------- queries


@dataclass
class Hits:
    """The top-k of one query: gallery rows, squared distances, and the target's rank (1-based) if known."""

    index: np.ndarray
    distance: np.ndarray
    target_rank: int | None = None


def clean_strokes(points) -> tuple[np.ndarray | None, str]:
    """A drawing as the canonical (N, 3) sketch, clipped to the canvas and cut at ``MAX_POINTS``;
    None for an empty drawing. Returns (strokes, message) where message says what was changed."""
    if points is None or len(points) == 0:
        return None, "nothing drawn yet"
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise PlaygroundError(f"a drawing is an (N, 3) array of x, y, pen; got shape {arr.shape}")
    notes = []
    finite = np.isfinite(arr).all(1)
    if not finite.all():
        arr = arr[finite]
        notes.append(f"{int((~finite).sum())} non-finite point(s) dropped")
        if len(arr) == 0:
            return None, "; ".join(notes)
    if len(arr) > MAX_POINTS:
        arr = arr[:MAX_POINTS].copy()
        notes.append(f"the drawing has more than {MAX_POINTS} points: only the first {MAX_POINTS} are used")
    out = (arr[:, :2] < 0) | (arr[:, :2] > SK.CANVAS)
    if out.any():
        arr = arr.copy()
        arr[:, :2] = arr[:, :2].clip(0, SK.CANVAS)
        notes.append(f"{int(out.any(1).sum())} point(s) outside the canvas were moved to its edge")
    arr[-1, 2] = 1.0
    return SK.check_strokes(arr), "; ".join(notes)


class Engine:
    """A trained method ready to answer drawn queries against galleries."""

    def __init__(self, method, key: str, size: int, line_width: float, label: str = "", views=None):
        if getattr(method, "pairwise", False):
            raise PlaygroundError(
                f"{label or type(method).__name__} scores (sketch, photo) pairs; the playground "
                f"searches precomputed embeddings and does not support it yet"
            )
        self.method, self.key, self.size, self.line_width, self.label, self.views = (
            method.eval(),
            key,
            size,
            line_width,
            label,
            views,
        )
        self._cache: dict[str, object] = {}

    def raster(self, strokes) -> np.ndarray:
        """(S, S) float32 image of a drawing, with the package's one rasteriser."""
        return SK.rasterise(strokes, self.size, self.line_width)

    @torch.inference_mode()
    def encode(self, strokes) -> np.ndarray:
        """A drawing -> its (D,) query embedding."""
        return self.method.embed_query(sketch_tensor(self.raster(strokes)[None])).numpy()[0]

    @functools.cached_property
    def weights(self) -> str:
        """A digest of the weights this engine embeds with (the method's parameters and buffers, and the frozen
        trunk's name and projection when it reads images): what its gallery embeddings depend on. The store key
        names the run, not what the store holds now; a rewritten entry has other weights under the same key."""
        h = hashlib.sha1()
        tensors = dict(self.method.state_dict())
        if isinstance(self.method, OnImages):
            h.update(repr(self.method.trunk_spec).encode())
            p = self.method.projection
            tensors |= {} if p is None else {"projection.mean": p.mean, "projection.basis": p.basis}
        for name, t in sorted(tensors.items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def gallery_search(self, gallery: Gallery):
        """The gallery's embeddings, computed once per (weights, gallery) and cached on disk; a cached file must
        hold one row per gallery image."""
        from sbir_core.search import GallerySearch, cached_gallery_embeddings

        key = f"{self.key}_{self.weights}_{gallery.digest}"
        if key not in self._cache:
            if gallery.images.shape[1] != self.size:
                raise PlaygroundError(
                    f"gallery {gallery.name} is at {gallery.images.shape[1]} px; {self.label} takes {self.size} px"
                )

            @torch.inference_mode()
            def compute():
                x = photo_tensor(gallery.images)
                return torch.cat([self.method.embed_gallery(x[i : i + 256]) for i in range(0, len(x), 256)]).numpy()

            self._cache[key] = GallerySearch(cached_gallery_embeddings(key, compute, rows=len(gallery)))
        return self._cache[key]

    def query(self, strokes, gallery: Gallery, k: int = 10, target: int | None = None) -> Hits:
        """Top-``k`` of a drawing in ``gallery``; with ``target`` (a gallery row) also that row's rank."""
        return self._search(self.encode(strokes)[None], gallery, k, target)

    @torch.inference_mode()
    def query_image(self, image: np.ndarray, gallery: Gallery, k: int = 10, target: int | None = None) -> Hits:
        """Top-``k`` of a sketch image (S, S) in [0, 1] (e.g. a decoded one)."""
        return self._search(self.method.embed_query(sketch_tensor(np.asarray(image)[None])).numpy(), gallery, k, target)

    def _search(self, q: np.ndarray, gallery: Gallery, k: int, target: int | None) -> Hits:
        index = self.gallery_search(gallery)
        dist, idx = index.search(q, k)
        rank = None
        if target is not None:
            from sbir_core.metrics import true_match_rank

            emb = np.asarray(index.embeddings, dtype=np.float32)
            d = ((emb - q) ** 2).sum(1)[None]  # (1, M): ranked as the evaluator ranks
            rank = int(true_match_rank(d, np.array([target]))[0])
        return Hits(np.asarray(idx[0]), np.asarray(dist[0]), rank)

    @torch.inference_mode()
    def swap_style(self, strokes, style_strokes, amount: float = 1.0) -> np.ndarray:
        """StyleMeUp: decode the drawing's invariant code with its style code moved ``amount`` (0..1) of
        the way to the style code of ``style_strokes``; (S, S) image in [0, 1]."""
        m = self.method
        if isinstance(m, OnImages):
            raise PlaygroundError(
                f"{self.label} reads trunk features at this scale: its decoder redraws features, not sketches, "
                f"so the style swap needs a scale whose model reads images (paper)"
            )
        if not hasattr(m, "swap"):
            raise PlaygroundError(f"{self.label} has no style code to swap (StyleMeUp has)")
        if not 0.0 <= amount <= 1.0:
            raise PlaygroundError(f"amount must be in [0, 1], got {amount}")
        x = sketch_tensor(np.stack([self.raster(strokes), self.raster(style_strokes)]))
        inv, var, _, _ = m.codes(x)
        mixed = (1.0 - amount) * var[:1] + amount * var[1:]
        out = m.decoder(m.fused(inv[:1], mixed))[0]  # (3, S, S) in [-1, 1], ink = 1 (to_rgb's convention)
        return (1.0 - (out.mean(0) + 1.0) / 2.0).clamp(0, 1).numpy()  # back to a raster: black ink on white

    @torch.inference_mode()
    def swap_hits(
        self, strokes, style_strokes, amount: float, gallery: Gallery, k: int = 5, target: int | None = None
    ) -> tuple:
        """StyleMeUp: what the drawing's invariant code with its style code moved ``amount`` of the way to
        ``style_strokes``'s retrieves, as (decoded image or None, Hits). A model that reads images decodes an
        image and searches with it; one that reads trunk features (the ci scale) decodes trunk features, which
        are not a picture (None), and searches with their embedding: at every scale the reader sees what the
        swapped code means to the model. ``target``: a gallery item whose rank the Hits carry."""
        m = self.method
        if not isinstance(m, OnImages):
            image = self.swap_style(strokes, style_strokes, amount)
            return image, self.query_image(image, gallery, k, target)
        smu = m.method
        if not hasattr(smu, "swap"):
            raise PlaygroundError(f"{self.label} has no style code to swap (StyleMeUp has)")
        if not 0.0 <= amount <= 1.0:
            raise PlaygroundError(f"amount must be in [0, 1], got {amount}")
        f = m.features(sketch_tensor(np.stack([self.raster(strokes), self.raster(style_strokes)])))
        inv, var, _, _ = smu.codes(f)
        redrawn = smu.decoder(smu.fused(inv[:1], (1.0 - amount) * var[:1] + amount * var[1:]))
        return None, self._search(smu.embed_query(redrawn).numpy(), gallery, k, target)

    def personalise(self, drawings, gallery: Gallery, rows) -> Engine:
        """A new engine whose method is adapted to one person from their drawings (k >= 2 stroke arrays) of
        the gallery items ``rows`` (k indices, at least two different photos): ``adaptive.personalise``,
        each drawing taking the next drawing's photo as its negative. This engine is unchanged; the new
        one's gallery embeddings are computed anew (its key names the drawings)."""
        from sbir_core.models.adaptive import personalise

        if not getattr(self.method, "adaptive", False):
            raise PlaygroundError(
                f"{self.label or type(self.method).__name__} does not adapt to a person "
                f"(Adaptive FG-SBIR, chapter 7, does)"
            )
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(drawings) != len(rows):
            raise PlaygroundError(f"{len(drawings)} drawings for {len(rows)} gallery items: one photo per drawing")
        if len(rows) and (rows.min() < 0 or rows.max() >= len(gallery)):
            raise PlaygroundError(f"gallery rows must be in [0, {len(gallery)}), got {rows.tolist()}")
        if len(rows) < 2 or len(set(rows.tolist())) < 2:
            raise PlaygroundError(
                "personalising needs at least 2 drawings of different photos (each drawing's "
                "negative is another drawing's photo)"
            )
        sketches = sketch_tensor(np.stack([self.raster(s) for s in drawings]))
        photos = photo_tensor(gallery.images[rows])
        try:
            adapted = personalise(self.method, sketches, photos)
        except DataError as err:
            raise PlaygroundError(str(err)) from err
        digest = hashlib.sha256(sketches.numpy().tobytes() + photos.numpy().tobytes()).hexdigest()[:12]
        return Engine(
            adapted,
            f"{self.key}_personal_{digest}",
            self.size,
            self.line_width,
            f"{self.label}, personalised",
            self.views,
        )

    def first_copyable_target(self, gallery: Gallery, within: int = 10) -> int | None:
        """The first of the gallery's sketches to copy whose own drawing this model ranks its photo in the top
        ``within`` (its index among ``gallery.targets``), or None: the playground's default target, so that a
        reader who copies it sees the rank reach the grid (most copies of a random target end at rank 10-30)."""
        for i, t in enumerate(gallery.targets):
            if self.query(t.strokes, gallery, 1, t.index).target_rank <= within:
                return i
        return None

    def first_ranked_target(self, gallery: Gallery) -> int | None:
        """The first of the gallery's sketches to copy whose photo this model ranks first (its index
        among ``gallery.targets``), or None: a copy that should be found if the page works."""
        for i, t in enumerate(gallery.targets):
            if self.query(t.strokes, gallery, 1, t.index).target_rank == 1:
                return i
        return None

    def early_ranks(self, strokes, gallery: Gallery, target: int) -> list[int]:
        """The target's rank after each stroke of a drawing (early retrieval)."""
        parts = SK.split_strokes(strokes)
        return [
            self.query(SK.join_strokes(parts[:n]), gallery, 1, target).target_rank for n in range(1, len(parts) + 1)
        ]
