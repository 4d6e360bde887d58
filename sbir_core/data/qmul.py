"""QMUL-Shoe-V2 and QMUL-Chair-V2 in their official layout (METHODS.md §0.1).

    <root>/<Name>/<Name>_Coordinate     pickled dict '/train/<photo>_<k>' -> (N, 3) float (x, y, pen)
    <root>/<Name>/photo/<photo>.png     one flat folder of train and test photos (optional)

The split comes from the key; the photo name is the key's last path part minus its final
``_<k>`` (photo names contain underscores, so the split is on the LAST one). Without a photo
folder the loader runs in photo-less mode (the shared ChairV2 copy): sketches only.
A validation split is drawn from the train instances with a seed and recorded in ``info``.
The pickle is read with ``safe_pickle`` (numpy arrays only).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from sbir_core import strokes as S
from sbir_core.data import safe_pickle
from sbir_core.data.base import (
    DataError,
    SBIRData,
    check_images,
    files_fingerprint,
    find_child,
    find_dataset_dir,
    list_images,
    unique_ids,
)
from sbir_core.data.folders import share

# the suffix is usually a number (1, 2, 3, 10, 70...) but 3 ChairV2 keys end in a worker-like id
KEY = re.compile(r"^/?(train|test)/(.+)_([^_/]+)$")
NAMES = {"shoev2": ("ShoeV2", "shoe"), "chairv2": ("ChairV2", "chair")}


def layout(name: str) -> str:
    """The expected folder layout of one QMUL dataset, for error messages."""
    return (
        f"  <root>/{name}/{name}_Coordinate   pickled dict '/train/<photo>_<k>' or '/test/<photo>_<k>'"
        f" -> (N, 3) float array\n"
        f"  <root>/{name}/photo/<photo>.png   (optional: without it, photo-less mode)\n"
        f"  (<root> is SBIR_DATA or the root= argument; folder names match without regard to case)"
    )


def find(root=None, name: str = "ChairV2") -> Path:
    """The coordinate file of ``name`` (ShoeV2 or ChairV2) under the data root, or a DataError."""
    coord = f"{name}_Coordinate"
    folder = find_dataset_dir(
        root,
        [name, name.lower(), f"QMUL-{name}", f"QMUL_{name}"],
        name,
        layout(name),
        marker=lambda p: any(c.name.lower() == coord.lower() for c in p.iterdir()),
    )
    return find_child(folder, coord, name, layout(name))


def parse_key(key) -> tuple[str, str, str]:
    """Split a coordinate-file key into (split, photo name, sketch index as text); DataError when malformed."""
    if not isinstance(key, str):
        raise DataError(f"key {key!r} is a {type(key).__name__}, expected a string '/train/<photo>_<k>'")
    m = KEY.match(key)
    if m is None:
        raise DataError(f"key {key!r} does not look like '/train/<photo>_<k>' or '/test/<photo>_<k>'")
    split, photo, k = m.groups()
    if "/" in photo:
        raise DataError(f"key {key!r}: the photo name may not contain '/'")
    return split, photo, k


def read_coordinates(path: Path, skip_bad: bool = False) -> dict[str, np.ndarray]:
    """Read and validate a ``*_Coordinate`` file: key -> canonical (N, 3) float64 strokes.

    A bad entry (malformed key, non-numeric or invalid strokes) raises a DataError naming the file
    and key, or with ``skip_bad`` is left out and reported as a (place, reason) pair to the
    caller (see ``load``): returns (sketches, skipped) then; an unreadable or hostile file always raises,
    and so do two keys for one sketch ('/train/x_1' and 'train/x_1'): which one holds the sketch is not
    for the loader to guess, and keeping both would count it twice.
    """
    raw = safe_pickle.load(path)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a pickled dict of sketches, got {type(raw).__name__}")
    if not raw:
        raise DataError(f"{path}: the coordinate dict is empty")
    first: dict[str, str] = {}
    for key in raw:
        if isinstance(key, str):
            name = key.removeprefix("/")
            if name in first:
                raise DataError(
                    f"{path}: keys {first[name]!r} and {key!r} name the same sketch (with and without a "
                    "leading '/'); remove one"
                )
            first[name] = key
    out, skipped = {}, []
    for key, value in raw.items():
        try:
            parse_key(key)
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
                raise DataError(
                    f"key {key!r} holds a {type(value).__name__}"
                    f"{'' if not isinstance(value, np.ndarray) else ' of ' + str(value.dtype)}, "
                    f"expected a numeric (N, 3) array"
                )
            try:
                out[key] = S.check_strokes(value)
            except S.StrokeError as err:
                raise DataError(f"key {key!r}: {err}") from err
        except DataError as err:
            if not skip_bad:
                raise DataError(f"{path}: {err}") from err
            skipped.append((f"{path}[{str(key)[:100]!r}]", str(err)))
    if not out:
        raise DataError(f"{path}: no readable sketches ({len(skipped)} bad entries)")
    return (out, skipped) if skip_bad else out


def load(
    root=None,
    name: str = "ChairV2",
    photos: str | bool = "auto",
    val_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
) -> SBIRData:
    """Load ShoeV2 or ChairV2 from the official layout.

    Args:
        root: the data root (default ``$SBIR_DATA``); the dataset folder is ``<root>/<name>``.
        name: "ShoeV2" or "ChairV2" (the folder and file prefix).
        photos: "auto" (use ``photo/`` when present), True (require it), False (photo-less).
        val_fraction: share of train instances moved to "val", drawn with ``seed`` (0: none).
        skip_bad: skip unreadable photos (listed in ``info["skipped"]``) instead of failing.
    Returns:
        SBIRData with strokes; sketch table column ``sketch_index`` holds the key's suffix k as text
        (a sketch index, not a drawer id: "1", "2", "10", and in ChairV2 three worker-like ids).
    """
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    coord = find(root, name)
    folder = coord.parent
    category = NAMES.get(name.lower(), (name, name.lower()))[1]
    data, bad_keys = read_coordinates(coord, True) if skip_bad else (read_coordinates(coord), [])
    keys = sorted(data)
    rows = []
    for key in keys:
        split, photo, k = parse_key(key)
        rows.append(
            {
                "sketch_id": key.lstrip("/"),
                "photo_id": photo,
                "instance": photo,
                "category": category,
                "drawer": "",
                "drawer_split": "",
                "split": split,
                "sketch_index": k,
            }
        )
    sketches = pd.DataFrame(rows)
    clash = sketches.groupby("instance")["split"].nunique()
    if (clash > 1).any():
        raise DataError(f"{coord}: photo {clash[clash > 1].index[0]!r} has sketches in both train and test")

    train_inst = sorted(sketches.loc[sketches["split"] == "train", "instance"].unique())
    n_val = share(val_fraction, len(train_inst), least=2)
    val_inst = sorted(np.random.default_rng(seed).choice(train_inst, n_val, replace=False).tolist()) if n_val else []
    sketches.loc[sketches["instance"].isin(val_inst), "split"] = "val"

    photo_dir = next((c for c in sorted(folder.iterdir()) if c.is_dir() and c.name.lower() == "photo"), None)
    if photos is True and photo_dir is None:
        find_child(folder, "photo", name, layout(name), want_dir=True)
    use_photos = photos is not False and photo_dir is not None
    info = {
        "root": str(folder),
        "coordinate_file": str(coord),
        "photo_mode": use_photos,
        "val": {"seed": seed, "fraction": val_fraction, "instances": val_inst},
        "version_note": f"{len(sketches)} sketches, {sketches['instance'].nunique()} photos "
        "(compare with METHODS.md §0.2 before quoting published numbers)",
    }
    stat_files = [coord]
    photo_files = None
    photo_table = pd.DataFrame(columns=["photo_id", "instance", "category", "split", "medium"])
    if use_photos:
        files, stray = list_images(photo_dir, folder)
        unique_ids([f.stem for f in files], files, f"{name} photo")
        by_stem = {f.stem: f for f in files}
        used = sketches.drop_duplicates("instance")[["instance", "split"]]
        missing = [p for p in used["instance"] if p not in by_stem]
        if missing:
            raise DataError(
                f"{name}: {len(missing)} photos named by the coordinate file are missing, e.g. "
                f"{photo_dir / (missing[0] + '.png')}.\nExpected layout:\n{layout(name)}"
            )
        photo_files = [by_stem[p] for p in used["instance"]]
        keep, skipped = check_images(photo_files, skip_bad, "RGB") if skip_bad else (None, [])
        photo_table = pd.DataFrame(
            {
                "photo_id": used["instance"].values,
                "instance": used["instance"].values,
                "category": category,
                "split": used["split"].values,
                "medium": "photo",
            }
        )
        if skipped:
            bad = set(photo_table.loc[~keep, "photo_id"])
            photo_table, photo_files = photo_table[keep], [f for f, k in zip(photo_files, keep) if k]
            dropped = sketches["photo_id"].isin(bad)
            sketches, keys = sketches[~dropped], [k for k, d in zip(keys, dropped) if not d]
            info["skipped"] = skipped
        named = set(used["instance"])
        info["ignored"] = stray + [str(f) for f in files if f.stem not in named]
        stat_files += photo_files
    if bad_keys:
        info["skipped"] = bad_keys + info.get("skipped", [])
    info["fingerprint"] = files_fingerprint(stat_files)
    return SBIRData(
        name.lower(), sketches, photo_table, strokes=[data[k] for k in keys], photo_files=photo_files, info=info
    )


def load_shoev2(root=None, **options) -> SBIRData:
    """QMUL-Shoe-V2 (``<root>/ShoeV2``); options as in ``load``."""
    return load(root, "ShoeV2", **options)


def load_chairv2(root=None, **options) -> SBIRData:
    """QMUL-Chair-V2 (``<root>/ChairV2``); options as in ``load``."""
    return load(root, "ChairV2", **options)


def check_shoev2(root=None) -> Path:
    """Layout check: the ShoeV2 coordinate file, or a DataError naming what is missing."""
    return find(root, "ShoeV2")


def check_chairv2(root=None) -> Path:
    """Layout check: the ChairV2 coordinate file, or a DataError naming what is missing."""
    return find(root, "ChairV2")
