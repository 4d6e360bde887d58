"""Sketching with Style (Collomosse et al., ICCV 2017; METHODS.md §E): a sketch plus a style as the query.

Three parts, each trained discriminatively on its own question:

* **structure** (sketch <-> content of any medium): a Siamese encoder ``f`` trained with the triplet
  loss  max(0, |f(s) - f(x+)| - |f(s) - f(x-)| + m)  where x+ is a gallery image of the sketch's
  class in a random medium and x- one of another class (any medium), so the medium is not a cue;
* **style** (the medium, not the content): an encoder ``g`` pre-trained to classify the medium
  (cross-entropy, the first ``pretrain_steps`` steps), then trained with *decorrelated* triplets:
  anchor a, positive of the same medium but another class, negative of the same class but another
  medium (paper §3.2.1 as recalled; the classification loss is kept with weight ``ce_weight``);
* **fusion** (hierarchical triplet): ``h([f(x); g(x)])`` for gallery images and
  ``h([f(s); mean_k g(e_k)])`` for a sketch s with style exemplars e_1..e_K, trained with triplets
  relevant only when both class and medium match: the negative shares one of the two and differs
  in the other. The streams' features are detached here, so the fusion layer learns to combine two
  separately trained streams without changing them (as the paper fuses pre-trained streams).

``mode`` chooses what the embeddings are, so one trained model gives every row of the chapter's tables:
"fused" (default; the query needs style exemplars), "structure" (sketch-only search, the style ignored),
"style" (the style embedding; queries are images), and "naive" ([f; g] concatenated without the fusion
layer: the squared distance is the sum of the two streams' squared distances, the ablation of the
learned fusion). ``with_mode`` returns a view of the same weights in another mode.

Inputs: images (each stream's encoder reads the whole image, e.g. a trainable trunk that sees photos
as edge maps for the structure and as RGB for the style), or precomputed features (the ci scale's
frozen trunk): then an image is the vector [structure features; style features] and ``split`` is
where the style part starts; a sketch is its structure features alone.

Training batches come from the "styled_triplets" sampler over a training view made by
``data.styled.styled_train``: queries are sketches, the gallery holds every medium of the training
objects (``gallery_table`` with ``category`` and ``medium``).

``ColourPixelNN`` is the styled query's parameter-free floor: pixel matching for the sketch, and the
medium guessed from mean colour.
"""

from __future__ import annotations

import copy

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from sbir_core.data.base import DataError
from sbir_core.data.views import RetrievalView
from sbir_core.models.base import Method, MethodError
from sbir_core.samplers import register_sampler

MODES = ("fused", "structure", "style", "naive")


