"""Dataset views: tensors, pairing, triplets, episodes, on a tiny hand-made SBIRData."""

import numpy as np
import pandas as pd
import pytest
import torch

from sbir_core import strokes as S
from sbir_core.data.base import DataError, SBIRData
from sbir_core.data.views import fg_view, photo_tensor, sketch_tensor, sketch_view


def tiny_data(n_instances: int = 12, per_instance: int = 3, seed: int = 0) -> SBIRData:
    """Instances are polygons (vertex count and radius by instance); each of 4 drawers jitters them;
    photos are the clean polygon filled with an instance colour. Splits: 2/3 train, then val, test."""
    rng = np.random.default_rng(seed)
    sk_rows, strokes, ph_rows, photos = [], [], [], []
    for i in range(n_instances):
        n_vert, radius = 3 + i % 4, 50 + 12 * (i // 4)
        ang = np.linspace(0, 2 * np.pi, n_vert + 1)
        clean = np.stack([128 + radius * np.cos(ang), 128 + radius * np.sin(ang), np.zeros(n_vert + 1)], 1)
        clean[-1, 2] = 1
        split = "train" if i < 2 * n_instances // 3 else ("val" if i < 5 * n_instances // 6 else "test")
        img = S.rasterise(clean, 16, 2.0)
        colour = rng.integers(0, 255, 3)
        photos.append((img[..., None] * 255 + (1 - img[..., None]) * colour).astype(np.uint8))
        ph_rows.append(dict(photo_id=f"p{i}", instance=f"i{i}", category="poly", split=split, medium="photo"))
        for k in range(per_instance):
            drawer = (i + k) % 4
            pts = clean.copy()
            pts[:, :2] += rng.normal(0, 2 + 2 * drawer, (len(pts), 2))
            strokes.append(pts)
            sk_rows.append(
                dict(
                    sketch_id=f"s{i}_{k}",
                    photo_id=f"p{i}",
                    instance=f"i{i}",
                    category="poly",
                    drawer=f"d{drawer}",
                    drawer_split="seen" if drawer < 3 else "unseen",
                    split=split,
                )
            )
    # a second medium of the same photos, which fg_view must leave out of the gallery
    ph_rows += [dict(r, photo_id=r["photo_id"] + "w", medium="watercolour") for r in ph_rows]
    photos = photos + [255 - p for p in photos]
    return SBIRData(
        "tiny", pd.DataFrame(sk_rows), pd.DataFrame(ph_rows), strokes=strokes, photo_arrays=np.stack(photos)
    )


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))


def test_tensors_polarity_shape_layout():
    rast = np.ones((2, 8, 8), np.float32)
    rast[0, 3, 4] = 0.0
    x = sketch_tensor(rast)
    assert x.shape == (2, 1, 8, 8) and x.dtype == torch.float32
    assert x[0, 0, 3, 4] == 1 and x.sum() == 1  # ink is 1, background 0
    assert x.is_contiguous(memory_format=torch.channels_last)
    p = photo_tensor(np.full((3, 8, 8, 3), 255, np.uint8))
    assert p.shape == (3, 3, 8, 8) and torch.allclose(p, torch.ones_like(p))
    assert photo_tensor(np.zeros((1, 4, 4, 3), np.uint8)).min() == -1


def test_fg_view_pairs_each_sketch_with_its_photo():
    data = tiny_data()
    view = fg_view(data, "train", size=16)
    assert len(view) == 8 * 3 and view.gallery.shape == (8, 3, 16, 16)
    # the gallery holds the distinct paired photos of this split, of the "photo" medium only
    assert set(view.gallery_table["medium"]) == {"photo"}
    assert (view.gallery_table["photo_id"].to_numpy()[view.target.numpy()] == view.table["photo_id"].to_numpy()).all()
    # the tensors are the dataset's own rasters, converted once
    rows = np.flatnonzero(data.sketches["split"] == "train")
    assert torch.equal(view.queries[:, 0], torch.from_numpy(1 - data.sketch_images(16, 1.5)[rows]))
    test = fg_view(data, "test", size=16)
    assert len(test.gallery) == 2 and len(test) == 6


def test_fg_view_errors_are_clear():
    data = tiny_data()
    with pytest.raises(DataError, match="no sketches in split"):
        fg_view(data, "nope", size=16)
    with pytest.raises(DataError, match="medium 'oil'"):
        fg_view(data, "train", size=16, medium="oil")
    with pytest.raises(DataError, match="no sketch column 'colour'"):
        fg_view(data, "train", size=16, where={"colour": "red"})


def test_sketches_without_their_photo_are_dropped_and_listed():
    data = tiny_data()
    gone = data.photos["photo_id"] != "p0"
    data = SBIRData(
        "holes",
        data.sketches,
        data.photos[gone].reset_index(drop=True),
        strokes=data.strokes,
        photo_arrays=data.photo_arrays[gone.to_numpy()],
    )
    view = fg_view(data, "train", size=16)
    assert sorted(view.dropped) == ["s0_0", "s0_1", "s0_2"] and len(view) == 7 * 3


def two_categories(n_instances: int = 24) -> SBIRData:
    """``tiny_data`` with odd and even instances in two categories, "a" and "b"."""
    data = tiny_data(n_instances=n_instances)
    cats = {f"i{i}": ("a" if i % 2 else "b") for i in range(n_instances)}
    data.sketches["category"] = data.sketches["instance"].map(cats)
    data.photos["category"] = data.photos["instance"].map(cats)
    return data


