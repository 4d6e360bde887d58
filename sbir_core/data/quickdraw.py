"""QuickDraw drawings: raw or simplified ndjson, and sketch-rnn ``.npz`` stroke-3 files.

    <root>/quickdraw/<class>.ndjson     one JSON drawing per line: "drawing" = [[x...], [y...](, [t...])]
                                        (also full_raw_<class>.ndjson / full_simplified_<class>.ndjson)
    <root>/quickdraw/<class>.npz        sketch-rnn: arrays "train", "valid", "test" of (n, 3) stroke-3
                                        (also sketchrnn_<class>.npz)

Raw coordinates have each drawing's own extent; every drawing is normalised to the 256 canvas
(``strokes.from_quickdraw`` / ``from_stroke3``). Drawings are anonymous: ``drawer`` stays "".
The sketch-rnn object arrays are pickles: they are read member by member with numpy's
``allow_pickle=False`` for plain arrays and ``safe_pickle`` (numpy arrays only) for object arrays,
never with numpy's own pickle loading.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from sbir_core import strokes as S
from sbir_core.data import safe_pickle
from sbir_core.data.base import DataError, SBIRData, files_fingerprint, find_dataset_dir, outside, safe_text
from sbir_core.data.folders import assign_splits

LAYOUT = """  <root>/quickdraw/<class>.ndjson    raw or simplified drawings, one JSON object a line
  <root>/quickdraw/<class>.npz       sketch-rnn stroke-3 arrays train / valid / test
  (prefixes full_raw_, full_simplified_, sketchrnn_ are stripped from the class name;
   <root> is SBIR_DATA or the root= argument; folder names match without regard to case)"""
PREFIXES = ("full_simplified_", "full_raw_", "simplified_", "raw_", "sketchrnn_")
NPZ_SPLITS = {"train": "train", "valid": "val", "test": "test"}


def class_name(path: Path) -> str:
    """The class a file holds: its stem without the download prefixes."""
    stem = path.stem
    for p in PREFIXES:
        if stem.startswith(p):
            return stem[len(p) :]
    return stem


def find(root=None) -> tuple[Path, dict[str, Path], list[str]]:
    """(folder, {class: file}, stray files); ndjson wins over npz when a class has both."""
    folder = find_dataset_dir(
        root,
        ["quickdraw", "QuickDraw", "quick_draw", "quickdraw_dataset"],
        "quickdraw",
        LAYOUT,
        marker=lambda p: any(c.suffix in (".ndjson", ".npz") for c in p.iterdir()),
    )
    files: dict[str, Path] = {}
    stray = []
    for f in sorted(folder.iterdir()):
        if f.is_symlink() and outside(f, folder):
            stray.append(f"{f} (symbolic link out of the data folder {folder}: refused)")
        elif f.is_file() and not f.name.startswith(".") and f.suffix.lower() in (".ndjson", ".npz"):
            cls = safe_text(class_name(f))
            old = files.get(cls)
            if old is not None and old.suffix.lower() == f.suffix.lower():
                raise DataError(f"quickdraw: duplicate class {cls!r}: {old} and {f} both hold it; remove or rename one")
            if old is None or f.suffix.lower() == ".ndjson":
                files[cls] = f
        else:
            stray.append(str(f))
    if not files:
        raise DataError(f"quickdraw: no .ndjson or .npz files in {folder}.\nExpected layout:\n{LAYOUT}")
    return folder, files, stray


MAX_LINE = 16 << 20  # bytes; the largest raw QuickDraw drawing (with timings) is far below a megabyte


def read_ndjson(
    path: Path, max_drawings: int | None = None, skip_bad: bool = False, recognized_only: bool = False
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Parse drawings from an ndjson file: (records with 'strokes' (N, 3) and metadata, skipped lines).

    A bad line (not JSON, too long, nested too deeply, numbers too large, no valid drawing) raises a
    DataError naming ``path:line``, or with ``skip_bad`` is listed in the skipped lines.
    """
    out, skipped = [], []
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below; only the open's error is ours to word
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    with fh:
        n = 0
        while True:
            try:
                raw = fh.readline(MAX_LINE + 1)
            except OSError as err:
                raise DataError(f"cannot read {path} after line {n}: {err}") from err
            if not raw:
                break
            n += 1
            if max_drawings is not None and len(out) >= max_drawings:
                break
            try:
                if len(raw) > MAX_LINE:
                    while raw and not raw.endswith(b"\n"):  # skip the rest of the over-long line
                        raw = fh.readline(MAX_LINE)
                    raise DataError(f"line longer than {MAX_LINE} bytes")
                line = raw.decode("utf-8", errors="replace")  # bad bytes fail as bad JSON, by line
                if not line.strip():
                    continue
                rec = _parse_line(line)
            except (DataError, S.StrokeError) as err:
                if not skip_bad:
                    raise DataError(f"{path}:{n}: {err}") from err
                skipped.append((f"{path}:{n}", str(err)))
                continue
            if recognized_only and rec["recognized"] is False:
                continue
            rec["line"] = n
            out.append(rec)
    return out, skipped


