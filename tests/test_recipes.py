"""Recipes: one home for each chapter's runs, read from the chapters' parameters, with the run's overrides."""

import json

import pytest

from sbir_core import recipes as R
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


# chapter 5 still builds its own world with copies of chapter 4's parameters (an --set of a shared name reaches both
# copies alike, but a change to chapter 4's config does not reach chapter 5); its move onto recipes is unfinished
# (branch wip/hierarchy-on-nodes). Strict: the day it is done, this marker fails and must go.
NOT_YET = {"05_hierarchy": "chapter 5 is not on recipes yet (its hierarchy on ready-made trunk nodes is unfinished)"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=NOT_YET[n], strict=True)) if n in NOT_YET else n
        for n in chapters()
        if "04_triplet_baseline" < n < "10_claims"
    ],
)
def test_no_chapter_repeats_chapter_fours_parameters(name):
    """A chapter that builds on chapter 4 reads its parameters (recipes.StyleBench); it does not copy them."""
    own = {"SCALE", "SEED", "PROGRESS", "DEVICE", "BUDGET_S", "THREADS"}
    base = set(chapter_defaults("04_triplet_baseline")) - own
    repeated = sorted(base & set(chapter_defaults(name)))
    assert not repeated, f"{name} repeats chapter 4's parameters {repeated}: read them with recipes.bench"


def test_a_chapter_without_a_main_run_is_refused():
    with pytest.raises(R.RecipeError, match="no main run"):
        R.main_run("01_evaluation", "ci")
