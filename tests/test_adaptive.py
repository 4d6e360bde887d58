"""Adaptive FG-SBIR (sbir_core.models.adaptive): shapes, gradients, the inner loop, adaptation without
side effects, the baselines' inner loops, word embeddings, bad support sets."""

import numpy as np
import pandas as pd
import pytest
import torch

from sbir_core import metrics as M
from sbir_core.data import support as SP
from sbir_core.data.base import DataError
from sbir_core.data.views import RetrievalView
from sbir_core.evaluation import evaluate
from sbir_core.models import adaptive as A
from sbir_core.models.base import MethodError, MethodSpec
from sbir_core.models.triplet import build_triplet
from sbir_core.repro import seed_everything
from sbir_core.samplers import get_sampler
from sbir_core.train import TrainConfig, train_run

DIM = 16  # the toy "trunk features": F reads (B, DIM) vectors, as it reads the frozen trunk's at the ci scale
HEAD = {"in_dim": DIM, "hidden": 16, "embed_dim": 8, "dropout": 0.0}
SMALL = {"encoder_options": HEAD}


def image_view(n_items=8, per_item=4, drawers=2, categories=2, seed=0, dim=DIM, noise=0.3) -> RetrievalView:
    """Photos are random feature vectors; sketches are their noisy copies."""
    g = torch.Generator().manual_seed(seed)
    gallery = torch.randn(n_items, dim, generator=g)
    target = torch.arange(n_items).repeat_interleave(per_item)
    queries = gallery[target] + noise * torch.randn(len(target), dim, generator=g)
    cat = [f"c{i % categories}" for i in range(n_items)]
    table = pd.DataFrame(
        {
            "sketch_id": [f"s{k}" for k in range(len(target))],
            "instance": [f"i{t}" for t in target.tolist()],
            "category": [cat[t] for t in target.tolist()],
            "drawer": [f"d{k % drawers}" for k in range(len(target))],
        }
    )
    gtable = pd.DataFrame({"instance": [f"i{i}" for i in range(n_items)], "category": cat, "medium": "photo"})
    return RetrievalView("toy", queries, gallery, target, table, gtable, group="category")


def as_features(view):
    """An image view with each image read as DIM numbers (its grey 4 x 4 thumbnail): what F takes."""
    import dataclasses

    def read(x):
        return torch.nn.functional.adaptive_avg_pool2d(x.mean(1, keepdim=True), 4).flatten(1)

    return dataclasses.replace(view, queries=read(view.queries), gallery=read(view.gallery))


@pytest.fixture(scope="module")
def words():
    return A.word_embeddings(["c0", "c1"])


def build(inner="margin", level="user", words=None, **kw):
    torch.manual_seed(0)
    extra = {"classes": ["c0", "c1"], "word_embedding": words} if level == "category" else {}
    return A.AdaptiveFGSBIR(**SMALL, inner=inner, level=level, k_support=2, k_query=2, **extra, **kw)


def batch_of(method, view, tasks=2, seed=0):
    return get_sampler(method.sampler)(view, tasks, torch.Generator().manual_seed(seed), **method.sampler_options)


def test_shapes_and_unit_norm():
    m = build()
    x = torch.rand(5, DIM)
    assert m.embed_query(x).shape == (5, 8)
    assert torch.allclose(m.embed_query(x).norm(dim=1), torch.ones(5), atol=1e-5)
    assert m.embed_gallery(torch.rand(3, DIM)).shape == (3, 8)
    assert m.encoder(x).shape == (5, 16) and m.head.in_features == 16


def test_sampler_gives_same_group_tasks_with_labels():
    view = image_view()
    m = build(level="category", words=np.zeros((2, 384), np.float32))
    batch = batch_of(m, view, tasks=3)
    for task in batch["tasks"]:
        assert task["group"] == task["query_group"]
        cats = set(view.table["category"].iloc[torch.cat([task["support"]["idx"], task["query"]["idx"]])])
        assert cats == {task["group"]}
        assert task["support"]["label"].tolist() == [int(task["group"][1])] * 2


def _grads(method, loss):
    method.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in method.named_parameters()}


def test_gradients_reach_exactly_the_parts_that_learn_user_level():
    view = image_view()
    m = build("margin")
    g = _grads(m, m.training_loss(batch_of(m, view)))
    for part in ("encoder.", "head.", "margin_net.", "discriminator."):
        assert all(v for n, v in g.items() if n.startswith(part)), part
    for part in ("classifier.", "decoder."):  # category heads are off at the user level
        assert not any(v for n, v in g.items() if n.startswith(part)), part


def test_gradients_category_level_and_anil_has_no_margin_gradient(words):
    view = image_view()
    m = build("margin", "category", words)
    g = _grads(m, m.training_loss(batch_of(m, view)))
    for part in ("encoder.", "head.", "margin_net.", "discriminator.", "classifier.", "decoder."):
        assert all(v for n, v in g.items() if n.startswith(part)), part
    anil = build("head")
    g = _grads(anil, anil.training_loss(batch_of(anil, view)))
    assert not any(v for n, v in g.items() if n.startswith("margin_net."))


