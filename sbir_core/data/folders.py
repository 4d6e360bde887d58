"""Image-folder datasets (TU-Berlin, PACS-like domain folders) and the category-level splits.

    TU-Berlin       <root>/tuberlin/png/<class>/<n>.png      (optional photos: <root>/tuberlin/<photo dir>/<class>/*)
    domain folders  <root>/<name>/<domain>/<class>/<file>    (PACS: photo, art_painting, cartoon, sketch)

Splits, shared with Sketchy and QuickDraw (``assign_splits``):

* category-level (``unseen=None``): within every class, instances go to train / val / test with
  seeded ``fractions``;
* zero-shot (``unseen`` = a list of classes, a number of classes drawn with the seed, or a named
  split such as ``"yelamarthi21"``, the Sketchy 104/21 split of Yelamarthi et al. ECCV 2018):
  every sketch and photo of an unseen class is "test"; seen classes split their instances into
  train / val with ``val_fraction``. Column ``category_split`` says "seen" or "unseen".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sbir_core.data.base import (
    DataError,
    SBIRData,
    check_images,
    files_fingerprint,
    find_dataset_dir,
    first_paths,
    list_images,
    outside,
    safe_text,
    unique_ids,
)

# Sketchy classes absent from ImageNet-1K: the unseen classes of Yelamarthi et al. (ECCV 2018),
# as in Adaptive-FGSBIR Unseen_Class/dataset.py and ZSE-SBIR test_class_sketchy21.txt (METHODS.md §D).
YELAMARTHI_21 = (
    "bat",
    "cabin",
    "cow",
    "dolphin",
    "door",
    "giraffe",
    "helicopter",
    "mouse",
    "pear",
    "raccoon",
    "rhinoceros",
    "saw",
    "scissors",
    "seagull",
    "skyscraper",
    "songbird",
    "sword",
    "tree",
    "wheelchair",
    "windmill",
    "window",
)
NAMED_UNSEEN: dict[str, tuple[str, ...]] = {"yelamarthi21": YELAMARTHI_21, "sketchy_104_21": YELAMARTHI_21}

TUBERLIN_LAYOUT = """  <root>/tuberlin/png/<class>/<n>.png           sketches, one folder per class
  <root>/tuberlin/<photos>/<class>/<file>        (optional) photos; <photos> = photo, photos, images or ImageResized
  (<root> is SBIR_DATA or the root= argument; folder names match without regard to case)"""
DOMAIN_LAYOUT = """  <root>/{name}/<domain>/<class>/<file>          one folder per domain (medium), then per class
  e.g. PACS: <root>/pacs/{{photo,art_painting,cartoon,sketch}}/<class>/<name>.jpg|.png
  the sketch domain ({sketch}) gives the sketches, every other domain gives photos (medium = domain)
  (<root> is SBIR_DATA or the root= argument; folder names match without regard to case)"""


def resolve_unseen(unseen, classes: Sequence[str], seed: int = 0) -> list[str]:
    """The unseen classes: [] for None; a named split, an explicit list, or n classes drawn with ``seed``."""
    classes = sorted(set(classes))
    if unseen is None:
        return []
    if isinstance(unseen, str):
        if unseen.lower() not in NAMED_UNSEEN:
            raise DataError(f"unknown named split {unseen!r}; known: {', '.join(sorted(NAMED_UNSEEN))}")
        chosen = list(NAMED_UNSEEN[unseen.lower()])
    elif isinstance(unseen, (int, np.integer)) and not isinstance(unseen, bool):
        if not 0 < unseen < len(classes):
            raise DataError(f"cannot draw {unseen} unseen classes out of {len(classes)}")
        chosen = np.random.default_rng(seed).choice(classes, int(unseen), replace=False).tolist()
    elif isinstance(unseen, (list, tuple, set)) and all(isinstance(c, str) for c in unseen):
        chosen = list(unseen)
    else:
        raise DataError(
            f"unseen must be None, a split name, a number of classes or a list of class "
            f"names, got {type(unseen).__name__}"
        )
    missing = [c for c in chosen if c not in classes]
    if missing:
        raise DataError(f"unseen classes not in the data: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    return sorted(chosen)


def share(fraction: float, n: int, keep: int = 1, least: int = 1) -> int:
    """How many of a class's ``n`` objects a split of ``fraction`` takes: ``round(fraction * n)``, but at least
    ``least`` when the fraction is positive, as far as ``keep`` objects are left for the other splits.

    The one rule for every loader's seeded splits (validation and test shares of a class). Without it a class of
    3-14 objects gives validation none or one (``round(0.1 * 5) == 0``), and a protocol that selects its model on
    validation, ranking a sketch among its category's photos, cannot run on a set whose classes hold a few
    paired photos each. ``least`` is 2 on a set with photos (a query ranked within its category needs two photos
    there) and 1 otherwise; a class of 15 objects or more gets exactly ``round(fraction * n)``, as before."""
    k = int(round(fraction * n))
    return max(k, min(least, n - keep)) if fraction > 0 and k < least else k


def assign_splits(
    sketches: pd.DataFrame,
    photos: pd.DataFrame,
    unseen=None,
    fractions=(0.7, 0.1, 0.2),
    val_fraction: float = 0.1,
    seed: int = 0,
) -> dict:
    """Fill ``split`` and ``category_split`` in both tables in place; return the record for ``info``.

    Instances (a photo and its sketches, or one unpaired sketch) never straddle two splits. A class's
    share of each split follows ``share``: at least two objects to validation and to test on a set with photos
    (one on a set of sketches only) where the class has enough left for training.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    classes = sorted(set(sketches["category"]) | set(photos["category"]))
    unseen_list = resolve_unseen(unseen, classes, seed)
    rng = np.random.default_rng(seed)
    where: dict[tuple[str, str], str] = {}
    least = 2 if len(photos) else 1  # see ``share``
    pairs = pd.concat([sketches[["category", "instance"]], photos[["category", "instance"]]])
    for cls, group in pairs.groupby("category", sort=True):
        inst = np.array(sorted(set(group["instance"])), dtype=object)
        order = inst[rng.permutation(len(inst))]
        if cls in unseen_list:
            labels = ["test"] * len(order)
        elif unseen is not None:
            n_val = share(val_fraction, len(order), least=least)
            labels = ["val"] * n_val + ["train"] * (len(order) - n_val)
        else:
            n_test = share(fractions[2], len(order), keep=2, least=least)
            n_val = share(fractions[1], len(order), keep=n_test + 1, least=least)
            labels = ["test"] * n_test + ["val"] * n_val + ["train"] * (len(order) - n_test - n_val)
        where.update({(cls, i): s for i, s in zip(order, labels)})
    for table in (sketches, photos):
        table["split"] = [where[(c, i)] for c, i in zip(table["category"], table["instance"])]
        table["category_split"] = np.where(table["category"].isin(unseen_list), "unseen", "seen")
    mode = "category" if unseen is None else "zero-shot"
    return {
        "mode": mode,
        "seed": seed,
        "fractions": list(fractions),
        "val_fraction": val_fraction,
        "unseen": unseen if isinstance(unseen, (str, int, type(None))) else "list",
        "unseen_classes": unseen_list,
        "seen_classes": [c for c in classes if c not in unseen_list],
    }


