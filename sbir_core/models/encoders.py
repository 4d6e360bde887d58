"""Image encoders shared by sketch and photo branches, and a registry of them by name.

* ``"cnn"``: a CPU-scale convolutional encoder for the ``ci`` scale (``CNNConfig``), trained from
  scratch; its cost per image is ``flops_per_image``.
* ``"mlp"``: a head on a frozen trunk's features (``sbir_core.models.trunk``, ``sbir_core.features``):
  the ci scale's encoder, (B, D_in) features -> (B, D) embeddings; ``"trunk_mlp"``: the same head on the
  pretrained trunk trained end to end, images in (the paper scale).
* ``"vgg16"``, ``"inceptionv3"``: the papers' backbones for the ``paper`` scale (METHODS.md §A):
  torchvision's ImageNet features, global max pooling, L2-normalised. They need torchvision and
  a local ImageNet weights file; without them ``build_encoder`` raises ``EncoderUnavailable``
  saying what to install. Nothing is ever downloaded.

Every encoder maps (B, C, H, W) float32 images (C = 1 for sketches, 3 for photos; a 1-channel
input is repeated to 3 so that one encoder serves both modalities, as in the QMUL code) to
(B, D) float32 L2-normalised embeddings and has an ``embed_dim`` attribute.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sbir_core.models.trunk import EncoderUnavailable  # noqa: F401 - raised here too, and imported from here


@dataclass
class CNNConfig:
    """The CPU-scale encoder.

    width: channels of the first block (doubled at every later block, capped at 8x).
    depth: number of conv blocks; each halves the resolution (a 3x3 stride-2 conv) then
        refines it (a 3x3 stride-1 conv) when ``double_conv``.
    embed_dim: size of the embedding (a linear layer after global max pooling).
    in_channels: 3; 1-channel sketches are repeated to 3 channels.
    double_conv: two convs per block (more FLOPs at the same resolution, better arithmetic intensity).
    """

    width: int = 32
    depth: int = 4
    embed_dim: int = 64
    in_channels: int = 3
    double_conv: bool = True

    def __post_init__(self):
        for name in ("width", "depth", "embed_dim", "in_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CNNConfig.{name} must be >= 1, got {getattr(self, name)}")


class SmallCNN(nn.Module):
    """Conv blocks (stride-2 3x3 conv, ReLU[, 3x3 conv, ReLU]) -> global max pool -> linear -> L2 norm.

    Global max pooling follows the QMUL baseline (METHODS.md §A); no normalisation layers, so the
    forward pass of a sketch does not depend on the rest of its batch and eval equals train mode.
    """

    def __init__(self, config: CNNConfig | None = None, **kwargs):
        super().__init__()
        self.config = config or CNNConfig(**kwargs)
        c = self.config
        layers: list[nn.Module] = []
        ch_in = c.in_channels
        for i in range(c.depth):
            ch = c.width * min(2**i, 8)
            layers += [nn.Conv2d(ch_in, ch, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            if c.double_conv:
                layers += [nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(inplace=True)]
            ch_in = ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(ch_in, c.embed_dim)
        self.embed_dim = c.embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 or 3, H, W) float32 -> (B, embed_dim) float32, unit L2 norm."""
        x = _three_channels(x, self.config.in_channels)
        h = self.features(x).amax(dim=(2, 3))
        return F.normalize(self.head(h), dim=1)


