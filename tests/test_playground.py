"""The playground's engine and widgets, without a browser: queries agree with the evaluator,
galleries load what they can and list the rest, and bad drawings leave the widgets working."""

import numpy as np
import pytest
import torch
from PIL import Image

from sbir_core import playground as P
from sbir_core import strokes as SK
from sbir_core.book import load_params
from sbir_core.data.views import photo_tensor
from sbir_core.evaluation import evaluate
from sbir_core.models.base import build_method


@pytest.fixture(scope="module")
def views():
    return P._views(load_params("04_triplet_baseline", "ci"))


@pytest.fixture(scope="module")
def engine(small_triplet_engine):
    return small_triplet_engine


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SBIR_STORE", str(tmp_path / "store"))
    return tmp_path


# ---------------------------------------------------------------------- drawings


def test_clean_strokes_empty_and_ok():
    assert P.clean_strokes(np.zeros((0, 3)))[0] is None
    assert P.clean_strokes(None)[0] is None
    s, note = P.clean_strokes([[10, 10, 0], [20, 20, 1]])
    assert note == "" and s.shape == (2, 3) and s[-1, 2] == 1


def test_clean_strokes_clips_outside_points_and_says_so():
    s, note = P.clean_strokes([[-30, 10, 0], [300, 500, 0], [20, 20, 0]])
    assert s[:, :2].min() >= 0 and s[:, :2].max() <= SK.CANVAS
    assert "2 point(s) outside the canvas" in note
    assert s[-1, 2] == 1  # the last point ends a stroke even if the pen flag was missing


def test_clean_strokes_cuts_long_drawings_and_drops_non_finite():
    pts = np.column_stack(
        [np.random.default_rng(0).uniform(0, 256, (P.MAX_POINTS + 50, 2)), np.zeros(P.MAX_POINTS + 50)]
    )
    s, note = P.clean_strokes(pts)
    assert len(s) == P.MAX_POINTS and "only the first" in note
    s, note = P.clean_strokes([[np.nan, 1, 0], [5, 5, 1]])
    assert len(s) == 1 and "non-finite" in note
    assert P.clean_strokes([[np.inf, 1, 1]])[0] is None
    with pytest.raises(P.PlaygroundError, match=r"\(N, 3\)"):
        P.clean_strokes(np.zeros((4, 2)))


# ---------------------------------------------------------------------- queries agree with the evaluator


