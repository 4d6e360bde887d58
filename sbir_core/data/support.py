"""Support sets and the views they come from: what a model adapts on at test time.

A support is a dict of triplets (``sketch``, ``photo``, ``neg`` tensors and their gallery indices),
the same form as a training batch. The helpers here draw them by a rule fixed in advance (seeded by
the drawer or class and a seed), never from a test object: a drawer's k sketches from the unseen
drawers' adaptation split (``adaptation_view``, ``support_for_drawer``), a new category's k sketches
from its support objects (``category_views``, ``hold_out_support``, ``support_for_category``), or a
class's pool of real drawings (``support_pool``, ``support_for_class``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import torch

from sbir_core.data.base import DataError
from sbir_core.data.synthetic import support_set
from sbir_core.data.views import RetrievalView, fg_view


def adaptation_view(data, size: int = 32, line_width: float = 1.5) -> RetrievalView:
    """The unseen drawers' adaptation split (their sketches of train and val objects, never of a test
    object) as a view ranked within the category: where support sets come from."""
    return fg_view(
        data, ["train", "val"], size, line_width, group="category", where={"drawer_split": "unseen", "adaptation": True}
    )


def support_triplets(view: RetrievalView, idx: torch.Tensor, generator: torch.Generator) -> dict:
    """Support triplets of the anchors ``idx`` (B,): the positive is the paired photo, the negative a uniformly
    random *other* photo of the anchor's group (``view.group``; the whole gallery without one). Unlike training
    batches (``RetrievalView.triplets``, QMUL's rule: another query's photo, which can be the anchor's own), a
    support never gets its positive as its negative: with k = 1 that would leave nothing to adapt to."""
    batch = view.pairs(idx)
    pos = batch["pos_idx"]
    groups = view.gallery_group if view.group is not None else torch.zeros(len(view.gallery), dtype=torch.long)
    neg = torch.empty_like(pos)
    for i, p in enumerate(pos.tolist()):
        others = torch.nonzero((groups == groups[p]) & (torch.arange(len(groups)) != p)).flatten()
        if len(others) == 0:
            raise DataError(
                f"{view.name}: the support photo {p} has no other photo in its {view.group or 'gallery'} "
                "to be a negative"
            )
        neg[i] = others[torch.randint(len(others), (1,), generator=generator)]
    batch.update(neg=view.gallery[neg], neg_idx=neg)
    return batch


def support_for_drawer(data, view: RetrievalView, k: int, seed: int = 0):
    """``support_for(drawer)`` for ``evaluate(..., adapt=("drawer", support_for))``: the drawer's k
    support sketches (``synthetic.support_set``) as triplets of ``view`` (``adaptation_view``), whose
    negatives are photos of other objects of the same category in the adaptation split."""
    row_of = {sid: i for i, sid in enumerate(view.table["sketch_id"])}

    def support_for(drawer: str) -> dict:
        rows = support_set(data, drawer, k, seed)
        ids = data.sketches["sketch_id"].iloc[rows]
        missing = [s for s in ids if s not in row_of]
        if missing:
            raise DataError(f"support sketches {missing[:3]} are not in the adaptation view {view.name}")
        idx = torch.as_tensor([row_of[s] for s in ids], dtype=torch.long)
        gen = torch.Generator().manual_seed(int(hashlib.sha256(f"{drawer}/{seed}".encode()).hexdigest()[:8], 16))
        return support_triplets(view, idx, gen)

    return support_for


def category_views(data, size: int = 32, line_width: float = 1.5) -> dict[str, RetrievalView]:
    """The category level (the style world, or a zero-shot real set after ``hold_out_support``):
    "train" / "val": sketches of the seen categories' train / val objects (meta-training, validation);
    "support": the unseen categories' train objects (where a new category's k support sketches come
    from); "test": the unseen categories' test objects. All ranked within the category. Where the data
    knows its drawers (the style world), only the seen drawers' sketches, so that the shift is the
    category's."""
    cats = data.sketches["category_split"]
    if not (cats == "unseen").any() or not (cats == "seen").any():
        raise DataError(
            f"{data.name}: the category level needs seen and unseen categories (category_split: "
            f"{sorted(set(cats))}); load a real set with unseen=..., e.g. sketchy's 'yelamarthi21'"
        )
    if not ((cats == "unseen") & (data.sketches["split"] == "train")).any():
        raise DataError(
            f"{data.name}: the unseen categories have no train objects to take support sketches from "
            "(a zero-shot loader puts them all in test): split them first with hold_out_support(data)"
        )
    drawers = {"drawer_split": "seen"} if (data.sketches["drawer_split"] == "seen").any() else {}

    def view(split, categories):
        return fg_view(data, split, size, line_width, group="category", where={**drawers, "category_split": categories})

    return {
        "train": view("train", "seen"),
        "val": view("val", "seen"),
        "support": view("train", "unseen"),
        "test": view("test", "unseen"),
    }


