"""The paired shoe folder (304 photos, 3 free-hand sketches each, 13 part attributes).

    <root>/shoes304/photo/NNN.jpg                 product photos
    <root>/shoes304/sketch/NNN-K.jpg              sketches of photo NNN, K = 1, 2, 3
    <root>/shoes304/13_A_image_label.mat          'image_label'  (n_photos, 13) binary attributes
    <root>/shoes304/13_A_sketch_label.mat         'sketch_label' (n_sketches, 13) binary attributes

K is a sketch index, not a drawer id (``../shared/data/README.md``). The instance split
(train / val / test photos) is drawn with a seed and recorded in ``info["split"]``.
The attribute files are optional; their rows are matched to files as described in ``load``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from sbir_core.data.base import (
    DataError,
    SBIRData,
    files_fingerprint,
    find_child,
    find_dataset_dir,
    first_paths,
    list_images,
    unique_ids,
)
from sbir_core.data.folders import drop_bad, share

LAYOUT = """  <root>/shoes304/photo/NNN.jpg               product photos (NNN = photo number)
  <root>/shoes304/sketch/NNN-K.jpg            sketches of photo NNN (K = sketch index)
  <root>/shoes304/13_A_image_label.mat        'image_label' (n_photos, 13)   (optional)
  <root>/shoes304/13_A_sketch_label.mat       'sketch_label' (n_sketches, 13) (optional)
  (<root> is SBIR_DATA or the root= argument; folder names match without regard to case)"""
SKETCH_NAME = re.compile(r"^(\d+)-(\d+)$")
N_ATTRIBUTES = 13


def find(root=None) -> Path:
    """The shoes304 folder with its photo/ and sketch/ folders, or a DataError naming what is missing."""
    folder = find_dataset_dir(
        root,
        ["shoes304", "shoes", "FG-SBIR-shoes"],
        "shoes304",
        LAYOUT,
        marker=lambda p: (p / "sketch").is_dir() and (p / "photo").is_dir(),
    )
    find_child(folder, "photo", "shoes304", LAYOUT, want_dir=True)
    find_child(folder, "sketch", "shoes304", LAYOUT, want_dir=True)
    return folder


def _read_mat(path: Path, key: str, rows: int) -> np.ndarray:
    import scipy.io as sio

    try:
        mat = sio.loadmat(path)
    except Exception as err:  # noqa: BLE001 - scipy raises many types for a malformed .mat
        raise DataError(f"cannot read {path}: {type(err).__name__}: {err}") from err
    if key not in mat:
        raise DataError(f"{path}: no variable {key!r} (found {sorted(k for k in mat if not k.startswith('__'))})")
    arr = np.asarray(mat[key])
    if arr.ndim != 2 or arr.shape != (rows, N_ATTRIBUTES) or arr.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: {key!r} has shape {arr.shape} and dtype {arr.dtype}, expected numeric ({rows}, {N_ATTRIBUTES})"
        )
    bad = np.argwhere((arr != 0) & (arr != 1))  # NaN, 0.5 or 2 would cast to some int8 silently
    if len(bad):
        r, c = bad[0]
        raise DataError(
            f"{path}: {key!r} must hold binary attributes, 0 or 1; row {r}, column {c} is {arr[r, c].item()!r} "
            f"({len(bad)} such values)"
        )
    return arr.astype(np.int8)


def split_instances(instances: list[str], fractions=(0.7, 0.1, 0.2), seed: int = 0) -> dict[str, str]:
    """A seeded split of instances: instance -> "train" | "val" | "test" (sizes by rounding)."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(sorted(instances))
    n_test = share(fractions[2], len(order), keep=2, least=2)
    n_val = share(fractions[1], len(order), keep=n_test + 1, least=2)
    out = {}
    for i, inst in enumerate(order):
        out[str(inst)] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def load(
    root=None, fractions=(0.7, 0.1, 0.2), seed: int = 0, attributes: str | bool = "auto", skip_bad: bool = False
) -> SBIRData:
    """Load the paired shoe folder.

    Args:
        root: the data root (default ``$SBIR_DATA``); the folder is ``<root>/shoes304``.
        fractions: train / val / test shares of the photos (instances), drawn with ``seed``.
        attributes: "auto" (read the .mat files when present), True (require them), False.
        skip_bad: decode every image once and skip unreadable ones (``info["skipped"]``),
            instead of failing on the first one when it is rendered.
    Returns:
        SBIRData with sketch files and photo files; columns ``sketch_index`` (K, text) and, with
        attributes, ``attr_0`` .. ``attr_12`` in both tables.

    The sketch attribute rows are ordered K-major (row = (K - 1) * n_photos + photo - 1) in the
    published file; the loader checks this against photo-major order by agreement with the
    photo attributes and records the order it used and both agreements in ``info``.
    """
    folder = find(root)
    photo_dir = find_child(folder, "photo", "shoes304", LAYOUT, want_dir=True)
    sketch_dir = find_child(folder, "sketch", "shoes304", LAYOUT, want_dir=True)
    photo_files, stray_p = list_images(photo_dir, folder)
    sketch_files, stray_s = list_images(sketch_dir, folder)
    keep, repeats = first_paths(photo_files + sketch_files)  # a file linked under a second name counts once
    photo_files, sketch_files = (
        [f for f, k in zip(photo_files, keep) if k],
        [f for f, k in zip(sketch_files, keep[len(photo_files) :]) if k],
    )
    ignored = stray_p + stray_s + repeats
    photos = {}
    for f in photo_files:
        if f.stem.isdigit() and f.stem.isascii():
            if f.stem in photos:
                raise DataError(
                    f"shoes304: duplicate photo id {f.stem!r}: {photos[f.stem]} and {f}; remove or rename one"
                )
            photos[f.stem] = f
        else:
            ignored.append(str(f))
    if not photos:
        raise DataError(f"shoes304: no photos named NNN.jpg in {photo_dir}.\nExpected layout:\n{LAYOUT}")
    rows, files = [], []
    for f in sketch_files:
        m = SKETCH_NAME.match(f.stem) if f.stem.isascii() else None
        if m is None:
            ignored.append(str(f))
            continue
        pid, k = m.groups()
        if pid not in photos:
            raise DataError(
                f"shoes304: sketch {f} belongs to photo {pid}, but {photo_dir / (pid + '.jpg')} "
                f"is missing.\nExpected layout:\n{LAYOUT}"
            )
        rows.append({"sketch_id": f.stem, "photo_id": pid, "instance": pid, "category": "shoe", "sketch_index": k})
        files.append(f)
    if not rows:
        raise DataError(f"shoes304: no sketches named NNN-K.jpg in {sketch_dir}.\nExpected layout:\n{LAYOUT}")
    unique_ids([r["sketch_id"] for r in rows], files, "shoes304 sketch")
    order = sorted(range(len(rows)), key=lambda i: (int(rows[i]["photo_id"]), int(rows[i]["sketch_index"])))
    sketches = pd.DataFrame([rows[i] for i in order])
    files = [files[i] for i in order]
    photo_ids = sorted(photos, key=int)
    photo_table = pd.DataFrame({"photo_id": photo_ids, "instance": photo_ids, "category": "shoe", "medium": "photo"})
    photo_paths = [photos[p] for p in photo_ids]

    split = split_instances(photo_ids, fractions, seed)
    sketches["split"] = sketches["instance"].map(split)
    photo_table["split"] = photo_table["instance"].map(split)
    info = {
        "root": str(folder),
        "ignored": ignored,
        "split": {
            "seed": seed,
            "fractions": list(fractions),
            "instances": {
                s: sorted((i for i, v in split.items() if v == s), key=int) for s in ("train", "val", "test")
            },
        },
    }

    mats = [folder / "13_A_image_label.mat", folder / "13_A_sketch_label.mat"]
    mats = [next((c for c in folder.iterdir() if c.name.lower() == m.name.lower()), m) for m in mats]
    if attributes is True or (attributes == "auto" and all(m.exists() for m in mats)):
        for m in mats:
            if not m.exists():
                find_child(folder, m.name, "shoes304", LAYOUT)
        _attach_attributes(sketches, photo_table, mats, info)

    stat_files = photo_paths + files + [m for m in mats if m.exists()]
    sketches, files, photo_table, photo_paths, info["skipped"] = drop_bad(
        sketches, files, photo_table, photo_paths, skip_bad
    )
    info["fingerprint"] = files_fingerprint(stat_files)
    return SBIRData("shoes304", sketches, photo_table, sketch_files=files, photo_files=photo_paths, info=info)