def test_the_margin_gets_a_meta_gradient_only_through_the_smooth_hinge():
    """With the hard hinge the inner gradient does not depend on the margin (the reason for the soft one)."""
    m = build("margin")
    view = image_view()
    task = batch_of(m, view, tasks=1)["tasks"][0]
    feats = {k: v.detach() for k, v in m._support_feats(task["support"]).items()}
    w = m.head.weight.detach().clone().requires_grad_(True)
    mu = torch.tensor(0.3, requires_grad=True)

    def inner_grad(loss_fn):
        e = {k: torch.nn.functional.normalize(v @ w.T + m.head.bias.detach(), dim=1) for k, v in feats.items()}
        loss = loss_fn((e["s"] - e["p"]).norm(dim=1), (e["s"] - e["n"]).norm(dim=1))
        (gw,) = torch.autograd.grad(loss, w, create_graph=True)
        return torch.autograd.grad(gw.pow(2).sum(), mu, allow_unused=True)[0]

    soft = inner_grad(lambda dp, dn: A.soft_triplet(dp, dn, mu, 0.05))
    hard = inner_grad(lambda dp, dn: A.hinge_triplet(dp, dn, mu))
    assert soft is not None and float(soft.abs()) > 0
    assert hard is None or float(hard.abs()) == 0


def test_gradient_reversal_flips_the_sign():
    x = torch.randn(4, requires_grad=True)
    (A.grad_reverse(x, 0.5) * torch.arange(4.0)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * torch.arange(4.0))


def test_adapt_returns_a_new_method_and_changes_only_the_head():
    view = image_view()
    m = build("margin")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    support = view.triplets(torch.arange(4), torch.Generator().manual_seed(0))
    new = m.adapt(support)
    assert new is not m and all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    changed = {k for k, v in new.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"head.weight", "head.bias"}
    assert 0 < new.last_margin < m.max_margin and m.last_margin is None
    maml = build("all").adapt(support)
    assert any(
        k.startswith("encoder.")
        for k, v in maml.state_dict().items()
        if not torch.equal(build("all").state_dict()[k], v)
    )
    assert all(
        torch.equal(v, build("none").state_dict()[k]) for k, v in build("none").adapt(support).state_dict().items()
    )


def test_sign_maml_steps_by_the_sign():
    view = image_view()
    m = build("sign", inner_lr=0.01)
    support = view.triplets(torch.arange(4), torch.Generator().manual_seed(0))
    new = m.adapt(support)
    delta = (new.head.weight - m.head.weight).abs()
    assert torch.allclose(delta[delta > 0], torch.full_like(delta[delta > 0], 0.01), atol=1e-6)


def test_adapting_moves_the_support_loss_down():
    view = image_view()
    m = build("head", inner_lr=2.0)
    support = view.triplets(torch.arange(8), torch.Generator().manual_seed(1))

    def loss(method):
        with torch.no_grad():
            s, p, n = A._three(method.embed_query, support)
            return float(A.soft_triplet((s - p).norm(dim=1), (s - n).norm(dim=1), m.margin, m.tau))

    assert loss(m.adapt(support)) < loss(m)


def test_evaluation_with_adaptation_leaves_no_state_between_drawers():
    view = image_view(drawers=3)
    m = build("margin")
    before = {k: v.clone() for k, v in m.state_dict().items()}

    def support_for(drawer):
        rows = torch.as_tensor(np.flatnonzero(view.table["drawer"] == drawer)[:3])
        return view.triplets(rows, torch.Generator().manual_seed(0))

    both = evaluate(m, view, ks=(1,), adapt=("drawer", support_for))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    for drawer in ("d0", "d2"):
        rows = np.flatnonzero(view.table["drawer"] == drawer)
        alone = evaluate(m, view.subset(view.table["drawer"] == drawer), ks=(1,), adapt=("drawer", support_for))
        assert np.array_equal(alone.per_query["rank"], both.per_query["rank"][rows])


def test_overfits_a_tiny_problem():
    view = image_view(n_items=4, per_item=4, drawers=1, categories=1, noise=2.0)
    m = build("margin")
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    batch = batch_of(m, view, tasks=2)
    for task in batch["tasks"]:  # a negative that is never the positive's own photo: a loss that can reach 0
        for part in (task["support"], task["query"]):
            part["neg_idx"] = (part["pos_idx"] + 1) % len(view.gallery)
            part["neg"] = view.gallery[part["neg_idx"]]

    def triplet_part():  # the regularisers (the reversed discriminator) do not go to zero by design
        return sum(m.task_loss(t)[1]["t"] for t in batch["tasks"])

    first = triplet_part()
    assert first > 0.05
    for _ in range(60):
        m.train_step(batch, [opt])
    assert triplet_part() < 0.3 * first


