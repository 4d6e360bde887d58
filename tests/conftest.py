"""Shared test setup: pinned threads, a data root when the real data is present."""

import os
from pathlib import Path

import pytest

from sbir_core.repro import set_threads

set_threads(2)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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

    views = P._views(load_params("04_triplet_baseline", "ci"))
    spec = MethodSpec("triplet_sn", {"encoder": "cnn", "width": 8, "depth": 3, "embed_dim": 32})
    run = train_run(spec, views.train, None, None, TrainConfig(steps=40, eval_every=40, progress=False), 0, store=False)
    m = spec.build()
    m.load_state_dict(run.best_state)
    return P.Engine(m, "test_small_triplet", 32, 1.5, "small Triplet-SN", views)
