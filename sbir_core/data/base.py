"""The one sample model shared by the style world and every real dataset.

A dataset is two tables and the sources they point at:

* ``sketches``: one row per sketch with columns ``SKETCH_COLUMNS`` (sketch_id, photo_id,
  instance, category, drawer, drawer_split, split); ``drawer`` and ``drawer_split`` are ""
  where unknown, ``photo_id`` is "" for sketches without a paired photo.
* ``photos``: one row per photo with ``PHOTO_COLUMNS`` (photo_id, instance, category, split,
  medium); empty in photo-less mode.

Each sketch comes as strokes (canonical (N, 3), ``strokes``) or as an image file
(``sketch_files``); each photo as a file (``photo_files``) or a generated array
(``photo_arrays``). Rasterised tensors are cached outside the data root (``cache_dir``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sbir_core import strokes as S

SKETCH_COLUMNS = ["sketch_id", "photo_id", "instance", "category", "drawer", "drawer_split", "split"]
PHOTO_COLUMNS = ["photo_id", "instance", "category", "split", "medium"]


class DataError(RuntimeError):
    """A dataset that is absent, incomplete or malformed; the message says which file and why."""


def cache_dir() -> Path:
    """Where rasterised tensors are cached: ``$SBIR_CACHE`` or ``<repo>/.cache`` (never the data root)."""
    from sbir_core.results import REPO_ROOT

    path = Path(os.environ.get("SBIR_CACHE", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class SBIRData:
    """A sketch–photo dataset: tables of sketches and photos and where their pixels come from."""

    name: str
    sketches: pd.DataFrame
    photos: pd.DataFrame
    strokes: list[np.ndarray] | None = None
    sketch_files: list[Path] | None = None
    photo_files: list[Path] | None = None
    photo_arrays: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        for col in SKETCH_COLUMNS:
            if col not in self.sketches:
                self.sketches[col] = ""
        for col in PHOTO_COLUMNS:
            if col not in self.photos:
                self.photos[col] = ""
        self.sketches = self.sketches.reset_index(drop=True)
        self.photos = self.photos.reset_index(drop=True)
        n = len(self.sketches)
        if self.strokes is None and self.sketch_files is None:
            raise DataError(f"{self.name}: sketches need strokes or image files")
        for what, seq in (("strokes", self.strokes), ("sketch_files", self.sketch_files)):
            if seq is not None and len(seq) != n:
                raise DataError(f"{self.name}: {len(seq)} {what} for {n} sketch rows")
        m = len(self.photos)
        for what, seq in (("photo_files", self.photo_files), ("photo_arrays", self.photo_arrays)):
            if seq is not None and len(seq) != m:
                raise DataError(f"{self.name}: {len(seq)} {what} for {m} photo rows")

    def __len__(self) -> int:
        return len(self.sketches)

    def __repr__(self) -> str:
        splits = self.sketches["split"].value_counts().to_dict()
        return f"SBIRData({self.name!r}, {len(self.sketches)} sketches {splits}, {len(self.photos)} photos)"

    @property
    def fingerprint(self) -> str:
        """A short hash of the content's identity, for cache keys."""
        h = hashlib.sha1(self.name.encode())
        h.update(pd.util.hash_pandas_object(self.sketches, index=False).values.tobytes())
        h.update(str(self.info.get("fingerprint", "")).encode())
        return h.hexdigest()[:16]

    def subset(self, mask) -> "SBIRData":
        """The sketches selected by a boolean mask (or index array), with all photos kept."""
        idx = np.flatnonzero(np.asarray(mask)) if np.asarray(mask).dtype == bool else np.asarray(mask)
        pick = lambda seq: None if seq is None else [seq[i] for i in idx]  # noqa: E731
        return SBIRData(self.name, self.sketches.iloc[idx].copy(), self.photos.copy(),
                        pick(self.strokes), pick(self.sketch_files), self.photo_files,
                        self.photo_arrays, dict(self.info, parent=self.fingerprint))

    def sketch_images(self, size: int = 64, line_width: float = 1.5, cache: bool = True) -> np.ndarray:
        """All sketches as a (N, size, size) float32 array in [0, 1], black ink on white."""
        key = f"{self.fingerprint}-sketch-{size}-{line_width}"
        return _cached(key, cache, lambda: self._render_sketches(size, line_width))

    def photo_images(self, size: int = 64, cache: bool = True) -> np.ndarray:
        """All photos as a (M, size, size, 3) uint8 array."""
        if self.photo_arrays is not None:
            return _resize_batch(self.photo_arrays, size)
        if self.photo_files is None:
            raise DataError(f"{self.name}: no photos in this dataset (photo-less mode)")
        key = f"{self.fingerprint}-photo-{size}"
        return _cached(key, cache, lambda: np.stack([load_image(p, size, "RGB") for p in self.photo_files]))

    def photo_index(self) -> np.ndarray:
        """For each sketch, the row of its paired photo in ``photos`` (-1 when it has none)."""
        where = {pid: i for i, pid in enumerate(self.photos["photo_id"])}
        return np.array([where.get(pid, -1) for pid in self.sketches["photo_id"]], dtype=np.int64)

    def _render_sketches(self, size: int, line_width: float) -> np.ndarray:
        if self.strokes is not None:
            return S.rasterise_many(self.strokes, size, line_width)
        return np.stack([load_image(p, size, "L") for p in self.sketch_files]).astype(np.float32) / 255.0


def load_image(path: Path, size: int, mode: str) -> np.ndarray:
    """Load one image file resized to (size, size), as uint8; a clear DataError names a bad file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert(mode).resize((size, size), Image.BILINEAR))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from err


def _resize_batch(arrays: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if arrays.shape[1] == size and arrays.shape[2] == size:
        return arrays
    return np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR)) for a in arrays])


def _cached(key: str, use_cache: bool, compute) -> np.ndarray:
    if not use_cache:
        return compute()
    path = cache_dir() / f"{key}.npy"
    if path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a truncated cache file is recomputed, never trusted
    arr = compute()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    os.replace(tmp, path)
    return arr