def _parse_line(line: str) -> dict:
    try:
        obj = json.loads(line)
    except RecursionError as err:
        raise DataError("JSON nested too deeply") from err
    except ValueError as err:  # JSONDecodeError, and integers longer than Python's digit limit
        raise DataError(f"not a JSON object ({err.msg if hasattr(err, 'msg') else err})") from err
    if not isinstance(obj, dict) or "drawing" not in obj:
        raise DataError(f"expected an object with a 'drawing' field, got {type(obj).__name__}")
    drawing = obj["drawing"]
    if _boolean_coordinates(drawing):
        raise DataError("bad 'drawing': true or false where a coordinate should be a number")
    try:
        strokes = S.from_quickdraw(drawing)
    except (TypeError, ValueError, OverflowError, RecursionError, MemoryError) as err:
        # StrokeError is a ValueError; nested junk raises TypeError, 400-digit integers OverflowError
        raise DataError(f"bad 'drawing': {type(err).__name__}: {str(err)[:200]}") from err
    return {
        "strokes": strokes,
        "key_id": _text(obj.get("key_id")),
        "word": _text(obj.get("word")),
        "countrycode": _text(obj.get("countrycode")),
        "recognized": obj.get("recognized") if isinstance(obj.get("recognized"), bool) else None,
    }


def _boolean_coordinates(drawing) -> bool:
    """Whether a stroke's x or y list holds JSON true / false: numpy would read them as 1 and 0 and load a
    drawing that is not in the file."""
    return isinstance(drawing, list) and any(
        isinstance(stroke, list) and any(isinstance(xs, list) and any(type(v) is bool for v in xs) for xs in stroke[:2])
        for stroke in drawing
    )


