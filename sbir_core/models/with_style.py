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

Training batches come from the "styled_triplets" sampler over a view made by ``styled_train_view``:
queries are sketches, the gallery holds every medium of the training objects (``gallery_table`` with
``category`` and ``medium``).
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from sbir_core.data.base import DataError, SBIRData
from sbir_core.data.views import RetrievalView, photo_tensor, sketch_tensor
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

    def __init__(self, structure: nn.Module, style: nn.Module, n_media: int, embed_dim: int = 64,
                 margin: float = 0.2, pretrain_steps: int = 200, ce_weight: float = 0.5, train_exemplars: int = 2):
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

    def with_mode(self, mode: str) -> "WithStyle":
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
        q_style = ft[:b * k].view(b, k, -1).mean(1)
        q = self._fuse(fs[:b], q_style)
        gp = self._fuse(fs[b:2 * b], ft[b * k:b * k + b])
        gn = self._fuse(fs[2 * b:], ft[b * k + b:])
        l_fuse = F.relu((q - gp).norm(dim=1) - (q - gn).norm(dim=1) + m).mean()
        return {"structure": l_struct, "style": l_style, "style_ce": ce, "style_triplet": l_style_t, "fusion": l_fuse}

    def training_loss(self, batch: dict) -> torch.Tensor:
        parts = self.losses(batch)
        return parts["structure"] + parts["style"] + parts["fusion"]

    def train_step(self, batch: dict, optimizers) -> float:
        loss = super().train_step(batch, optimizers)
        self.step += 1
        return loss


def build_with_style(encoder: str = "cnn", n_media: int = 8, embed_dim: int = 64, margin: float = 0.2,
                     pretrain_steps: int = 200, ce_weight: float = 0.5, train_exemplars: int = 2,
                     **encoder_options) -> WithStyle:
    """A ``WithStyle`` with two registry encoders of the same options (``models.encoders``)."""
    from sbir_core.models.encoders import build_encoder

    return WithStyle(build_encoder(encoder, **encoder_options), build_encoder(encoder, **encoder_options),
                     n_media, embed_dim, margin, pretrain_steps, ce_weight, train_exemplars)


# ---------------------------------------------------------------------- data for training

def styled_train_view(data: SBIRData, split: str = "train", size: int = 32, line_width: float = 1.5,
                      media=None, where: dict | None = None, paired: bool = True) -> RetrievalView:
    """Sketches of ``split`` (filtered by ``where``) as queries; the gallery is every image of the split's
    photos in ``media`` (None: all the data has) of the queries' classes, with ``category`` and ``medium``. A query's target is
    its own object's image in the first medium (the view needs one; the styled losses use classes), or with
    ``paired=False`` (sketches drawn from no particular image, e.g. PACS) the first image of its class there."""
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
    return RetrievalView(f"{data.name}/{split}/styled", sketch_tensor(data.sketch_images(size, line_width)[q_rows]),
                         photo_tensor(data.photo_images(size)[g_rows]), target, sk.iloc[q_rows].copy(), gtab, None)


def _pick(pools: dict, keys, generator: torch.Generator) -> torch.Tensor:
    """One random row of ``pools[key]`` for each key: (B,) int64."""
    out = []
    for key in keys:
        rows = pools[key]
        if len(rows) == 0:
            raise DataError(f"styled triplets: no gallery image for {key!r} (every class needs every medium)")
        out.append(rows[int(torch.randint(len(rows), (1,), generator=generator))])
    return torch.as_tensor(out, dtype=torch.long)


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
    pos = _pick(idx["cat"], q_cat, generator)
    neg = _pick(idx["not_cat"], q_cat, generator)
    anchor = torch.randint(len(G), (b,), generator=generator)
    a_key = [(cat[i], med[i]) for i in anchor.tolist()]
    s_pos = _pick(idx["med_not_cat"], a_key, generator)
    s_neg = _pick(idx["cat_not_med"], a_key, generator)
    want = [media[int(i)] for i in torch.randint(len(media), (b,), generator=generator)]
    ex = torch.stack([_pick(idx["med"], want, generator) for _ in range(exemplars)], 1)
    f_pos = _pick(idx["cm"], list(zip(q_cat, want)), generator)
    same_class = torch.rand(b, generator=generator) < 0.5
    f_neg_a = _pick(idx["cat_not_med"], list(zip(q_cat, want)), generator)
    f_neg_b = _pick(idx["med_not_cat"], list(zip(q_cat, want)), generator)
    f_neg = torch.where(same_class, f_neg_a, f_neg_b)
    style_idx = torch.cat([anchor, s_pos, s_neg])
    return {"sketch": view.queries[q], "pos": G[pos], "neg": G[neg], "idx": q,
            "style_anchor": G[anchor], "style_pos": G[s_pos], "style_neg": G[s_neg],
            "style_media": torch.as_tensor([m_code[med[i]] for i in style_idx.tolist()], dtype=torch.long),
            "exemplars": G[ex.flatten()].view(b, exemplars, *G.shape[1:]),
            "fuse_pos": G[f_pos], "fuse_neg": G[f_neg]}


# ---------------------------------------------------------------------- style exemplars of a query

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
            raise DataError(f"{view.name}: style medium {m!r} has no gallery item (gallery media: {sorted(gallery_media)})")
        if not (pool_media == m).any():
            raise DataError(f"{view.name}: no exemplar image of medium {m!r} (exemplar media: {sorted(set(pool_media))})")
    g = torch.Generator().manual_seed(seed)
    rows = torch.stack([_pick({m: np.flatnonzero(pool_media == m) for m in set(want)}, want, g) for _ in range(k)], 1)
    view.style = pool[rows.flatten()].view(len(want), k, *pool.shape[1:])
    return view.style


