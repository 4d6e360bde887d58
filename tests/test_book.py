"""The pipeline: check against expected numbers, failing chapters, byte-identical reruns."""

import os
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sbir_core import book, paths
from sbir_core import results as R

HEADER = textwrap.dedent("""\
    # ---
    # jupyter:
    #   kernelspec:
    #     display_name: Python 3
    #     language: python
    #     name: python3
    # ---
    """)


def expected_frame(value=0.5, tol=0.01, requires=""):
    return pd.DataFrame(
        [
            {
                "chapter": "99_x",
                "dataset": "d",
                "method": "m",
                "protocol": "p",
                "setting": "",
                "split": "test",
                "metric": "acc_at_1",
                "seed": 0,
                "value": value,
                "tol": tol,
                "requires": requires,
                "note": "test",
            }
        ]
    )


def fresh_frame(value):
    return R.metric_rows(
        "99_x",
        [
            {
                "dataset": "d",
                "method": "m",
                "protocol": "p",
                "setting": "",
                "split": "test",
                "metric": "acc_at_1",
                "value": value,
                "seed": 0,
            }
        ],
    )


@pytest.mark.parametrize(
    "fresh, status",
    [(0.5, "ok"), (0.509, "ok"), (0.4911, "ok"), (0.52, "drift"), (0.47, "drift"), (float("nan"), "drift")],
)
def test_compare_uses_the_tolerance(fresh, status):
    table = book.compare(expected_frame(), fresh_frame(fresh))
    assert table["status"].tolist() == [status]


def test_missing_row_is_reported_and_skipped_only_without_data():
    empty = fresh_frame(0.5).iloc[0:0]
    assert book.compare(expected_frame(), empty)["status"].tolist() == ["missing"]
    needs = expected_frame(requires="shoes304")
    assert book.compare(needs, empty, available=lambda n: False)["status"].tolist() == ["skipped"]
    assert book.compare(needs, empty, available=lambda n: True)["status"].tolist() == ["missing"]


def test_check_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path / "runs"))
    path = tmp_path / "expected.csv"
    expected_frame(0.5, 0.01).to_csv(path, index=False)
    assert book.check(path) == 1  # nothing run yet: missing
    R.save_results("99_x", "ci", fresh_frame(0.505), {})
    assert book.check(path) == 0
    R.save_results("99_x", "ci", fresh_frame(0.6), {})
    assert book.check(path) == 1
    out = capsys.readouterr().out
    assert "drift" in out and "0.6" in out


