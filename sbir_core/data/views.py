"""PyTorch views of any ``SBIRData`` for training and evaluation: pairs, triplets, episodes.

A ``RetrievalView`` holds one split as cached tensors for **fine-grained** retrieval: queries
(sketches), a gallery (photos, or sketches in photo-less mode) and for each query the gallery
row of its true match. With ``group="category"`` (the default of ``fg_view``) a query is ranked
only against the gallery items of its own category, as in QMUL-Shoe-V2 and Chair-V2, so that
knowing the category alone scores at chance; ``group=None`` is the mixed-category gallery.
A ``CategoryView`` holds a **category-level** problem: queries, a gallery and which items are
relevant to which query (same class, or same class and medium).

Batches are drawn by tensor indexing with a ``torch.Generator``, so a training step does no PIL
or per-item Python work.

Conventions: sketches are (N, 1, S, S) float32 with ink = 1 and background = 0 (the inverse of the
rasteriser's black-on-white, so that empty canvas is zero input); photos are (M, 3, S, S)
float32 scaled to [-1, 1]. Tensors are channels-last in memory (faster convolutions on CPU).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from sbir_core.data.base import DataError, SBIRData

RELEVANCE = ("category", "category_medium")


def sketch_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, S, S) float32 rasters in [0, 1], black on white -> (N, 1, S, S) float32, ink = 1, channels-last."""
    x = torch.from_numpy(1.0 - np.asarray(images, dtype=np.float32))[:, None]
    return x.contiguous(memory_format=torch.channels_last)