def test_same_seed_same_weights_and_eval_is_deterministic():
    view = image_view()
    spec = MethodSpec("adaptive_fgsbir", {**SMALL, "k_support": 2, "k_query": 2})
    cfg = TrainConfig(steps=3, batch_size=2, eval_every=3, progress=False)
    a = train_run(spec, view, None, None, cfg, seed=1, store=False).best_state
    b = train_run(spec, view, None, None, cfg, seed=1, store=False).best_state
    assert all(torch.equal(a[k], b[k]) for k in a)
    m = spec.build()
    m.train()  # no dropout, no noise: embeddings equal in both modes
    x = torch.rand(3, DIM)
    e1 = m.embed_query(x)
    m.eval()
    assert torch.equal(e1, m.embed_query(x))


def test_word_embeddings_are_real_sentence_embeddings():
    e = A.word_embeddings(["shoe", "sneaker", "giraffe"])
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.1  # a shoe is nearer a sneaker than a giraffe
    assert np.array_equal(A.word_embeddings(["shoe", "sneaker", "giraffe"]), e)  # from the cache


def test_bad_support_sets_and_options():
    view = image_view()
    m = build()
    one = view.triplets(torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    one["neg"], one["neg_idx"] = one["photo"], one["pos_idx"]  # no other photo: no negative
    with pytest.raises(DataError, match="two different photos"):
        m.adapt(one)
    with pytest.raises(DataError, match="empty"):
        m.adapt({k: v[:0] for k, v in one.items()})
    with pytest.raises(DataError, match="lacks"):
        m.adapt({"sketch": one["sketch"]})
    with pytest.raises(DataError, match="negative"):
        A.personalise(m, view.queries[:1], view.gallery[view.target[:1]])
    with pytest.raises(MethodError, match="classes"):
        A.AdaptiveFGSBIR(**SMALL, level="category")
    with pytest.raises(MethodError):
        A.AdaptiveFGSBIR(**SMALL, inner="bogus")


def test_personalise_and_fine_tuning_leave_the_base_alone():
    view = image_view()
    m = build()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    idx = torch.arange(0, 12, 4)  # three different objects
    new = A.personalise(m, view.queries[idx], view.gallery[view.target[idx]])
    assert new is not m and all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert not torch.equal(new.head.weight, m.head.weight)
    torch.manual_seed(0)
    base = build_triplet("mlp", flip=False, **HEAD)
    ft = A.FineTuned(base, steps=3, lr=0.5)
    b_before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = ft.adapt(view.triplets(idx, torch.Generator().manual_seed(0)))
    assert all(torch.equal(b_before[k], v) for k, v in base.state_dict().items())
    changed = {k for k, v in tuned.base.state_dict().items() if not torch.equal(b_before[k], v)}
    assert changed == {"encoder.head.weight", "encoder.head.bias"}


def test_style_world_supports_never_show_a_test_object_and_refuse_big_k():
    from sbir_core import benchmark as B

    data = B.world(3.0)
    view = SP.adaptation_view(data, 16, 1.0)
    support_for = SP.support_for_drawer(data, view, 3, seed=0)
    drawer = sorted(set(data.sketches.loc[data.sketches["drawer_split"] == "unseen", "drawer"]))[0]
    s = support_for(drawer)
    assert len(s["sketch"]) == 3
    assert set(view.table["split"].iloc[s["idx"].numpy()]) <= {"train", "val"}
    assert (
        view.gallery_table["instance"].iloc[s["neg_idx"].numpy()].to_numpy()
        != view.gallery_table["instance"].iloc[s["pos_idx"].numpy()].to_numpy()
    ).any()
    with pytest.raises(DataError, match="k must lie"):
        SP.support_for_drawer(data, view, 10_000)(drawer)
    seen = data.sketches.loc[data.sketches["drawer_split"] == "seen", "drawer"].iloc[0]
    with pytest.raises(DataError, match="no sketches in the adaptation split"):
        support_for(seen)


def test_adaptation_never_changes_the_stored_base_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_STORE", str(tmp_path))
    view = image_view(drawers=2)
    spec = MethodSpec("adaptive_fgsbir", {**SMALL, "k_support": 2, "k_query": 2})
    cfg = TrainConfig(steps=2, batch_size=1, eval_every=2, progress=False)
    first = train_run(spec, view, None, None, cfg, seed=0)
    assert any(tmp_path.iterdir())  # it was stored
    m = spec.build()
    m.load_state_dict(first.best_state)

    def support_for(drawer):
        rows = torch.as_tensor(np.flatnonzero(view.table["drawer"] == drawer)[:3])
        return view.triplets(rows, torch.Generator().manual_seed(0))

    evaluate(m, view, ks=(1,), adapt=("drawer", support_for))
    again = train_run(spec, view, None, None, cfg, seed=0)  # loaded from the store, not retrained
    assert all(torch.equal(first.best_state[k], again.best_state[k]) for k in first.best_state)
    assert all(torch.equal(first.best_state[k], v) for k, v in m.state_dict().items())


def _trained_triplet(tmp_path, monkeypatch, view):
    """A Triplet-SN run (chapter 4's head, SMALL's sizes) trained 2 steps into a temporary store: (its run, spec)."""
    monkeypatch.setenv("SBIR_STORE", str(tmp_path))
    spec = MethodSpec("triplet_sn", {"encoder": "mlp", "flip": False, **HEAD})
    run = train_run(spec, view, None, None, TrainConfig(steps=2, batch_size=4, eval_every=2, progress=False), seed=0)
    return run, spec


def test_f_and_m_from_a_trained_baseline_start_as_that_baseline(tmp_path, monkeypatch):
    view = image_view()
    run, spec = _trained_triplet(tmp_path, monkeypatch, view)
    base = spec.build()
    base.load_state_dict(run.best_state)
    m = A.AdaptiveFGSBIR(**SMALL)
    m.start_from(run.best_state)
    m.eval(), base.eval()
    assert torch.allclose(m.embed_query(view.queries), base.embed_query(view.queries), atol=1e-6)
    assert torch.allclose(m.embed_gallery(view.gallery), base.embed_gallery(view.gallery), atol=1e-6)
    with pytest.raises(MethodError, match="does not fit"):
        A.AdaptiveFGSBIR(encoder_options={**HEAD, "embed_dim": 16}).start_from(run.best_state)
    with pytest.raises(MethodError, match="mlp or trunk_mlp"):
        A.AdaptiveFGSBIR(encoder="cnn")


def test_a_run_that_starts_from_another_is_keyed_by_it_and_loads_it_only_to_train(tmp_path, monkeypatch):
    """``init``: the starting state is part of the run's identity, and it is only loaded when the run trains."""
    view = image_view()
    run, _ = _trained_triplet(tmp_path, monkeypatch, view)
    spec = MethodSpec("adaptive_fgsbir", {**SMALL, "k_support": 2, "k_query": 2})
    cfg = TrainConfig(steps=1, batch_size=1, eval_every=1, progress=False)
    calls = []

    def state():
        calls.append(1)
        return run.best_state

    a = train_run(spec, view, None, None, cfg, seed=0, init=("base-a", state))
    assert calls == [1]
    again = train_run(spec, view, None, None, cfg, seed=0, init=("base-a", state))  # from the store
    assert calls == [1] and again.fingerprint == a.fingerprint
    other = train_run(spec, view, None, None, cfg, seed=0, init=("base-b", state))
    plain = train_run(spec, view, None, None, cfg, seed=0)
    assert len({a.fingerprint, other.fingerprint, plain.fingerprint}) == 3
    with pytest.raises(MethodError, match="does not start from"):
        train_run(
            MethodSpec("triplet_sn", {"encoder": "mlp", "flip": False, **HEAD}),
            view,
            None,
            None,
            cfg,
            0,
            False,
            ("x", {}),
        )


def test_maml_adapts_f_and_m_and_anil_only_m():
    view = image_view()
    support = view.triplets(torch.arange(4), torch.Generator().manual_seed(0))
    assert set(build("all")._adapted_names()) == {
        n for n, _ in build("all").named_parameters() if n.startswith(("encoder.", "head."))
    }
    assert set(build("head")._adapted_names()) == {"head.weight", "head.bias"}
    m = build("head")
    changed = {k for k, v in m.adapt(support).state_dict().items() if not torch.equal(m.state_dict()[k], v)}
    assert changed == {"head.weight", "head.bias"}


def test_category_supports_come_from_the_category_and_refuse_big_k():
    view = image_view(n_items=8, per_item=4, categories=2)
    sf = SP.support_for_category(view, 3, seed=0)
    s = sf("c1")
    assert len(s["sketch"]) == 3 and set(view.table["category"].iloc[s["idx"].numpy()]) == {"c1"}
    assert torch.equal(sf("c1")["idx"], s["idx"])  # seeded: the same support every time
    with pytest.raises(DataError, match="has 16"):
        SP.support_for_category(view, 17)("c0")
    with pytest.raises(DataError, match="no support"):
        sf("c9")


def _class_table(counts):
    return pd.DataFrame(
        {
            "category": [c for c, n in counts.items() for _ in range(n)],
            "sketch_id": [f"s{i}" for i in range(sum(counts.values()))],
        }
    )


def test_support_pool_is_fixed_disjoint_and_refuses_a_class_without_queries():
    table = _class_table({"a": 6, "b": 4})
    pool, queries = SP.support_pool(table, 3, seed=0)
    again, q2 = SP.support_pool(table, 3, seed=0)
    assert all(np.array_equal(pool[c], again[c]) for c in pool) and np.array_equal(queries, q2)
    used = np.concatenate([pool["a"], pool["b"]])
    assert len(set(used) & set(queries)) == 0 and len(used) + len(queries) == len(table)
    assert set(table["category"].iloc[pool["a"]]) == {"a"} and len(queries) == 4
    other, _ = SP.support_pool(table, 3, seed=1)
    assert any(not np.array_equal(pool[c], other[c]) for c in pool)
    with pytest.raises(DataError, match="none left"):
        SP.support_pool(table, 4)


def test_class_supports_take_negatives_from_other_classes_and_refuse_bad_k():
    sketches = torch.rand(10, 1, 8, 8)
    photos = torch.rand(6, 3, 8, 8)
    cls = np.array(["a", "a", "a", "b", "b", "c"])
    pool = {"a": np.array([0, 1, 2]), "b": np.array([3, 4, 5])}
    sf = SP.support_for_class(sketches, pool, photos, cls, 2, seed=0)
    s = sf("a")
    assert torch.equal(s["sketch"], sketches[:2])
    assert set(cls[s["pos_idx"].numpy()]) == {"a"} and "a" not in set(cls[s["neg_idx"].numpy()])
    assert torch.equal(s["photo"], photos[s["pos_idx"]]) and torch.equal(s["neg"], photos[s["neg_idx"]])
    with pytest.raises(DataError, match="k=4"):
        SP.support_for_class(sketches, pool, photos, cls, 4)("a")
    with pytest.raises(DataError, match="no support sketches"):
        sf("z")
    with pytest.raises(DataError, match="another class"):
        SP.support_for_class(sketches, pool, photos[:3], cls[:3], 2)("a")


def test_evaluate_adapts_on_a_category_view_and_leaves_the_base_alone(words):
    from sbir_core.data.views import CategoryView

    g = torch.Generator().manual_seed(0)
    gallery = torch.randn(12, DIM, generator=g)
    gtable = pd.DataFrame({"category": [f"c{i % 3}" for i in range(12)], "medium": "photo"})
    queries = torch.randn(9, DIM, generator=g)
    table = pd.DataFrame({"category": [f"c{i % 3}" for i in range(9)], "sketch_id": [f"q{i}" for i in range(9)]})
    view = CategoryView("toy/category", queries, gallery, table, gtable)
    m = build("margin", "category", words).eval()
    plain = evaluate(m, view)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    sk = torch.randn(6, DIM, generator=g)
    pool = {c: np.array([2 * i, 2 * i + 1]) for i, c in enumerate(["c0", "c1", "c2"])}
    sf = SP.support_for_class(sk, pool, gallery, gtable["category"].to_numpy(), 2)
    adapted = evaluate(m, view, adapt=("category", sf))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert adapted.outcome("map_all").shape == (9,)
    import dataclasses

    rows = np.flatnonzero(table["category"] == "c1")  # each class's queries ranked by the model adapted to it
    sub = dataclasses.replace(view, queries=queries[torch.as_tensor(rows)], table=table.iloc[rows])
    one = evaluate(m.adapt(sf("c1")), sub)
    assert np.allclose(adapted.outcome("map_all")[rows], one.outcome("map_all"))
    assert m.adapt(sf("c1")).head.weight.ne(m.head.weight).any()
    assert not np.allclose(adapted.outcome("map_all"), plain.outcome("map_all"))  # adaptation is not ignored


def test_sketchy_zero_shot_split_gives_support_and_query_objects_and_adapts(tmp_path, monkeypatch, words):
    """The category level on a real zero-shot set (the poster's Sketchy protocol), on a fixture in the official
    layout: each unseen class's objects split once into support and queries, never sharing a photo; the views
    rank within the class, the supports come from the class's support objects, and adapting per class runs."""
    from test_data_sketchy import write_sketchy

    from sbir_core.data import load_dataset
    from sbir_core.data.folders import YELAMARTHI_21

    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))
    write_sketchy(
        tmp_path,
        classes=("airplane", "apple", *YELAMARTHI_21),
        photos_per_class=4,
        sketches_per_photo=2,
        extended=False,
    )
    data = load_dataset("sketchy", tmp_path, unseen="yelamarthi21", paired_only=True, seed=0, val_fraction=0.5)
    with pytest.raises(DataError, match="hold_out_support"):
        SP.category_views(data, 8)  # every unseen object is a test object: no support split yet
    held = SP.hold_out_support(data, 0.5, seed=0)
    assert (data.sketches.loc[data.sketches["category_split"] == "unseen", "split"] == "test").all()  # unchanged
    assert held.fingerprint != data.fingerprint
    again = SP.hold_out_support(data, 0.5, seed=0)
    assert again.sketches["split"].tolist() == held.sketches["split"].tolist()  # a fixed rule
    views = {k: as_features(v) for k, v in SP.category_views(held, 8).items()}
    assert set(views["train"].table["category"]) | set(views["val"].table["category"]) <= {"airplane", "apple"}
    for v in ("support", "test"):
        assert set(views[v].table["category"]) == set(YELAMARTHI_21)
    sup, test = set(views["support"].table["instance"]), set(views["test"].table["instance"])
    assert sup and test and not sup & test
    assert not set(views["support"].gallery_table["instance"]) & set(views["test"].gallery_table["instance"])
    assert len(set(views["test"].table["instance"])) == 2 * 21  # half of each class's 4 photos are queries
    s = SP.support_for_category(views["support"], 2, 0)("bat")
    assert set(views["support"].table["instance"].iloc[s["idx"].numpy()]) <= sup
    m = build("margin", "category", words).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ev = evaluate(m, views["test"], ks=(1, 5), adapt=("category", SP.support_for_category(views["support"], 2, 0)))
    assert len(ev.outcome("acc_at_1")) == len(views["test"]) and 0 <= ev.metrics["acc_at_1"] <= 1
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    with pytest.raises(DataError, match="fraction"):
        SP.hold_out_support(data, 1.0)
    one = load_dataset("sketchy", tmp_path, unseen=None, paired_only=True, seed=0)
    with pytest.raises(DataError, match="no unseen class"):
        SP.hold_out_support(one)
    with pytest.raises(DataError, match="seen and unseen"):
        SP.category_views(one, 8)


