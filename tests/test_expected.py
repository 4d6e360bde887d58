"""The committed expected numbers can fail: no learnt score's accepted range holds its trivial value."""

import math

from sbir_core import book


def test_no_expected_row_accepts_its_trivial_value():
    """[value - tol, value + tol] must exclude chance, the category oracle and an untrained encoder;
    otherwise the check of that row passes for a model that learnt nothing."""
    table = book.load_expected()
    assert table["trivial"].notna().sum() >= 10  # the chapters record their trivial rows
    lenient = [f"{r['chapter']} {r['dataset']} {r['method']} {r['setting']} {r['split']} {r['metric']}: "
               f"{r['value']:.4f} ± {r['tol']:.4f} accepts {r['trivial']:.4f}"
               for r in table.to_dict("records")
               if math.isfinite(r["trivial"]) and r["value"] - r["tol"] <= r["trivial"] <= r["value"] + r["tol"]]
    assert lenient == []


def test_real_rows_require_their_dataset():
    """A real dataset's rows name it in ``requires``: without the data they are skipped, and said so."""
    from sbir_core.data.registry import LOADERS

    table = book.load_expected()
    real = table[table["dataset"].isin(set(LOADERS) - {"style_world"})]
    assert len(real) and (real["requires"] == real["dataset"]).all()
