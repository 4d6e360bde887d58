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

Training batches come from the "styled_triplets" sampler over a view made by ``data.styled.styled_train_view``:
queries are sketches, the gallery holds every medium of the training objects (``gallery_table`` with
``category`` and ``medium``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sbir_core.data.base import DataError
from sbir_core.data.styled import pick_rows
from sbir_core.data.views import RetrievalView
from sbir_core.models.base import Method, MethodError
from sbir_core.samplers import register_sampler

MODES = ("fused", "structure", "style", "naive")


class WithStyle(Method):
    """Structure, style and fusion networks (see the module docstring).

    structure, style: encoders (B, C, S, S) -> (B, D) unit norm. n_media: classes of the style head.
    embed_dim: size of the fused embedding. margin: of all three triplet losses.
    pretrain_steps: steps of medium classification alone before the decorrelated style triplets.
    ce_weight: weight of the classification loss after pre-training.
    train_exemplars: style exemplars per query in the fusion triplets (the sampler's ``exemplars``).
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

    def style_of(self, exemplars: torch.Tensor) -> torch.Tensor:
        """(N, K, C, S, S) exemplar images -> (N, D_t): the mean of their style embeddings."""
        if exemplars is None or exemplars.ndim != 5 or exemplars.shape[1] == 0:
            shape = None if exemplars is None else tuple(exemplars.shape)
            raise MethodError(f"a styled query needs (N, K >= 1, C, S, S) style exemplars, got {shape}")
        n, k = exemplars.shape[:2]
        return self.style(exemplars.flatten(0, 1)).view(n, k, -1).mean(1)

    def _fuse(self, structure: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fusion(torch.cat([structure, style], 1)), dim=1)

    def embed_query(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Sketches (N, C, S, S) [+ exemplars (N, K, C', S, S)] -> (N, D) in the current mode."""
        if self.mode == "structure":
            return self.structure(x)
        if self.mode == "style":
            return self.style(x)
        s, t = self.structure(x), self.style_of(style)
        if self.mode == "naive":
            return torch.cat([s, F.normalize(t, dim=1)], 1)
        return self._fuse(s, t)

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        """Images (M, C, S, S) -> (M, D) in the current mode."""
        if self.mode == "structure":
            return self.structure(x)
        if self.mode == "style":
            return self.style(x)
        s, t = self.structure(x), self.style(x)
        return torch.cat([s, t], 1) if self.mode == "naive" else self._fuse(s, t)

    # ------------------------------------------------------------------ training

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The three losses of a "styled_triplets" batch (keys: see ``styled_triplets``)."""
        m = self.margin
        b = len(batch["sketch"])
        # structure: sketch vs same-class image (random medium) and other-class image
        s = self.structure(batch["sketch"])
        g = self.structure(torch.cat([batch["pos"], batch["neg"]]))
        l_struct = F.relu((s - g[:b]).norm(dim=1) - (s - g[b:]).norm(dim=1) + m).mean()
        # style: medium classification, then decorrelated triplets
        imgs = torch.cat([batch["style_anchor"], batch["style_pos"], batch["style_neg"]])
        t = self.style(imgs)
        ce = F.cross_entropy(self.medium_head(t), batch["style_media"])
        ta, tp, tn = t.split(len(batch["style_anchor"]))
        l_style_t = F.relu((ta - tp).norm(dim=1) - (ta - tn).norm(dim=1) + m).mean()
        pretraining = int(self.step) < self.pretrain_steps
        l_style = ce if pretraining else l_style_t + self.ce_weight * ce
        # fusion: a sketch with exemplars of the wanted medium; positive = class and medium match
        with torch.no_grad():
            fs = torch.cat([s.detach(), self.structure(torch.cat([batch["fuse_pos"], batch["fuse_neg"]]))])
            ft = self.style(torch.cat([batch["exemplars"].flatten(0, 1), batch["fuse_pos"], batch["fuse_neg"]]))
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
    encoder: str = "cnn",
    n_media: int = 8,
    embed_dim: int = 64,
    margin: float = 0.2,
    pretrain_steps: int = 200,
    ce_weight: float = 0.5,
    train_exemplars: int = 2,
    **encoder_options,
) -> WithStyle:
    """A ``WithStyle`` with two registry encoders of the same options (``models.encoders``)."""
    from sbir_core.models.encoders import build_encoder

    return WithStyle(
        build_encoder(encoder, **encoder_options),
        build_encoder(encoder, **encoder_options),
        n_media,
        embed_dim,
        margin,
        pretrain_steps,
        ce_weight,
        train_exemplars,
    )


# ---------------------------------------------------------------------- data for training


def _index(view: RetrievalView):
    if getattr(view, "_styled_index", None) is None:
        gt = view.gallery_table
        cat, med = gt["category"].to_numpy(), gt["medium"].to_numpy()
        cats, media = sorted(set(cat)), sorted(set(med))
        if len(cats) < 2 or len(media) < 2:
            raise DataError(f"{view.name}: styled triplets need 2+ classes and 2+ media, got {cats} and {media}")
        idx = {
            "cat": {c: np.flatnonzero(cat == c) for c in cats},
            "not_cat": {c: np.flatnonzero(cat != c) for c in cats},
            "cm": {(c, m): np.flatnonzero((cat == c) & (med == m)) for c in cats for m in media},
            "med_not_cat": {(c, m): np.flatnonzero((med == m) & (cat != c)) for c in cats for m in media},
            "cat_not_med": {(c, m): np.flatnonzero((cat == c) & (med != m)) for c in cats for m in media},
            "med": {m: np.flatnonzero(med == m) for m in media},
        }
        view._styled_index = (cats, media, cat, med, idx)
    return view._styled_index


@register_sampler("styled_triplets")
def styled_triplets(view: RetrievalView, batch_size: int, generator: torch.Generator, exemplars: int = 2) -> dict:
    """A batch for ``WithStyle`` from a ``styled_train_view``:

    sketch (B, 1, S, S); pos / neg (B, C, S, S): an image of the sketch's class / of another class, each
    in a random medium; style_anchor, style_pos, style_neg (B, C, S, S): an image, one of the same medium
    and another class, one of the same class and another medium; style_media (3B,) int64: their media;
    exemplars (B, K, C, S, S) of a wanted medium w, fuse_pos (class and w), fuse_neg (class and another
    medium, or w and another class, half each).
    """
    cats, media, cat, med, idx = _index(view)
    m_code = {m: i for i, m in enumerate(media)}
    n = len(view)
    q = torch.randperm(n, generator=generator)[:batch_size]
    b = len(q)
    q_cat = view.table["category"].to_numpy()[q.numpy()]
    G = view.gallery
    pos = pick_rows(idx["cat"], q_cat, generator)
    neg = pick_rows(idx["not_cat"], q_cat, generator)
    anchor = torch.randint(len(G), (b,), generator=generator)
    a_key = [(cat[i], med[i]) for i in anchor.tolist()]
    s_pos = pick_rows(idx["med_not_cat"], a_key, generator)
    s_neg = pick_rows(idx["cat_not_med"], a_key, generator)
    want = [media[int(i)] for i in torch.randint(len(media), (b,), generator=generator)]
    ex = torch.stack([pick_rows(idx["med"], want, generator) for _ in range(exemplars)], 1)
    f_pos = pick_rows(idx["cm"], list(zip(q_cat, want)), generator)
    same_class = torch.rand(b, generator=generator) < 0.5
    f_neg_a = pick_rows(idx["cat_not_med"], list(zip(q_cat, want)), generator)
    f_neg_b = pick_rows(idx["med_not_cat"], list(zip(q_cat, want)), generator)
    f_neg = torch.where(same_class, f_neg_a, f_neg_b)
    style_idx = torch.cat([anchor, s_pos, s_neg])
    return {
        "sketch": view.queries[q],
        "pos": G[pos],
        "neg": G[neg],
        "idx": q,
        "style_anchor": G[anchor],
        "style_pos": G[s_pos],
        "style_neg": G[s_neg],
        "style_media": torch.as_tensor([m_code[med[i]] for i in style_idx.tolist()], dtype=torch.long),
        "exemplars": G[ex.flatten()].view(b, exemplars, *G.shape[1:]),
        "fuse_pos": G[f_pos],
        "fuse_neg": G[f_neg],
    }


# ---------------------------------------------------------------------- style exemplars of a query
