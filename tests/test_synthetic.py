"""Tests of the style world: determinism, splits, strokes, detail levels, style gap, near-twins, config."""

import numpy as np
import pytest
import torch

from sbir_core import strokes as S
from sbir_core.data import load_dataset
from sbir_core.data.base import DataError, cache_dir
from sbir_core.data.synthetic import (
    CATEGORIES,
    MEDIA,
    N_STYLE,
    STYLE_NAMES,
    StyleWorld,
    WorldConfig,
    WorldConfigError,
    adaptation_split,
    detail_levels,
    detail_subset,
    drawer_styles,
    load,
    support_set,
)
from sbir_core.data.views import fg_view
from sbir_core.data.world import drawers as W
from sbir_core.data.world import objects as O
from sbir_core.evaluation import evaluate
from sbir_core.models.pixel_nn import PixelNN

SMALL = dict(
    n_instances=96,
    family_size=2,
    drawers_seen=6,
    drawers_unseen=3,
    sketches_per_instance=2,
    unseen_sketches_per_instance=2,
    adaptation_sketches_per_instance=1,
    photo_size=32,
    media=("photo", "comic"),
    test_fraction=0.5,
)


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
    paths = sorted(cache_dir().glob("world-*.npz"))
    assert [p.name.rsplit("-", 1)[1] for p in paths] == ["base.npz", "unseen.npz"] or len(paths) == 2
    for path in paths:
        with np.load(path, allow_pickle=False) as z:  # the cache holds no pickled objects
            assert "__sha256__" in z.files


