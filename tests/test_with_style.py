import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from sbir_core.data.base import DataError
from sbir_core.data.styled import Pixels, Table, attach_style, class_sample, cross_styled, styled_problem, styled_train
from sbir_core.data.views import CategoryView, RetrievalView
from sbir_core.evaluation import distances, evaluate, random_ranking
from sbir_core.models.base import MethodError, MethodSpec, build_method
from sbir_core.models.with_style import ColourPixelNN, WithStyle, styled_triplets
from sbir_core.samplers import get_sampler

S = 8
CNN = {"encoder": "cnn", "width": 4, "depth": 2, "double_conv": False}
OPTS = dict(structure=CNN, n_media=3, embed_dim=8, pretrain_steps=3)
MEDIA = ["photo", "oil", "ink"]
CLASSES = ["a", "b", "c"]


def _content(c, rng):
    """A class is a bright block in one place (with a little noise)."""
    x = np.zeros((S, S), np.float32)
    i = CLASSES.index(c)
    x[1 + 2 * i : 3 + 2 * i, 1:7] = 1.0
    return x + 0.05 * rng.normal(size=(S, S)).astype(np.float32)


def toy(n_per=4, seed=0):
    """Sketches of 3 classes; a gallery of each class in 3 media (the medium is the colour of the image)."""
    rng = np.random.default_rng(seed)
    tint = {"photo": [1.0, 0.2, 0.2], "oil": [0.2, 1.0, 0.2], "ink": [0.2, 0.2, 1.0]}
    q, qt, g, gt = [], [], [], []
    for c in CLASSES:
        for j in range(n_per):
            q.append(_content(c, rng)[None])
            qt.append({"category": c, "instance": f"{c}{j}", "drawer": f"d{j % 2}"})
            for m in MEDIA:
                g.append(
                    _content(c, rng)[None] * np.array(tint[m], np.float32)[:, None, None] + 0.3 * (MEDIA.index(m) - 1)
                )
                gt.append({"category": c, "medium": m, "instance": f"{c}{j}"})
    gtab = pd.DataFrame(gt)
    first = {inst: i for i, (inst, m) in enumerate(zip(gtab["instance"], gtab["medium"])) if m == "photo"}
    target = torch.as_tensor([first[r["instance"]] for r in qt])
    return RetrievalView(
        "toy", torch.as_tensor(np.stack(q)), torch.as_tensor(np.stack(g)), target, pd.DataFrame(qt), gtab, None
    )


def test_shapes_modes_and_registry():
    m = build_method("with_style", **OPTS)
    assert isinstance(m, WithStyle) and m.styled and m.sampler == "styled_triplets"
    view = toy()
    ex = view.gallery[:6].view(3, 2, 3, S, S)
    assert m.embed_query(view.queries[:3], style=ex).shape == (3, 8)
    assert m.embed_gallery(view.gallery[:5]).shape == (5, 8)
    s = m.with_mode("structure")
    assert s.embed_query(view.queries[:3]).shape == (3, m.structure.embed_dim)
    assert m.mode == "fused" and s.structure is m.structure  # a view of the same weights
    naive = m.with_mode("naive")
    assert naive.embed_query(view.queries[:3], style=ex).shape[1] == naive.embed_gallery(view.gallery[:3]).shape[1]
    with pytest.raises(MethodError, match="exemplars"):
        m.embed_query(view.queries[:3])
    with pytest.raises(MethodError, match="exemplars"):
        m.embed_query(view.queries[:3], style=ex[:, :0])
    with pytest.raises(MethodError, match="mode"):
        m.with_mode("nope")


