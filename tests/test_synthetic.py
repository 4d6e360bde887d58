"""Tests of the style world: determinism, splits, strokes, detail levels, style gap, near-twins, config."""

import numpy as np
import pytest

from sbir_core import strokes as S
from sbir_core.data import load_dataset
from sbir_core.data.base import DataError, cache_dir
from sbir_core.data.synthetic import (CATEGORIES, MEDIA, N_STYLE, StyleWorld, WorldConfig, WorldConfigError,
                                      detail_levels, detail_subset, drawer_styles, load)
from sbir_core.data.world import objects as O
from sbir_core.data.world.difficulty import pixel_nn_ranks
from sbir_core.data.views import EpisodeDataset, PairDataset, fg_view

SMALL = dict(n_instances=48, drawers_seen=6, drawers_unseen=3, sketches_per_instance=2,
             unseen_sketches_per_instance=2, photo_size=32, media=("photo", "comic"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def world():
    return load(cache=False, **SMALL)


def test_same_seed_gives_identical_arrays(world):
    again = load(cache=False, **SMALL)
    assert world.sketches.equals(again.sketches) and world.photos.equals(again.photos)
    assert all(np.array_equal(a, b) for a, b in zip(world.strokes, again.strokes))
    assert np.array_equal(world.photo_arrays, again.photo_arrays)


def test_different_seeds_differ(world):
    other = load(cache=False, **dict(SMALL, seed=1))
    assert not np.array_equal(world.photo_arrays, other.photo_arrays)
    assert not all(len(a) == len(b) and np.array_equal(a, b) for a, b in zip(world.strokes, other.strokes))


def test_cache_roundtrip_is_exact(world):
    first = load(**SMALL)
    second = load(**SMALL)  # from the npz
    assert second.sketches.equals(world.sketches)
    assert all(np.array_equal(a, b) for a, b in zip(second.strokes, world.strokes))
    assert all(np.array_equal(a, b) for a, b in zip(second.info["detail_levels"], first.info["detail_levels"]))
    assert np.array_equal(second.photo_arrays, world.photo_arrays)
    (path,) = list(cache_dir().glob("world-*.npz"))
    with np.load(path, allow_pickle=False) as z:  # the cache holds no pickled objects
        assert z["xy"].dtype == np.float64 and z["photos"].dtype == np.uint8


def test_splits_are_disjoint_and_tagged(world):
    sk = world.sketches
    by_split = {s: set(sk.loc[sk["split"] == s, "instance"]) for s in ("train", "val", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["val"] & by_split["test"])
    assert set(sk.loc[sk["drawer_split"] == "unseen", "split"]) == {"test"}
    seen_drawers = set(sk.loc[sk["drawer_split"] == "seen", "drawer"])
    assert not seen_drawers & set(sk.loc[sk["drawer_split"] == "unseen", "drawer"])
    assert set(sk["category_split"]) == {"seen", "unseen"}
    assert (sk["category_split"] == "unseen").equals(sk["category"].isin(["lamp", "bag"]))
    assert sk["sketch_id"].is_unique and world.photos["photo_id"].is_unique
    for s in ("train", "test"):  # each instance's photos share its split
        inst = world.photos["instance"][world.photos["split"] == s]
        assert set(inst) == by_split[s]
    # one sketch per (instance, drawer), distinct drawers per instance
    assert not sk.duplicated(["instance", "drawer"]).any()


def test_every_stroke_array_is_valid_with_levels(world):
    levels = world.info["detail_levels"]
    assert len(levels) == len(world.strokes)
    for s, lv in zip(world.strokes, levels):
        checked = S.check_strokes(s)
        assert np.array_equal(checked, s)
        assert (s[:, :2] >= 0).all() and (s[:, :2] < S.CANVAS).all()
        assert len(lv) == S.n_strokes(s)
        assert set(np.unique(lv)) <= {0, 1, 2}
        assert 0 in lv
    assert set(np.concatenate(levels).tolist()) == {0, 1, 2}


def test_detail_levels_follow_subsets(world):
    mask = (world.sketches["split"] == "test").to_numpy()
    sub = world.subset(mask)
    levels = detail_levels(sub)
    assert len(levels) == len(sub.strokes)
    assert all(len(lv) == S.n_strokes(s) for lv, s in zip(levels, sub.strokes))
    full = world.info["detail_levels"]
    assert all(np.array_equal(a, full[i]) for a, i in zip(levels, np.flatnonzero(mask)))
    row = next(r for r, lv in enumerate(full) if len(set(lv)) == 3)
    sizes = [S.n_strokes(detail_subset(world.strokes[row], full[row], k)) for k in (0, 1, 2)]
    assert sizes[0] < sizes[1] < sizes[2] == S.n_strokes(world.strokes[row])


def test_on_demand_sketch_equals_stored(world):
    w = world.info["world"]
    row = 5
    i = w.instance_ids.index(world.sketches["instance"][row])
    d = w.drawer_ids.index(world.sketches["drawer"][row])
    s, lv = w.sketch(i, d)
    assert np.array_equal(s, world.strokes[row]) and np.array_equal(lv, world.info["detail_levels"][row])
    assert np.array_equal(w.photos(i)[0], world.photo_arrays[world.photo_index()[row]])


def test_style_gap_zero_means_one_distribution():
    many = dict(drawers_seen=400, drawers_unseen=400, n_instances=8)
    z0 = StyleWorld(WorldConfig(style_gap=0.0, **many)).styles
    z3 = StyleWorld(WorldConfig(style_gap=3.0, **many)).styles
    diff0 = z0[400:].mean(0) - z0[:400].mean(0)
    diff3 = z3[400:].mean(0) - z3[:400].mean(0)
    bound = 4 * np.sqrt(2 / 400)  # 4 standard errors of a mean difference, per dimension
    assert (np.abs(diff0) < bound).all()
    assert abs(np.linalg.norm(diff3) - 3.0) < 4 * bound
    assert np.allclose(z0[400:].std(0), z0[:400].std(0), atol=0.2)


def test_unseen_drawers_differ_in_physical_style():
    df = drawer_styles(WorldConfig(style_gap=4.0, drawers_seen=200, drawers_unseen=200, n_instances=8))
    m = df.groupby("drawer_split")[["tremor_amp", "gaps", "detail"]].mean()
    assert m.loc["unseen", "tremor_amp"] > m.loc["seen", "tremor_amp"]
    assert m.loc["unseen", "detail"] < m.loc["seen", "detail"]


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_near_twins_differ_in_exactly_one_attribute(category):
    specs = O.attributes(category)
    assert len(specs) >= 6 and any(a.discrete for a in specs) and any(not a.discrete for a in specs)
    rng = np.random.default_rng(3)
    for _ in range(10):
        values = O.sample_attributes(category, rng)
        twin, name = O.near_twin_attributes(category, values, rng)
        changed = np.flatnonzero(values != twin)
        assert len(changed) == 1 and specs[changed[0]].name == name
    for spec in specs:  # every attribute changes visible geometry for some instance
        moved = False
        for seed in range(12):
            values = O.sample_attributes(category, np.random.default_rng(seed))
            twin, _ = O.near_twin_attributes(category, values, np.random.default_rng(seed), spec.name)
            a, b = O.build_parts(category, values), O.build_parts(category, twin)
            moved |= len(a) != len(b) or any(p.points.shape != q.points.shape or not np.allclose(p.points, q.points)
                                             for p, q in zip(a, b))
        assert moved, f"{category}.{spec.name} never changes the geometry"


def test_world_near_twin_and_photos(world):
    w = world.info["world"]
    twin, name = w.near_twin(0, seed=1)
    assert (twin != w.values(0)).sum() == 1
    imgs = w.photos(0, media=MEDIA, size=24)
    assert imgs.shape == (len(MEDIA), 24, 24, 3) and imgs.dtype == np.uint8
    assert len({im.tobytes() for im in imgs}) == len(MEDIA)
    assert not np.array_equal(w.photos(0, values=twin)[0], w.photos(0)[0])
    with pytest.raises(ValueError, match="fresco"):
        w.photos(0, media=["fresco"])
    s, lv = w.sketch(0, 0, style=np.zeros(N_STYLE))
    assert S.check_strokes(s).shape == s.shape and len(lv) == S.n_strokes(s)


def test_photo_table_has_every_medium(world):
    counts = world.photos.groupby("instance")["medium"].apply(tuple)
    assert (counts == ("photo", "comic")).all()
    assert world.photo_arrays.shape == (48 * 2, 32, 32, 3)
    assert (world.photos["medium"][world.photo_index()] == "photo").all()


@pytest.mark.parametrize("bad", [dict(n_instances=-1), dict(drawers_seen=-2), dict(sketches_per_instance=-1),
                                 dict(categories=("shoe", "dragon")), dict(unseen_categories=("unicorn",)),
                                 dict(media=("photo", "fresco")), dict(style_gap=-1.0),
                                 dict(test_fraction=0.6, val_fraction=0.5), dict(sketches_per_instance=30),
                                 dict(categories="shoe"), dict(n_instances=2.5)])
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(WorldConfigError) as err:
        WorldConfig(**bad)
    assert list(bad)[0] in str(err.value)
    assert isinstance(err.value, DataError) and isinstance(err.value, ValueError)


def test_unknown_option_is_an_error():
    with pytest.raises(WorldConfigError, match="colour_depth"):
        load(colour_depth=3)


def test_registry_loads_the_world():
    data = load_dataset("style_world", n_instances=16, drawers_seen=4, drawers_unseen=2,
                        sketches_per_instance=1, unseen_sketches_per_instance=1, photo_size=16)
    assert len(data) > 0 and data.name == "style_world"


def test_shared_views_work_on_the_world(world):
    view = fg_view(world, split="test", size=32)
    assert (view.gallery_table["medium"] == "photo").all()
    assert len(view.gallery) == world.sketches.loc[world.sketches["split"] == "test", "instance"].nunique()
    sk, ph = PairDataset(view)[0]
    assert sk.shape == (1, 32, 32) and ph.shape == (3, 32, 32)
    unseen = view.subset(view.table["drawer_split"] == "unseen")
    sketches, photos, rows = EpisodeDataset(unseen, k=3)[0]
    assert sketches.shape == (3, 1, 32, 32) and unseen.table["drawer"][rows.numpy()].nunique() == 1


def test_pixel_baseline_ranks(world):
    r = pixel_nn_ranks(world, size=24)
    g = r.attrs["gallery_size"]
    assert len(r) == (world.sketches["split"] == "test").sum()
    assert ((r["rank"] >= 1) & (r["rank"] <= g)).all()
    # pixels carry the object's shape: the nearest-neighbour baseline beats chance
    assert (r["rank"] == 1).mean() > 1 / g
