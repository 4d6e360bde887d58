"""Simulated drawers: a persistent style vector and the act of tracing an object as strokes.

A drawer's style is a latent vector z in R^11 (one coordinate per ``STYLE_DIMS``); each
coordinate maps through a logistic to an interpretable physical range (``style_params``).
Seen drawers have z ~ N(0, spread^2 I); unseen drawers z ~ N(style_gap * u + detail_gap * v,
spread^2 I). u is a fixed unit direction over the dimensions of *how* a person draws (``HOW``:
line weight, tremor, simplification, over-tracing, gaps, distortion, placement, order) and is
zero on *how much* they draw (detail, size); v points towards less detail. So ``style_gap`` is
the distance between the two distributions' means along how people draw, ``detail_gap`` along
how much they draw, and both at 0 give one distribution for everyone.
"""

from __future__ import annotations

import numpy as np

from sbir_core.data.world.objects import Part
from sbir_core.strokes import CANVAS

# name, physical value at z = -inf and at z = +inf (logistic in between), meaning
STYLE_DIMS: tuple[tuple[str, float, float, str], ...] = (
    ("width", 0.0, 1.0, "heaviness: chance of a parallel second pass beside a stroke, and its distance"),
    ("tremor_amp", 0.0, 8.0, "tremor amplitude, canvas pixels"),
    ("tremor_freq", 0.5, 6.0, "tremor waves per 100 pixels of stroke"),
    ("simplify", 0.0, 1.0, "simplification: fewer points, cut corners"),
    ("overtrace", 0.0, 0.6, "chance a stroke is traced again, and how far from the first pass"),
    ("gaps", 0.0, 0.5, "chance a stroke is broken or left short"),
    ("distortion", -0.35, 0.35, "the drawer's habit of proportion: log aspect bias (> 0 wider) and shear"),
    ("detail", 0.0, 1.0, "chance of drawing level-2 details (level 1 at 0.75 + detail / 4)"),
    ("size", 0.7, 0.95, "drawing size as a fraction of the canvas"),
    ("placement", 0.0, 15.0, "offset of the drawing from the centre, pixels"),
    ("order", 0.0, 2.0, "disorder of the coarse-to-fine drawing order"),
)
STYLE_NAMES = tuple(d[0] for d in STYLE_DIMS)
N_STYLE = len(STYLE_DIMS)
# the dimensions of *how* a person draws; "detail" and "size" (how much, how big) are not among them
CONTENT_DIMS = ("detail", "size")
HOW = np.array([name not in CONTENT_DIMS for name in STYLE_NAMES])
DETAIL = STYLE_NAMES.index("detail")


# how strongly ``style_gap`` moves each dimension of how people draw (before normalising): most on
# the persistent habits that change a sketch's look but not what it shows (proportion habit, line
# weight, over-tracing, tremor), less on what also loses content (broken strokes, simplification)
GAP_WEIGHTS = {
    "width": 1.0,
    "tremor_amp": 0.7,
    "tremor_freq": 0.3,
    "simplify": 0.3,
    "overtrace": 1.0,
    "gaps": 0.3,
    "distortion": 1.5,
    "placement": 0.3,
    "order": 0.3,
}


def gap_direction(seed: int = 0) -> np.ndarray:
    """The fixed unit vector u (N_STYLE,) of ``style_gap``: ``GAP_WEIGHTS`` on the ``HOW`` dimensions,
    towards the messier hand (heavier, shakier, simpler, more over-traced, broken, distorted, off-centre,
    out of order), exactly zero on detail and size. It does not depend on the world's seed (``seed`` is
    accepted for callers that pass it), so a finding about the gap is not one direction's accident."""
    u = np.array([GAP_WEIGHTS.get(name, 0.0) for name in STYLE_NAMES])
    return u / np.linalg.norm(u)


def detail_direction() -> np.ndarray:
    """The unit vector v (N_STYLE,) of ``detail_gap``: towards fewer level-1 and level-2 strokes."""
    v = np.zeros(N_STYLE)
    v[DETAIL] = -1.0
    return v


def sample_styles(n: int, rng: np.random.Generator, spread: float, shift: np.ndarray | None = None) -> np.ndarray:
    """(n, N_STYLE) latent style vectors ~ N(shift, spread^2 I)."""
    z = rng.normal(scale=spread, size=(n, N_STYLE))
    return z if shift is None else z + shift


def style_params(z) -> dict[str, np.ndarray]:
    """Physical style parameters from latent vectors (..., N_STYLE) -> name -> (...) array."""
    z = np.asarray(z, dtype=np.float64)
    s = 1.0 / (1.0 + np.exp(-z))
    return {name: lo + (hi - lo) * s[..., i] for i, (name, lo, hi, _) in enumerate(STYLE_DIMS)}


def _resample(pts: np.ndarray, spacing: float) -> np.ndarray:
    """Points every ``spacing`` pixels along the polyline, keeping its corners' ends."""
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1]
    if total < 1e-9:
        return pts[:1]
    n = max(2, int(np.ceil(total / spacing)) + 1)
    t = np.linspace(0, total, n)
    return np.column_stack([np.interp(t, cum, pts[:, 0]), np.interp(t, cum, pts[:, 1])])


def _smooth(pts: np.ndarray, amount: float) -> np.ndarray:
    """Cut corners: one Laplacian pass weighted by ``amount`` in [0, 1], ends fixed."""
    if len(pts) < 3 or amount <= 0:
        return pts
    out = pts.copy()
    out[1:-1] = (1 - amount / 2) * pts[1:-1] + amount / 4 * (pts[:-2] + pts[2:])
    return out