def scan_classes(folder: Path, root: Path | None = None) -> tuple[dict[str, list[Path]], list[str]]:
    """Image files per class sub-folder of ``folder`` and the stray entries (files beside the classes).

    Class names are the folder names, with bytes that are not UTF-8 shown as ``\\xNN``. With
    ``root``, symbolic links (folders or files) that lead outside it are refused and listed as strays.
    """
    per_class, stray = {}, []
    for child in sorted(folder.iterdir()):
        if child.is_symlink() and outside(child, root):
            stray.append(f"{child} (symbolic link out of the data folder {root}: refused)")
        elif child.is_dir() and not child.name.startswith("."):
            files, s = list_images(child, root)
            stray += s
            if files:
                per_class[safe_text(child.name)] = files
        else:
            stray.append(str(child))
    return per_class, stray


def _subdir(folder: Path, names: Sequence[str]) -> Path | None:
    wanted = [n.lower() for n in names]
    found = {c.name.lower(): c for c in folder.iterdir() if c.is_dir()}
    return next((found[n] for n in wanted if n in found), None)


def drop_bad(sketches, sketch_files, photos, photo_files, skip_bad: bool):
    """With ``skip_bad``: decode all images once and drop unreadable rows; return (..., skipped).

    A sketch whose paired photo is unreadable goes too, so no sketch points at a dropped photo.
    """
    if not skip_bad:
        return sketches, sketch_files, photos, photo_files, []
    keep_s, bad_s = check_images(sketch_files, True, "L")
    keep_p, bad_p = check_images(photo_files, True, "RGB") if photo_files else (np.ones(len(photos), bool), [])
    keep_s &= ~sketches["photo_id"].isin(set(photos.loc[~keep_p, "photo_id"])).to_numpy()
    return (
        sketches[keep_s],
        [f for f, k in zip(sketch_files, keep_s) if k],
        photos[keep_p],
        [f for f, k in zip(photo_files or [], keep_p) if k],
        bad_s + bad_p,
    )


