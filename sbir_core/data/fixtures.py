"""A tiny data root in the official layout of every dataset the README lists, written on demand.

    python -m sbir_core.data fixtures --to DIR [--bare]

Nothing here copies real data: every photo and sketch is drawn from a seed (a random polygon per
object: the photo fills it in colour, each sketch traces it with a drawer's wobble), so the sets
carry a little signal for a smoke run to find, and nothing a result could be read from. The
quirks the real releases have are written on purpose:

- class names with spaces and parentheses (TU-Berlin's ``car (sedan)``, Sketchy's ``car_(sedan)``,
  QuickDraw's ``The Eiffel Tower``);
- greyscale and CMYK JPEG photos beside RGB ones, PNG sketches with an alpha channel;
- sketches whose photo is missing (Sketchy), photo names with underscores (QMUL);
- sketches of a single stroke (QMUL coordinates, QuickDraw);
- splits a protocol does not define: Sketchy and TU-Berlin have no validation split, and
  Sketchy's Yelamarthi 21 unseen classes hold only a few photos each;
- ``bare=True``: the releases without their optional parts (ChairV2 and ShoeV2 without photos,
  Sketchy without the extended photos, TU-Berlin without photos).

``write_root`` is used by the tests (``tests/test_fixtures.py``) and by the smoke run of the book
(``python -m sbir_core.book run --smoke``), which executes every chapter's real-data sections on it.
"""

from __future__ import annotations

import json
import pickle
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sbir_core.data.folders import YELAMARTHI_21

SKETCHY_AUG = "tx_000000000000"
PACS_CLASSES = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")
PACS_SKETCHY = ("dog", "elephant", "giraffe", "guitar", "horse")  # the classes whose sketches are Sketchy's
SKETCHY_SEEN = ("airplane", "car_(sedan)", "hot-air_balloon", "teddy_bear")
TUBERLIN_CLASSES = ("airplane", "alarm clock", "car (sedan)", "bear", "teddy-bear", "flying saucer")
QUICKDRAW_CLASSES = (*PACS_CLASSES[:-1], "shoe", "chair", "The Eiffel Tower", "floor lamp")
COUNTRIES = ("US", "US", "CA", "GB", "DE", "BR", "IN", "JP")
DATASETS = ("shoes304", "chairv2", "shoev2", "pacs", "sketchy", "tuberlin", "quickdraw")


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _shape(key) -> np.ndarray:
    """An object's outline: a polygon of 5-8 corners in the unit square (fixed by ``key``)."""
    rng = _rng("shape", key)
    n = int(rng.integers(5, 9))
    angle = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = rng.uniform(0.25, 0.45, n)
    return np.stack([0.5 + radius * np.cos(angle), 0.5 + radius * np.sin(angle)], 1)


def _strokes(key, drawer, size: float, n_strokes: int | None = None) -> list[np.ndarray]:
    """A drawer's trace of an object's outline, split into strokes of (x, y) points on a ``size`` canvas."""
    rng = _rng("strokes", key, drawer)
    pts = _shape(key)
    pts = np.concatenate([pts, pts[:1]])
    pts = pts + rng.normal(0, 0.02, pts.shape)
    pts = (pts - 0.5) * rng.uniform(0.8, 1.1) + 0.5
    n = n_strokes if n_strokes is not None else int(rng.integers(1, 4))
    cuts = np.linspace(0, len(pts) - 1, n + 1).round().astype(int)
    return [pts[a : max(b + 1, a + 2)] * size for a, b in zip(cuts[:-1], cuts[1:])]


def _photo(key, size: int = 48) -> Image.Image:
    rng = _rng("photo", key)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(180, 256, 3)))
    ImageDraw.Draw(img).polygon(
        [tuple(p) for p in _shape(key) * size], fill=tuple(int(v) for v in rng.integers(0, 160, 3))
    )
    return img


def _sketch(key, drawer, size: int = 48, alpha: bool = False) -> Image.Image:
    img = Image.new("LA" if alpha else "L", (size, size), (255, 0) if alpha else 255)
    draw = ImageDraw.Draw(img)
    for s in _strokes(key, drawer, size):
        draw.line([tuple(p) for p in s], fill=(0, 255) if alpha else 0, width=2)
    return img


