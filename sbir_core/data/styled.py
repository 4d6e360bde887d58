"""Views for a sketch plus a style (Sketching with Style): training views with every medium of the
training objects, and category-level queries that carry style exemplars of the medium they want.

A styled problem is first a set of rows (``Styled``): which sketches are the queries, which images
the gallery, which images each query's exemplars; ``Styled.view(source)`` fills it with tensors from
a source that gives ``sketches(rows)`` and ``photos(rows)``: ``Pixels`` (the images themselves) or
features computed once per image (``sbir_core.recipes``), so that a sketch asked in eight media or
an image that is the exemplar of many queries is computed once.

A styled query asks for images of its sketch's class *in one medium*; its exemplars are images of
that medium drawn (seeded) from other objects than the gallery's, so the style never gives the
content away.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from sbir_core.data.base import DataError, SBIRData, cache_dir
from sbir_core.data.views import CategoryView, RetrievalView, photo_tensor, sketch_tensor


def _mask(table: pd.DataFrame, where: dict | None, what: str = "sketch") -> np.ndarray:
    keep = np.ones(len(table), bool)
    for col, value in (where or {}).items():
        if col not in table:
            raise DataError(f"no {what} column {col!r} to filter on (columns: {list(table.columns)})")
        keep &= table[col].isin([value] if isinstance(value, (str, bool, int)) else list(value)).to_numpy()
    return keep


# ---------------------------------------------------------------------- data


def world_in_media(data: SBIRData, media, instances=None) -> SBIRData:
    """The style world ``data`` with its objects' photos rendered in each of ``media`` (``instances``: the
    object ids to render, default all); the sketches are ``data``'s, unchanged (a world's media change its
    photos only, ``data.world.photos``). Rendered once and cached."""
    from sbir_core.cache import cached_arrays, content_hash

    world = data.info.get("world")
    if world is None:
        raise DataError(f"{data.name}: world_in_media needs the style world (its info['world'])")
    media = list(media)
    index = {x: i for i, x in enumerate(world.instance_ids)}
    ids = list(world.instance_ids) if instances is None else list(dict.fromkeys(instances))
    unknown = [x for x in ids if x not in index]
    if unknown or not ids or "photo" not in media:
        raise DataError(f"world_in_media: unknown objects {unknown[:3]}, or no objects, or no 'photo' in {media}")
    size = world.config.photo_size
    key = content_hash(world.config.base_key, json.dumps(media), "\0".join(ids))
    arrays = cached_arrays(
        cache_dir() / f"world-media-{key}.npz",
        lambda: {"photos": np.concatenate([world.photos(index[x], media) for x in ids])},
        {"photos": ((len(ids) * len(media), size, size, 3), np.uint8)},
    )
    first = data.photos.drop_duplicates("instance").set_index("instance")
    rows = first.loc[np.repeat(ids, len(media))].reset_index()
    rows["medium"] = media * len(ids)
    rows["photo_id"] = [f"{x}-{m}" for x, m in zip(rows["instance"], rows["medium"])]
    return dataclasses.replace(data, photos=rows[list(data.photos.columns)], photo_arrays=arrays["photos"])


def complete_classes(data: SBIRData, classes, sketch_splits, photo_splits) -> list:
    """The ``classes`` with a sketch in every split of ``sketch_splits`` and a photo of every medium of the data in
    every split of ``photo_splits``: the rule that leaves out a class a split cannot rank (a query of a class and
    medium with no gallery item of it has no relevant item)."""
    media = sorted(set(data.photos["medium"]))
    sk = set(zip(data.sketches["category"].astype(str), data.sketches["split"]))
    ph = set(zip(data.photos["category"].astype(str), data.photos["medium"], data.photos["split"]))
    return [
        c
        for c in classes
        if all((c, s) in sk for s in sketch_splits) and all((c, m, s) in ph for m in media for s in photo_splits)
    ]


def class_sample(data: SBIRData, classes, sketches: dict, photos: dict, seed: int = 0) -> SBIRData:
    """``data`` cut to ``classes``: per split, ``sketches[split]`` random sketches of each class and
    ``photos[split]`` random photos of each class and medium (a split not named keeps none; all where a
    class has fewer). Seeded; the rows keep the data's order."""
    rng = np.random.default_rng(seed)

    def pick(table, per, by):
        t = table[table["category"].isin(list(classes)) & table["split"].isin(list(per))]
        out = [rng.permutation(g.index.to_numpy())[: per[key[0]]] for key, g in t.groupby(["split", *by])]
        return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)

    sk, ph = pick(data.sketches, sketches, ["category"]), pick(data.photos, photos, ["category", "medium"])
    if not len(sk) or not len(ph):
        raise DataError(f"{data.name}: {len(sk)} sketches and {len(ph)} photos of classes {list(classes)}")
    files = None if data.photo_files is None else [data.photo_files[i] for i in ph]
    arrays = None if data.photo_arrays is None else data.photo_arrays[ph]
    return dataclasses.replace(data.subset(sk), photos=data.photos.iloc[ph], photo_files=files, photo_arrays=arrays)