class WithStyle(Method):
    """Structure, style and fusion networks (see the module docstring).

    structure, style: encoders of images or features -> (B, D) unit norm. n_media: classes of the style
    head. embed_dim: size of the fused embedding. margin: of all three triplet losses.
    pretrain_steps: steps of medium classification alone before the decorrelated style triplets.
    ce_weight: weight of the classification loss after pre-training.
    train_exemplars: style exemplars per query in the fusion triplets (the sampler's ``exemplars``).
    split: for feature inputs (B, D), the column where an image's style features start (None: images).
    """

    sampler = "styled_triplets"
    styled = True

    def __init__(
        self,
        structure: nn.Module,
        style: nn.Module,
        n_media: int,
        embed_dim: int = 64,
        margin: float = 0.2,
        pretrain_steps: int = 200,
        ce_weight: float = 0.5,
        train_exemplars: int = 2,
        split: int | None = None,
    ):
        super().__init__()
        if train_exemplars < 1:
            raise MethodError(f"train_exemplars must be >= 1, got {train_exemplars}")
        self.sampler_options = {"exemplars": int(train_exemplars)}
        if n_media < 2:
            raise MethodError(f"the style network classifies media: n_media must be >= 2, got {n_media}")
        if margin < 0 or pretrain_steps < 0 or ce_weight < 0:
            raise MethodError(f"bad options: margin={margin}, pretrain_steps={pretrain_steps}, ce_weight={ce_weight}")
        self.structure, self.style = structure, style
        self.split = None if split is None else int(split)
        d_s, d_t = structure.embed_dim, style.embed_dim
        self.medium_head = nn.Linear(d_t, n_media)
        self.fusion = nn.Sequential(nn.Linear(d_s + d_t, 2 * embed_dim), nn.ReLU(), nn.Linear(2 * embed_dim, embed_dim))
        self.margin, self.pretrain_steps, self.ce_weight = float(margin), int(pretrain_steps), float(ce_weight)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # stored with the state: staged losses resume
        self.mode = "fused"

    # ------------------------------------------------------------------ modes

    def with_mode(self, mode: str) -> WithStyle:
        """The same weights embedding in another mode (a shallow copy; ``self`` is unchanged)."""
        if mode not in MODES:
            raise MethodError(f"mode must be one of {MODES}, got {mode!r}")
        other = copy.copy(self)
        other.__dict__ = dict(self.__dict__)
        other.mode = mode
        other.styled = mode in ("fused", "naive")
        return other

    # ------------------------------------------------------------------ embeddings

    def _f(self, x: torch.Tensor) -> torch.Tensor:
        """The structure stream: sketches or images (their structure features)."""
        return self.structure(x[:, : self.split] if self.split is not None and x.ndim == 2 else x)

    def _g(self, x: torch.Tensor) -> torch.Tensor:
        """The style stream: images (their style features)."""
        return self.style(x[:, self.split :] if self.split is not None and x.ndim == 2 else x)

    def style_of(self, exemplars: torch.Tensor) -> torch.Tensor:
        """(N, K, ...) exemplar images (or their features) -> (N, D_t): the mean of their style embeddings."""
        if exemplars is None or exemplars.ndim not in (3, 5) or exemplars.shape[1] == 0:
            shape = None if exemplars is None else tuple(exemplars.shape)
            raise MethodError(f"a styled query needs (N, K >= 1, ...) style exemplars, got {shape}")
        n, k = exemplars.shape[:2]
        return self._g(exemplars.flatten(0, 1)).view(n, k, -1).mean(1)

    def _fuse(self, structure: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fusion(torch.cat([structure, style], 1)), dim=1)

    def embed_query(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Sketches (N, C, S, S) [+ exemplars (N, K, C', S, S)] -> (N, D) in the current mode."""
        if self.mode == "structure":
            return self._f(x)
        if self.mode == "style":
            return self._g(x)
        s, t = self._f(x), self.style_of(style)
        if self.mode == "naive":
            return torch.cat([s, F.normalize(t, dim=1)], 1)
        return self._fuse(s, t)

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        """Images (M, C, S, S) -> (M, D) in the current mode."""
        if self.mode == "structure":
            return self._f(x)
        if self.mode == "style":
            return self._g(x)
        s, t = self._f(x), self._g(x)
        return torch.cat([s, t], 1) if self.mode == "naive" else self._fuse(s, t)

    # ------------------------------------------------------------------ training

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The three losses of a "styled_triplets" batch (keys: see ``styled_triplets``)."""
        m = self.margin
        b = len(batch["sketch"])
        # structure: sketch vs same-class image (random medium) and other-class image
        s = self._f(batch["sketch"])
        g = self._f(torch.cat([batch["pos"], batch["neg"]]))
        l_struct = F.relu((s - g[:b]).norm(dim=1) - (s - g[b:]).norm(dim=1) + m).mean()
        # style: medium classification, then decorrelated triplets
        imgs = torch.cat([batch["style_anchor"], batch["style_pos"], batch["style_neg"]])
        t = self._g(imgs)
        ce = F.cross_entropy(self.medium_head(t), batch["style_media"])
        ta, tp, tn = t.split(len(batch["style_anchor"]))
        l_style_t = F.relu((ta - tp).norm(dim=1) - (ta - tn).norm(dim=1) + m).mean()
        pretraining = int(self.step) < self.pretrain_steps
        l_style = ce if pretraining else l_style_t + self.ce_weight * ce
        # fusion: a sketch with exemplars of the wanted medium; positive = class and medium match
        with torch.no_grad():
            fs = torch.cat([s.detach(), self._f(torch.cat([batch["fuse_pos"], batch["fuse_neg"]]))])
            ft = self._g(torch.cat([batch["exemplars"].flatten(0, 1), batch["fuse_pos"], batch["fuse_neg"]]))
        k = batch["exemplars"].shape[1]
        q_style = ft[: b * k].view(b, k, -1).mean(1)
        q = self._fuse(fs[:b], q_style)
        gp = self._fuse(fs[b : 2 * b], ft[b * k : b * k + b])
        gn = self._fuse(fs[2 * b :], ft[b * k + b :])
        l_fuse = F.relu((q - gp).norm(dim=1) - (q - gn).norm(dim=1) + m).mean()
        return {"structure": l_struct, "style": l_style, "style_ce": ce, "style_triplet": l_style_t, "fusion": l_fuse}

    def training_loss(self, batch: dict) -> torch.Tensor:
        parts = self.losses(batch)
        return parts["structure"] + parts["style"] + parts["fusion"]

    def train_step(self, batch: dict, optimizers) -> float:
        loss = super().train_step(batch, optimizers)
        self.step += 1
        return loss


def build_with_style(
    structure: dict,
    style: dict | None = None,
    n_media: int = 8,
    embed_dim: int = 64,
    margin: float = 0.2,
    pretrain_steps: int = 200,
    ce_weight: float = 0.5,
    train_exemplars: int = 2,
    split: int | None = None,
) -> WithStyle:
    """A ``WithStyle`` whose streams are registry encoders (``models.encoders``): ``structure`` and ``style``
    (default: the structure's) are ``{"encoder": name, **options}``; ``split`` as in ``WithStyle``."""
    from sbir_core.models.encoders import build_encoder

    def make(options):
        options = dict(options)
        return build_encoder(options.pop("encoder"), **options)

    return WithStyle(
        make(structure),
        make(style or structure),
        n_media,
        embed_dim,
        margin,
        pretrain_steps,
        ce_weight,
        train_exemplars,
        split,
    )


class ColourPixelNN(Method):
    """The styled query's floor, with nothing learnt: pixel matching (``pixel_nn``: the sketch's ink map
    against the image's edge map), the images guessed to be in the wanted medium first.

    Reads pixel features: a sketch (N, D) its unit-norm ink map; an image (M, D + 3) its unit-norm edge
    map and mean RGB. An image's medium is guessed as the one whose mean colour over training images
    (``centroids`` (n_media, 3)) is nearest its own; the wanted medium as the one nearest the exemplars'
    mean colour. ``centroids=None``: pixel matching alone (the sketch-only floor).
    """

    GAP = 10.0  # added to the distance of a guessed mismatch: more than unit vectors can differ

    def __init__(self, centroids: torch.Tensor | None = None):
        super().__init__()
        self.centroids = None if centroids is None else torch.as_tensor(centroids, dtype=torch.float32)
        self.styled = centroids is not None

    def training_loss(self, batch):
        raise MethodError("the pixel floor has nothing to train; evaluate it directly")

    def _medium(self, colour: torch.Tensor) -> torch.Tensor:
        guess = torch.cdist(colour.float(), self.centroids).argmin(1)
        return self.GAP * F.one_hot(guess, len(self.centroids)).float()

    def embed_query(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if not self.styled:
            return x
        return torch.cat([x, self._medium(style[..., -3:].mean(1))], 1)

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        if not self.styled:
            return x[:, :-3]
        return torch.cat([x[:, :-3], self._medium(x[:, -3:])], 1)


# ---------------------------------------------------------------------- data for training


class _Pools:
    """Rows of the gallery grouped by a key code, padded, for drawing one random row per key at once."""

    def __init__(self, masks: torch.Tensor):  # (K, M) bool: key k's rows
        self.lengths = masks.sum(1)
        self.rows = torch.zeros(len(masks), max(int(self.lengths.max()), 1), dtype=torch.long)
        for k, m in enumerate(masks):
            self.rows[k, : int(self.lengths[k])] = m.nonzero().flatten()

    def draw(self, keys: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random row for each key code of ``keys`` (B,): (B,) int64."""
        n = self.lengths[keys]
        if (n == 0).any():
            raise DataError("styled triplets: a class has no image in some medium (every class needs every medium)")
        pick = torch.minimum((torch.rand(len(keys), generator=generator) * n).long(), n - 1)
        return self.rows[keys, pick]


def _index(view: RetrievalView):
    if getattr(view, "_styled_index", None) is None:
        gt = view.gallery_table
        cats, media = sorted(set(gt["category"])), sorted(set(gt["medium"]))
        if len(cats) < 2 or len(media) < 2:
            raise DataError(f"{view.name}: styled triplets need 2+ classes and 2+ media, got {cats} and {media}")
        code = lambda values, levels: torch.tensor(pd.Categorical(values, levels).codes, dtype=torch.long)  # noqa: E731
        cat, med, q_cat = code(gt["category"], cats), code(gt["medium"], media), code(view.table["category"], cats)
        c, m = torch.arange(len(cats))[:, None], torch.arange(len(media))[:, None]
        is_c, is_m = cat[None] == c, med[None] == m  # (C, M), (Me, M)
        pairs = lambda a, b: (a[:, None] & b[None]).flatten(0, 1)  # noqa: E731  (C * Me, M), key c * Me + m
        pools = {
            "cat": _Pools(is_c),
            "not_cat": _Pools(~is_c),
            "cm": _Pools(pairs(is_c, is_m)),
            "med_not_cat": _Pools(pairs(~is_c, is_m)),
            "cat_not_med": _Pools(pairs(is_c, ~is_m)),
            "med": _Pools(is_m),
        }
        view._styled_index = (len(media), cat, med, q_cat, pools)
    return view._styled_index


@register_sampler("styled_triplets")
def styled_triplets(view: RetrievalView, batch_size: int, generator: torch.Generator, exemplars: int = 2) -> dict:
    """A batch for ``WithStyle`` from a ``styled_train`` view:

    sketch (B, ...); pos / neg (B, ...): an image of the sketch's class / of another class, each in a random
    medium; style_anchor, style_pos, style_neg (B, ...): an image, one of the same medium and another
    class, one of the same class and another medium; style_media (3B,) int64: their media (sorted order);
    exemplars (B, K, ...) of a wanted medium w, fuse_pos (class and w), fuse_neg (class and another
    medium, or w and another class, half each).
    """
    n_media, cat, med, q_cat, pools = _index(view)
    q = torch.randperm(len(view), generator=generator)[:batch_size]
    b, c, G = len(q), q_cat[q], view.gallery
    pos, neg = pools["cat"].draw(c, generator), pools["not_cat"].draw(c, generator)
    anchor = torch.randint(len(G), (b,), generator=generator)
    a_key = cat[anchor] * n_media + med[anchor]
    s_pos, s_neg = pools["med_not_cat"].draw(a_key, generator), pools["cat_not_med"].draw(a_key, generator)
    want = torch.randint(n_media, (b,), generator=generator)
    ex = torch.stack([pools["med"].draw(want, generator) for _ in range(exemplars)], 1)
    w_key = c * n_media + want
    f_pos = pools["cm"].draw(w_key, generator)
    same_class = torch.rand(b, generator=generator) < 0.5
    f_neg = torch.where(
        same_class, pools["cat_not_med"].draw(w_key, generator), pools["med_not_cat"].draw(w_key, generator)
    )
    style_idx = torch.cat([anchor, s_pos, s_neg])
    return {
        "sketch": view.queries[q],
        "pos": G[pos],
        "neg": G[neg],
        "idx": q,
        "style_anchor": G[anchor],
        "style_pos": G[s_pos],
        "style_neg": G[s_neg],
        "style_media": med[style_idx],
        "exemplars": G[ex.flatten()].view(b, exemplars, *G.shape[1:]),
        "fuse_pos": G[f_pos],
        "fuse_neg": G[f_neg],
    }
