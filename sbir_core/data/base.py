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

Helpers shared by the file-based loaders live here too: finding a dataset's folder under the data
root (tolerant of case), listing image files (stray files counted, never fatal), checking images
(``skip_bad``: a corrupt file is skipped and reported instead of failing) and a fingerprint of a
file list (names and content hashes) so that caches follow the files.

Rasters are cached (``sbir_core.cache``: checksummed, healed when damaged) under keys made from the
content that determines them: the stroke bytes or the image files' content, the size and the line
width; not the split columns, so every split or seed variant of a dataset shares one raster cache.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sbir_core import strokes as S
from sbir_core.cache import cached_array, content_hash
from sbir_core.errors import SBIRError

SKETCH_COLUMNS = ["sketch_id", "photo_id", "instance", "category", "drawer", "drawer_split", "split"]
PHOTO_COLUMNS = ["photo_id", "instance", "category", "split", "medium"]
RENDER_VERSION = 2  # bump when rendering changes, so that old cached rasters are not reused
RASTER_BLOCK = 1024  # sketches per raster cache file
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class DataError(SBIRError, RuntimeError):
    """A dataset that is absent, incomplete or malformed; the message says which file and why.

    File names that are not UTF-8 reach Python as surrogate escapes; the message shows their bytes
    as ``\\xNN`` so that printing it cannot fail.
    """

    def __init__(self, message="", *args):
        super().__init__(safe_text(message) if isinstance(message, str) else message, *args)