# ---------------------------------------------------------------------- sources of tensors


@dataclass(frozen=True)
class Pixels:
    """Rows of a dataset as images: sketches (N, 1, S, S) drawn ``line_width`` wide, photos (N, 3, S, S)."""

    data: SBIRData
    size: int = 32
    line_width: float = 1.5

    def sketches(self, rows) -> torch.Tensor:
        return sketch_tensor(self.data.sketch_images(self.size, self.line_width)[np.asarray(rows, np.int64)])

    def photos(self, rows) -> torch.Tensor:
        return photo_tensor(self.data.photo_images(self.size)[np.asarray(rows, np.int64)])


@dataclass(frozen=True)
class Table:
    """Rows of a dataset as vectors computed beforehand: ``sketch`` (n_sketches, D) and ``photo``
    (n_photos, D'), NaN in the rows not computed (asking for one is an error)."""

    sketch: torch.Tensor
    photo: torch.Tensor

    @classmethod
    def of(cls, data: SBIRData, sketch_rows, sketch_values, photo_rows, photo_values) -> Table:
        """A table of ``data``'s size holding the given rows' values."""

        def fill(n, rows, values):
            out = torch.full((n, values.shape[1]), float("nan"))
            out[torch.as_tensor(np.asarray(rows, np.int64))] = values.float()
            return out

        return cls(
            fill(len(data.sketches), sketch_rows, sketch_values), fill(len(data.photos), photo_rows, photo_values)
        )

    def sketches(self, rows) -> torch.Tensor:
        return self._take(self.sketch, rows, "sketch")

    def photos(self, rows) -> torch.Tensor:
        return self._take(self.photo, rows, "photo")

    @staticmethod
    def _take(values, rows, what) -> torch.Tensor:
        out = values[torch.as_tensor(np.asarray(rows, np.int64))]
        if torch.isnan(out).any():
            raise DataError(f"a {what} row asked for was not computed beforehand (Table.of)")
        return out


# ---------------------------------------------------------------------- styled problems as rows


@dataclass
class Styled:
    """A styled retrieval problem as rows of its datasets' tables (fill it with ``view``).

    table: one row per query (a sketch; with ``want_medium`` for relevance "category_medium");
    gallery_table: one row per gallery image; q_rows (N,) / g_rows (M,): their rows in the sketch and
    photo data's tables; relevance: "category", "category_medium", or None for a training view, whose
    ``target`` (N,) is each query's gallery position; style_rows (N, k): photo rows of each query's
    exemplars (None: no style).
    """

    name: str
    table: pd.DataFrame
    gallery_table: pd.DataFrame
    q_rows: np.ndarray
    g_rows: np.ndarray
    relevance: str | None = "category_medium"
    style_rows: np.ndarray | None = None
    target: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.table)

    def view(self, sketches, photos=None):
        """The problem filled from sources with ``sketches(rows)`` and ``photos(rows)`` (``photos``: the
        gallery's and exemplars' source when another dataset's): a ``CategoryView`` (with ``style``
        (N, k, ...) when it has exemplars), or a ``RetrievalView`` for a training view."""
        photos = photos or sketches
        q, g = sketches.sketches(self.q_rows), photos.photos(self.g_rows)
        if self.relevance is None:
            t = torch.as_tensor(self.target, dtype=torch.long)
            return RetrievalView(self.name, q, g, t, self.table, self.gallery_table, None)
        style = None
        if self.style_rows is not None:
            style = photos.photos(self.style_rows.reshape(-1)).reshape(*self.style_rows.shape, *g.shape[1:])
        return CategoryView(self.name, q, g, self.table, self.gallery_table, self.relevance, style)

    def subset(self, keep) -> Styled:
        """The problem for the queries ``keep`` (a mask or rows), with the same gallery."""
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        t = self.table.iloc[idx].reset_index(drop=True)
        return dataclasses.replace(
            self, table=t, q_rows=self.q_rows[idx], style_rows=pick(self.style_rows), target=pick(self.target)
        )

    def sketch_only(self, medium: str | None = None) -> Styled:
        """Each sketch once, without style, against the gallery's images in ``medium`` (None: all),
        relevance by class: the sketch-only search."""
        first = ~self.table.duplicated("sketch_id").to_numpy() if "sketch_id" in self.table else slice(None)
        g = np.ones(len(self.gallery_table), bool) if medium is None else (self.gallery_table["medium"] == medium)
        g = np.asarray(g)
        name = f"{self.name}/{medium or 'all media'}"
        t = self.table[first].drop(columns="want_medium", errors="ignore").reset_index(drop=True)
        gt = self.gallery_table[g].reset_index(drop=True)
        return Styled(name, t, gt, self.q_rows[first], self.g_rows[g], "category")


