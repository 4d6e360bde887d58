"""The method contract with tiny stand-in methods: each optional capability works through the one
trainer and the one evaluator, and a plain embedding method needs none of them."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from sbir_core import metrics as M
from sbir_core.data.views import CategoryView, RetrievalView
from sbir_core.evaluation import evaluate
from sbir_core.models.base import Method, MethodError, MethodSpec, build_method, register
from sbir_core.samplers import SAMPLERS, get_sampler, register_sampler
from sbir_core.train import TrainConfig, Trainer


def toy_view(n_items=12, per_item=2, dim=4, seed=0, categories=2, drawers=3) -> RetrievalView:
    """Queries are noisy copies of their gallery item's feature vector, stored as (N, dim, 1, 1) images."""
    g = torch.Generator().manual_seed(seed)
    gallery = torch.randn(n_items, dim, 1, 1, generator=g)
    target = torch.arange(n_items).repeat_interleave(per_item)
    queries = gallery[target] + 0.3 * torch.randn(len(target), dim, 1, 1, generator=g)
    cat = [f"c{i % categories}" for i in range(n_items)]
    table = pd.DataFrame(
        {
            "instance": [f"i{t}" for t in target.tolist()],
            "category": [cat[t] for t in target.tolist()],
            "drawer": [f"d{k % drawers}" for k in range(len(target))],
        }
    )
    gtable = pd.DataFrame({"instance": [f"i{i}" for i in range(n_items)], "category": cat, "medium": "photo"})
    return RetrievalView("toy", queries, gallery, target, table, gtable, group="category")


class Flat(Method):
    """An embedding method: a linear map of the flattened input (no optional capability)."""

    def __init__(self, dim=4):
        super().__init__()
        self.lin = nn.Linear(dim, dim, bias=False)
        nn.init.eye_(self.lin.weight)

    def embed_query(self, x, style=None):
        return self.lin(x.flatten(1))

    def embed_gallery(self, x):
        return self.lin(x.flatten(1))

    def training_loss(self, batch):
        s, p, n = (
            self.embed_query(batch["sketch"]),
            self.embed_gallery(batch["photo"]),
            self.embed_gallery(batch["neg"]),
        )
        return torch.relu((s - p).norm(dim=1) - (s - n).norm(dim=1) + 0.5).mean()


def test_a_plain_embedding_method_trains_and_evaluates():
    view = toy_view()
    method = Flat()
    res = Trainer(
        method, view, view, {"test": view}, TrainConfig(steps=6, batch_size=8, eval_every=3, progress=False)
    ).fit()
    assert list(res.history["step"]) == [3, 6] and res.val_selected["step"] in (3, 6)
    ev = evaluate(method, view, ks=(1, 3))
    assert ev.protocol == "fine_grained" and ev.per_query["rank"].shape == (len(view),)
    # ranked within the category: no rank can exceed the category's gallery size
    assert (ev.per_query["rank"] <= view.n_candidates()).all()


class TwoOptimisers(Flat):
    """The model's weights and a separate 'regulariser' scalar, each with its own optimiser and loss."""

    def __init__(self):
        super().__init__()
        self.reg = nn.Parameter(torch.tensor(1.0))

    def configure_optimizers(self, config):
        return [torch.optim.SGD(self.lin.parameters(), lr=0.1), torch.optim.SGD([self.reg], lr=0.5)]

    def train_step(self, batch, optimizers):
        model_opt, reg_opt = optimizers
        loss = self.training_loss(batch) + 0.0 * self.reg
        for o in optimizers:
            o.zero_grad()
        loss.backward()
        model_opt.step()
        (self.reg - 3.0).pow(2).backward()  # the regulariser follows its own (outer) objective
        reg_opt.step()
        return float(loss.detach())


def test_two_optimisers_step_different_parameters():
    view = toy_view()
    method = TwoOptimisers()
    lin0 = method.lin.weight.detach().clone()
    Trainer(method, view, None, None, TrainConfig(steps=1, batch_size=8, eval_every=1, progress=False)).fit()
    assert method.reg.item() == pytest.approx(1.0 + 0.5 * 2 * (3.0 - 1.0))  # one SGD step on (reg - 3)^2
    assert not torch.equal(method.lin.weight, lin0)  # the model's optimiser stepped its own weights


class Pairwise(Method):
    """A pairwise stand-in: per-item features are the raw vectors, the pair distance their distance."""

    pairwise = True

    def embed_query(self, x, style=None):
        return x.flatten(1)

    def embed_gallery(self, x):
        return x.flatten(1)

    def pair_distance(self, q, g):
        return (q - g).norm(dim=1)

    def training_loss(self, batch):
        raise MethodError("nothing to train")


