"""Pixel-space nearest neighbour: a learning-free method that says how far apart the modalities are.

Sketches become ink maps; photos become edge maps (the Sobel magnitude of the grey image, scaled to
a maximum of 1). Both are resized to ``size``, blurred with a Gaussian of ``blur`` pixels, flattened
and L2-normalised, and the gallery is ranked by Euclidean distance. Nothing is trained, so it shows
the difficulty of a benchmark before any learning, and how much drawers' style moves a sketch in
pixel space.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sbir_core.models.base import Method, MethodError


def _gaussian(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


class PixelNN(Method):
    """Ink maps against photo edge maps, blurred and L2-normalised (no parameters, no training)."""

    sampler = "triplets"

    def __init__(self, size: int = 32, blur: float = 1.0):
        super().__init__()
        if size < 4 or blur < 0:
            raise MethodError(f"pixel_nn needs size >= 4 and blur >= 0, got size={size}, blur={blur}")
        self.size, self.blur = int(size), float(blur)

    def training_loss(self, batch):
        raise MethodError("pixel_nn has nothing to train; evaluate it directly")

    def _finish(self, maps: torch.Tensor) -> torch.Tensor:
        maps = F.interpolate(maps, size=(self.size, self.size), mode="area")
        if self.blur > 0:
            k = _gaussian(self.blur).to(maps)
            pad = len(k) // 2
            maps = F.conv2d(F.pad(maps, (pad, pad, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
            maps = F.conv2d(F.pad(maps, (0, 0, pad, pad), mode="replicate"), k.view(1, 1, -1, 1))
        return F.normalize(maps.flatten(1), dim=1)

    def embed_query(self, x: torch.Tensor, style=None) -> torch.Tensor:
        """Sketches (N, 1, S, S), ink = 1 -> (N, size * size) unit-norm ink maps."""
        return self._finish(x[:, :1].float())

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        """Photos (N, 3, S, S) in [-1, 1] (or sketches (N, 1, S, S)) -> (N, size * size) unit-norm edge maps."""
        if x.shape[1] == 1:
            return self.embed_query(x)
        grey = ((x.float() + 1) / 2).mean(1, keepdim=True)
        sx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
        padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
        gx, gy = F.conv2d(padded, sx), F.conv2d(padded, sx.transpose(2, 3))
        mag = torch.sqrt(gx**2 + gy**2)
        mag = mag / (mag.flatten(1).amax(1).view(-1, 1, 1, 1) + 1e-9)
        return self._finish(mag)


class FeatureNN(Method):
    """Nearest neighbour on the inputs as given, L2-normalised: on a feature view, the frozen trunk's
    features with nothing trained on sketches (the floor a head on those features must beat)."""

    sampler = "triplets"

    def training_loss(self, batch):
        raise MethodError("feature_nn has nothing to train; evaluate it directly")

    def embed_query(self, x: torch.Tensor, style=None) -> torch.Tensor:
        """(N, D) features -> (N, D) unit-norm features."""
        return F.normalize(x.float().flatten(1), dim=1)

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_query(x)