def _three_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.ndim != 4:
        raise ValueError(f"encoder input must be (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != channels:
        raise ValueError(f"encoder expects {channels} (or 1) channels, got {x.shape[1]}")
    return x


def layer_macs(model: nn.Module, size: int) -> list[tuple[str, int]]:
    """Multiply-accumulates of each conv/linear layer for one (size x size) image: [(name, macs)].

    Counted analytically: a conv costs H_out * W_out * C_out * (C_in / groups) * k_h * k_w MACs,
    a linear layer in * out. Elementwise work (bias, ReLU, pooling) is not counted: it moves
    memory rather than multiplying matrices.
    """
    out: list[tuple[str, int]] = []
    h = w = size
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            sh, sw = mod.stride
            ph, pw = mod.padding
            h = (h + 2 * ph - kh) // sh + 1
            w = (w + 2 * pw - kw) // sw + 1
            out.append((name, h * w * mod.out_channels * (mod.in_channels // mod.groups) * kh * kw))
        elif isinstance(mod, nn.Linear):
            out.append((name, mod.in_features * mod.out_features))
    return out


def flops_per_image(model: nn.Module, size: int, training: bool = False) -> int:
    """FLOPs (2 per MAC) for one image through a sequential conv encoder such as ``SmallCNN``.

    Forward: 2 * MACs. A training step adds the weight gradient (2 * MACs of every layer) and the
    input gradient (2 * MACs of every layer but the first, whose input needs no gradient): about
    3x the forward cost. The default CNN (width 32, depth 4, embed 64, double conv; 1.19 M
    parameters) costs 59.4 MFLOP forward and 177.3 MFLOP per training image at 48 px (the ci
    scale), 105.6 MFLOP forward at 64 px; with one conv per block, 17.0 and 49.9 MFLOP at 48 px.
    Achieved rates: ``python -m sbir_core.bench train``.
    """
    macs = [m for _, m in layer_macs(model, size)]
    if not training:
        return 2 * sum(macs)
    return 2 * sum(macs) + 2 * sum(macs) + 2 * sum(macs[1:])


# ---------------------------------------------------------------- paper-scale backbones

_TORCHVISION_HINT = (
    "install torchvision built for this torch (torch 2.13.0+cpu has no working torchvision wheel; "
    "torch 2.14.1 + torchvision 0.29.1 is the pairing known to import, see TOOLCHAIN.md), "
    "and put the ImageNet weights file on disk"
)

WEIGHT_FILES = {"vgg16": "vgg16-397923af.pth", "inceptionv3": "inception_v3_google-0cc3c7bd.pth"}


def _weights_path(name: str, weights: str | os.PathLike | None) -> Path:
    if weights is not None:
        path = Path(weights)
    else:
        root = os.environ.get("SBIR_WEIGHTS")
        if not root:
            raise EncoderUnavailable(
                f"encoder {name!r} needs a local ImageNet weights file: pass weights=PATH or set "
                f"SBIR_WEIGHTS to a folder holding {WEIGHT_FILES[name]} (nothing is downloaded)"
            )
        path = Path(root) / WEIGHT_FILES[name]
    if not path.is_file():
        raise EncoderUnavailable(f"encoder {name!r}: weights file {path} not found (nothing is downloaded)")
    return path


def _torchvision(name: str):
    try:
        import torchvision  # noqa: F401
        from torchvision import models
    except Exception as err:  # ImportError, or the RuntimeError of a mismatched wheel
        raise EncoderUnavailable(
            f"encoder {name!r} needs torchvision, which does not import here "
            f"({type(err).__name__}: {err}); {_TORCHVISION_HINT}"
        ) from err
    return models


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_input(x: torch.Tensor) -> torch.Tensor:
    """The views' tensors as ImageNet weights expect them: (B, 1 or 3, H, W) -> (B, 3, H, W).

    Sketches (1 channel, ink 1 on 0) become black ink on white, photos ([-1, 1]) become [0, 1];
    then the ImageNet mean and standard deviation are applied.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, 1 or 3, H, W), got shape {tuple(x.shape)}")
    img = (1 - x).expand(-1, 3, -1, -1) if x.shape[1] == 1 else (x + 1) / 2
    mean = torch.tensor(IMAGENET_MEAN, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    return (img - mean) / std


class _PooledBackbone(nn.Module):
    """ImageNet normalisation -> backbone features -> global max pool -> L2 norm (METHODS.md §A)."""

    def __init__(self, features: nn.Module, embed_dim: int):
        super().__init__()
        self.features = features
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 or 3, H, W) float32 in the views' conventions -> (B, embed_dim) unit-norm float32."""
        return F.normalize(self.features(imagenet_input(x)).amax(dim=(2, 3)), dim=1)


def vgg16(weights: str | os.PathLike | None = None, pretrained: bool = True) -> nn.Module:
    """VGG16 ``features`` (with its last max pool), global max pool, 512-d (METHODS.md §A)."""
    models = _torchvision("vgg16")
    net = models.vgg16(weights=None)
    if pretrained:
        net.load_state_dict(torch.load(_weights_path("vgg16", weights), map_location="cpu", weights_only=True))
    return _PooledBackbone(net.features, 512)


def inceptionv3(weights: str | os.PathLike | None = None, pretrained: bool = True) -> nn.Module:
    """InceptionV3 Conv2d_1a .. Mixed_7c (no aux head), global max pool, 2048-d (METHODS.md §A)."""
    models = _torchvision("inceptionv3")
    net = models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    if pretrained:
        net.load_state_dict(torch.load(_weights_path("inceptionv3", weights), map_location="cpu", weights_only=True))
    keep = [
        "Conv2d_1a_3x3",
        "Conv2d_2a_3x3",
        "Conv2d_2b_3x3",
        "maxpool1",
        "Conv2d_3b_1x1",
        "Conv2d_4a_3x3",
        "maxpool2",
        "Mixed_5b",
        "Mixed_5c",
        "Mixed_5d",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_6c",
        "Mixed_6d",
        "Mixed_6e",
        "Mixed_7a",
        "Mixed_7b",
        "Mixed_7c",
    ]
    return _PooledBackbone(nn.Sequential(*[getattr(net, k) for k in keep]), 2048)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with its mask drawn as uniform numbers compared with ``p``: the same distribution and scaling,
    but 2.6x faster forward and backward on the CPU (a (192, 512) batch: 0.93 ms against 2.41 ms on one thread here),
    where PyTorch's dropout draws Bernoulli numbers one at a time (~13 ns each). It was ~77 CPU-s of the ci book."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * 0
        return x * torch.rand_like(x).ge_(self.p).mul_(1 / (1 - self.p))


class FeatureHead(nn.Module):
    """A head on trunk features: LayerNorm -> Linear(hidden) -> ReLU -> Dropout -> Linear(embed_dim) -> L2 norm.

    LayerNorm standardises each feature vector on its own, so a sketch's embedding does not depend on
    the rest of its batch (no batch statistics), and sketches and photos share it (a Siamese head).
    """

    def __init__(self, in_dim: int = 1792, hidden: int = 512, embed_dim: int = 128, dropout: float = 0.5):
        super().__init__()
        if min(in_dim, hidden, embed_dim) < 1 or not 0 <= dropout < 1:
            raise ValueError(
                f"FeatureHead needs positive sizes and 0 <= dropout < 1, got {in_dim}, {hidden}, {embed_dim}, {dropout}"
            )
        self.embed_dim = int(embed_dim)
        self.norm = nn.LayerNorm(in_dim)
        self.hidden = nn.Linear(in_dim, hidden)
        self.drop = Dropout(dropout)
        self.head = nn.Linear(hidden, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2:
            raise ValueError(
                f"the mlp encoder takes (B, D) trunk features, got shape {tuple(x.shape)}: build the "
                f"view with sbir_core.features.feature_view"
            )
        return F.normalize(self.head(self.drop(F.relu(self.hidden(self.norm(x))))), dim=1)


def feature_head(**kwargs) -> nn.Module:
    """The head on trunk features, ``FeatureHead(**kwargs)``."""
    return FeatureHead(**kwargs)


def trunk_head(trunk: dict | None = None, **kwargs) -> nn.Module:
    """The pretrained trunk (``models.trunk``) trained end to end with a ``FeatureHead`` on top: images in.
    The paper scale's encoder; the ci scale freezes the trunk and trains the head on cached features."""
    from sbir_core.models.trunk import Trunk, TrunkSpec

    net = Trunk(TrunkSpec.of(trunk), trainable=True)
    head = FeatureHead(**{"in_dim": net.dim, **kwargs})
    encoder = nn.Sequential(net, head)
    encoder.embed_dim = head.embed_dim  # every encoder's contract (Sketching with Style's streams read it)
    return encoder


def small_cnn(**kwargs) -> nn.Module:
    """The CPU-scale encoder, ``SmallCNN(CNNConfig(**kwargs))``."""
    return SmallCNN(CNNConfig(**kwargs))


ENCODERS = {"cnn": small_cnn, "mlp": feature_head, "trunk_mlp": trunk_head, "vgg16": vgg16, "inceptionv3": inceptionv3}


def build_encoder(name: str, **kwargs) -> nn.Module:
    """An encoder by registry name (``ENCODERS``) with its options; ``EncoderUnavailable`` if it cannot be built."""
    if name not in ENCODERS:
        raise EncoderUnavailable(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[name](**kwargs)


def encoder_options(model: nn.Module) -> dict:
    """The plain options a ``SmallCNN`` was built with (for params files)."""
    return asdict(model.config) if isinstance(model, SmallCNN) else {}
