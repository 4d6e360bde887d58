"""The style world: an embedded sketch–photo benchmark with drawing style as a dial.

``load(root=None, **options)`` builds a ``WorldConfig`` from the options, and generates the world
(or reloads it from ``cache_dir()/world-<hash>.npz``) as one ``SBIRData``:

* objects: parametric line art of eight categories (``objects.CATEGORIES``), each instance a
  vector of fine-grained attributes; every stroke carries a detail level (0, 1, 2). Objects come
  in **families of near-twins**: a prototype and ``family_size - 1`` members that each change
  ``twin_changes`` of its attributes, so two members of a family differ in one or two details.
  Whole families go to one split, so every test object has its look-alikes in the test gallery;
* photos: the same geometry rendered with nuisance appearance in one or more ``media``
  (one photo row per instance and medium; sketches pair with the first medium);
* drawers: simulated people with a persistent style (``drawers.STYLE_DIMS``). Seen drawers draw
  instances of every split. Unseen drawers, whose styles are shifted by ``style_gap`` (how they
  draw) and ``detail_gap`` (how much they draw), draw the test instances and, as the
  **adaptation split**, train and val instances: their sketches of objects that are never
  tested, for few-shot support sets and for a control model trained on their style.

``StyleWorld(config)`` draws any object with any drawer on demand, makes near-twins and photos
for figures and widgets; the same calls produce the stored sketches, bit for bit.

The cache holds two verified files (``sbir_core.cache``): the part that no gap changes (photos,
seen drawers' sketches) under a key without the gap options, and the unseen drawers' sketches
under the full key; so worlds that differ only in their gaps share the first and cost one
redraw of the second.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd

from sbir_core.cache import cached_arrays
from sbir_core.data.base import DataError, SBIRData, cache_dir
from sbir_core.data.world import drawers as W
from sbir_core.data.world import objects as O
from sbir_core.data.world import photos as P
from sbir_core.data.world.drawers import N_STYLE, STYLE_DIMS, STYLE_NAMES
from sbir_core.data.world.objects import CATEGORIES
from sbir_core.data.world.photos import MEDIA

GENERATOR_VERSION = 5  # bump when generation changes, so old caches are not reused
SPLITS = ("train", "val", "test")

# the options that only change the unseen drawers' sketches (the cache's second file)
GAP_FIELDS = (
    "style_gap",
    "detail_gap",
    "drawers_unseen",
    "unseen_sketches_per_instance",
    "adaptation_sketches_per_instance",
)

__all__ = [
    "CATEGORIES",
    "MEDIA",
    "N_STYLE",
    "STYLE_DIMS",
    "STYLE_NAMES",
    "StyleWorld",
    "WorldConfig",
    "WorldConfigError",
    "adaptation_split",
    "detail_levels",
    "detail_subset",
    "drawer_styles",
    "load",
    "support_set",
]


class WorldConfigError(DataError, ValueError):
    """A style-world configuration value out of range; the message names the field."""


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a style world; the same config gives the same arrays."""

    seed: int = 0  # base seed of every random stream
    n_instances: int = 1024  # objects, in families spread evenly over the categories
    categories: tuple[str, ...] = tuple(CATEGORIES)  # which object categories exist
    unseen_categories: tuple[str, ...] = ("lamp", "bag")  # tagged category_split="unseen"
    family_size: int = 4  # objects per family of near-twins (1: independent objects)
    twin_changes: int = 1  # attributes each family member changes from the prototype
    drawers_seen: int = 24  # drawers who draw train, val and test objects
    drawers_unseen: int = 8  # drawers who draw test objects and the adaptation split
    sketches_per_instance: int = 4  # seen drawers per object (distinct drawers)
    unseen_sketches_per_instance: int = 2  # unseen drawers per test object
    adaptation_sketches_per_instance: int = 2  # unseen drawers per train and val object (adaptation split)
    style_gap: float = 3.0  # distance of unseen from seen style means along how they draw
    detail_gap: float = 0.0  # shift of unseen drawers towards less detail (latent units)
    style_spread: float = 0.7  # spread of drawers' styles around their mean
    style_jitter: float = 0.3  # one drawer's sketch-to-sketch style variation
    media: tuple[str, ...] = ("photo", "pen_ink")  # photo media; sketches pair with media[0]
    photo_size: int = 64  # photo side, pixels
    pose_jitter: float = 0.5  # photo rotation and shift scale (0: none)
    val_fraction: float = 0.1  # fraction of each category's families in val
    test_fraction: float = 0.4  # fraction of each category's families in test
    point_spacing: float = 7.0  # canvas pixels between sketch points before simplification
    base_tremor: float = 0.6  # tremor every hand has, canvas pixels

    def __post_init__(self):
        for name in ("categories", "unseen_categories", "media"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise WorldConfigError(f"{name} must be a list of names, got the string {value!r}")
            object.__setattr__(self, name, tuple(value))
        for name in (
            "n_instances",
            "drawers_seen",
            "drawers_unseen",
            "sketches_per_instance",
            "unseen_sketches_per_instance",
            "adaptation_sketches_per_instance",
            "photo_size",
            "family_size",
            "twin_changes",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                raise WorldConfigError(f"{name} must be a non-negative integer, got {value!r}")
        for name in (
            "style_gap",
            "detail_gap",
            "style_spread",
            "style_jitter",
            "pose_jitter",
            "base_tremor",
            "val_fraction",
            "test_fraction",
            "point_spacing",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise WorldConfigError(f"{name} must be a number, got {value!r}")
        for name in ("style_gap", "style_spread", "style_jitter", "pose_jitter", "base_tremor"):
            if not np.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise WorldConfigError(f"{name} must be a non-negative number, got {getattr(self, name)!r}")
        if not np.isfinite(self.detail_gap):
            raise WorldConfigError(f"detail_gap must be a finite number, got {self.detail_gap!r}")
        for name in ("categories", "unseen_categories"):
            bad = [c for c in getattr(self, name) if c not in CATEGORIES]
            if bad:
                raise WorldConfigError(f"{name}: unknown categories {bad}; known: {', '.join(CATEGORIES)}")
        if not set(self.unseen_categories) <= set(self.categories):
            raise WorldConfigError(
                f"unseen_categories {list(self.unseen_categories)} must be among categories {list(self.categories)}"
            )
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
            raise WorldConfigError(
                f"sketches_per_instance must lie in 1..drawers_seen={self.drawers_seen}, "
                f"got {self.sketches_per_instance}"
            )
        for name in ("unseen_sketches_per_instance", "adaptation_sketches_per_instance"):
            if getattr(self, name) > self.drawers_unseen:
                raise WorldConfigError(
                    f"{name} must lie in 0..drawers_unseen={self.drawers_unseen}, got {getattr(self, name)}"
                )
        if self.family_size < 1:
            raise WorldConfigError(f"family_size must be at least 1, got {self.family_size}")
        n_attrs = min(len(O.attributes(c)) for c in self.categories)
        if not 1 <= self.twin_changes <= n_attrs:
            raise WorldConfigError(
                f"twin_changes must lie in 1..{n_attrs} (the fewest attributes of a category), got {self.twin_changes}"
            )
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise WorldConfigError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise WorldConfigError("val_fraction + test_fraction must be below 1")
        if self.point_spacing <= 0:
            raise WorldConfigError(f"point_spacing must be positive, got {self.point_spacing}")

    @classmethod
    def from_options(cls, **options) -> WorldConfig:
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

    @property
    def base_key(self) -> str:
        """The key of what no gap option changes (photos, seen drawers' sketches)."""
        base = {k: v for k, v in asdict(self).items() if k not in GAP_FIELDS}
        text = json.dumps({"v": GENERATOR_VERSION, "part": "base", **base}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @property
    def n_families(self) -> int:
        return -(-self.n_instances // self.family_size)


def _rng(*keys) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


@dataclass
class StyleWorld:
    """The world's fixed parts (objects, drawers, appearances, splits), and drawing on demand."""

    config: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self):
        c = self.config
        n = c.n_instances
        self.family = np.arange(n) // c.family_size
        family_category = [c.categories[k % len(c.categories)] for k in range(c.n_families)]
        self.category = [family_category[f] for f in self.family]
        self.instance_ids = [f"{cat}-{i:04d}" for i, cat in enumerate(self.category)]
        self.family_ids = [f"{family_category[f]}-f{f:03d}" for f in self.family]
        self.attributes = np.full((n, O.MAX_ATTRS), np.nan)
        for i, cat in enumerate(self.category):
            vals = self._family_member(cat, int(self.family[i]), i % c.family_size)
            self.attributes[i, : len(vals)] = vals
        self.appearance = [P.sample_appearance(_rng(c.seed, 3, i), c.pose_jitter) for i in range(n)]
        rng = _rng(c.seed, 2)
        self.gap_direction = W.gap_direction(c.seed)
        shift = c.style_gap * self.gap_direction + c.detail_gap * W.detail_direction()
        seen = W.sample_styles(c.drawers_seen, rng, c.style_spread)
        unseen = W.sample_styles(c.drawers_unseen, rng, c.style_spread, shift)
        self.styles = np.vstack([seen, unseen]).reshape(-1, N_STYLE)
        self.drawer_ids = [f"d{k:03d}" for k in range(len(self.styles))]
        self.drawer_split = ["seen"] * c.drawers_seen + ["unseen"] * c.drawers_unseen
        self.split = self._splits(family_category)

    def _family_member(self, category: str, family: int, member: int) -> np.ndarray:
        """Attributes of one family member: the prototype (member 0) or it with ``twin_changes`` attributes
        changed, each member changing other attributes than its siblings while there are enough."""
        c = self.config
        proto = O.sample_attributes(category, _rng(c.seed, 1, family))
        if member == 0:
            return proto
        specs = O.attributes(category)
        order = _rng(c.seed, 9, family).permutation(len(specs))
        which = [order[(k + (member - 1) * c.twin_changes) % len(specs)] for k in range(c.twin_changes)]
        rng = _rng(c.seed, 10, family, member)
        vals = proto.copy()
        for j in which:
            vals[j] = specs[j].other(proto[j], rng)
        return vals

    def _splits(self, family_category: list[str]) -> list[str]:
        """Instance split by family, stratified by category: test, then val, the rest train."""
        c = self.config
        fam_split = ["train"] * c.n_families
        rng = _rng(c.seed, 4)
        for cat in c.categories:
            fams = np.array([k for k, fc in enumerate(family_category) if fc == cat])
            fams = fams[rng.permutation(len(fams))]
            n_test = int(round(c.test_fraction * len(fams)))
            n_val = int(round(c.val_fraction * len(fams)))
            for k in fams[:n_test]:
                fam_split[k] = "test"
            for k in fams[n_test : n_test + n_val]:
                fam_split[k] = "val"
        return [fam_split[f] for f in self.family]

    # -- on demand ---------------------------------------------------------------------------
    def values(self, i: int) -> np.ndarray:
        """Attribute values of instance i, (n_attrs,) float64."""
        n = len(O.attributes(self.category[i]))
        return self.attributes[i, :n]

    def parts(self, i: int, values=None) -> list[O.Part]:
        return O.build_parts(self.category[i], self.values(i) if values is None else values)

    def drawers_of(self, i: int, who: str = "all") -> list[int]:
        """Drawer indices who sketch instance i: ``who`` = "seen", "unseen" or "all" (seen first).

        Seen drawers draw every object; unseen drawers draw test objects
        (``unseen_sketches_per_instance``) and train / val objects (the adaptation split,
        ``adaptation_sketches_per_instance``). The seen choice never depends on the unseen options.
        """
        c = self.config
        rng = _rng(c.seed, 5, i)
        seen = [int(d) for d in rng.choice(c.drawers_seen, c.sketches_per_instance, replace=False)]
        n = c.unseen_sketches_per_instance if self.split[i] == "test" else c.adaptation_sketches_per_instance
        unseen = [int(c.drawers_seen + d) for d in rng.choice(c.drawers_unseen, n, replace=False)] if n else []
        return {"seen": seen, "unseen": unseen, "all": seen + unseen}[who]

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
        return {
            "instance": self.instance_ids[i],
            "category": self.category[i],
            **O.describe(self.category[i], self.values(i)),
        }

    # -- the whole world ---------------------------------------------------------------------
    def generate(self) -> SBIRData:
        """Every sketch and photo of the world as SBIRData (no cache; see ``load``)."""
        return self._assemble({**self._draw_part("base"), **self._draw_part("unseen")})

    def _draw_part(self, part: str) -> dict[str, np.ndarray]:
        """The arrays of one cache part: "base" (photos and seen drawers' sketches) or "unseen"."""
        c = self.config
        rows, strokes, levels = [], [], []
        for i in range(len(self.instance_ids)):
            for d in self.drawers_of(i, "seen" if part == "base" else "unseen"):
                s, lv = self.sketch(i, d)
                strokes.append(s)
                levels.append(lv)
                rows.append((i, d))
        rows = np.array(rows, dtype=np.int64).reshape(-1, 2)
        lengths = np.array([len(s) for s in strokes], dtype=np.int64)
        nlev = np.array([len(v) for v in levels], dtype=np.int64)
        out = {
            f"{part}_rows": rows,
            f"{part}_xy": np.concatenate(strokes) if strokes else np.zeros((0, 3)),
            f"{part}_offsets": np.concatenate([[0], np.cumsum(lengths)]),
            f"{part}_levels": (np.concatenate(levels) if levels else np.zeros(0)).astype(np.int8),
            f"{part}_level_offsets": np.concatenate([[0], np.cumsum(nlev)]),
        }
        if part == "base":
            n_media = len(c.media)
            arrays = np.empty((c.n_instances * n_media, c.photo_size, c.photo_size, 3), dtype=np.uint8)
            for i in range(c.n_instances):
                arrays[i * n_media : (i + 1) * n_media] = self.photos(i)
            out["photos"] = arrays
        return out

    def _assemble(self, arrays: dict[str, np.ndarray]) -> SBIRData:
        """SBIRData from the two parts' arrays (seen drawers' sketches first, then unseen ones)."""
        c = self.config
        strokes, levels, rows = [], [], []
        for part in ("base", "unseen"):
            xy, off = arrays[f"{part}_xy"], arrays[f"{part}_offsets"]
            lev, loff = arrays[f"{part}_levels"], arrays[f"{part}_level_offsets"]
            strokes += [xy[a:b] for a, b in zip(off[:-1], off[1:])]
            levels += [lev[a:b] for a, b in zip(loff[:-1], loff[1:])]
            rows.append(arrays[f"{part}_rows"])
        rows = np.concatenate(rows)
        inst, drw = rows[:, 0], rows[:, 1]
        ids = np.array(self.instance_ids, dtype=object)
        cats = np.array(self.category, dtype=object)
        split = np.array(self.split, dtype=object)
        dids, dsplit = np.array(self.drawer_ids, dtype=object), np.array(self.drawer_split, dtype=object)
        sk = pd.DataFrame(
            {
                "sketch_id": [f"{a}-{b}" for a, b in zip(ids[inst], dids[drw])],
                "photo_id": [f"{a}-{c.media[0]}" for a in ids[inst]],
                "instance": ids[inst],
                "category": cats[inst],
                "drawer": dids[drw],
                "drawer_split": dsplit[drw],
                "split": split[inst],
            }
        )
        n_media = len(c.media)
        ph = pd.DataFrame(
            {
                "photo_id": [f"{a}-{m}" for a in self.instance_ids for m in c.media],
                "instance": np.repeat(ids, n_media),
                "category": np.repeat(cats, n_media),
                "split": np.repeat(split, n_media),
                "medium": list(c.media) * c.n_instances,
            }
        )
        unseen = set(c.unseen_categories)
        family = dict(zip(self.instance_ids, self.family_ids))
        for df in (sk, ph):
            df["category_split"] = ["unseen" if k in unseen else "seen" for k in df["category"]]
            df["family"] = [family[i] for i in df["instance"]]
        sk["adaptation"] = (sk["drawer_split"] == "unseen") & (sk["split"] != "test")
        info = {
            "config": asdict(c),
            "fingerprint": c.key,
            "detail_levels": levels,
            "detail_levels_by_id": dict(zip(sk["sketch_id"], levels)),
            "attributes": self.attributes,
            "instances": list(self.instance_ids),
            "families": list(self.family_ids),
            "attribute_names": {k: [a.name for a in O.attributes(k)] for k in c.categories},
            "styles": self.styles,
            "style_names": list(STYLE_NAMES),
            "drawer_ids": list(self.drawer_ids),
            "drawer_split": list(self.drawer_split),
            "world": self,
        }
        return SBIRData("style_world", sk, ph, strokes=strokes, photo_arrays=arrays["photos"], info=info)


# -- cache: two verified npz files, no pickle ----------------------------------------------------


def _part_expect(part: str, config: WorldConfig) -> dict[str, tuple]:
    expect = {
        f"{part}_rows": ((None, 2), np.int64),
        f"{part}_xy": ((None, 3), np.float64),
        f"{part}_offsets": ((None,), np.int64),
        f"{part}_levels": ((None,), np.int8),
        f"{part}_level_offsets": ((None,), np.int64),
    }
    if part == "base":
        n = config.n_instances * len(config.media)
        expect["photos"] = ((n, config.photo_size, config.photo_size, 3), np.uint8)
    return expect


def load(root=None, cache: bool = True, **options) -> SBIRData:
    """The style world for ``WorldConfig(**options)``; ``root`` is ignored (nothing is read from disk
    except this world's own verified cache files, ``cache_dir()/world-<key>-{base,unseen}.npz``)."""
    cfg = WorldConfig.from_options(**options)
    world = StyleWorld(cfg)
    arrays = {}
    for part, key in (("base", cfg.base_key), ("unseen", cfg.key)):
        path = cache_dir() / f"world-{key}-{part}.npz"
        arrays.update(cached_arrays(path, lambda p=part: world._draw_part(p), _part_expect(part, cfg), cache))
    return world._assemble(arrays)


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


def adaptation_split(data: SBIRData) -> SBIRData:
    """The unseen drawers' sketches of objects outside the test split (train and val objects)."""
    if "adaptation" not in data.sketches:
        raise DataError(f"{data.name}: no adaptation split (only the style world has one)")
    return data.subset(data.sketches["adaptation"].to_numpy(dtype=bool))


def support_set(data: SBIRData, drawer: str, k: int, seed: int = 0) -> np.ndarray:
    """Rows of ``data.sketches`` of k sketches by ``drawer`` from the adaptation split, drawn with ``seed``.

    Never a test object: these are the drawer's sketches of train and val objects. A clear error
    when the drawer is unknown, not unseen, or has fewer than k such sketches.
    """
    sk = data.sketches
    if "adaptation" not in sk:
        raise DataError(f"{data.name}: no adaptation split (only the style world has one)")
    if drawer not in set(sk["drawer"]):
        raise DataError(f"{data.name}: unknown drawer {drawer!r}")
    rows = np.flatnonzero(((sk["drawer"] == drawer) & sk["adaptation"]).to_numpy())
    if len(rows) == 0:
        raise DataError(
            f"{data.name}: drawer {drawer!r} has no sketches in the adaptation split (only unseen drawers have one)"
        )
    if not 1 <= k <= len(rows):
        raise DataError(
            f"{data.name}: support set of k={k} asked for drawer {drawer!r}, whose adaptation split "
            f"holds {len(rows)} sketches; k must lie in 1..{len(rows)}"
        )
    return np.sort(np.random.default_rng([seed, 11]).choice(rows, k, replace=False))