def test_a_support_never_takes_its_positive_as_its_negative():
    """Training triplets follow QMUL's rule (another query's photo, sometimes the anchor's own); a support set
    must not: a one-sketch support whose negative is its positive leaves nothing to adapt to (and was refused)."""
    view = image_view(n_items=4, per_item=6, categories=2)  # 6 sketches a photo: QMUL's rule often repeats it
    gen = torch.Generator().manual_seed(0)
    qmul = view.triplets(torch.arange(len(view)), gen)
    assert (qmul["neg_idx"] == qmul["pos_idx"]).any()  # the training rule can pick the positive
    for seed in range(20):
        s = SP.support_triplets(view, torch.arange(len(view)), torch.Generator().manual_seed(seed))
        assert (s["neg_idx"] != s["pos_idx"]).all()
        assert (view.gallery_group[s["neg_idx"]] == view.gallery_group[s["pos_idx"]]).all()  # same category
        assert torch.equal(s["neg"], view.gallery[s["neg_idx"]])
    for k1 in range(8):  # every one-sketch support of every category adapts
        A.check_support(SP.support_for_category(view, 1, seed=k1)("c0"))
    lonely = RetrievalView(
        "one photo",
        torch.rand(2, 1, 8, 8),
        torch.rand(1, 3, 8, 8),
        torch.zeros(2, dtype=torch.long),
        pd.DataFrame({"sketch_id": ["a", "b"]}),
        pd.DataFrame({"instance": ["i0"]}),
        group=None,
    )
    with pytest.raises(DataError, match="no other photo"):
        SP.support_triplets(lonely, torch.tensor([0]), gen)