def safe_text(text: str) -> str:
    """``text`` with undecodable file-name bytes (surrogate escapes) shown as ``\\xNN``: printable, encodable."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # lone surrogates that are not escaped bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


MAX_PIXELS = 64_000_000  # an image (after padding to a square) larger than this is not a sketch or photo


def outside(path: Path, root: Path | None) -> bool:
    """Whether ``path`` resolves (through symbolic links) to somewhere outside ``root``."""
    if root is None:
        return False
    try:
        real, base = Path(path).resolve(), Path(root).resolve()
    except (OSError, RuntimeError):
        return True
    return real != base and base not in real.parents


def unique_ids(ids, files, what: str) -> None:
    """A DataError naming both files when two files would get the same id (e.g. a.png and a.jpg)."""
    first: dict = {}
    for i, f in zip(ids, files):
        if i in first:
            raise DataError(f"duplicate {what} id {i!r}: {first[i]} and {f} would both be {i!r}; remove or rename one")
        first[i] = f


def cache_dir() -> Path:
    """Where rasterised tensors are cached: ``$SBIR_CACHE`` or ``<repo>/.cache`` (never the data root)."""
    from sbir_core.paths import REPO_ROOT

    path = Path(os.environ.get("SBIR_CACHE", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$SBIR_DATA``; a DataError when neither is set."""
    value = root if root is not None else os.environ.get("SBIR_DATA")
    if not value:
        raise DataError("no data root: pass root=... or set SBIR_DATA to the folder that holds the datasets")
    return Path(value).expanduser()


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
        if len(self.photos):
            h.update(pd.util.hash_pandas_object(self.photos, index=False).values.tobytes())
        h.update(str(self.info.get("fingerprint", "")).encode())
        return h.hexdigest()[:16]

    def subset(self, mask) -> SBIRData:
        """The sketches selected by a boolean mask (or index array), with all photos kept."""
        idx = np.flatnonzero(np.asarray(mask)) if np.asarray(mask).dtype == bool else np.asarray(mask)
        pick = lambda seq: None if seq is None else [seq[i] for i in idx]  # noqa: E731
        return SBIRData(
            self.name,
            self.sketches.iloc[idx].copy(),
            self.photos.copy(),
            pick(self.strokes),
            pick(self.sketch_files),
            self.photo_files,
            self.photo_arrays,
            dict(self.info, parent=self.fingerprint),
        )

    def sketch_key(self, start: int = 0, stop: int | None = None) -> str:
        """A hash of the content of sketches ``start:stop``: their stroke bytes, or their image files' content."""
        if self.strokes is not None:
            part = self.strokes[start:stop]
            lengths = np.array([len(s) for s in part], dtype=np.int64)
            xy = np.concatenate([np.asarray(s, dtype=np.float64) for s in part]) if len(part) else np.zeros((0, 3))
            return content_hash("strokes", lengths, xy)
        return content_hash("files", files_fingerprint(self.sketch_files[start:stop]))

    def sketch_images(self, size: int = 64, line_width: float = 1.5, cache: bool = True) -> np.ndarray:
        """All sketches as a (N, size, size) float32 array in [0, 1], black ink on white.

        Rasterised in blocks of ``RASTER_BLOCK`` sketches, each cached under the hash of its own
        content, so datasets that share a run of sketches (worlds that differ only in their unseen
        drawers, splits of one dataset) share those blocks; kept in memory for this object.
        """
        memo = self.__dict__.setdefault("_rasters", {})
        if (size, line_width) in memo and cache:
            return memo[(size, line_width)]
        blocks = []
        for start in range(0, len(self), RASTER_BLOCK):
            stop = min(start + RASTER_BLOCK, len(self))
            path = cache_dir() / f"sketch-{self.sketch_key(start, stop)}-{size}-{line_width:g}-r{RENDER_VERSION}.npz"
            blocks.append(
                cached_array(
                    path,
                    lambda a=start, b=stop: self._render_sketches(size, line_width, a, b),
                    (stop - start, size, size),
                    np.float32,
                    cache,
                )
            )
        out = np.concatenate(blocks) if blocks else np.empty((0, size, size), dtype=np.float32)
        if cache:
            memo[(size, line_width)] = out
        return out

    def photo_images(self, size: int = 64, cache: bool = True) -> np.ndarray:
        """All photos as a (M, size, size, 3) uint8 array."""
        if self.photo_arrays is not None:
            return _resize_batch(self.photo_arrays, size)
        if self.photo_files is None:
            raise DataError(f"{self.name}: no photos in this dataset (photo-less mode)")
        path = (
            cache_dir()
            / f"photo-{content_hash('files', files_fingerprint(self.photo_files))}-{size}-r{RENDER_VERSION}.npz"
        )
        return cached_array(
            path,
            lambda: np.stack([load_image(p, size, "RGB") for p in self.photo_files]),
            (len(self.photos), size, size, 3),
            np.uint8,
            cache,
        )

    def photo_index(self) -> np.ndarray:
        """For each sketch, the row of its paired photo in ``photos`` (-1 when it has none)."""
        where = {pid: i for i, pid in enumerate(self.photos["photo_id"])}
        return np.array([where.get(pid, -1) for pid in self.sketches["photo_id"]], dtype=np.int64)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """Files dropped by a loader with ``skip_bad=True``, as (path, reason) pairs."""
        return list(self.info.get("skipped", []))

    def report(self) -> pd.DataFrame:
        """What the loader left out: one row per skipped or ignored file (kind, path, reason)."""
        rows = [{"kind": "skipped", "path": safe_text(str(p)), "reason": safe_text(str(r))} for p, r in self.skipped]
        rows += [
            {"kind": "ignored", "path": safe_text(p), "reason": "not a file of this layout"}
            for p in self.info.get("ignored", [])
        ]
        return pd.DataFrame(rows, columns=["kind", "path", "reason"])

    def split_counts(self) -> pd.DataFrame:
        """Sketches, photos and instances per split: a frame indexed by split."""
        sk = self.sketches.groupby("split").agg(sketches=("sketch_id", "size"), instances=("instance", "nunique"))
        ph = self.photos.groupby("split").size().rename("photos")
        out = sk.join(ph, how="outer").fillna(0).astype(int)
        return out.reindex(sorted(out.index, key=_split_order))

    def sketch_image(self, i: int, size: int = 64, line_width: float = 1.5) -> np.ndarray:
        """One sketch as a (size, size) float32 image, not cached (for figures)."""
        if self.strokes is not None:
            return S.rasterise(self.strokes[i], size, line_width)
        return stretch_ink(load_image(self.sketch_files[i], size, "L")[None])[0]

    def photo_image(self, j: int, size: int = 64) -> np.ndarray:
        """One photo as a (size, size, 3) uint8 array, not cached (for figures)."""
        if self.photo_arrays is not None:
            return _resize_batch(self.photo_arrays[j : j + 1], size)[0]
        if self.photo_files is None:
            raise DataError(f"{self.name}: no photos in this dataset (photo-less mode)")
        return load_image(self.photo_files[j], size, "RGB")

    def stroke_stats(self) -> pd.DataFrame:
        """Per-sketch stroke statistics (``strokes.sketch_stats``) beside the sketch table.

        Returns a frame with the sketch columns and strokes, points, points_per_stroke, length,
        stroke_length, extent and gap (canvas units); a DataError for image-only datasets.
        """
        if self.strokes is None:
            raise DataError(f"{self.name}: sketches are images, not strokes; use ink_stats")
        stats = pd.DataFrame([S.sketch_stats(s) for s in self.strokes])
        return pd.concat([self.sketches.reset_index(drop=True), stats], axis=1)

    def ink_stats(self, size: int = 64, line_width: float = 1.5) -> pd.DataFrame:
        """Per-sketch raster statistics beside the sketch table, for any dataset.

        ink (mean darkness, 0..1), ink_pixels (fraction of pixels darker than 0.5) and
        ink_extent (longer side of the inked bounding box as a fraction of the image side; 0 when blank).
        """
        imgs = self.sketch_images(size, line_width)
        dark = 1.0 - imgs
        mask = imgs < 0.5
        rows_any, cols_any = mask.any(2), mask.any(1)
        extent = np.zeros(len(imgs))
        for i in range(len(imgs)):
            r, c = np.flatnonzero(rows_any[i]), np.flatnonzero(cols_any[i])
            if len(r):
                extent[i] = max(r[-1] - r[0] + 1, c[-1] - c[0] + 1) / size
        stats = pd.DataFrame({"ink": dark.mean((1, 2)), "ink_pixels": mask.mean((1, 2)), "ink_extent": extent})
        return pd.concat([self.sketches.reset_index(drop=True), stats], axis=1)

    def _render_sketches(self, size: int, line_width: float, start: int = 0, stop: int | None = None) -> np.ndarray:
        if self.strokes is not None:
            return S.rasterise_many(self.strokes[start:stop], size, line_width)
        files = self.sketch_files[start:stop]
        if not files:
            return np.empty((0, size, size), dtype=np.float32)
        return stretch_ink(np.stack([load_image(p, size, "L") for p in files]))


