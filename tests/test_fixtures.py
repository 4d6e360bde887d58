"""The fixture data root: every dataset the README lists loads from it in its official layout, with the real
releases' quirks, and the split rule gives small classes a validation share."""

import numpy as np
import pytest
from PIL import Image

from sbir_core.data import available, load_dataset
from sbir_core.data.fixtures import DATASETS, write_root
from sbir_core.data.folders import YELAMARTHI_21, share

NAMES = ("shoes304", "chairv2", "shoev2", "pacs", "pacs_sketchy", "sketchy", "tuberlin", "quickdraw")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("fixture_roots")
    return {"full": write_root(base / "full"), "bare": write_root(base / "bare", bare=True)}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("variant", ["full", "bare"])
@pytest.mark.parametrize("name", NAMES)
def test_every_dataset_loads_with_three_splits(roots, variant, name):
    root = roots[variant]
    assert available(name, root)
    d = load_dataset(name, root, seed=0)
    assert set(d.sketches["split"]) == {"train", "val", "test"}
    assert d.sketches.groupby("instance")["split"].nunique().max() == 1
    with_photos = name != "quickdraw" and (variant == "full" or name in ("shoes304", "pacs", "pacs_sketchy", "sketchy"))
    assert (len(d.photos) > 0) == with_photos
    if d.strokes is None:
        assert d.sketch_images(16).shape == (len(d), 16, 16)
    else:
        assert len(d.strokes) == len(d)
    if with_photos:
        assert d.photo_images(16).shape == (len(d.photos), 16, 16, 3)


def test_the_quirks_are_there(roots):
    full = roots["full"]
    modes = {Image.open(f).mode for f in (full / "shoes304" / "photo").iterdir()}
    assert {"RGB", "L", "CMYK"} <= modes
    assert "car (sedan)" in set(load_dataset("tuberlin", full).sketches["category"])
    assert "The Eiffel Tower" in set(load_dataset("quickdraw", full).sketches["category"])
    sketchy = load_dataset("sketchy", full, seed=0)
    assert "car_(sedan)" in set(sketchy.sketches["category"])
    assert (sketchy.photo_index() < 0).sum() == 4 + 21  # one sketch a class whose photo is missing
    assert sketchy.photos["extended"].any() and not load_dataset("sketchy", roots["bare"]).photos["extended"].any()
    chair = load_dataset("chairv2", full)
    assert min(int(s[:, 2].sum()) for s in chair.strokes) == 1  # a single-stroke sketch
    qd = load_dataset("quickdraw", full)
    assert {"US", "CA", "GB"} <= set(qd.sketches["countrycode"])
    assert (qd.sketches["recognized"].astype(str) == "False").any()
    assert (np.array([int(s[:, 2].sum()) for s in qd.strokes]) == 1).any()


def test_sketchy_zero_shot_has_a_validation_split_from_few_photos(roots):
    """Chapter 7's load: the Yelamarthi split on the paired photos, 4 a seen class. Before ``share``, a class of
    3-5 objects gave none to validation and the chapter stopped."""
    d = load_dataset("sketchy", roots["bare"], unseen="yelamarthi21", paired_only=True, seed=0)
    seen = d.sketches[d.sketches["category_split"] == "seen"]
    assert set(seen["split"]) == {"train", "val"}
    assert (d.photos[d.photos["split"] == "val"].groupby("category").size() == 2).all()  # rankable in its category
    assert set(d.sketches.loc[d.sketches["category_split"] == "unseen", "category"]) == set(YELAMARTHI_21)


def test_share_rule():
    assert [share(0.1, n) for n in (0, 1, 2, 5, 6, 14, 15, 100)] == [0, 0, 1, 1, 1, 1, 2, 10]
    assert [share(0.1, n, least=2) for n in (1, 2, 3, 5, 14, 15, 25, 100)] == [0, 1, 2, 2, 2, 2, 2, 10]
    assert share(0.0, 10) == 0 and share(0.0, 10, least=2) == 0  # no share asked, none given
    assert share(0.1, 3, keep=2) == 1 and share(0.1, 2, keep=2) == 0  # leaves ``keep`` for the other splits
    # a class of n paired objects, category mode (test, then validation, then training), from n = 3
    for n, want in {3: (1, 1, 1), 4: (2, 1, 1), 5: (2, 2, 1), 6: (2, 2, 2), 15: (3, 2, 10), 30: (6, 3, 21)}.items():
        test = share(0.2, n, keep=2, least=2)
        val = share(0.1, n, keep=test + 1, least=2)
        assert (test, val, n - test - val) == want, n


def test_write_root_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_root(tmp_path / "x")
    with pytest.raises(ValueError, match="no fixture for nope"):
        write_root(tmp_path / "y", datasets=("nope",))
    assert set(DATASETS) <= {"shoes304", "chairv2", "shoev2", "pacs", "sketchy", "tuberlin", "quickdraw"}


def test_support_hold_out_leaves_two_queries_and_names_the_classes_it_drops(roots):
    from sbir_core.data.support import hold_out_support

    d = load_dataset("sketchy", roots["bare"], unseen="yelamarthi21", paired_only=True, seed=0)
    held = hold_out_support(d, 0.5, 0)
    unseen = held.photos[held.photos["category_split"] == "unseen"]
    assert (unseen[unseen["split"] == "test"].groupby("category").size() == 2).all()  # 4 objects: 2 support, 2 ranked
    assert (unseen[unseen["split"] == "train"].groupby("category").size() == 2).all()
    assert held.info["dropped_classes"] == []
    lone = d.sketches.loc[d.sketches["category"] == "bat", "instance"].iloc[0]
    cut = hold_out_support(d.subset((d.sketches["instance"] != lone).to_numpy()), 0.5, 0)
    assert cut.info["dropped_classes"] == ["bat"]  # three objects left: not two for support and two to rank
    assert set(cut.sketches.loc[cut.sketches["category"] == "bat", "split"]) == {"dropped"}
    assert cut.info["dropped_why"]["bat"].startswith("3 objects")


def test_support_hold_out_drops_a_class_with_fewer_support_sketches_than_the_largest_k(roots):
    """A k-shot table asks each class for up to max(k) support sketches: a class whose support objects hold fewer
    is dropped for every k (the same classes and queries at every k), named with its reason, not a whole-set error."""
    from sbir_core.data.base import DataError
    from sbir_core.data.support import hold_out_support

    d = load_dataset("sketchy", roots["bare"], unseen="yelamarthi21", paired_only=True, seed=0)
    held = hold_out_support(d, 0.5, 0)
    support = held.sketches[(held.sketches["category_split"] == "unseen") & (held.sketches["split"] == "train")]
    assert (support.groupby("category").size() == 6).all()  # the fixture: 2 support objects of 3 sketches
    assert hold_out_support(d, 0.5, 0, min_support=6).info["dropped_classes"] == []
    two_fewer = support.index[support["category"] == "bat"][:2]
    cut = hold_out_support(d.subset(~d.sketches.index.isin(two_fewer)), 0.5, 0, min_support=6)
    assert cut.info["dropped_classes"] == ["bat"] and cut.info["dropped_why"]["bat"] == "4 support sketches (6 needed)"
    assert set(cut.sketches.loc[cut.sketches["category"] == "bat", "split"]) == {"dropped"}
    with pytest.raises(DataError, match="no unseen class can take the protocol"):
        hold_out_support(d, 0.5, 0, min_support=7)
    with pytest.raises(DataError, match="min_support"):
        hold_out_support(d, 0.5, 0, min_support=0)
