"""StyleMeUp: shapes, the meta-gradient (ψ and θ_FT learn only with the second-order graph), which
parameters learn, overfitting a tiny problem, determinism, FT and sampling off at evaluation, the
style episodes, bad input, and the public code's bugs fixed."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from sbir_core.data.base import DataError
from sbir_core.data.views import RetrievalView
from sbir_core.evaluation import evaluate
from sbir_core.metrics import rank_consistency
from sbir_core.models.base import MethodError, NonFiniteLoss, build_method
from sbir_core.models.stylemeup import FeatureTransform, style_episodes
from sbir_core.repro import seed_everything
from sbir_core.train import TrainConfig, Trainer

TINY = dict(size=16, width=4, depth=2, hidden=16, latent=8, k=3)


def toy_view(n_items=8, drawers=4, size=16, seed=0) -> RetrievalView:
    """Every photo drawn once by each of ``drawers`` drawers; a sketch is its photo's mean plus noise."""
    g = torch.Generator().manual_seed(seed)
    gallery = torch.rand(n_items, 3, size, size, generator=g) * 2 - 1
    target = torch.arange(n_items).repeat_interleave(drawers)
    base = (gallery.mean(1, keepdim=True) + 1) / 2
    queries = (base[target] + 0.2 * torch.rand(len(target), 1, size, size, generator=g)).clamp(0, 1)
    table = pd.DataFrame(
        {
            "instance": [f"i{t}" for t in target.tolist()],
            "category": "c",
            "drawer": [f"d{k % drawers}" for k in range(len(target))],
        }
    )
    gtable = pd.DataFrame({"instance": [f"i{i}" for i in range(n_items)], "category": "c", "medium": "photo"})
    return RetrievalView("toy", queries, gallery, target, table, gtable, group="category")


def one_step(method, seed=0, tasks=2):
    view = toy_view()
    batch = style_episodes(view, tasks, torch.Generator().manual_seed(seed), **method.sampler_options)
    opts = method.configure_optimizers(TrainConfig(lr=1e-2))
    return batch, opts, method.train_step(batch, opts)


def test_shapes_and_unit_norm():
    m = build_method("stylemeup", **TINY).eval()
    s, p = torch.rand(5, 1, 16, 16), torch.rand(5, 3, 16, 16)
    zs, zp = m.embed_query(s), m.embed_gallery(p)
    assert zs.shape == (5, 8) and zp.shape == (5, 8)
    assert torch.allclose(zs.norm(dim=1), torch.ones(5), atol=1e-5)
    assert m.swap(s, s.flip(0)).shape == (5, 3, 16, 16)
    odd = build_method("stylemeup", **{**TINY, "size": 18}).eval()  # not a multiple of 2**depth: decoded to 18
    assert odd.swap(torch.rand(2, 1, 18, 18), torch.rand(2, 1, 18, 18)).shape == (2, 3, 18, 18)
    sum_model = build_method("stylemeup", **TINY, fuse="sum")
    assert sum_model.decoder.fc.in_features == 8 and m.decoder.fc.in_features == 16


def test_feature_encoder_blocks_and_where_its_ft_layers_sit():
    """On trunk features the encoder has ``blocks`` hidden blocks (one by default): an FT layer follows the
    LayerNorm of the only block, or of every block but the first; it moves no embedding at evaluation."""
    from torch import nn

    def kinds(m):
        return [type(x).__name__ for x in m.encoder.features]

    one = build_method("stylemeup", in_dim=16, hidden=16, latent=8, k=3, flip=False)
    assert kinds(one) == ["LayerNorm", "Linear", "LayerNorm", "FeatureTransform", "LeakyReLU"]
    two = build_method("stylemeup", in_dim=16, hidden=16, latent=8, k=3, flip=False, blocks=2)
    assert kinds(two) == [
        "LayerNorm",
        "Linear",
        "LayerNorm",
        "LeakyReLU",
        "Linear",
        "LayerNorm",
        "FeatureTransform",
        "LeakyReLU",
    ]
    assert not build_method("stylemeup", in_dim=16, hidden=16, latent=8, k=3, flip=False, ft="none").ft_layers()
    for m in (one, two):
        x = torch.randn(5, 16)
        z = m.eval().embed_query(x)
        assert z.shape == (5, 8) and torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)
        assert isinstance(m.encoder.features[0], nn.LayerNorm)
    with pytest.raises(MethodError, match="at least one block"):
        build_method("stylemeup", in_dim=16, hidden=16, latent=8, k=3, flip=False, blocks=0)