def load_image(path: Path, size: int, mode: str) -> np.ndarray:
    """Load one image file as a (size, size[, 3]) uint8 array; a clear DataError names a bad file.

    A non-square image is padded with white to a square first (aspect ratio kept: product photos
    sit on white); the padded size is checked before anything is allocated (``MAX_PIXELS``), so a
    1 x 60000 strip cannot ask for gigabytes. 16-bit and float greyscale images are scaled to
    8 bits (a plain convert would clip them to white). JPEGs are decoded at a reduced DCT scale
    when that still covers ``size``, which makes loading large sketches about 10x faster.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
            if w < 1 or h < 1 or max(w, h) ** 2 > MAX_PIXELS:
                raise DataError(
                    f"cannot read image {path}: its size {w}x{h} padded to a square would be "
                    f"{max(w, h) ** 2} pixels (more than {MAX_PIXELS}): not a sketch or photo"
                )
            img.draft(mode, (size, size))
            img.load()
            if img.mode in ("I", "F") or img.mode.startswith("I;16"):
                img = _to_8bit(img)
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                # transparent pixels are paper: composite on white, not on the black convert() gives
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            img = img.convert(mode)
            w, h = img.size
            if w != h:
                side = max(w, h)
                square = Image.new(mode, (side, side), 255 if mode == "L" else (255,) * len(mode))
                square.paste(img, ((side - w) // 2, (side - h) // 2))
                img = square
            return np.asarray(img.resize((size, size), Image.BILINEAR))
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises many types (OSError, SyntaxError, struct.error,
        # ZeroDivisionError, MemoryError, DecompressionBombError...) for malformed files: one clear error
        raise DataError(f"cannot read image {path}: {type(err).__name__}: {err}") from err


def _to_8bit(img):
    """A 16-bit / 32-bit / float greyscale image as 8-bit "L", scaled by its type's range, not clipped."""
    from PIL import Image

    arr = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
        arr = arr / 257.0  # 16-bit range onto 8 bits
    elif img.mode == "F" and arr.max(initial=0) <= 1.0:
        arr = arr * 255.0
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L")


