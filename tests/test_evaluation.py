"""The one evaluation entry point on real layouts: category-level zero-shot on the style world's unseen
categories and on a Sketchy-layout fixture, checked against brute-force loops; fine-grained within a
category with the pixel baseline."""

import numpy as np
import pytest
from test_data_sketchy import write_sketchy

from sbir_core import metrics as M
from sbir_core.data import load_dataset
from sbir_core.data.views import category_view, fg_view
from sbir_core.evaluation import distances, evaluate
from sbir_core.models.pixel_nn import PixelNN


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))


def brute_force(dist, rel, k=200):
    """AP over the whole ranking and P@K divided by K, by explicit loops (ties against the method)."""
    aps, precs = [], []
    for q in range(len(dist)):
        # ties: relevant items after irrelevant ones at the same distance
        order = sorted(range(dist.shape[1]), key=lambda j: (dist[q, j], rel[q, j]))
        r = [bool(rel[q, j]) for j in order]
        hits, total = 0, 0.0
        for i, is_rel in enumerate(r, 1):
            if is_rel:
                hits += 1
                total += hits / i
        aps.append(total / sum(r))
        precs.append(sum(r[:k]) / k)
    return float(np.mean(aps)), float(np.mean(precs))


def test_zero_shot_on_the_style_worlds_unseen_categories():
    data = load_dataset(
        "style_world",
        n_instances=64,
        family_size=1,
        drawers_seen=4,
        drawers_unseen=2,
        sketches_per_instance=1,
        unseen_sketches_per_instance=1,
        adaptation_sketches_per_instance=0,
        photo_size=16,
    )
    view = category_view(
        data, {"category_split": "unseen", "split": "test"}, {"category_split": "unseen", "medium": "photo"}, size=16
    )
    assert set(view.table["category"]) == {"lamp", "bag"} and set(view.gallery_table["category"]) == {"lamp", "bag"}
    method = PixelNN(size=16)
    ev = evaluate(method, view)
    dist = distances(method, view.queries, view.gallery)
    ap, prec = brute_force(dist, view.relevant())
    assert ev.metrics["map_all"] == pytest.approx(ap) and ev.metrics["prec_at_200"] == pytest.approx(prec)
    assert ev.outcome("map_all").shape == (len(view),)


def test_zero_shot_on_a_sketchy_layout(tmp_path):
    write_sketchy(tmp_path, classes=("airplane", "bat", "cow", "door"), photos_per_class=3)
    data = load_dataset("sketchy", tmp_path, unseen=["bat", "door"], seed=0)
    view = category_view(data, {"category_split": "unseen"}, {"category_split": "unseen"}, size=16)
    assert set(view.table["category"]) == {"bat", "door"}
    method = PixelNN(size=16)
    ev = evaluate(method, view)
    ap, prec = brute_force(distances(method, view.queries, view.gallery), view.relevant())
    assert ev.metrics["map_all"] == pytest.approx(ap) and ev.metrics["prec_at_200"] == pytest.approx(prec)
    assert ev.metrics["map_at_200"] == pytest.approx(
        M.map_at_k(distances(method, view.queries, view.gallery), view.relevant(), 200)
    )


def test_category_view_refuses_what_it_cannot_support(tmp_path):
    from sbir_core.data.base import DataError

    data = load_dataset(
        "style_world",
        n_instances=32,
        family_size=1,
        drawers_seen=2,
        drawers_unseen=1,
        sketches_per_instance=1,
        unseen_sketches_per_instance=1,
        adaptation_sketches_per_instance=1,
        photo_size=8,
    )
    with pytest.raises(DataError, match="no sketch column"):
        category_view(data, {"colour": "red"}, {}, size=8)
    with pytest.raises(DataError, match="no item in the gallery"):
        category_view(data, {"category": "lamp"}, {"category": "bag"}, size=8)
    with pytest.raises(DataError, match="wanted media"):
        category_view(data, {}, {"medium": "photo"}, size=8, relevance="category_medium", want_media=["oil"])


def test_fine_grained_within_category_pixel_baseline():
    data = load_dataset(
        "style_world",
        n_instances=96,
        family_size=2,
        drawers_seen=3,
        drawers_unseen=1,
        sketches_per_instance=1,
        unseen_sketches_per_instance=1,
        adaptation_sketches_per_instance=1,
        photo_size=16,
        test_fraction=0.5,
    )
    view = fg_view(data, "test", size=16)
    ev = evaluate(PixelNN(size=16), view, ks=(1, 5))
    dist = distances(PixelNN(size=16), view.queries, view.gallery)
    # brute force: count the same-category photos at least as close as the true one
    ranks = []
    for q in range(len(view)):
        t = int(view.target[q])
        same = view.gallery_table["category"].to_numpy() == view.table["category"].iloc[q]
        ranks.append(int(((dist[q] <= dist[q, t]) & same).sum()))
    assert np.array_equal(ev.per_query["rank"], ranks)