def styled_train(data: SBIRData, split: str = "train", media=None, where: dict | None = None, paired: bool = True):
    """Sketches of ``split`` (filtered by ``where``) as queries; the gallery is every image of the split in
    ``media`` (None: all the data has) of the queries' classes, with ``category`` and ``medium``. A query's
    target is its own object's image in the first medium (the view needs one; the styled losses use
    classes), or with ``paired=False`` (sketches drawn from no particular image, e.g. PACS) the first image
    of its class there. A ``Styled`` training problem."""
    sk, ph = data.sketches, data.photos
    keep = (sk["split"] == split).to_numpy() & _mask(sk, where)
    have = list(dict.fromkeys(ph["medium"])) if "medium" in ph else []  # the data's order: its first medium first
    media = list(dict.fromkeys(media or have))
    missing = sorted(set(media) - set(have))
    if missing:
        raise DataError(f"{data.name}: media {missing} are missing (the data has {sorted(have)})")
    q_rows = np.flatnonzero(keep)
    cats = set(sk["category"].iloc[q_rows])  # the gallery holds the queries' classes only
    g_rows = np.flatnonzero(((ph["split"] == split) & ph["medium"].isin(media) & ph["category"].isin(cats)).to_numpy())
    if len(q_rows) == 0 or len(g_rows) == 0:
        raise DataError(f"{data.name}: {len(q_rows)} sketches and {len(g_rows)} images in split {split!r}")
    gtab = ph.iloc[g_rows].reset_index(drop=True)
    key = "instance" if paired else "category"
    first = {}
    for i, (value, m) in enumerate(zip(gtab[key], gtab["medium"])):
        if m == media[0]:
            first.setdefault(value, i)
    inst = sk[key].iloc[q_rows].to_numpy()
    ok = np.array([i in first for i in inst])
    q_rows, inst = q_rows[ok], inst[ok]
    target = np.array([first[i] for i in inst], dtype=np.int64)
    table = sk.iloc[q_rows].reset_index(drop=True)
    return Styled(f"{data.name}/{split}/styled", table, gtab, q_rows, g_rows, None, None, target)


def styled_problem(
    data: SBIRData,
    sketches: dict,
    photos: dict,
    pool: dict,
    k: int = 3,
    seed: int = 0,
    want_media=None,
    name: str | None = None,
) -> Styled:
    """Sketches matching ``sketches`` (column -> value or list) asking, once per medium of ``want_media``
    (default: every medium of the gallery), for the images matching ``photos`` of their class in that
    medium; each with ``k`` exemplars of the medium drawn (seeded) from the images matching ``pool``."""
    return _styled(
        name or f"{data.name}/styled",
        data,
        data,
        _mask(data.sketches, sketches),
        _mask(data.photos, photos, "photo"),
        _mask(data.photos, pool, "photo"),
        k,
        seed,
        want_media,
    )


def cross_styled(
    sketch_data: SBIRData,
    photo_data: SBIRData,
    classes,
    k: int = 3,
    seed: int = 0,
    sketch_split: str | None = "test",
    gallery_split: str = "test",
    pool_split: str = "train",
    want_media=None,
    max_per_class: int | None = None,
) -> Styled:
    """Sketches of one dataset (QuickDraw) asking for images of another (PACS, medium = domain) of the
    given ``classes``, relevance by class and medium, ``k`` exemplars per query from ``pool_split``. A class
    without sketches or without images is an error naming it. ``sketch_split=None``: every sketch (the
    query dataset is not trained on); ``max_per_class``: at most that many sketches of a class."""
    classes = list(classes)
    if not classes:
        raise DataError("cross_styled: no classes")
    sk, ph = sketch_data.sketches, photo_data.photos
    no_sketch = [c for c in classes if not (sk["category"] == c).any()]
    no_photo = [c for c in classes if not (ph["category"] == c).any()]
    if no_sketch or no_photo:
        raise DataError(
            f"classes {no_sketch} have no {sketch_data.name} sketches; classes {no_photo} have no "
            f"{photo_data.name} images ({photo_data.name} classes: {sorted(set(ph['category']))})"
        )
    q = sk["category"].isin(classes).to_numpy() & _mask(sk, None if sketch_split is None else {"split": sketch_split})
    if max_per_class is not None:  # the first ones of each class
        q &= pd.Series(q).groupby(sk["category"].to_numpy()).cumsum().to_numpy() <= max_per_class
    in_class = ph["category"].isin(classes).to_numpy()
    return _styled(
        f"{sketch_data.name}->{photo_data.name}",
        sketch_data,
        photo_data,
        q,
        in_class & (ph["split"] == gallery_split).to_numpy(),
        in_class & (ph["split"] == pool_split).to_numpy(),
        k,
        seed,
        want_media,
    )


