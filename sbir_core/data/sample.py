"""The QuickDraw sample that ships inside the package, and the script that builds it.

QuickDraw (Google, https://quickdraw.withgoogle.com/data) is published under CC BY 4.0, so a small
sample of it may travel with the code: every fresh clone then has real, human-drawn sketches, with
the drawer's country, without ``SBIR_DATA``. It loads through the QuickDraw loader as dataset
``quickdraw_sample`` (``load_dataset("quickdraw_sample")``); ``ATTRIBUTION.md`` beside the files
says where they come from and under which licence, and ``manifest.json`` records what was taken
and each file's SHA-256 (checked by ``verify`` and by the tests).

Built with ``python -m sbir_core.data.sample build SOURCE`` from QuickDraw's per-class ndjson files
(raw or simplified; ``../shared/data/quickdraw`` is such a source). Which classes (``CLASSES``): the
QuickDraw class that names each of the style world's eight categories, then the classes with the
most drawings in the source, to twenty. Each drawing is simplified as QuickDraw's own "simplified"
release is (moved to the top-left corner, scaled to 0-255, each stroke simplified by
Ramer-Douglas-Peucker with epsilon 2, OpenCV's ``approxPolyDP``; the 1-pixel resampling before it
is left out), timestamps dropped, ``word``, ``countrycode``, ``recognized`` and ``key_id`` kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from sbir_core.data.base import DataError, SBIRData
from sbir_core.data.fetch import sha256_of

SAMPLE_DIR = Path(__file__).with_name("quickdraw_sample")
MANIFEST = SAMPLE_DIR / "manifest.json"
# the QuickDraw class naming each of the style world's categories (``world.objects.CATEGORIES``)
WORLD_CLASSES = {
    "shoe": "shoe",
    "chair": "chair",
    "mug": "mug",
    "lamp": "floor lamp",
    "house": "house",
    "car": "car",
    "bottle": "wine bottle",
    "bag": "purse",
}
N_CLASSES = 20
MAX_PER_CLASS = 300
MAX_BYTES = 2_000_000  # the sample's budget in git
EPSILON = 2.0


def simplify(drawing: list, epsilon: float = EPSILON) -> list[list[list[int]]]:
    """A raw QuickDraw drawing ``[[x...], [y...](, [t...])]`` per stroke, as QuickDraw simplifies it:
    minimum at 0, the longer side scaled to 255, each stroke reduced by Ramer-Douglas-Peucker."""
    import cv2

    strokes = [np.asarray(s[:2], dtype=np.float64).T for s in drawing if len(s) >= 2 and len(s[0])]
    if not strokes:
        raise DataError("a drawing without points")
    allp = np.concatenate(strokes)
    lo, span = allp.min(0), float(np.ptp(allp, 0).max()) or 1.0
    out = []
    for s in strokes:
        p = np.rint((s - lo) * (255.0 / span)).astype(np.int32)
        keep = cv2.approxPolyDP(p.reshape(-1, 1, 2), epsilon, False).reshape(-1, 2) if len(p) > 2 else p
        out.append([keep[:, 0].tolist(), keep[:, 1].tolist()])
    return out


def choose_classes(counts: dict[str, int], n: int = N_CLASSES) -> list[str]:
    """The world's categories' QuickDraw classes that the source has, then the most-drawn others, to ``n``."""
    chosen = [c for c in WORLD_CLASSES.values() if counts.get(c, 0) > 0]
    rest = sorted((c for c in counts if c not in chosen), key=lambda c: (-counts[c], c))
    return chosen + rest[: max(0, n - len(chosen))]


def build(source: Path, out: Path = SAMPLE_DIR, n_classes: int = N_CLASSES, per_class: int = MAX_PER_CLASS) -> dict:
    """Write the sample's ndjson files and manifest into ``out`` from the per-class files in ``source``."""
    from sbir_core.data.quickdraw import class_name

    files = {class_name(p): p for p in sorted(Path(source).glob("*.ndjson"))}
    if not files:
        raise DataError(f"no QuickDraw .ndjson files in {source}")
    counts = {c: sum(1 for line in p.open("rb") if line.strip()) for c, p in files.items()}
    classes = choose_classes(counts, n_classes)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.ndjson"):
        old.unlink()
    manifest = {"source": "QuickDraw (Google), CC BY 4.0", "epsilon": EPSILON, "classes": {}}
    for cls in classes:
        lines = []
        for raw in files[cls].open(encoding="utf-8"):
            if not raw.strip() or len(lines) >= per_class:
                continue
            rec = json.loads(raw)
            keep = {k: rec.get(k) for k in ("word", "countrycode", "recognized", "key_id")}
            lines.append(json.dumps(keep | {"drawing": simplify(rec["drawing"])}, separators=(",", ":")))
        path = out / f"{cls}.ndjson"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        manifest["classes"][cls] = {"drawings": len(lines), "sha256": sha256_of(path)}
    size = sum(p.stat().st_size for p in out.glob("*.ndjson"))
    if size > MAX_BYTES:
        raise DataError(f"the sample is {size:,} bytes, over its {MAX_BYTES:,}-byte budget: take fewer drawings")
    manifest["bytes"] = size
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def verify(folder: Path = SAMPLE_DIR) -> dict:
    """The manifest, after checking every file's SHA-256 against it (a DataError naming a changed file)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"the QuickDraw sample's manifest {folder / 'manifest.json'} is unreadable: {err}") from err
    for cls, entry in manifest["classes"].items():
        path = folder / f"{cls}.ndjson"
        if not path.is_file() or sha256_of(path) != entry["sha256"]:
            raise DataError(f"the QuickDraw sample's {path.name} is missing or changed (its SHA-256 differs)")
    return manifest


def check(root=None) -> Path:
    """The layout check: the shipped sample's folder, once every file matches its manifest (``root`` is
    ignored, as in ``load``)."""
    verify()
    return SAMPLE_DIR


def load(root=None, **options) -> SBIRData:
    """The shipped sample through the QuickDraw loader (``quickdraw.load``'s options); ``root`` is ignored:
    the sample lives in the package."""
    from sbir_core.data import quickdraw

    verify()
    data = quickdraw.load(SAMPLE_DIR, **options)
    return dataclasses.replace(data, name="quickdraw_sample")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.data.sample", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write the sample from QuickDraw per-class ndjson files")
    b.add_argument("source", type=Path)
    b.add_argument("--classes", type=int, default=N_CLASSES)
    b.add_argument("--per-class", type=int, default=MAX_PER_CLASS)
    sub.add_parser("verify", help="check the shipped files against the manifest")
    args = ap.parse_args(argv)
    manifest = build(args.source, SAMPLE_DIR, args.classes, args.per_class) if args.cmd == "build" else verify()
    n = sum(e["drawings"] for e in manifest["classes"].values())
    print(f"{len(manifest['classes'])} classes, {n} drawings, {manifest['bytes']:,} bytes in {SAMPLE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