def test_a_chapter_passes_on_the_platform_recording_it_matches_and_says_which(tmp_path, monkeypatch, capsys):
    """Another platform's recording (``expected.<platform>.csv``) checks a chapter whose numbers match it whole;
    a run that matches neither recording fails, and so does one that matches no recording of a chapter it ran."""
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path / "runs"))
    path = tmp_path / "expected.csv"
    expected_frame(0.5, 0.01).to_csv(path, index=False)
    other = expected_frame(0.6, 0.01)
    other_y = other.assign(chapter="98_y")
    pd.concat([other, other_y]).to_csv(tmp_path / "expected.amd-avx512.csv", index=False)
    assert book.recordings(path) == [path, tmp_path / "expected.amd-avx512.csv"]
    R.save_results("99_x", "ci", fresh_frame(0.505), {})
    R.save_results("98_y", "ci", R.metric_rows("98_y", fresh_frame(0.6).to_dict("records")), {})
    capsys.readouterr()
    assert book.check(path) == 0  # 99_x matches the primary, 98_y (only recorded there) the other platform's
    out = capsys.readouterr().out
    assert "98_y (expected.amd-avx512.csv)" in out and "99_x (" not in out
    R.save_results("99_x", "ci", fresh_frame(0.605), {})
    assert book.check(path) == 0  # 99_x now matches the other platform's recording
    assert "99_x (expected.amd-avx512.csv)" in capsys.readouterr().out
    R.save_results("99_x", "ci", fresh_frame(0.55), {})
    assert book.check(path) == 1  # between the two: drift against each
    assert f"this machine's CPU: {R.cpu()}" in capsys.readouterr().out  # to record it under its name
    R.save_results("98_y", "ci", R.metric_rows("98_y", fresh_frame(0.5).to_dict("records")), {})
    R.save_results("99_x", "ci", fresh_frame(0.5), {})
    assert book.check(path) == 1  # 98_y has no recording its 0.5 matches


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A book folder, a table of contents and configs of our own, results in a temporary folder.

    The table of contents lists every ``book/NN_*.py`` of the sandbox at the time ``chapters()`` is called.
    """
    (tmp_path / "book").mkdir()
    (tmp_path / "configs" / "ci").mkdir(parents=True)
    monkeypatch.setattr(book, "BOOK", tmp_path / "book")
    monkeypatch.setattr(paths, "CONFIGS", tmp_path / "configs")
    monkeypatch.setattr(book, "TOC", tmp_path / "_toc.yml")
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path / "runs"))
    real = book.chapters

    def chapters():
        files = sorted(p.stem for p in (tmp_path / "book").glob("[0-9][0-9]_*.py"))
        (tmp_path / "_toc.yml").write_text(
            "format: jb-book\nroot: book/intro\nchapters:\n" + "".join(f"  - file: book/{f}\n" for f in files)
        )
        return real()

    monkeypatch.setattr(book, "chapters", chapters)
    return tmp_path


def ok_chapter(sandbox) -> None:
    """A one-row chapter 98_ok whose VALUE parameter is 0.75 in its ci config."""
    (sandbox / "book" / "98_ok.py").write_text(
        HEADER
        + textwrap.dedent("""\
        # %% tags=["parameters"]
        SCALE = "ci"
        VALUE = 0.0
        # %%
        from sbir_core.results import metric_rows, save_results
        save_results("98_ok", SCALE, metric_rows("98_ok", [dict(dataset="d", method="m", protocol="p",
                     split="s", metric="x", value=VALUE)]), {"VALUE": VALUE})
        """)
    )
    (sandbox / "configs" / "ci" / "98_ok.yaml").write_text("VALUE: 0.75\n")


def test_failing_chapter_is_named_and_other_results_survive(sandbox, capsys):
    ok_chapter(sandbox)
    (sandbox / "book" / "99_bad.py").write_text(
        HEADER
        + textwrap.dedent("""\
        # %% tags=["parameters"]
        SCALE = "ci"
        # %%
        x = 1
        # %%
        raise ZeroDivisionError("planted failure")
        """)
    )
    (sandbox / "configs" / "ci" / "99_bad.yaml").write_text("{}\n")
    R.save_results("99_bad", "ci", fresh_frame(0.5), {})  # an earlier good result of the failing chapter
    assert book.run("ci") == 1
    out = capsys.readouterr().out
    assert "99_bad" in out and "ZeroDivisionError" in out and "planted failure" in out and "cell" in out
    assert R.load_metrics("ci", "98_ok")["value"].tolist() == [0.75]
    assert R.load_metrics("ci", "99_bad")["value"].tolist() == [0.5]
    timings = pd.read_csv(sandbox / "runs" / "ci" / "timings.csv")
    assert dict(zip(timings["chapter"], timings["status"])) == {"98_ok": "ok", "99_bad": "failed"}
    # the failed run's executed cells are kept beside the book, not published as the chapter
    assert (sandbox / "book" / "99_bad.failed.ipynb").exists() and not (sandbox / "book" / "99_bad.ipynb").exists()
    assert "99_bad.failed.ipynb" in out


def test_an_interrupted_chapter_runs_again_and_is_never_published_half_done(sandbox, capsys, monkeypatch):
    """Ctrl-C (or a kill) in the middle of a chapter: its stamp is gone, the book keeps the last complete
    notebook, and the next ``run`` runs the chapter instead of calling it up to date."""
    ok_chapter(sandbox)
    monkeypatch.delenv("SBIR_DATA", raising=False)
    assert book.run("ci") == 0
    notebook = sandbox / "book" / "98_ok.ipynb"
    complete = notebook.read_bytes()
    real = book.execute

    def interrupted(chapter, scale, overrides, output):
        Path(output).write_text('{"cells": ["7 of 9 cells"]}')  # what papermill has written so far
        raise KeyboardInterrupt

    monkeypatch.setattr(book, "execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        book.run("ci", force=True)
    assert notebook.read_bytes() == complete  # never the half-executed one
    assert not (sandbox / "runs" / "ci" / "98_ok" / "stamp.json").exists()
    monkeypatch.setattr(book, "execute", real)
    capsys.readouterr()
    assert book.run("ci") == 0
    assert "done in" in capsys.readouterr().out  # run again, not "up to date"
    assert book.run("ci") == 0
    assert "up to date" in capsys.readouterr().out


def flaky_kernel(root: Path, monkeypatch, fails: int) -> str:
    """A kernel named "flaky" that exits at once on its first ``fails`` starts (as a kernel whose port another
    process took exits), then starts as python3 does; found through JUPYTER_PATH."""
    import json
    import sys

    spec = root / "jupyter" / "kernels" / "flaky"
    spec.mkdir(parents=True)
    starts = root / "starts"
    launcher = spec / "launch.py"
    launcher.write_text(
        textwrap.dedent(f"""\
        import pathlib, runpy, sys
        starts = pathlib.Path({str(starts)!r})
        n = len(starts.read_text()) if starts.exists() else 0
        starts.write_text("x" * (n + 1))
        if n < {fails}:
            sys.exit("zmq.error.ZMQError: Address already in use")
        sys.argv = ["ipykernel_launcher", *sys.argv[1:]]
        runpy.run_module("ipykernel_launcher", run_name="__main__")
        """)
    )
    argv = [sys.executable, str(launcher), "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "flaky", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(root / "jupyter"))
    return "flaky"


def test_a_kernel_that_does_not_start_is_started_again(sandbox, capsys, monkeypatch):
    """Two processes starting kernels at once can hand both the same free port; the loser exits before it
    answers. Nothing of the chapter ran, so it is started again, and the chapter runs once, whole."""
    ok_chapter(sandbox)
    kernel = flaky_kernel(sandbox, monkeypatch, fails=1)
    book.execute("98_ok", "ci", output=sandbox / "book" / "98_ok.ipynb", kernel=kernel)
    assert (sandbox / "starts").read_text() == "xx"
    assert "did not start" in capsys.readouterr().out
    assert R.load_metrics("ci", "98_ok")["value"].tolist() == [0.75]


def test_a_kernel_that_never_starts_fails_its_chapter_by_name(sandbox, monkeypatch):
    ok_chapter(sandbox)
    kernel = flaky_kernel(sandbox, monkeypatch, fails=99)
    with pytest.raises(book.ChapterFailed, match=f"98_ok: its kernel did not start in {book.KERNEL_START_TRIES} tries"):
        book.execute("98_ok", "ci", output=sandbox / "book" / "98_ok.ipynb", kernel=kernel)
    assert len((sandbox / "starts").read_text()) == book.KERNEL_START_TRIES


def test_a_kernel_killed_mid_chapter_fails_that_chapter_only(sandbox, capsys):
    """Out of memory, the kernel is killed: that chapter is reported failed, the others still run (it had ended the
    whole ``run`` with nbclient's traceback)."""
    ok_chapter(sandbox)
    (sandbox / "book" / "97_killed.py").write_text(
        HEADER
        + '# %% tags=["parameters"]\nSCALE = "ci"\n# %%\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n'
    )
    (sandbox / "configs" / "ci" / "97_killed.yaml").write_text("{}\n")
    assert book.run("ci") == 1
    out = capsys.readouterr().out
    assert "97_killed: its kernel died while running" in out and "98_ok done in" in out


def test_an_unsafe_yaml_tag_in_a_config_fails_that_chapter_only(sandbox, capsys):
    (sandbox / "book" / "97_tag.py").write_text(HEADER + '# %% tags=["parameters"]\nSCALE = "ci"\n')
    (sandbox / "book" / "98_ok.py").write_text(HEADER + '# %% tags=["parameters"]\nSCALE = "ci"\n')
    (sandbox / "configs" / "ci" / "97_tag.yaml").write_text('SEED: !!python/object/apply:os.system ["echo no"]\n')
    (sandbox / "configs" / "ci" / "98_ok.yaml").write_text("{}\n")
    assert book.run("ci") == 1
    out = capsys.readouterr().out
    assert "97_tag.yaml" in out and "98_ok done in" in out  # named, and the next chapter still ran


def test_relative_path_variables_are_made_absolute_once(tmp_path):
    """Chapters run in ``book/``: a relative ``SBIR_DATA`` read there names another folder."""
    import subprocess
    import sys

    code = "import os, sbir_core; print(os.environ['SBIR_DATA']); print(os.environ['SBIR_STORE'])"
    env = {**os.environ, "SBIR_DATA": "data", "SBIR_STORE": "../store"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(tmp_path / "data"), str(tmp_path.parent / "store")]


def test_missing_config_fails_that_chapter_only(sandbox, capsys):
    (sandbox / "book" / "97_noconf.py").write_text(HEADER + "# %%\nx = 1\n")
    assert book.run("ci") == 1
    assert "no config" in capsys.readouterr().out


def test_unknown_chapter_is_refused():
    with pytest.raises(SystemExit, match="unknown chapter"):
        book.run("ci", ["00_nothing"])


def test_real_chapter_twice_gives_identical_metrics(tmp_path, monkeypatch):
    """Same parameters, same metrics.csv byte for byte (the evaluation chapter, fewer trials)."""
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path))
    small = {"N_TRIALS": 20, "CHECKPOINTS": [1, 5], "TEST_SIZES": [50], "BITS": [8, 16], "N_QUERIES": 100}
    outputs = []
    for _ in range(2):
        book.execute("01_evaluation", "ci", overrides=small, output=tmp_path / "out.ipynb")
        outputs.append((tmp_path / "ci" / "01_evaluation" / "metrics.csv").read_bytes())
    assert outputs[0] == outputs[1] and len(outputs[0]) > 1000