def test_sampler_keys_follow_the_rules():
    view = toy()
    b = styled_triplets(view, 9, torch.Generator().manual_seed(0), exemplars=2)
    assert b["exemplars"].shape == (9, 2, 3, S, S)
    gt = view.gallery_table
    find = lambda img: int(((view.gallery - img).abs().flatten(1).sum(1) == 0).nonzero()[0])  # noqa: E731
    q_cat = view.table["category"].to_numpy()[b["idx"].numpy()]
    for i in range(9):
        pos, neg = gt.iloc[find(b["pos"][i])], gt.iloc[find(b["neg"][i])]
        assert pos.category == q_cat[i] and neg.category != q_cat[i]
        a, p, n = (gt.iloc[find(b[k][i])] for k in ("style_anchor", "style_pos", "style_neg"))
        assert p.medium == a.medium and p.category != a.category  # decorrelated: same style, other content
        assert n.medium != a.medium and n.category == a.category  # other style, same content
        want = {gt.iloc[find(e)].medium for e in b["exemplars"][i]}
        assert len(want) == 1
        fp, fn = gt.iloc[find(b["fuse_pos"][i])], gt.iloc[find(b["fuse_neg"][i])]
        assert fp.category == q_cat[i] and fp.medium in want
        assert (fn.category == q_cat[i]) != (fn.medium in want)  # exactly one of the two matches
    assert get_sampler("styled_triplets") is styled_triplets


def test_gradients_reach_the_right_parameters():
    m = build_method("with_style", **OPTS)
    batch = styled_triplets(toy(), 6, torch.Generator().manual_seed(1))
    parts = m.losses(batch)
    named = dict(m.named_parameters())
    # the fusion loss trains the fusion layer only: the streams are detached
    grads = torch.autograd.grad(parts["fusion"], list(named.values()), allow_unused=True)
    got = {k for k, g in zip(named, grads) if g is not None and g.abs().sum() > 0}
    assert got and all(k.startswith("fusion.") for k in got)
    grads = torch.autograd.grad(parts["structure"], list(named.values()), allow_unused=True)
    got = {k for k, g in zip(named, grads) if g is not None and g.abs().sum() > 0}
    assert got and all(k.startswith("structure.") for k in got)
    # pre-training: the style loss is the classification alone (style encoder and head)
    grads = torch.autograd.grad(parts["style"], list(named.values()), allow_unused=True)
    got = {k for k, g in zip(named, grads) if g is not None and g.abs().sum() > 0}
    assert {k.split(".")[0] for k in got} == {"style", "medium_head"}
    assert torch.equal(parts["style"], parts["style_ce"])
    m.step.fill_(10)  # after pre-training: triplets plus weighted classification
    p2 = m.losses(batch)
    assert torch.allclose(p2["style"], p2["style_triplet"] + m.ce_weight * p2["style_ce"])


def _train(seed, steps=80):
    torch.manual_seed(seed)
    m = build_method("with_style", **OPTS)
    view = toy()
    opt = m.configure_optimizers(type("C", (), {"optimizer": "adam", "lr": 1e-2, "weight_decay": 0.0})())
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        m.train_step(styled_triplets(view, 9, g), opt)
    return m, view


def _styled_view(view, m_exemplars=2):
    qt = pd.concat([view.table.assign(want_medium=w) for w in MEDIA], ignore_index=True)
    cv = CategoryView(
        "toy",
        view.queries.repeat(3, *[1] * (view.queries.ndim - 1)),
        view.gallery,
        qt,
        view.gallery_table,
        "category_medium",
    )
    attach_style(cv, view.gallery, view.gallery_table["medium"], k=m_exemplars, seed=0)
    return cv


def test_overfits_a_tiny_problem_and_beats_sketch_only():
    m, view = _train(0)
    assert int(m.step) == 80
    cv = _styled_view(view)
    m.eval()
    fused = evaluate(m, cv).metrics["map_all"]
    sketch_only = evaluate(m.with_mode("structure"), cv).metrics["map_all"]
    assert fused > 0.9
    assert sketch_only < 0.6  # it cannot tell the media apart: about a third of its class hits are relevant
    plain = CategoryView("toy", view.queries, view.gallery, view.table, view.gallery_table, "category")
    assert evaluate(m.with_mode("structure"), plain).metrics["map_all"] > 0.9


