"""The paired shoe folder: layout, seeded split, attributes from .mat files, bad files, real data."""

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from sbir_core.data import load_dataset
from sbir_core.data.base import DataError
from sbir_core.data.shoes304 import load, split_instances

N_PHOTOS, K = 10, 3


def write_shoes(root, n=N_PHOTOS, k=K, mats=True, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "shoes304"
    (folder / "photo").mkdir(parents=True)
    (folder / "sketch").mkdir()
    for p in range(1, n + 1):
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(folder / "photo" / f"{p:03d}.jpg")
        for j in range(1, k + 1):
            img = np.full((64, 64), 255, np.uint8)
            img[10 + j : 50, 20 + p : 24 + p] = 0  # a thick line, so every sketch differs and survives resizing
            Image.fromarray(img).save(folder / "sketch" / f"{p:03d}-{j}.jpg")
    img_label = rng.integers(0, 2, (n, 13)).astype(np.uint8)
    if mats:
        sio.savemat(folder / "13_A_image_label.mat", {"image_label": img_label})
        # K-major rows, as in the published file; copies of the photo labels
        sio.savemat(folder / "13_A_sketch_label.mat", {"sketch_label": np.tile(img_label, (k, 1))})
    return folder, img_label


def snapshot(root):
    return sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))


def test_load_tables_split_and_attributes(tmp_path):
    root = tmp_path / "data"
    folder, img_label = write_shoes(root)
    before = snapshot(root)
    d = load(root, fractions=(0.6, 0.2, 0.2), seed=1)
    assert len(d) == 30 and len(d.photos) == 10
    assert d.sketches["sketch_id"].iloc[:4].tolist() == ["001-1", "001-2", "001-3", "002-1"]
    assert d.sketches.groupby("instance")["split"].nunique().max() == 1
    counts = d.split_counts()
    assert counts["photos"].to_dict() == {"train": 6, "val": 2, "test": 2}
    rec = d.info["split"]
    assert sorted(sum(rec["instances"].values(), [])) == [f"{i:03d}" for i in range(1, 11)]
    assert load(root, fractions=(0.6, 0.2, 0.2), seed=1).info["split"] == rec
    assert load(root, fractions=(0.6, 0.2, 0.2), seed=2).info["split"] != rec
    # attributes: K-major rows detected, and each sketch carries its photo's labels
    assert d.info["attributes"]["order"] == "k-major" and d.info["attributes"]["agreement_k_major"] == 1.0
    attrs = [f"attr_{j}" for j in range(13)]
    merged = d.sketches.merge(d.photos, on="photo_id", suffixes=("", "_p"))
    assert (merged[attrs].to_numpy() == merged[[a + "_p" for a in attrs]].to_numpy()).all()
    assert (d.photos[attrs].to_numpy() == img_label).all()
    imgs = d.sketch_images(16)
    assert imgs.shape == (30, 16, 16) and imgs.max() == pytest.approx(1.0, abs=0.05) and imgs.min() < 0.7
    photos = d.photo_images(8)  # 16 x 12 photos are padded to a square, not stretched
    assert photos.shape == (10, 8, 8, 3) and (photos[:, 0] > 200).all()
    assert snapshot(root) == before


def test_cache_is_used_and_keyed(tmp_path):
    write_shoes(tmp_path)
    d = load(tmp_path)
    a = d.sketch_images(16)
    files = sorted((tmp_path / "cache").glob("*.npz"))
    assert len(files) == 1
    assert np.array_equal(load(tmp_path).sketch_images(16), a)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    d.sketch_images(24)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_stray_files_and_badly_named_images_are_ignored(tmp_path):
    folder, _ = write_shoes(tmp_path, mats=False)
    (folder / "sketch" / ".DS_Store").write_bytes(b"x")
    (folder / "sketch" / "notes.txt").write_text("hello")
    Image.new("L", (8, 8), 255).save(folder / "sketch" / "abc.jpg")
    Image.new("RGB", (8, 8)).save(folder / "photo" / "cover.png")
    (folder / "sketch" / "sub").mkdir()
    d = load(tmp_path)
    assert len(d) == 30 and len(d.photos) == 10 and "attributes" not in d.info
    ignored = d.report().query("kind == 'ignored'")["path"].tolist()
    assert {p.rsplit("/", 1)[-1] for p in ignored} == {".DS_Store", "notes.txt", "abc.jpg", "cover.png", "sub"}