@pytest.mark.parametrize(("level", "off"), [("user", "d"), ("user", "ud"), ("category", "c"), ("category", "s")])
def test_every_regulariser_ablation_changes_the_trained_weights_and_some_ranks(level, off, words):
    """Chapter 7's ablations (L_D, L_ud at the user level; L_C, L_S at the category level): trained from the same
    seed on the same episodes with one regulariser's weight at zero, F ends elsewhere and some query ranks elsewhere."""
    view = image_view(n_items=32, noise=1.0)  # 128 queries: a real change of the distances moves some rank
    options = {**SMALL, "level": level, "k_support": 2, "k_query": 2}
    if level == "category":
        options |= {"classes": ["c0", "c1"], "word_embedding": words}

    def trained(reg):
        seed_everything(0)
        m = A.AdaptiveFGSBIR(**options, reg=reg)
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        for step in range(6):  # the same episodes for both
            m.train_step(batch_of(m, view, tasks=2, seed=step), [opt])
        return {k: v.clone() for k, v in m.state_dict().items()}, evaluate(m.eval(), view, ks=(1,)).per_query["rank"]

    full, full_ranks = trained({off: 1.0})
    state, ranks = trained({off: 0.0})
    assert any(not torch.equal(full[k], state[k]) for k in full if k.startswith("encoder."))
    assert (ranks != full_ranks).any()


