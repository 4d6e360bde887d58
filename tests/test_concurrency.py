"""Processes side by side (``book run --jobs``): a cache file is computed once and a run is trained once, the
later asker waiting and loading it; a trained run leaves its caller's random state as a store hit does."""

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

CACHE_CHILD = """
import sys, time
import numpy as np
from sbir_core.cache import cached_arrays

def compute():
    with open(sys.argv[2], "a") as f:
        f.write("computed\\n")
    time.sleep(3)  # long enough for the other process to ask meanwhile
    return {"x": np.arange(5)}

print(cached_arrays(sys.argv[1], compute)["x"].tolist())
"""

STORE_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from test_train import SPEC, _config
from test_views import tiny_data
from sbir_core import train as T
from sbir_core.data.views import fg_view
from sbir_core.repro import set_threads

set_threads(1)
fit = T.Trainer.fit

def counted(self):
    with open(sys.argv[1], "a") as f:
        f.write("trained\\n")
    time.sleep(3)  # long enough for the other process to ask for the same run meanwhile
    return fit(self)

T.Trainer.fit = counted
data = tiny_data()
views = {s: fg_view(data, s, size=16) for s in ("train", "val")}
run = T.train_run(SPEC, views["train"], views["val"], None, _config(steps=10), seed=0)
print(json.dumps({"key": run.fingerprint, "loss": run.history["loss"].tolist()}))
"""


def _side_by_side(code: str, args: list[str], env: dict) -> list[str]:
    """Start two Python processes running ``code`` with ``args`` at once; their standard outputs."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-3000:]
        outs.append(out.strip().splitlines()[-1])
    return outs


def _env(tmp_path) -> dict:
    return {**os.environ, "SBIR_CACHE": str(tmp_path / "cache"), "SBIR_STORE": str(tmp_path / "store")}


def test_two_processes_compute_one_cache_file_once(tmp_path):
    counter = tmp_path / "computed.txt"
    outs = _side_by_side(CACHE_CHILD, [str(tmp_path / "x.npz"), str(counter)], _env(tmp_path))
    assert outs == ["[0, 1, 2, 3, 4]"] * 2
    assert counter.read_text().splitlines() == ["computed"]


def test_two_processes_asking_for_one_run_train_it_once(tmp_path):
    counter = tmp_path / "trained.txt"
    outs = [json.loads(o) for o in _side_by_side(STORE_CHILD, [str(counter), str(REPO / "tests")], _env(tmp_path))]
    assert counter.read_text().splitlines() == ["trained"]
    assert outs[0] == outs[1]  # the one that waited loaded the other's run


def test_a_trained_run_leaves_the_random_state_as_a_store_hit_does(tmp_path, monkeypatch):
    from test_train import SPEC, _config
    from test_views import tiny_data

    from sbir_core.data.views import fg_view
    from sbir_core.repro import seed_everything
    from sbir_core.train import train_run

    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SBIR_STORE", str(tmp_path / "store"))
    view = fg_view(tiny_data(), "train", size=16)

    def draws(expect_trained: bool):
        seed_everything(5)
        before = len(list((tmp_path / "store").glob("*.pt")))
        train_run(SPEC, view, None, None, _config(steps=5), seed=0)
        assert (len(list((tmp_path / "store").glob("*.pt"))) > before) == expect_trained
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()

    assert draws(expect_trained=True) == draws(expect_trained=False)


def test_a_cache_in_a_folder_without_a_lock_file_is_still_computed(tmp_path, monkeypatch):
    """Where the lock file cannot be made, the cache is computed without it (at worst twice), not refused."""
    from sbir_core import cache

    def refuse(*a, **k):
        raise PermissionError("read-only folder")

    import filelock

    monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
    assert cache.cached_arrays(tmp_path / "y.npz", lambda: {"y": np.ones(2)})["y"].tolist() == [1.0, 1.0]