def test_expect_records_rows_with_tolerance(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path / "runs"))
    path = tmp_path / "expected.csv"
    expected_frame().assign(chapter="01_other").to_csv(path, index=False)
    R.save_results("99_x", "ci", fresh_frame(0.25), {})
    assert book.expect("99_x", 0.02, "why", path=path) == 0
    table = book.load_expected(path)
    assert sorted(table["chapter"]) == ["01_other", "99_x"]
    assert table.set_index("chapter").loc["99_x", "tol"] == 0.02
    assert book.check(path) == 1  # 01_other has no fresh numbers


def test_every_chapter_has_valid_configs_at_both_scales():
    assert book.validate() == []


def test_toc_and_run_agree_on_the_chapters():
    """One list of chapters: _toc.yml names exactly the book/NN_*.py files, and each has a budget (BUDGET_S)."""
    import yaml

    entries = [e["file"].split("/")[-1] for e in yaml.safe_load(book.TOC.read_text())["chapters"]]
    toc = [e for e in entries if e[:2].isdigit()]
    files = sorted(p.stem for p in book.BOOK.glob("[0-9][0-9]_*.py"))
    assert toc == files == book.chapters()
    back = entries[len(toc) :]  # after the chapters, pages that are not executed: the appendix, the references
    assert entries[: len(toc)] == toc and back and all((book.BOOK / f"{e}.md").exists() for e in back), entries
    assert all(isinstance(v, int | float) and v > 0 for v in book.budgets().values()), book.budgets()