def photo_tensor(images: np.ndarray) -> torch.Tensor:
    """(M, S, S, 3) uint8 -> (M, 3, S, S) float32 in [-1, 1], channels-last."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
    return x.contiguous(memory_format=torch.channels_last)


@dataclass
class RetrievalView:
    """One split as tensors: queries, a gallery and the true gallery row of each query.

    queries: (N, C, S, S) float32; gallery: (M, C', S, S) float32; target: (N,) int64 in [0, M).
    table: the queries' rows of the sketch table (drawer, drawer_split, instance, ...), index 0..N-1.
    gallery_table: one row per gallery item.
    group: a column of both tables (e.g. "category"): each query is ranked only against the gallery
        items of its own group, and triplet negatives come from its group; None: the whole gallery.
    strokes: the queries' canonical strokes (N items), when the data has them (stroke-based methods).
    dropped: sketch ids left out because their photo was missing (reported, never silently lost).
    """

    name: str
    queries: torch.Tensor
    gallery: torch.Tensor
    target: torch.Tensor
    table: pd.DataFrame
    gallery_table: pd.DataFrame
    group: str | None = None
    strokes: list | None = field(default=None, repr=False)
    dropped: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        n, m = len(self.queries), len(self.gallery)
        if self.target.shape != (n,) or len(self.table) != n or len(self.gallery_table) != m:
            raise DataError(
                f"{self.name}: {n} queries, {tuple(self.target.shape)} targets, "
                f"{len(self.table)} table rows, {m} gallery items, {len(self.gallery_table)} gallery rows"
            )
        if n and (int(self.target.min()) < 0 or int(self.target.max()) >= m):
            raise DataError(f"{self.name}: targets must index the {m} gallery items")
        if self.strokes is not None and len(self.strokes) != n:
            raise DataError(f"{self.name}: {len(self.strokes)} stroke arrays for {n} queries")
        self.table = self.table.reset_index(drop=True)
        self.gallery_table = self.gallery_table.reset_index(drop=True)
        self.query_group = self.gallery_group = None
        self.lone_groups: list = []  # groups fg_view left out: one photo each in this split
        if self.group is not None:
            for what, t in (("queries", self.table), ("gallery", self.gallery_table)):
                if self.group not in t:
                    raise DataError(f"{self.name}: group={self.group!r} is not a column of the {what}' table")
            codes, uniques = pd.factorize(
                pd.concat([self.gallery_table[self.group], self.table[self.group]]), sort=True
            )
            self.gallery_group = torch.as_tensor(codes[:m], dtype=torch.long)
            self.query_group = torch.as_tensor(codes[m:], dtype=torch.long)
            if n and not torch.equal(self.gallery_group[self.target], self.query_group):
                raise DataError(f"{self.name}: some queries' true match is in another {self.group}")
            sizes = pd.Series(codes[:m]).value_counts()
            small = [str(uniques[c]) for c, s in sizes.items() if s < 2]
            if small:
                raise DataError(
                    f"{self.name}: ranking within {self.group} needs at least 2 gallery items in every "
                    f"{self.group}; {small[:5]} {'has' if len(small) == 1 else 'have'} one. Use "
                    f"group=None (the mixed gallery) or a split with more objects"
                )

    def __len__(self) -> int:
        return len(self.queries)

    def __repr__(self) -> str:
        within = f", ranked within {self.group}" if self.group else ", mixed gallery"
        return f"RetrievalView({self.name!r}, {len(self)} queries, {len(self.gallery)} gallery items{within})"

    # ------------------------------------------------------------------ the retrieval problem

    def candidates(self) -> np.ndarray | None:
        """(N, M) bool: the gallery items each query is ranked against; None when it is the whole gallery."""
        if self.group is None:
            return None
        return (self.query_group[:, None] == self.gallery_group[None, :]).numpy()

    def n_candidates(self) -> np.ndarray:
        """(N,) int64: the size of each query's gallery."""
        if self.group is None:
            return np.full(len(self), len(self.gallery), dtype=np.int64)
        sizes = torch.bincount(self.gallery_group)
        return sizes[self.query_group].numpy().astype(np.int64)

    def chance(self, k: int) -> float:
        """Expected Acc@K of a random ranking; within a category, also the category oracle's."""
        from sbir_core.metrics import chance_acc_at_k

        return chance_acc_at_k(self.n_candidates(), k)

    def category_oracle(self, k: int) -> float:
        """Expected Acc@K of a model that knows each query's category and nothing else (random order
        inside it): the chance of the within-category gallery, whatever this view's own gallery is."""
        from sbir_core.metrics import chance_acc_at_k

        cat = self.gallery_table["category"].to_numpy()
        sizes = pd.Series(cat).value_counts()
        return chance_acc_at_k(sizes.loc[cat[self.target.numpy()]].to_numpy(), k)

    def subset(self, mask) -> RetrievalView:
        """The queries selected by a boolean mask (gallery unchanged: same retrieval problem)."""
        idx = np.flatnonzero(np.asarray(mask))
        t = torch.as_tensor(idx, dtype=torch.long)
        return RetrievalView(
            self.name,
            self.queries[t],
            self.gallery,
            self.target[t],
            self.table.iloc[idx],
            self.gallery_table,
            self.group,
            None if self.strokes is None else [self.strokes[i] for i in idx],
            self.dropped,
        )

    def within(self, group: str | None) -> RetrievalView:
        """The same queries and gallery ranked within another grouping (None: the mixed gallery)."""
        return RetrievalView(
            self.name,
            self.queries,
            self.gallery,
            self.target,
            self.table,
            self.gallery_table,
            group,
            self.strokes,
            self.dropped,
        )

    # ------------------------------------------------------------------ batches

    def pairs(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """(sketch, photo) pairs of the queries ``idx`` (B,): sketch (B, C, S, S), photo, pos_idx (B,), idx."""
        pos = self.target[idx]
        return {"sketch": self.queries[idx], "photo": self.gallery[pos], "pos_idx": pos, "idx": idx}

    def other_queries(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """For each anchor in ``idx`` (B,), a uniformly random *other* query of its group (of all
        queries without a group, or when its group has no other query): (B,) int64."""
        n = len(self)
        if n < 2:
            raise DataError(f"{self.name}: triplets need at least 2 queries, got {n}")
        u = torch.rand(len(idx), generator=generator)
        anywhere = (u * (n - 1)).long()
        anywhere = anywhere + (anywhere >= idx).long()  # uniform over the queries other than the anchor
        if self.group is None:
            return anywhere
        rows, pos, size = self._group_index()
        g = self.query_group[idx]
        k = (u * (size[g] - 1).clamp(min=1)).long()
        k = k + (k >= pos[idx]).long()
        within = rows[g, k.clamp(max=rows.shape[1] - 1)]
        return torch.where(size[g] >= 2, within, anywhere)

    def _group_index(self):
        if getattr(self, "_gi", None) is None:
            order = torch.argsort(self.query_group, stable=True)
            size = torch.bincount(self.query_group, minlength=int(self.gallery_group.max()) + 1)
            start = torch.cumsum(size, 0) - size
            rank = torch.arange(len(self)) - start[self.query_group[order]]
            rows = torch.full((len(size), max(int(size.max()), 1)), -1, dtype=torch.long)
            rows[self.query_group[order], rank] = order
            pos = torch.empty(len(self), dtype=torch.long)
            pos[order] = rank
            self._gi = (rows, pos, size)
        return self._gi

    def triplets(self, idx: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Triplets of the anchors ``idx`` (B,): the positive is the paired item; the negative is the
        paired item of a uniformly random *other* query of the anchor's group (METHODS.md §A: QMUL's
        rule within one category, so it can equal the positive when two queries share a photo).
        Adds neg (B, C', S, S), neg_idx (B,).
        """
        other = self.other_queries(idx, generator)
        batch = self.pairs(idx)
        neg = self.target[other]
        batch.update(neg=self.gallery[neg], neg_idx=neg)
        return batch

    def sample_triplets(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A batch of ``batch_size`` random anchors (without replacement within the batch) as triplets."""
        idx = torch.randperm(len(self), generator=generator)[:batch_size]
        return self.triplets(idx, generator)

    def drawer_episodes(self, k: int, generator: torch.Generator, drawers=None) -> list[torch.Tensor]:
        """For each drawer with at least ``k`` queries (or each in ``drawers``), k random query rows of that drawer.

        Returns a list of (k,) int64 index tensors, in the order of the drawers' names.
        """
        if "drawer" not in self.table or (self.table["drawer"] == "").all():
            raise DataError(f"{self.name}: no drawer ids, so no per-drawer episodes")
        groups = self.table.groupby("drawer", sort=True).indices
        names = sorted(groups) if drawers is None else list(drawers)
        out = []
        for name in names:
            if name not in groups:
                raise DataError(f"{self.name}: drawer {name!r} has no sketches in this view")
            rows = torch.as_tensor(groups[name], dtype=torch.long)
            if len(rows) < k:
                if drawers is not None:
                    raise DataError(f"{self.name}: drawer {name!r} has {len(rows)} queries, fewer than k={k}")
                continue
            out.append(rows[torch.randperm(len(rows), generator=generator)[:k]])
        return out


def redraw(view: RetrievalView, strokes: list, line_width: float = 1.5) -> RetrievalView:
    """The same retrieval problem with each query redrawn from ``strokes`` (one array per query, e.g.
    ``synthetic.detail_subset`` or ``strokes.truncate``) at the view's size and channels."""
    from sbir_core import strokes as S

    if len(strokes) != len(view):
        raise DataError(f"{len(strokes)} stroke arrays for {len(view)} queries of {view.name}")
    queries = sketch_tensor(S.rasterise_many(strokes, view.queries.shape[-1], line_width))
    queries = queries.expand(-1, view.queries.shape[1], -1, -1).contiguous()
    return dataclasses.replace(view, queries=queries, strokes=list(strokes))


def _split_mask(table: pd.DataFrame, split) -> np.ndarray:
    if split is None:
        return np.ones(len(table), bool)
    values = [split] if isinstance(split, str) else list(split)
    return table["split"].isin(values).to_numpy().copy()


def fg_view(
    data: SBIRData,
    split: str | None = None,
    size: int = 64,
    line_width: float = 1.5,
    medium: str | None = "photo",
    group: str | None = "category",
    where: dict | None = None,
) -> RetrievalView:
    """Fine-grained SBIR view of one split: queries = its sketches, gallery = the distinct photos
    paired with them (METHODS.md §0.4: the gallery is not the photo folder).

    split: a value of the sketches' ``split`` column (or a list of them), or None for all sketches.
    medium: keep photos of this ``medium`` (the style world renders several); None keeps all.
    group: rank each query within this column's group ("category": as QMUL-Shoe-V2 and Chair-V2);
        None: the mixed-category gallery. A group with a single photo in the split cannot be ranked: it is
        left out with its sketches and named in ``view.lone_groups`` (an error when every group is so).
    where: further column = value (or list of values) filters on the sketches, e.g.
        ``{"drawer_split": "seen"}``.
    Sketches whose photo is missing are left out and listed in ``view.dropped``; a split with no
    paired sketch at all is an error.
    """
    sk = data.sketches
    keep = _split_mask(sk, split)
    for col, value in (where or {}).items():
        if col not in sk:
            raise DataError(f"{data.name}: no sketch column {col!r} to filter on (columns: {list(sk.columns)})")
        keep &= sk[col].isin([value] if isinstance(value, (str, bool, int)) else list(value)).to_numpy()
    photos = data.photos
    pmask = np.ones(len(photos), bool)
    if medium is not None and "medium" in photos and (photos["medium"] != "").any():
        pmask = (photos["medium"] == medium).to_numpy()
        if not pmask.any():
            raise DataError(f"{data.name}: no photos of medium {medium!r} (media: {sorted(set(photos['medium']))})")
    where_photo = {pid: i for i, pid in enumerate(photos["photo_id"]) if pmask[i]}
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise DataError(f"{data.name}: no sketches in split {split!r} with {where or 'no filter'}")
    pos = np.array([where_photo.get(pid, -1) for pid in sk["photo_id"].iloc[rows]], dtype=np.int64)
    dropped = sk["sketch_id"].iloc[rows[pos < 0]].tolist()
    if len(dropped) == len(rows):
        raise DataError(
            f"{data.name}: none of the {len(rows)} sketches of split {split!r} has a paired photo "
            f"of medium {medium!r} (e.g. {dropped[:3]})"
        )
    rows, pos = rows[pos >= 0], pos[pos >= 0]
    lone = []
    if group is not None and group in photos and group in sk:
        # the one rule for a split too small to rank within a group: a group with a single photo in this split
        # is left out of it (its sketches with it), named in ``view.lone_groups``; the rest is ranked as asked
        per_group = photos[group].iloc[np.unique(pos)].value_counts()
        lone = sorted(str(g) for g, n in per_group.items() if n < 2)
        if lone:
            ok = ~photos[group].iloc[pos].astype(str).isin(lone).to_numpy()
            if not ok.any():
                raise DataError(
                    f"{data.name}: split {split!r} has one photo in every {group} ({lone[:5]}); ranking within "
                    f"{group} needs two. Use group=None (the mixed gallery) or a split with more objects"
                )
            rows, pos = rows[ok], pos[ok]
    gal_rows, target = np.unique(pos, return_inverse=True)
    sketches = data.sketch_images(size, line_width)[rows]
    photos_img = data.photo_images(size)[gal_rows]
    view = RetrievalView(
        f"{data.name}/{split}",
        sketch_tensor(sketches),
        photo_tensor(photos_img),
        torch.as_tensor(target.reshape(-1), dtype=torch.long),
        sk.iloc[rows].copy(),
        photos.iloc[gal_rows].copy(),
        group,
        None if data.strokes is None else [data.strokes[r] for r in rows],
        dropped,
    )
    view.lone_groups = lone
    return view


def sketch_view(
    data: SBIRData,
    split: str | None = None,
    size: int = 64,
    line_width: float = 1.5,
    instance: str = "instance",
    gallery_pick: int = 0,
    group: str | None = "category",
) -> RetrievalView:
    """Sketch-to-sketch view for photo-less data: for each ``instance`` (e.g. chair) of the split with
    at least two sketches, one sketch (the ``gallery_pick``-th in table order) becomes the gallery
    item and the others are queries whose true match is it: "find another drawing of this object".
    """
    sk = data.sketches
    rows = np.flatnonzero(_split_mask(sk, split))
    groups = sk.iloc[rows].groupby(instance, sort=True).indices
    gal, q, tgt = [], [], []
    for g in sorted(groups):
        members = rows[groups[g]]
        if len(members) < 2:
            continue
        pick = members[min(gallery_pick, len(members) - 1)]
        gal.append(pick)
        for r in members:
            if r != pick:
                q.append(r)
                tgt.append(len(gal) - 1)
    if not gal:
        raise DataError(f"{data.name}: no {instance} with two or more sketches in split {split!r}")
    images = data.sketch_images(size, line_width)
    q, gal = np.array(q), np.array(gal)
    return RetrievalView(
        f"{data.name}/{split}/sketch2sketch",
        sketch_tensor(images[q]),
        sketch_tensor(images[gal]),
        torch.as_tensor(tgt, dtype=torch.long),
        sk.iloc[q].copy(),
        sk.iloc[gal].copy(),
        group,
        None if data.strokes is None else [data.strokes[r] for r in q],
    )


# ---------------------------------------------------------------------- category level


@dataclass
class CategoryView:
    """A category-level retrieval problem: queries, a gallery, and the relevance rule.

    queries: (N, C, S, S); gallery: (M, C', S, S); table / gallery_table: their rows (with
    ``category`` and, for the gallery, ``medium``). relevance: "category" (a gallery item is relevant
    when its category equals the query's) or "category_medium" (and its medium equals the medium the
    query asks for, ``table["want_medium"]``). style: optional (N, K, C', S, S) exemplar images of the
    wanted medium, for methods whose query is a sketch plus a style.
    """

    name: str
    queries: torch.Tensor
    gallery: torch.Tensor
    table: pd.DataFrame
    gallery_table: pd.DataFrame
    relevance: str = "category"
    style: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.relevance not in RELEVANCE:
            raise DataError(f"relevance must be one of {RELEVANCE}, got {self.relevance!r}")
        if len(self.table) != len(self.queries) or len(self.gallery_table) != len(self.gallery):
            raise DataError(f"{self.name}: tables do not match the tensors")
        if self.relevance == "category_medium" and "want_medium" not in self.table:
            raise DataError(f"{self.name}: relevance by category and medium needs the queries' want_medium")
        if self.style is not None and len(self.style) != len(self.queries):
            raise DataError(f"{self.name}: {len(self.style)} style exemplar sets for {len(self.queries)} queries")
        self.table = self.table.reset_index(drop=True)
        self.gallery_table = self.gallery_table.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.queries)

    def relevant(self) -> np.ndarray:
        """(N, M) bool: which gallery items are relevant to each query."""
        rel = self.table["category"].to_numpy()[:, None] == self.gallery_table["category"].to_numpy()[None, :]
        if self.relevance == "category_medium":
            rel &= self.table["want_medium"].to_numpy()[:, None] == self.gallery_table["medium"].to_numpy()[None, :]
        return rel


def category_view(
    data: SBIRData,
    sketches: dict | None = None,
    photos: dict | None = None,
    size: int = 64,
    line_width: float = 1.5,
    relevance: str = "category",
    want_media=None,
    name: str | None = None,
) -> CategoryView:
    """A category-level view: the sketches and photos that match the filters (column -> value or list).

    Example, zero-shot on the style world's unseen categories:
    ``category_view(world, {"category_split": "unseen", "split": "test"}, {"category_split": "unseen",
    "medium": "photo"})``. With ``relevance="category_medium"`` every sketch is asked once per medium of
    ``want_media`` (default: every medium of the gallery).
    """

    def mask(table, filters, what):
        keep = np.ones(len(table), bool)
        for col, value in (filters or {}).items():
            if col not in table:
                raise DataError(f"{data.name}: no {what} column {col!r} (columns: {list(table.columns)})")
            keep &= table[col].isin([value] if isinstance(value, (str, bool, int)) else list(value)).to_numpy()
        return np.flatnonzero(keep)

    q_rows, g_rows = mask(data.sketches, sketches, "sketch"), mask(data.photos, photos, "photo")
    if len(q_rows) == 0 or len(g_rows) == 0:
        raise DataError(
            f"{data.name}: category view with {len(q_rows)} queries and {len(g_rows)} gallery items "
            f"(filters {sketches} / {photos})"
        )
    q_img = sketch_tensor(data.sketch_images(size, line_width)[q_rows])
    g_img = photo_tensor(data.photo_images(size)[g_rows])
    table = data.sketches.iloc[q_rows].reset_index(drop=True)
    gallery_table = data.photos.iloc[g_rows].reset_index(drop=True)
    missing = sorted(set(table["category"]) - set(gallery_table["category"]))
    if missing:
        raise DataError(f"{data.name}: query categories {missing[:5]} have no item in the gallery")
    if relevance == "category_medium":
        media = sorted(set(gallery_table["medium"])) if want_media is None else list(want_media)
        absent = sorted(set(media) - set(gallery_table["medium"]))
        if absent:
            raise DataError(
                f"{data.name}: wanted media {absent} have no gallery item "
                f"(gallery media: {sorted(set(gallery_table['medium']))})"
            )
        table = pd.concat([table.assign(want_medium=m) for m in media], ignore_index=True)
        q_img = q_img.repeat(len(media), 1, 1, 1).contiguous(memory_format=torch.channels_last)
    return CategoryView(name or f"{data.name}/category", q_img, g_img, table, gallery_table, relevance)


def index_as_drawer(view: RetrievalView) -> RetrievalView:
    """The view with each sketch's *index* as its ``drawer``: the paper's "style" proxy on real sets whose
    sketches carry no drawer id (ChairV2/ShoeV2/shoes304 ``sketch_index``, PACS-Sketchy/Sketchy
    ``<photo id>-<k>``). A proxy, not a person: the same index is drawn by different people on different
    photos. Raises DataError when neither a ``sketch_index`` column nor a ``-<k>``/``_<k>`` suffix exists."""
    table = view.table.copy()
    if "sketch_index" in table and (table["sketch_index"].astype(str) != "").all():
        index = table["sketch_index"].astype(str)
    else:
        index = table["sketch_id"].astype(str).str.extract(r"[-_](\d+)$")[0]
        if index.isna().any():
            bad = table.loc[index.isna(), "sketch_id"].head(3).tolist()
            raise DataError(
                f"{view.name}: no sketch index to stand for a drawer (no sketch_index column, and "
                f"sketch ids such as {bad} do not end in -<k> or _<k>)"
            )
    table["drawer"] = "index " + index.str.lstrip("0").replace("", "0")
    return dataclasses.replace(view, table=table)
