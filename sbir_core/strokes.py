"""The canonical sketch: strokes as an (N, 3) array, and everything drawn from it.

A sketch is a float array of shape (N, 3): x, y on a 256 x 256 canvas (y grows downwards) and a
pen flag that is 1 on the last point of each stroke, as in the QMUL ``*_Coordinate`` files
(METHODS.md §0.1). QuickDraw ndjson drawings and sketch-rnn stroke-3 arrays convert to it.
One rasteriser turns it into an image of any size and line width, black ink on white.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from sbir_core.errors import SBIRError

if TYPE_CHECKING:
    import pandas as pd

CANVAS = 256.0
_SUPERSAMPLE = 4


MAX_COORD = 1e9  # no drawing (canvas 256, scans of a few thousand pixels) comes near; 1e308 overflows


class StrokeError(SBIRError, ValueError):
    """A stroke array that is not a valid canonical sketch."""


def check_strokes(strokes) -> np.ndarray:
    """Validate a sketch and return it as a float64 (N, 3) copy whose last pen flag is 1.

    Raises StrokeError naming the problem: wrong shape, no points, NaN or infinite values,
    or pen flags other than 0 and 1.
    """
    try:
        arr = np.array(strokes, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise StrokeError(f"strokes must be numeric, got {type(strokes).__name__}: {err}") from err
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise StrokeError(f"strokes must have shape (N, 3) = (x, y, pen), got {arr.shape}")
    if len(arr) == 0:
        raise StrokeError("strokes must hold at least one point, got an empty array")
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise StrokeError(f"strokes hold NaN or infinite values (first at point {bad})")
    if np.abs(arr[:, :2]).max() > MAX_COORD:
        bad = int(np.argwhere(np.abs(arr[:, :2]) > MAX_COORD)[0, 0])
        raise StrokeError(
            f"coordinates beyond +-{MAX_COORD:g} (first at point {bad}): not a drawing; "
            "larger values overflow when the sketch is scaled or rendered"
        )
    pen = arr[:, 2]
    if not np.isin(pen, (0.0, 1.0)).all():
        raise StrokeError(f"pen flags must be 0 or 1, got {sorted(set(pen.tolist()) - {0.0, 1.0})[:5]}")
    arr[-1, 2] = 1.0
    return arr


def split_strokes(strokes) -> list[np.ndarray]:
    """The sketch as a list of strokes, each a (k, 2) float64 array of points."""
    arr = check_strokes(strokes)
    ends = np.flatnonzero(arr[:, 2] == 1) + 1
    starts = np.concatenate([[0], ends[:-1]])
    return [arr[s:e, :2] for s, e in zip(starts, ends)]


def join_strokes(parts: Sequence) -> np.ndarray:
    """Join a list of (k, 2) point arrays into one canonical (N, 3) sketch."""
    rows = []
    for i, part in enumerate(parts):
        pts = np.asarray(part, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
            raise StrokeError(f"stroke {i} must be a non-empty (k, 2) array, got shape {pts.shape}")
        pen = np.zeros((len(pts), 1))
        pen[-1] = 1.0
        rows.append(np.hstack([pts, pen]))
    if not rows:
        raise StrokeError("a sketch needs at least one stroke")
    return check_strokes(np.vstack(rows))


def n_strokes(strokes) -> int:
    """Number of strokes (pen flags equal to 1)."""
    return int(check_strokes(strokes)[:, 2].sum())


def normalise(strokes, canvas: float = CANVAS, margin: float = 0.1) -> np.ndarray:
    """Scale and centre a sketch to fill the canvas, keeping its aspect ratio.

    The longer side of the bounding box spans ``(1 - 2 * margin) * canvas``. A sketch with zero
    extent (one point, or all points equal) is moved to the centre without scaling.
    """
    arr = check_strokes(strokes)
    lo, hi = arr[:, :2].min(0), arr[:, :2].max(0)
    extent = float((hi - lo).max())
    scale = (1 - 2 * margin) * canvas / extent if extent > 0 else 1.0
    arr[:, :2] = (arr[:, :2] - (lo + hi) / 2) * scale + canvas / 2
    return arr


def from_quickdraw(drawing, canvas: float = CANVAS, margin: float = 0.1) -> np.ndarray:
    """Convert a QuickDraw ndjson ``drawing`` (list of ``[[x...], [y...](, [t...])]``) to (N, 3).

    Raw QuickDraw coordinates have each drawing's own extent, so the result is normalised to the
    canvas (see ``normalise``); the simplified files already span 0..255 and come out the same way.
    """
    if not isinstance(drawing, (list, tuple)) or not drawing:
        raise StrokeError("a QuickDraw drawing must be a non-empty list of strokes")
    parts = []
    for i, stroke in enumerate(drawing):
        if not isinstance(stroke, (list, tuple)) or len(stroke) < 2:
            raise StrokeError(f"QuickDraw stroke {i} must be [[x...], [y...]], got {type(stroke).__name__}")
        try:  # flat lists of numbers only: nested lists would stack into a different drawing
            xs, ys = np.asarray(stroke[0], dtype=np.float64), np.asarray(stroke[1], dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as err:
            raise StrokeError(f"QuickDraw stroke {i}: coordinates must be numbers ({err})") from None
        if xs.ndim != 1 or ys.ndim != 1:
            raise StrokeError(f"QuickDraw stroke {i}: coordinates must be flat lists of numbers")
        if len(xs) != len(ys) or len(xs) == 0:
            raise StrokeError(f"QuickDraw stroke {i} has {len(xs)} x and {len(ys)} y values")
        parts.append(np.column_stack([xs, ys]))
    return normalise(join_strokes(parts), canvas, margin)


def from_stroke3(stroke3, canvas: float = CANVAS, margin: float = 0.1) -> np.ndarray:
    """Convert a sketch-rnn stroke-3 array (dx, dy, pen_lift) to (N, 3), normalised to the canvas.

    In stroke-3 each row is an offset from the previous point and ``pen_lift = 1`` marks the
    last point of a stroke: the same pen convention as ours once the offsets are summed.
    """
    arr = np.asarray(stroke3, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise StrokeError(f"stroke-3 must have shape (N, 3) = (dx, dy, pen_lift), got {arr.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes inf, refused by check_strokes
        absolute = np.column_stack([np.cumsum(arr[:, :2], axis=0), arr[:, 2]])
    return normalise(absolute, canvas, margin)


def to_stroke3(strokes) -> np.ndarray:
    """The sketch as stroke-3 offsets; the first row is the offset from the origin."""
    arr = check_strokes(strokes)
    out = arr.copy()
    out[1:, :2] = np.diff(arr[:, :2], axis=0)
    return out


def truncate(strokes, fraction: float) -> np.ndarray:
    """The first ``fraction`` of the strokes (at least one), as in partial-sketch studies.

    ``fraction`` in (0, 1]; the number kept is ``ceil(fraction * n_strokes)``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    parts = split_strokes(strokes)
    keep = max(1, int(np.ceil(fraction * len(parts) - 1e-9)))
    return join_strokes(parts[:keep])


