"""Shared test setup: pinned threads, a data root when the real data is present."""

import gc
import os
import sys
from pathlib import Path

import pytest

from sbir_core.repro import set_threads

set_threads()  # the one count of every chapter (repro.DEFAULT_THREADS)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# How ``make test`` shares the tests between its workers (``pytest -n 2 --dist loadfile --no-loadscope-reorder``):
# each module runs whole on one worker, so that its module fixtures are set up once (the browser tests' trained
# model and served page among them), and the modules go out in the order below. xdist's start (its
# LoadScopeScheduling): the first module to the first worker, the second to the second, and then the next one to
# every worker with two tests or fewer queued. The paper smoke's module (the longest test of all: ~10 minutes,
# one chapter at a time on its worker's core, and nothing else; the bare releases' smoke is a module of its own, so
# that the other worker takes it) comes first, so its worker is handed the third module at
# once: a module of many quick tests, so that nothing long waits behind the smoke. The second module, the other
# worker's first, is the longest of the rest, and the others follow longest first, so that the last ones, which
# decide when both workers are done, are short. (Stop 45 had the quick module second: the browser tests, third,
# went behind the smoke and started only when it ended, 2.5 minutes that no other test ran beside.)
SMOKE = "test_smoke.py"
BEHIND_SMOKE = "test_metrics.py"
LONGEST = (
    "test_browser.py",
    "test_distributed.py",
    "test_book.py",
    "test_bench_book.py",
    "test_stats.py",
    "test_bare_releases.py",
)
ORDER = (SMOKE, LONGEST[0], BEHIND_SMOKE, *LONGEST[1:])


def pytest_collection_modifyitems(config, items):
    # stable: the order within each module is kept (the smoke's own module starts with the paper smoke)
    items.sort(key=lambda item: ORDER.index(item.path.name) if item.path.name in ORDER else len(ORDER))


@pytest.fixture(autouse=True, scope="module")
def _release_benches():
    """After each test module, the process lets go of the style-world benches, views and runs it cached
    (``recipes.bench``, ``playground._setup`` and ``_views``, one per parameter set): a module's own overrides
    (steps, seeds) make a bench of their own, and a test process that ran several such modules held each one's
    world, views and features (four such modules in one process: 3.2 GB peak, 2.4 GB with this). The next
    module reads them from the disk cache."""
    yield
    recipes, playground = sys.modules.get("sbir_core.recipes"), sys.modules.get("sbir_core.playground")
    if recipes is not None:
        recipes._BENCHES.clear()
    if playground is not None:
        playground._SETUPS.clear()
        playground._VIEWS.clear()
    gc.collect()


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real-data root ($SBIR_DATA, else ../shared/data); tests that need it skip when absent."""
    root = Path(os.environ.get("SBIR_DATA", SHARED_DATA))
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set SBIR_DATA)")
    return root


@pytest.fixture(scope="session")
def small_triplet_engine():
    """A small Triplet-SN trained 40 steps on the ci style world, as a playground Engine (the playground's and
    the widgets' tests). An untrained encoder puts all items about 1e-6 apart, where float rounding alone
    could reorder them."""
    from sbir_core import playground as P
    from sbir_core.book import load_params
    from sbir_core.models.base import MethodSpec
    from sbir_core.train import TrainConfig, train_run

    p = load_params("04_triplet_baseline", "ci")
    views = P._views(p)
    spec = MethodSpec("triplet_sn", {"encoder": "cnn", "width": 8, "depth": 3, "embed_dim": 32})
    run = train_run(spec, views.train, None, None, TrainConfig(steps=40, eval_every=40, progress=False), 0, store=False)
    m = spec.build()
    m.load_state_dict(run.best_state)
    return P.Engine(m, "test_small_triplet", p["IMAGE_SIZE"], p["LINE_WIDTH"], "small Triplet-SN", views)


def image_adaptive(p: dict, **options):
    """A small Adaptive FG-SBIR that reads images as chapter 7's does at ci: chapter 4's frozen trunk, then F and M
    (``playground.OnImages``); ``p``: chapter 4's parameters."""
    from sbir_core import playground as P
    from sbir_core.features import trunk
    from sbir_core.models.adaptive import AdaptiveFGSBIR
    from sbir_core.models.trunk import TrunkSpec

    spec = TrunkSpec.of(p["TRUNK"])
    head = {"in_dim": trunk(spec).dim, "hidden": 32, "embed_dim": 16, "dropout": 0.0}
    return P.OnImages(AdaptiveFGSBIR(encoder_options=head, **options), spec)


def distinct_targets(gallery, n: int = 3) -> list:
    """The first ``n`` sketches to copy of ``gallery`` whose photos all differ."""
    out, seen = [], set()
    for t in gallery.targets:
        if t.index not in seen:
            out.append(t)
            seen.add(t.index)
        if len(out) == n:
            return out
    raise AssertionError(f"gallery {gallery.name} has fewer than {n} photos with a sketch to copy")