def test_same_seed_same_weights_and_no_randomness_at_eval():
    a, view = _train(3, steps=5)
    b, _ = _train(3, steps=5)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    a.eval()
    ex = view.gallery[:6].view(3, 2, 3, S, S)
    assert torch.equal(a.embed_query(view.queries[:3], style=ex), a.embed_query(view.queries[:3], style=ex))
    # the state (with the step counter) round-trips through the spec
    c = MethodSpec("with_style", OPTS).build()
    c.load_state_dict(a.state_dict())
    assert int(c.step) == 5


def test_relevance_by_class_and_medium_matches_brute_force():
    m, view = _train(1, steps=5)
    cv = _styled_view(view)
    m.eval()
    ev = evaluate(m, cv)
    with torch.no_grad():
        q = m.embed_query(cv.queries, style=cv.style)
        g = m.embed_gallery(cv.gallery)
    d = torch.cdist(q.double(), g.double()).numpy()
    gt = cv.gallery_table
    aps = []
    for i, row in cv.table.iterrows():
        order = np.argsort(d[i], kind="stable")
        rel = np.array([gt.category[j] == row.category and gt.medium[j] == row.want_medium for j in order])
        hits = np.cumsum(rel)
        aps.append(np.sum(hits[rel] / (np.flatnonzero(rel) + 1)) / rel.sum())
    assert ev.metrics["map_all"] == pytest.approx(np.mean(aps))
    assert cv.relevant().sum(1).tolist() == [4] * len(cv)


def test_bad_input_is_refused_clearly():
    view = toy()
    qt = view.table.assign(want_medium="watercolour")
    cv = CategoryView("toy", view.queries, view.gallery, qt, view.gallery_table, "category_medium")
    with pytest.raises(DataError, match="no gallery item"):
        attach_style(cv, view.gallery, view.gallery_table["medium"])
    cv = _styled_view(view)
    with pytest.raises(DataError, match="at least one exemplar"):
        attach_style(cv, view.gallery, view.gallery_table["medium"], k=0)
    photos_only = view.gallery_table["medium"].to_numpy() == "photo"
    with pytest.raises(DataError, match="no exemplar image of medium"):
        attach_style(cv, view.gallery[photos_only], view.gallery_table["medium"][photos_only])
    one_medium = RetrievalView(
        "one",
        view.queries,
        view.gallery[photos_only],
        torch.arange(len(view)),
        view.table,
        view.gallery_table[photos_only],
        None,
    )
    with pytest.raises(DataError, match="2\\+ media"):
        styled_triplets(one_medium, 4, torch.Generator().manual_seed(0))
    with pytest.raises(MethodError, match="n_media"):
        build_method("with_style", **{**OPTS, "n_media": 1})


def test_linear_probe_finds_a_signal_and_not_a_missing_one():
    from sbir_core.evaluation import linear_probe

    rng = np.random.default_rng(0)
    y = rng.integers(3, size=400)
    x = torch.as_tensor(rng.normal(size=(400, 5)) + 3.0 * np.eye(3, 5)[y], dtype=torch.float32)
    assert linear_probe(x[:200], y[:200], x[200:], y[200:]).mean() > 0.9
    noise = torch.as_tensor(rng.normal(size=(400, 5)), dtype=torch.float32)
    assert linear_probe(noise[:200], y[:200], noise[200:], y[200:]).mean() < 0.5  # chance is 1/3