def test_pairwise_exhaustive_equals_embedding_and_shortlist_counts_pairs():
    view = toy_view(n_items=20, per_item=3)
    exhaustive = evaluate(Pairwise(), view, ks=(1, 5))
    flat = evaluate(Flat(), view, ks=(1, 5))  # identity weights: the same distances
    assert np.array_equal(exhaustive.per_query["rank"], flat.per_query["rank"])
    assert exhaustive.pair_evaluations == int(view.candidates().sum())
    two = evaluate(Pairwise(), view, ks=(1, 5), shortlist=(Flat(), 3))
    assert two.pair_evaluations == int(np.minimum(3, view.n_candidates()).sum())
    # reranking by the same distance changes no rank; queries outside the shortlist keep their base rank
    assert np.array_equal(two.per_query["rank"], flat.per_query["rank"])


def test_shortlist_with_a_weak_base_loses_only_queries_it_missed():
    view = toy_view(n_items=20, per_item=3)

    class Reverse(Flat):
        def embed_query(self, x, style=None):
            return -x.flatten(1)

    two = evaluate(Pairwise(), view, ks=(1,), shortlist=(Reverse(), 2))
    exact = evaluate(Pairwise(), view, ks=(1,)).per_query["rank"]
    kept = two.per_query["rank"] <= 2
    assert np.array_equal(two.per_query["rank"][kept], exact[kept])
    assert (two.per_query["rank"] >= exact).all()


class Adaptive(Flat):
    """Adapts a bias to the mean offset between its support sketches and their photos."""

    def __init__(self):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(4), requires_grad=False)

    def embed_query(self, x, style=None):
        return self.lin(x.flatten(1)) - self.shift

    def adapt(self, support):
        new = copy.deepcopy(self)
        with torch.no_grad():
            new.shift += (support["sketch"].flatten(1) - support["photo"].flatten(1)).mean(0)
        return new


def test_adaptation_never_leaks_between_groups_and_leaves_the_base_unchanged():
    view = toy_view(n_items=16, per_item=3, drawers=3)
    # drawer d1 draws everything shifted: adaptation on its own sketches undoes it
    offset = (view.table["drawer"] == "d1").to_numpy().copy()
    view.queries[torch.as_tensor(offset)] += 2.0
    method = Adaptive()

    def support(drawer):
        rows = torch.as_tensor(np.flatnonzero(view.table["drawer"] == drawer)[:4])
        return view.pairs(rows)

    before = {k: v.clone() for k, v in method.state_dict().items()}
    adapted = evaluate(method, view, ks=(1,), adapt=("drawer", support))
    assert all(torch.equal(before[k], v) for k, v in method.state_dict().items())
    plain = evaluate(method, view, ks=(1,))
    assert adapted.per_query["rank"][offset].mean() < plain.per_query["rank"][offset].mean()
    # each drawer evaluated alone gives the same ranks: no state from one drawer reaches the next
    for drawer in ("d0", "d2"):
        rows = np.flatnonzero(view.table["drawer"] == drawer)
        alone = evaluate(method, view.subset(view.table["drawer"] == drawer), ks=(1,), adapt=("drawer", support))
        assert np.array_equal(alone.per_query["rank"], adapted.per_query["rank"][rows])


class Styled(Method):
    """A query is a sketch plus style exemplars: the embedding is the sketch's class code beside the exemplars' mean."""

    styled = True

    def embed_query(self, x, style=None):
        return torch.cat([x.flatten(1), style.mean(1).flatten(1)], 1)

    def embed_gallery(self, x):
        return x.flatten(1)[:, :4]

    def training_loss(self, batch):
        raise MethodError("nothing to train")