def _tremor(pts: np.ndarray, amp: float, freq: float, rng: np.random.Generator) -> np.ndarray:
    """Perpendicular wobble: two sinusoids of random phase along the arc length."""
    if len(pts) < 2 or amp <= 0:
        return pts
    d = np.gradient(pts, axis=0)
    norm = np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    normal = np.column_stack([-d[:, 1], d[:, 0]]) / norm
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    w = 2 * np.pi * freq / 100.0
    ph = rng.uniform(0, 2 * np.pi, 2)
    off = amp * (0.7 * np.sin(w * arc + ph[0]) + 0.3 * np.sin(2.3 * w * arc + ph[1]))
    off += amp * 0.3 * rng.normal(size=len(pts))
    return pts + off[:, None] * normal


def _warp(points: np.ndarray, bias: float, rng: np.random.Generator, noise: float = 0.04) -> np.ndarray:
    """The drawer's proportion habit on object-space points: a persistent log-aspect ``bias`` (wider
    when positive) with a shear of half of it, plus a little sketch-to-sketch ``noise``."""
    a = bias + rng.normal(scale=noise)
    x, y = points[:, 0] * np.exp(a / 2), points[:, 1] * np.exp(-a / 2)
    return np.column_stack([x + 0.5 * bias * y, y])


def draw(
    parts: list[Part], z: np.ndarray, rng: np.random.Generator, spacing: float = 6.0, base_tremor: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """One drawer (latent style ``z``) draws an object: canonical strokes (N, 3) and levels (S,) int8.

    ``spacing`` is the point spacing in canvas pixels before simplification; ``base_tremor`` is the
    tremor every hand has (pixels). The result is clipped to the canvas and always non-empty.
    """
    p = {k: float(v) for k, v in style_params(z).items()}
    keep1 = 0.75 + 0.25 * p["detail"]
    chosen = [
        q
        for q in parts
        if q.level == 0 or (q.level == 1 and rng.random() < keep1) or (q.level == 2 and rng.random() < p["detail"])
    ]
    # drawing order: coarse to fine, shuffled by the drawer's disorder
    # within a level any order (0.9 < 1 keeps levels apart), plus the drawer's own disorder
    keys = (
        np.array([q.level for q in chosen], dtype=float)
        + 0.9 * rng.random(len(chosen))
        + p["order"] * rng.normal(size=len(chosen))
    )
    chosen = [chosen[i] for i in np.argsort(keys, kind="stable")]

    all_pts = np.vstack([q.points for q in chosen])
    warped = _warp(all_pts, p["distortion"], rng)
    lo, hi = warped.min(0), warped.max(0)
    extent = max(float((hi - lo).max()), 1e-6)
    scale = p["size"] * CANVAS / extent
    angle = rng.normal(scale=0.04)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = rng.normal(size=2)
    shift = p["placement"] * shift / (np.linalg.norm(shift) + 1e-9) * rng.uniform(0.5, 1.0)
    canvas_pts = ((warped - (lo + hi) / 2) * scale) @ rot.T + CANVAS / 2 + shift

    spacing_px = spacing * (1 + 2.0 * p["simplify"])
    strokes, levels = [], []
    start = 0
    for q in chosen:
        pts = canvas_pts[start : start + len(q.points)]
        start += len(q.points)
        if len(pts) > 3 and np.allclose(pts[0], pts[-1]):  # a closed outline starts anywhere
            k = int(rng.integers(len(pts) - 1))
            pts = np.vstack([pts[k:-1], pts[: k + 1]])
        if rng.random() < 0.5:  # people draw strokes either way round
            pts = pts[::-1]
        pts = _smooth(_resample(pts, spacing_px), p["simplify"])
        pieces = [pts]
        if len(pts) > 4 and rng.random() < p["gaps"]:
            if rng.random() < 0.5:  # a break in the middle
                cut = int(rng.integers(2, len(pts) - 2))
                pieces = [pts[:cut], pts[cut + 1 :]]
            else:  # a short stroke that stops before the end
                pieces = [pts[: max(2, int(len(pts) * rng.uniform(0.6, 0.9)))]]
        for piece in pieces:
            drawn = _tremor(piece, base_tremor + p["tremor_amp"], p["tremor_freq"], rng)
            strokes.append(drawn)
            levels.append(q.level)
            if rng.random() < p["overtrace"]:
                again = _tremor(
                    piece + rng.normal(scale=1.5 + 6 * p["overtrace"], size=2),
                    base_tremor + p["tremor_amp"],
                    p["tremor_freq"],
                    rng,
                )
                strokes.append(again[::-1] if rng.random() < 0.5 else again)
                levels.append(q.level)
            if rng.random() < p["width"]:
                angle = rng.uniform(0, 2 * np.pi)
                offset = (1.5 + 5.0 * p["width"]) * np.array([np.cos(angle), np.sin(angle)])
                strokes.append(drawn + offset)
                levels.append(q.level)
    lengths = np.array([len(s) for s in strokes])
    xy = np.clip(np.vstack(strokes), 0.0, CANVAS - 1e-3)
    pen = np.zeros(len(xy))
    pen[np.cumsum(lengths) - 1] = 1.0
    return np.column_stack([xy, pen]), np.asarray(levels, dtype=np.int8)
