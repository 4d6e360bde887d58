import numpy as np
import pandas as pd
import pytest
import torch

from sbir_core.data.base import DataError
from sbir_core.data.styled import attach_style
from sbir_core.data.views import CategoryView, RetrievalView
from sbir_core.evaluation import evaluate
from sbir_core.models.base import MethodError, MethodSpec, build_method
from sbir_core.models.with_style import WithStyle, styled_triplets
from sbir_core.samplers import get_sampler

S = 8
OPTS = dict(encoder="cnn", n_media=3, embed_dim=8, width=4, depth=2, double_conv=False, pretrain_steps=3)
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
    cv = CategoryView("toy", view.queries.repeat(3, 1, 1, 1), view.gallery, qt, view.gallery_table, "category_medium")
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


def test_styled_queries_on_a_tiny_world():
    from sbir_core.data.registry import load_dataset
    from sbir_core.data.styled import styled_queries, styled_train_view

    d = load_dataset("style_world", n_instances=48, media=["photo", "oil", "comic"], photo_size=16)
    v = styled_queries(d, {"split": "test"}, {"split": "test"}, {"split": "train"}, size=16, k=2)
    assert v.style.shape == (len(v), 2, 3, 16, 16) and len(v) == 3 * (d.sketches["split"] == "test").sum()
    rel = v.relevant()
    gt = v.gallery_table
    i = 5
    assert (
        rel[i].sum() == ((gt["category"] == v.table["category"][i]) & (gt["medium"] == v.table["want_medium"][i])).sum()
    )
    with pytest.raises(DataError, match="no gallery item"):
        styled_queries(d, {"split": "test"}, {"split": "test"}, {"split": "train"}, size=16, want_media=["vector"])
    tv = styled_train_view(d, "train", 16)
    assert set(tv.gallery_table["medium"]) == {"photo", "oil", "comic"}
    gt = tv.gallery_table.iloc[tv.target.numpy()]
    assert (gt["instance"].to_numpy() == tv.table["instance"].to_numpy()).all() and (gt["medium"] == "photo").all()
    un = styled_train_view(d, "train", 16, paired=False)  # sketches of no particular image: a class's first image
    gu = un.gallery_table.iloc[un.target.numpy()]
    assert (gu["category"].to_numpy() == un.table["category"].to_numpy()).all() and len(un) == len(tv)
    with pytest.raises(DataError, match="missing"):
        styled_train_view(d, "train", 16, media=["photo", "vector"])
    # sketches of one dataset asking for images of another (QuickDraw -> PACS), here the world twice
    from sbir_core.data.styled import cross_styled_queries

    test_sk = d.sketches[d.sketches["split"] == "test"]
    classes = sorted(set(test_sk["category"]) & set(d.photos[d.photos["split"] == "test"]["category"]))[:2]
    x = cross_styled_queries(d, d, classes, size=16, k=2, max_per_class=3)
    n = test_sk[test_sk["category"].isin(classes)].groupby("category").head(3).shape[0]
    assert len(x) == 3 * n and x.style.shape[1] == 2 and set(x.table["category"]) == set(classes)
    assert set(x.gallery_table["category"]) == set(classes)
    with pytest.raises(DataError, match="no .* images"):
        cross_styled_queries(d, d, classes + ["not_a_class"], size=16)
    with pytest.raises(DataError, match="no classes"):
        cross_styled_queries(d, d, [], size=16)
    with pytest.raises(DataError, match="no gallery item"):
        cross_styled_queries(d, d, classes, size=16, want_media=["vector"])