def test_style_conditioned_query_and_relevance_by_class_and_medium():
    classes, media = ["a", "b"], ["photo", "oil", "ink"]
    code = {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    mcode = {"photo": [0.0, 0.0], "oil": [1.0, 0.0], "ink": [0.0, 1.0]}
    rows, feats = [], []
    for c in classes:
        for m in media:
            for _ in range(3):
                rows.append({"category": c, "medium": m})
                feats.append(code[c] + mcode[m])
    gallery = torch.tensor(feats).view(-1, 4, 1, 1)
    qtab = pd.DataFrame([{"category": c, "want_medium": m} for c in classes for m in media])
    queries = torch.tensor([code[r.category] for r in qtab.itertuples()]).view(-1, 2, 1, 1)
    style = torch.tensor([[mcode[r.want_medium]] * 2 for r in qtab.itertuples()]).view(len(qtab), 2, 2, 1, 1)
    view = CategoryView("styled", queries, gallery, qtab, pd.DataFrame(rows), "category_medium", style)
    ev = evaluate(Styled(), view)
    assert ev.protocol == "category" and ev.metrics["map_all"] == pytest.approx(1.0)
    rel = view.relevant()
    assert rel.sum(1).tolist() == [3] * len(qtab)  # same class and the wanted medium
    by_class = CategoryView("plain", queries, gallery, qtab, pd.DataFrame(rows), "category", style)
    assert by_class.relevant().sum(1).tolist() == [9] * len(qtab)


def test_category_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    gallery = torch.as_tensor(rng.normal(size=(30, 4, 1, 1)), dtype=torch.float32)
    cats = [f"k{i % 3}" for i in range(30)]
    queries = gallery[:9] + 0.8 * torch.as_tensor(rng.normal(size=(9, 4, 1, 1)), dtype=torch.float32)
    view = CategoryView(
        "cat",
        queries,
        gallery,
        pd.DataFrame({"category": cats[:9]}),
        pd.DataFrame({"category": cats, "medium": "photo"}),
    )
    ev = evaluate(Flat(), view)
    dist = M.pairwise_distances(queries.flatten(1), gallery.flatten(1))
    aps, precs = [], []
    for q in range(9):
        order = np.argsort(dist[q], kind="stable")
        rel = np.array([cats[j] == cats[q] for j in order])
        hits = np.cumsum(rel)
        aps.append(sum(hits[i] / (i + 1) for i in range(30) if rel[i]) / rel.sum())
        precs.append(rel[:200].sum() / 200)
    assert ev.metrics["map_all"] == pytest.approx(np.mean(aps))
    assert ev.metrics["prec_at_200"] == pytest.approx(np.mean(precs))
    assert ev.outcome("map_all").mean() == pytest.approx(ev.metrics["map_all"])


def test_registry_and_spec():
    with pytest.raises(MethodError, match="unknown method"):
        MethodSpec("no_such_method")
    with pytest.raises(MethodError, match="module:function"):
        register("x", "nocolon")
    m = build_method("triplet_sn", encoder="cnn", width=4, depth=2, embed_dim=8)
    assert isinstance(m, Method) and m.sampler in SAMPLERS
    spec = MethodSpec("triplet_sn", {"width": 4})
    assert "sbir_core.models.triplet" in spec.sources() and "sbir_core.train" in spec.sources()
    # the registry is listed nowhere: adding a method there must not change any other method's fingerprint
    from sbir_core.models import registry

    assert all(registry.__name__ not in MethodSpec(name).sources() for name in registry.METHODS)
    with pytest.raises(MethodError, match="JSON"):
        MethodSpec("triplet_sn", {"f": object()})


def test_samplers_registry_and_episodes():
    view = toy_view(n_items=12, per_item=3, drawers=3)
    with pytest.raises(KeyError, match="unknown sampler"):
        get_sampler("nope")

    @register_sampler("just_pairs")
    def just_pairs(view, batch_size, generator):
        return view.pairs(torch.arange(batch_size))

    assert get_sampler("just_pairs")(view, 2, None)["idx"].tolist() == [0, 1]
    g = torch.Generator().manual_seed(0)
    ep = get_sampler("drawer_episodes")(view, 3, g, k_support=2, k_query=3)
    for task in ep["tasks"]:
        assert task["group"] == task["query_group"]
        drawers = set(view.table["drawer"].iloc[task["support"]["idx"].numpy()])
        assert drawers == {task["group"]} and len(task["support"]["idx"]) == 2 and len(task["query"]["idx"]) == 3
    held = get_sampler("drawer_episodes")(view, 4, g, k_support=2, k_query=2, held_out=True)
    assert all(t["group"] != t["query_group"] for t in held["tasks"])
    cat = get_sampler("category_episodes")(view, 2, g, k_support=3, k_query=3)
    for task in cat["tasks"]:
        assert set(view.table["category"].iloc[task["query"]["idx"].numpy()]) == {task["group"]}
    from sbir_core.data.base import DataError

    with pytest.raises(DataError, match="at least 40"):
        get_sampler("drawer_episodes")(view, 1, g, k_support=20, k_query=20)


def test_a_nan_loss_stops_with_the_step_and_the_last_finite_loss(tmp_path):
    from sbir_core.train import TrainError

    class Diverges(Flat):
        def training_loss(self, batch):
            self.calls = getattr(self, "calls", 0) + 1
            loss = super().training_loss(batch)
            return loss * float("nan") if self.calls == 4 else loss

    view = toy_view()
    trainer = Trainer(
        Diverges(),
        view,
        view,
        None,
        TrainConfig(steps=10, batch_size=4, eval_every=2, progress=False, checkpoint_dir=str(tmp_path)),
    )
    with pytest.raises(TrainError, match=r"diverged at step 4.*last finite loss .* at step 3.*checkpoints kept"):
        trainer.fit()
    assert trainer._checkpoints(), "the checkpoint of step 2 is kept"
