"""PyTorch views of any ``SBIRData`` for training and evaluation: pairs, triplets and episodes.

A ``RetrievalView`` holds one split as cached tensors, converted once from
``SBIRData.sketch_images`` / ``photo_images``: queries (sketches), a gallery (photos, or sketches
in photo-less mode) and for each query the gallery row of its true match. Batches are drawn by
tensor indexing with a ``torch.Generator``, so a training step does no PIL or per-item Python work.

Conventions: sketches are (N, 1, S, S) float32 with ink = 1 and background = 0 (the inverse of the
rasteriser's black-on-white, so that empty canvas is zero input); photos are (M, 3, S, S)
float32 scaled to [-1, 1]. Tensors are channels-last in memory (faster convolutions on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from sbir_core.data.base import DataError, SBIRData


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
    """

    name: str
    queries: torch.Tensor
    gallery: torch.Tensor
    target: torch.Tensor
    table: pd.DataFrame
    gallery_table: pd.DataFrame

    def __post_init__(self):
        n, m = len(self.queries), len(self.gallery)
        if self.target.shape != (n,) or len(self.table) != n or len(self.gallery_table) != m:
            raise DataError(f"{self.name}: {n} queries, {tuple(self.target.shape)} targets, "
                            f"{len(self.table)} table rows, {m} gallery items, {len(self.gallery_table)} gallery rows")
        if n and (int(self.target.min()) < 0 or int(self.target.max()) >= m):
            raise DataError(f"{self.name}: targets must index the {m} gallery items")
        self.table = self.table.reset_index(drop=True)
        self.gallery_table = self.gallery_table.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.queries)

    def __repr__(self) -> str:
        return f"RetrievalView({self.name!r}, {len(self)} queries, {len(self.gallery)} gallery items)"

    def subset(self, mask) -> "RetrievalView":
        """The queries selected by a boolean mask (gallery unchanged: same retrieval problem)."""
        idx = torch.as_tensor(np.flatnonzero(np.asarray(mask)), dtype=torch.long)
        return RetrievalView(self.name, self.queries[idx], self.gallery, self.target[idx],
                             self.table.iloc[idx.numpy()], self.gallery_table)

    # ------------------------------------------------------------------ batches

    def pairs(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """(sketch, photo) pairs of the queries ``idx`` (B,): sketch (B, C, S, S), photo, pos_idx (B,)."""
        pos = self.target[idx]
        return {"sketch": self.queries[idx], "photo": self.gallery[pos], "pos_idx": pos, "idx": idx}

    def triplets(self, idx: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Triplets of the anchors ``idx`` (B,): the positive is the paired item; the negative is
        the paired item of a uniformly random *other* query (METHODS.md §A, so it can equal the
        positive when two queries share a photo, as in the QMUL code). Adds neg (B, C', S, S), neg_idx (B,).
        """
        n = len(self)
        if n < 2:
            raise DataError(f"{self.name}: triplets need at least 2 queries, got {n}")
        other = torch.randint(0, n - 1, (len(idx),), generator=generator)
        other = other + (other >= idx).long()  # uniform over the queries other than the anchor
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
            rows = torch.as_tensor(groups[name], dtype=torch.long)
            if len(rows) < k:
                if drawers is not None:
                    raise DataError(f"{self.name}: drawer {name!r} has {len(rows)} queries, fewer than k={k}")
                continue
            out.append(rows[torch.randperm(len(rows), generator=generator)[:k]])
        return out


def fg_view(data: SBIRData, split: str | None = None, size: int = 64, line_width: float = 1.5,
            medium: str | None = "photo") -> RetrievalView:
    """Fine-grained SBIR view of one split: queries = its sketches, gallery = the distinct photos
    paired with them (METHODS.md §0.4: the gallery is not the photo folder).

    split: a value of the sketches' ``split`` column, or None for all sketches.
    medium: keep photos of this ``medium`` (the style world renders several); None keeps all.
    """
    sk = data.sketches
    keep = np.ones(len(sk), bool) if split is None else (sk["split"] == split).to_numpy()
    photos = data.photos
    pmask = np.ones(len(photos), bool)
    if medium is not None and "medium" in photos and (photos["medium"] != "").any():
        pmask = (photos["medium"] == medium).to_numpy()
        if not pmask.any():
            raise DataError(f"{data.name}: no photos of medium {medium!r}")
    where = {pid: i for i, pid in enumerate(photos["photo_id"]) if pmask[i]}
    rows = np.flatnonzero(keep)
    pos = np.array([where.get(pid, -1) for pid in sk["photo_id"].iloc[rows]], dtype=np.int64)
    if (pos < 0).any():
        missing = sk["sketch_id"].iloc[rows[pos < 0][:3]].tolist()
        raise DataError(f"{data.name}: {int((pos < 0).sum())} sketches of split {split!r} have no "
                        f"paired photo of medium {medium!r} (e.g. {missing})")
    if len(rows) == 0:
        raise DataError(f"{data.name}: no sketches in split {split!r}")
    gal_rows, target = np.unique(pos, return_inverse=True)
    sketches = data.sketch_images(size, line_width)[rows]
    photos_img = data.photo_images(size)[gal_rows]
    return RetrievalView(f"{data.name}/{split}", sketch_tensor(sketches), photo_tensor(photos_img),
                         torch.as_tensor(target.reshape(-1), dtype=torch.long),
                         sk.iloc[rows].copy(), photos.iloc[gal_rows].copy())


def sketch_view(data: SBIRData, split: str | None = None, size: int = 64, line_width: float = 1.5,
                group: str = "instance", gallery_pick: int = 0) -> RetrievalView:
    """Sketch-to-sketch view for photo-less data: for each ``group`` (e.g. chair) of the split with
    at least two sketches, one sketch (the ``gallery_pick``-th in table order) becomes the gallery
    item and the others are queries whose true match is it: "find another drawing of this object".
    """
    sk = data.sketches
    keep = np.ones(len(sk), bool) if split is None else (sk["split"] == split).to_numpy()
    rows = np.flatnonzero(keep)
    groups = sk.iloc[rows].groupby(group, sort=True).indices
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
        raise DataError(f"{data.name}: no {group} with two or more sketches in split {split!r}")
    images = data.sketch_images(size, line_width)
    q, gal = np.array(q), np.array(gal)
    return RetrievalView(f"{data.name}/{split}/sketch2sketch", sketch_tensor(images[q]),
                         sketch_tensor(images[gal]), torch.as_tensor(tgt, dtype=torch.long),
                         sk.iloc[q].copy(), sk.iloc[gal].copy())


class PairDataset(Dataset):
    """Map-style dataset of (sketch (C, S, S), photo (C', S, S)) pairs over a ``RetrievalView``."""

    def __init__(self, view: RetrievalView):
        self.view = view

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, i: int):
        return self.view.queries[i], self.view.gallery[self.view.target[i]]


class TripletDataset(Dataset):
    """Map-style dataset of (anchor, positive, negative) with the anchors' random negatives.

    Item i's negative is a function of (seed, epoch, i) alone, so it does not depend on the order
    items are read in, nor on which DataLoader worker reads them; ``set_epoch`` draws new negatives.
    """

    def __init__(self, view: RetrievalView, seed: int = 0):
        self.view = view
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, i: int):
        state = np.random.SeedSequence([self.seed, self.epoch, int(i)]).generate_state(1)[0]
        b = self.view.triplets(torch.tensor([i]), torch.Generator().manual_seed(int(state)))
        return b["sketch"][0], b["photo"][0], b["neg"][0]


class EpisodeDataset(Dataset):
    """Per-drawer episodes: item d is (k sketches (k, C, S, S), their true photos (k, C', S, S), rows (k,))."""

    def __init__(self, view: RetrievalView, k: int, seed: int = 0):
        self.view = view
        self.k = k
        self.episodes = view.drawer_episodes(k, torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, i: int):
        rows = self.episodes[i]
        return self.view.queries[rows], self.view.gallery[self.view.target[rows]], rows
