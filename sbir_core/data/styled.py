"""Views for a sketch plus a style: training views with every medium of the training objects, and
category-level queries that carry style exemplars of the medium they want (Sketching with Style).

A styled query asks for images of its sketch's class *in one medium*; its exemplars are images of
that medium drawn (seeded) from other objects than the gallery's, so the style never gives the
content away.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from sbir_core.data.base import DataError, SBIRData
from sbir_core.data.views import CategoryView, RetrievalView, category_view, photo_tensor, sketch_tensor


def styled_train_view(
    data: SBIRData,
    split: str = "train",
    size: int = 32,
    line_width: float = 1.5,
    media=None,
    where: dict | None = None,
    paired: bool = True,
) -> RetrievalView:
    """Sketches of ``split`` (filtered by ``where``) as queries; the gallery is every image of the split's
    photos in ``media`` (None: all the data has) of the queries' classes, with ``category`` and ``medium``.
    A query's target is its own object's image in the first medium (the view needs one; the styled losses
    use classes), or with ``paired=False`` (sketches drawn from no particular image, e.g. PACS) the first
    image of its class there."""
    sk, ph = data.sketches, data.photos
    keep = (sk["split"] == split).to_numpy().copy()
    for col, value in (where or {}).items():
        keep &= sk[col].isin([value] if isinstance(value, (str, bool, int)) else list(value)).to_numpy()
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
    target = torch.as_tensor([first[i] for i in inst], dtype=torch.long)
    return RetrievalView(
        f"{data.name}/{split}/styled",
        sketch_tensor(data.sketch_images(size, line_width)[q_rows]),
        photo_tensor(data.photo_images(size)[g_rows]),
        target,
        sk.iloc[q_rows].copy(),
        gtab,
        None,
    )


def attach_style(view, pool: torch.Tensor, pool_media, k: int = 3, seed: int = 0):
    """Give each query of a ``CategoryView`` (relevance "category_medium") ``k`` exemplar images of the
    medium it wants, drawn at random (seeded) from ``pool`` (P, C, S, S) whose media are ``pool_media``
    (P,): sets and returns ``view.style`` (N, k, C, S, S). The pool should hold other objects than the
    gallery (e.g. training images), so the style does not give the content away.
    """
    if k < 1:
        raise DataError(f"a style query needs at least one exemplar, got k={k}")
    if "want_medium" not in view.table:
        raise DataError(f"{view.name}: queries have no want_medium (build it with relevance='category_medium')")
    pool_media = np.asarray(pool_media)
    if len(pool_media) != len(pool):
        raise DataError(f"{len(pool)} exemplar images but {len(pool_media)} media labels")
    gallery_media = set(view.gallery_table["medium"])
    want = view.table["want_medium"].to_numpy()
    for m in sorted(set(want)):
        if m not in gallery_media:
            raise DataError(
                f"{view.name}: style medium {m!r} has no gallery item (gallery media: {sorted(gallery_media)})"
            )
        if not (pool_media == m).any():
            raise DataError(
                f"{view.name}: no exemplar image of medium {m!r} (exemplar media: {sorted(set(pool_media))})"
            )
    g = torch.Generator().manual_seed(seed)
    rows = torch.stack(
        [pick_rows({m: np.flatnonzero(pool_media == m) for m in set(want)}, want, g) for _ in range(k)], 1
    )
    view.style = pool[rows.flatten()].view(len(want), k, *pool.shape[1:])
    return view.style


def styled_queries(
    data: SBIRData,
    sketches: dict,
    photos: dict,
    pool: dict,
    size: int = 32,
    line_width: float = 1.5,
    k: int = 3,
    seed: int = 0,
    want_media=None,
    name: str | None = None,
):
    """A category-level view with relevance by class and medium (``views.category_view``) whose queries
    carry ``k`` style exemplars of the wanted medium, drawn from the photos matching ``pool`` (other
    objects than the gallery's): a ``CategoryView`` with ``style`` (N, k, C, S, S) set."""
    view = category_view(
        data, sketches, photos, size, line_width, relevance="category_medium", want_media=want_media, name=name
    )
    ph = data.photos
    keep = np.ones(len(ph), bool)
    for col, value in (pool or {}).items():
        keep &= ph[col].isin([value] if isinstance(value, (str, bool, int)) else list(value)).to_numpy()
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise DataError(f"{data.name}: no exemplar images match {pool}")
    attach_style(view, photo_tensor(data.photo_images(size)[rows]), ph["medium"].to_numpy()[rows], k, seed)
    return view


def cross_styled_queries(
    sketch_data: SBIRData,
    photo_data: SBIRData,
    classes,
    size: int = 32,
    line_width: float = 1.5,
    k: int = 3,
    seed: int = 0,
    sketch_split: str | None = "test",
    gallery_split: str = "test",
    pool_split: str = "train",
    want_media=None,
    max_per_class: int | None = None,
):
    """Sketches of one dataset (QuickDraw) asking for images of another (PACS, medium = domain) of the
    given ``classes``: a ``CategoryView`` with relevance by class and medium and ``k`` exemplars per
    query from ``pool_split``. A class without sketches or without images is an error naming it; a
    wanted medium absent from the gallery is an error naming the media present. ``sketch_split=None``: every
    sketch (the query dataset is not trained on)."""
    classes = list(classes)
    if not classes:
        raise DataError("cross_styled_queries: no classes")
    sk, ph = sketch_data.sketches, photo_data.photos
    no_sketch = [c for c in classes if not (sk["category"] == c).any()]
    no_photo = [c for c in classes if not (ph["category"] == c).any()]
    if no_sketch or no_photo:
        raise DataError(
            f"classes {no_sketch} have no {sketch_data.name} sketches; classes {no_photo} have no "
            f"{photo_data.name} images ({photo_data.name} classes: {sorted(set(ph['category']))})"
        )
    q = sk[((sk["split"] == sketch_split) if sketch_split else True) & sk["category"].isin(classes)]
    if max_per_class is not None:
        q = q.groupby("category").head(max_per_class)
    g_mask = ((ph["split"] == gallery_split) & ph["category"].isin(classes)).to_numpy()
    p_mask = ((ph["split"] == pool_split) & ph["category"].isin(classes)).to_numpy()
    if len(q) == 0 or not g_mask.any() or not p_mask.any():
        raise DataError(
            f"{len(q)} {sketch_data.name} sketches in split {sketch_split!r}, {g_mask.sum()} gallery and "
            f"{p_mask.sum()} exemplar images of {photo_data.name} for classes {classes}"
        )
    q_rows = q.index.to_numpy() if q.index.equals(pd.RangeIndex(len(q))) else np.flatnonzero(sk.index.isin(q.index))
    gtab = ph[g_mask].reset_index(drop=True)
    media = sorted(set(gtab["medium"])) if want_media is None else list(want_media)
    absent = sorted(set(media) - set(gtab["medium"]))
    if absent:
        raise DataError(
            f"{photo_data.name}: wanted media {absent} have no gallery item (media present: "
            f"{sorted(set(gtab['medium']))})"
        )
    table = pd.concat([sk.iloc[q_rows].reset_index(drop=True).assign(want_medium=m) for m in media], ignore_index=True)
    queries = sketch_tensor(sketch_data.sketch_images(size, line_width)[q_rows]).repeat(len(media), 1, 1, 1)
    images = photo_data.photo_images(size)
    view = CategoryView(
        f"{sketch_data.name}->{photo_data.name}",
        queries.contiguous(memory_format=torch.channels_last),
        photo_tensor(images[g_mask]),
        table,
        gtab,
        "category_medium",
    )
    attach_style(view, photo_tensor(images[p_mask]), ph["medium"].to_numpy()[p_mask], k, seed)
    return view


def pick_rows(pools: dict, keys, generator: torch.Generator) -> torch.Tensor:
    """One random row of ``pools[key]`` for each key: (B,) int64."""
    out = []
    for key in keys:
        rows = pools[key]
        if len(rows) == 0:
            raise DataError(f"styled triplets: no gallery image for {key!r} (every class needs every medium)")
        out.append(rows[int(torch.randint(len(rows), (1,), generator=generator))])
    return torch.as_tensor(out, dtype=torch.long)
