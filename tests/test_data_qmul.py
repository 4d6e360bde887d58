"""QMUL ShoeV2 / ChairV2 loader: official layout, photo-less mode, malformed files, real data."""

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from sbir_core.data import load_dataset
from sbir_core.data.base import DataError
from sbir_core.data.qmul import load, parse_key
from sbir_core.data.safe_pickle import UnsafePickleError

PHOTOS = {
    "train": ["CHA_KOL-001_v1_Whis", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10"],
    "test": ["t_1_x", "t2"],
}


def _sketch(rng, n_strokes=3):
    pts = []
    for _ in range(n_strokes):
        k = rng.integers(2, 6)
        xy = rng.uniform(33, 223, size=(k, 2))
        pen = np.zeros((k, 1))
        pen[-1] = 1
        pts.append(np.hstack([xy, pen]))
    return np.vstack(pts)


def make_coordinates(rng, photos=PHOTOS, per_photo=3) -> dict:
    return {
        f"/{split}/{p}_{k}": _sketch(rng)
        for split, names in photos.items()
        for p in names
        for k in range(1, per_photo + 1)
    }


def write_qmul(root, name="ChairV2", data=None, photos=True, seed=0, file_name=None):
    rng = np.random.default_rng(seed)
    data = make_coordinates(rng) if data is None else data
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / (file_name or f"{name}_Coordinate")).write_bytes(pickle.dumps(data))
    if photos:
        (folder / "photo").mkdir(exist_ok=True)
        for names in PHOTOS.values():
            for p in names:
                arr = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
                Image.fromarray(arr).save(folder / "photo" / f"{p}.png")
    return folder


def snapshot(root):
    return sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))


def test_parse_key_splits_on_last_underscore():
    assert parse_key("/train/CHAKOL001GRY-UK_v1_Whis_2") == ("train", "CHAKOL001GRY-UK_v1_Whis", "2")
    assert parse_key("/test/sdich070-laque-rouge_A1YX741QQSMKPS") == ("test", "sdich070-laque-rouge", "A1YX741QQSMKPS")


@pytest.mark.parametrize("key", ["/valid/x_1", "/train/x", "train-x_1", "/train/_", "/train/a/b_1", 7, None])
def test_bad_keys_are_data_errors(key):
    with pytest.raises(DataError, match="key"):
        parse_key(key)


def test_photo_less_mode(tmp_path):
    write_qmul(tmp_path / "data", photos=False)
    d = load(tmp_path / "data", "ChairV2", val_fraction=0.2, seed=3)
    assert len(d) == 36 and len(d.photos) == 0 and d.info["photo_mode"] is False
    assert set(d.sketches["photo_id"]) == set(PHOTOS["train"]) | set(PHOTOS["test"])
    assert d.sketches.loc[d.sketches["photo_id"] == "CHA_KOL-001_v1_Whis", "sketch_index"].tolist() == ["1", "2", "3"]
    counts = d.split_counts()
    assert counts.loc["val", "instances"] == 2 and counts.loc["train", "instances"] == 8
    assert counts.loc["test", "sketches"] == 6
    assert sorted(d.info["val"]["instances"]) == sorted(d.sketches.loc[d.sketches.split == "val", "instance"].unique())
    # instances never straddle splits; the val draw is reproducible from the recorded seed
    assert d.sketches.groupby("instance")["split"].nunique().max() == 1
    assert load(tmp_path / "data", "ChairV2", val_fraction=0.2, seed=3).info["val"] == d.info["val"]
    assert load(tmp_path / "data", "ChairV2", val_fraction=0.0).split_counts().index.tolist() == ["train", "test"]
    with pytest.raises(DataError, match="photo-less"):
        d.photo_images(16)
    imgs = d.sketch_images(32)
    assert imgs.shape == (36, 32, 32) and imgs.dtype == np.float32 and imgs.min() < 0.5


def test_with_photos_and_registry_case_tolerance(tmp_path):
    root = tmp_path / "data"
    write_qmul(root, name="chairv2", file_name="CHAIRV2_coordinate")
    (root / "chairv2" / "photo" / ".DS_Store").write_bytes(b"junk")
    before = snapshot(root)
    d = load_dataset("chairv2", root)
    assert len(d.photos) == 12 and d.info["photo_mode"]
    assert (d.photo_index() >= 0).all()
    assert d.photos.set_index("photo_id")["split"].to_dict()["t2"] == "test"
    assert d.photo_images(8).shape == (12, 8, 8, 3)
    d.sketch_images(16)
    assert any(".DS_Store" in p for p in d.info["ignored"])
    assert snapshot(root) == before  # nothing written into the data root
    assert list((tmp_path / "cache").glob("*.npz"))


def test_root_may_be_the_dataset_folder_and_env_default(tmp_path, monkeypatch):
    folder = write_qmul(tmp_path / "data", photos=False)
    assert len(load(folder, "ChairV2")) == 36
    monkeypatch.setenv("SBIR_DATA", str(tmp_path / "data"))
    assert len(load_dataset("chairv2")) == 36


