"""Recipes: one home for each chapter's runs, read from the chapters' parameters, with the run's overrides."""

import json

import pytest
import torch

from sbir_core import recipes as R
from sbir_core import strokes as SK
from sbir_core.book import chapter_defaults, chapters


def test_overrides_reach_every_chapter_that_has_the_name(monkeypatch):
    base = R.load_params("04_triplet_baseline", "ci")
    monkeypatch.setenv(R.OVERRIDES_ENV, json.dumps({"SEED": 7, "WORLD": {"seed": 1}, "NOT_A_NAME": 1}))
    p = R.load_params("04_triplet_baseline", "ci")
    assert p["SEED"] == 7 and p["WORLD"] == base["WORLD"] | {"seed": 1} and "NOT_A_NAME" not in p
    assert {k: v for k, v in p.items() if k not in ("SEED", "WORLD")} == {
        k: v for k, v in base.items() if k not in ("SEED", "WORLD")
    }


def test_the_bench_is_chapter_fours_run(monkeypatch):
    b = R.bench("ci")
    run = b.baseline()
    assert run.spec.name == "triplet_sn" and run.config.steps == b.p["STEPS"]
    assert run.train.group == "category"  # negatives from the anchor's category (QMUL's rule)
    assert run.train.queries.ndim == 2 and run.train.queries.shape[1] == b.feature_dim  # projected trunk features
    assert run.key(0) == R.bench("ci").baseline().key(0)  # the same parameters give the same store key
    assert run.key(0) != run.key(1)


@pytest.mark.parametrize("name", [n for n in chapters() if "04_triplet_baseline" < n < "10_claims"])
def test_no_chapter_repeats_chapter_fours_parameters(name):
    """A chapter that builds on chapter 4 reads its parameters (recipes.StyleBench); it does not copy them."""
    own = {"SCALE", "SEED", "PROGRESS", "DEVICE", "BUDGET_S", "THREADS"}
    base = set(chapter_defaults("04_triplet_baseline")) - own
    repeated = sorted(base & set(chapter_defaults(name)))
    assert not repeated, f"{name} repeats chapter 4's parameters {repeated}: read them with recipes.bench"


def test_a_chapter_without_a_main_run_is_refused():
    with pytest.raises(R.RecipeError, match="no main run"):
        R.main_run("01_evaluation", "ci")


def test_the_hierarchy_reads_nodes_whose_whole_photo_is_chapter_fours_feature():
    """Chapter 5's nodes (recipes.node_view): a photo's first node is the whole photo, whose node is exactly the
    projected trunk feature chapter 4's Triplet-SN reads; a sketch's nodes are its strokes (no whole-sketch node)."""
    b, p = R.bench("ci"), R.load_params("05_hierarchy", "ci")
    view = b.views().val
    nodes, feats = R.node_view(b, p, view), b.read(view)
    k = p["HIER_OPTIONS"]["max_nodes"]
    assert nodes.queries.shape == (len(view), k, b.feature_dim + 1)
    torch.testing.assert_close(nodes.gallery[:, 0, :-1], feats.gallery, atol=1e-4, rtol=1e-4)
    n_strokes = torch.tensor([min(len(SK.split_strokes(s)), k) for s in view.strokes], dtype=torch.float32)
    assert torch.equal(nodes.queries[..., -1].sum(1), n_strokes)
    run = R.main_run("05_hierarchy", "ci")[0]
    assert run.spec.name == "hierarchy" and run.spec.options["channels"] == b.feature_dim


def test_the_region_shift_trains_matched_arms_and_stylemeup_takes_the_country_as_style():
    """Chapter 6's region shift on the shipped sample: both Triplet-SN arms see training sets of equal size
    and class mix, StyleMeUp trains on the source's view with episodes whose held-out style is a country
    outside the test region, and every arm takes a step."""
    from sbir_core.data.regions import region_of
    from sbir_core.samplers import get_sampler
    from sbir_core.train import train_run

    p = R.load_params("06_stylemeup", "ci") | {"REGION_STEPS": 2, "REGION_SMU_STEPS": 2}
    rs = R.region_shift(R.bench("ci"), p, "quickdraw_sample")
    runs = rs["runs"]
    src, ctl = runs["triplet_sn"].train, runs["control"].train
    assert runs["stylemeup"].train is src and runs["triplet_sn"].spec == runs["control"].spec
    classes = lambda v: v.table["category"].value_counts().sort_index().to_dict()  # noqa: E731
    assert len(src) == len(ctl) and classes(src) == classes(ctl)
    assert (region_of(src.table["countrycode"], p["REGIONS"]) != p["TEST_REGION"]).all()
    assert (region_of(ctl.table["countrycode"], p["REGIONS"]) == p["TEST_REGION"]).all()
    import sbir_core.models.stylemeup  # noqa: F401  (registers its sampler)

    tasks = get_sampler("style_episodes")(src, 4, torch.Generator().manual_seed(0), k=p["REGION_K"])["tasks"]
    assert all(region_of([t["held_out"]], p["REGIONS"])[0] != p["TEST_REGION"] for t in tasks)
    for run in runs.values():
        res = train_run(run.spec, run.train, None, None, run.config, 0, store=False)
        assert res.history["loss"].notna().all()