def test_meta_gradient_reaches_psi_and_ft_only_when_second_order():
    torch.manual_seed(0)
    m = build_method("stylemeup", **TINY)
    psi0 = m.psi.detach().clone()
    thetas0 = [p.detach().clone() for n, p in m.named_parameters() if ".theta_" in n]
    assert len(thetas0) == 2  # one FT layer (after the one InstanceNorm of depth 2), γ and β
    one_step(m)
    assert m.psi.grad is not None and m.psi.grad.abs().sum() > 0
    assert not torch.equal(m.psi.detach(), psi0)
    for (n, p), p0 in zip([(n, p) for n, p in m.named_parameters() if ".theta_" in n], thetas0):
        assert p.grad is not None and p.grad.abs().sum() > 0, n
        assert not torch.equal(p.detach(), p0), n

    # first order, as the public code: ψ and θ get no gradient and never move
    torch.manual_seed(0)
    fo = build_method("stylemeup", **TINY, first_order=True)
    psi0 = fo.psi.detach().clone()
    thetas0 = [p.detach().clone() for n, p in fo.named_parameters() if ".theta_" in n]
    for seed in range(3):
        one_step(fo, seed)
    assert fo.psi.grad is None or fo.psi.grad.abs().sum() == 0
    assert torch.equal(fo.psi.detach(), psi0)
    for (n, p), p0 in zip([(n, p) for n, p in fo.named_parameters() if ".theta_" in n], thetas0):
        assert torch.equal(p.detach(), p0), n
    # ...while the model itself does learn
    assert fo.encoder.inv.weight.grad.abs().sum() > 0


def test_gradients_reach_exactly_the_parameters_that_learn():
    torch.manual_seed(0)
    m = build_method("stylemeup", **TINY)
    one_step(m)
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    # fixed FT: θ is not trained; no regulariser: no ψ; two optimisers -> one
    fixed = build_method("stylemeup", **TINY, ft="fixed", regulariser=False)
    assert fixed.psi is None
    thetas0 = {n: p.detach().clone() for n, p in fixed.named_parameters() if ".theta_" in n}
    _, opts, _ = one_step(fixed)
    assert len(opts) == 1
    for n, p in fixed.named_parameters():
        if n in thetas0:
            assert not p.requires_grad and torch.equal(p.detach(), thetas0[n]), n
    # w/o FT: no FT layers at all
    assert not build_method("stylemeup", **TINY, ft="none").ft_layers()
    # vae=False (B-Meta-SN): only the triplet on z_inv, so the decoder and the style heads get no gradient
    sn = build_method("stylemeup", **TINY, vae=False)
    one_step(sn)
    for n, p in sn.named_parameters():
        if n.startswith(("decoder.", "encoder.mu.", "encoder.logvar.")):
            assert p.grad is None or p.grad.abs().sum() == 0, n
        elif n.startswith("encoder.") and ".theta_" not in n:
            assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_gradients_do_not_accumulate_across_steps():
    """Public code bug 2: zero_grad once per epoch. Here every outer step starts from zero gradients."""
    torch.manual_seed(0)
    m = build_method("stylemeup", **TINY)
    for p in m.parameters():
        p.grad = torch.full_like(p, 1e6)
    one_step(m)
    assert all(p.grad.abs().max() < 1e5 for p in m.parameters())


def test_overfits_a_tiny_problem():
    seed_everything(0)
    view = toy_view()
    m = build_method("stylemeup", **TINY, meta=False)
    opts = m.configure_optimizers(TrainConfig(lr=3e-3))
    g = torch.Generator().manual_seed(0)
    batch = style_episodes(view, 2, g, k=3)
    first = m.train_step(batch, opts)
    for _ in range(60):
        last = m.train_step(batch, opts)
    assert last < 0.5 * first

    seed_everything(0)
    meta = build_method("stylemeup", **TINY)
    opts = meta.configure_optimizers(TrainConfig(lr=3e-3))
    first = meta.train_step(batch, opts)
    for _ in range(30):
        last = meta.train_step(batch, opts)
    assert last < 0.7 * first


