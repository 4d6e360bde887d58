"""Regions of QuickDraw drawers and the matched splits of a region shift (``sbir_core.data.regions``)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from sbir_core.data import DataError
from sbir_core.data import regions as RG

REGIONS = {"north": ["US", "CA"], "elsewhere": "*"}


def drawings(counts: dict, seed: int = 0) -> pd.DataFrame:
    """A sketch table: counts = {(class, country): n}."""
    rows = []
    for (cls, country), n in counts.items():
        for i in range(n):
            rows.append({"sketch_id": f"{cls}/{country}{i}", "category": cls, "countrycode": country})
    table = pd.DataFrame(rows)
    return table.sample(frac=1, random_state=seed).reset_index(drop=True)


def as_data(table: pd.DataFrame):
    """What the views read of a dataset: its name and sketch table (images are passed beside)."""
    return SimpleNamespace(name="toy", sketches=table.assign(instance=table["sketch_id"], drawer=""))


def test_region_of_lists_codes_and_sends_the_rest_to_the_star_region():
    out = RG.region_of(["US", "ca", "GB", "", "BR"], REGIONS)
    assert out.tolist() == ["north", "north", "elsewhere", "", "elsewhere"]
    assert RG.region_of(["GB"], {"north": ["US"]}).tolist() == [""]  # no "*" region: unlisted codes are in none
    with pytest.raises(DataError, match="only one region"):
        RG.region_of(["US"], {"a": "*", "b": "*"})
    with pytest.raises(DataError, match="is in regions"):
        RG.region_of(["US"], {"a": ["US"], "b": ["US"]})
    with pytest.raises(DataError, match="two-letter"):
        RG.region_of(["US"], {"a": "US"})


def test_the_split_matches_class_counts_and_keeps_the_sets_apart():
    table = drawings(
        {("cup", "US"): 9, ("cup", "CA"): 3, ("cup", "GB"): 10, ("cup", "FR"): 4, ("dog", "US"): 8, ("dog", "DE"): 2}
    )
    split = RG.shift_split(table, REGIONS, "north", seed=3)
    region = RG.region_of(table["countrycode"], REGIONS)
    parts = {k: split[k] for k in ("source", "control", "test_a", "test_b")}
    every = np.concatenate(list(parts.values()))
    assert len(every) == len(set(every))  # no drawing in two sets
    assert (region[split["source"]] == "elsewhere").all()
    for k in ("control", "test_a", "test_b"):
        assert (region[parts[k]] == "north").all()
    for cls in ("cup", "dog"):
        n = {k: (table["category"].iloc[v] == cls).sum() for k, v in parts.items()}
        assert n["source"] == n["control"]  # the same number of drawings of the class in both training sets
        assert n["test_a"] >= 1 and n["test_b"] >= 1
    # cup: 12 from north -> 6 test, 6 control (14 elsewhere); dog: 8 -> 4 test, 2 control (only 2 elsewhere)
    assert (table["category"].iloc[split["control"]] == "dog").sum() == 2
    assert (table["category"].iloc[split["control"]] == "cup").sum() == 6
    assert split["classes"] == ["cup", "dog"] and split["dropped"] == {}


def test_the_split_is_a_function_of_the_seed_not_of_the_row_order():
    counts = {("cup", "US"): 9, ("cup", "GB"): 10, ("dog", "US"): 8, ("dog", "DE"): 6}
    a, b = drawings(counts, seed=0), drawings(counts, seed=1)
    ids = lambda t, s: {k: sorted(t["sketch_id"].iloc[s[k]]) for k in ("source", "control", "test_a", "test_b")}  # noqa: E731
    assert ids(a, RG.shift_split(a, REGIONS, "north", 5)) == ids(b, RG.shift_split(b, REGIONS, "north", 5))
    assert ids(a, RG.shift_split(a, REGIONS, "north", 5)) != ids(a, RG.shift_split(a, REGIONS, "north", 6))


def test_classes_short_of_drawings_are_dropped_with_the_reason_and_too_few_refused():
    table = drawings(
        {("cup", "US"): 8, ("cup", "GB"): 8, ("dog", "US"): 8, ("dog", "GB"): 8, ("owl", "US"): 3, ("owl", "GB"): 5}
    )
    split = RG.shift_split(table, REGIONS, "north")
    assert split["classes"] == ["cup", "dog"] and "3 drawing(s) from north" in split["dropped"]["owl"]
    with pytest.raises(DataError, match="2 or more classes"):
        RG.shift_split(drawings({("cup", "US"): 8, ("cup", "GB"): 8}), REGIONS, "north")
    with pytest.raises(DataError, match="not one of the regions"):
        RG.shift_split(table, REGIONS, "south")
    with pytest.raises(DataError, match="no country code"):
        RG.shift_split(table.assign(countrycode=""), REGIONS, "north")


def test_hub_view_pairs_each_drawing_with_a_hub_of_its_class_and_names_the_country():
    table = drawings({("cup", "US"): 7, ("cup", "GB"): 7, ("dog", "US"): 5})
    data = as_data(table)
    images = torch.arange(len(table), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    rows = np.arange(len(table))
    view = RG.hub_view(data, rows, images, every=6)
    cls_q = view.table["category"].to_numpy()
    cls_g = view.gallery_table["category"].to_numpy()
    assert (cls_g[view.target.numpy()] == cls_q).all()  # a query's true match is a hub of its class
    assert len(view.gallery) == 14 // 6 + 1 and len(view) == 19 - len(view.gallery)
    assert set(view.table["sketch_id"]).isdisjoint(view.gallery_table["sketch_id"])
    assert (view.table["drawer"] == view.table["countrycode"]).all()
    # the images follow the rows: each query's image is its own drawing's
    pos = {s: i for i, s in enumerate(table["sketch_id"])}
    assert [pos[s] for s in view.table["sketch_id"]] == view.queries[:, 0, 0, 0].long().tolist()
    with pytest.raises(DataError, match="every must be 2"):
        RG.hub_view(data, rows, images, every=1)


def test_fold_views_ask_each_fold_against_the_other():
    table = drawings({("cup", "US"): 8, ("cup", "GB"): 8, ("dog", "US"): 8, ("dog", "GB"): 8})
    data = as_data(table)
    split = RG.shift_split(table, REGIONS, "north")
    images = torch.zeros(len(table), 1, 2, 2)
    a, b = RG.fold_views(data, split, images)
    assert list(a.table["sketch_id"]) == list(b.gallery_table["sketch_id"])
    assert list(b.table["sketch_id"]) == list(a.gallery_table["sketch_id"])
    assert a.relevant().any(1).all() and b.relevant().any(1).all()  # every query has a drawing of its class to find


def test_pooled_evaluation_is_the_mean_over_both_folds():
    from sbir_core.evaluation import evaluate, pooled, random_ranking
    from sbir_core.models.pixel_nn import FeatureNN

    table = drawings({("cup", "US"): 8, ("cup", "GB"): 8, ("dog", "US"): 10, ("dog", "GB"): 8})
    data = as_data(table)
    split = RG.shift_split(table, REGIONS, "north")
    g = torch.Generator().manual_seed(0)
    feats = (
        torch.randn(len(table), 5, generator=g)
        + 3 * torch.tensor((table["category"] == "cup").to_numpy()).float()[:, None]
    )
    folds = RG.fold_views(data, split, feats)
    evs = [evaluate(FeatureNN(), v) for v in folds]
    both = pooled(evs)
    assert len(both.table) == len(folds[0]) + len(folds[1])
    assert both.metrics["map_all"] == pytest.approx(np.concatenate([e.per_query["ap_all"] for e in evs]).mean())
    # FeatureNN ranks by cosine similarity: check one query's AP by brute force
    q, gal, rel = folds[0].queries, folds[0].gallery, folds[0].relevant()
    sim = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(gal, dim=1).T
    order = torch.argsort(-sim[0]).numpy()
    hits = rel[0][order]
    ap = np.mean([hits[: i + 1].mean() for i in np.flatnonzero(hits)])
    assert evs[0].per_query["ap_all"][0] == pytest.approx(ap)
    chance = pooled([random_ranking(v) for v in folds])
    assert chance.metrics["map_all"] < both.metrics["map_all"]
    with pytest.raises(ValueError):
        pooled([])


def test_the_shipped_sample_splits_by_region():
    from sbir_core.data import load_dataset

    data = load_dataset("quickdraw_sample", seed=0)
    split = RG.shift_split(data.sketches, {"US & Canada": ["US", "CA"], "elsewhere": "*"}, "US & Canada")
    assert len(split["classes"]) == data.sketches["category"].nunique()
    assert len(split["source"]) == len(split["control"]) > 100
    assert data.sketches["countrycode"].iloc[split["source"]].nunique() > 10  # many countries: StyleMeUp's styles