def test_sketch_without_photo_and_empty_folders(tmp_path):
    folder, _ = write_shoes(tmp_path / "a", mats=False)
    (folder / "photo" / "004.jpg").unlink()
    with pytest.raises(DataError, match=r"004\.jpg is missing[\s\S]*Expected layout"):
        load(tmp_path / "a")
    empty = tmp_path / "b" / "shoes304"
    (empty / "photo").mkdir(parents=True)
    (empty / "sketch").mkdir()
    with pytest.raises(DataError, match="no photos"):
        load(tmp_path / "b")
    (empty / "sketch").rmdir()
    with pytest.raises(DataError, match=r"missing folder .*sketch"):
        load(tmp_path / "b")
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match=r"shoes304[\s\S]*Expected layout"):
        load(tmp_path / "c")


def test_corrupt_and_truncated_images(tmp_path):
    folder, _ = write_shoes(tmp_path)
    bad = folder / "sketch" / "002-2.jpg"
    bad.write_bytes(bad.read_bytes()[:60])
    (folder / "photo" / "007.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"002-2\.jpg"):
        load(tmp_path).sketch_images(16)
    d = load(tmp_path, skip_bad=True)
    assert len(d) == 26 and len(d.photos) == 9  # one bad sketch, three sketches of the bad photo
    report = d.report().query("kind == 'skipped'")
    assert len(report) == 2 and report["path"].str.contains("002-2.jpg|007.jpg").all()
    assert d.sketch_images(16).shape == (26, 16, 16)


@pytest.mark.parametrize(
    "mat, content, match",
    [
        ("13_A_image_label.mat", {"image_label": np.zeros((9, 13))}, "shape"),
        ("13_A_image_label.mat", {"other": np.zeros((10, 13))}, "no variable"),
        ("13_A_sketch_label.mat", {"sketch_label": np.zeros((30, 12))}, "shape"),
        ("13_A_sketch_label.mat", {"sketch_label": np.array(["a"] * 30)}, "shape|dtype"),
    ],
)
def test_bad_attribute_files(tmp_path, mat, content, match):
    folder, _ = write_shoes(tmp_path)
    sio.savemat(folder / mat, content)
    with pytest.raises(DataError, match=match):
        load(tmp_path)
    assert "attr_0" not in load(tmp_path, attributes=False).sketches


def test_truncated_and_missing_attribute_files(tmp_path):
    folder, _ = write_shoes(tmp_path)
    path = folder / "13_A_sketch_label.mat"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="13_A_sketch_label.mat"):
        load(tmp_path)
    path.unlink()
    assert "attr_0" not in load(tmp_path).sketches  # auto: attributes are optional
    with pytest.raises(DataError, match=r"missing file .*13_A_sketch_label\.mat"):
        load(tmp_path, attributes=True)


def test_split_instances_checks_fractions():
    with pytest.raises(DataError, match="fractions"):
        split_instances(["1", "2"], (0.5, 0.6, 0.1))
    out = split_instances([str(i) for i in range(100)], (0.7, 0.1, 0.2), seed=0)
    assert sorted(out.values()).count("test") == 20 and sorted(out.values()).count("val") == 10


def test_real_shoes304(data_root):
    if not (data_root / "shoes304").exists():
        pytest.skip(f"no shoes304 under {data_root}")
    before = snapshot(data_root / "shoes304")
    d = load_dataset("shoes304", data_root)
    assert len(d) == 912 and len(d.photos) == 304
    assert d.sketches["sketch_index"].value_counts().to_dict() == {"1": 304, "2": 304, "3": 304}
    assert d.split_counts()["photos"].sum() == 304 and not d.report().query("kind == 'skipped'").size
    assert d.info["attributes"]["order"] == "k-major"
    assert d.info["attributes"]["agreement_k_major"] > d.info["attributes"]["agreement_photo_major"]
    assert snapshot(data_root / "shoes304") == before


def test_photo_without_sketches_falls_back_to_photo_major(tmp_path):
    folder, img_label = write_shoes(tmp_path, n=4, k=2)
    for j in (1, 2):
        (folder / "sketch" / f"004-{j}.jpg").unlink()
    sio.savemat(folder / "13_A_sketch_label.mat", {"sketch_label": np.repeat(img_label[:3], 2, axis=0)})
    d = load(tmp_path)
    assert len(d) == 6 and d.info["attributes"]["order"] == "photo-major"


def test_skip_bad_drops_sketches_of_an_unreadable_photo(tmp_path):
    folder, _ = write_shoes(tmp_path, mats=False)
    (folder / "photo" / "005.jpg").write_text("not an image")
    d = load(tmp_path, skip_bad=True)
    assert not d.sketches["photo_id"].isin(set(d.sketches["photo_id"]) - set(d.photos["photo_id"])).any()
    assert (d.photo_index() >= 0).all()
