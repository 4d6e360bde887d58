"""Photos and artworks of an object: the same geometry rendered in several media.

An instance's appearance (palette, material, texture, light, background, pose jitter) is drawn
once from its own random stream, so every medium shows the same object in the same pose and
near-twins share their appearance. Rendering is on a 2x supersampled canvas, then averaged down.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from sbir_core.data.world.objects import Part

MEDIA = ("photo", "pen_ink", "watercolour", "oil", "graphite", "vector", "comic", "shaded3d")
MATERIALS = ("matte", "glossy", "fabric", "wood")


@dataclass
class Appearance:
    """Nuisance factors of one instance's photos (nothing a sketch can show)."""

    palette: np.ndarray  # (4, 3) float in [0, 1]: main, secondary, dark, light
    background: np.ndarray  # (2, 3) float: gradient ends
    material: int  # index into MATERIALS
    light: float  # light direction, radians
    angle: float  # pose jitter: rotation, radians
    scale: float  # pose jitter: object size as a fraction of the frame
    shift: np.ndarray  # pose jitter: (2,) offset as a fraction of the frame
    seed: int  # texture noise seed


def sample_appearance(rng: np.random.Generator, pose_jitter: float = 1.0) -> Appearance:
    """Draw an instance's appearance; ``pose_jitter`` scales rotation and shift (0: none)."""
    hue = rng.random()
    sat = rng.uniform(0.35, 0.85)
    val = rng.uniform(0.45, 0.9)
    main = colorsys.hsv_to_rgb(hue, sat, val)
    second = colorsys.hsv_to_rgb((hue + rng.choice([0.08, 0.5, -0.08])) % 1, sat * 0.8, min(1, val * 1.1))
    dark = colorsys.hsv_to_rgb(hue, sat * 0.5, val * 0.3)
    light = colorsys.hsv_to_rgb(rng.random(), 0.1, 0.95)
    bh = rng.random()
    bg = [colorsys.hsv_to_rgb(bh, rng.uniform(0, 0.3), rng.uniform(0.6, 0.95)) for _ in range(2)]
    return Appearance(
        np.array([main, second, dark, light]),
        np.array(bg),
        int(rng.integers(len(MATERIALS))),
        float(rng.uniform(0, 2 * np.pi)),
        float(rng.normal(scale=0.06 * pose_jitter)),
        float(rng.uniform(0.72, 0.9)),
        rng.normal(scale=0.04 * pose_jitter, size=2),
        int(rng.integers(2**31)),
    )