def test_up_to_date_chapters_are_skipped_until_something_changes(sandbox, capsys, monkeypatch):
    ok_chapter(sandbox)
    monkeypatch.delenv("SBIR_DATA", raising=False)
    assert book.run("ci") == 0
    assert "done in" in capsys.readouterr().out
    assert book.run("ci") == 0
    assert "up to date" in capsys.readouterr().out
    (sandbox / "configs" / "ci" / "98_ok.yaml").write_text("VALUE: 0.5\n")  # parameters changed
    assert book.run("ci") == 0
    assert "done in" in capsys.readouterr().out
    assert book.run("ci", force=True) == 0  # --force runs it anyway
    assert "done in" in capsys.readouterr().out
    data = sandbox / "data"
    data.mkdir()
    monkeypatch.setenv("SBIR_DATA", str(data))  # the data changed (here: appeared)
    assert book.run("ci") == 0
    assert "done in" in capsys.readouterr().out


def test_unknown_config_name_is_caught(sandbox, capsys):
    (sandbox / "book" / "96_typo.py").write_text(HEADER + '# %% tags=["parameters"]\nSCALE = "ci"\nSEED = 0\n')
    (sandbox / "configs" / "ci" / "96_typo.yaml").write_text("SEDE: 1\n")
    assert any("SEDE" in p for p in book.validate(["ci"]))
    assert book.run("ci") == 1
    assert "SEDE" in capsys.readouterr().out