def keep_paired(
    sketches: pd.DataFrame, files: list, photos: pd.DataFrame, photo_files: list, medium: str | None = "photo"
):
    """The instance-paired part of a set: sketches with a source photo, photos of ``medium`` with a sketch.

    Sketchy's naming (``<photo id>-<k>``) pairs a sketch with its photo, in the release and in
    PACS's sketch domain alike; this keeps what a fine-grained benchmark can use (galleries of
    the photos of one category). Returns (sketches, files, photos, photo_files, counts dropped).
    """
    pmask = np.ones(len(photos), bool) if medium is None else (photos["medium"] == medium).to_numpy().copy()
    pmask &= photos["photo_id"].isin(set(sketches["photo_id"])).to_numpy()
    smask = (
        sketches["photo_id"].isin(set(photos.loc[pmask, "photo_id"])).to_numpy()
        & (sketches["photo_id"] != "").to_numpy()
    )
    dropped = {"unpaired_sketches": int((~smask).sum()), "other_photos": int((~pmask).sum())}
    return (
        sketches[smask].reset_index(drop=True),
        [f for f, k in zip(files, smask) if k],
        photos[pmask].reset_index(drop=True),
        [f for f, k in zip(photo_files, pmask) if k],
        dropped,
    )


def category_dataset(
    name,
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
    paired_only: bool = False,
) -> SBIRData:
    """The common end of the category-level loaders: seeded splits, bad files dropped, fingerprint.

    ``paired_only`` keeps the instance-paired sketches and their photos first (``keep_paired``). A file
    reached twice through a symbolic link counts once (``first_paths``; the repeat is listed as ignored).
    """
    keep, repeats = first_paths(files + photo_files)
    info["ignored"] = info.get("ignored", []) + repeats
    n = len(files)
    sketches, files = sketches[keep[:n]].reset_index(drop=True), [f for f, k in zip(files, keep[:n]) if k]
    photos, photo_files = photos[keep[n:]].reset_index(drop=True), [f for f, k in zip(photo_files, keep[n:]) if k]
    unique_ids(sketches["sketch_id"], files, f"{name} sketch")
    unique_ids(photos["photo_id"], photo_files, f"{name} photo")
    if paired_only:
        sketches, files, photos, photo_files, info["paired_only"] = keep_paired(sketches, files, photos, photo_files)
        if not len(sketches):
            raise DataError(
                f"{name}: paired_only=True but no sketch is named <photo id>-<k> after a photo "
                f"of medium 'photo' in {info.get('root')}"
            )
    info["split"] = assign_splits(sketches, photos, unseen, fractions, val_fraction, seed)
    sketches, files, photos, photo_files, info["skipped"] = drop_bad(sketches, files, photos, photo_files, skip_bad)
    info["fingerprint"] = files_fingerprint(files + photo_files)
    return SBIRData(
        name, sketches, photos, sketch_files=files, photo_files=photo_files if len(photos) else None, info=info
    )


