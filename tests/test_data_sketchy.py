"""Sketchy release layout, extended photos and the Yelamarthi 104/21 zero-shot split."""

import numpy as np
import pytest
from PIL import Image

from sbir_core.data import load_dataset
from sbir_core.data.base import DataError
from sbir_core.data.folders import YELAMARTHI_21
from sbir_core.data.sketchy import load

AUG = "tx_000000000000"


def write_sketchy(
    root,
    classes=("airplane", "bat", "cow"),
    photos_per_class=2,
    sketches_per_photo=2,
    extended=True,
    nested=False,
    aug=AUG,
):
    base = root / "sketchy" / ("rendered_256x256" if nested else "") / "256x256"
    for cls in classes:
        (base / "sketch" / aug / cls).mkdir(parents=True)
        (base / "photo" / aug / cls).mkdir(parents=True)
        for p in range(photos_per_class):
            name = f"n0{p}_{len(cls)}{p}"
            Image.new("RGB", (16, 16), (p * 40, 10, 10)).save(base / "photo" / aug / cls / f"{name}.jpg")
            for k in range(1, sketches_per_photo + 1):
                img = Image.new("L", (16, 16), 255)
                img.paste(0, (2, 2 + k, 12, 4 + k))
                img.save(base / "sketch" / aug / cls / f"{name}-{k}.png")
        if extended:
            (root / "sketchy" / "EXTEND_image_sketchy" / cls).mkdir(parents=True)
            Image.new("RGB", (10, 10)).save(root / "sketchy" / "EXTEND_image_sketchy" / cls / "ext_1.JPEG")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))


def test_pairs_and_extended_photos(tmp_path):
    write_sketchy(tmp_path)
    d = load_dataset("sketchy", tmp_path, seed=0)
    assert len(d) == 12 and len(d.photos) == 9
    assert d.photos["extended"].sum() == 3  # the .JPEG suffix is found too (REFERENCE_NUMBERS.md §4.6)
    idx = d.photo_index()
    assert (idx >= 0).all()
    paired = d.photos.iloc[idx]["photo_id"].to_numpy()
    assert (paired == d.sketches["photo_id"].to_numpy()).all()
    assert d.sketches.groupby("instance")["split"].nunique().max() == 1
    assert d.sketch_images(8).shape == (12, 8, 8) and d.photo_images(8).shape == (9, 8, 8, 3)
    assert len(load(tmp_path, extended=False).photos) == 6


def test_nested_release_folder_and_other_augmentation(tmp_path):
    write_sketchy(tmp_path, nested=True, extended=False, aug="tx_000100000000")
    with pytest.raises(DataError, match=r"tx_000000000000[\s\S]*Expected layout"):
        load(tmp_path)
    assert len(load(tmp_path, augmentation="tx_000100000000")) == 12
    with pytest.raises(DataError, match="extended=True"):
        load(tmp_path, augmentation="tx_000100000000", extended=True)


def test_unpaired_sketches_are_counted(tmp_path):
    write_sketchy(tmp_path, extended=False)
    folder = tmp_path / "sketchy" / "256x256" / "sketch" / AUG / "cow"
    Image.new("L", (16, 16), 255).save(folder / "orphan-1.png")
    (folder / "readme.txt").write_text("x")
    d = load(tmp_path)
    assert d.info["unpaired"] == 1 and (d.sketches["photo_id"] == "").sum() == 1
    assert any(p.endswith("readme.txt") for p in d.info["ignored"])


def test_yelamarthi_split(tmp_path):
    write_sketchy(
        tmp_path,
        classes=("airplane", "car_(sedan)", *YELAMARTHI_21),
        photos_per_class=1,
        sketches_per_photo=1,
        extended=False,
    )
    d = load(tmp_path, unseen="yelamarthi21", val_fraction=0.0)
    assert d.info["split"]["unseen_classes"] == sorted(YELAMARTHI_21)
    unseen = d.sketches["category"].isin(YELAMARTHI_21)
    assert (d.sketches.loc[unseen, "split"] == "test").all()
    assert (d.sketches.loc[~unseen, "split"] == "train").all()
    assert (d.sketches["category_split"] == np.where(unseen, "unseen", "seen")).all()
    assert (d.photos.loc[d.photos["category"].isin(YELAMARTHI_21), "split"] == "test").all()


def test_named_split_needs_its_classes(tmp_path):
    write_sketchy(tmp_path, extended=False)
    with pytest.raises(DataError, match=r"unseen classes not in the data.*cabin"):
        load(tmp_path, unseen="sketchy_104_21")


def test_absent_and_empty(tmp_path):
    with pytest.raises(DataError, match=r"sketchy[\s\S]*Expected layout"):
        load(tmp_path)
    (tmp_path / "sketchy" / "256x256" / "sketch" / AUG).mkdir(parents=True)
    (tmp_path / "sketchy" / "256x256" / "photo" / AUG).mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders"):
        load(tmp_path)


def test_corrupt_sketch(tmp_path):
    write_sketchy(tmp_path, extended=False)
    bad = tmp_path / "sketchy" / "256x256" / "sketch" / AUG / "bat" / "n00_30-1.png"
    bad.write_bytes(bad.read_bytes()[:30])
    with pytest.raises(DataError, match=r"n00_30-1\.png"):
        load(tmp_path).sketch_images(8)
    d = load(tmp_path, skip_bad=True)
    assert len(d) == 11 and len(d.skipped) == 1


def test_real_sketchy(data_root):
    from sbir_core.data.registry import available

    if not available("sketchy", data_root):
        pytest.skip(f"no Sketchy release under {data_root}")
    d = load_dataset("sketchy", data_root, unseen="yelamarthi21")
    assert d.sketches["category"].nunique() == 125
    assert len(d.info["split"]["seen_classes"]) == 104


def test_paired_only_is_the_fine_grained_set(tmp_path):
    """The official release pairs ``<photo>-<k>`` with ``<photo>`` as PACS's sketch domain does."""
    from sbir_core.data.views import fg_view

    write_sketchy(tmp_path)
    folder = tmp_path / "sketchy" / "256x256" / "sketch" / AUG / "cow"
    Image.new("L", (16, 16), 255).save(folder / "orphan-1.png")
    d = load(tmp_path, paired_only=True, fractions=(0.0, 0.0, 1.0))
    assert len(d) == 12 and len(d.photos) == 6 and not d.photos["extended"].any()
    assert d.info["paired_only"] == {"unpaired_sketches": 1, "other_photos": 3}
    v = fg_view(d, "test", size=8)
    assert v.n_candidates().tolist() == [2] * 12  # galleries within the category: its 2 photos
    assert (v.gallery_table["photo_id"].iloc[v.target.numpy()].to_numpy() == v.table["photo_id"].to_numpy()).all()
    assert (v.table["sketch_id"].str.rsplit("-", n=1).str[0] == v.table["photo_id"]).all()