def test_parameters_cell_must_be_plain_assignments(sandbox):
    (sandbox / "book" / "95_code.py").write_text(HEADER + '# %% tags=["parameters"]\nimport os\n')
    (sandbox / "configs" / "ci" / "95_code.yaml").write_text("{}\n")
    assert any("NAME = value" in p for p in book.validate(["ci"]))


def test_nan_survives_the_csv_round_trip(tmp_path, monkeypatch):
    """A legitimate NaN (e.g. mAP with no valid query) is written, read back and compared as NaN."""
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path / "runs"))
    path = tmp_path / "expected.csv"
    R.save_results(
        "99_x", "ci", pd.concat([fresh_frame(float("nan")), fresh_frame(0.5).assign(metric="acc_at_10")]), {}
    )
    assert book.expect("99_x", 0.01, "test", path=path) == 0
    fresh = R.load_metrics("ci", "99_x")
    assert fresh["value"].dtype == float and fresh["value"].isna().sum() == 1
    assert book.check(path) == 0
    R.save_results("99_x", "ci", pd.concat([fresh_frame(0.3), fresh_frame(0.5).assign(metric="acc_at_10")]), {})
    assert book.check(path) == 1  # a number where NaN was expected is drift


def test_require_data_turns_a_skipped_row_into_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SBIR_RESULTS", str(tmp_path / "runs"))
    monkeypatch.setenv("SBIR_DATA", str(tmp_path / "no_data_here"))
    path = tmp_path / "expected.csv"
    pd.concat([expected_frame(0.5, 0.01), expected_frame(0.5, 0.01, "shoes304").assign(metric="acc_at_10")]).to_csv(
        path, index=False
    )
    R.save_results("99_x", "ci", fresh_frame(0.505), {})
    assert book.check(path) == 0  # the shoes304 row is skipped, and said so
    assert "1 rows skipped" in capsys.readouterr().out
    assert book.check(path, require_data=True) == 1
    assert "--require-data" in capsys.readouterr().out


@pytest.mark.parametrize("fresh, status", [(5e-9, "ok"), (5.00000001e-9, "ok"), (1e-4, "drift"), (5e-8, "drift")])
def test_p_values_are_compared_on_a_log_scale(fresh, status):
    expected = expected_frame(5e-9, 1e-6).assign(metric="ink_extent_p")
    fresh_rows = fresh_frame(fresh).assign(metric="ink_extent_p")
    assert book.compare(expected, fresh_rows)["status"].tolist() == [status]


