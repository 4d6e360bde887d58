"""The Sketchy database (Sangkloy et al. 2016) in its release layout, with the extended photos.

    <root>/sketchy/256x256/sketch/<aug>/<class>/<photo>-<n>.png    sketches of photo <photo>
    <root>/sketchy/256x256/photo/<aug>/<class>/<photo>.jpg         the 12,500 paired photos
    <root>/sketchy/<extended>/<class>/<file>                       (optional) extended photos,
        <extended> = EXTEND_image_sketchy (SAKE / SEM-PCYC), extended_photo or photo_ext

``<aug>`` is ``tx_000000000000`` (default: non-uniformly scaled to the box) or another of the
release's variants (e.g. ``tx_000100000000``: bounding box + 10 %); REFERENCE_NUMBERS.md §4.6.
``256x256`` may also sit inside ``rendered_256x256/``. Splits: ``folders.assign_splits``; the
zero-shot split of Yelamarthi et al. (104 seen / 21 unseen) is ``unseen="yelamarthi21"``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sbir_core.data.base import DataError, SBIRData, find_dataset_dir, safe_text
from sbir_core.data.folders import _subdir, category_dataset, scan_classes

LAYOUT = """  <root>/sketchy/256x256/sketch/tx_000000000000/<class>/<photo>-<n>.png
  <root>/sketchy/256x256/photo/tx_000000000000/<class>/<photo>.jpg
  <root>/sketchy/EXTEND_image_sketchy/<class>/<file>    (optional: the extended photo set)
  (256x256 may sit inside rendered_256x256/; <root> is SBIR_DATA or the root= argument;
   folder names match without regard to case)"""
EXTENDED = ["EXTEND_image_sketchy", "extended_photo", "photo_ext", "extended_photos"]


def _release(folder: Path) -> Path | None:
    direct = _subdir(folder, ["256x256"])
    if direct is not None:
        return direct
    rendered = _subdir(folder, ["rendered_256x256"])
    return _subdir(rendered, ["256x256"]) if rendered is not None else None


def find(root=None, augmentation: str = "tx_000000000000") -> tuple[Path, Path, Path]:
    """(dataset folder, sketch folder, photo folder) for one augmentation, or a DataError."""
    folder = find_dataset_dir(
        root,
        ["sketchy", "Sketchy", "sketchy_database", "Sketchy_database"],
        "sketchy",
        LAYOUT,
        marker=lambda p: _release(p) is not None,
    )
    rel = _release(folder)
    if rel is None:
        raise DataError(f"sketchy: missing folder {folder / '256x256'}.\nExpected layout:\n{LAYOUT}")
    out = []
    for kind in ("sketch", "photo"):
        d = _subdir(rel, [kind])
        aug = _subdir(d, [augmentation]) if d is not None else None
        if aug is None:
            raise DataError(f"sketchy: missing folder {rel / kind / augmentation}.\nExpected layout:\n{LAYOUT}")
        out.append(aug)
    return folder, out[0], out[1]


def load(
    root=None,
    augmentation: str = "tx_000000000000",
    extended: str | bool = "auto",
    unseen=None,
    fractions=(0.7, 0.1, 0.2),
    val_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
    paired_only: bool = False,
) -> SBIRData:
    """Load Sketchy: sketches paired with their photos, plus the extended photos when asked/present.

    Args:
        augmentation: the release variant folder (``tx_000000000000`` ...).
        extended: "auto" (add the extended photo set when present), True (require it), False.
        unseen: None (category-level), "yelamarthi21", a list of classes or a number drawn with ``seed``.
        paired_only: keep only sketches with their source photo and those photos (no extended
            photos): the instance-paired fine-grained set, as ``load_domains(paired_only=True)`` on PACS.
    Returns:
        SBIRData: sketch ``<class>/<photo>-<n>``, photo ``<class>/<photo>``; extended photos have
        ``medium`` "photo" and column ``extended`` True. Sketches whose photo is absent keep
        photo_id "" and are counted in ``info["unpaired"]``.
    """
    folder, sk_dir, ph_dir = find(root, augmentation)
    sk_class, stray = scan_classes(sk_dir, folder)
    if not sk_class:
        raise DataError(f"sketchy: no class folders with images in {sk_dir}.\nExpected layout:\n{LAYOUT}")
    ph_class, s = scan_classes(ph_dir, folder)
    stray += s
    photo_rows, photo_files = [], []
    for cls, fs in ph_class.items():
        for f in fs:
            photo_rows.append(
                {
                    "photo_id": f"{cls}/{safe_text(f.stem)}",
                    "instance": f"{cls}/{safe_text(f.stem)}",
                    "category": cls,
                    "medium": "photo",
                    "extended": False,
                }
            )
            photo_files.append(f)
    ext_dir = _subdir(folder, EXTENDED)
    if extended is True and ext_dir is None:
        raise DataError(
            f"sketchy: extended=True but no {' or '.join(EXTENDED)} folder in {folder}.\nExpected layout:\n{LAYOUT}"
        )
    if extended is not False and ext_dir is not None:
        e_class, s = scan_classes(ext_dir, folder)
        stray += s
        for cls, fs in e_class.items():
            for f in fs:
                pid = f"ext/{cls}/{safe_text(f.stem)}"
                photo_rows.append(
                    {"photo_id": pid, "instance": pid, "category": cls, "medium": "photo", "extended": True}
                )
                photo_files.append(f)
    known = {r["photo_id"] for r in photo_rows if not r["extended"]}
    rows, files, unpaired = [], [], 0
    for cls, fs in sk_class.items():
        for f in fs:
            stem = safe_text(f.stem)
            photo = stem.rsplit("-", 1)[0] if "-" in stem else stem
            pid = f"{cls}/{photo}"
            if pid not in known:
                unpaired += 1
                pid = ""
            rows.append(
                {"sketch_id": f"{cls}/{stem}", "photo_id": pid, "instance": pid or f"{cls}/{stem}", "category": cls}
            )
            files.append(f)
    sketches = pd.DataFrame(rows)
    photos = pd.DataFrame(photo_rows, columns=["photo_id", "instance", "category", "medium", "extended"])
    info = {
        "root": str(folder),
        "augmentation": augmentation,
        "ignored": stray,
        "unpaired": unpaired,
        "extended_folder": str(ext_dir) if ext_dir is not None and extended is not False else None,
    }
    if paired_only:
        photos["medium"] = photos["medium"].where(~photos["extended"], "extended_photo")
    return category_dataset(
        "sketchy",
        sketches,
        files,
        photos,
        photo_files,
        info,
        unseen,
        fractions,
        val_fraction,
        seed,
        skip_bad,
        paired_only,
    )


def check(root=None) -> Path:
    """Layout check: the Sketchy sketch folder, or a DataError naming what is missing."""
    return find(root)[1]