def _save_photo(img: Image.Image, path: Path, i: int) -> None:
    """Every fifth photo greyscale, every seventh CMYK (the JPEG kinds real releases mix in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg") and i % 5 == 3:
        img = img.convert("L")
    elif path.suffix.lower() in (".jpg", ".jpeg") and i % 7 == 5:
        img = img.convert("CMYK")
    img.save(path)


def _save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def write_shoes304(root: Path, n_photos: int = 20) -> None:
    from scipy.io import savemat

    base = root / "shoes304"
    for p in range(1, n_photos + 1):
        _save_photo(_photo(("shoe", p)), base / "photo" / f"{p:03d}.jpg", p)
        for k in (1, 2, 3):
            _save(_sketch(("shoe", p), k).resize((96, 96)), base / "sketch" / f"{p:03d}-{k}.jpg")
    rng = _rng("shoes304 attributes")
    attrs = rng.integers(0, 2, (n_photos, 13)).astype(float)
    savemat(base / "13_A_image_label.mat", {"image_label": attrs})
    sketch_attrs = np.concatenate([attrs] * 3)  # K-major, as published
    savemat(base / "13_A_sketch_label.mat", {"sketch_label": sketch_attrs})


def _coordinates(key, drawer, single: bool = False) -> np.ndarray:
    """QMUL's (N, 3) rows: x, y on a 256 canvas (within about 33-223), pen 1 on each stroke's last point."""
    rows = []
    for s in _strokes(key, drawer, 190, n_strokes=1 if single else None):
        pen = np.zeros((len(s), 1))
        pen[-1] = 1
        rows.append(np.hstack([s + 33, pen]))
    return np.vstack(rows).astype(np.float64)


def write_qmul(root: Path, name: str, photos: bool, n_train: int = 16, n_test: int = 8) -> None:
    """ShoeV2 / ChairV2: the pickled coordinate dict, and the flat photo folder unless ``photos`` is False.
    Photo names carry underscores; one sketch of each split is a single stroke. (A photo the coordinate file names
    but the folder lacks is refused by the loader, naming it: ``tests/test_data_qmul.py``.)"""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    data, names = {}, []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            photo = f"{name[:3].upper()}_{split}_{i:03d}_v1"
            names.append(photo)
            for k in range(1, 3 if i % 3 else 4):
                data[f"/{split}/{photo}_{k}"] = _coordinates((name, photo), k, single=(i == 0 and k == 1))
    (folder / f"{name}_Coordinate").write_bytes(pickle.dumps(data))
    if photos:
        for i, photo in enumerate(names):
            _save_photo(_photo((name, photo)), folder / "photo" / f"{photo}.png", i)


def write_pacs(root: Path, per_class: int = 16) -> None:
    """PACS's four domains; the sketches of five classes carry Sketchy names (``<photo id>-<k>``) whose photos are
    in ``photo/`` (the instance pairs), the other two are TU-Berlin-style numbers; sketch PNGs have alpha."""
    base = root / "pacs"
    for c, cls in enumerate(PACS_CLASSES):
        for i in range(per_class):
            pid = f"n0{2100000 + 1000 * c}_{100 + i}"
            key = ("pacs", cls, i)
            _save_photo(_photo(key), base / "photo" / cls / f"{pid}.jpg", i)
            for domain in ("art_painting", "cartoon"):
                if i < per_class // 2:
                    _save(_photo((domain, *key)), base / domain / cls / f"pic_{i:03d}.jpg")
            for k in (1, 2, 3):  # three sketches a photo: StyleMeUp's episodes hold a sketch index out
                name = f"{pid}-{k}.png" if cls in PACS_SKETCHY else f"{1000 * c + 10 * i + k}.png"
                _save(_sketch(key, k, alpha=True), base / "sketch" / cls / name)


def write_sketchy(root: Path, extended: bool, photos_per_class: int = 6, unseen_photos: int = 4) -> None:
    """The release's ``256x256/{photo,sketch}/tx_000000000000/<class>/``: 4 seen and the 21 Yelamarthi unseen classes,
    few photos each, 3 sketches a photo; one sketch a class has no photo; ``EXTEND_image_sketchy`` unless bare."""
    base = root / "sketchy" / "256x256"
    for cls in SKETCHY_SEEN + YELAMARTHI_21:
        n = unseen_photos if cls in YELAMARTHI_21 else photos_per_class
        for i in range(n + 1):
            pid = f"n{zlib.crc32(cls.encode()) % 10**8:08d}_{i}"
            key = ("sketchy", cls, i)
            if i < n:  # the last object's photo is missing: its sketch is unpaired
                _save_photo(_photo(key), base / "photo" / SKETCHY_AUG / cls / f"{pid}.jpg", i)
            for k in (1, 2, 3) if i < n else (1,):  # three a photo: StyleMeUp's episodes hold one sketch index out
                _save(_sketch(key, k), base / "sketch" / SKETCHY_AUG / cls / f"{pid}-{k}.png")
        if extended:
            for j in range(2):
                _save_photo(
                    _photo(("sketchy ext", cls, j)),
                    root / "sketchy" / "EXTEND_image_sketchy" / cls / f"ext_{j}.JPEG",
                    j,
                )


def write_tuberlin(root: Path, photos: bool, per_class: int = 10) -> None:
    """``png/<class>/<n>.png`` with spaces and parentheses in class names; ``ImageResized/`` photos unless bare."""
    base = root / "tuberlin"
    n = 0
    for cls in TUBERLIN_CLASSES:
        for i in range(per_class):
            n += 1
            _save(_sketch(("tuberlin", cls, i), 0), base / "png" / cls / f"{n}.png")
        if photos:
            for j in range(3):
                _save_photo(_photo(("tuberlin photo", cls, j)), base / "ImageResized" / cls / f"{cls}_{j}.jpg", j)


def write_quickdraw(root: Path, per_class: int = 40) -> None:
    """Raw ndjson drawings (``[[x...], [y...], [t...]]`` strokes, unnormalised extents), a country each; one
    drawing in ten a single stroke, one in eight not recognised."""
    base = root / "quickdraw"
    base.mkdir(parents=True, exist_ok=True)
    for cls in QUICKDRAW_CLASSES:
        lines = []
        for i in range(per_class):
            rng = _rng("quickdraw", cls, i)
            scale = float(rng.uniform(120, 255))
            strokes = _strokes(("quickdraw", cls), i, scale, n_strokes=1 if i % 10 == 0 else None)
            t = 0
            drawing = []
            for s in strokes:
                times = list(range(t, t + 16 * len(s), 16))
                t = times[-1] + 200
                drawing.append([[round(float(v), 1) for v in s[:, 0]], [round(float(v), 1) for v in s[:, 1]], times])
            lines.append(
                json.dumps(
                    {
                        "word": cls,
                        "countrycode": COUNTRIES[i % len(COUNTRIES)],
                        "timestamp": "2017-03-01 00:00:00.00000 UTC",
                        "recognized": i % 8 != 7,
                        "key_id": str(5_000_000_000_000_000 + zlib.crc32(f"{cls}{i}".encode())),
                        "drawing": drawing,
                    }
                )
            )
        (base / f"{cls}.ndjson").write_text("\n".join(lines) + "\n")


def write_root(root: str | Path, bare: bool = False, datasets=DATASETS) -> Path:
    """Write the fixture data root at ``root`` (created; must be empty or absent) and return it.

    ``bare``: the releases without their optional parts. ``datasets``: which of ``DATASETS`` to write.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty: the fixture root is written into an empty folder")
    root.mkdir(parents=True, exist_ok=True)
    writers = {
        "shoes304": lambda: write_shoes304(root),
        "chairv2": lambda: write_qmul(root, "ChairV2", photos=not bare),
        "shoev2": lambda: write_qmul(root, "ShoeV2", photos=not bare),
        "pacs": lambda: write_pacs(root),
        "sketchy": lambda: write_sketchy(root, extended=not bare),
        "tuberlin": lambda: write_tuberlin(root, photos=not bare),
        "quickdraw": lambda: write_quickdraw(root),
    }
    unknown = sorted(set(datasets) - set(writers))
    if unknown:
        raise ValueError(f"no fixture for {', '.join(unknown)}; known: {', '.join(DATASETS)}")
    for name in datasets:
        writers[name]()
    return root
