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