def test_styled_problems_on_a_tiny_world():
    from sbir_core.data.registry import load_dataset

    d = load_dataset("style_world", n_instances=48, media=["photo", "oil", "comic"], photo_size=16)
    px = Pixels(d, 16)
    sp = styled_problem(d, {"split": "test"}, {"split": "test"}, {"split": "train"}, k=2)
    v = sp.view(px)
    assert v.style.shape == (len(v), 2, 3, 16, 16) and len(v) == 3 * (d.sketches["split"] == "test").sum()
    rel = v.relevant()
    gt = v.gallery_table
    i = 5
    assert (
        rel[i].sum() == ((gt["category"] == v.table["category"][i]) & (gt["medium"] == v.table["want_medium"][i])).sum()
    )
    # the exemplars are training images of the wanted medium, drawn from the rows the problem names
    ex = d.photos.iloc[sp.style_rows.reshape(-1)]
    assert (ex["split"] == "train").all() and (ex["medium"].to_numpy() == np.repeat(v.table["want_medium"], 2)).all()
    assert torch.equal(v.style[3, 1], px.photos([sp.style_rows[3, 1]])[0])
    # a subset keeps the rows; the sketch-only search asks each sketch once, against one medium, by class
    sub = sp.subset([0, 4])
    assert torch.equal(sub.view(px).queries, v.queries[[0, 4]]) and torch.equal(sub.view(px).style, v.style[[0, 4]])
    only = sp.sketch_only("oil").view(px)
    assert len(only) == len(v) // 3 and set(only.gallery_table["medium"]) == {"oil"} and only.relevance == "category"
    with pytest.raises(DataError, match="no gallery item"):
        styled_problem(d, {"split": "test"}, {"split": "test"}, {"split": "train"}, want_media=["vector"])
    tv = styled_train(d, "train").view(px)
    assert set(tv.gallery_table["medium"]) == {"photo", "oil", "comic"}
    gt = tv.gallery_table.iloc[tv.target.numpy()]
    assert (gt["instance"].to_numpy() == tv.table["instance"].to_numpy()).all() and (gt["medium"] == "photo").all()
    un = styled_train(d, "train", paired=False).view(px)  # sketches of no particular image: a class's first image
    gu = un.gallery_table.iloc[un.target.numpy()]
    assert (gu["category"].to_numpy() == un.table["category"].to_numpy()).all() and len(un) == len(tv)
    with pytest.raises(DataError, match="missing"):
        styled_train(d, "train", media=["photo", "vector"])
    # sketches of one dataset asking for images of another (QuickDraw -> PACS), here the world twice
    test_sk = d.sketches[d.sketches["split"] == "test"]
    classes = sorted(set(test_sk["category"]) & set(d.photos[d.photos["split"] == "test"]["category"]))[:2]
    x = cross_styled(d, d, classes, k=2, max_per_class=3).view(px)
    n = test_sk[test_sk["category"].isin(classes)].groupby("category").head(3).shape[0]
    assert len(x) == 3 * n and x.style.shape[1] == 2 and set(x.table["category"]) == set(classes)
    assert set(x.gallery_table["category"]) == set(classes)
    with pytest.raises(DataError, match="no .* images"):
        cross_styled(d, d, classes + ["not_a_class"])
    with pytest.raises(DataError, match="no classes"):
        cross_styled(d, d, [])
    with pytest.raises(DataError, match="no gallery item"):
        cross_styled(d, d, classes, want_media=["vector"])


def test_a_table_fills_a_problem_as_pixels_do_and_refuses_rows_it_lacks():
    from sbir_core.data.registry import load_dataset

    d = load_dataset("style_world", n_instances=48, media=["photo", "oil"], photo_size=16)
    px = Pixels(d, 16)
    sp = styled_problem(d, {"split": "test"}, {"split": "test"}, {"split": "train"}, k=2)
    sk = np.unique(sp.q_rows)
    ph = np.unique(np.concatenate([sp.g_rows, sp.style_rows.reshape(-1)]))
    flat = Table.of(d, sk, px.sketches(sk).flatten(1), ph, px.photos(ph).flatten(1))
    v, w = sp.view(px), sp.view(flat)
    assert torch.equal(w.queries, v.queries.flatten(1)) and torch.equal(w.style, v.style.flatten(2))
    with pytest.raises(DataError, match="not computed"):
        Table.of(d, sk[:1], px.sketches(sk[:1]).flatten(1), ph, px.photos(ph).flatten(1)).sketches(sk)