def hold_out_support(data, fraction: float = 0.5, seed: int = 0, min_support: int = 1):
    """The support split of a zero-shot real set, by a rule fixed before any result.

    A loader's zero-shot split (e.g. ``load_dataset("sketchy", unseen="yelamarthi21", paired_only=True)``)
    puts every instance of an unseen class in "test". The poster's protocol takes a new class's k
    support sketches from its *train* split and queries its test sketches, so here each unseen class's
    instances (a photo and its sketches) are shuffled (seeded by the class and ``seed``) and the first
    ``fraction`` of them (at least two, and at least two left to rank a query among) become "train": never a
    query's photo. An unseen class of fewer than 4 objects cannot take the protocol: its rows get the split
    "dropped" (no view asks for it) and it is named in ``info["dropped_classes"]``. So is a class whose support
    objects hold fewer than ``min_support`` sketches (the largest k a protocol asks of each class: a k-shot table
    with k up to 10 passes 10), so that every k is evaluated on the same classes and queries; ``info["dropped_why"]``
    says, per dropped class, which rule dropped it. Seen classes keep their splits. Returns a new SBIRData;
    ``data`` is unchanged.
    """
    import dataclasses

    if not 0 < fraction < 1:
        raise DataError(f"hold_out_support: fraction must lie in (0, 1), got {fraction}")
    sketches, photos = data.sketches.copy(), data.photos.copy()
    unseen = sorted(set(sketches.loc[sketches["category_split"] == "unseen", "category"].astype(str)))
    if not unseen:
        raise DataError(
            f"{data.name}: no unseen class to hold support out of; load it with unseen=..., "
            "e.g. sketchy's 'yelamarthi21'"
        )
    if isinstance(min_support, bool) or not isinstance(min_support, (int, np.integer)) or min_support < 1:
        raise DataError(f"hold_out_support: min_support must be a positive integer, got {min_support!r}")
    support, why = set(), {}
    for cls in unseen:
        rows = sketches["category"].astype(str) == cls
        inst = sorted(set(sketches.loc[rows, "instance"]))
        if len(inst) < 4:  # two support objects (a support triplet's negative is another photo) and two to rank among
            why[cls] = f"{len(inst)} objects (4 needed: 2 for the support, 2 to rank a query among)"
            continue
        gen = torch.Generator().manual_seed(int(hashlib.sha256(f"{cls}/{seed}".encode()).hexdigest()[:8], 16))
        order = [inst[i] for i in torch.randperm(len(inst), generator=gen).tolist()]
        held = order[: min(max(2, round(fraction * len(inst))), len(inst) - 2)]
        n_support = int(sketches.loc[rows, "instance"].isin(held).sum())
        if n_support < min_support:
            why[cls] = f"{n_support} support sketches ({min_support} needed)"
            continue
        support.update(held)
    dropped = sorted(why)
    if len(dropped) == len(unseen):
        some = "; ".join(f"{c}: {w}" for c, w in list(why.items())[:5])
        raise DataError(
            f"{data.name}: no unseen class can take the protocol ({some}); "
            "each needs four objects, two for the support split (a support sketch's negative is another photo of its "
            f"class) and two for the queries, and {min_support} sketches or more on its support objects"
        )
    for table in (sketches, photos):
        held = (table["category_split"] == "unseen") & table["instance"].isin(support)
        table.loc[held, "split"] = "train"
    for table in (sketches, photos):  # out of every split a view asks for
        table.loc[table["category"].astype(str).isin(dropped), "split"] = "dropped"
    info = dict(data.info, support_fraction=fraction, support_seed=seed, dropped_classes=dropped, dropped_why=why)
    return dataclasses.replace(data, sketches=sketches, photos=photos, info=info)


def support_for_category(view: RetrievalView, k: int, seed: int = 0):
    """``support_for(category)`` for ``evaluate(..., adapt=("category", support_for))``: k sketches of the
    category drawn at random (seeded by category and seed) from ``view`` (``category_views(...)["support"]``:
    never a test object) as triplets whose negatives are other photos of that category."""
    return support_from(view, "category", k, seed)