def test_within_category_gallery_chance_and_oracle():
    view = fg_view(two_categories(), "train", size=16)
    cand = view.candidates()
    assert cand.shape == (len(view), len(view.gallery))
    same = view.table["category"].to_numpy()[:, None] == view.gallery_table["category"].to_numpy()[None, :]
    assert np.array_equal(cand, same) and (view.n_candidates() == 8).all()
    assert view.chance(1) == pytest.approx(1 / 8) and view.chance(10) == 1.0
    mixed = view.within(None)
    assert mixed.candidates() is None and mixed.chance(1) == pytest.approx(1 / 16)
    # knowing the category is worth chance within it, and a lot on the mixed gallery
    assert view.category_oracle(1) == pytest.approx(view.chance(1))
    assert mixed.category_oracle(4) == pytest.approx(4 / 8) and mixed.category_oracle(4) > mixed.chance(4)


def test_a_category_with_one_gallery_item_is_left_out_and_named():
    data = tiny_data()
    data.photos.loc[data.photos["photo_id"] == "p11", "category"] = "lonely"
    data.sketches.loc[data.sketches["photo_id"] == "p11", "category"] = "lonely"
    with pytest.raises(DataError, match=r"one photo in every category.*group=None"):
        fg_view(data, "test", size=16)  # p10 (poly) and p11 (lonely): no category can be ranked
    assert fg_view(data, "test", size=16, group=None).group is None
    # one lonely category among rankable ones is left out with its sketches, and named
    view = fg_view(data, "train", size=16)
    assert view.lone_groups == [] and len(view.gallery) == 8
    data.photos.loc[data.photos["photo_id"] == "p0", "category"] = "lonely"
    data.sketches.loc[data.sketches["photo_id"] == "p0", "category"] = "lonely"
    view = fg_view(data, "train", size=16)
    assert view.lone_groups == ["lonely"] and len(view.gallery) == 7 and len(view) == 21
    assert "p0" not in set(view.table["photo_id"])


def test_within_category_negatives_stay_in_the_category():
    view = fg_view(two_categories(), "train", size=16)
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(len(view)).repeat(50)
    b = view.triplets(idx, g)
    q_cat = view.table["category"].to_numpy()[idx.numpy()]
    n_cat = view.gallery_table["category"].to_numpy()[b["neg_idx"].numpy()]
    assert (q_cat == n_cat).all()
    # uniform over the other queries of the category: every such query's photo gets drawn
    other = view.within(None).triplets(idx, g)
    assert (view.gallery_table["category"].to_numpy()[other["neg_idx"].numpy()] != q_cat).any()


def test_triplet_negatives_are_other_anchors_photos():
    view = fg_view(tiny_data(), "train", size=16)
    g = torch.Generator().manual_seed(0)
    negatives = []
    for _ in range(200):
        idx = torch.randperm(len(view), generator=g)[:8]
        b = view.triplets(idx, g)
        assert b["sketch"].shape == (8, 1, 16, 16) and b["neg"].shape == (8, 3, 16, 16)
        assert torch.equal(b["photo"], view.gallery[view.target[idx]])
        assert torch.equal(b["neg"], view.gallery[b["neg_idx"]])
        negatives += b["neg_idx"].tolist()
    # negatives are photos of training sketches (the QMUL rule), and many of them get drawn
    assert set(negatives) <= set(view.target.tolist())
    assert len(set(negatives)) == len(set(view.target.tolist()))
    # same seed, same batches
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, c = view.sample_triplets(5, g1), view.sample_triplets(5, g2)
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_random_negative_is_uniform_over_other_sketches():
    view = fg_view(tiny_data(n_instances=6, per_instance=1), None, size=16, group=None)  # one sketch per photo
    g = torch.Generator().manual_seed(1)
    idx = torch.zeros(6000, dtype=torch.long)  # anchor 0 always
    neg = view.triplets(idx, g)["neg_idx"]
    assert (neg != view.target[0]).all()  # never the anchor's own sketch's photo
    freq = torch.bincount(neg, minlength=6)[1:].float() / len(neg)
    assert torch.allclose(freq, torch.full((5,), 0.2), atol=0.02)


def test_sketch_view_for_photo_less_data():
    data = tiny_data()
    data = SBIRData("nophoto", data.sketches.assign(photo_id=""), pd.DataFrame(), strokes=data.strokes)
    view = sketch_view(data, "train", size=16)
    assert view.gallery.shape == (8, 1, 16, 16) and len(view) == 16
    assert (view.gallery_table["instance"].to_numpy()[view.target.numpy()] == view.table["instance"].to_numpy()).all()
    assert not set(view.table["sketch_id"]) & set(view.gallery_table["sketch_id"])


def test_drawer_episodes_and_subsets():
    view = fg_view(tiny_data(), "train", size=16)
    g = torch.Generator().manual_seed(0)
    eps = view.drawer_episodes(3, g)
    assert len(eps) == 4
    for rows in eps:
        assert len(rows) == 3 and view.table["drawer"].iloc[rows.numpy()].nunique() == 1
    with pytest.raises(DataError, match="fewer than k"):
        view.drawer_episodes(50, g, drawers=["d0"])
    sub = view.subset(view.table["drawer_split"] == "unseen")
    assert len(sub) == (view.table["drawer_split"] == "unseen").sum() and sub.gallery is view.gallery