def test_splits_are_disjoint_and_tagged(world):
    sk = world.sketches
    by_split = {s: set(sk.loc[sk["split"] == s, "instance"]) for s in ("train", "val", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["val"] & by_split["test"])
    # unseen drawers draw test objects and, as the adaptation split, train and val objects
    assert set(sk.loc[sk["drawer_split"] == "unseen", "split"]) == {"train", "val", "test"}
    assert sk["adaptation"].equals((sk["drawer_split"] == "unseen") & (sk["split"] != "test"))
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


def test_style_gap_moves_how_and_detail_gap_moves_how_much():
    many = dict(drawers_seen=300, drawers_unseen=300, n_instances=8)
    df = drawer_styles(WorldConfig(style_gap=4.0, **many)).groupby("drawer_split").mean(numeric_only=True)
    for name in ("tremor_amp", "width", "overtrace", "distortion"):
        assert df.loc["unseen", name] > df.loc["seen", name], name
    # how much and how big people draw does not move with the style gap (two samples of one distribution)
    for name, lo, hi, _ in W.STYLE_DIMS:
        if name in W.CONTENT_DIMS:
            assert abs(df.loc["unseen", name] - df.loc["seen", name]) < 0.06 * (hi - lo), name
    u = W.gap_direction()
    assert np.isclose(np.linalg.norm(u), 1) and (u[[STYLE_NAMES.index(n) for n in W.CONTENT_DIMS]] == 0).all()
    det = (
        drawer_styles(WorldConfig(detail_gap=3.0, style_gap=0.0, **many))
        .groupby("drawer_split")
        .mean(numeric_only=True)
    )
    assert det.loc["unseen", "detail"] < det.loc["seen", "detail"] - 0.2
    for name in ("tremor_amp", "width", "size"):
        assert abs(det.loc["unseen", name] - det.loc["seen", name]) < 0.06 * (
            W.STYLE_DIMS[STYLE_NAMES.index(name)][2] - W.STYLE_DIMS[STYLE_NAMES.index(name)][1]
        )


def test_detail_gap_draws_fewer_detail_strokes_and_style_gap_does_not():
    base = dict(
        n_instances=48,
        drawers_seen=8,
        drawers_unseen=8,
        sketches_per_instance=1,
        unseen_sketches_per_instance=4,
        adaptation_sketches_per_instance=0,
        photo_size=8,
        test_fraction=0.5,
    )

    def detail_share(**gaps):
        d = load(cache=False, **base, **gaps)
        lv = detail_levels(d)
        unseen = (d.sketches["drawer_split"] == "unseen").to_numpy()
        return np.mean([np.mean(np.asarray(lv[i]) == 2) for i in np.flatnonzero(unseen)])

    plain = detail_share()
    assert abs(detail_share(style_gap=4.0) - plain) < 0.03
    assert detail_share(detail_gap=4.0) < plain / 2


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
            moved |= len(a) != len(b) or any(
                p.points.shape != q.points.shape or not np.allclose(p.points, q.points) for p, q in zip(a, b)
            )
        assert moved, f"{category}.{spec.name} never changes the geometry"


def test_registry_refuses_a_world_option_out_of_range():
    with pytest.raises(WorldConfigError, match=r"twin_changes must lie in 1\.\.\d"):
        load_dataset("style_world", twin_changes=0)


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
    assert world.photo_arrays.shape == (SMALL["n_instances"] * 2, 32, 32, 3)
    assert (world.photos["medium"][world.photo_index()] == "photo").all()


@pytest.mark.parametrize(
    "bad",
    [
        dict(n_instances=-1),
        dict(drawers_seen=-2),
        dict(sketches_per_instance=-1),
        dict(categories=("shoe", "dragon")),
        dict(unseen_categories=("unicorn",)),
        dict(media=("photo", "fresco")),
        dict(style_gap=-1.0),
        dict(test_fraction=0.6, val_fraction=0.5),
        dict(sketches_per_instance=30),
        dict(categories="shoe"),
        dict(n_instances=2.5),
        dict(family_size=0),
        dict(twin_changes=20),
        dict(detail_gap=float("nan")),
        dict(style_gap="2"),
        dict(adaptation_sketches_per_instance=99),
    ],
)
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(WorldConfigError) as err:
        WorldConfig(**bad)
    assert list(bad)[0] in str(err.value)
    assert isinstance(err.value, DataError) and isinstance(err.value, ValueError)


def test_unknown_option_is_an_error():
    with pytest.raises(WorldConfigError, match="colour_depth"):
        load(colour_depth=3)


def test_registry_loads_the_world():
    data = load_dataset(
        "style_world",
        n_instances=16,
        drawers_seen=4,
        drawers_unseen=2,
        sketches_per_instance=1,
        unseen_sketches_per_instance=1,
        photo_size=16,
    )
    assert len(data) > 0 and data.name == "style_world"


def test_shared_views_work_on_the_world(world):
    view = fg_view(world, split="test", size=32)
    assert (view.gallery_table["medium"] == "photo").all()
    assert len(view.gallery) == world.sketches.loc[world.sketches["split"] == "test", "instance"].nunique()
    assert view.queries.shape[1:] == (1, 32, 32) and view.gallery.shape[1:] == (3, 32, 32)
    unseen = view.subset(view.table["drawer_split"] == "unseen")
    rows = unseen.drawer_episodes(3, torch.Generator().manual_seed(0))[0]
    assert unseen.table["drawer"].iloc[rows.numpy()].nunique() == 1


def test_pixel_baseline_ranks_within_the_category(world):
    view = fg_view(world, "test", size=32)
    ev = evaluate(PixelNN(size=24), view, ks=(1, 5))
    r = ev.per_query["rank"]
    assert len(r) == len(view) and ((r >= 1) & (r <= view.n_candidates())).all()


def test_families_of_near_twins_share_a_split():
    w = StyleWorld(WorldConfig(n_instances=80, family_size=4, twin_changes=1))
    fam = w.family
    for f in np.unique(fam):
        members = np.flatnonzero(fam == f)
        assert len({w.split[i] for i in members}) == 1 and len({w.category[i] for i in members}) == 1
        proto = w.values(members[0])
        for i in members[1:]:
            assert (w.values(i) != proto).sum() == 1  # one attribute changed from the prototype
        changed = [int(np.flatnonzero(w.values(i) != proto)[0]) for i in members[1:]]
        assert len(set(changed)) == len(changed)  # each sibling changes another attribute
    two = StyleWorld(WorldConfig(n_instances=40, family_size=5, twin_changes=2))
    assert all((two.values(i) != two.values(i - i % 5)).sum() == 2 for i in range(40) if i % 5)


def test_ci_world_has_fifty_test_objects_per_category():
    w = StyleWorld(WorldConfig())
    test = [c for c, s in zip(w.category, w.split) if s == "test"]
    counts = {c: test.count(c) for c in set(w.category)}
    assert min(counts.values()) >= 50, counts


def test_category_oracle_scores_chance_within_a_category():
    """A model that knows only the category (random order inside it) is at chance within a category,
    and near-perfect at Acc@10 on the mixed gallery: measured on the world's own test view."""
    from sbir_core import metrics as M

    data = load(cache=False, **dict(SMALL, n_instances=160, family_size=4))
    view = fg_view(data, "test", size=8)
    rng = np.random.default_rng(0)
    same = view.table["category"].to_numpy()[:, None] == view.gallery_table["category"].to_numpy()[None, :]
    acc1, acc10, mixed10 = [], [], []
    for _ in range(200):
        dist = np.where(same, 0.0, 1.0) + rng.random(same.shape) * 0.5  # category first, random inside
        within = M.true_match_rank(dist, view.target.numpy(), candidates=view.candidates())
        acc1.append(M.acc_at_k(within, 1))
        acc10.append(M.acc_at_k(within, 10))
        mixed10.append(M.acc_at_k(M.true_match_rank(dist, view.target.numpy()), 10))
    se = lambda k: np.sqrt(view.chance(k) * (1 - view.chance(k)) / len(view) / 200)  # noqa: E731
    assert abs(np.mean(acc1) - view.chance(1)) < 4 * se(1) + 1e-3
    assert abs(np.mean(acc10) - view.chance(10)) < 4 * se(10) + 1e-3
    assert np.mean(mixed10) == pytest.approx(view.within(None).category_oracle(10), abs=0.02)
    assert np.mean(mixed10) > 2 * view.within(None).chance(10)


def test_adaptation_split_and_support_sets_never_show_a_test_object():
    data = load(cache=False, **dict(SMALL, adaptation_sketches_per_instance=2))
    adapt = adaptation_split(data)
    test_objects = set(data.sketches.loc[data.sketches["split"] == "test", "instance"])
    assert len(adapt) and not set(adapt.sketches["instance"]) & test_objects
    assert (adapt.sketches["drawer_split"] == "unseen").all()
    for drawer in sorted(set(adapt.sketches["drawer"])):
        rows = support_set(data, drawer, 3, seed=1)
        assert len(rows) == 3 and (data.sketches["drawer"].iloc[rows] == drawer).all()
        assert not set(data.sketches["instance"].iloc[rows]) & test_objects
        assert np.array_equal(rows, support_set(data, drawer, 3, seed=1))
    big = int((adapt.sketches["drawer"] == drawer).sum())
    with pytest.raises(DataError, match=rf"k=999.*1\.\.{big}"):
        support_set(data, drawer, 999)
    with pytest.raises(DataError, match="only unseen drawers"):
        support_set(data, "d000", 1)
    with pytest.raises(DataError, match="unknown drawer"):
        support_set(data, "nobody", 1)


def test_worlds_that_differ_in_gap_share_the_base_cache():
    first = load(**SMALL)
    other = load(**dict(SMALL, style_gap=5.0))
    assert len(list(cache_dir().glob("world-*-base.npz"))) == 1
    assert len(list(cache_dir().glob("world-*-unseen.npz"))) == 2
    seen = (first.sketches["drawer_split"] == "seen").to_numpy()
    assert first.sketches[seen].equals(other.sketches[seen])
    assert all(np.array_equal(a, b) for a, b, s in zip(first.strokes, other.strokes, seen) if s)
    assert not all(np.array_equal(a, b) for a, b, s in zip(first.strokes, other.strokes, seen) if not s)


def test_a_damaged_world_cache_is_reported_and_regenerated():
    from sbir_core.cache import CacheWarning

    first = load(**SMALL)
    for path in cache_dir().glob("world-*.npz"):
        path.write_bytes(path.read_bytes()[:200])
    with pytest.warns(CacheWarning, match="world-.*unusable"):
        again = load(**SMALL)
    assert again.sketches.equals(first.sketches) and np.array_equal(again.photo_arrays, first.photo_arrays)
