"""Tests of the QMUL-Shoe-V2 layout export: keys, arrays, photo files, splits, errors."""

import numpy as np
import pytest
from PIL import Image

from sbir_core.data import safe_pickle
from sbir_core.data.base import DataError
from sbir_core.data.export import export_qmul
from sbir_core.data.synthetic import load

SMALL = dict(
    n_instances=24,
    drawers_seen=4,
    drawers_unseen=2,
    sketches_per_instance=2,
    unseen_sketches_per_instance=1,
    photo_size=24,
)


@pytest.fixture(scope="module")
def world():
    return load(cache=False, **SMALL)


def _read(folder, name):
    return safe_pickle.load(folder / f"{name}_Coordinate")  # the reader the QMUL loader uses


@pytest.mark.parametrize("val_as", ["train", "test", "drop"])
def test_export_layout_and_content(world, tmp_path, val_as):
    folder = export_qmul(world, tmp_path, "World", val_as=val_as)
    assert folder == tmp_path / "World"
    coords = _read(folder, "World")
    assert type(coords) is dict
    sk = world.sketches
    n_val = int((sk["split"] == "val").sum())
    assert len(coords) == len(sk) - (n_val if val_as == "drop" else 0)
    photos = {p.stem for p in (folder / "photo").glob("*.png")}
    by_id = dict(zip(sk["sketch_id"], world.strokes))
    seen = set()
    for key, arr in coords.items():
        _, split, stem = key.split("/")
        assert split in ("train", "test")
        photo, k = stem.rsplit("_", 1)  # photo names may hold underscores: split on the last one
        assert photo in photos and int(k) >= 1
        assert arr.dtype == np.float64 and arr.ndim == 2 and arr.shape[1] == 3 and arr[-1, 2] == 1
        rows = sk.index[(sk["photo_id"] == photo)]
        expected_split = {"val": val_as}.get(sk["split"][rows[0]], sk["split"][rows[0]])
        assert split == expected_split
        seen.add(photo)
        assert any(np.array_equal(arr, by_id[sid]) for sid in sk["sketch_id"][rows])
    assert seen == photos
    img = Image.open(folder / "photo" / f"{sorted(photos)[0]}.png")
    assert img.size == (24, 24) and img.mode == "RGB"


def test_export_photo_size_and_pixels(world, tmp_path):
    folder = export_qmul(world, tmp_path, "Big", photo_size=48)
    pid = world.sketches["photo_id"][0]
    img = np.asarray(Image.open(folder / "photo" / f"{pid}.png"))
    assert img.shape == (48, 48, 3)
    same = export_qmul(world, tmp_path / "again", "Same")
    row = int(np.flatnonzero(world.photos["photo_id"] == pid)[0])
    assert np.array_equal(np.asarray(Image.open(same / "photo" / f"{pid}.png")), world.photo_arrays[row])


def test_export_errors(world, tmp_path):
    with pytest.raises(ValueError, match="val_as"):
        export_qmul(world, tmp_path, val_as="keep")
    with pytest.raises(ValueError, match="name"):
        export_qmul(world, tmp_path, name="../evil")
    only_unpaired = world.subset(np.zeros(len(world), dtype=bool))
    with pytest.raises(DataError):
        export_qmul(only_unpaired, tmp_path)