def test_same_seed_same_weights():
    def run():
        seed_everything(3)
        m = build_method("stylemeup", **TINY)
        for s in range(2):
            one_step(m, s)
        return m.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_random_parts_off_at_evaluation():
    torch.manual_seed(0)
    m = build_method("stylemeup", **TINY)
    for layer in m.ft_layers():
        layer.theta_gamma.data.fill_(3.0)  # a very noisy FT, were it on
    x = torch.rand(4, 1, 16, 16)
    m.train()
    assert torch.equal(m.embed_query(x), m.embed_query(x))  # FT is off outside the inner step
    with m.feature_transforms(True):
        assert not torch.equal(m.embed_query(x), m.embed_query(x))
    assert not any(layer.active for layer in m.ft_layers())
    m.eval()
    v1, v2 = m.codes(x)[1], m.codes(x)[1]
    assert torch.equal(v1, v2)  # z_var is the mean at evaluation
    assert isinstance(m.ft_layers()[0], FeatureTransform)


def test_style_episodes_hold_out_a_drawer():
    view = toy_view(n_items=8, drawers=4)
    batch = style_episodes(view, 5, torch.Generator().manual_seed(1), k=3)
    drawer = view.table["drawer"].to_numpy()
    for task in batch["tasks"]:
        h = task["held_out"]
        s3 = task["idx"]
        assert (drawer[s3.numpy()] == h).all()
        # s1, s2: the same photo by two other drawers (recover rows by matching images)
        for key in ("s1", "s2"):
            rows = [int((view.queries == x).flatten(1).all(1).nonzero()[0]) for x in task[key]]
            assert h not in drawer[rows]
            assert torch.equal(view.target[rows], task["pos_idx"])
        assert (task["neg_idx"] != task["pos_idx"]).all()  # negatives: other training photos only
        assert task["s3"].shape == (3, 1, 16, 16) and task["photo"].shape == (3, 3, 16, 16)


def test_bad_input_is_named():
    two = toy_view(drawers=2)  # a photo then has only one other drawer: no s1, s2 pair
    with pytest.raises(DataError, match="held-out drawer"):
        style_episodes(two, 1, torch.Generator(), k=3)
    with pytest.raises(DataError, match="held-out drawer"):
        style_episodes(toy_view(n_items=2), 1, torch.Generator(), k=3)  # k above each drawer's sketches
    with pytest.raises(MethodError):
        build_method("stylemeup", ft="sometimes")
    m = build_method("stylemeup", **TINY)
    batch = style_episodes(toy_view(), 1, torch.Generator().manual_seed(0), k=3)
    batch["tasks"][0]["photo"] = torch.full_like(batch["tasks"][0]["photo"], float("nan"))
    with pytest.raises(NonFiniteLoss, match=batch["tasks"][0]["held_out"]):
        m.train_step(batch, m.configure_optimizers(TrainConfig()))


def test_trainer_stops_on_nan_with_the_step(tmp_path):
    from sbir_core.train import TrainError

    view = toy_view()
    bad = RetrievalView(
        "bad", view.queries, view.gallery * float("nan"), view.target, view.table, view.gallery_table, group="category"
    )
    m = build_method("stylemeup", **TINY)
    with pytest.raises(TrainError, match="step 1"):
        Trainer(m, bad, None, None, TrainConfig(steps=2, batch_size=1, progress=False)).fit()


def test_trains_and_evaluates_through_the_one_trainer():
    view = toy_view()
    m = build_method("stylemeup", **TINY)
    res = Trainer(m, view, view, None, TrainConfig(steps=2, batch_size=1, eval_every=1, progress=False)).fit()
    assert len(res.history) == 2 and res.val_selected
    assert 0 <= evaluate(m, view).metrics["acc_at_1"] <= 1


def test_rank_consistency():
    r = rank_consistency(np.array([1, 3, 2, 2, 5]), np.array([0, 0, 1, 1, 2]))
    assert r["rank_avg"] == pytest.approx(13 / 5)
    assert r["v_avg"] == pytest.approx((1.0 + 0.0) / 2)  # photo 2 has one sketch: left out
    assert r["photos"].tolist() == [0, 1] and r["per_photo"].tolist() == [1.0, 0.0]