def test_missing_photo_and_required_photos(tmp_path):
    folder = write_qmul(tmp_path / "data")
    (folder / "photo" / "t2.png").unlink()
    with pytest.raises(DataError, match=r"t2\.png[\s\S]*Expected layout"):
        load(tmp_path / "data", "ChairV2")
    assert len(load(tmp_path / "data", "ChairV2", photos=False)) == 36
    write_qmul(tmp_path / "d2", photos=False)
    with pytest.raises(DataError, match=r"missing folder .*photo"):
        load(tmp_path / "d2", "ChairV2", photos=True)


def test_absent_data_names_the_file_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"ChairV2[\s\S]*Expected layout"):
        load(tmp_path, "ChairV2")
    (tmp_path / "ChairV2").mkdir()
    with pytest.raises(DataError, match=r"missing file .*ChairV2_Coordinate[\s\S]*Expected layout"):
        load(tmp_path, "ChairV2")
    with pytest.raises(DataError, match="not a folder"):
        load(tmp_path / "nowhere", "ShoeV2")


@pytest.mark.parametrize(
    "value, match",
    [
        ([[1, 2, 1]], "list"),
        ("strokes", "str"),
        (np.array([[1.0, 2.0]]), r"shape"),
        (np.array([[1.0, np.nan, 1.0]]), "NaN"),
        (np.array([[1.0, 2.0, 0.5]]), "pen flags"),
        (np.empty((0, 3)), "at least one point"),
        (np.array([[1, 2, 1]], dtype=object), "object"),
    ],
)
def test_wrong_value_types_are_data_errors(tmp_path, value, match):
    data = make_coordinates(np.random.default_rng(0))
    data["/train/bad_1"] = value
    write_qmul(tmp_path, data=data, photos=False)
    with pytest.raises(DataError, match=match):
        load(tmp_path, "ChairV2")


@pytest.mark.parametrize(
    "payload, match",
    [
        ([np.zeros((3, 3))], "dict"),
        ({}, "empty"),
        ({("a", 1): np.zeros((2, 3))}, "key"),
        ({"/other/x_1": np.zeros((2, 3))}, "key"),
    ],
)
def test_wrong_containers_and_keys_are_data_errors(tmp_path, payload, match):
    write_qmul(tmp_path, data=payload, photos=False)
    with pytest.raises(DataError, match=match):
        load(tmp_path, "ChairV2")


def test_truncated_and_planted_coordinate_files(tmp_path):
    folder = write_qmul(tmp_path, photos=False)
    path = folder / "ChairV2_Coordinate"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="ChairV2_Coordinate"):
        load(tmp_path, "ChairV2")

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path.write_bytes(pickle.dumps({"/train/x_1": Planted()}))
    with pytest.raises(UnsafePickleError):
        load(tmp_path, "ChairV2")
    assert not (tmp_path / "pwned").exists()


def test_photo_in_both_splits_is_a_data_error(tmp_path):
    rng = np.random.default_rng(0)
    write_qmul(tmp_path, data={"/train/a_1": _sketch(rng), "/test/a_2": _sketch(rng)}, photos=False)
    with pytest.raises(DataError, match="both train and test"):
        load(tmp_path, "ChairV2")


def test_corrupt_photo_error_or_skip(tmp_path):
    folder = write_qmul(tmp_path)
    bad = folder / "photo" / "c3.png"
    bad.write_bytes(bad.read_bytes()[:40])
    d = load(tmp_path, "ChairV2")
    with pytest.raises(DataError, match=r"c3\.png"):
        d.photo_images(8)
    d = load(tmp_path, "ChairV2", skip_bad=True)
    assert len(d.photos) == 11 and len(d) == 33
    assert d.report()["path"].str.contains("c3.png").any()
    assert d.photo_images(8).shape == (11, 8, 8, 3)


def test_fingerprint_follows_the_files(tmp_path):
    folder = write_qmul(tmp_path, photos=False)
    a = load(tmp_path, "ChairV2").fingerprint
    assert load(tmp_path, "ChairV2").fingerprint == a
    path = folder / "ChairV2_Coordinate"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert load(tmp_path, "ChairV2").fingerprint == a  # a new time stamp is not new content
    raw = bytearray(path.read_bytes())
    raw[-2] ^= 1  # the same size, one bit of other content
    path.write_bytes(bytes(raw))
    try:
        assert load(tmp_path, "ChairV2").fingerprint != a
    except Exception as err:  # the flipped bit may break the pickle itself: then it must say so
        assert "ChairV2_Coordinate" in str(err)


def test_real_chairv2(data_root):
    if not (data_root / "chairv2").exists():
        pytest.skip(f"no chairv2 under {data_root}")
    before = snapshot(data_root / "chairv2")
    d = load_dataset("chairv2", data_root, val_fraction=0.0)
    assert len(d) == 1275 and len(d.photos) == 0
    counts = d.split_counts()
    assert counts.loc["train", "sketches"] == 952 and counts.loc["test", "sketches"] == 323
    assert counts.loc["train", "instances"] == 300 and counts.loc["test", "instances"] == 100
    stats = d.stroke_stats()
    assert stats["strokes"].median() == 10 and stats["points"].median() == 107
    assert snapshot(data_root / "chairv2") == before
