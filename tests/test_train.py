"""The trainer: config, seeding, model selection, checkpoints that know their run, exact resume, the store."""

import json
import warnings

import numpy as np
import pytest
import torch
from test_views import tiny_data

from sbir_core.data.views import fg_view
from sbir_core.evaluation import evaluate
from sbir_core.models.base import MethodSpec
from sbir_core.models.triplet import build_triplet
from sbir_core.repro import seed_everything
from sbir_core.train import (
    PROTOCOL_VAL,
    RunResult,
    TrainConfig,
    Trainer,
    TrainError,
    fingerprint,
    run_identity,
    train_seeds,
)


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


@pytest.fixture(autouse=True)
def _store(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_STORE", str(tmp_path / "store"))


SPEC = MethodSpec("triplet_sn", {"encoder": "cnn", "width": 8, "depth": 2, "embed_dim": 16})


def _model(seed=0):
    seed_everything(seed)
    return SPEC.build()


def _config(**kw):
    base = dict(steps=20, batch_size=8, lr=3e-3, eval_every=5, progress=False, seed=0)
    return TrainConfig(**{**base, **kw})


def _trainer(views, cfg, model=None, callbacks=(), tests=True):
    tests = {"test": views["test"]} if tests else None
    ident = run_identity(SPEC, views["train"], views["val"], tests, cfg)
    return Trainer(model or _model(), views["train"], views["val"], tests, cfg, ident, callbacks)


def test_config_from_dict():
    c = TrainConfig.from_dict({"steps": 7, "OPTIMIZER": "adamw", "ks": [1, 5]})
    assert c.steps == 7 and c.optimizer == "adamw" and c.ks == (1, 5) and c.batch_size == 32
    with pytest.raises(TrainError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(TrainError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(TrainError, match="lr"):
        TrainConfig(lr=float("nan"))


def test_same_seed_same_run_and_both_protocols(views):
    runs = []
    for _ in range(2):
        tr = _trainer(views, _config())
        runs.append((tr.fit(), tr.method.state_dict()))
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
    assert r1.protocol == PROTOCOL_VAL


def test_selection_picks_the_earliest_best_validation_step(views):
    tr = _trainer(views, _config())
    tr.fit()
    h = tr.result().history
    # rewrite the history so that steps 10 and 20 tie on val Acc@1 and Acc@10: the earlier one wins
    tr.history = [
        dict(r, **{"val/acc_at_1": 0.5 if r["step"] in (10, 20) else 0.1, "val/acc_at_10": 0.9})
        for r in h.to_dict("records")
    ]
    tr.best_key = ()
    for rec in tr.history:
        key = (rec["val/acc_at_1"], rec["val/acc_at_10"], -rec["step"])
        if not tr.best_key or key > tr.best_key:
            tr.best_key = key
    assert tr.result().val_selected["step"] == 10


def test_training_beats_chance_and_the_untrained_encoder(views):
    # 8 training photos of one category, tiny polygons: knowing the category is worth nothing here, and
    # an untrained encoder already sorts polygons by size; training must do better than both
    seed_everything(0)
    model = build_triplet("cnn", width=8, depth=2, embed_dim=16)
    untrained = evaluate(model.eval(), views["train"]).metrics["acc_at_1"]
    assert views["train"].category_oracle(1) == views["train"].chance(1) == 1 / 8
    res = Trainer(model, views["train"], None, {"train": views["train"]}, _config(steps=150, eval_every=150)).fit()
    trained = res.history["train/acc_at_1"].iloc[-1]
    assert trained > 2 / 8 and trained >= untrained + 2 / len(views["train"])


class Crash(Exception):
    pass


def _crash_at(k):
    def cb(trainer, step, loss):
        if step == k:
            raise Crash(f"interrupted at step {k}")

    return cb


def test_kill_and_resume_equals_uninterrupted(views, tmp_path):
    full = _trainer(views, _config())
    ref = full.fit()
    cfg = _config(checkpoint_dir=str(tmp_path / "ck"), checkpoint_every=4)
    first = _trainer(views, cfg, callbacks=[_crash_at(11)])
    with pytest.raises(Crash):
        first.fit()
    # a new process would start from a fresh model: initialise one with another seed to prove nothing leaks
    torch.manual_seed(123)
    second = _trainer(views, cfg, model=_model(seed=99))
    assert second.load_checkpoint() and second.step == 8
    second = _trainer(views, cfg, model=_model(seed=99))
    res = second.fit()
    w_ref, w_res = full.method.state_dict(), second.method.state_dict()
    assert all(torch.equal(w_ref[k], w_res[k]) for k in w_ref)
    assert res.history.equals(ref.history)
    assert res.val_selected == ref.val_selected and res.best_on_test == ref.best_on_test
    assert all(torch.equal(ref.best_state[k], res.best_state[k]) for k in ref.best_state)


def test_checkpoints_are_plain_data_in_their_runs_folder(views, tmp_path):
    cfg = _config(steps=10, checkpoint_dir=str(tmp_path))
    tr = _trainer(views, cfg)
    tr.fit()
    folder = tmp_path / tr.fingerprint
    kept = sorted(p.name for p in folder.glob("step_*.pt"))
    assert kept == ["step_00000005.pt", "step_00000010.pt"]
    state = torch.load(folder / kept[-1], weights_only=True)  # refuses anything that could run code
    assert state["step"] == 10 and state["fingerprint"] == tr.fingerprint
    meta = json.loads((folder / "step_00000010.json").read_text())
    assert meta["identity"]["config"]["lr"] == cfg.lr and len(meta["sha256"]) == 64


def test_changed_parameters_start_fresh_in_another_folder(views, tmp_path):
    """A chapter rerun in a used checkpoint folder with other parameters never resumes the old run."""
    cfg = _config(steps=10, checkpoint_dir=str(tmp_path))
    a = _trainer(views, cfg)
    a.fit()
    b = _trainer(views, cfg.replace(lr=1e-2))
    assert b.run_dir != a.run_dir and not b.load_checkpoint()
    assert b.fit().history["step"].tolist() == [5, 10]  # trained from step 0


def test_resuming_another_runs_checkpoint_names_the_fields(views, tmp_path):
    cfg = _config(steps=10, checkpoint_dir=str(tmp_path))
    a = _trainer(views, cfg)
    a.fit()
    other = _trainer(views, cfg.replace(lr=1e-2, steps=12))
    with pytest.raises(TrainError, match=r"another run.*config\.lr.*config\.steps"):
        other.load_checkpoint(a.run_dir)


def test_a_damaged_checkpoint_is_reported_set_aside_and_the_older_one_used(views, tmp_path):
    cfg = _config(steps=10, checkpoint_dir=str(tmp_path))
    tr = _trainer(views, cfg)
    tr.fit()
    newest = tr.run_dir / "step_00000010.pt"
    raw = bytearray(newest.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 16] = bytes(b ^ 0xFF for b in raw[mid : mid + 16])  # flip 16 bytes (zeroing may change nothing)
    newest.write_bytes(bytes(raw))
    again = _trainer(views, cfg)
    with pytest.warns(RuntimeWarning, match=r"step_00000010\.pt is damaged.*SHA-256"):
        assert again.load_checkpoint()
    assert again.step == 5 and (tr.run_dir / "step_00000010.pt.corrupt").exists()
    # a truncated checkpoint is set aside too, naming its path
    (tr.run_dir / "step_00000005.pt").write_bytes(b"PK\x03\x04")
    third = _trainer(views, cfg)
    with pytest.warns(RuntimeWarning, match=r"step_00000005\.pt is damaged"):
        assert not third.load_checkpoint()
    assert third.fit().history["step"].tolist() == [5, 10]


def test_store_trains_once_and_reloads(views):
    cfg = _config(steps=10)
    tests = {"test": views["test"]}
    first = train_seeds(SPEC, views["train"], views["val"], tests, cfg, [0, 1])
    from sbir_core import store

    assert len(store.entries()) == 2
    again = train_seeds(SPEC, views["train"], views["val"], tests, cfg, [0, 1])
    for a, b in zip(first.runs, again.runs):
        assert a.fingerprint == b.fingerprint and a.history.equals(b.history)
        assert all(torch.equal(a.best_state[k], b.best_state[k]) for k in a.best_state)
    # a rebuilt method with the stored weights gives the recorded val-selected test figure
    model = again.methods(SPEC)[0]
    assert evaluate(model, views["test"], (1,)).metrics["acc_at_1"] == pytest.approx(
        first.runs[0].val_selected["test"]["acc_at_1"]
    )
    # another config is another entry
    train_seeds(SPEC, views["train"], views["val"], tests, cfg.replace(lr=1e-2), [0])
    assert len(store.entries()) == 3


def test_a_damaged_store_entry_is_retrained(views):
    from sbir_core import store

    cfg = _config(steps=5)
    run = train_seeds(SPEC, views["train"], views["val"], None, cfg, [0]).runs[0]
    path = store.root() / f"{run.fingerprint}.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="unusable"):
        again = train_seeds(SPEC, views["train"], views["val"], None, cfg, [0]).runs[0]
    assert again.history.equals(run.history)


def test_identity_follows_data_config_and_method(views):
    cfg = _config()
    base = fingerprint(run_identity(SPEC, views["train"], views["val"], None, cfg))
    assert fingerprint(run_identity(SPEC, views["train"], views["val"], None, cfg.replace(progress=True))) == base
    assert fingerprint(run_identity(SPEC, views["train"], views["val"], None, cfg.replace(seed=1))) != base
    assert fingerprint(run_identity(SPEC, views["val"], views["val"], None, cfg)) != base
    other = MethodSpec("triplet_sn", dict(SPEC.options, margin=0.3))
    assert fingerprint(run_identity(other, views["train"], views["val"], None, cfg)) != base


def test_identity_covers_the_code_that_computes_the_numbers():
    """The store key's code digest reads every package module a run executes: the evaluation and metric code,
    the seeding, the data-parallel sums, and what those import, not only the method and trainer modules."""
    from sbir_core.runs import code_closure

    closure = set(code_closure(SPEC.sources()))
    needed = {"sbir_core.evaluation", "sbir_core.metrics", "sbir_core.distributed", "sbir_core.repro", "sbir_core.runs"}
    assert needed <= closure, needed - closure
    # a method built on a sibling model reads that model's code too
    assert "sbir_core.models.triplet" in code_closure(MethodSpec("adaptive_fgsbir", {}).sources())


def test_changed_metric_code_retrains_instead_of_reading_the_store(views, monkeypatch, tmp_path):
    import sbir_core.runs as R
    from sbir_core import store

    cfg = _config(steps=5)
    first = train_seeds(SPEC, views["train"], views["val"], None, cfg, [0]).runs[0]
    assert store.load(first.fingerprint) is not None
    # the metric module's source, changed by one line (how Acc@K is computed, say)
    changed = tmp_path / "metrics.py"
    changed.write_text(R._module_file("sbir_core.metrics").read_text() + "\n# changed\n")
    real = R._module_file
    monkeypatch.setattr(R, "_module_file", lambda name: changed if name == "sbir_core.metrics" else real(name))
    fits = []
    monkeypatch.setattr(Trainer, "fit", lambda self, *a, _fit=Trainer.fit, **k: fits.append(1) or _fit(self, *a, **k))
    again = train_seeds(SPEC, views["train"], views["val"], None, cfg, [0]).runs[0]
    assert fits == [1] and again.fingerprint != first.fingerprint  # trained, and stored under another key
    assert len(store.entries()) == 2


def test_process_count_is_part_of_the_store_key_not_of_the_checkpoint(views, monkeypatch, tmp_path):
    """A 2-process run's weights differ from a 1-process run's (the shards' sums round differently): another
    store entry. Its checkpoints hold the global state, which any process count continues: the same folder."""
    from sbir_core import distributed as D

    cfg = _config(checkpoint_dir=str(tmp_path / "ckpt"))
    one = _trainer(views, cfg)
    monkeypatch.setattr(D, "context", lambda: D.Context(0, 2))
    two = _trainer(views, cfg)
    assert one.identity["processes"] == 1 and two.identity["processes"] == 2
    assert fingerprint(one.identity) != fingerprint(two.identity)
    assert one.run_dir == two.run_dir


def test_a_trainer_without_identity_never_resumes_another_experiments_checkpoint(views, tmp_path):
    """Built as the module docstring shows (no identity), a trainer proves a checkpoint is its own by the
    method's code and initial parameters, the views and the config; another experiment's is not resumed."""
    cfg = _config(steps=10, checkpoint_dir=str(tmp_path / "ckpt"))
    done = Trainer(_model(0), views["train"], views["val"], None, cfg)
    done.fit()
    assert done.saved > 0
    same = Trainer(_model(0), views["train"], views["val"], None, cfg)
    assert same.load_checkpoint() and same.step == 10  # its own run: resumed
    for other in (
        Trainer(_model(1), views["train"], views["val"], None, cfg),  # another seed's initial parameters
        Trainer(_model(0), views["val"], views["val"], None, cfg),  # other training data
    ):
        assert other.run_dir != done.run_dir and not other.load_checkpoint() and other.step == 0


def test_run_result_round_trip(views):
    res = _trainer(views, _config(steps=5)).fit()
    back = RunResult.from_plain(res.to_plain())
    assert back.history.equals(res.history) and back.val_selected == res.val_selected


def test_bench_train_reports_rates(monkeypatch, capsys):
    import sbir_core.bench.train as B

    small = B.matmul_gflops
    monkeypatch.setattr(B, "matmul_gflops", lambda: small(n=256, repeats=2, rounds=1))
    assert B.main(["--quick", "--size", "16", "--batch", "4", "--steps", "2", "--width", "4"]) == 0
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and "images/s" in out and "50% target" in out
    r = B.train_step_rate(B.CNNConfig(width=4, depth=2), 16, 4, steps=2, warmup=1)
    assert r["images_per_s"] > 0 and r["gflops"] == pytest.approx(r["train_mflop_per_image"] * r["images_per_s"] / 1e3)


def test_no_validation_keeps_the_last_step(views):
    res = Trainer(_model(), views["train"], None, {"test": views["test"]}, _config(steps=4, eval_every=2)).fit()
    assert res.protocol == "last_step" and res.val_selected == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_equal(len(res.history), 2)


def test_step_cost_counts_the_examples_an_update_reads_and_times_it(views):
    """The budget of one update, for stating compared arms' budgets: a triplet batch of B reads 3B embeddings
    (sketch, photo, negative), and its wall time is positive."""
    from sbir_core.train import _examples, step_cost

    cost = step_cost(SPEC, views["train"], _config(batch_size=6), steps=2)
    assert cost["examples"] == 3 * 6 and cost["seconds"] > 0
    assert _examples({"tasks": [{"s1": torch.zeros(4, 2), "photo": torch.zeros(4, 2), "idx": torch.zeros(4)}]}) == 8
    with pytest.raises(TrainError, match="steps"):
        step_cost(SPEC, views["train"], _config(), steps=0)
