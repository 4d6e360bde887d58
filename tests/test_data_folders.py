"""TU-Berlin and domain folders (PACS), and the category-level / zero-shot split helper."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sbir_core.data import load_dataset
from sbir_core.data.base import DataError
from sbir_core.data.folders import assign_splits, load_domains, load_tuberlin, resolve_unseen


def _img(path, mode="L", value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new(mode, (12, 12), 255 if mode == "L" else (255, 255, 255))
    img.paste(value if mode == "L" else (value, 0, 0), (3, 3, 9, 9))
    img.save(path)


def write_tuberlin(root, classes=("airplane", "bear", "cup"), n=4, photos=False):
    for cls in classes:
        for i in range(n):
            _img(root / "TU-Berlin" / "png" / cls / f"{i + 1}.png")
            if photos:
                _img(root / "TU-Berlin" / "ImageResized" / cls / f"p{i}.jpg", "RGB")
    (root / "TU-Berlin" / "png" / "filelist.txt").write_text("airplane/1.png\n")
    return root


def write_pacs(root):
    for cls in ("dog", "house"):
        for dom in ("photo", "cartoon"):
            for i in range(3):
                _img(root / "pacs" / dom / cls / f"{dom[0]}{i}.jpg", "RGB", 20 * i)
        _img(root / "pacs" / "photo" / cls / "n0211_7.jpg", "RGB")
        _img(root / "pacs" / "sketch" / cls / "n0211_7-3.png")  # a Sketchy sketch of that photo
        _img(root / "pacs" / "sketch" / cls / "n0211_7-4.png")
        _img(root / "pacs" / "sketch" / cls / "5281.png")  # a TU-Berlin sketch: no photo
        _img(root / "pacs" / "sketch" / cls / "n9999_1-1.png")  # photo absent: its own instance
    (root / "pacs" / "README").write_text("x")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))


def test_tuberlin_category_and_zero_shot(tmp_path):
    write_tuberlin(tmp_path, photos=True)
    d = load_dataset("tuberlin", tmp_path, fractions=(0.5, 0.25, 0.25))
    assert len(d) == 12 and len(d.photos) == 12
    assert (d.sketches["photo_id"] == "").all() and (d.photo_index() == -1).all()
    assert d.sketches.groupby(["category", "split"]).size().to_dict()[("bear", "test")] == 1
    assert any(p.endswith("filelist.txt") for p in d.info["ignored"])
    z = load_tuberlin(tmp_path, unseen=["cup"], val_fraction=0.25)
    assert set(z.sketches.loc[z.sketches.category == "cup", "split"]) == {"test"}
    assert set(z.sketches.loc[z.sketches.category != "cup", "split"]) == {"train", "val"}
    assert z.info["split"]["mode"] == "zero-shot" and z.info["split"]["seen_classes"] == ["airplane", "bear"]
    assert d.sketch_images(8).shape == (12, 8, 8)


def test_tuberlin_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match=r"tuberlin[\s\S]*Expected layout"):
        load_tuberlin(tmp_path)
    (tmp_path / "tuberlin").mkdir()
    with pytest.raises(DataError, match=r"missing folder .*png"):
        load_tuberlin(tmp_path)
    (tmp_path / "tuberlin" / "png" / "empty_class").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders with images"):
        load_tuberlin(tmp_path)


def test_pacs_domains_and_pairs(tmp_path):
    write_pacs(tmp_path)
    d = load_dataset("pacs", tmp_path)
    assert len(d) == 8 and len(d.photos) == 14
    assert sorted(d.photos["medium"].unique()) == ["cartoon", "photo"]
    assert d.info["paired_sketches"] == 4
    paired = d.sketches[d.sketches["photo_id"] != ""]
    assert paired["sketch_id"].str.contains("n0211_7-").all()
    assert (paired["instance"] == paired["photo_id"]).all()
    # a sketch and its photo share an instance, hence a split
    merged = paired.merge(d.photos, on="photo_id", suffixes=("", "_p"))
    assert (merged["split"] == merged["split_p"]).all()
    assert any(p.endswith("README") for p in d.info["ignored"])
    assert d.photo_images(8).shape == (14, 8, 8, 3)


def test_pacs_sketchy_keeps_the_instance_pairs(tmp_path):
    from sbir_core.data.views import fg_view

    write_pacs(tmp_path)
    d = load_dataset("pacs_sketchy", tmp_path, fractions=(0.0, 0.0, 1.0))
    assert d.name == "pacs_sketchy"
    # only the Sketchy sketches whose photo is present, and only the photos they were drawn from
    assert sorted(d.sketches["sketch_id"].str.rsplit("/", n=1).str[-1]) == ["n0211_7-3"] * 2 + ["n0211_7-4"] * 2
    assert sorted(d.photos["photo_id"]) == ["photo/dog/n0211_7", "photo/house/n0211_7"]
    assert (d.photos["medium"] == "photo").all()
    assert d.info["paired_only"] == {"unpaired_sketches": 4, "other_photos": 12}
    v = fg_view(d, "test", size=8, group=None)  # each sketch's target is its own photo
    assert len(v) == 4 and v.gallery_table["photo_id"].iloc[v.target.numpy()].tolist() == v.table["photo_id"].tolist()


def test_paired_only_without_pairs_is_an_error(tmp_path):
    for cls in ("dog",):
        _img(tmp_path / "pacs" / "photo" / cls / "a.jpg", "RGB")
        _img(tmp_path / "pacs" / "sketch" / cls / "5281.png")
    with pytest.raises(DataError, match="paired_only"):
        load_dataset("pacs_sketchy", tmp_path)


def test_domains_need_the_sketch_domain(tmp_path):
    write_pacs(tmp_path)
    with pytest.raises(DataError, match=r"missing sketch domain folder .*drawing"):
        load_domains(tmp_path, "pacs", sketch_domain="drawing")
    with pytest.raises(DataError, match=r"no folder named bam"):
        load_domains(tmp_path, "bam")


def test_pacs_corrupt_image_skip(tmp_path):
    write_pacs(tmp_path)
    (tmp_path / "pacs" / "cartoon" / "dog" / "c1.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataError, match=r"c1\.jpg"):
        load_domains(tmp_path, "pacs").photo_images(8)
    d = load_domains(tmp_path, "pacs", skip_bad=True)
    assert len(d.photos) == 13 and d.skipped[0][0].endswith("c1.jpg")


def test_resolve_unseen():
    classes = [f"c{i}" for i in range(10)]
    assert resolve_unseen(None, classes) == []
    assert resolve_unseen(3, classes, seed=1) == resolve_unseen(3, classes, seed=1)
    assert len(resolve_unseen(3, classes)) == 3
    for bad, match in [
        (0, "cannot draw"),
        (10, "cannot draw"),
        ("nope", "unknown named split"),
        (["c1", "zz"], "not in the data"),
        (2.5, "unseen must be"),
        (True, "unseen must be"),
    ]:
        with pytest.raises(DataError, match=match):
            resolve_unseen(bad, classes)


def test_assign_splits_keeps_instances_together_and_checks_fractions():
    rng = np.random.default_rng(0)
    inst = [f"i{j}" for j in rng.integers(0, 30, 200)]
    sk = pd.DataFrame({"instance": inst, "category": [i[:2] for i in inst]})
    ph = pd.DataFrame({"instance": sorted(set(inst)), "category": [i[:2] for i in sorted(set(inst))]})
    rec = assign_splits(sk, ph, None, (0.6, 0.2, 0.2), seed=4)
    assert sk.groupby("instance")["split"].nunique().max() == 1
    both = sk.merge(ph, on="instance", suffixes=("", "_p"))
    assert (both["split"] == both["split_p"]).all() and rec["mode"] == "category"
    with pytest.raises(DataError, match="fractions"):
        assign_splits(sk, ph, None, (0.6, 0.6, 0.2))
    with pytest.raises(DataError, match="val_fraction"):
        assign_splits(sk, ph, ["i1"], val_fraction=1.0)


def test_real_pacs(data_root):
    if not (data_root / "pacs").exists():
        pytest.skip(f"no pacs under {data_root}")
    d = load_dataset("pacs", data_root)
    assert len(d) == 3929
    assert d.photos["medium"].value_counts().to_dict() == {"cartoon": 2344, "art_painting": 2048, "photo": 1670}
    assert d.info["paired_sketches"] == 2864  # ../shared/data/README.md
    fg = load_dataset("pacs_sketchy", data_root)
    assert len(fg) == 2864 and len(fg.photos) == fg.sketches["photo_id"].nunique()
    assert sorted(fg.sketches["category"].unique()) == ["dog", "elephant", "giraffe", "guitar", "horse"]
    assert fg.sketches.groupby("photo_id").size().min() >= 5  # many drawers per photo


def test_real_tuberlin(data_root):
    from sbir_core.data.registry import available

    if not available("tuberlin", data_root):
        pytest.skip(f"no TU-Berlin png/ folder under {data_root}")
    d = load_dataset("tuberlin", data_root)
    assert d.sketches["category"].nunique() == 250
