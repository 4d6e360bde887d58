"""The style world: an embedded sketch–photo benchmark with drawing style as a dial.

``load(root=None, **options)`` builds a ``WorldConfig`` from the options, and generates the world
(or reloads it from ``cache_dir()/world-<hash>.npz``) as one ``SBIRData``:

* objects: parametric line art of eight categories (``objects.CATEGORIES``), each instance a
  vector of fine-grained attributes; every stroke carries a detail level (0, 1, 2);
* photos: the same geometry rendered with nuisance appearance in one or more ``media``
  (one photo row per instance and medium; sketches pair with the first medium);
* drawers: simulated people with a persistent style (``drawers.STYLE_DIMS``); seen drawers draw
  instances of every split, unseen drawers only test instances, from a style distribution
  shifted by ``style_gap``.

``StyleWorld(config)`` draws any object with any drawer on demand, makes near-twins and photos
for figures and widgets; the same calls produce the stored sketches, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd

from sbir_core.data.base import PHOTO_COLUMNS, SKETCH_COLUMNS, DataError, SBIRData, cache_dir
from sbir_core.data.world import drawers as W
from sbir_core.data.world import objects as O
from sbir_core.data.world import photos as P
from sbir_core.data.world.drawers import N_STYLE, STYLE_DIMS, STYLE_NAMES
from sbir_core.data.world.objects import CATEGORIES
from sbir_core.data.world.photos import MEDIA

GENERATOR_VERSION = 4  # bump when generation changes, so old caches are not reused
SPLITS = ("train", "val", "test")

__all__ = ["CATEGORIES", "MEDIA", "N_STYLE", "STYLE_DIMS", "STYLE_NAMES", "StyleWorld", "WorldConfig",
           "WorldConfigError", "detail_levels", "detail_subset", "drawer_styles", "load"]


class WorldConfigError(DataError, ValueError):
    """A style-world configuration value out of range; the message names the field."""


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a style world; the same config gives the same arrays."""

    seed: int = 0                                   # base seed of every random stream
    n_instances: int = 800                          # objects, spread evenly over the categories
    categories: tuple[str, ...] = tuple(CATEGORIES)  # which object categories exist
    unseen_categories: tuple[str, ...] = ("lamp", "bag")  # tagged category_split="unseen"
    drawers_seen: int = 24                          # drawers who draw train, val and test objects
    drawers_unseen: int = 8                         # drawers who draw only test objects
    sketches_per_instance: int = 4                  # seen drawers per object (distinct drawers)
    unseen_sketches_per_instance: int = 4           # unseen drawers per test object
    style_gap: float = 2.0                          # distance of unseen from seen style means (latent units)
    style_spread: float = 1.0                       # spread of drawers' styles around their mean
    style_jitter: float = 0.3                       # one drawer's sketch-to-sketch style variation
    media: tuple[str, ...] = ("photo", "pen_ink")   # photo media; sketches pair with media[0]
    photo_size: int = 64                            # photo side, pixels
    pose_jitter: float = 1.0                        # photo rotation and shift scale (0: none)
    val_fraction: float = 0.1                       # fraction of each category's objects in val
    test_fraction: float = 0.2                      # fraction of each category's objects in test
    point_spacing: float = 7.0                      # canvas pixels between sketch points before simplification
    base_tremor: float = 0.6                        # tremor every hand has, canvas pixels

    def __post_init__(self):
        for name in ("categories", "unseen_categories", "media"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise WorldConfigError(f"{name} must be a list of names, got the string {value!r}")
            object.__setattr__(self, name, tuple(value))
        for name in ("n_instances", "drawers_seen", "drawers_unseen", "sketches_per_instance",
                     "unseen_sketches_per_instance", "photo_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                raise WorldConfigError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("style_gap", "style_spread", "style_jitter", "pose_jitter", "base_tremor"):
            if not np.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise WorldConfigError(f"{name} must be a non-negative number, got {getattr(self, name)!r}")
        for name in ("categories", "unseen_categories"):
            bad = [c for c in getattr(self, name) if c not in CATEGORIES]
            if bad:
                raise WorldConfigError(f"{name}: unknown categories {bad}; known: {', '.join(CATEGORIES)}")
        if not set(self.unseen_categories) <= set(self.categories):
            raise WorldConfigError(f"unseen_categories {list(self.unseen_categories)} must be among "
                                   f"categories {list(self.categories)}")
        if not self.categories:
            raise WorldConfigError("categories must name at least one category")
        bad = [m for m in self.media if m not in MEDIA]
        if bad:
            raise WorldConfigError(f"media: unknown media {bad}; known: {', '.join(MEDIA)}")
        if not self.media:
            raise WorldConfigError("media must name at least one medium")
        if self.n_instances < 1:
            raise WorldConfigError(f"n_instances must be at least 1, got {self.n_instances}")
        if self.photo_size < 4:
            raise WorldConfigError(f"photo_size must be at least 4 pixels, got {self.photo_size}")
        if self.sketches_per_instance < 1 or self.sketches_per_instance > self.drawers_seen:
            raise WorldConfigError(f"sketches_per_instance must lie in 1..drawers_seen={self.drawers_seen}, "
                                   f"got {self.sketches_per_instance}")
        if self.unseen_sketches_per_instance > self.drawers_unseen:
            raise WorldConfigError(f"unseen_sketches_per_instance must be at most drawers_unseen="
                                   f"{self.drawers_unseen}, got {self.unseen_sketches_per_instance}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise WorldConfigError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise WorldConfigError("val_fraction + test_fraction must be below 1")
        if self.point_spacing <= 0:
            raise WorldConfigError(f"point_spacing must be positive, got {self.point_spacing}")

    @classmethod
    def from_options(cls, **options) -> "WorldConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise WorldConfigError(f"unknown style-world options {unknown}; known: {', '.join(sorted(known))}")
        return cls(**options)

    @property
    def key(self) -> str:
        """A short hash of the configuration and generator version: the cache key."""
        text = json.dumps({"v": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def _rng(*keys) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


@dataclass
class StyleWorld:
    """The world's fixed parts (objects, drawers, appearances, splits), and drawing on demand."""

    config: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self):
        c = self.config
        n = c.n_instances
        self.category = [c.categories[i % len(c.categories)] for i in range(n)]
        self.instance_ids = [f"{cat}-{i:04d}" for i, cat in enumerate(self.category)]
        self.attributes = np.full((n, O.MAX_ATTRS), np.nan)
        for i, cat in enumerate(self.category):
            vals = O.sample_attributes(cat, _rng(c.seed, 1, i))
            self.attributes[i, :len(vals)] = vals
        self.appearance = [P.sample_appearance(_rng(c.seed, 3, i), c.pose_jitter) for i in range(n)]
        rng = _rng(c.seed, 2)
        self.gap_direction = W.gap_direction(c.seed)
        seen = W.sample_styles(c.drawers_seen, rng, c.style_spread)
        unseen = W.sample_styles(c.drawers_unseen, rng, c.style_spread, c.style_gap * self.gap_direction)
        self.styles = np.vstack([seen, unseen]).reshape(-1, N_STYLE)
        self.drawer_ids = [f"d{k:03d}" for k in range(len(self.styles))]
        self.drawer_split = ["seen"] * c.drawers_seen + ["unseen"] * c.drawers_unseen
        self.split = self._splits()

    def _splits(self) -> list[str]:
        """Instance split, stratified by category: test, then val, the rest train."""
        c = self.config
        split = ["train"] * c.n_instances
        rng = _rng(c.seed, 4)
        for cat in c.categories:
            idx = np.array([i for i, k in enumerate(self.category) if k == cat])
            idx = idx[rng.permutation(len(idx))]
            n_test = int(round(c.test_fraction * len(idx)))
            n_val = int(round(c.val_fraction * len(idx)))
            for j in idx[:n_test]:
                split[j] = "test"
            for j in idx[n_test:n_test + n_val]:
                split[j] = "val"
        return split

    # -- on demand ---------------------------------------------------------------------------
    def values(self, i: int) -> np.ndarray:
        """Attribute values of instance i, (n_attrs,) float64."""
        n = len(O.attributes(self.category[i]))
        return self.attributes[i, :n]

    def parts(self, i: int, values=None) -> list[O.Part]:
        return O.build_parts(self.category[i], self.values(i) if values is None else values)

    def drawers_of(self, i: int) -> list[int]:
        """Drawer indices who sketch instance i (seen ones; unseen ones too for test instances)."""
        c = self.config
        rng = _rng(c.seed, 5, i)
        who = list(rng.choice(c.drawers_seen, c.sketches_per_instance, replace=False))
        if self.split[i] == "test" and c.unseen_sketches_per_instance:
            who += list(c.drawers_seen + rng.choice(c.drawers_unseen, c.unseen_sketches_per_instance,
                                                    replace=False))
        return [int(d) for d in who]

    def sketch(self, i: int, drawer: int, values=None, style=None, salt: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Drawer ``drawer`` sketches instance i: strokes (N, 3) float64 and per-stroke levels (S,) int8.

        ``values`` replaces the object's attributes (e.g. a near-twin's), ``style`` the drawer's
        latent style (N_STYLE,); ``salt`` draws another sketch of the same pair.
        """
        c = self.config
        rng = _rng(c.seed, 6, i, drawer, salt)
        z = self.styles[drawer] if style is None else np.asarray(style, dtype=np.float64)
        z = z + rng.normal(scale=c.style_jitter, size=N_STYLE)
        return W.draw(self.parts(i, values), z, rng, c.point_spacing, c.base_tremor)

    def photos(self, i: int, media=None, size: int | None = None, values=None) -> np.ndarray:
        """Instance i in each medium: (len(media), size, size, 3) uint8."""
        c = self.config
        return P.render(self.parts(i, values), self.appearance[i], media or c.media, size or c.photo_size)

    def near_twin(self, i: int, which: str | None = None, seed: int = 0) -> tuple[np.ndarray, str]:
        """Attribute values of a near-twin of instance i (exactly one attribute changed) and its name."""
        return O.near_twin_attributes(self.category[i], self.values(i), _rng(self.config.seed, 8, i, seed), which)

    def describe(self, i: int) -> dict:
        return {"instance": self.instance_ids[i], "category": self.category[i],
                **O.describe(self.category[i], self.values(i))}

    # -- the whole world ---------------------------------------------------------------------
    def generate(self) -> SBIRData:
        """Every sketch and photo of the world as SBIRData (no cache; see ``load``)."""
        c = self.config
        rows, strokes, levels = [], [], []
        for i, inst in enumerate(self.instance_ids):
            for d in self.drawers_of(i):
                s, lv = self.sketch(i, d)
                strokes.append(s)
                levels.append(lv)
                rows.append((f"{inst}-{self.drawer_ids[d]}", f"{inst}-{c.media[0]}", inst, self.category[i],
                             self.drawer_ids[d], self.drawer_split[d], self.split[i]))
        n_media = len(c.media)
        arrays = np.empty((c.n_instances * n_media, c.photo_size, c.photo_size, 3), dtype=np.uint8)
        prow = []
        for i, inst in enumerate(self.instance_ids):
            arrays[i * n_media:(i + 1) * n_media] = self.photos(i)
            prow += [(f"{inst}-{m}", inst, self.category[i], self.split[i], m) for m in c.media]
        sk = pd.DataFrame(rows, columns=["sketch_id", "photo_id", "instance", "category", "drawer",
                                         "drawer_split", "split"])
        ph = pd.DataFrame(prow, columns=["photo_id", "instance", "category", "split", "medium"])
        return self._assemble(sk, ph, strokes, levels, arrays)

    def _assemble(self, sk, ph, strokes, levels, arrays) -> SBIRData:
        c = self.config
        unseen = set(c.unseen_categories)
        for df in (sk, ph):
            df["category_split"] = ["unseen" if k in unseen else "seen" for k in df["category"]]
        info = {"config": asdict(c), "fingerprint": c.key, "detail_levels": levels,
                "detail_levels_by_id": dict(zip(sk["sketch_id"], levels)),
                "attributes": self.attributes, "instances": list(self.instance_ids),
                "attribute_names": {k: [a.name for a in O.attributes(k)] for k in c.categories},
                "styles": self.styles, "style_names": list(STYLE_NAMES), "drawer_ids": list(self.drawer_ids),
                "drawer_split": list(self.drawer_split), "world": self}
        return SBIRData("style_world", sk, ph, strokes=strokes, photo_arrays=arrays, info=info)


# -- cache: one npz, no pickle --------------------------------------------------------------------

_SK_COLS = SKETCH_COLUMNS  # the cache stores the shared columns; _assemble derives the world's own
_PH_COLS = PHOTO_COLUMNS


def _save(data: SBIRData, path) -> None:
    lengths = np.array([len(s) for s in data.strokes], dtype=np.int64)
    nlev = np.array([len(v) for v in data.info["detail_levels"]], dtype=np.int64)
    arrays = {"xy": np.concatenate(data.strokes), "offsets": np.concatenate([[0], np.cumsum(lengths)]),
              "levels": np.concatenate(data.info["detail_levels"]).astype(np.int8),
              "level_offsets": np.concatenate([[0], np.cumsum(nlev)]), "photos": data.photo_arrays}
    arrays.update({f"sk_{k}": data.sketches[k].to_numpy(dtype=str) for k in _SK_COLS})
    arrays.update({f"ph_{k}": data.photos[k].to_numpy(dtype=str) for k in _PH_COLS})
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load(path, world: StyleWorld) -> SBIRData:
    with np.load(path, allow_pickle=False) as z:
        xy, off = z["xy"], z["offsets"]
        lev, loff = z["levels"], z["level_offsets"]
        strokes = [xy[a:b] for a, b in zip(off[:-1], off[1:])]
        levels = [lev[a:b] for a, b in zip(loff[:-1], loff[1:])]
        sk = pd.DataFrame({k: z[f"sk_{k}"].astype(object) for k in _SK_COLS})
        ph = pd.DataFrame({k: z[f"ph_{k}"].astype(object) for k in _PH_COLS})
        photos = z["photos"]
    return world._assemble(sk, ph, strokes, levels, photos)


def load(root=None, cache: bool = True, **options) -> SBIRData:
    """The style world for ``WorldConfig(**options)``; ``root`` is ignored (nothing is read from disk
    except this world's own cache, ``cache_dir()/world-<hash>.npz``)."""
    cfg = WorldConfig.from_options(**options)
    world = StyleWorld(cfg)
    path = cache_dir() / f"world-{cfg.key}.npz"
    if cache and path.exists():
        try:
            return _load(path, world)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache is regenerated, never trusted
    data = world.generate()
    if cache:
        _save(data, path)
    return data


def drawer_styles(config: WorldConfig | None = None, **options) -> pd.DataFrame:
    """Drawers' physical style parameters, one row per drawer (cheap: nothing is drawn)."""
    world = StyleWorld(config or WorldConfig.from_options(**options))
    df = pd.DataFrame(W.style_params(world.styles))
    df.insert(0, "drawer_split", world.drawer_split)
    df.insert(0, "drawer", world.drawer_ids)
    return df


def detail_levels(data: SBIRData) -> list[np.ndarray]:
    """Per-stroke detail levels aligned with ``data.strokes``, also after ``data.subset(...)``
    (whose ``info["detail_levels"]`` still lists the whole world's sketches). One (S,) int8 per sketch."""
    by_id = data.info.get("detail_levels_by_id")
    if by_id is None:
        raise DataError(f"{data.name}: no per-stroke detail levels (only the style world has them)")
    return [by_id[sid] for sid in data.sketches["sketch_id"]]


def detail_subset(strokes, levels, max_level: int) -> np.ndarray:
    """The strokes of detail level <= ``max_level``: 0 coarse, 1 coarse++, 2 full. (N', 3) float64.

    Every sketch holds level-0 strokes, so the result is never empty.
    """
    from sbir_core import strokes as S

    parts = S.split_strokes(strokes)
    levels = np.asarray(levels)
    if len(levels) != len(parts):
        raise DataError(f"{len(levels)} detail levels for {len(parts)} strokes")
    keep = [p for p, lv in zip(parts, levels) if lv <= max_level]
    if not keep:
        raise DataError(f"no stroke of level <= {max_level}")
    return S.join_strokes(keep)
