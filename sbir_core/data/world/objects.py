"""Parametric line-art objects: eight categories, each a function of fine-grained attributes.

An object is a list of ``Part``: a polyline in object space ([-1, 1]^2, y down), its detail
level (0 silhouette, 1 main parts, 2 details) and, for closed parts, a fill role that the photo
renderer colours (0 main, 1 secondary, 2 dark, 3 light). The same parts make the sketch (a drawer
traces them) and the photos (a renderer fills them), so a sketch and its photo share geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAIN, SECOND, DARK, LIGHT = 0, 1, 2, 3
LEVELS = (0, 1, 2)


@dataclass(frozen=True)
class Attr:
    """One fine-grained attribute: continuous in [lo, hi], or discrete in 0..n-1 (``names``)."""

    name: str
    lo: float = 0.0
    hi: float = 1.0
    names: tuple[str, ...] = ()

    @property
    def discrete(self) -> bool:
        return bool(self.names)

    def sample(self, rng: np.random.Generator) -> float:
        if self.discrete:
            return float(rng.integers(len(self.names)))
        return float(rng.uniform(self.lo, self.hi))

    def other(self, value: float, rng: np.random.Generator) -> float:
        """A clearly different value: another class, or at least a third of the range away."""
        if self.discrete:
            choices = [v for v in range(len(self.names)) if v != int(value)]
            return float(rng.choice(choices))
        span = self.hi - self.lo
        lo_room, hi_room = value - self.lo, self.hi - value
        if hi_room >= span / 3 and (lo_room < span / 3 or rng.random() < 0.5):
            return float(rng.uniform(value + span / 3, self.hi))
        return float(rng.uniform(self.lo, value - span / 3))


@dataclass
class Part:
    """One polyline of an object: (k, 2) float64 points, detail level, fill role or None."""

    points: np.ndarray
    level: int
    fill: int | None = None


# -- primitives (all return (k, 2) float64 arrays) ------------------------------------------------


def poly(*pts) -> np.ndarray:
    return np.asarray(pts, dtype=np.float64)


def closed(pts) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64)
    return np.vstack([pts, pts[:1]])


def rect(x0, y0, x1, y1) -> np.ndarray:
    return closed([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def ellipse(cx, cy, rx, ry, n=28, t0=0.0, t1=2 * np.pi) -> np.ndarray:
    t = np.linspace(t0, t1, n)
    return np.column_stack([cx + rx * np.cos(t), cy + ry * np.sin(t)])


def spline(ctrl, n=40, close=False) -> np.ndarray:
    """Catmull-Rom curve through control points (k, 2) -> (n, 2)."""
    p = np.asarray(ctrl, dtype=np.float64)
    if close:
        p = np.vstack([p[-1:], p, p[:2]])
    else:
        p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    segs = len(p) - 3
    t = np.linspace(0, segs, n, endpoint=True)
    i = np.minimum(t.astype(int), segs - 1)
    u = (t - i)[:, None]
    p0, p1, p2, p3 = p[i], p[i + 1], p[i + 2], p[i + 3]
    return 0.5 * (
        (2 * p1) + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * u**3
    )


def rounded_rect(x0, y0, x1, y1, r, n=6) -> np.ndarray:
    r = min(r, (x1 - x0) / 2, (y1 - y0) / 2)
    q = np.pi / 2
    return closed(
        np.vstack(
            [
                ellipse(x1 - r, y0 + r, r, r, n, -q, 0),
                ellipse(x1 - r, y1 - r, r, r, n, 0, q),
                ellipse(x0 + r, y1 - r, r, r, n, q, 2 * q),
                ellipse(x0 + r, y0 + r, r, r, n, 2 * q, 3 * q),
            ]
        )
    )


# -- categories -------------------------------------------------------------------------------


def _shoe(a) -> list[Part]:
    g, h, s = 0.55, a["heel_height"], a["sole"]
    top = g - h - s - 0.3 - 0.65 * a["shaft"]
    toe = int(a["toe"])
    tip_x = (0.92, 1.0, 0.9)[toe]
    tip_y = g - s - (0.07, 0.03, 0.1)[toe]
    toe_top = (0.62, 0.7, 0.66)[toe], g - s - (0.22, 0.15, 0.26)[toe]
    ctrl = [
        (-0.78, g - h - s),
        (-0.82 - 0.04 * a["shaft"], top),
        (-0.38 + 0.1 * a["shaft"], top + 0.06),
        (0.08, g - s - 0.35 - 0.15 * h),
        toe_top,
        (tip_x, tip_y),
    ]
    if toe == 2:
        ctrl.insert(-1, (tip_x - 0.02, tip_y - 0.12))
    upper = spline(ctrl + [(tip_x - 0.06, g - s)], 44)
    sole_top = spline([(tip_x - 0.06, g - s), (0.3, g - s), (-0.3, g - s - 0.6 * h), (-0.78, g - h - s)], 16)
    parts = [Part(closed(np.vstack([upper, sole_top[1:-1]])), 0, MAIN)]
    sole = np.vstack(
        [
            spline([(tip_x - 0.04, g - s + 0.01), (0.3, g), (-0.3, g - 0.6 * h), (-0.8, g - h)], 16),
            poly((-0.8, g - h - s)),
            sole_top[::-1][1:],
        ]
    )
    parts.append(Part(closed(sole), 1, DARK))
    if h > 0.04:
        heel = (
            poly((-0.8, g - h), (-0.8, g), (-0.56, g), (-0.5, g - h))
            if a["heel_kind"] < 0.5
            else poly((-0.79, g - h), (-0.74, g), (-0.69, g), (-0.55, g - h))
        )
        parts.append(Part(closed(heel), 1, DARK))
    collar = spline([(-0.8 - 0.04 * a["shaft"], top), (-0.55, top + 0.07), (-0.38 + 0.1 * a["shaft"], top + 0.06)], 10)
    parts.append(Part(collar, 1))
    n_laces = int(a["laces"])
    if n_laces:
        x0, y0 = -0.3 + 0.1 * a["shaft"], top + 0.1
        x1, y1 = 0.05, g - s - 0.33 - 0.15 * h
        for t in np.linspace(0.15, 0.9, n_laces):
            cx, cy = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            parts.append(Part(poly((cx - 0.09, cy - 0.06), (cx + 0.09, cy + 0.06)), 2))
    if a["toe_cap"] > 0.5:
        parts.append(
            Part(
                spline(
                    [
                        (toe_top[0] - 0.25, g - s),
                        (toe_top[0] - 0.15, toe_top[1] + 0.1),
                        (toe_top[0] + 0.05, toe_top[1] + 0.02),
                    ],
                    10,
                ),
                2,
            )
        )
    if a["strap"] > 0.5:
        sy = top + 0.25
        parts.append(Part(rounded_rect(-0.84, sy, -0.05, sy + 0.1, 0.04), 2, SECOND))
        parts.append(Part(rect(-0.2, sy - 0.01, -0.12, sy + 0.11), 2))
    parts.append(Part(spline([(-0.7, g - h - s - 0.06), (0.0, g - s - 0.07), (tip_x - 0.14, g - s - 0.06)], 12), 2))
    return parts


def _chair(a) -> list[Part]:
    w = 0.3 + 0.25 * a["seat_width"]
    t = a["seat_thick"]
    sy = 0.1
    bh = a["back_height"]
    top = sy - bh
    px = w - 0.06
    kind = int(a["back_top"])
    if kind == 0:
        back = poly((-px, sy), (-px, top), (px, top), (px, sy))
    elif kind == 1:
        back = np.vstack(
            [poly((-px, sy)), ellipse(0, top + px * 0.5, px, px * 0.5, 20, np.pi, 2 * np.pi), poly((px, sy))]
        )
    else:
        back = np.vstack(
            [
                poly((-px, sy), (-px, top + 0.08)),
                spline([(-px, top + 0.08), (0, top - 0.06), (px, top + 0.08)], 14),
                poly((px, sy)),
            ]
        )
    parts = []
    leg = int(a["leg_style"])
    fy = 0.92
    for side in (-1, 1):
        x_top = side * (w - 0.05)
        x_bot = x_top + side * (0.0, 0.12, -0.02)[leg]
        wt, wb = 0.05, (0.05, 0.05, 0.025)[leg]
        parts.append(
            Part(closed(poly((x_top - wt, sy + t), (x_top + wt, sy + t), (x_bot + wb, fy), (x_bot - wb, fy))), 1, DARK)
        )
    parts.append(Part(closed(back), 0, MAIN))
    parts.append(Part(rect(-w, sy, w, sy + t), 0, SECOND))
    n = int(a["slats"])
    if n:
        inner_top = top + (0.1 if kind == 0 else 0.2)
        for x in np.linspace(-px, px, n + 2)[1:-1]:
            parts.append(Part(poly((x, inner_top), (x, sy - 0.04)), 2))
    else:
        parts.append(Part(rect(-px + 0.08, top + 0.12 + 0.05 * kind, px - 0.08, sy - 0.08), 2, LIGHT))
    if a["arms"] > 0.5:
        ay = sy - 0.28
        for side in (-1, 1):
            parts.append(Part(poly((side * px, ay), (side * (w + 0.1), ay), (side * (w + 0.1), sy)), 1))
    if a["stretcher"] > 0.5:
        parts.append(Part(poly((-(w - 0.05) - 0.03 * leg, 0.62), ((w - 0.05) + 0.03 * leg, 0.62)), 2))
    if a["cushion"] > 0.5:
        parts.append(Part(spline([(-w + 0.02, sy), (-w / 2, sy - 0.07), (w / 2, sy - 0.07), (w - 0.02, sy)], 14), 2))
    return parts


def _mug(a) -> list[Part]:
    h = 0.7 + 0.5 * a["height"]
    wt = 0.5 + 0.1 * a["taper"]
    wb = 0.5 - 0.15 * a["taper"]
    y0, y1 = -h / 2 + 0.05, h / 2 + 0.05
    x_off = -0.15
    body = closed(poly((x_off - wt, y0), (x_off + wt, y0), (x_off + wb, y1), (x_off - wb, y1)))
    parts = []
    if a["saucer"] > 0.5:
        parts.append(Part(closed(ellipse(x_off, y1 + 0.02, wb + 0.35, 0.09, 26)), 1, SECOND))
    parts.append(Part(body, 0, MAIN))
    hs = 0.2 + 0.2 * a["handle_size"]
    hx = x_off + (wt + wb) / 2
    kind = int(a["handle"])
    if kind == 0:
        handle = ellipse(hx, 0.0, hs, hs * 1.1, 20, -np.pi / 2, np.pi / 2)
    elif kind == 1:
        handle = poly((hx, -hs), (hx + hs, -hs), (hx + hs, hs), (hx, hs))
    else:
        handle = spline([(hx, -hs), (hx + hs * 1.2, -hs * 0.8), (hx + hs * 0.4, 0.05), (hx, hs)], 18)
    parts.append(Part(handle, 1))
    if a["rim"] > 0.5:
        parts.append(Part(closed(ellipse(x_off, y0, wt, 0.07, 26)), 1, DARK))
    else:
        parts.append(Part(poly((x_off - wt, y0 + 0.07), (x_off + wt, y0 + 0.07)), 1))
    for k in range(int(a["bands"])):
        by = y0 + (0.25 + 0.15 * k) * h
        fr = (by - y0) / (y1 - y0)
        bw = wt + (wb - wt) * fr
        parts.append(Part(poly((x_off - bw, by), (x_off + bw, by)), 2))
    if a["steam"] > 0.5:
        for dx in (-0.12, 0.08):
            parts.append(
                Part(
                    spline(
                        [
                            (x_off + dx, y0 - 0.1),
                            (x_off + dx + 0.06, y0 - 0.2),
                            (x_off + dx - 0.04, y0 - 0.32),
                            (x_off + dx + 0.03, y0 - 0.42),
                        ],
                        12,
                    ),
                    2,
                )
            )
    return parts


def _lamp(a) -> list[Part]:
    sw = 0.4 + 0.3 * a["shade_width"]
    stem = 0.4 + 0.5 * a["stem_height"]
    by = 0.85
    sy1 = by - 0.1 - stem
    sh = 0.45
    sy0 = sy1 - sh
    kind = int(a["shade"])
    if kind == 0:
        shade = closed(poly((-sw * 0.5, sy0), (sw * 0.5, sy0), (sw, sy1), (-sw, sy1)))
    elif kind == 1:
        shade = rect(-sw * 0.8, sy0, sw * 0.8, sy1)
    else:
        shade = closed(np.vstack([ellipse(0, sy1, sw, sh, 22, np.pi, 2 * np.pi)]))
    parts = []
    bend = 0.25 * (a["neck_curve"] - 0.5)
    stem_line = spline([(0, by - 0.08), (bend, (by + sy1) / 2), (0, sy1)], 14)
    parts.append(Part(stem_line, 1))
    base = int(a["base"])
    if base == 0:
        parts.append(Part(closed(ellipse(0, by, 0.3, 0.08, 24)), 1, DARK))
    elif base == 1:
        parts.append(Part(rect(-0.28, by - 0.1, 0.28, by + 0.04), 1, DARK))
    else:
        for dx in (-0.3, 0.0, 0.3):
            parts.append(Part(poly((0, by - 0.08), (dx, by + 0.06)), 1))
    parts.append(Part(shade, 0, MAIN))
    if a["finial"] > 0.5:
        parts.append(Part(closed(ellipse(0, sy0 - 0.05, 0.04, 0.05, 12)), 2, DARK))
    if a["chain"] > 0.5:
        parts.append(Part(poly((sw * 0.35, sy1), (sw * 0.35, sy1 + 0.25)), 2))
        parts.append(Part(closed(ellipse(sw * 0.35, sy1 + 0.28, 0.025, 0.03, 8)), 2))
    if a["trim"] > 0.5:
        k = (1.0, 0.8, 1.0)[kind]
        parts.append(Part(poly((-sw * k + 0.02, sy1 - 0.07), (sw * k - 0.02, sy1 - 0.07)), 2))
    return parts


def _house(a) -> list[Part]:
    w = 0.55 + 0.3 * a["width"]
    stories = int(a["stories"]) + 1
    wall_top = 0.85 - 0.5 * stories - 0.05
    pitch = 0.2 + 0.45 * a["roof_pitch"]
    roof = int(a["roof"])
    parts = []
    if a["chimney"] > 0.5:
        cx = w * 0.5
        parts.append(Part(rect(cx - 0.08, wall_top - pitch * 0.9, cx + 0.08, wall_top - pitch * 0.2), 1, DARK))
    parts.append(Part(rect(-w, wall_top, w, 0.85), 0, MAIN))
    if roof == 0:
        parts.append(Part(closed(poly((-w - 0.1, wall_top), (0, wall_top - pitch), (w + 0.1, wall_top))), 0, SECOND))
    elif roof == 1:
        parts.append(Part(rect(-w - 0.06, wall_top - 0.1, w + 0.06, wall_top), 0, SECOND))
    else:
        parts.append(
            Part(
                closed(
                    poly(
                        (-w - 0.1, wall_top),
                        (-w * 0.4, wall_top - pitch),
                        (w * 0.4, wall_top - pitch),
                        (w + 0.1, wall_top),
                    )
                ),
                0,
                SECOND,
            )
        )
    dx = -w + 0.15 + (2 * w - 0.45) * a["door_x"]
    parts.append(Part(rect(dx, 0.5, dx + 0.22, 0.85), 1, DARK))
    n_win = int(a["windows"]) + 1
    for s in range(stories):
        y = 0.85 - 0.5 * (s + 1) + 0.1
        xs = np.linspace(-w + 0.12, w - 0.32, n_win)
        for x in xs:
            if s == 0 and x + 0.2 > dx - 0.02 and x < dx + 0.24:
                continue
            parts.append(Part(rect(x, y, x + 0.2, y + 0.2), 1, LIGHT))
            parts.append(Part(poly((x + 0.1, y), (x + 0.1, y + 0.2)), 2))
    if a["fence"] > 0.5:
        parts.append(Part(poly((-1.0, 0.72), (1.0, 0.72)), 2))
        for x in np.linspace(-0.95, 0.95, 8):
            parts.append(Part(poly((x, 0.62), (x, 0.9)), 2))
    parts.append(Part(closed(ellipse(dx + 0.17, 0.68, 0.02, 0.02, 8)), 2))
    return parts


def _car(a) -> list[Part]:
    L = 0.75 + 0.2 * a["length"]
    wr = 0.14 + 0.08 * a["wheel_size"]
    gy = 0.55
    body_top = gy - 0.35
    cab_h = 0.18 + 0.2 * a["cab_height"]
    roof = int(a["roof"])
    cab_back = (-L * 0.55, -L * 0.8, -L * 0.1)[roof]
    cab_front = L * 0.35 if roof != 2 else L * 0.3
    body = spline(
        [
            (-L, gy - wr * 0.3),
            (-L, body_top + 0.05),
            (-L * 0.9, body_top),
            (L * 0.85, body_top + 0.05),
            (L, body_top + 0.15),
            (L, gy - wr * 0.3),
        ],
        30,
    )
    parts = [Part(closed(np.vstack([body, poly((L - 0.05, gy), (-L + 0.05, gy))])), 0, MAIN)]
    cab = np.vstack(
        [
            poly((cab_back, body_top)),
            spline(
                [
                    (cab_back + 0.05, body_top - cab_h * 0.7),
                    (cab_back + 0.2, body_top - cab_h),
                    (cab_front - 0.15, body_top - cab_h),
                    (cab_front, body_top),
                ],
                16,
            ),
        ]
    )
    parts.append(Part(closed(cab), 0, MAIN))
    for x in (-L * 0.6, L * 0.62):
        parts.append(Part(closed(ellipse(x, gy, wr, wr, 22)), 1, DARK))
        parts.append(Part(closed(ellipse(x, gy, wr * 0.45, wr * 0.45, 12)), 2, LIGHT))
    win_top = body_top - cab_h * 0.8
    parts.append(
        Part(
            closed(
                poly(
                    (cab_back + 0.08, body_top - 0.03),
                    (cab_back + 0.16, win_top),
                    (cab_front - 0.16, win_top),
                    (cab_front - 0.05, body_top - 0.03),
                )
            ),
            1,
            LIGHT,
        )
    )
    for t in ((0.55,), (0.35, 0.7))[int(a["doors"])]:  # 2 doors: one pillar; 4 doors: two
        x = cab_back + (cab_front - cab_back) * t
        parts.append(Part(poly((x, win_top), (x, gy - wr - 0.02)), 2))
    if a["spoiler"] > 0.5:
        parts.append(Part(poly((-L - 0.02, body_top - 0.1), (-L + 0.2, body_top - 0.1), (-L + 0.2, body_top)), 2))
    if a["lights"] > 0.5:
        parts.append(Part(closed(ellipse(L - 0.07, body_top + 0.17, 0.05, 0.04, 10)), 2, LIGHT))
    else:
        parts.append(Part(rect(L - 0.16, body_top + 0.12, L - 0.02, body_top + 0.2), 2, LIGHT))
    return parts


def _bottle(a) -> list[Part]:
    bw = 0.22 + 0.18 * a["width"]
    bh = 0.7 + 0.5 * a["body_height"]
    nl = 0.15 + 0.35 * a["neck_length"]
    nw = 0.09
    by = 0.92
    body_top = by - bh
    sh = int(a["shoulder"])
    if sh == 0:
        shoulder = spline([(bw, body_top), (bw * 0.9, body_top - 0.15), (nw, body_top - 0.25)], 10)
    else:
        shoulder = poly((bw, body_top), (nw, body_top - 0.2))
    neck_top = body_top - 0.22 - nl
    right = np.vstack([poly((bw, by)), shoulder, poly((nw, neck_top))])
    left = right[::-1] * [-1, 1]
    parts = [Part(closed(np.vstack([right, left])), 0, MAIN)]
    cap = int(a["cap"])
    if cap == 0:
        parts.append(Part(rect(-nw - 0.02, neck_top - 0.12, nw + 0.02, neck_top), 1, DARK))
    elif cap == 1:
        parts.append(
            Part(
                closed(
                    poly(
                        (-nw + 0.01, neck_top),
                        (-nw - 0.01, neck_top - 0.14),
                        (nw + 0.01, neck_top - 0.14),
                        (nw - 0.01, neck_top),
                    )
                ),
                1,
                SECOND,
            )
        )
    else:
        parts.append(Part(poly((-nw - 0.03, neck_top + 0.03), (nw + 0.03, neck_top + 0.03)), 1))
    if a["label"] > 0.5:
        ly = body_top + bh * 0.3
        parts.append(Part(rect(-bw, ly, bw, ly + bh * 0.35), 1, LIGHT))
    if a["ridges"] > 0.5:
        for y in (by - 0.06, by - 0.12):
            parts.append(Part(poly((-bw, y), (bw, y)), 2))
    parts.append(Part(poly((bw * 0.55, body_top + 0.08), (bw * 0.55, body_top + bh * 0.25)), 2))
    return parts


def _bag(a) -> list[Part]:
    w = 0.55 + 0.3 * a["width"]
    h = 0.6 + 0.3 * a["height"]
    tw = w * (1 - 0.3 * a["taper"])
    y0, y1 = 0.85 - h, 0.85
    parts = []
    kind = int(a["handle"])
    if kind == 0:
        parts.append(
            Part(spline([(-tw * 0.6, y0), (-tw * 0.5, y0 - 0.4), (tw * 0.5, y0 - 0.4), (tw * 0.6, y0)], 20), 1)
        )
    elif kind == 1:
        for s in (-0.35, 0.35):
            parts.append(Part(ellipse(s * tw, y0, 0.17, 0.25, 14, np.pi, 2 * np.pi), 1))
    else:
        parts.append(Part(poly((-tw * 0.8, y0), (-0.1, y0 - 0.7), (0.1, y0 - 0.7), (tw * 0.8, y0)), 1))
    parts.append(Part(closed(poly((-tw, y0), (tw, y0), (w, y1), (-w, y1))), 0, MAIN))
    if a["flap"] > 0.5:
        fy = y0 + h * 0.45
        parts.append(
            Part(
                closed(
                    np.vstack(
                        [
                            poly((-tw, y0), (tw, y0), (tw + (w - tw) * 0.45, fy)),
                            spline([(tw * 0.9, fy), (0, fy + 0.08), (-tw * 0.9, fy)], 12),
                            poly((-tw - (w - tw) * 0.45, fy)),
                        ]
                    )
                ),
                1,
                SECOND,
            )
        )
    for k in range(int(a["pockets"])):
        px = -w * 0.7 + k * w * 0.8
        parts.append(Part(rect(px, y1 - 0.3, px + w * 0.55, y1 - 0.06), 2))
    if a["buckle"] > 0.5:
        parts.append(Part(rect(-0.07, y0 + h * 0.42, 0.07, y0 + h * 0.56), 2, DARK))
    parts.append(Part(poly((-w + 0.05, y1 - 0.03), (w - 0.05, y1 - 0.03)), 2))
    return parts


D = ("no", "yes")
CATEGORIES: dict[str, tuple] = {
    "shoe": (
        _shoe,
        (
            Attr("heel_height", 0.0, 0.32),
            Attr("shaft", 0.0, 1.0),
            Attr("toe", names=("round", "pointed", "square")),
            Attr("sole", 0.05, 0.15),
            Attr("laces", names=("0", "1", "2", "3", "4", "5")),
            Attr("strap", names=D),
            Attr("toe_cap", names=D),
            Attr("heel_kind", names=("block", "stiletto")),
        ),
    ),
    "chair": (
        _chair,
        (
            Attr("back_height", 0.45, 0.95),
            Attr("back_top", names=("square", "round", "arched")),
            Attr("slats", names=("panel", "1", "2", "3", "4")),
            Attr("arms", names=D),
            Attr("leg_style", names=("straight", "splayed", "tapered")),
            Attr("seat_width", 0.0, 1.0),
            Attr("seat_thick", 0.05, 0.16),
            Attr("stretcher", names=D),
            Attr("cushion", names=D),
        ),
    ),
    "mug": (
        _mug,
        (
            Attr("height", 0.0, 1.0),
            Attr("taper", 0.0, 1.0),
            Attr("handle", names=("round", "square", "curl")),
            Attr("handle_size", 0.0, 1.0),
            Attr("rim", names=D),
            Attr("bands", names=("0", "1", "2")),
            Attr("saucer", names=D),
            Attr("steam", names=D),
        ),
    ),
    "lamp": (
        _lamp,
        (
            Attr("shade", names=("cone", "drum", "dome")),
            Attr("shade_width", 0.0, 1.0),
            Attr("stem_height", 0.0, 1.0),
            Attr("base", names=("round", "square", "tripod")),
            Attr("neck_curve", 0.0, 1.0),
            Attr("finial", names=D),
            Attr("chain", names=D),
            Attr("trim", names=D),
        ),
    ),
    "house": (
        _house,
        (
            Attr("width", 0.0, 1.0),
            Attr("stories", names=("1", "2")),
            Attr("roof_pitch", 0.0, 1.0),
            Attr("roof", names=("gable", "flat", "hip")),
            Attr("door_x", 0.0, 1.0),
            Attr("windows", names=("1", "2", "3")),
            Attr("chimney", names=D),
            Attr("fence", names=D),
        ),
    ),
    "car": (
        _car,
        (
            Attr("length", 0.0, 1.0),
            Attr("wheel_size", 0.0, 1.0),
            Attr("cab_height", 0.0, 1.0),
            Attr("roof", names=("sedan", "hatch", "pickup")),
            Attr("doors", names=("2", "4")),
            Attr("spoiler", names=D),
            Attr("lights", names=("square", "round")),
        ),
    ),
    "bottle": (
        _bottle,
        (
            Attr("width", 0.0, 1.0),
            Attr("body_height", 0.0, 1.0),
            Attr("neck_length", 0.0, 1.0),
            Attr("shoulder", names=("round", "angular")),
            Attr("cap", names=("screw", "cork", "lip")),
            Attr("label", names=D),
            Attr("ridges", names=D),
        ),
    ),
    "bag": (
        _bag,
        (
            Attr("width", 0.0, 1.0),
            Attr("height", 0.0, 1.0),
            Attr("taper", 0.0, 1.0),
            Attr("handle", names=("arch", "double", "strap")),
            Attr("flap", names=D),
            Attr("pockets", names=("0", "1", "2")),
            Attr("buckle", names=D),
        ),
    ),
}
MAX_ATTRS = max(len(spec[1]) for spec in CATEGORIES.values())


def attributes(category: str) -> tuple[Attr, ...]:
    """The attribute specs of a category."""
    return CATEGORIES[category][1]


def sample_attributes(category: str, rng: np.random.Generator) -> np.ndarray:
    """One instance's attributes: (n_attrs,) float64 in the order of ``attributes(category)``."""
    return np.array([a.sample(rng) for a in attributes(category)])


def near_twin_attributes(
    category: str, values: np.ndarray, rng: np.random.Generator, which: str | None = None
) -> tuple[np.ndarray, str]:
    """A copy of ``values`` with exactly one attribute changed (``which``, or a random one)."""
    specs = attributes(category)
    names = [s.name for s in specs]
    if which is None:
        which = names[int(rng.integers(len(names)))]
    if which not in names:
        raise ValueError(f"{category} has no attribute {which!r}; known: {names}")
    i = names.index(which)
    twin = np.array(values, dtype=np.float64)
    twin[i] = specs[i].other(twin[i], rng)
    return twin, which


def build_parts(category: str, values) -> list[Part]:
    """The object's parts from its attribute values (n_attrs,)."""
    make, specs = CATEGORIES[category]
    return make({s.name: float(v) for s, v in zip(specs, values)})


def describe(category: str, values) -> dict[str, float | str]:
    """Attribute values by name, discrete ones as their class names."""
    return {
        s.name: (s.names[int(v)] if s.discrete else round(float(v), 3)) for s, v in zip(attributes(category), values)
    }