def _layers(parts: list[Part], app: Appearance, S: int):
    """Rasterise parts at S x S: role map (S, S) int (-1 background), line map (S, S) float (1 ink)."""
    pts = np.vstack([p.points for p in parts])
    lo, hi = pts.min(0), pts.max(0)
    c, ext = (lo + hi) / 2, max(float((hi - lo).max()), 1e-6)
    ca, sa = np.cos(app.angle), np.sin(app.angle)
    rot = np.array([[ca, -sa], [sa, ca]])

    def to_px(q):
        return ((q - c) / ext * app.scale) @ rot.T * S + S / 2 + app.shift * S

    roles = Image.new("L", (S, S), 255)
    lines = Image.new("L", (S, S), 0)
    dr, dl = ImageDraw.Draw(roles), ImageDraw.Draw(lines)
    lw = max(1, S // 96)
    for p in parts:
        q = [tuple(v) for v in to_px(p.points)]
        if p.fill is not None and len(q) > 2:
            dr.polygon(q, fill=p.fill)
        dl.line(q, fill=255, width=lw + (1 if p.level == 0 else 0), joint="curve")
    role = np.asarray(roles).astype(np.int16)
    role[role == 255] = -1
    return role, np.asarray(lines, dtype=np.float32) / 255.0


def _noise(rng: np.random.Generator, S: int, sigma: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.normal(size=(S, S)).astype(np.float32), sigma)
    return n / (n.std() + 1e-6)


def render(parts: list[Part], app: Appearance, media, size: int = 64) -> np.ndarray:
    """The object in each medium: (len(media), size, size, 3) uint8."""
    bad = [m for m in media if m not in MEDIA]
    if bad:
        raise ValueError(f"unknown media {bad}; known: {', '.join(MEDIA)}")
    if size < 4:
        raise ValueError(f"size must be at least 4 pixels, got {size}")
    S = 2 * size
    role, lines = _layers(parts, app, S)
    mask = (role >= 0).astype(np.float32)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    shade = 0.5 + 0.5 * ((xx - 0.5) * np.cos(app.light) + (yy - 0.5) * np.sin(app.light)) * 2
    shade = np.clip(shade, 0, 1)  # 1 = lit
    base = app.palette[np.clip(role, 0, 3)]
    bgrad = app.background[0][None, None] * (1 - yy[..., None]) + app.background[1][None, None] * yy[..., None]
    out = []
    for medium in media:
        rng = np.random.default_rng([app.seed, MEDIA.index(medium)])
        m3 = mask[..., None]
        if medium == "photo":
            tex = _noise(rng, S, 1.0) * 0.04
            if MATERIALS[app.material] == "fabric":
                tex += 0.06 * np.sin((xx + yy) * S * 1.3)
            elif MATERIALS[app.material] == "wood":
                tex += 0.08 * np.sin(yy * S * 0.6 + 3 * _noise(rng, S, 6.0))
            obj = base * (0.55 + 0.6 * shade)[..., None] + tex[..., None]
            if MATERIALS[app.material] == "glossy":
                spot = np.exp(
                    -((xx - 0.5 + 0.2 * np.cos(app.light)) ** 2 + (yy - 0.5 + 0.2 * np.sin(app.light)) ** 2) / 0.01
                )
                obj = obj + 0.5 * spot[..., None]
            shadow = ndimage.gaussian_filter(np.roll(mask, (S // 20, S // 25), (0, 1)), S / 30)
            bg = bgrad * (1 - 0.35 * shadow[..., None]) + (_noise(rng, S, 2.0) * 0.02)[..., None]
            edge = ndimage.gaussian_filter(lines, 0.7)[..., None]
            img = bg * (1 - m3) + obj * m3
            img = img * (1 - 0.35 * edge)
        elif medium == "pen_ink":
            paper = np.array([0.98, 0.96, 0.9])
            hatch = ((np.floor((xx + yy) * S / 3) % 2) == 0) & (shade < 0.45) & (mask > 0)
            ink = np.clip(lines + 0.7 * hatch, 0, 1)
            img = paper * (1 - ink[..., None]) + np.array([0.05, 0.05, 0.08]) * ink[..., None]
        elif medium == "watercolour":
            paper = 0.95 + 0.03 * _noise(rng, S, 1.0)[..., None]
            wet = ndimage.gaussian_filter(mask + 0.4 * _noise(rng, S, 4.0) * mask, S / 60)
            wet = np.clip(wet, 0, 1)
            rim = np.clip(wet - ndimage.gaussian_filter(wet, S / 40), 0, 1)
            colour = 0.55 * ndimage.gaussian_filter(base, (S / 50, S / 50, 0)) + 0.45
            img = paper * (1 - wet[..., None]) + colour * wet[..., None] * (1 - 0.6 * rim[..., None])
            img = img * (1 - 0.25 * lines[..., None])
        elif medium == "oil":
            stroke_n = ndimage.gaussian_filter(rng.normal(size=(S, S)).astype(np.float32), (0.5, 4.0))
            stroke_n /= stroke_n.std() + 1e-6
            sat = np.clip((base - base.mean(-1, keepdims=True)) * 1.6 + base.mean(-1, keepdims=True), 0, 1)
            bgc = app.background[::-1] * 0.6
            bg = bgc[0] * (1 - yy[..., None]) + bgc[1] * yy[..., None]
            img = bg * (1 - m3) + sat * (0.6 + 0.5 * shade)[..., None] * m3
            img = ndimage.gaussian_filter(img, (1.2, 1.2, 0)) + 0.07 * stroke_n[..., None]
        elif medium == "graphite":
            grain = _noise(rng, S, 0.6)
            tone = 1 - mask * (0.25 + 0.35 * (1 - shade)) * (0.8 + 0.2 * grain)
            tone = tone - 0.75 * ndimage.gaussian_filter(lines, 0.6) * (0.8 + 0.2 * grain)
            img = np.repeat(np.clip(tone, 0, 1)[..., None], 3, -1) * np.array([0.97, 0.97, 0.95])
        elif medium == "vector":
            thick = ndimage.binary_dilation(lines > 0.5, iterations=1)
            img = app.background[0] * (1 - m3) + base * m3
            img = img * (1 - thick[..., None]) + np.array([0.15, 0.15, 0.2]) * thick[..., None]
        elif medium == "comic":
            levels = np.floor(base * 3.999) / 3
            dots = (np.sin(xx * S * 1.6) * np.sin(yy * S * 1.6)) > 0.3
            shadow = (shade < 0.5) & dots & (mask > 0)
            thick = ndimage.binary_dilation(lines > 0.5, iterations=2)
            bgc = np.array([1.0, 0.95, 0.6]) * (1 - 0.15 * (dots & (mask == 0)))[..., None]
            img = bgc * (1 - m3) + levels * m3 * (1 - 0.4 * shadow[..., None])
            img = img * (1 - thick[..., None])
        elif medium == "shaded3d":
            depth = ndimage.distance_transform_edt(mask)
            bulge = np.sqrt(np.clip(depth / (depth.max() + 1e-6), 0, 1))
            occl = ndimage.gaussian_filter(mask, S / 40)
            light = 0.35 + 0.45 * bulge + 0.3 * shade
            bg = np.array([0.8, 0.85, 0.9]) * (0.75 + 0.25 * yy[..., None])
            bg = bg * (1 - 0.4 * ndimage.gaussian_filter(np.roll(mask, S // 12, 0), S / 20)[..., None])
            img = bg * (1 - m3) + base * (light * (0.7 + 0.3 * occl))[..., None] * m3
        img = np.clip(img, 0, 1)
        small = img.reshape(size, 2, size, 2, 3).mean((1, 3))
        out.append((small * 255 + 0.5).astype(np.uint8))
    return np.stack(out)