def test_maml_on_a_trunk_with_batch_norm_adapts_on_its_running_statistics():
    """The paper scale's F is an ImageNet trunk with batch normalisation. MAML's inner loop runs it on its running
    statistics (training mode would update them in place, which ``torch.func.grad`` refuses, and normalise by the
    k support sketches alone): the inner loop leaves them and the training mode as they were, the outer step
    trains."""
    torch.manual_seed(0)
    m = A.AdaptiveFGSBIR(
        encoder="trunk_mlp",
        encoder_options={"trunk": {"block": 1, "pool": 1, "photo": "rgb"}, "hidden": 8, "embed_dim": 8, "dropout": 0.0},
        inner="all",
        inner_lr=0.1,
        k_support=2,
        k_query=2,
    )
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    g = torch.Generator().manual_seed(0)
    view = image_view()
    photos = torch.rand(8, 3, 16, 16, generator=g)
    sketches = (
        photos[view.target].mean(1, keepdim=True) + 0.2 * torch.rand(len(view.target), 1, 16, 16, generator=g)
    ) > 0.6
    import dataclasses

    view = dataclasses.replace(view, queries=sketches.float(), gallery=photos)
    m.train()
    stats = {n: b.clone() for n, b in m.named_buffers()}
    fast, _ = m.adapted_params(view.triplets(torch.arange(4), torch.Generator().manual_seed(1)))
    assert all(torch.equal(stats[n], b) for n, b in m.named_buffers())
    assert all(x.training for x in m.modules())
    params = dict(m.named_parameters())
    assert not torch.equal(fast["encoder.trunk.stem.0.weight"], params["encoder.trunk.stem.0.weight"])  # F adapted
    loss = m.training_loss(batch_of(m, view, tasks=1))
    loss.backward()
    assert torch.isfinite(loss) and params["encoder.trunk.stem.0.weight"].grad.abs().sum() > 0
    assert not all(torch.equal(stats[n], b) for n, b in m.named_buffers())  # the outer step's pass updates them