def test_a_relative_checkpoint_folder_goes_under_the_runs_results_folder(tmp_path, monkeypatch):
    """The paper configuration's ``CHECKPOINT_DIR: checkpoints/04_triplet_baseline`` is relative: a run into
    another folder (``book run --out``, the smoke) keeps its checkpoints there, not in the book's folder."""
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path / "out"))
    assert R.checkpoint_dir("checkpoints/04") == str(tmp_path / "out" / "checkpoints" / "04")
    assert R.checkpoint_dir(str(tmp_path / "abs")) == str(tmp_path / "abs")
    assert R.checkpoint_dir("") is None and R.checkpoint_dir(None) is None


def test_the_claims_world_draws_more_unseen_test_sketches_and_the_same_others():
    small = {
        "n_instances": 64,
        "drawers_seen": 4,
        "drawers_unseen": 4,
        "sketches_per_instance": 2,
        "unseen_sketches_per_instance": 1,
        "adaptation_sketches_per_instance": 1,
        "val_fraction": 0.25,
    }
    plain = R.StyleBench({"STYLE_GAP": 3.0, "WORLD": small, "EVERY_UNSEEN_DRAWS_TEST": False})
    more = R.StyleBench({"STYLE_GAP": 3.0, "WORLD": small, "EVERY_UNSEEN_DRAWS_TEST": True})
    a, b = plain.world(), more.world()

    def unseen_test(data):
        return ((data.sketches["drawer_split"] == "unseen") & (data.sketches["split"] == "test")).to_numpy()

    assert unseen_test(b).sum() == 4 * unseen_test(a).sum() > 0
    rest_a, rest_b = a.sketches[~unseen_test(a)], b.sketches[~unseen_test(b)]
    assert rest_a["sketch_id"].tolist() == rest_b["sketch_id"].tolist()  # training, validation, seen test, adaptation
    for i, j in zip(rest_a.index, rest_b.index):
        assert torch.equal(torch.as_tensor(a.strokes[i]), torch.as_tensor(b.strokes[j]))  # the same sketches
    assert set(a.sketches.loc[unseen_test(a), "sketch_id"]) < set(b.sketches.loc[unseen_test(b), "sketch_id"])
    # the other gaps' and the detail dial's worlds keep WORLD's test
    assert unseen_test(more.world(gap=0.0)).sum() == unseen_test(plain.world(gap=0.0)).sum()
    assert unseen_test(more.world(3.0, 1.0)).sum() == unseen_test(plain.world(3.0, 1.0)).sum()


def test_a_frozen_trunk_bench_lets_go_of_the_images_its_features_replace():
    small = {
        "n_instances": 64,
        "drawers_seen": 4,
        "drawers_unseen": 2,
        "sketches_per_instance": 2,
        "unseen_sketches_per_instance": 1,
        "adaptation_sketches_per_instance": 1,
        "val_fraction": 0.25,
    }
    p = {
        "STYLE_GAP": 3.0,
        "WORLD": small,
        "IMAGE_SIZE": 32,
        "LINE_WIDTH": 1.5,
        "FREEZE_TRUNK": True,
        "TRUNK": {"block": 3, "pool": 1},
        "FEATURE_DIMS": 0,
    }
    bench = R.StyleBench(p)
    images = bench.views().test_unseen.queries.clone()
    feats = bench.features().test_unseen
    assert "test_unseen" not in bench.views()._made  # the kernel holds the features, not both
    assert feats.queries.shape == (len(images), bench.feature_dim)
    assert torch.equal(bench.views().test_unseen.queries, images)  # asked again: made again, the same images
    images_only = R.StyleBench(p | {"FREEZE_TRUNK": False})
    assert (
        images_only.features().test_seen is images_only.views().test_seen
    )  # no features: the images are what it reads
