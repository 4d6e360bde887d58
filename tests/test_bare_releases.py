"""The bare releases, as a reader may hold them: ChairV2 and ShoeV2 without photos, Sketchy without its extended
photos, TU-Berlin without photos, through chapter 4's smoke run (``tests/test_smoke.py``'s). A module of its own, so
that ``make test``'s other worker can take it while the paper smoke's runs (tests/conftest.py)."""

import pandas as pd
from test_smoke import FILLED, datasets_of, smoke

from sbir_core.data.fixtures import write_root


def test_the_bare_releases_take_the_photo_less_paths(tmp_path):
    """ChairV2 and ShoeV2 without photos (sketch to sketch), Sketchy without its extended photos, TU-Berlin
    without photos: chapter 4 ranks the photo-less sets sketch to sketch (that every loader reads the bare
    releases is tests/test_fixtures.py's)."""
    out = smoke(tmp_path, write_root(tmp_path / "data", bare=True), "--only", "04_triplet_baseline")
    assert FILLED["04_triplet_baseline"] <= datasets_of(out, "04_triplet_baseline")
    ch4 = pd.read_csv(out / "ci" / "04_triplet_baseline" / "metrics.csv")
    assert (ch4.loc[ch4["dataset"] == "shoev2", "metric"] == "acc_at_1").any()