def _styled(name, sketch_data, photo_data, q_mask, g_mask, p_mask, k, seed, want_media) -> Styled:
    sk, ph = sketch_data.sketches, photo_data.photos
    q_rows, g_rows, p_rows = (np.flatnonzero(np.asarray(m, bool)) for m in (q_mask, g_mask, p_mask))
    if not len(q_rows) or not len(g_rows) or not len(p_rows):
        raise DataError(
            f"{name}: {len(q_rows)} sketches, {len(g_rows)} gallery and {len(p_rows)} exemplar images match"
        )
    gtab = ph.iloc[g_rows].reset_index(drop=True)
    missing = sorted(set(sk["category"].iloc[q_rows]) - set(gtab["category"]))
    if missing:
        raise DataError(f"{name}: query classes {missing[:5]} have no item in the gallery")
    media = sorted(set(gtab["medium"])) if want_media is None else list(want_media)
    table = pd.concat([sk.iloc[q_rows].reset_index(drop=True).assign(want_medium=m) for m in media], ignore_index=True)
    pool_media = ph["medium"].to_numpy()[p_rows]
    style = p_rows[style_rows(table["want_medium"].to_numpy(), pool_media, set(gtab["medium"]), k, seed, name)]
    return Styled(name, table, gtab, np.tile(q_rows, len(media)), g_rows, "category_medium", style)


def style_rows(want, pool_media, gallery_media, k: int = 3, seed: int = 0, name: str = "") -> np.ndarray:
    """(N, k) rows of a pool whose media are ``pool_media`` (P,): for each query ``k`` random (seeded)
    exemplars of the medium it wants (``want`` (N,)); a wanted medium absent from ``gallery_media`` or the
    pool is an error naming the media present."""
    if k < 1:
        raise DataError(f"a style query needs at least one exemplar, got k={k}")
    pool_media = np.asarray(pool_media)
    for m in sorted(set(want)):
        if m not in gallery_media:
            raise DataError(f"{name}: style medium {m!r} has no gallery item (gallery media: {sorted(gallery_media)})")
        if not (pool_media == m).any():
            raise DataError(f"{name}: no exemplar image of medium {m!r} (exemplar media: {sorted(set(pool_media))})")
    g = torch.Generator().manual_seed(seed)
    pools = {m: np.flatnonzero(pool_media == m) for m in set(want)}
    return torch.stack([pick_rows(pools, want, g) for _ in range(k)], 1).numpy()


def attach_style(view: CategoryView, pool: torch.Tensor, pool_media, k: int = 3, seed: int = 0) -> torch.Tensor:
    """Give each query of a ``CategoryView`` (relevance "category_medium") ``k`` exemplars of the medium it
    wants, drawn (seeded) from ``pool`` (P, ...) whose media are ``pool_media`` (P,): sets and returns
    ``view.style`` (N, k, ...). The pool should hold other objects than the gallery (e.g. training images)."""
    if "want_medium" not in view.table:
        raise DataError(f"{view.name}: queries have no want_medium (build it with relevance='category_medium')")
    if len(pool_media) != len(pool):
        raise DataError(f"{len(pool)} exemplar images but {len(pool_media)} media labels")
    rows = style_rows(
        view.table["want_medium"].to_numpy(), pool_media, set(view.gallery_table["medium"]), k, seed, view.name
    )
    view.style = pool[torch.as_tensor(rows.reshape(-1))].reshape(*rows.shape, *pool.shape[1:])
    return view.style


def pick_rows(pools: dict, keys, generator: torch.Generator) -> torch.Tensor:
    """One random row of ``pools[key]`` for each key: (B,) int64."""
    out = []
    for key in keys:
        rows = pools[key]
        if len(rows) == 0:
            raise DataError(f"styled triplets: no gallery image for {key!r} (every class needs every medium)")
        out.append(rows[int(torch.randint(len(rows), (1,), generator=generator))])
    return torch.as_tensor(out, dtype=torch.long)