def test_trivial_values_come_from_chance_oracle_and_untrained_rows():
    rows = pd.DataFrame(
        [
            {
                "chapter": "c",
                "dataset": "d",
                "method": m,
                "protocol": "",
                "setting": "g=1",
                "split": "test",
                "metric": "acc_at_1",
                "seed": -1,
                "value": v,
            }
            for m, v in (
                ("chance", 0.1),
                ("category_oracle", 0.1),
                ("untrained", 0.15),
                ("triplet_sn", 0.4),
                ("hierarchy_proposed_untrained", 0.15),
            )
        ]
        + [
            {
                "chapter": "c",
                "dataset": "d",
                "method": "triplet_sn",
                "protocol": "",
                "setting": "g=2",
                "split": "test",
                "metric": "acc_at_1",
                "seed": -1,
                "value": 0.3,
            },
            {
                "chapter": "c",
                "dataset": "d",
                "method": "triplet_sn",
                "protocol": "",
                "setting": "g=1",
                "split": "test",
                "metric": "acc_at_1_ci95_lo",
                "seed": -1,
                "value": 0.3,
            },
        ]
    )
    triv = book.trivial_values(rows).tolist()
    assert triv[:3] == [pytest.approx(float("nan"), nan_ok=True)] * 3  # the trivial rows themselves
    assert triv[3] == 0.15 and triv[5] == 0.15  # the best trivial score; another gap takes the split's
    assert triv[4] != triv[4]  # an untrained variant is a floor itself: none (it may equal another floor)
    assert triv[6] != triv[6]  # interval bounds have none


def test_derived_tolerances_half_width_for_estimates_whole_width_for_bounds():
    """An estimate may move by its interval's half-width on a rerun elsewhere; a bound by the whole width (it moves
    with the estimate and with the half-width); a part of a claim's standard error by the whole error; a row
    without an interval was computed without training."""

    def row(method, metric, value, seed=-1):
        return {
            "chapter": "c",
            "dataset": "style_world",
            "method": method,
            "protocol": "",
            "setting": "",
            "split": "test",
            "metric": metric,
            "seed": seed,
            "value": value,
        }

    fresh = pd.DataFrame(
        [
            row("m", "acc_at_1", 0.40),
            row("m", "acc_at_1_ci95_lo", 0.30),
            row("m", "acc_at_1_ci95_hi", 0.50),
            row("chance", "acc_at_1", 0.1),
            row("m", "acc_at_1", 0.42, seed=0),
            row("a - b", "rel_effect_se_seeds", 0.03),
            row("a - b", "rel_effect_se_sample", 0.04),
            row("a - b", "mde_rel", 0.14),
        ]
    )
    tol = book.derived_tolerances(fresh).set_index(["method", "metric"])["tol"]
    assert len(tol) == 7  # per-seed rows are not checked
    assert tol[("m", "acc_at_1")] == pytest.approx(0.10)
    assert tol[("m", "acc_at_1_ci95_lo")] == pytest.approx(0.20) and tol[("m", "acc_at_1_ci95_hi")] == pytest.approx(
        0.20
    )
    assert tol[("chance", "acc_at_1")] == book.EXACT_TOL
    # a claim's standard error by source: either part may move by the whole error (a 2-seed seed part is
    # barely estimated); the detectable effect, a multiple of that error, by its own size
    assert tol[("a - b", "rel_effect_se_seeds")] == pytest.approx(0.05)
    assert tol[("a - b", "rel_effect_se_sample")] == pytest.approx(0.05)
    assert tol[("a - b", "mde_rel")] == pytest.approx(0.14)


def test_intro_lists_every_chapter_of_the_toc():
    """The introduction's chapter table names each chapter of ``_toc.yml`` once, in book order."""
    import re

    from sbir_core.paths import BOOK

    listed = re.findall(r"^\| \{doc\}`([0-9]{2}_[a-z0-9_]+)`", (BOOK / "intro.md").read_text(), flags=re.M)
    assert listed == book.chapters()