def stroke_boxes(strokes) -> np.ndarray:
    """Per-stroke bounding boxes, (n_strokes, 4) float64: x_min, y_min, x_max, y_max (canvas units)."""
    return np.array([[*p.min(0), *p.max(0)] for p in split_strokes(strokes)])


def sketch_stats(strokes) -> dict[str, float]:
    """Summary statistics of one sketch, in canvas units.

    strokes, points, points_per_stroke (mean), length (total ink path), stroke_length (mean),
    extent (longer side of the bounding box) and gap (mean pen-up jump between consecutive
    strokes; 0 for one stroke).
    """
    parts = split_strokes(strokes)
    lengths = [float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) for p in parts]
    gaps = [float(np.linalg.norm(b[0] - a[-1])) for a, b in zip(parts[:-1], parts[1:])]
    pts = np.vstack(parts)
    return {
        "strokes": float(len(parts)),
        "points": float(len(pts)),
        "points_per_stroke": float(len(pts) / len(parts)),
        "length": float(sum(lengths)),
        "stroke_length": float(np.mean(lengths)),
        "extent": float((pts.max(0) - pts.min(0)).max()),
        "gap": float(np.mean(gaps)) if gaps else 0.0,
    }


STAT_NAMES = ("strokes", "points", "points_per_stroke", "length", "stroke_length", "extent", "gap")


def stats_frame(sketches) -> pd.DataFrame:
    """``sketch_stats`` of each sketch: one row per sketch, columns ``STAT_NAMES``."""
    import pandas as pd

    return pd.DataFrame([sketch_stats(s) for s in sketches], columns=list(STAT_NAMES))


def compare_stats(ours, real) -> pd.DataFrame:
    """Per statistic of two ``stats_frame`` tables: medians, interquartile ranges and the two-sample
    Kolmogorov-Smirnov distance (0 = same distribution, 1 = disjoint). One row per statistic."""
    import pandas as pd
    from scipy.stats import ks_2samp

    rows = []
    for name in STAT_NAMES:
        a, b = ours[name].to_numpy(), real[name].to_numpy()
        rows.append(
            {
                "statistic": name,
                "median_world": np.median(a),
                "median_real": np.median(b),
                "iqr_world": np.subtract(*np.percentile(a, [75, 25])),
                "iqr_real": np.subtract(*np.percentile(b, [75, 25])),
                "ks": float(ks_2samp(a, b).statistic),
            }
        )
    return pd.DataFrame(rows).set_index("statistic")


def rasterise(strokes, size: int = 64, line_width: float = 1.5, canvas: float = CANVAS) -> np.ndarray:
    """Render a sketch as a (size, size) float32 image in [0, 1]: black ink (0) on white (1).

    Args:
        strokes: (N, 3) canonical sketch on a ``canvas``-sized square.
        size: output side in pixels.
        line_width: ink width in output pixels.
    Anti-aliased by drawing at 4x and averaging 4 x 4 blocks. Points outside the canvas are
    clipped by the drawing; one-point strokes are drawn as dots.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if line_width <= 0:
        raise ValueError(f"line_width must be positive, got {line_width}")
    big = size * _SUPERSAMPLE
    scale = big / canvas
    width = max(1, int(round(line_width * _SUPERSAMPLE)))
    img = Image.new("L", (big, big), 255)
    draw = ImageDraw.Draw(img)
    for part in split_strokes(strokes):
        pts = part * scale
        if len(pts) == 1 or np.all(pts == pts[0]):
            x, y = pts[0]
            r = width / 2
            draw.ellipse([x - r, y - r, x + r, y + r], fill=0)
        else:
            draw.line([tuple(p) for p in pts], fill=0, width=width, joint="curve")
    small = img.reduce(_SUPERSAMPLE)
    return np.asarray(small, dtype=np.float32) / 255.0


def rasterise_many(sketches: Sequence, size: int = 64, line_width: float = 1.5) -> np.ndarray:
    """Rasterise a list of sketches into one (B, size, size) float32 array."""
    out = np.empty((len(sketches), size, size), dtype=np.float32)
    for i, s in enumerate(sketches):
        out[i] = rasterise(s, size, line_width)
    return out