def test_disjoint_outer_photos_judge_other_photos_than_the_inner_step():
    """``outer_photos="disjoint"``: the outer loss sees only the task's second half of photos; the inner step
    only the first half. Changing the first half's held-out sketches (s3) leaves the outer loss unchanged."""
    torch.manual_seed(0)
    m = build_method("stylemeup", **{**TINY, "k": 4}, outer_photos="disjoint", flip=False, ft="none")
    m.eval()  # no sampled style codes, so the loss is a function of the inputs alone
    batch = style_episodes(toy_view(), 1, torch.Generator().manual_seed(0), **m.sampler_options)
    task = batch["tasks"][0]
    other = dict(task, s3=task["s3"].clone())
    other["s3"][:2] = torch.rand_like(other["s3"][:2])
    assert torch.allclose(m.outer_loss(task), m.outer_loss(other))
    changed = dict(task, s3=task["s3"].clone())
    changed["s3"][2:] = torch.rand_like(changed["s3"][2:])
    assert not torch.allclose(m.outer_loss(task), m.outer_loss(changed))
    same = build_method("stylemeup", **{**TINY, "k": 4}, flip=False, ft="none").eval()
    same.load_state_dict(m.state_dict())
    assert not torch.allclose(same.outer_loss(task), same.outer_loss(other))  # the code's task: same photos
    with pytest.raises(MethodError, match="k must be >= 2"):
        build_method("stylemeup", **{**TINY, "k": 1}, outer_photos="disjoint")
    with pytest.raises(MethodError, match="outer_photos"):
        build_method("stylemeup", **TINY, outer_photos="sideways")


def test_index_as_drawer_takes_the_sketch_index_as_the_style_proxy():
    """Real sets name no drawer: the sketch index (a sketch_index column, or a -<k>/_<k> id suffix) stands in,
    and the style episodes run on it; ids without an index get a DataError that names them."""
    from sbir_core.data.views import index_as_drawer

    view = toy_view()
    by_suffix = dataclasses.replace(
        view,
        table=view.table.assign(
            sketch_id=[f"photo/dog/n{r.instance}-{int(r.drawer[1:]) + 1}" for r in view.table.itertuples()]
        ),
    )
    out = index_as_drawer(by_suffix)
    assert out.table["drawer"].tolist() == [f"index {int(d[1:]) + 1}" for d in view.table["drawer"]]
    assert out.queries is view.queries and view.table["drawer"].iloc[0] == "d0"  # the input view is untouched
    by_column = dataclasses.replace(
        view, table=view.table.assign(sketch_index=[d[1:] for d in view.table["drawer"]], sketch_id="x")
    )
    assert index_as_drawer(by_column).table["drawer"].nunique() == 4
    batch = style_episodes(out, 2, torch.Generator().manual_seed(0), k=3)
    assert all(t["held_out"].startswith("index ") for t in batch["tasks"])
    with pytest.raises(DataError, match="no sketch index"):
        index_as_drawer(dataclasses.replace(view, table=view.table.assign(sketch_id="plain")))


def test_dry_run_on_chairv2_in_the_official_layout(tmp_path):
    """The chapter's real-data path on a ChairV2 fixture in the official layout (``<name>_Coordinate`` pickle
    and photo folders): sketch index as the style, style episodes, two outer steps, evaluation on test."""
    from test_data_qmul import write_qmul

    from sbir_core.data.qmul import load
    from sbir_core.data.views import fg_view, index_as_drawer

    write_qmul(tmp_path / "data")
    data = load(tmp_path / "data", "ChairV2", val_fraction=0.2, seed=0)
    train, test = (fg_view(data, s, 16, 1.0) for s in ("train", "test"))
    train = index_as_drawer(train.within(None))
    assert sorted(set(train.table["drawer"])) == ["index 1", "index 2", "index 3"]
    m = build_method("stylemeup", **TINY)
    res = Trainer(
        m, train, None, {"test": test}, TrainConfig(steps=2, batch_size=1, eval_every=1, progress=False)
    ).fit()
    assert len(res.history) == 2 and torch.isfinite(torch.tensor(res.history["loss"].to_numpy())).all()
    assert 0 <= evaluate(m, test).metrics["acc_at_10"] <= 1


# ---------------------------------------------------------------------- the ablations act


def toy_feature_view(n_items=8, drawers=4, dim=16, seed=0) -> RetrievalView:
    """``toy_view`` as trunk features: each photo a random vector, each sketch its noisy copy."""
    g = torch.Generator().manual_seed(seed)
    gallery = torch.randn(n_items, dim, generator=g)
    target = torch.arange(n_items).repeat_interleave(drawers)
    queries = gallery[target] + 1.5 * torch.randn(len(target), dim, generator=g)
    v = toy_view(n_items, drawers)
    return dataclasses.replace(v, queries=queries, gallery=gallery)