def support_from(view: RetrievalView, column: str, k: int, seed: int = 0, at_most: bool = False):
    """``support_for(value)`` for ``evaluate(..., adapt=(column, support_for))``: k of ``view``'s sketches whose
    ``column`` is that value (a category, a drawer), drawn at random (seeded by the value and ``seed``), as
    triplets of ``view``. Validating a meta-learner as it is used: each seen drawer (or category) of the
    validation view adapts on k of its *training* sketches, then ranks its validation sketches, of other
    objects. at_most: a value with fewer than k sketches gives all it has (else: an error)."""
    if column not in view.table:
        raise DataError(f"{view.name}: no column {column!r} to draw support sketches by")
    values = view.table[column].astype(str).to_numpy()

    def support_for(value) -> dict:
        rows = np.flatnonzero(values == str(value))
        if len(rows) == 0:
            raise DataError(f"{column} {value!r} has no support sketches in {view.name}")
        if k < 1 or (k > len(rows) and not at_most):
            raise DataError(f"k={k} support sketches asked of {column} {value!r}, which has {len(rows)} in {view.name}")
        gen = torch.Generator().manual_seed(int(hashlib.sha256(f"{value}/{seed}".encode()).hexdigest()[:8], 16))
        pick = rows[torch.randperm(len(rows), generator=gen)[:k].numpy()]
        return support_triplets(view, torch.as_tensor(pick, dtype=torch.long), gen)

    return support_for


def style_distance(data) -> pd.Series:
    """Each unseen drawer's distance from the seen styles: the Euclidean distance of its latent style
    vector (``data.info["styles"]``) to the nearest seen drawer's, indexed by drawer id."""
    styles, ids = np.asarray(data.info["styles"]), list(data.info["drawer_ids"])
    split = data.sketches.drop_duplicates("drawer").set_index("drawer")["drawer_split"]
    seen = np.array([split.get(d) == "seen" for d in ids])
    unseen = [i for i, d in enumerate(ids) if split.get(d) == "unseen"]
    d = np.linalg.norm(styles[unseen][:, None, :] - styles[seen][None, :, :], axis=2).min(1)
    return pd.Series(d, index=[ids[i] for i in unseen], name="style_distance")


def support_pool(table: pd.DataFrame, n: int, seed: int = 0, column: str = "category") -> tuple[dict, np.ndarray]:
    """Split a class-labelled query table into support pools and queries, by a rule fixed in advance.

    For each value of ``column`` the rows are shuffled (seeded by the value and ``seed``); the first
    ``n`` form that class's support pool (k-shot supports take its first k, so they are nested) and
    the rest are its queries, the same for every k. Returns ({class: (n,) row indices}, (Q,) sorted
    query row indices). A class with at most ``n`` rows (no query left) is a DataError.
    """
    if n < 1:
        raise DataError(f"a support pool needs n >= 1 sketches per class, got {n}")
    pool, queries = {}, []
    for value, rows in table.groupby(column, sort=True).indices.items():
        if len(rows) <= n:
            raise DataError(
                f"class {value!r} has {len(rows)} sketches: none left as a query after a support pool of {n}"
            )
        gen = torch.Generator().manual_seed(int(hashlib.sha256(f"{value}/{seed}".encode()).hexdigest()[:8], 16))
        order = np.asarray(rows)[torch.randperm(len(rows), generator=gen).numpy()]
        pool[str(value)] = order[:n]
        queries.append(order[n:])
    return pool, np.sort(np.concatenate(queries))


def support_for_class(sketches: torch.Tensor, pool: dict, photos: torch.Tensor, photo_classes, k: int, seed: int = 0):
    """``support_for(category)`` for ``evaluate(view, adapt=("category", support_for))`` on a
    ``CategoryView``: the class's first k pool sketches (``support_pool``), each with a random photo of its
    class as the positive and a random photo of another class as the negative (category-level triplets: the
    negatives must come from other classes).

    sketches: (N, ...) the rows the pool indexes; photos: (P, ...) the support photos (never the
    gallery's); photo_classes: (P,) their class names.
    """
    cls = np.asarray([str(c) for c in photo_classes])

    def support_for(category: str) -> dict:
        category = str(category)
        rows = pool.get(category)
        if rows is None or len(rows) == 0:
            raise DataError(f"class {category!r} has no support sketches")
        if k < 1 or k > len(rows):
            raise DataError(f"k={k} support sketches asked of class {category!r}, whose pool has {len(rows)}")
        same, other = np.flatnonzero(cls == category), np.flatnonzero(cls != category)
        if len(same) == 0:
            raise DataError(f"class {category!r} has no support photo to be a positive")
        if len(other) == 0:
            raise DataError(
                f"a category-level support of class {category!r} needs photos of another class as "
                "negatives; every support photo is of this one class"
            )
        gen = torch.Generator().manual_seed(
            int(hashlib.sha256(f"{category}/{seed}/photos".encode()).hexdigest()[:8], 16)
        )
        pos = same[torch.randint(len(same), (k,), generator=gen).numpy()]
        neg = other[torch.randint(len(other), (k,), generator=gen).numpy()]
        idx = torch.as_tensor(rows[:k], dtype=torch.long)
        return {
            "sketch": sketches[idx],
            "photo": photos[torch.as_tensor(pos)],
            "neg": photos[torch.as_tensor(neg)],
            "pos_idx": torch.as_tensor(pos),
            "neg_idx": torch.as_tensor(neg),
            "idx": idx,
        }

    return support_for
