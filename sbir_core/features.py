"""Trunk features of a view, computed once and kept on disk: what the ci scale's methods train on.

``feature_view(view, spec)`` returns the view with its sketches and photos (and a styled view's
exemplars) replaced by the frozen trunk's features (``sbir_core.models.trunk``), (N, D) float32. The
features of one image tensor are cached under a hash of its bytes and the trunk's spec
(``<cache>/features``, checksummed like every cache of the package): the style world's photos and
seen drawers' sketches are the same bit for bit at every style gap, so every chapter and every gap
computes them once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from sbir_core.cache import cached_arrays, content_hash
from sbir_core.data.base import cache_dir
from sbir_core.models.trunk import Trunk, TrunkSpec

_TRUNKS: dict[TrunkSpec, Trunk] = {}


def trunk(spec: TrunkSpec) -> Trunk:
    """The trunk of ``spec``, built once per process."""
    if spec not in _TRUNKS:
        _TRUNKS[spec] = Trunk(spec)
    return _TRUNKS[spec]


def features(images: torch.Tensor, spec: TrunkSpec, batch: int = 256) -> torch.Tensor:
    """(N, C, S, S) images -> (N, D) float32 trunk features, from the cache when it holds them."""
    images = images.detach().cpu()
    key = content_hash(images.contiguous().numpy(), repr(sorted(spec.as_dict().items())))
    net = trunk(spec)

    def compute():
        out = [net(images[i : i + batch]) for i in range(0, len(images), batch)]
        empty = torch.empty(0, net.dim)
        return {"features": torch.cat(out).numpy().astype(np.float32) if out else empty.numpy()}

    arrays = cached_arrays(
        cache_dir() / "features" / f"{key}.npz", compute, {"features": ((len(images), net.dim), np.float32)}
    )
    return torch.from_numpy(np.ascontiguousarray(arrays["features"]))


@dataclass(frozen=True, eq=False)
class Projection:
    """A fixed linear map of trunk features onto their top principal directions: (x - mean) @ basis.

    Fitted once on a training split's features (``principal``); it keeps most of their variance in far
    fewer dimensions, so the heads trained on top cost a fraction of the time per step.
    """

    mean: torch.Tensor
    basis: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.basis

    @property
    def dim(self) -> int:
        return int(self.basis.shape[1])


def principal(x: torch.Tensor, k: int) -> Projection:
    """The ``k`` principal directions of features ``x`` (N, D): the top eigenvectors of their covariance
    (``torch.linalg.eigh``, exact and deterministic), each signed so that its largest entry is positive."""
    if not 1 <= k <= x.shape[1]:
        raise ValueError(f"principal: k must lie in [1, {x.shape[1]}], got {k}")
    x = x.double()
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / max(len(x) - 1, 1)
    _, vectors = torch.linalg.eigh(cov)
    basis = vectors[:, -k:].flip(1)
    sign = torch.sign(basis.gather(0, basis.abs().argmax(0, keepdim=True)))
    return Projection(mean.float(), (basis * sign).float())


def project(view, proj: Projection):
    """A feature view with its features (queries, gallery, style) mapped by ``proj``."""
    changes = {"queries": proj(view.queries), "gallery": proj(view.gallery)}
    if getattr(view, "style", None) is not None:
        changes["style"] = proj(view.style)
    return dataclasses.replace(view, **changes)


def feature_view(view, spec: TrunkSpec | dict | None = None):
    """``view`` (a ``RetrievalView`` or ``CategoryView``) with its images replaced by trunk features: queries
    (N, D), gallery (M, D) and, for a styled view, style exemplars (N, k, D). Tables, targets and groups are
    unchanged, so a method trained on it is evaluated exactly as one trained on images."""
    spec = spec if isinstance(spec, TrunkSpec) else TrunkSpec.of(spec)
    changes = {"queries": features(view.queries, spec), "gallery": features(view.gallery, spec)}
    style = getattr(view, "style", None)
    if style is not None:
        n, k = style.shape[:2]
        changes["style"] = features(style.reshape(n * k, *style.shape[2:]), spec).view(n, k, -1)
    if hasattr(view, "strokes"):
        changes["strokes"] = None  # a feature view has no pixels to draw strokes on
    return dataclasses.replace(view, name=f"{view.name}@{spec.name}", **changes)