def test_fine_tuning_adapts_the_same_head_when_the_trunk_is_trained_with_it():
    """At the paper scale Triplet-SN's encoder is Sequential(trunk, head): fine-tuning adapts that head's last
    linear layer, as it adapts ``encoder.head`` on the ci scale's trunk features."""
    torch.manual_seed(0)
    base = build_triplet("trunk_mlp", flip=False, trunk={"block": 1, "pool": 1, "photo": "rgb"}, hidden=8, embed_dim=8)
    assert A._last_linear(base) is base.encoder[-1].head
    assert A._last_linear(build_triplet("mlp", flip=False, **HEAD)).out_features == HEAD["embed_dim"]
    g = torch.Generator().manual_seed(0)
    support = {"sketch": torch.rand(2, 1, 16, 16, generator=g), "photo": torch.rand(2, 3, 16, 16, generator=g)}
    support["neg"] = support["photo"].flip(0)
    new = A.FineTuned(base, steps=1).adapt(support)
    moved = [
        n
        for n, p in new.named_parameters()
        if not torch.equal(p, dict(base.named_parameters())[n.removeprefix("base.")])
    ]
    assert moved and all(".head." in n for n in moved), moved


def test_validation_adapts_each_drawer_first_and_names_the_rule_in_the_runs_identity(tmp_path, monkeypatch):
    """``val_adapt``: the run's validation numbers are those of the method adapted to each drawer's support
    (from the training view, never a validation sketch), the kept step is chosen on them, and the rule is
    part of the run's identity (a run validated without adaptation is another run)."""
    monkeypatch.setenv("SBIR_STORE", str(tmp_path))
    train, val = image_view(seed=0, per_item=6, drawers=3), image_view(seed=0, per_item=3, drawers=3, noise=0.6)
    spec = MethodSpec("adaptive_fgsbir", {**SMALL, "k_support": 2, "k_query": 2})
    cfg = TrainConfig(steps=4, batch_size=2, eval_every=2, ks=(1, 5), progress=False)
    support_for = SP.support_from(train, "drawer", 3, seed=0)
    support = support_for("d1")
    assert len(support["sketch"]) == 3 and set(train.table["drawer"].iloc[support["idx"].tolist()]) == {"d1"}
    assert (support["neg_idx"] != support["pos_idx"]).all()
    with pytest.raises(DataError, match="k=99"):
        SP.support_from(train, "drawer", 99)("d1")
    assert len(SP.support_from(train, "drawer", 99, at_most=True)("d1")["sketch"]) == 16  # all the drawer has
    with pytest.raises(DataError, match="no column 'writer'"):
        SP.support_from(train, "writer", 2)
    adapted = train_run(spec, train, val, None, cfg, seed=0, val_adapt=("drawer", support_for, "rule A"))
    plain = train_run(spec, train, val, None, cfg, seed=0)
    assert adapted.fingerprint != plain.fingerprint
    m = spec.build()
    m.load_state_dict(adapted.best_state)
    step = adapted.val_selected["step"]
    want = evaluate(m.eval(), val, ks=(1, 5), adapt=("drawer", support_for)).metrics["acc_at_1"]
    got = adapted.history.loc[adapted.history["step"] == step, "val/acc_at_1"].item()
    assert got == pytest.approx(want)
    m.load_state_dict(plain.best_state)
    assert plain.history.loc[plain.history["step"] == plain.val_selected["step"], "val/acc_at_1"].item() == (
        pytest.approx(evaluate(m.eval(), val, ks=(1, 5)).metrics["acc_at_1"])
    )


