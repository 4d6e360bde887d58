"""A learning-free difficulty measure: pixel-space nearest neighbour from sketch to photo edges.

Sketches become ink maps (1 - image); photos become edge maps (Sobel magnitude of the grey
image, scaled to a maximum of 1). Both are blurred, flattened and L2-normalised, and the gallery
is ranked by Euclidean distance. It uses no training, so it says how far apart the two
modalities are before any learning, and how much drawers' style moves a sketch in pixel space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from sbir_core.data.base import DataError, SBIRData
from sbir_core.metrics import pairwise_distances, true_match_rank


def ink_maps(sketch_images: np.ndarray, blur: float) -> np.ndarray:
    """(N, S, S) float images in [0, 1] (white background) -> (N, S*S) unit-norm ink vectors."""
    ink = 1.0 - sketch_images.astype(np.float64)
    ink = ndimage.gaussian_filter(ink, (0, blur, blur)) if blur > 0 else ink
    return _unit(ink.reshape(len(ink), -1))


def edge_maps(photo_images: np.ndarray, blur: float) -> np.ndarray:
    """(M, S, S, 3) uint8 photos -> (M, S*S) unit-norm edge vectors."""
    grey = photo_images.astype(np.float64).mean(-1) / 255.0
    mag = np.hypot(ndimage.sobel(grey, axis=1), ndimage.sobel(grey, axis=2))
    mag /= mag.reshape(len(mag), -1).max(1)[:, None, None] + 1e-9
    mag = ndimage.gaussian_filter(mag, (0, blur, blur)) if blur > 0 else mag
    return _unit(mag.reshape(len(mag), -1))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def pixel_nn_ranks(data: SBIRData, split: str = "test", size: int = 32, blur: float = 1.0,
                   line_width: float = 1.0) -> pd.DataFrame:
    """Rank of each ``split`` sketch's true photo among the split's distinct paired photos.

    Returns the sketch rows of the split with a ``rank`` column (1 = the true photo is nearest);
    ties count against the method (``metrics.true_match_rank``).
    """
    pidx = data.photo_index()
    rows = np.flatnonzero((data.sketches["split"] == split).to_numpy() & (pidx >= 0))
    if len(rows) == 0:
        raise DataError(f"{data.name}: no paired sketches in split {split!r}")
    gallery = np.unique(pidx[rows])
    col = {int(j): c for c, j in enumerate(gallery)}
    sketches = ink_maps(data.sketch_images(size, line_width)[rows], blur)
    photos = edge_maps(data.photo_images(size)[gallery], blur)
    ranks = true_match_rank(pairwise_distances(sketches, photos), np.array([col[int(j)] for j in pidx[rows]]))
    out = data.sketches.iloc[rows].reset_index(drop=True)
    out["rank"] = ranks
    out.attrs["gallery_size"] = len(gallery)
    return out


STAT_NAMES = ("strokes", "points", "points_per_stroke", "length", "stroke_length", "extent", "gap")


def stroke_statistics(sketches) -> pd.DataFrame:
    """``strokes.sketch_stats`` of each sketch: one row per sketch, columns ``STAT_NAMES``."""
    from sbir_core.strokes import sketch_stats

    return pd.DataFrame([sketch_stats(s) for s in sketches], columns=list(STAT_NAMES))


def compare_statistics(ours: pd.DataFrame, real: pd.DataFrame) -> pd.DataFrame:
    """Per statistic: medians, interquartile ranges and the two-sample Kolmogorov-Smirnov distance
    (0 = same distribution, 1 = disjoint). One row per statistic."""
    from scipy.stats import ks_2samp

    rows = []
    for name in STAT_NAMES:
        a, b = ours[name].to_numpy(), real[name].to_numpy()
        rows.append({"statistic": name, "median_world": np.median(a), "median_real": np.median(b),
                     "iqr_world": np.subtract(*np.percentile(a, [75, 25])),
                     "iqr_real": np.subtract(*np.percentile(b, [75, 25])),
                     "ks": float(ks_2samp(a, b).statistic)})
    return pd.DataFrame(rows).set_index("statistic")