@pytest.mark.parametrize(
    "variant",
    [
        "first_order",
        "no_ft",
        "fixed_ft",
        "no_reg",
        "disjoint_photos",
        "basic_sn",
        "cross_modal",
        "meta_sn",
        "latent128",
    ],
)
def test_every_ablation_changes_the_trained_weights_and_some_ranks(variant):
    """Each of chapter 6's variants (``recipes.STYLEMEUP_VARIANTS``; "same_photos" is the default's own name),
    trained from the same seed on the same batches as the full model, ends with other weights and ranks some
    query elsewhere: what it switches off acts on training (an ablation on a frozen part would differ by zero)."""
    from sbir_core.models.base import MethodSpec
    from sbir_core.recipes import STYLEMEUP_VARIANTS
    from sbir_core.train import train_run

    view = toy_feature_view(n_items=32)  # 128 queries: a real change of the distances moves some rank
    cfg = TrainConfig(steps=20, batch_size=2, eval_every=20, lr=1e-2, progress=False)

    def trained(changes):
        spec = MethodSpec("stylemeup", {"in_dim": 16, "hidden": 16, "latent": 8, "k": 3, "flip": False, **changes})
        state = train_run(spec, view, None, None, cfg, seed=0, store=False).best_state
        m = spec.build()
        m.load_state_dict(state)
        return state, evaluate(m.eval(), view).per_query["rank"]

    full, full_ranks = trained({})
    state, ranks = trained(STYLEMEUP_VARIANTS[variant][1])
    shared = [k for k in full if k in state and full[k].shape == state[k].shape and full[k].is_floating_point()]
    assert shared and any(not torch.equal(full[k], state[k]) for k in shared)
    assert (ranks != full_ranks).any()


def test_style_episodes_index_a_view_once_and_draw_as_a_fresh_index_does():
    """The episode sampler keeps its index of a view on the view (it runs every outer step): draws from the
    kept index equal draws from a freshly indexed copy of the view, and a view given new targets is indexed again."""
    from dataclasses import replace

    from sbir_core.models.stylemeup import _episode_index

    view = toy_view(n_items=8, drawers=4)
    first = style_episodes(view, 3, torch.Generator().manual_seed(2), k=3)
    assert "_style_episode_index" in view.__dict__
    kept = style_episodes(view, 3, torch.Generator().manual_seed(2), k=3)
    fresh = style_episodes(replace(view), 3, torch.Generator().manual_seed(2), k=3)
    for a, b, c in zip(first["tasks"], kept["tasks"], fresh["tasks"]):
        assert a["held_out"] == b["held_out"] == c["held_out"]
        assert torch.equal(a["idx"], b["idx"]) and torch.equal(a["idx"], c["idx"])
        assert torch.equal(a["s1"], c["s1"]) and torch.equal(a["s2"], c["s2"])
    view.target = torch.zeros_like(view.target)  # every sketch now of photo 0: the old index no longer holds
    _, target, by_photo, _ = _episode_index(view)
    assert list(by_photo) == [0] and (target == 0).all()


def test_a_stored_prefix_is_the_shorter_run(tmp_path, monkeypatch):
    """Chapter 6 compares its ablations, trained ABLATION_STEPS, with the full model trained as long: the
    full model's longer run stores itself at that step (``train_run``'s prefixes), and what it stores equals
    a run of that many steps trained alone: history, the state validation chose, and the store key."""
    from sbir_core import store
    from sbir_core.models.base import MethodSpec
    from sbir_core.train import TrainError, train_run

    monkeypatch.setenv("SBIR_STORE", str(tmp_path / "store"))
    view = toy_feature_view(n_items=16)
    spec = MethodSpec("stylemeup", {"in_dim": 16, "hidden": 16, "latent": 8, "k": 3, "flip": False})
    cfg = TrainConfig(steps=12, batch_size=2, eval_every=3, lr=1e-2, progress=False)
    alone = train_run(spec, view, view, None, cfg.replace(steps=6), seed=1, store=False)
    train_run(spec, view, view, None, cfg, seed=1, prefixes=(6,))
    assert len(store.entries()) == 2
    stored = train_run(spec, view, view, None, cfg.replace(steps=6), seed=1)  # a store hit: nothing trains
    assert len(store.entries()) == 2 and stored.history.equals(alone.history)
    assert stored.val_selected == alone.val_selected and stored.best_on_test == alone.best_on_test
    assert stored.fingerprint == alone.fingerprint
    assert all(torch.equal(stored.best_state[k], alone.best_state[k]) for k in alone.best_state)
    with pytest.raises(TrainError, match="multiple of eval_every"):
        train_run(spec, view, view, None, cfg, seed=2, prefixes=(5,))
