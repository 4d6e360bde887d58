"""The loader helpers added to the sample model: images, strays, fingerprints, statistics."""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sbir_core import strokes as S
from sbir_core.data.base import (
    DataError,
    SBIRData,
    check_images,
    files_fingerprint,
    find_child,
    find_dataset_dir,
    list_images,
    load_image,
    stretch_ink,
)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))


def test_stretch_ink_blackens_grey_lines_and_keeps_blank_pages():
    imgs = np.full((2, 4, 4), 255, np.uint8)
    imgs[0, 1, 1:3] = 153  # a grey line (darkness 0.4)
    imgs[1, 2, 2] = 250  # a blank page with a speck of noise
    out = stretch_ink(imgs)
    assert out.dtype == np.float32 and out[0, 1, 1] == pytest.approx(0.0) and out[0, 0, 0] == 1.0
    assert out[1, 2, 2] == pytest.approx(250 / 255)


def test_load_image_pads_to_square_with_white(tmp_path):
    img = np.zeros((10, 40, 3), np.uint8)  # a wide black photo
    Image.fromarray(img).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 20, "RGB")
    assert out.shape == (20, 20, 3)
    assert (out[0] == 255).all() and (out[10, 5] < 10).all()


def test_transparent_sketches_are_drawn_on_white(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent black page...
    rgba[8, 2:14] = (0, 0, 0, 255)  # ...with one opaque black line
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    out = load_image(tmp_path / "alpha.png", 16, "L")
    assert out[0, 0] == 255 and out[8, 8] == 0


def test_list_images_and_check_images(tmp_path):
    for name in ["b.PNG", "a.jpeg", ".hidden.png", "x.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "b.PNG")
    Image.new("L", (8, 8)).save(tmp_path / "a.jpeg", format="JPEG")
    files, stray = list_images(tmp_path)
    assert [f.name for f in files] == ["a.jpeg", "b.PNG"]
    assert sorted(os.path.basename(s) for s in stray) == [".hidden.png", "sub", "x.txt"]
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    keep, skipped = check_images(files + [tmp_path / "c.png"], skip_bad=True)
    assert keep.tolist() == [True, True, False] and skipped[0][0].endswith("c.png")
    with pytest.raises(DataError, match=r"c\.png"):
        check_images(files + [tmp_path / "c.png"], skip_bad=False)


def test_fingerprint_follows_names_sizes_and_times(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1")
    b.write_text("2")
    fp = files_fingerprint([a, b], tmp_path)
    assert files_fingerprint([a, b], tmp_path) == fp
    assert files_fingerprint([a], tmp_path) != fp
    b.write_text("22")
    assert files_fingerprint([a, b], tmp_path) != fp


def test_find_dataset_dir_is_case_tolerant(tmp_path):
    (tmp_path / "ChairV2").mkdir()
    assert find_dataset_dir(tmp_path, ["chairv2"], "x", "L").name == "ChairV2"
    with pytest.raises(DataError, match=r"no folder named shoes[\s\S]*Expected layout:\nLAYOUT"):
        find_dataset_dir(tmp_path, ["shoes"], "x", "LAYOUT")
    with pytest.raises(DataError, match=r"missing file .*nope"):
        find_child(tmp_path, "nope", "x", "L")


def _stroke_data():
    sketches = [
        S.join_strokes([[[10, 10], [100, 10]], [[10, 50], [10, 90], [50, 90]]]),
        S.join_strokes([[[30, 30], [200, 230]]]),
    ]
    table = pd.DataFrame({"sketch_id": ["a", "b"], "instance": ["a", "b"], "split": ["train", "test"]})
    return SBIRData("toy", table, pd.DataFrame(), strokes=sketches)


def test_stroke_stats_and_ink_stats():
    d = _stroke_data()
    st = d.stroke_stats()
    assert st["strokes"].tolist() == [2.0, 1.0] and st["points"].tolist() == [5.0, 2.0]
    assert st["extent"].tolist() == [90.0, 200.0] and st["sketch_id"].tolist() == ["a", "b"]
    ink = d.ink_stats(64)
    assert (ink["ink"] > 0).all() and (ink["ink_pixels"] > 0).all()
    # sketch b spans 200 of 256 canvas units: about 200/256 of the side, give or take the line width
    assert ink.loc[1, "ink_extent"] == pytest.approx(200 / 256, abs=3 / 64)
    counts = d.split_counts()
    assert counts.index.tolist() == ["train", "test"] and counts["sketches"].tolist() == [1, 1]


def test_image_only_datasets_have_no_stroke_stats(tmp_path):
    Image.new("L", (8, 8), 255).save(tmp_path / "s.png")
    d = SBIRData("img", pd.DataFrame({"sketch_id": ["s"]}), pd.DataFrame(), sketch_files=[tmp_path / "s.png"])
    with pytest.raises(DataError, match="ink_stats"):
        d.stroke_stats()
    assert d.ink_stats(8)["ink_extent"].tolist() == [0.0]  # a blank page has no extent
    assert d.report().empty