def test_intro_claims_glue_what_the_claims_chapter_glues():
    """Every ``10_claims.ipynb::c10_*`` key the introduction reads is glued by the claims chapter."""
    import re

    from sbir_core.paths import BOOK

    wanted = set(re.findall(r"10_claims\.ipynb::(c10_[a-z0-9_]+)", (BOOK / "intro.md").read_text()))
    source = (BOOK / "10_claims.py").read_text()
    glued = {f"c10_{k}" for k in re.findall(r'ch\.glue\(f?"([a-z0-9_]+)"', source)}
    glued |= {
        f"c10_world_{w.replace(' ', '_')}"
        for w in ("reproduced", "contradicted", "smaller than claimed", "undecided", "not testable")
    }
    assert wanted and wanted <= glued, wanted - glued


# ---------------------------------------------------------------------- re-runs with other parameters


def test_set_parses_yaml_values_and_refuses_bad_names():
    from sbir_core.book import parse_set

    assert parse_set(["SEED=3", "WORLD={seed: 7}", "LR=1e-3", "NAME=shoes"]) == {
        "SEED": 3,
        "WORLD": {"seed": 7},
        "LR": 1e-3,  # YAML 1.1 reads 1e-3 as a string; a number is meant
        "NAME": "shoes",
    }
    for bad in (["seed=3"], ["SEED"], ["SE-ED=1"]):
        with pytest.raises(SystemExit):
            parse_set(bad)


def test_a_mapping_override_changes_only_its_keys(monkeypatch):
    from sbir_core import recipes as R

    assert R.merge({"WORLD": {"seed": 0, "n": 5}, "SEED": 0}, {"WORLD": {"seed": 7}}) == {
        "WORLD": {"seed": 7, "n": 5},
        "SEED": 0,
    }
    monkeypatch.setenv(R.OVERRIDES_ENV, '{"WORLD": {"seed": 7}, "NOT_A_PARAMETER": 1}')
    p = R.load_params("04_triplet_baseline", "ci")
    base = yaml.safe_load((paths.CONFIGS / "ci" / "04_triplet_baseline.yaml").read_text())
    assert p["WORLD"] == base["WORLD"] | {"seed": 7} and "NOT_A_PARAMETER" not in p


def test_run_refuses_a_parameter_no_chapter_has(tmp_path):
    from sbir_core.book import run

    with pytest.raises(SystemExit, match="no chapter has"):
        run("ci", ["01_evaluation"], overrides={"NO_SUCH_PARAMETER": 1}, out=tmp_path)


def _claim_metrics(rel, lo, hi, outcome):
    from sbir_core.stats import OUTCOME_CODE

    setting = "claim=stylemeup_beats_triplet_unseen"
    rows = [("rel_effect", rel), ("rel_effect_ci95_lo", lo), ("rel_effect_ci95_hi", hi)]
    rows += [("outcome", OUTCOME_CODE[outcome]), ("paper_rel_effect", 0.3), ("diff_acc_at_1", rel)]
    rows += [("diff_acc_at_1_ci95_lo", lo), ("diff_acc_at_1_ci95_hi", hi)]
    return pd.DataFrame(
        [
            {
                "chapter": "06_stylemeup",
                "dataset": "style_world",
                "method": "stylemeup",
                "protocol": "val",
                "setting": setting,
                "split": "test_unseen",
                "metric": m,
                "value": v,
                "seed": -1,
            }
            for m, v in rows
        ]
    )


def test_compare_pairs_claim_rows_and_flags_changes_and_sign_flips(tmp_path, monkeypatch):
    from sbir_core import book

    runs = {
        "a": _claim_metrics(0.2, 0.05, 0.35, "reproduced"),
        "b": _claim_metrics(-0.2, -0.35, -0.05, "contradicted"),
        "c": _claim_metrics(0.1, -0.05, 0.25, "undecided"),
    }
    monkeypatch.setattr(book, "_load_metrics", lambda scale: runs[Path(os.environ["SBIR_RESULTS"]).name])
    flip = book.compare_runs(tmp_path / "a", tmp_path / "b")
    assert len(flip) == 1 and bool(flip["changed"].iloc[0]) and bool(flip["sign_flip"].iloc[0])
    same = book.compare_runs(tmp_path / "a", tmp_path / "a")
    assert not same["changed"].any() and not same["sign_flip"].any()
    weaker = book.compare_runs(tmp_path / "a", tmp_path / "c")
    assert bool(weaker["changed"].iloc[0]) and not weaker["sign_flip"].any()
    other = _claim_metrics(0.2, 0.05, 0.35, "reproduced").assign(chapter="07_adaptive")
    runs["d"] = pd.concat([runs["a"], other])
    partial = book.compare_runs(tmp_path / "d", tmp_path / "b")  # chapter 7 ran in d only: not a change
    assert partial["changed"].tolist() == [True, False] and partial["in_both"].tolist() == [True, False]