@pytest.mark.parametrize("inner", ["margin", "head", "all"])
def test_adapted_evaluation_runs_f_once_where_only_m_adapts_and_ranks_as_each_copy_alone(inner):
    """F (here: its first layer) sees the gallery once for a method that adapts M only, once per drawer for MAML;
    either way each drawer's queries rank as that drawer's adapted copy ranks them on its own."""
    view = image_view(n_items=10, drawers=3)
    m = build(inner).eval()

    def support_for(drawer):
        rows = torch.as_tensor(np.flatnonzero(view.table["drawer"] == drawer)[:3])
        return view.triplets(rows, torch.Generator().manual_seed(0))

    sizes = []
    hook = m.encoder.norm.register_forward_hook(lambda mod, args, out: sizes.append(len(args[0])))
    try:
        got = evaluate(m, view, ks=(1, 5), adapt=("drawer", support_for))
    finally:
        hook.remove()
    gallery_passes = sizes.count(len(view.gallery))
    assert gallery_passes == (3 if inner == "all" else 1), sizes
    assert (m.kept_features() is None) == (inner == "all")
    for drawer in ("d0", "d1", "d2"):
        rows = np.flatnonzero(view.table["drawer"] == drawer)
        copy = m.adapt(support_for(drawer)).eval()
        with torch.no_grad():
            d = M.pairwise_distances(
                copy.embed_query(view.queries[torch.as_tensor(rows)]), copy.embed_gallery(view.gallery)
            )
        rank = M.true_match_rank(d, view.target.numpy()[rows], candidates=view.candidates()[rows])
        assert np.array_equal(got.per_query["rank"][rows], rank), drawer


def test_fine_tuning_backpropagates_into_the_head_only_and_steps_it_as_before():
    """Fine-tuning's SGD steps move the head exactly as with every layer taking gradients, and leave each
    parameter's requires_grad as it was."""
    import copy

    torch.manual_seed(0)
    base = build_triplet("trunk_mlp", flip=False, trunk={"block": 1, "pool": 1, "photo": "rgb"}, hidden=8, embed_dim=8)
    g = torch.Generator().manual_seed(0)
    support = {"sketch": torch.rand(3, 1, 16, 16, generator=g), "photo": torch.rand(3, 3, 16, 16, generator=g)}
    support["neg"] = support["photo"].roll(1, 0)
    tuned = A.FineTuned(base, steps=3, lr=0.5).eval()
    reached = []  # a module hook travels with the deep copy that adapt makes (a tensor hook would not)
    hook = base.encoder[0].register_full_backward_hook(lambda mod, grad_in, grad_out: reached.append(1))
    new = tuned.adapt(support)
    hook.remove()
    assert not reached  # the backward pass never ran through the trunk
    ref = A.FineTuned(copy.deepcopy(base), steps=3, lr=0.5).eval()  # the same steps by hand, every layer's gradient
    head = A._last_linear(ref.base)
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    for _ in range(3):
        s, p, n = A._three(ref.base.embed_query, support)
        loss = A.hinge_triplet((s - p).norm(dim=1), (s - n).norm(dim=1), ref.margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.allclose(A._last_linear(new.base).weight, head.weight, atol=1e-6)
    assert not torch.equal(A._last_linear(new.base).weight, A._last_linear(base).weight)
    assert [p.requires_grad for p in new.parameters()] == [p.requires_grad for p in base.parameters()]


@pytest.mark.parametrize("inner", ["margin", "head", "all"])
def test_test_time_adaptation_runs_f_without_autograd_where_only_m_adapts_and_adapts_as_in_training(inner):
    """At test time F's support features carry no autograd graph when the inner loop adapts M only (they do for
    MAML, which adapts F); the adapted copy's weights and margin equal the meta-training inner loop's on the same
    support, where F's graph is kept for the outer loss."""
    view = image_view(n_items=10, drawers=2)
    m = build(inner).eval()
    support = view.triplets(torch.arange(4), torch.Generator().manual_seed(0))
    graphs = []
    hook = m.encoder.register_forward_hook(lambda mod, args, out: graphs.append(out.requires_grad))
    try:
        new = m.adapt(support)
        at_test = list(graphs)
        graphs.clear()
        fast, mu = m.adapted_params({k: support[k] for k in ("sketch", "photo", "neg")})
    finally:
        hook.remove()
    assert at_test and graphs
    assert not any(at_test) if inner != "all" else any(at_test), at_test
    assert any(graphs), graphs  # meta-training records F's graph
    got = dict(new.named_parameters())
    for name, value in fast.items():
        assert torch.allclose(got[name], value.detach(), atol=1e-7), name
    assert not torch.equal(got["head.weight"], m.head.weight)
    assert new.last_margin == pytest.approx(float(mu.detach()))