def test_world_in_media_draws_the_worlds_own_photos_and_keeps_its_sketches():
    from sbir_core.data.registry import load_dataset
    from sbir_core.data.styled import world_in_media

    media = ["photo", "oil", "comic"]
    base = load_dataset("style_world", n_instances=24, photo_size=16)
    full = load_dataset("style_world", n_instances=24, photo_size=16, media=media)
    some = sorted(set(base.photos["instance"]))[3:9]
    got = world_in_media(base, media, some)
    assert got.sketches.equals(base.sketches) and len(got.photos) == len(some) * len(media)
    rows = full.photos.reset_index().set_index("photo_id").loc[got.photos["photo_id"], "index"].to_numpy()
    assert np.array_equal(got.photo_images(16), full.photo_images(16)[rows])
    assert (got.photos[["instance", "category", "split", "medium"]].to_numpy()
            == full.photos.iloc[rows][["instance", "category", "split", "medium"]].to_numpy()).all()  # fmt: skip
    with pytest.raises(DataError, match="unknown objects"):
        world_in_media(base, media, ["nobody"])


def test_class_sample_keeps_so_many_of_each_class_and_medium():
    from sbir_core.data.registry import load_dataset

    d = load_dataset("style_world", n_instances=48, media=["photo", "oil"], photo_size=16)
    classes = sorted(set(d.photos[d.photos["split"] == "test"]["category"]))[:2]
    s = class_sample(d, classes, {"train": 3}, {"train": 2, "test": 1}, seed=1)
    assert set(s.sketches["category"]) == set(classes) and (s.sketches.groupby("category").size() == 3).all()
    assert (s.photos[s.photos["split"] == "train"].groupby(["category", "medium"]).size() == 2).all()
    assert (s.photos[s.photos["split"] == "test"].groupby(["category", "medium"]).size() == 1).all()
    assert set(s.photos["split"]) == {"train", "test"} and s.photo_images(16).shape == (len(s.photos), 16, 16, 3)
    assert class_sample(d, classes, {"train": 3}, {"train": 2}, seed=1).sketches.equals(
        class_sample(d, classes, {"train": 3}, {"train": 2}, seed=1).sketches
    )


# ---------------------------------------------------------------------- feature inputs, floors, ablation


def _feature_toy(n_per=4, seed=0, d_s=6, d_t=5):
    """The toy as features: a sketch is its class code (d_s), an image [its class code; its medium code (d_t)]."""
    rng = np.random.default_rng(seed)
    cls, med = rng.normal(size=(3, d_s)), rng.normal(size=(3, d_t))
    v = toy(n_per, seed)
    c = v.table["category"].map(CLASSES.index).to_numpy()
    gc = v.gallery_table["category"].map(CLASSES.index).to_numpy()
    gm = v.gallery_table["medium"].map(MEDIA.index).to_numpy()
    noise = lambda n, k: 0.3 * rng.normal(size=(n, k))  # noqa: E731
    q = torch.as_tensor(cls[c] + noise(len(c), d_s), dtype=torch.float32)
    g = torch.as_tensor(np.hstack([cls[gc] + noise(len(gc), d_s), med[gm] + noise(len(gm), d_t)]), dtype=torch.float32)
    return RetrievalView("toy features", q, g, v.target, v.table, v.gallery_table, None)


FEATURE_OPTS = dict(
    structure={"encoder": "mlp", "in_dim": 6, "hidden": 16, "embed_dim": 8, "dropout": 0.0},
    style={"encoder": "mlp", "in_dim": 5, "hidden": 16, "embed_dim": 8, "dropout": 0.0},
    split=6,
    n_media=3,
    embed_dim=8,
    pretrain_steps=3,
    train_exemplars=1,
)


def _train_features(seed=0, steps=120):
    torch.manual_seed(seed)
    m = build_method("with_style", **FEATURE_OPTS)
    init = {k: v.clone() for k, v in m.state_dict().items()}
    view = _feature_toy()
    opt = m.configure_optimizers(type("C", (), {"optimizer": "adam", "lr": 1e-2, "weight_decay": 0.0})())
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        m.train_step(styled_triplets(view, 9, g, exemplars=1), opt)
    return m.eval(), init, view