def test_chapters_side_by_side_build_on_others_only_when_nothing_else_is_ready(monkeypatch):
    """``run --jobs 2``: never more than two chapters at once; what the others build on first (chapter 4); a
    chapter that loads an unfinished chapter's models (5-8 on 4, the playground on 4, 6 and 7: the store makes
    it wait for them) only once every chapter needing nothing unfinished has started; the claims chapter after
    all the others ended; a failure reported without stopping the rest."""
    import concurrent.futures as cf
    import threading

    names = ["01_evaluation", "02_style_world", "04_triplet_baseline", "05_hierarchy", "06_stylemeup"]
    names += ["07_adaptive", "08_with_style", "09_playground", "10_claims"]
    events, lock, now = [], threading.Lock(), {"running": 0, "most": 0}

    def fake(name, scale, own, params, notebook):
        with lock:
            events.append(("start", name))
            now["running"] += 1
            now["most"] = max(now["most"], now["running"])
        time.sleep(0.3 if name == "04_triplet_baseline" else 0.02)  # the others may start while 4 runs
        with lock:
            now["running"] -= 1
            events.append(("end", name))
        return "planted failure" if name == "05_hierarchy" else None

    monkeypatch.setattr(book, "_run_one", fake)
    todo = {n: ("ci", {}, {}, Path(n)) for n in names}
    failures = book._schedule(todo, 2, cf.ThreadPoolExecutor(max_workers=2))
    assert failures == ["planted failure"]
    assert now["most"] == 2
    started = [n for e, n in events if e == "start"]
    assert started[0] == "04_triplet_baseline" and started[-1] == "10_claims" and sorted(started) == names
    early = []
    for name in names:
        begin = events.index(("start", name))
        for before in book.waits_for(name, names):
            assert events.index(("end", before)) < begin, (name, before)
        if any(events.index(("end", n)) > begin for n in book.builds_on(name, names)):  # started early
            free = [n for n in names if not book.builds_on(n, names) and not book.waits_for(n, names)]
            assert all(events.index(("start", n)) < begin for n in free), (name, events)
            early.append(name)
    assert early  # the case this test is about happened
    assert book.waits_for("10_claims", names) == names[:-1] and book.waits_for("05_hierarchy", names) == []
    assert book.builds_on("09_playground", names) == ["04_triplet_baseline", "06_stylemeup", "07_adaptive"]
    assert book.builds_on("05_hierarchy", ["05_hierarchy", "06_stylemeup"]) == []  # only chapters of this run


def test_build_keeps_page_screenshots_only_when_asked(monkeypatch):
    """``book build`` checks the pages in a browser either way; ``--shots`` alone keeps a screenshot of each."""
    import sbir_core.pages

    built, browsed = [], []
    monkeypatch.setattr(book, "build", lambda builder="html", shots=False: built.append((builder, shots)) or 0)
    assert book.main(["build"]) == 0 and book.main(["build", "--shots"]) == 0
    assert built == [("html", False), ("html", True)]
    monkeypatch.setattr(sbir_core.pages, "browse", lambda pages, shots=None: browsed.append(shots) or [])
    assert book._browse([], shots=False) == [] and book._browse([], shots=True) == []
    assert browsed == [None, paths.REPO_ROOT / "_build" / "screenshots"]