def load_tuberlin(
    root=None, unseen=None, fractions=(0.7, 0.1, 0.2), val_fraction: float = 0.1, seed: int = 0, skip_bad: bool = False
) -> SBIRData:
    """TU-Berlin sketches (``png/<class>/*.png``), with extended photos when a photo folder is present.

    Every sketch is its own instance (TU-Berlin has no paired photos). Splits: see ``assign_splits``.
    """
    folder = find_dataset_dir(
        root,
        ["tuberlin", "TU-Berlin", "tu_berlin", "TU_Berlin", "tu-berlin"],
        "tuberlin",
        TUBERLIN_LAYOUT,
        marker=lambda p: (p / "png").is_dir(),
    )
    png = _subdir(folder, ["png"])
    if png is None:
        raise DataError(f"tuberlin: missing folder {folder / 'png'}.\nExpected layout:\n{TUBERLIN_LAYOUT}")
    per_class, stray = scan_classes(png, folder)
    if not per_class:
        raise DataError(f"tuberlin: no class folders with images in {png}.\nExpected layout:\n{TUBERLIN_LAYOUT}")
    rows, files = [], []
    for cls, fs in per_class.items():
        for f in fs:
            sid = f"{cls}/{safe_text(f.stem)}"
            rows.append({"sketch_id": sid, "photo_id": "", "instance": sid, "category": cls})
            files.append(f)
    photo_rows, photo_files = [], []
    pdir = _subdir(folder, ["photo", "photos", "images", "ImageResized", "EXTEND_image_tuberlin"])
    if pdir is not None:
        p_class, s2 = scan_classes(pdir, folder)
        stray += s2
        for cls, fs in p_class.items():
            for f in fs:
                pid = f"{cls}/{safe_text(f.stem)}"
                photo_rows.append({"photo_id": pid, "instance": pid, "category": cls, "medium": "photo"})
                photo_files.append(f)
    sketches = pd.DataFrame(rows)
    photos = pd.DataFrame(photo_rows, columns=["photo_id", "instance", "category", "medium"])
    info = {"root": str(folder), "ignored": stray, "photo_folder": str(pdir) if pdir else None}
    return category_dataset(
        "tuberlin", sketches, files, photos, photo_files, info, unseen, fractions, val_fraction, seed, skip_bad
    )


