"""Triplet-SN: the Siamese triplet-loss FG-SBIR baseline (Yu et al., CVPR 2016; METHODS.md §A).

One encoder is shared by sketches and photos. The loss is
    L = mean_b max(0, ||s_b - p+_b||_2 - ||s_b - p-_b||_2 + margin),  margin 0.2,
on L2-normalised embeddings (PyTorch ``TripletMarginLoss``). The negative is the photo paired with a
uniformly random other training sketch of the anchor's category (``negatives="random"``: the QMUL
rule, whose datasets hold one category each) or, with ``negatives="hard"``, the closest photo in the
batch (random negatives and the other anchors' positives) that is not the anchor's own photo. One
random horizontal flip (p = 0.5) is shared by sketch, positive and negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sbir_core.models.base import Method, MethodError

NEGATIVES = ("random", "hard")


class TripletSN(Method):
    """Shared-encoder Siamese network trained with the triplet loss (sampler: "triplets").

    encoder: maps (B, C, S, S) images to (B, D) unit-norm embeddings (``models.encoders``).
    margin: triplet margin (0.2 in the QMUL code).
    negatives: "random" (the anchors' random negatives) or "hard" (hardest in the batch).
    flip: the shared horizontal flip augmentation.
    """

    sampler = "triplets"

    def __init__(self, encoder: nn.Module, margin: float = 0.2, negatives: str = "random", flip: bool = True):
        super().__init__()
        if negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.encoder = encoder
        self.margin = float(margin)
        self.negatives = negatives
        self.flip = flip

    def embed_query(self, x: torch.Tensor, style=None) -> torch.Tensor:
        """Sketches (B, C, S, S) -> (B, D) unit-norm embeddings."""
        return self.encoder(x)

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        """Photos (B, C, S, S) -> (B, D); the same encoder (Siamese)."""
        return self.encoder(x)

    def training_loss(self, batch: dict) -> torch.Tensor:
        """Triplet loss of a "triplets" batch (sketch, photo, neg (B, C, S, S); pos_idx, neg_idx (B,);
        flip (B,) bool: the sampler's shared flip draw)."""
        if self.flip and "flip" in batch:
            if batch["sketch"].ndim != 4:
                raise MethodError(
                    "the flip augmentation flips images; features of a frozen trunk cannot be flipped "
                    "(build the method with flip=False)"
                )
            batch = shared_flip(batch)
        return self.loss(batch)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Triplet loss of a batch with keys sketch, photo, neg (B, C, S, S) and pos_idx, neg_idx (B,)."""
        b = len(batch["sketch"])
        # one encoder pass over photos and negatives together: fewer, larger convolutions
        s = self.embed_query(batch["sketch"])
        g = self.embed_gallery(torch.cat([batch["photo"], batch["neg"]]))
        p, n = g[:b], g[b:]
        d_pos = (s - p).norm(dim=1)
        if self.negatives == "random":
            d_neg = (s - n).norm(dim=1)
        else:
            d_neg = hardest_negative_distance(s, g, batch["pos_idx"], torch.cat([batch["pos_idx"], batch["neg_idx"]]))
        return F.relu(d_pos - d_neg + self.margin).mean()


def hardest_negative_distance(
    anchors: torch.Tensor, candidates: torch.Tensor, anchor_pos: torch.Tensor, candidate_ids: torch.Tensor
) -> torch.Tensor:
    """For each anchor (B, D), the smallest distance to a candidate (K, D) whose gallery id
    (K,) differs from the anchor's positive id (B,): (B,). Anchors with no valid candidate get +inf
    (so their loss is zero)."""
    d = torch.cdist(anchors, candidates)
    same = anchor_pos[:, None] == candidate_ids[None, :]
    return d.masked_fill(same, float("inf")).amin(dim=1)


def shared_flip(batch: dict[str, torch.Tensor], keys=("sketch", "photo", "neg")) -> dict:
    """Flip the images of each triplet horizontally together where ``batch["flip"]`` (B,) is True."""
    out = dict(batch)
    mask = batch["flip"].view(-1, 1, 1, 1).to(batch["sketch"].device)
    for key in keys:
        x = batch[key]
        out[key] = torch.where(mask, x.flip(-1), x).contiguous(memory_format=torch.channels_last)
    return out


def build_triplet(
    encoder: str = "cnn", margin: float = 0.2, negatives: str = "random", flip: bool = True, **encoder_options
) -> TripletSN:
    """A ``TripletSN`` around a registry encoder (``models.encoders.build_encoder``)."""
    from sbir_core.models.encoders import build_encoder

    return TripletSN(build_encoder(encoder, **encoder_options), margin, negatives, flip)