def _text(value) -> str:
    """A metadata field as short text; anything but a string or a number (nested junk) is ""."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return str(value)[:200]


MAX_MEMBER = 2 << 30  # bytes an .npz member may unpack to (the largest sketch-rnn class is ~100 MB)
MAX_INFLATION = 100  # stroke-3 arrays deflate a few-fold; a member that inflates 100-fold is a zip bomb
SMALL_MEMBER = 1 << 20  # bytes below which a member's inflation does not matter (it cannot cost much)
MAX_POINTS = 100_000  # points in one drawing; sketch-rnn drawings have hundreds, the longest raw ones thousands


def read_npz(path: Path) -> dict[str, list[np.ndarray]]:
    """Read a sketch-rnn ``.npz``: member name -> list of (n, 3) stroke-3 arrays, without numpy pickles.

    Every failure (not a zip, a bad or truncated member, a compression error, a header asking for
    more memory than the member holds, an object array of anything but numeric (n, 3) arrays) is a
    DataError naming the file and member; nothing in the file is executed.

    What a member may cost is bounded by what the loader can use, before it is inflated: the zip's
    declared sizes must not inflate more than ``MAX_INFLATION``-fold (a 1 MB file of zeros would
    otherwise unpack to a gigabyte under ``MAX_MEMBER``), and no drawing, from a plain array's header
    or an object array's items, may have more than ``MAX_POINTS`` points.
    """
    out = {}
    try:
        zf = zipfile.ZipFile(path)
    except Exception as err:  # noqa: BLE001 - BadZipFile, OSError, ValueError, EOFError... for a malformed zip
        raise DataError(f"cannot read {path}: not a valid .npz ({type(err).__name__}: {err})") from err
    with zf:
        for info in zf.infolist():
            member = info.filename
            name = member[:-4] if member.endswith(".npy") else member
            if info.file_size > MAX_MEMBER:
                raise DataError(f"{path}[{member}]: unpacks to {info.file_size} bytes, more than {MAX_MEMBER}")
            if info.file_size > max(SMALL_MEMBER, MAX_INFLATION * info.compress_size):
                raise DataError(
                    f"{path}[{member}]: would inflate {info.compress_size} bytes to {info.file_size}, more than "
                    f"{MAX_INFLATION}-fold: a zip bomb, not drawings (stroke-3 arrays compress a few-fold)"
                )
            try:
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    reader = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, fortran, dtype = reader(f)
                    if dtype.hasobject:
                        if dtype != np.dtype(object):
                            raise DataError(f"{path}[{member}]: structured dtype {dtype} with objects")
                        try:
                            arr = safe_pickle.loads(
                                f.read(), f"{path}[{member}]", encoding="latin1", object_items=(None, 3)
                            )
                        except safe_pickle.UnsafePickleError as err:
                            raise safe_pickle.UnsafePickleError(
                                f"{err} (a sketch-rnn member holds numeric (n, 3) stroke-3 arrays only)"
                            ) from None
                    else:
                        if len(shape) in (2, 3) and shape[-2] > MAX_POINTS:
                            raise DataError(
                                f"{path}[{member}]: a drawing of {shape[-2]} points, more than {MAX_POINTS}: "
                                "not a sketch"
                            )
                        need = int(np.prod(shape, dtype=object)) * dtype.itemsize
                        if need > info.file_size:
                            raise DataError(
                                f"{path}[{member}]: the header asks for {shape} {dtype} "
                                f"({need} bytes), the member holds {info.file_size}"
                            )
                        f.seek(0)
                        arr = np.lib.format.read_array(f, allow_pickle=False)
            except DataError:
                raise
            except Exception as err:  # noqa: BLE001 - zlib.error, TypeError, MemoryError, ValueError, EOFError...
                raise DataError(f"cannot read {path}[{member}]: {type(err).__name__}: {err}") from err
            if not isinstance(arr, np.ndarray):
                raise DataError(f"{path}[{member}]: expected an array of sketches, got {type(arr).__name__}")
            items = list(arr) if arr.dtype.hasobject or arr.ndim == 3 else [arr]
            for i, item in enumerate(items):
                if (
                    not isinstance(item, np.ndarray)
                    or item.ndim != 2
                    or item.shape[1:] != (3,)
                    or item.dtype.kind not in "fiu"
                ):
                    raise DataError(
                        f"{path}[{member}] item {i}: expected a numeric (n, 3) stroke-3 array, "
                        f"got {type(item).__name__} {getattr(item, 'shape', '')}"
                    )
                if len(item) > MAX_POINTS:
                    raise DataError(f"{path}[{member}] item {i}: {len(item)} points, more than {MAX_POINTS}")
            out[name] = items
    return out


def load(
    root=None,
    classes=None,
    max_per_class: int | None = None,
    recognized_only: bool = False,
    unseen=None,
    fractions=(0.7, 0.1, 0.2),
    val_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
) -> SBIRData:
    """Load QuickDraw drawings as strokes.

    Args:
        classes: a list of class names to keep (default: every file).
        max_per_class: read at most this many drawings per class (the first in the file).
        recognized_only: keep only drawings the game recognised (ndjson only).
        unseen / fractions / val_fraction / seed: splits, see ``folders.assign_splits``.
        skip_bad: skip malformed lines or sketches (``info["skipped"]``) instead of failing.
    Returns:
        SBIRData with strokes, no photos; columns ``countrycode``, ``recognized`` and, for
        sketch-rnn files, ``file_split`` (train / val / test as in the file).
    """
    folder, files, stray = find(root)
    if classes is not None:
        missing = [c for c in classes if c not in files]
        if missing:
            raise DataError(f"quickdraw: no file for classes {missing[:10]} in {folder}.\nExpected layout:\n{LAYOUT}")
        files = {c: files[c] for c in classes}
    rows, strokes, skipped = [], [], []
    for cls, path in sorted(files.items()):
        if path.suffix.lower() == ".ndjson":
            try:
                recs, bad = read_ndjson(path, max_per_class, skip_bad, recognized_only)
            except DataError as err:  # the file itself is unreadable
                if not skip_bad:
                    raise
                skipped.append((str(path), str(err)))
                continue
            skipped += bad
            for r in recs:
                sid = f"{cls}/{r['key_id'] or r['line']}"
                rows.append(
                    {
                        "sketch_id": sid,
                        "photo_id": "",
                        "instance": sid,
                        "category": cls,
                        "countrycode": r["countrycode"],
                        "recognized": str(r["recognized"]),
                        "file_split": "",
                    }
                )
                strokes.append(r["strokes"])
        else:
            n = 0
            try:
                members = read_npz(path)
            except DataError as err:
                if not skip_bad:
                    raise
                skipped.append((str(path), str(err)))
                continue
            for member, items in members.items():
                for i, item in enumerate(items):
                    if max_per_class is not None and n >= max_per_class:
                        break
                    try:
                        s = S.from_stroke3(item)
                    except S.StrokeError as err:
                        if not skip_bad:
                            raise DataError(f"{path}[{member}] item {i}: {err}") from err
                        skipped.append((f"{path}[{member}][{i}]", str(err)))
                        continue
                    sid = f"{cls}/{member}/{i}"
                    rows.append(
                        {
                            "sketch_id": sid,
                            "photo_id": "",
                            "instance": sid,
                            "category": cls,
                            "countrycode": "",
                            "recognized": "",
                            "file_split": NPZ_SPLITS.get(member, member),
                        }
                    )
                    strokes.append(s)
                    n += 1
    if not rows:
        raise DataError(f"quickdraw: no readable drawings in {folder}.\nExpected layout:\n{LAYOUT}")
    sketches = pd.DataFrame(rows)
    dup = sketches["sketch_id"].duplicated()
    if dup.any():  # repeated key_ids (concatenated downloads) would merge instances
        sketches.loc[dup, "sketch_id"] = sketches.loc[dup, "sketch_id"] + "#" + sketches.index[dup].astype(str)
        sketches["instance"] = sketches["sketch_id"]
    photos = pd.DataFrame(columns=["photo_id", "instance", "category", "medium"])
    info = {
        "root": str(folder),
        "ignored": stray,
        "skipped": skipped,
        "formats": sorted({p.suffix.lower() for p in files.values()}),
        "max_per_class": max_per_class,
    }
    info["split"] = assign_splits(sketches, photos, unseen, fractions, val_fraction, seed)
    info["fingerprint"] = files_fingerprint(sorted(files.values())) + f"-{max_per_class}-{recognized_only}"
    return SBIRData("quickdraw", sketches, photos, strokes=strokes, info=info)


def check(root=None) -> Path:
    """Layout check: the QuickDraw folder, or a DataError naming what is missing."""
    return find(root)[0]
