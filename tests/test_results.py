"""Result files: tidy rows, atomic writes, parameters and environment."""

import json

import pytest
import yaml

from sbir_core import results as R


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path))
    return tmp_path


def rows(value=0.5):
    return [
        {
            "dataset": "d",
            "method": "m",
            "protocol": "p",
            "split": "test",
            "metric": "acc_at_1",
            "value": value,
            "seed": 0,
        },
        {"dataset": "d", "method": "m", "protocol": "p", "split": "test", "metric": "acc_at_10", "value": 0.9},
    ]


def test_metric_rows_fills_chapter_and_seed():
    df = R.metric_rows("99_x", rows())
    assert list(df.columns) == R.COLUMNS
    assert df["seed"].tolist() == [0, -1]
    assert (df["chapter"] == "99_x").all()


def test_metric_rows_refuses_duplicates_and_missing_columns():
    with pytest.raises(ValueError, match="duplicate"):
        R.metric_rows("99_x", rows() + rows()[:1])
    with pytest.raises(ValueError, match="lack"):
        R.metric_rows("99_x", [{"dataset": "d", "value": 1.0}])


def test_save_results_writes_three_files_and_replaces(results_dir):
    params = {"SEED": 0, "SIZES": (1, 2)}
    out = R.save_results("99_x", "ci", R.metric_rows("99_x", rows(0.5)), params)
    assert sorted(p.name for p in out.iterdir()) == ["env.json", "metrics.csv", "params.yaml"]
    assert yaml.safe_load((out / "params.yaml").read_text()) == {"SEED": 0, "SIZES": [1, 2]}
    assert json.loads((out / "env.json").read_text())["threads"] >= 1
    cpu = json.loads((out / "env.json").read_text())["cpu"]  # the CPU its trained numbers depend on (book.recordings)
    assert cpu == R.cpu() and cpu.endswith(")") and not cpu.startswith("(")
    R.save_results("99_x", "ci", R.metric_rows("99_x", rows(0.25)), params)
    df = R.load_metrics("ci", "99_x")
    assert sorted(df["value"]) == [0.25, 0.9]
    assert not [
        p for p in (results_dir / "ci").iterdir() if p.name.startswith(".") and p.is_dir()
    ]  # the lock file stays


def test_same_metrics_give_identical_bytes(results_dir):
    R.save_results("99_x", "ci", R.metric_rows("99_x", rows(1 / 3)), {})
    first = (results_dir / "ci" / "99_x" / "metrics.csv").read_bytes()
    R.save_results("99_x", "ci", R.metric_rows("99_x", rows(1 / 3)), {})
    assert (results_dir / "ci" / "99_x" / "metrics.csv").read_bytes() == first


def test_failed_write_keeps_previous_results(results_dir, monkeypatch):
    R.save_results("99_x", "ci", R.metric_rows("99_x", rows(0.5)), {})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(R, "environment", boom)
    with pytest.raises(OSError):
        R.save_results("99_x", "ci", R.metric_rows("99_x", rows(0.1)), {})
    assert 0.5 in R.load_metrics("ci", "99_x")["value"].tolist()


def test_bad_scale_is_refused():
    with pytest.raises(ValueError, match="scale"):
        R.chapter_dir("01_x", "huge")


def test_metric_rows_accepts_no_rows():
    df = R.metric_rows("99_x", [])
    assert list(df.columns) == R.COLUMNS and len(df) == 0
