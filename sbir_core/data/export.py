"""Export any SBIRData with strokes in the QMUL-Shoe-V2 layout (METHODS.md §0.1).

``<out>/<Name>/<Name>_Coordinate`` is a pickled plain dict ``'/train/<photo>_<k>'`` or
``'/test/<photo>_<k>'`` -> float64 (N, 3) array (x, y, pen), and ``<out>/<Name>/photo/<photo>.png``
holds the paired photos, so FG-SBIR code bases written for ShoeV2/ChairV2 train on it unchanged.
QMUL has no validation split: ``val_as`` says where val sketches go ("train", "test" or "drop").
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
from PIL import Image

from sbir_core import strokes as S
from sbir_core.data.base import DataError, SBIRData

_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def export_qmul(
    data: SBIRData, out_dir, name: str = "StyleWorld", val_as: str = "train", photo_size: int | None = None
) -> Path:
    """Write ``data`` in the QMUL layout under ``out_dir/name``; return that folder.

    Only sketches with strokes and a paired photo are exported; the photo files are the paired
    photos (``photo_images(photo_size)``, default: their stored size). Sketch indices k count
    1, 2, ... per photo in table order.
    """
    if data.strokes is None:
        raise DataError(f"{data.name}: the QMUL layout needs stroke sketches, this dataset has image files")
    if val_as not in ("train", "test", "drop"):
        raise ValueError(f'val_as must be "train", "test" or "drop", got {val_as!r}')
    if not _SAFE.match(name):
        raise ValueError(f"name must be a plain file name (letters, digits, . _ -), got {name!r}")
    pidx = data.photo_index()
    sk = data.sketches
    coords, used, counts = {}, {}, {}
    for i in range(len(sk)):
        split = sk["split"].iat[i]
        split = val_as if split == "val" else split
        if pidx[i] < 0 or split not in ("train", "test"):
            continue
        photo = str(sk["photo_id"].iat[i])
        if not _SAFE.match(photo):
            raise DataError(f"photo id {photo!r} is not a plain file name")
        if used.setdefault(photo, split) != split:
            raise DataError(f"photo {photo} has sketches in both train and test")
        counts[photo] = counts.get(photo, 0) + 1
        coords[f"/{split}/{photo}_{counts[photo]}"] = S.check_strokes(data.strokes[i])
    if not coords:
        raise DataError(f"{data.name}: no paired train/test sketches to export")
    folder = Path(out_dir) / name
    (folder / "photo").mkdir(parents=True, exist_ok=True)
    rows = sorted({int(pidx[i]) for i in range(len(sk)) if str(sk["photo_id"].iat[i]) in used})
    images = data.photo_images(photo_size or _stored_size(data))
    for j in rows:
        Image.fromarray(np.ascontiguousarray(images[j])).save(
            folder / "photo" / f"{data.photos['photo_id'].iat[j]}.png"
        )
    target = folder / f"{name}_Coordinate"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(coords, f, protocol=4)
    os.replace(tmp, target)
    return folder


def _stored_size(data: SBIRData) -> int:
    return int(data.photo_arrays.shape[1]) if data.photo_arrays is not None else 256