def test_world_gallery_is_the_evaluators_gallery(views):
    g = P.world_gallery(views, "shoe")
    view = views.test_seen
    rows = np.flatnonzero((view.gallery_table["category"] == "shoe").to_numpy())
    back = torch.from_numpy(g.images.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
    assert torch.allclose(back, view.gallery[rows], atol=1 / 127.5)
    for t in g.targets[:20]:
        row = view.table.index[view.table["sketch_id"] == t.sketch_id][0]
        assert g.labels[t.index] == view.table["instance"].iloc[row]
    with pytest.raises(P.PlaygroundError, match="categories"):
        P.world_gallery(views, "spaceship")


def test_query_ranks_equal_the_evaluators(engine, views, fresh_cache):
    """A world sketch's strokes through the playground get exactly the rank the evaluator gives its raster."""
    g = P.world_gallery(views, "mug")
    view = views.test_seen
    ev = evaluate(engine.method, view)
    ranks = dict(zip(view.table["sketch_id"], ev.per_query["rank"]))
    for t in g.targets[:25]:
        assert engine.query(t.strokes, g, 10, t.index).target_rank == ranks[t.sketch_id]


def test_top_k_is_brute_force_and_early_ranks_end_at_the_full_rank(engine, views, fresh_cache):
    g = P.world_gallery(views, "lamp")
    t = g.targets[3]
    hits = engine.query(t.strokes, g, 10, t.index)
    with torch.no_grad():
        emb = engine.method.embed_gallery(
            torch.from_numpy(g.images.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
        ).numpy()
    d = ((emb - engine.encode(t.strokes)) ** 2).sum(1)
    # the 10 nearest by brute force, up to float rounding (an untrained encoder puts items 1e-6 apart)
    tol = 1e-6 * max(1.0, float(d.max()))
    assert np.allclose(hits.distance, d[hits.index], atol=tol) and np.allclose(hits.distance, np.sort(d)[:10], atol=tol)
    assert len(set(hits.index)) == 10 and (d[hits.index] <= np.sort(d)[9] + tol).all()
    early = engine.early_ranks(t.strokes, g, t.index)
    assert len(early) == SK.n_strokes(t.strokes) and early[-1] == hits.target_rank


def test_gallery_embeddings_are_computed_once_per_model_and_gallery(views, engine, fresh_cache):
    torch.manual_seed(1)
    m = build_method("triplet_sn", encoder="cnn", width=8, depth=3, embed_dim=32)
    calls = []
    original = m.embed_gallery
    m.embed_gallery = lambda x: calls.append(len(x)) or original(x)
    g = P.world_gallery(views, "car")
    P.Engine(m, "k1", engine.size, engine.line_width, views=views).gallery_search(g)
    P.Engine(m, "k1", engine.size, engine.line_width, views=views).gallery_search(
        g
    )  # a new engine: from the disk cache
    assert sum(calls) == len(g)
    P.Engine(m, "k2", engine.size, engine.line_width, views=views).gallery_search(
        g
    )  # another model key: computed again
    assert sum(calls) == 2 * len(g)
    with torch.no_grad():  # the store entry of k1 rewritten: the same key, other weights
        next(m.parameters()).add_(0.1)
    fresh = P.Engine(m, "k1", engine.size, engine.line_width, views=views).gallery_search(g)
    assert sum(calls) == 3 * len(g)  # computed again, not the old weights' embeddings
    with torch.inference_mode():
        want = m.embed_gallery(photo_tensor(g.images)).numpy()
    assert np.allclose(fresh.embeddings.numpy(), want, atol=1e-5)


def test_pairwise_methods_are_refused():
    m = build_method("triplet_sn", encoder="cnn", width=8, depth=3, embed_dim=32)
    m.pairwise = True
    with pytest.raises(P.PlaygroundError, match="pairs"):
        P.Engine(m, "k", 32, 1.5)


def test_style_swap(views, engine):
    torch.manual_seed(0)
    size = engine.size
    m = build_method("stylemeup", size=size, width=8, depth=3, hidden=32, latent=16).eval()
    e = P.Engine(m, "smu", size, engine.line_width, views=views)
    a, b = views.test_seen.strokes[0], views.test_seen.strokes[5]
    own = e.swap_style(a, b, 0.0)
    assert own.shape == (size, size) and own.min() >= 0 and own.max() <= 1
    with torch.no_grad():  # amount 0 is the drawing decoded with its own style: the model's swap(a, a)
        x = P.sketch_tensor(e.raster(a)[None])
        ref = (1 - (m.swap(x, x)[0].mean(0) + 1) / 2).numpy()
    assert np.allclose(own, ref, atol=1e-5)
    assert not np.allclose(e.swap_style(a, b, 1.0), own)
    assert len(e.query_image(own, P.world_gallery(views, "shoe"), 5).index) == 5
    with pytest.raises(P.PlaygroundError, match="amount"):
        e.swap_style(a, b, 2.0)
    tsn = P.Engine(build_method("triplet_sn", encoder="cnn", width=8, depth=3, embed_dim=32), "t", 32, 1.5)
    with pytest.raises(P.PlaygroundError, match="style code"):
        tsn.swap_style(a, b)
    gallery = P.world_gallery(views, "shoe")
    decoded, hits = e.swap_hits(a, b, 1.0, gallery, 5)  # a model on images: the decoding, and what it retrieves
    assert np.allclose(decoded, e.swap_style(a, b, 1.0)) and len(hits.index) == 5
    with pytest.raises(P.PlaygroundError, match="style code"):
        tsn.swap_hits(a, b, 0.5, gallery)


def test_style_swap_on_trunk_features_retrieves_with_the_redrawn_features(views, engine):
    """At the ci scale StyleMeUp reads trunk features, so its decoder redraws features, not a picture: the swap
    gives no image and retrieves with the redrawn features' embedding (which moves with the amount)."""
    from sbir_core.features import trunk
    from sbir_core.models.trunk import TrunkSpec

    spec = TrunkSpec(block=2, pool=1)
    torch.manual_seed(0)
    smu = build_method("stylemeup", size=engine.size, in_dim=trunk(spec).dim, hidden=32, latent=16, flip=False).eval()
    e = P.Engine(P.OnImages(smu, spec), "smu-features", engine.size, engine.line_width, views=views)
    gallery = P.world_gallery(views, "shoe")
    a, b = views.test_seen.strokes[0], views.test_seen.strokes[5]
    decoded, hits = e.swap_hits(a, b, 0.0, gallery, 5)
    assert decoded is None and len(hits.index) == 5 and np.all(np.diff(hits.distance) >= 0)
    assert not np.allclose(hits.distance, e.swap_hits(a, b, 1.0, gallery, 5)[1].distance)
    with pytest.raises(P.PlaygroundError, match="amount"):
        e.swap_hits(a, b, -0.1, gallery)
    with pytest.raises(P.PlaygroundError, match="features"):
        e.swap_style(a, b)  # no picture to decode at this scale: said, not drawn as a grey blob


# ---------------------------------------------------------------------- galleries from folders


def _png(path, size=(40, 30), colour=(200, 10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_folder_gallery_skips_and_lists_bad_files(tmp_path):
    _png(tmp_path / "cats" / "a.png")
    _png(tmp_path / "dogs" / "b.png", colour=(0, 0, 255))
    (tmp_path / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    huge = Image.new("1", (9000, 9000))  # 81 Mpx after padding: over MAX_PIXELS, refused before decoding
    huge.save(tmp_path / "huge.png")
    (tmp_path / "notes.txt").write_text("not an image")
    g = P.folder_gallery(tmp_path, 32)
    assert g.images.shape == (2, 32, 32, 3) and sorted(g.labels) == ["cats", "dogs"]
    skipped = {p.split("/")[-1] for p, _ in g.skipped}
    assert skipped == {"broken.jpg", "huge.png"}
    assert "2 file(s) skipped" in g.message and "huge.png" in g.message


def test_folder_gallery_of_one_image_and_of_none(tmp_path):
    _png(tmp_path / "one" / "x.png")
    g = P.folder_gallery(tmp_path / "one", 32)
    assert len(g) == 1 and "one image" in g.message
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "y.png").write_bytes(b"garbage")
    with pytest.raises(P.PlaygroundError, match="no readable image.*1 skipped"):
        P.folder_gallery(tmp_path / "bad", 32)
    with pytest.raises(P.PlaygroundError, match="not a folder"):
        P.folder_gallery(tmp_path / "missing", 32)


def test_folder_gallery_limit(tmp_path):
    for i in range(4):
        _png(tmp_path / f"{i}.png")
    g = P.folder_gallery(tmp_path, 16, limit=3)
    assert len(g) == 3 and len(g.skipped) == 1 and "limit" in g.skipped[0][1]


def test_one_image_gallery_query(engine, tmp_path, fresh_cache):
    _png(tmp_path / "x.png")
    g = P.folder_gallery(tmp_path, engine.size)
    hits = engine.query(engine.views.test_seen.strokes[0], g, 10, 0)
    assert list(hits.index) == [0] and hits.target_rank == 1


def test_pacs_gallery_absent_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("SBIR_DATA", str(tmp_path))
    with pytest.raises(P.PlaygroundError, match="PACS photos are not available"):
        P.pacs_gallery(32)


def test_pacs_gallery(data_root):
    if not (data_root / "pacs").is_dir():
        pytest.skip("PACS is not in the data root")
    g = P.pacs_gallery(16)
    assert len(g) > 100 and set(g.labels) >= {"dog", "house"} and g.images.shape[1:] == (16, 16, 3)


# ---------------------------------------------------------------------- methods from the store


def test_methods_follow_the_books_chapters(monkeypatch, fresh_store):
    monkeypatch.setattr("sbir_core.book.chapters", lambda: ["01_evaluation", "04_triplet_baseline"])
    choices = P.methods("ci")
    assert [c.recipe.chapter for c in choices] == ["04_triplet_baseline"]  # no chapter 6: no StyleMeUp
    assert not choices[0].stored
    with pytest.raises(P.PlaygroundError, match="--only 04_triplet_baseline"):
        P.load(choices[0])


def test_methods_take_only_a_scale_with_a_config_folder(monkeypatch):
    """The scale names the folder whose YAML is read (and may come from the app's URL): nothing outside
    ``paper_runs/configs/<scale>/`` is ever read."""
    assert {"ci", "paper"} <= set(P.scales())
    monkeypatch.setattr(P, "_setup", lambda *a: pytest.fail("a config was read"))
    for scale in ("../../..", "ci/../..", "nope", ""):
        with pytest.raises(P.PlaygroundError, match="no scale"):
            P.methods(scale)


@pytest.fixture()
def fresh_store(tmp_path, monkeypatch):
    """A fresh store of trained models; the trunk-feature cache stays (the world's features are not retrained)."""
    monkeypatch.setenv("SBIR_STORE", str(tmp_path / "store"))
    monkeypatch.setattr(P, "_SETUPS", {})
    return tmp_path


def test_the_recipe_key_is_the_chapters_run(monkeypatch, fresh_store):
    """Trained through the playground with the chapter's parameters, the run lands under the key of the chapter's
    own run (``recipes``), and the engine reads images exactly as the chapter's views read them."""
    from sbir_core import recipes as R

    monkeypatch.setenv(R.OVERRIDES_ENV, '{"STEPS": 2, "EVAL_EVERY": 2}')
    monkeypatch.setattr("sbir_core.book.chapters", lambda: ["04_triplet_baseline"])
    choice = P.methods("ci")[0]
    assert not choice.stored
    engine = P.load(choice, train=True, progress=False)
    assert choice.stored and P.methods("ci")[0].stored
    bench = R.bench("ci")
    run = bench.baseline().fit([choice.seed])  # the chapter's own call: loaded, not trained again
    assert run.runs[0].fingerprint == choice.key
    method = run.methods(bench.spec)[0]
    images, feats = bench.views().test_seen, bench.features().test_seen
    with torch.no_grad():
        a, b = engine.method.embed_query(images.queries[:6]), method.embed_query(feats.queries[:6])
        c, d = engine.method.embed_gallery(images.gallery[:6]), method.embed_gallery(feats.gallery[:6])
    assert torch.allclose(a, b, atol=1e-4) and torch.allclose(c, d, atol=1e-4)


def test_the_adaptive_recipe_starts_from_chapter_4_and_its_key_is_the_chapters_run(monkeypatch, fresh_store):
    """Chapter 7's meta-learner starts from chapter 4's stored Triplet-SN (trained first when the store lacks it),
    and trained through the playground it lands under the key of the chapter's own run; it adapts to a person."""
    from conftest import distinct_targets

    from sbir_core import recipes as R

    monkeypatch.setenv(R.OVERRIDES_ENV, '{"STEPS": 2, "EVAL_EVERY": 2, "META_STEPS": 2, "META_EVAL_EVERY": 2}')
    monkeypatch.setattr("sbir_core.book.chapters", lambda: ["04_triplet_baseline", "07_adaptive"])
    choice = P.choice("07_adaptive")
    assert not choice.stored and not P.choice("04_triplet_baseline").stored
    engine = P.load(choice, train=True, progress=False)
    assert choice.stored and P.methods("ci")[0].stored  # chapter 4's run was trained on the way
    bench = R.bench("ci")
    run = R.adaptive(bench, R.load_params("07_adaptive", "ci")).fit([choice.seed])
    assert run.runs[0].fingerprint == choice.key
    size = engine.size
    assert engine.method.embed_query(torch.rand(2, 1, size, size) * 2 - 1).shape[0] == 2
    g = P.world_gallery(engine.views, "shoe", "unseen")
    targets = distinct_targets(g)
    personal = engine.personalise([t.strokes for t in targets], g, [t.index for t in targets])
    assert personal.key != engine.key and personal.method.method.head.weight.ne(engine.method.method.head.weight).any()


def test_personalise_gives_a_new_engine_and_leaves_the_old_one(views, engine, fresh_cache):
    from conftest import distinct_targets, image_adaptive

    torch.manual_seed(0)
    method = image_adaptive(load_params("04_triplet_baseline", "ci"), inner="margin", inner_lr=5.0)
    eng = P.Engine(method, "adaptive_test", engine.size, engine.line_width, "adaptive", views)
    g = P.world_gallery(views, "shoe", "unseen")
    targets = distinct_targets(g)
    drawings, rows = [t.strokes for t in targets], [t.index for t in targets]
    before = {k: v.clone() for k, v in method.state_dict().items()}
    q_before = eng.encode(drawings[0])
    mine = eng.personalise(drawings, g, rows)
    assert mine is not eng and mine.method is not method and mine.key != eng.key
    assert all(torch.equal(before[k], v) for k, v in method.state_dict().items())  # the base is unchanged
    assert np.array_equal(eng.encode(drawings[0]), q_before)
    assert not np.allclose(mine.encode(drawings[0]), q_before)  # the adapted head embeds differently
    assert mine.query(drawings[0], g, 3, rows[0]).target_rank >= 1
    with pytest.raises(P.PlaygroundError, match="different photos"):
        eng.personalise(drawings[:2], g, [rows[0], rows[0]])
    with pytest.raises(P.PlaygroundError, match="one photo per drawing"):
        eng.personalise(drawings, g, rows[:2])
    with pytest.raises(P.PlaygroundError, match="does not adapt"):
        engine.personalise(drawings, g, rows)


def test_the_playground_finds_the_books_runs_whatever_threads_the_process_had(monkeypatch):
    """A run's key names the thread count it trained on; a process left at torch's default (a notebook without
    ``chapter.setup``, the page bench) must still find the runs the chapters trained on ``DEFAULT_THREADS``."""
    from sbir_core.repro import DEFAULT_THREADS, set_threads

    book_key = P.choice("04_triplet_baseline", "ci").key  # this process is pinned (conftest), as the chapters are
    monkeypatch.setattr(P, "_SETUPS", {})
    torch.set_num_threads(DEFAULT_THREADS + 1)
    try:
        assert P.choice("04_triplet_baseline", "ci").key == book_key
        assert torch.get_num_threads() == DEFAULT_THREADS
    finally:
        set_threads()