def styled_queries(data: SBIRData, sketches: dict, photos: dict, pool: dict, size: int = 32,
                   line_width: float = 1.5, k: int = 3, seed: int = 0, want_media=None, name: str | None = None):
    """A category-level view with relevance by class and medium (``views.category_view``) whose queries
    carry ``k`` style exemplars of the wanted medium, drawn from the photos matching ``pool`` (other
    objects than the gallery's): a ``CategoryView`` with ``style`` (N, k, C, S, S) set."""
    from sbir_core.data.views import category_view

    view = category_view(data, sketches, photos, size, line_width, relevance="category_medium",
                         want_media=want_media, name=name)
    ph = data.photos
    keep = np.ones(len(ph), bool)
    for col, value in (pool or {}).items():
        keep &= ph[col].isin([value] if isinstance(value, (str, bool, int)) else list(value)).to_numpy()
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise DataError(f"{data.name}: no exemplar images match {pool}")
    attach_style(view, photo_tensor(data.photo_images(size)[rows]), ph["medium"].to_numpy()[rows], k, seed)
    return view


def linear_probe(train_x: torch.Tensor, train_y, test_x: torch.Tensor, test_y, steps: int = 300,
                 weight_decay: float = 1e-3, seed: int = 0) -> np.ndarray:
    """Multinomial logistic regression fitted on (train_x (N, D), train_y (N,) labels), applied to test_x:
    (M,) float64, 1 where the predicted label equals test_y. Features are standardised on train_x."""
    labels = sorted(set(train_y) | set(test_y))
    code = {c: i for i, c in enumerate(labels)}
    ytr = torch.as_tensor([code[c] for c in train_y])
    yte = np.array([code[c] for c in test_y])
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    xtr, xte = (train_x - mu) / sd, (test_x - mu) / sd
    g = torch.Generator().manual_seed(seed)
    w = (0.01 * torch.randn(xtr.shape[1], len(labels), generator=g)).requires_grad_()
    b = torch.zeros(len(labels), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ w + b, ytr) + weight_decay * (w ** 2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = (xte @ w + b).argmax(1).numpy()
    return (pred == yte).astype(np.float64)


def cross_styled_queries(sketch_data: SBIRData, photo_data: SBIRData, classes, size: int = 32,
                         line_width: float = 1.5, k: int = 3, seed: int = 0, sketch_split: str | None = "test",
                         gallery_split: str = "test", pool_split: str = "train", want_media=None,
                         max_per_class: int | None = None):
    """Sketches of one dataset (QuickDraw) asking for images of another (PACS, medium = domain) of the
    given ``classes``: a ``CategoryView`` with relevance by class and medium and ``k`` exemplars per
    query from ``pool_split``. A class without sketches or without images is an error naming it; a
    wanted medium absent from the gallery is an error naming the media present. ``sketch_split=None``: every
    sketch (the query dataset is not trained on)."""
    from sbir_core.data.views import CategoryView

    classes = list(classes)
    if not classes:
        raise DataError("cross_styled_queries: no classes")
    sk, ph = sketch_data.sketches, photo_data.photos
    no_sketch = [c for c in classes if not (sk["category"] == c).any()]
    no_photo = [c for c in classes if not (ph["category"] == c).any()]
    if no_sketch or no_photo:
        raise DataError(f"classes {no_sketch} have no {sketch_data.name} sketches; classes {no_photo} have no "
                        f"{photo_data.name} images ({photo_data.name} classes: {sorted(set(ph['category']))})")
    q = sk[((sk["split"] == sketch_split) if sketch_split else True) & sk["category"].isin(classes)]
    if max_per_class is not None:
        q = q.groupby("category").head(max_per_class)
    g_mask = ((ph["split"] == gallery_split) & ph["category"].isin(classes)).to_numpy()
    p_mask = ((ph["split"] == pool_split) & ph["category"].isin(classes)).to_numpy()
    if len(q) == 0 or not g_mask.any() or not p_mask.any():
        raise DataError(f"{len(q)} {sketch_data.name} sketches in split {sketch_split!r}, {g_mask.sum()} gallery and "
                        f"{p_mask.sum()} exemplar images of {photo_data.name} for classes {classes}")
    q_rows = q.index.to_numpy() if q.index.equals(pd.RangeIndex(len(q))) else np.flatnonzero(sk.index.isin(q.index))
    gtab = ph[g_mask].reset_index(drop=True)
    media = sorted(set(gtab["medium"])) if want_media is None else list(want_media)
    absent = sorted(set(media) - set(gtab["medium"]))
    if absent:
        raise DataError(f"{photo_data.name}: wanted media {absent} have no gallery item (media present: "
                        f"{sorted(set(gtab['medium']))})")
    table = pd.concat([sk.iloc[q_rows].reset_index(drop=True).assign(want_medium=m) for m in media], ignore_index=True)
    queries = sketch_tensor(sketch_data.sketch_images(size, line_width)[q_rows]).repeat(len(media), 1, 1, 1)
    images = photo_data.photo_images(size)
    view = CategoryView(f"{sketch_data.name}->{photo_data.name}", queries.contiguous(memory_format=torch.channels_last),
                        photo_tensor(images[g_mask]), table, gtab, "category_medium")
    attach_style(view, photo_tensor(images[p_mask]), ph["medium"].to_numpy()[p_mask], k, seed)
    return view