def stretch_ink(images: np.ndarray, min_ink: float = 0.05) -> np.ndarray:
    """(B, H, W) uint8 sketch scans -> float32 in [0, 1] with each sketch's darkest pixel black.

    Thin lines of a large scan turn grey when it is shrunk (a 512-px shoe sketch at 64 px has
    no pixel darker than about 0.4); stretching the contrast per sketch restores black ink on a
    white ground, as rasterised strokes have. Sketches with less than ``min_ink`` darkness
    anywhere (blank pages) are left as they are.
    """
    dark = 1.0 - images.astype(np.float32) / 255.0
    peak = dark.reshape(len(dark), -1).max(1)[:, None, None]
    scale = np.where(peak >= min_ink, 1.0 / np.maximum(peak, min_ink), 1.0)
    return (1.0 - dark * scale).astype(np.float32)


def check_images(files: list[Path], skip_bad: bool, mode: str = "L") -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode every file once (small, via ``load_image``): which are readable, and why not.

    Returns (keep, skipped): a (N,) bool mask and (path, reason) pairs. With ``skip_bad=False``
    the first bad file raises a DataError naming it.
    """
    keep = np.ones(len(files), dtype=bool)
    skipped = []
    for i, f in enumerate(files):
        try:
            load_image(f, 8, mode)
        except DataError as err:
            if not skip_bad:
                raise
            keep[i] = False
            skipped.append((str(f), str(err.__cause__ or err)))
    return keep, skipped


def find_dataset_dir(root, names: list[str], dataset: str, layout: str, marker=None) -> Path:
    """The folder of one dataset under the data root, matching ``names`` without regard to case.

    ``marker(path) -> bool`` tells a dataset folder; when the root itself passes it, the root is
    the dataset folder. Raises a DataError with the expected ``layout`` when nothing matches.
    """
    base = data_root(root)
    if not base.is_dir():
        raise DataError(f"{dataset}: data root {base} is not a folder.\nExpected layout:\n{layout}")
    if marker is not None and marker(base):
        return base
    wanted = {n.lower() for n in names}
    for child in sorted(base.iterdir()):
        if child.is_dir() and child.name.lower() in wanted:
            return child
    raise DataError(f"{dataset}: no folder named {' or '.join(names)} under {base}.\nExpected layout:\n{layout}")


def find_child(folder: Path, name: str, dataset: str, layout: str, want_dir: bool = False) -> Path:
    """``folder/name`` matched without regard to case; a DataError naming it when missing."""
    if folder.is_dir():
        for child in sorted(folder.iterdir()):
            if child.name.lower() == name.lower() and (child.is_dir() if want_dir else child.is_file()):
                return child
    kind = "folder" if want_dir else "file"
    raise DataError(f"{dataset}: missing {kind} {folder / name}.\nExpected layout:\n{layout}")


def list_images(folder: Path, root: Path | None = None) -> tuple[list[Path], list[str]]:
    """Image files directly in ``folder`` (sorted by name) and the stray entries beside them.

    Hidden files (``.DS_Store``, ``._x.png``), non-image files and sub-folders are strays:
    counted, never loaded. Suffixes match without regard to case (``.JPEG`` too). With ``root``
    (the dataset folder), a symbolic link that leads outside it is refused: listed as a stray
    with that reason, never read.
    """
    images, stray = [], []
    for f in sorted(folder.iterdir()):
        if f.is_symlink() and outside(f, root):
            stray.append(f"{f} (symbolic link out of the data folder {root}: refused)")
        elif f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES:
            images.append(f)
        else:
            stray.append(str(f))
    return images, stray


def first_paths(files) -> tuple[np.ndarray, list[str]]:
    """Which of ``files`` are the first path to their file: a (N,) bool mask, and the others as ignored entries.

    A symbolic link back into the data (``loop -> .``, a second name for a class folder or an image)
    reaches a file again under another path; counting it twice would make one sketch two rows.
    """
    first: dict[str, Path] = {}
    keep = np.ones(len(files), dtype=bool)
    repeats = []
    for i, f in enumerate(files):
        real = os.path.realpath(f)
        if real in first:
            keep[i] = False
            repeats.append(f"{f} (the same file as {first[real]}, through a symbolic link: counted once)")
        else:
            first[real] = f
    return keep, repeats


def image_tree(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Every image file under ``folder`` once, folder by folder in name order, and the folders that could not
    be listed as (path, reason) pairs.

    Hidden entries are left out and links out of ``folder`` refused (``list_images``). A folder reached
    again through a link (``loop -> .``) is not walked again and a file reached twice counts once, so a
    link loop neither repeats images nor recurses; a folder without permission is reported, not fatal.
    """
    files, skipped, walked = [], [], set()
    todo = [folder]
    while todo:
        here = todo.pop()
        real = os.path.realpath(here)
        if real in walked:
            continue
        walked.add(real)
        try:
            images, _ = list_images(here, folder)
            subs = [c for c in sorted(here.iterdir()) if c.is_dir() and not c.name.startswith(".")]
        except OSError as err:
            skipped.append((str(here), f"cannot list the folder: {err.strerror or err}"))
            continue
        files += images
        todo += reversed([c for c in subs if not (c.is_symlink() and outside(c, folder))])
    keep, _ = first_paths(files)
    return [f for f, k in zip(files, keep) if k], skipped


_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime) -> content digest, so one process hashes a file once


def file_digest(path: Path) -> str:
    """BLAKE2b of a file's content (memoised per process on path, size and modification time); a file that
    cannot be read (no permission, gone) is a DataError naming it."""
    try:
        st = path.stat()
        memo = (str(path), st.st_size, st.st_mtime_ns)
        if memo not in _DIGESTS:
            h = hashlib.blake2b(digest_size=16)
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            _DIGESTS[memo] = h.hexdigest()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err
    return _DIGESTS[memo]


def files_fingerprint(files, base: Path | None = None) -> str:
    """A hash of a file list's names and contents: caches follow the files, not their timestamps."""
    h = hashlib.sha1()
    for f in files:
        f = Path(f)
        name = f.relative_to(base) if base is not None else f
        h.update(os.fsencode(name) + f"\0{file_digest(f)}\n".encode())  # bytes: non-UTF-8 names too
    return h.hexdigest()[:16]


def _split_order(split: str) -> tuple[int, str]:
    order = {"train": 0, "val": 1, "test": 2}
    return (order.get(split, 3), split)


def _resize_batch(arrays: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if arrays.shape[1] == size and arrays.shape[2] == size:
        return arrays
    return np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR)) for a in arrays])
