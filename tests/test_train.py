"""The trainer: config from YAML, seeding, model selection, safe checkpoints, exact resume, seeds."""

import math

import numpy as np
import pytest
import torch

from sbir_core.data.views import fg_view
from sbir_core.models.triplet import build_triplet
from sbir_core.repro import seed_everything
from sbir_core.train import (PROTOCOL_TEST, PROTOCOL_VAL, TrainConfig, Trainer, TrainError, evaluate,
                             mean_ci, run_seeds)
from test_views import tiny_data


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    import os

    old = os.environ.get("SBIR_CACHE")
    os.environ["SBIR_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    data = tiny_data()
    out = {s: fg_view(data, s, size=16) for s in ("train", "val", "test")}
    if old is None:
        os.environ.pop("SBIR_CACHE")
    else:
        os.environ["SBIR_CACHE"] = old
    return out


def _model(seed=0):
    seed_everything(seed)
    return build_triplet("cnn", width=8, depth=2, embed_dim=16)


def _config(**kw):
    base = dict(steps=20, batch_size=8, lr=3e-3, eval_every=5, progress=False, seed=0)
    return TrainConfig(**{**base, **kw})


def test_config_from_yaml_and_dict(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 7\nOPTIMIZER: adamw\nks: [1, 5]\n")
    c = TrainConfig.from_yaml(path)
    assert c.steps == 7 and c.optimizer == "adamw" and c.ks == (1, 5) and c.batch_size == 32
    with pytest.raises(TrainError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(TrainError, match="optimizer"):
        TrainConfig(optimizer="sgd")


def test_evaluate_perfect_model_scores_one(views):
    class Oracle(torch.nn.Module):
        """Embeds a sketch as the one-hot of its true photo, and photo j as one-hot j."""

        def __init__(self, view):
            super().__init__()
            self.view = view

        def embed_query(self, x):
            rows = [next(i for i in range(len(self.view)) if torch.equal(self.view.queries[i], s)) for s in x]
            return torch.eye(len(self.view.gallery))[self.view.target[rows]]

        def embed_gallery(self, x):
            return torch.eye(len(x))

    res = evaluate(Oracle(views["test"]), views["test"], ks=(1,))
    assert res["acc_at_1"] == 1.0 and (res["ranks"] == 1).all()


def test_same_seed_same_run_and_both_protocols(views):
    runs = []
    for _ in range(2):
        tr = Trainer(_model(), views["train"], views["val"], {"test": views["test"]}, _config())
        runs.append((tr.fit(), tr.model.state_dict()))
    (r1, w1), (r2, w2) = runs
    assert r1.history.equals(r2.history)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    h = r1.history
    assert list(h["step"]) == [5, 10, 15, 20]
    # best-on-test is the maximum of test Acc@1 over evaluations; val-selected is test at the best val step
    assert r1.best_on_test["test"]["acc_at_1"] == h["test/acc_at_1"].max()
    vs = r1.val_selected
    best_val = h["val/acc_at_1"].max()
    assert h.loc[h["step"] == vs["step"], "val/acc_at_1"].item() == best_val
    assert vs["test"]["acc_at_1"] == h.loc[h["step"] == vs["step"], "test/acc_at_1"].item()
    assert vs["test"]["acc_at_1"] <= r1.best_on_test["test"]["acc_at_1"]
    rows = r1.rows("tiny", "triplet")
    assert {r["protocol"] for r in rows} == {PROTOCOL_VAL, PROTOCOL_TEST}
    assert {r["split"] for r in rows} == {"val", "test"}


def test_training_beats_chance(views):
    # 8 training photos, tiny polygons: a trained model ranks the true photo well above chance (1/8)
    seed_everything(0)
    model = build_triplet("cnn", width=8, depth=2, embed_dim=16)
    res = Trainer(model, views["train"], None, {"train": views["train"]},
                  _config(steps=150, eval_every=150)).fit()
    assert res.history["train/acc_at_1"].iloc[-1] > 2 / 8


class Crash(Exception):
    pass


def _crash_at(k):
    def cb(trainer, step, loss):
        if step == k:
            raise Crash(f"interrupted at step {k}")
    return cb


def test_kill_and_resume_equals_uninterrupted(views, tmp_path):
    full = Trainer(_model(), views["train"], views["val"], {"test": views["test"]}, _config())
    ref = full.fit()
    cfg = _config(checkpoint_dir=str(tmp_path / "ck"), checkpoint_every=4)
    first = Trainer(_model(), views["train"], views["val"], {"test": views["test"]}, cfg, [_crash_at(11)])
    with pytest.raises(Crash):
        first.fit()
    # a new process would start from a fresh model: initialise one with another seed to prove nothing leaks
    torch.manual_seed(123)
    second = Trainer(_model(seed=99), views["train"], views["val"], {"test": views["test"]}, cfg)
    assert second.load_checkpoint() and second.step == 8
    second = Trainer(_model(seed=99), views["train"], views["val"], {"test": views["test"]}, cfg)
    res = second.fit()
    w_ref, w_res = full.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(w_ref[k], w_res[k]) for k in w_ref)
    assert res.history.equals(ref.history)
    assert res.val_selected == ref.val_selected and res.best_on_test == ref.best_on_test
    assert all(torch.equal(ref.best_state[k], res.best_state[k]) for k in ref.best_state)


def test_checkpoint_is_plain_data_and_checks_its_config(views, tmp_path):
    cfg = _config(steps=5, checkpoint_dir=str(tmp_path))
    Trainer(_model(), views["train"], None, {"test": views["test"]}, cfg).fit()
    state = torch.load(tmp_path / "last.pt", weights_only=True)  # refuses anything that could run code
    assert state["step"] == 5 and "optimizer" in state and "generator" in state
    other = Trainer(_model(), views["train"], None, {"test": views["test"]}, cfg.replace(lr=1e-2))
    with pytest.raises(TrainError, match="another configuration"):
        other.fit()


def test_mean_ci_matches_the_t_interval():
    m, lo, hi = mean_ci([0.2, 0.3, 0.4])
    # t(0.975, 2) = 4.302653; sd = 0.1; half = 4.302653 * 0.1 / sqrt(3)
    assert m == pytest.approx(0.3) and hi - m == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert m - lo == pytest.approx(hi - m)
    assert math.isnan(mean_ci([0.5])[1])


def test_run_seeds_rows(views):
    res = run_seeds(lambda: build_triplet("cnn", width=4, depth=2, embed_dim=8), views["train"], views["val"],
                    {"test": views["test"]}, _config(steps=5, eval_every=5), seeds=[0, 1, 2])
    summ = res.summary()
    row = summ[(summ.protocol == PROTOCOL_VAL) & (summ.split == "test") & (summ.metric == "acc_at_1")].iloc[0]
    per_seed = [r.val_selected["test"]["acc_at_1"] for r in res.runs]
    assert row.n == 3 and row["mean"] == pytest.approx(np.mean(per_seed))
    rows = res.rows("tiny", "triplet")
    from sbir_core.results import metric_rows

    df = metric_rows("04_triplet_baseline", rows)
    assert set(df["seed"]) == {-1, 0, 1, 2}
    assert {"acc_at_1", "acc_at_1_ci95_lo", "acc_at_1_ci95_hi"} <= set(df["metric"])
    assert len(res.histories()) == 3


def test_with_seed_summary_adds_mean_and_interval():
    from sbir_core.train import with_seed_summary

    base = dict(dataset="d", method="m", protocol=PROTOCOL_VAL, split="s", metric="acc_at_1")
    rows = with_seed_summary([dict(base, value=v, seed=i) for i, v in enumerate([0.2, 0.3, 0.4])])
    summ = {r["metric"]: r["value"] for r in rows if r["seed"] == -1}
    assert summ["acc_at_1"] == pytest.approx(0.3)
    assert (summ["acc_at_1_ci95_lo"], summ["acc_at_1_ci95_hi"]) == pytest.approx(mean_ci([0.2, 0.3, 0.4])[1:])
    single = with_seed_summary([dict(base, value=0.5, seed=0)])
    assert [r["metric"] for r in single if r["seed"] == -1] == ["acc_at_1"]  # no interval from one seed


def test_evaluate_states_and_top_k_use_the_selected_weights(views):
    from sbir_core.train import evaluate_states, top_k

    build = lambda: build_triplet("cnn", width=4, depth=2, embed_dim=8)  # noqa: E731
    res = run_seeds(build, views["train"], views["val"], {"test": views["test"]},
                    _config(steps=10, eval_every=5), seeds=[0, 1])
    rows = evaluate_states(build, res, {"test": views["test"]}, (1,), "tiny", "triplet")
    for run, row in zip(res.runs, rows):
        # re-evaluating the val-selected weights gives the recorded val-selected test figure
        assert row["value"] == pytest.approx(run.val_selected["test"]["acc_at_1"])
    model = build()
    model.load_state_dict(res.runs[0].best_state)
    near = top_k(model, views["test"], 2)
    ranks = evaluate(model, views["test"], (1,))["ranks"]
    assert near.shape == (len(views["test"]), 2)
    target = views["test"].target.numpy()
    # rank r (ties against) means at most r - 1 other items are as near: the target is in any top r
    assert (near[ranks == 1, 0] == target[ranks == 1]).all()
    assert ((near == target[:, None]).any(1)[ranks <= 2]).all()
    assert (ranks <= 2).any()


def test_bench_train_reports_rates(monkeypatch, capsys):
    import sbir_core.bench.train as B

    small = B.matmul_gflops
    monkeypatch.setattr(B, "matmul_gflops", lambda: small(n=256, repeats=2, rounds=1))
    assert B.main(["--quick", "--size", "16", "--batch", "4", "--steps", "2", "--width", "4"]) == 0
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and "images/s" in out and "50% target" in out
    r = B.train_step_rate(B.CNNConfig(width=4, depth=2), 16, 4, steps=2, warmup=1)
    assert r["images_per_s"] > 0 and r["gflops"] == pytest.approx(r["train_mflop_per_image"] * r["images_per_s"] / 1e3)


def test_evaluate_states_labels_runs_without_validation(views):
    from sbir_core.train import evaluate_states

    build = lambda: build_triplet("cnn", width=4, depth=2, embed_dim=8)  # noqa: E731
    res = run_seeds(build, views["train"], None, {"test": views["test"]}, _config(steps=4, eval_every=2), seeds=[0])
    rows = evaluate_states(build, res, {"test": views["test"]}, (1,), "tiny", "triplet")
    assert {r["protocol"] for r in rows} == {"last_step"}