def test_on_features_each_stream_reads_its_own_columns():
    m = build_method("with_style", **{**FEATURE_OPTS, "margin": 2.0})  # every triplet in the loss
    view = _feature_toy()
    batch = styled_triplets(view, 6, torch.Generator().manual_seed(0), exemplars=1)
    assert m.embed_query(view.queries[:3], style=view.gallery[:3].view(3, 1, -1)).shape == (3, 8)
    changed = view.gallery.clone()
    changed[:, 6:] += 1.0  # the style columns: the structure embedding of an image does not move
    s = m.with_mode("structure")
    assert torch.equal(s.embed_gallery(changed), s.embed_gallery(view.gallery))
    assert not torch.equal(
        m.with_mode("style").embed_gallery(changed), m.with_mode("style").embed_gallery(view.gallery)
    )
    named = dict(m.named_parameters())
    parts = m.losses(batch)
    for loss, stream in (("structure", "structure."), ("fusion", "fusion.")):
        grads = torch.autograd.grad(parts[loss], list(named.values()), allow_unused=True)
        got = {k for k, g in zip(named, grads) if g is not None and g.abs().sum() > 0}
        assert got and all(k.startswith(stream) for k in got)


def test_the_learned_fusion_is_a_part_that_acts():
    """The ablation of the learned fusion (the naive concatenation) changes trained weights and ranks."""
    m, init, view = _train_features()
    fusion = [k for k in init if k.startswith("fusion.")]
    assert fusion and all(not torch.equal(init[k], m.state_dict()[k]) for k in fusion)  # the fusion layer trains
    cv = _styled_view(view)
    fused, naive = evaluate(m, cv), evaluate(m.with_mode("naive"), cv)
    assert fused.metrics["map_all"] > 0.9
    fo, no = (np.argsort(distances(x, cv.queries, cv.gallery, style=cv.style), 1) for x in (m, m.with_mode("naive")))
    assert naive.metrics["map_all"] > 0.5 and (fo != no).any()  # some ranks differ
    assert evaluate(m.with_mode("structure"), cv).metrics["map_all"] < 0.6


def test_random_ranking_is_the_exact_mean_over_every_order():
    import itertools

    from sbir_core import metrics as M

    q = pd.DataFrame({"category": ["a", "b", "c"]})
    g = pd.DataFrame({"category": list("aabbbc")})
    v = CategoryView("t", torch.zeros(3, 1), torch.zeros(6, 1), q, g)
    rel = v.relevant()
    aps = [
        M.average_precision(np.tile(np.argsort(p), (3, 1)).astype(float), rel) for p in itertools.permutations(range(6))
    ]
    assert np.allclose(random_ranking(v).per_query["ap_all"], np.mean(aps, 0))
    assert random_ranking(v).metrics["map_all"] == pytest.approx(np.mean(aps))


def test_the_colour_pixel_floor_puts_the_guessed_medium_first():
    view = toy()
    cv = _styled_view(view)
    colour = lambda x: (x + 1).mean((2, 3)) / 2  # noqa: E731
    flat = lambda x: torch.nn.functional.normalize(x.mean(1).flatten(1), dim=1)  # noqa: E731
    feats = dataclasses.replace(
        cv,
        queries=flat(cv.queries),
        gallery=torch.cat([flat(cv.gallery), colour(cv.gallery)], 1),
        style=torch.cat([flat(cv.style.flatten(0, 1)), colour(cv.style.flatten(0, 1))], 1).view(len(cv), 2, -1),
    )
    gm = view.gallery_table["medium"].to_numpy()
    centroids = torch.stack([colour(view.gallery[torch.as_tensor(gm == m)]).mean(0) for m in MEDIA])
    floor = ColourPixelNN(centroids)
    assert floor.styled and not ColourPixelNN().styled
    d = torch.cdist(floor.embed_query(feats.queries, feats.style), floor.embed_gallery(feats.gallery))
    order = d.argsort(1)[:, : int((gm == "photo").sum())].numpy()
    want = cv.table["want_medium"].to_numpy()
    assert all((gm[order[i]] == want[i]).all() for i in range(len(cv)))  # every wanted-medium image comes first
    plain = ColourPixelNN()
    assert torch.equal(plain.embed_gallery(feats.gallery), feats.gallery[:, :-3])
    with pytest.raises(MethodError, match="nothing to train"):
        floor.training_loss({})
