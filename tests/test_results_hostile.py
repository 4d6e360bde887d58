"""Results and check under broken files, killed saves and concurrent writers."""

import multiprocessing as mp
import os

import pandas as pd
import pytest
from test_book import expected_frame, fresh_frame

from sbir_core import book
from sbir_core import results as R


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_a_killed_saves_temporary_folder_is_never_read_and_is_cleaned(runs, tmp_path, capsys):
    R.save_results("99_x", "ci", fresh_frame(0.5), {})
    stale = runs / "ci" / ".99_x.abc123"  # what a save killed between writing and swapping leaves
    stale.mkdir()
    fresh_frame(0.9).to_csv(stale / "metrics.csv", index=False)
    assert R.load_metrics("ci")["value"].tolist() == [0.5]
    path = tmp_path / "expected.csv"
    expected_frame(0.5, 0.01).to_csv(path, index=False)
    assert book.check(path) == 0
    R.save_results("99_x", "ci", fresh_frame(0.5), {})
    assert not stale.exists()


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "not a readable table"),
        ("chapter,dataset\n", "missing columns"),
        (None, "no rows"),
        ('\x00\x01\x02garbage"\n"', "not a readable table|missing columns"),
    ],
)
def test_check_refuses_broken_expected_files_naming_them(runs, tmp_path, capsys, content, match):
    path = tmp_path / "expected.csv"
    if content is None:
        expected_frame().iloc[0:0].to_csv(path, index=False)
    else:
        path.write_text(content)
    R.save_results("99_x", "ci", fresh_frame(0.5), {})
    assert book.check(path) == 1
    out = capsys.readouterr().out
    assert str(path) in out
    with pytest.raises(R.ResultsError, match=match):
        book.load_expected(path)


@pytest.mark.parametrize("tol", ["nan", "inf", "-inf", "-0.1", "abc", ""])
def test_check_refuses_bad_tolerances_naming_file_and_line(runs, tmp_path, tol):
    path = tmp_path / "expected.csv"
    frame = pd.concat([expected_frame(), expected_frame().assign(metric="acc_at_10")], ignore_index=True)
    frame["tol"] = frame["tol"].astype(object)
    frame.loc[1, "tol"] = tol
    frame.to_csv(path, index=False)
    with pytest.raises(R.ResultsError, match=rf"{path.name}, line 3"):
        book.load_expected(path)


@pytest.mark.parametrize("content", ["", "chapter,value\n99_x,0.5\n", 'a,b\n1,2,3,4\n"unterminated', None])
def test_corrupt_metrics_file_is_an_error_naming_it(runs, content):
    R.save_results("99_x", "ci", fresh_frame(0.5), {})
    path = runs / "ci" / "99_x" / "metrics.csv"
    if content is None:
        text = path.read_text().splitlines()
        path.write_text("\n".join(text[:1] + [text[1].rsplit(",", 1)[0] + ",zero"]) + "\n")  # seed not a number
    else:
        path.write_text(content)
    with pytest.raises(R.ResultsError, match=str(path)):
        R.load_metrics("ci")


def _saver(args):
    root, worker, n = args
    os.environ["SBIR_RESULTS"] = root
    for i in range(n):
        R.save_results("99_x", "ci", fresh_frame(worker + i / 1000), {"worker": worker})
        book.record_timing("ci", f"ch_{worker}_{i}", 1.0, "ok")
    return worker


def test_concurrent_writers_lose_nothing(runs):
    n = 25
    with mp.get_context("spawn").Pool(2) as pool:
        assert sorted(pool.map(_saver, [(str(runs), w, n) for w in (1, 2)])) == [1, 2]
    timings = pd.read_csv(runs / "ci" / "timings.csv")
    assert len(timings) == 2 * n and set(timings["chapter"]) == {f"ch_{w}_{i}" for w in (1, 2) for i in range(n)}
    value = R.load_metrics("ci")["value"].tolist()
    assert len(value) == 1 and value[0] in {w + (n - 1) / 1000 for w in (1, 2)}  # one whole save won
    assert not [p for p in (runs / "ci").iterdir() if p.is_dir() and p.name.startswith(".")]