def _attach_attributes(sketches: pd.DataFrame, photo_table: pd.DataFrame, mats: list[Path], info: dict) -> None:
    n_p = len(photo_table)
    img = _read_mat(mats[0], "image_label", n_p)
    skt = _read_mat(mats[1], "sketch_label", len(sketches))
    p_row = {p: i for i, p in enumerate(photo_table["photo_id"])}
    counts = sketches.groupby("photo_id").size()
    k_rank = sketches.groupby("photo_id").cumcount().to_numpy()  # 0, 1, 2 within each photo (sorted by K)
    pidx = sketches["photo_id"].map(p_row).to_numpy()
    photo_major = np.arange(len(sketches))
    agree_photo = float((skt[photo_major] == img[pidx]).mean())
    if counts.nunique() == 1 and len(counts) == n_p and counts.iloc[0] * n_p == len(sketches):
        k_major = k_rank * n_p + pidx
        agree_k = float((skt[k_major] == img[pidx]).mean())
    else:
        # K-major order needs every photo to have the same number of sketches
        k_major, agree_k = None, float("nan")
    use_k = k_major is not None and agree_k >= agree_photo
    rows = k_major if use_k else photo_major
    for j in range(N_ATTRIBUTES):
        photo_table[f"attr_{j}"] = img[:, j]
        sketches[f"attr_{j}"] = skt[rows, j]
    info["attributes"] = {
        "order": "k-major" if use_k else "photo-major",
        "agreement_k_major": agree_k,
        "agreement_photo_major": agree_photo,
    }


def check(root=None) -> Path:
    """Layout check: the shoes304 folder, or a DataError naming what is missing."""
    return find(root)