def load_domains(
    root=None,
    folder: str = "pacs",
    sketch_domain: str = "sketch",
    photo_domain: str = "photo",
    unseen=None,
    fractions=(0.7, 0.1, 0.2),
    val_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
    paired_only: bool = False,
) -> SBIRData:
    """Domain folders ``<root>/<folder>/<domain>/<class>/*`` (PACS, or a BAM!-like media set).

    Sketches come from ``sketch_domain``; every other domain's images are photos with
    ``medium`` = the domain. A sketch named ``<photo>-<n>`` whose ``<photo>`` is a file of
    ``photo_domain`` in the same class is paired with it (PACS's Sketchy sketches); other sketches
    are their own instance. ``paired_only`` keeps only those pairs (sketches with their source photo,
    photos of ``photo_domain`` with a sketch): an instance-paired fine-grained set.
    """
    layout = DOMAIN_LAYOUT.format(name=folder, sketch=sketch_domain)
    base = find_dataset_dir(root, [folder], folder, layout)
    keep = lambda c: c.is_dir() and not c.name.startswith(".") and not (c.is_symlink() and outside(c, base))  # noqa: E731
    domains = {safe_text(c.name): c for c in sorted(base.iterdir()) if keep(c)}
    stray = [str(c) for c in sorted(base.iterdir()) if not keep(c)]
    sk_dir = next((d for n, d in domains.items() if n.lower() == sketch_domain.lower()), None)
    if sk_dir is None:
        raise DataError(
            f"{folder}: missing sketch domain folder {base / sketch_domain} "
            f"(found: {sorted(domains) or 'nothing'}).\nExpected layout:\n{layout}"
        )
    sk_class, s = scan_classes(sk_dir, base)
    stray += s
    if not sk_class:
        raise DataError(f"{folder}: no class folders with images in {sk_dir}.\nExpected layout:\n{layout}")
    photo_rows, photo_files = [], []
    photo_stems: dict[tuple[str, str], str] = {}
    for name, d in domains.items():
        if d == sk_dir:
            continue
        p_class, s = scan_classes(d, base)
        stray += s
        for cls, fs in p_class.items():
            for f in fs:
                pid = f"{name}/{cls}/{safe_text(f.stem)}"
                photo_rows.append({"photo_id": pid, "instance": pid, "category": cls, "medium": name})
                photo_files.append(f)
                if name.lower() == photo_domain.lower():
                    photo_stems[(cls, safe_text(f.stem))] = pid
    rows, files = [], []
    for cls, fs in sk_class.items():
        for f in fs:
            stem = safe_text(f.stem)
            sid = f"{safe_text(sk_dir.name)}/{cls}/{stem}"
            pid = photo_stems.get((cls, stem.rsplit("-", 1)[0]), "") if "-" in stem else ""
            rows.append(
                {
                    "sketch_id": sid,
                    "photo_id": pid,
                    "instance": pid or sid,
                    "category": cls,
                    "medium": safe_text(sk_dir.name),
                }
            )
            files.append(f)
    sketches = pd.DataFrame(rows)
    photos = pd.DataFrame(photo_rows, columns=["photo_id", "instance", "category", "medium"])
    info = {
        "root": str(base),
        "ignored": stray,
        "domains": sorted(domains),
        "paired_sketches": int((sketches["photo_id"] != "").sum()),
    }
    if paired_only and photo_domain != "photo":
        photos.loc[photos["medium"] == photo_domain, "medium"] = "photo"  # keep_paired keeps medium "photo"
    return category_dataset(
        folder.lower() + ("_paired" if paired_only else ""),
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


def load_pacs(root=None, **options) -> SBIRData:
    """PACS: ``<root>/pacs/{photo,art_painting,cartoon,sketch}/<class>/*``; options as in ``load_domains``."""
    return load_domains(root, "pacs", **options)


def load_pacs_sketchy(root=None, **options) -> SBIRData:
    """PACS's Sketchy sketches with their exact source photos (dog, elephant, giraffe, guitar, horse):
    an instance-paired fine-grained set, many drawers per photo. Options as in ``load_domains``."""
    data = load_domains(root, "pacs", paired_only=True, **options)
    data.name = "pacs_sketchy"
    return data


def check_tuberlin(root=None) -> Path:
    """Layout check: the TU-Berlin ``png`` folder, or a DataError naming what is missing."""
    folder = find_dataset_dir(
        root,
        ["tuberlin", "TU-Berlin", "tu_berlin", "TU_Berlin", "tu-berlin"],
        "tuberlin",
        TUBERLIN_LAYOUT,
        marker=lambda p: (p / "png").is_dir(),
    )
    png = _subdir(folder, ["png"])
    if png is None:
        raise DataError(f"tuberlin: missing folder {folder / 'png'}.\nExpected layout:\n{TUBERLIN_LAYOUT}")
    return png


def check_pacs(root=None) -> Path:
    """Layout check: the PACS folder with its sketch domain, or a DataError naming what is missing."""
    layout = DOMAIN_LAYOUT.format(name="pacs", sketch="sketch")
    base = find_dataset_dir(root, ["pacs"], "pacs", layout)
    if _subdir(base, ["sketch"]) is None:
        raise DataError(f"pacs: missing sketch domain folder {base / 'sketch'}.\nExpected layout:\n{layout}")
    return base
