"""The book's pipeline: ``python -m sbir_core.book run | check | build``.

* ``run``: each chapter of ``_toc.yml`` (the one list of chapters), ``book/NN_slug.py``, is read by
  jupytext in memory, executed by papermill with ``paper_runs/configs/<scale>/NN_slug.yaml`` into
  ``book/NN_slug.ipynb``; the chapter's last cell writes ``paper_runs/<scale>/NN_slug/``. Wall times
  go to ``paper_runs/<scale>/timings.csv``. A failing chapter is reported with its failing cell and
  error; the others still run and earlier results are kept. A chapter whose source, parameters,
  package source and data fingerprint are unchanged since its last successful run is skipped
  (its ``stamp.json`` says so); ``--force`` runs it anyway. A run counts only when it finished: the
  stamp is removed before a chapter starts and written last, and the notebook is executed under a
  hidden name and moved into place at the end, so a chapter stopped midway runs again next time and
  the book never publishes it half-executed (a failed run's cells stay in ``NN_slug.failed.ipynb``).
* ``check``: fresh ci metrics against ``paper_runs/ci/expected.csv`` (a tolerance per row; p-values
  on a log10 scale). A row whose dataset is absent is "skipped"; ``--require-data`` makes that a
  failure (CI, which has the data).
* ``build``: Jupyter Book 1 on the executed notebooks, ``-W -n --keep-going``, no execution.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import functools
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sbir_core.errors import SBIRError
from sbir_core.paths import BOOK, PACKAGE, REPO_ROOT, RUNS, chapter_config
from sbir_core.repro import cores
from sbir_core.results import (
    KEY,
    SCALES,
    ResultsError,
    cpu,
    load_metrics,
    locked,
    parse_columns,
    read_table,
    results_root,
)

EXPECTED = RUNS / "ci" / "expected.csv"
EXPECTED_COLUMNS = KEY + ["value", "tol", "trivial", "requires", "note"]
# methods whose score needs no learning: a learnt row of the same place must beat them (``trivial``)
TRIVIAL_METHODS = ("chance", "category_oracle", "untrained", "pixel_nn", "trunk_nn")
TOC = REPO_ROOT / "_toc.yml"
# the whole book's time budget at the ci scale on 2 CPU cores, seconds; each chapter's is its BUDGET_S parameter
BOOK_BUDGET = 900
# chapters that read the other chapters' results: their stamp holds those results, so they rerun when one changes
READS_RESULTS = ("10_claims",)
# chapters that load another chapter's trained models (training them when absent): 5-8 build on chapter 4's
# Triplet-SN and trunk features (``recipes.StyleBench``); the playground serves the models of its recipes
# (``playground.RECIPES``, read where it is needed: that module imports torch). Side by side they may start
# before those chapters end: the store and the caches lock each entry, so a model is trained once
# (``store.training``, ``cache.computing``) and the later asker waits for it.
BUILDS_ON = {
    "05_hierarchy": ("04_triplet_baseline",),
    "06_stylemeup": ("04_triplet_baseline",),
    "07_adaptive": ("04_triplet_baseline",),
    "08_with_style": ("04_triplet_baseline",),
}
PLAYGROUND = "09_playground"


class ChapterFailed(SBIRError, RuntimeError):
    """A chapter whose execution raised; the message names the cell and the error."""


def budgets(scale: str = "ci") -> dict:
    """Each chapter's time budget in seconds on 2 CPU cores: its ``BUDGET_S`` parameter (None where it has none)."""
    return {c: load_params(c, scale).get("BUDGET_S", chapter_defaults(c).get("BUDGET_S")) for c in chapters()}


def chapters() -> list[str]:
    """Chapter names (``NN_slug``) in book order: the ``book/NN_slug`` files of ``_toc.yml``."""
    toc = yaml.safe_load(TOC.read_text())
    names = [Path(entry["file"]).name for entry in toc.get("chapters", [])]
    return [n for n in names if n[:2].isdigit() and (BOOK / f"{n}.py").exists()]


def stamp(chapter: str, scale: str, params: dict) -> dict:
    """What a chapter's results depend on: its source, parameters, the package source and the data."""

    def digest(paths, base: Path) -> str:
        h = hashlib.sha1()
        for p in sorted(paths):
            h.update(str(p.relative_to(base)).encode())
            h.update(p.read_bytes())
        return h.hexdigest()[:16]

    out = {
        "chapter": digest([BOOK / f"{chapter}.py"], BOOK),
        "scale": scale,
        "params": hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16],
        "package": digest(PACKAGE.rglob("*.py"), PACKAGE),
        "data": data_fingerprint(),
        "reference": digest((RUNS / "reference").glob("*.csv"), RUNS),
    }
    if chapter in READS_RESULTS:
        root = results_root() / scale
        out["results"] = digest([p for p in root.glob("*/metrics.csv") if p.parent.name != chapter], root)
    return out


def data_fingerprint() -> str:
    """A hash of the data root's file list (relative names, sizes, modification times); "" without one."""
    root = os.environ.get("SBIR_DATA")
    if not root or not Path(root).is_dir():
        return ""
    h = hashlib.sha1(str(Path(root).resolve()).encode())
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            h.update(
                f"{os.path.relpath(os.path.join(dirpath, name), root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(
                    "utf-8", "surrogateescape"
                )
            )
    return h.hexdigest()[:16]


def _stamp_path(chapter: str, scale: str) -> Path:
    return results_root() / scale / chapter / "stamp.json"


def up_to_date(chapter: str, scale: str, params: dict, notebook: Path | None = None) -> bool:
    """Whether the chapter's last successful run had this very stamp and its notebook still exists."""
    path = _stamp_path(chapter, scale)
    if not path.exists() or not (notebook or BOOK / f"{chapter}.ipynb").exists():
        return False
    try:
        return json.loads(path.read_text()) == stamp(chapter, scale, params)
    except (OSError, ValueError):
        return False


def load_params(chapter: str, scale: str) -> dict:
    """The parameters of one chapter at one scale, from its YAML config (``paths.chapter_config``)."""
    return chapter_config(chapter, scale)


def chapter_defaults(chapter: str) -> dict:
    """The names and default values of a chapter's one ``parameters`` cell."""
    path = BOOK / f"{chapter}.py"
    stat = path.stat()
    return copy.deepcopy(_defaults(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=64)
def _defaults(path: Path, _mtime_ns: int, _size: int) -> dict:
    """``chapter_defaults`` of the file as it is now (read again when it changes): a chapter asks for its
    parameters (``Chapter.params``) once per run it trains, and jupytext reads the whole chapter each time."""
    import ast

    import jupytext

    cells = [c for c in jupytext.read(path).cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    chapter = path.stem
    if len(cells) != 1:
        raise ValueError(f"{chapter}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    defaults = {}
    for node in ast.parse(cells[0].source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{chapter}: the parameters cell may hold only NAME = value lines")
        defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults


def validate(scales=SCALES) -> list[str]:
    """Problems with the chapters' configs: a missing file, or a name the parameters cell lacks.

    This is the paper scale's dry run: it needs neither a GPU nor the data.
    """
    problems = []
    for chapter in chapters():
        try:
            names = set(chapter_defaults(chapter))
        except (ValueError, SyntaxError) as err:
            problems.append(str(err))
            continue
        lower = sorted(n for n in names if not n.isupper())
        if lower:
            problems.append(f"{chapter}: parameter names must be UPPER_CASE: {lower}")
        for scale in scales:
            try:
                extra = sorted(set(load_params(chapter, scale)) - names)
            except (FileNotFoundError, ValueError) as err:
                problems.append(str(err))
                continue
            if extra:
                problems.append(f"{chapter} ({scale}): config sets {extra}, which the parameters cell does not define")
    known = set()
    for chapter in chapters():
        with contextlib.suppress(ValueError, SyntaxError):  # a chapter that does not parse is reported above
            known |= set(chapter_defaults(chapter))
    stray = sorted(set(smoke_overrides()) - known)
    if stray:
        problems.append(f"{SMOKE.name}: sets {stray}, which no chapter's parameters cell defines")
    return problems


def execute(
    chapter: str, scale: str = "ci", overrides: dict | None = None, output: Path | None = None, kernel: str = "python3"
) -> float:
    """Execute one chapter (parameters from its config, then ``overrides``); return its wall time in s.

    The executed notebook goes to ``output`` (default ``book/<chapter>.ipynb``).
    Raises ChapterFailed naming the failing cell and the error.
    """
    import jupytext
    import papermill as pm

    params = load_params(chapter, scale) | (overrides or {})
    unknown = sorted(set(params) - set(chapter_defaults(chapter)))
    if unknown:
        raise ValueError(f"{chapter}: parameters {unknown} are not in its parameters cell (typo in the config?)")
    from nbclient.exceptions import DeadKernelError

    nb = jupytext.read(BOOK / f"{chapter}.py")
    env_backend = os.environ.pop("MPLBACKEND", None)  # agg drops every figure from the notebook
    start = time.perf_counter()
    try:
        for attempt in range(1, KERNEL_START_TRIES + 1):
            try:
                pm.execute_notebook(
                    nb,
                    str(output or BOOK / f"{chapter}.ipynb"),
                    parameters=params,
                    cwd=str(BOOK),
                    kernel_name=kernel,
                    progress_bar=False,
                    log_output=False,
                )
                break
            except DeadKernelError as err:  # killed mid-chapter (out of memory, a signal): this chapter fails
                raise ChapterFailed(f"{chapter}: its kernel died while running ({err}); out of memory?") from None
            except RuntimeError as err:
                if not _kernel_did_not_start(err):
                    raise
                if attempt == KERNEL_START_TRIES:
                    raise ChapterFailed(f"{chapter}: its kernel did not start in {attempt} tries ({err})") from None
                print(f"[run] {chapter}: its kernel did not start ({err}); starting another", flush=True)
    except pm.PapermillExecutionError as err:
        first_line = err.source.strip().splitlines()[0] if err.source.strip() else ""
        raise ChapterFailed(
            f"{chapter}: cell {err.cell_index} (execution count {err.exec_count}) "
            f"starting {first_line!r} raised {err.ename}: {err.evalue}"
        ) from None
    finally:
        if env_backend is not None:
            os.environ["MPLBACKEND"] = env_backend
    _fold_injected_parameters(Path(output or BOOK / f"{chapter}.ipynb"))
    return time.perf_counter() - start


# A kernel's ports are chosen free by the process that starts it and bound by the kernel a moment later, so two
# processes starting kernels at once (two ``book run``s, or chapters run by the tests beside one) can pick the same
# port: the kernel exits with "Address already in use" and nbclient reports it as having died before replying to
# kernel_info. Nothing of the chapter ran by then, so it is started again on fresh ports.
KERNEL_START_TRIES = 3


def _kernel_did_not_start(err: BaseException) -> bool:
    """Whether ``err`` is nbclient's report of a kernel that died before it answered its first request."""
    return isinstance(err, RuntimeError) and "before replying to kernel_info" in str(err)


def _fold_injected_parameters(path: Path) -> None:
    """Collapse papermill's injected-parameters cell in the rendered book (the values stay visible on a click)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
    nbformat.write(nb, path)


def record_timing(scale: str, chapter: str, seconds: float, status: str) -> None:
    """Upsert a chapter's wall time in ``paper_runs/<scale>/timings.csv`` (locked, atomic replace).

    Two processes recording at once take turns (a lock beside the file) and write through unique
    temporaries, so no row is lost. An unreadable old file is reported and replaced.
    """
    path = results_root() / scale / "timings.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["chapter", "seconds", "status", "finished"]
    with locked(path.with_name(".timings.lock")):
        try:
            old = read_table(path, dtype=str) if path.exists() else pd.DataFrame(columns=columns)
            if [c for c in columns if c not in old]:
                raise ResultsError(f"{path}: missing columns")
        except ResultsError as err:
            print(f"[run] {err}; starting a new timings file", flush=True)
            old = pd.DataFrame(columns=columns)
        row = pd.DataFrame(
            [
                {
                    "chapter": chapter,
                    "seconds": round(seconds, 1),
                    "status": status,
                    "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                }
            ]
        )
        new = pd.concat([old[old["chapter"] != chapter][columns], row], ignore_index=True).sort_values("chapter")
        fd, tmp = tempfile.mkstemp(prefix=".timings.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                new.to_csv(fh, index=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


SMOKE = REPO_ROOT / "paper_runs" / "configs" / "smoke.yaml"


def smoke_overrides() -> dict:
    """The smoke run's parameter overrides (``paper_runs/configs/smoke.yaml``): counts shrunk, settings kept."""
    values = yaml.safe_load(SMOKE.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{SMOKE}: expected NAME: value lines")
    return values


def parse_set(items) -> dict:
    """``NAME=VALUE`` strings (``run --set``) as a dict of parameter overrides, each value read as YAML."""
    out = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not eq or not name.isupper() or not name.replace("_", "").isalnum():
            raise SystemExit(f"--set takes NAME=VALUE with an UPPER_CASE name, got {item!r}")
        value = yaml.safe_load(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        out[name] = value
    return out


def run(
    scale: str = "ci",
    only: list[str] | None = None,
    force: bool = False,
    overrides: dict | None = None,
    out=None,
    jobs: int = 1,
) -> int:
    """Execute chapters in order (skipping those up to date unless ``force``); return the number that failed.

    overrides: parameter values (``--set NAME=VALUE``) for every chapter whose parameters cell has the name,
    and for the runs a chapter rebuilds from another chapter's parameters (``$SBIR_PARAMS``: chapter 4's
    ``SEED`` reaches the Triplet-SN that chapters 6-8 load); a name no chapter has is refused. out: a folder
    for this run's results, stamps, timings and executed notebooks (``--out``), leaving ``paper_runs/`` and
    ``book/`` alone: a re-run with other seeds to hold beside the committed one (``compare``).
    """
    from sbir_core.recipes import OVERRIDES_ENV, merge

    names = chapters()
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SystemExit(f"unknown chapter(s) {unknown}; chapters are: {', '.join(names)}")
        names = [n for n in names if n in only]
    overrides = dict(overrides or {})
    if overrides:
        known = set().union(*(chapter_defaults(n) for n in chapters()))
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise SystemExit(f"--set {unknown}: no chapter has such a parameter")
        os.environ[OVERRIDES_ENV] = json.dumps(overrides)
    if out is not None:
        out = Path(out).resolve()
        (out / "notebooks").mkdir(parents=True, exist_ok=True)
        os.environ["SBIR_RESULTS"] = str(out)  # results_root(), here and in the chapters' kernels
    todo = {}
    failures = []
    for name in names:
        try:
            base = load_params(name, scale)
            own = merge(base, {k: v for k, v in overrides.items() if k in chapter_defaults(name)})
            own = {k: v for k, v in own.items() if k in overrides}
            params = base | own
        except (FileNotFoundError, ValueError, SBIRError) as err:  # a bad config fails its chapter, not the run
            failures.append(str(err))
            print(f"[run] FAILED: {err}", flush=True)
            continue
        notebook = BOOK / f"{name}.ipynb" if out is None else out / "notebooks" / f"{name}.ipynb"
        if not force and up_to_date(name, scale, params, notebook):
            print(
                f"[run] {name} ({scale}) is up to date (source, parameters, package and data unchanged); "
                f"skipped, --force runs it",
                flush=True,
            )
            continue
        todo[name] = (scale, own, params, notebook)
    failures += _schedule(todo, jobs)
    if failures:
        print(f"\n{len(failures)} chapter(s) failed; earlier results of those chapters are kept:")
        for f in failures:
            print(f"  - {f}")
    return len(failures)


def waits_for(name: str, names) -> list[str]:
    """The chapters of ``names`` that ``name`` starts after when chapters run side by side (``run --jobs``):
    every other chapter for one that reads their results (``READS_RESULTS``), none for the rest."""
    if name in READS_RESULTS:
        return [n for n in names if n != name and n not in READS_RESULTS]
    return []


def builds_on(name: str, names) -> list[str]:
    """The chapters of ``names`` whose trained models ``name`` loads (``BUILDS_ON``, the playground's recipes).
    Side by side ``name`` may start before they end (it then waits at the store for what it needs), but only
    when no chapter that needs nothing unfinished is ready."""
    if name == PLAYGROUND:
        from sbir_core.playground import RECIPES

        return [n for n in names if n in {r.chapter for r in RECIPES}]
    return [n for n in names if n in BUILDS_ON.get(name, ())]


def _schedule(todo: dict, jobs: int, executor=None) -> list[str]:
    """Run the chapters of ``todo`` (name -> ``_run_one``'s arguments), ``jobs`` at a time in their own
    processes (``executor``: a ``concurrent.futures`` executor to use instead), each after the chapters it
    ``waits_for``; return the failures' messages. Of the chapters ready, first those that build on nothing
    unfinished (``builds_on``: the others would wait at the store), then the longest first (its last recorded
    time, else its ``BUDGET_S``): chapter 4, which the others build on, then the long chapters 5 and 6, so
    that no core idles at the end while one long chapter still runs."""
    if jobs <= 1 or len(todo) <= 1:
        return [m for name, a in todo.items() if (m := _run_one(name, *a))]
    import concurrent.futures as cf
    import multiprocessing

    failures, running, done = [], {}, set()
    waiting = dict(todo)
    scale = next(iter(todo.values()))[0]
    last, budget = _last_seconds(scale), budgets(scale)
    takes = {n: last.get(n, budget.get(n) or 0.0) for n in todo}
    needs = {n: set(waits_for(n, todo)) | set(builds_on(n, todo)) for n in todo}

    def ready() -> list[str]:
        free = [n for n in waiting if not set(waits_for(n, todo)) - done]
        return sorted(free, key=lambda n: (bool(needs[n] - done), -takes[n]))

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch or zmq state
    with executor or cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        try:
            while waiting or running:
                for name in ready()[: jobs - len(running)]:
                    running[pool.submit(_run_one, name, *waiting.pop(name))] = name
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    done.add(running.pop(future))
                    if message := future.result():
                        failures.append(message)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return failures


def _last_seconds(scale: str) -> dict:
    """chapter -> its last recorded wall time at ``scale`` (``timings.csv``), for the order of ``_schedule``."""
    path = RUNS / scale / "timings.csv"
    if not path.exists():
        return {}
    with contextlib.suppress(ValueError, KeyError, pd.errors.ParserError):
        table = pd.read_csv(path)
        return dict(zip(table["chapter"], table["seconds"].astype(float)))
    return {}


def _run_one(name: str, scale: str, own: dict, params: dict, notebook: Path) -> str | None:
    """Execute one chapter as ``run`` does (stamp last, notebook moved into place only when every cell ran);
    return None, or the failure's message."""
    print(f"[run] {name} ({scale}) ...", flush=True)
    # A run is done only when it finished: the stamp goes before the chapter starts and comes back last,
    # and the notebook is executed under a hidden name and moved into place only when every cell ran. A
    # run stopped anywhere (an error, Ctrl-C, a kill) leaves no stamp, so the next ``run`` runs it again,
    # and the book keeps the last complete notebook, never a half-executed one.
    path = _stamp_path(name, scale)
    path.unlink(missing_ok=True)
    running = notebook.with_name(f".{name}.running.ipynb")
    failed = notebook.with_name(f"{name}.failed.ipynb")
    start = time.perf_counter()
    try:
        seconds = execute(name, scale, own, running)
    except (FileNotFoundError, ValueError, SBIRError) as err:
        seconds = time.perf_counter() - start
        record_timing(scale, name, seconds, "failed")
        kept = ""
        if running.exists():
            os.replace(running, failed)
            kept = f" (the executed cells: {failed})"
        print(f"[run] FAILED after {seconds:.1f} s: {err}{kept}", flush=True)
        return str(err) + kept
    os.replace(running, notebook)
    failed.unlink(missing_ok=True)
    record_timing(scale, name, seconds, "ok")
    if path.parent.is_dir():  # the chapter saved its results: remember what they were made from
        path.write_text(json.dumps(stamp(name, scale, params), indent=1, sort_keys=True))
    print(f"[run] {name} done in {seconds:.1f} s", flush=True)
    return None


def compare_runs(a: Path, b: Path, scale: str = "ci") -> pd.DataFrame:
    """Every claim row of two runs of the book (``run --out``, or ``paper_runs``) side by side: each run's
    outcome and relative effect with its interval, and whether the outcome changed or the effect flipped sign
    (both intervals excluding zero on opposite sides, or one estimate's sign against the other's interval).
    ``in_both``: the claim's chapter ran in both (a chapter one run left out is no change; ``--only`` runs)."""
    from sbir_core.claims import evidence_table

    tables = []
    for root in (a, b):
        before = os.environ.get("SBIR_RESULTS")
        os.environ["SBIR_RESULTS"] = str(Path(root).resolve())
        try:
            tables.append(evidence_table(_load_metrics(scale)))
        finally:
            if before is None:
                os.environ.pop("SBIR_RESULTS", None)
            else:
                os.environ["SBIR_RESULTS"] = before
    key = ["claim_id", "chapter", "dataset", "setting", "method", "split"]
    cols = key + ["outcome", "rel_effect", "rel_effect_ci95_lo", "rel_effect_ci95_hi"]
    both = (
        tables[0]
        .reindex(columns=cols)
        .merge(tables[1].reindex(columns=cols), on=key, how="outer", suffixes=("_a", "_b"))
    )
    sa, sb = np.sign(both["rel_effect_a"]), np.sign(both["rel_effect_b"])
    sure_a = (both["rel_effect_ci95_lo_a"] > 0) | (both["rel_effect_ci95_hi_a"] < 0)
    sure_b = (both["rel_effect_ci95_lo_b"] > 0) | (both["rel_effect_ci95_hi_b"] < 0)
    both["in_both"] = both["chapter"].isin(set(tables[0]["chapter"]) & set(tables[1]["chapter"]))
    both["changed"] = both["in_both"] & (both["outcome_a"].fillna("absent") != both["outcome_b"].fillna("absent"))
    both["sign_flip"] = (sa * sb < 0) & (sure_a | sure_b)
    return both


def _load_metrics(scale: str) -> pd.DataFrame:
    from sbir_core.results import load_metrics

    return load_metrics(scale)


def _print_comparison(both: pd.DataFrame, a, b) -> None:
    def iv(r, s):
        est, lo, hi = r[f"rel_effect_{s}"], r[f"rel_effect_ci95_lo_{s}"], r[f"rel_effect_ci95_hi_{s}"]
        return "—" if pd.isna(est) else f"{est:+.2f} [{lo:+.2f}, {hi:+.2f}]"

    print(f"A: {a}\nB: {b}\n")
    left = sorted(set(both.loc[~both["in_both"], "chapter"]))
    both = both[both["in_both"]]
    for r in both.to_dict("records"):
        flag = "SIGN FLIP" if r["sign_flip"] else ("changed" if r["changed"] else "same")
        where = ", ".join(str(r[k]) for k in ("dataset", "setting", "method", "split") if r[k] and not pd.isna(r[k]))
        print(
            f"{r['claim_id']:<24} {flag:<9} A {r['outcome_a']!s:<20} {iv(r, 'a'):<24} "
            f"B {r['outcome_b']!s:<20} {iv(r, 'b'):<24} {where}"
        )
    n = len(both)
    print(
        f"\n{n} claim rows: {n - int(both['changed'].sum())} with the same outcome, {int(both['changed'].sum())} "
        f"changed, {int(both['sign_flip'].sum())} whose relative effect flipped sign with an interval excluding zero"
        + (f"; left out, run in one of the two only: {', '.join(left)}" if left else "")
    )


def load_expected(path: Path = EXPECTED, allow_empty: bool = False) -> pd.DataFrame:
    """The committed expected ci numbers, with tolerances and trivial values.

    Refused with a ResultsError naming the file (and line): an unreadable table, missing columns, no
    rows (nothing would be compared), a value or tolerance that is not a number, a tolerance that
    is negative, NaN or infinite, or a seed that is not a whole number.
    """
    df = read_table(path, keep_default_na=False, dtype=str)
    if "trivial" not in df and "tol" in df:
        df.insert(df.columns.get_loc("tol") + 1, "trivial", "nan")
    missing = [c for c in EXPECTED_COLUMNS if c not in df]
    if missing:
        raise ResultsError(f"{path}: missing columns {missing} (expected {EXPECTED_COLUMNS})")
    if not len(df) and not allow_empty:
        raise ResultsError(f"{path}: no rows: a check against it would compare nothing")
    df = parse_columns(df, path, ["value", "tol", "trivial"], ["seed"])
    for i, tol in enumerate(df["tol"]):
        if not math.isfinite(tol) or tol < 0:
            raise ResultsError(f"{path}, line {i + 2}: tolerance {tol} is not a finite non-negative number")
    return df


def is_p_value(metric: str) -> bool:
    """p-values are compared on a log10 scale: "p < 0.001" must not pass for p = 5e-9."""
    return metric.endswith("_p") or metric.endswith("_p_holm") or metric in ("p", "p_value")


def compare(expected: pd.DataFrame, fresh: pd.DataFrame, available=None) -> pd.DataFrame:
    """Row-by-row comparison; ``status`` is ok, drift, missing or skipped (data not available).

    ``available(name) -> bool`` says whether a dataset a row ``requires`` is present. For p-values
    (``is_p_value``) ``diff`` and ``tol`` are in log10 units.
    """
    fresh = fresh.drop_duplicates(KEY).set_index(KEY)["value"]
    rows = []
    for rec in expected.to_dict("records"):
        key = tuple(rec[k] for k in KEY)
        need = str(rec.get("requires", "") or "")
        got = fresh.get(key, None)
        if got is None:
            status = "skipped" if need and available is not None and not available(need) else "missing"
            rows.append(dict(rec, fresh=float("nan"), diff=float("nan"), status=status))
            continue
        if is_p_value(str(rec["metric"])) and float(got) > 0 and float(rec["value"]) > 0:
            diff = math.log10(float(got)) - math.log10(float(rec["value"]))
        else:
            diff = float(got) - float(rec["value"])
        same = float(got) == float(rec["value"]) or (math.isnan(float(got)) and math.isnan(float(rec["value"])))
        diff = 0.0 if same else diff  # equal infinities (an effect no design detects) and NaN agree
        bad = not math.isfinite(diff)
        status = "drift" if bad or abs(diff) > float(rec["tol"]) else "ok"
        rows.append(dict(rec, fresh=float(got), diff=diff, status=status))
    return pd.DataFrame(rows, columns=EXPECTED_COLUMNS + ["fresh", "diff", "status"])


def _dataset_available(name: str) -> bool:
    """Whether a row's ``requires`` is met: one dataset, or several joined by "+" (all of them)."""
    from sbir_core.data.registry import available

    return all(available(n) for n in name.split("+"))


def recordings(primary: Path = EXPECTED) -> list[Path]:
    """The expected numbers' recordings: ``primary`` and, beside it, one ``<stem>.<platform>.csv`` per other
    platform recorded (``expect --platform``), in name order. A trained number depends on the CPU's float32
    kernels, not only on the seed: the same code and seeds, run cold on an AMD EPYC with AVX-512 (2026-12-07),
    drifted in 61 of the 2,307 rows recorded elsewhere and moved 8 claim outcomes, its untrained scores by 1e-6,
    its trained ones as another training seed would. A chapter is checked against the recording it matches best."""
    return [primary, *sorted(primary.parent.glob(f"{primary.stem}.*{primary.suffix}"))]


def check(expected_path: Path = EXPECTED, scale: str = "ci", require_data: bool = False) -> int:
    """Print what drifted and return 1 on drift or a missing row, else 0.

    Each chapter is compared with every recording that holds it (``recordings``) and judged on the one with the
    fewest drifted and missing rows (the primary on a tie): a chapter passes when its fresh numbers match one
    platform's recording whole, and the check says which recording each chapter matched, when not the primary.
    Rows whose dataset is absent are skipped and listed; with ``require_data`` a skipped row fails.
    """
    if not expected_path.exists():
        print(f"[check] no expected numbers at {expected_path}")
        return 1
    try:
        fresh = load_metrics(scale)
        tables = [(p, compare(load_expected(p), fresh, _dataset_available)) for p in recordings(expected_path)]
    except ResultsError as err:
        print(f"[check] {err}")
        return 1
    chosen, elsewhere = [], []
    for chapter in dict.fromkeys(c for _, t in tables for c in t["chapter"]):
        held = [(p, t[t["chapter"] == chapter]) for p, t in tables if (t["chapter"] == chapter).any()]
        path, part = min(held, key=lambda pt: int(pt[1]["status"].isin(["drift", "missing"]).sum()))
        chosen.append(part)
        if path != expected_path:
            elsewhere.append(f"{chapter} ({path.name})")
    table = pd.concat(chosen, ignore_index=True)
    counts = table["status"].value_counts().to_dict()
    print(f"[check] {len(table)} expected numbers: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if elsewhere:
        print(f"[check] checked against another platform's recording: {', '.join(elsewhere)}")
    if table["status"].isin(["drift", "missing"]).any():  # which CPU drifted, to record it (``expect --platform``)
        print(f"[check] this machine's CPU: {cpu()}; recordings: {', '.join(p.name for p, _ in tables)}")
    bad = table[table["status"].isin(["drift", "missing"])]
    skipped = table[table["status"] == "skipped"]
    cols = [
        "chapter",
        "dataset",
        "method",
        "protocol",
        "split",
        "metric",
        "seed",
        "value",
        "fresh",
        "diff",
        "tol",
        "status",
    ]
    if len(skipped):
        print(
            f"[check] {len(skipped)} rows skipped, data not found (SBIR_DATA={os.environ.get('SBIR_DATA', '')!r}):",
            ", ".join(f"{k} ({v} rows)" for k, v in sorted(skipped["requires"].value_counts().items())),
        )
        if require_data:
            print("[check] FAILED: --require-data and some rows were skipped; set SBIR_DATA to the datasets")
            bad = pd.concat([bad, skipped])
    if len(bad):
        with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_colwidth", 30):
            print(bad[cols].to_string(index=False))
        return 1
    return 0


EXACT_TOL = 1e-6  # rows computed without training (counts, chance, statistics of fixed data)
SE_PARTS = ("rel_effect_se_seeds", "rel_effect_se_sample")  # a claim's standard error, by source (``stats``)


def is_floor(method: str) -> bool:
    """A method whose score needs no learning: ``TRIVIAL_METHODS``, or a network untrained (``<method>_untrained``,
    as chapter 5 names its untrained variants), which is a floor itself, not a score a floor must lie below."""
    return method in TRIVIAL_METHODS or str(method).endswith("_untrained")


def trivial_values(rows: pd.DataFrame) -> pd.Series:
    """Each learnt score's trivial value: the best of chance, the category oracle and an untrained
    encoder (``TRIVIAL_METHODS``) at the same dataset, setting, split and metric (NaN where none).

    Only estimates of a retrieval metric get one (not interval bounds, differences or statistics).
    A setting with no trivial row of its own takes the dataset's and split's (the style world's
    galleries are the same at every gap). A row whose accepted interval contains its trivial value
    checks nothing (``tests/test_expected.py``). A floor's own rows (``is_floor``) get none.
    """
    triv = rows[rows["method"].isin(TRIVIAL_METHODS)]
    exact = triv.groupby(["chapter", "dataset", "setting", "split", "metric"])["value"].max().to_dict()
    loose = triv.groupby(["chapter", "dataset", "split", "metric"])["value"].max().to_dict()
    out = []
    for r in rows.to_dict("records"):
        metric = str(r["metric"])
        if is_floor(r["method"]) or "_ci95_" in metric or metric.startswith("diff_"):
            out.append(float("nan"))
            continue
        key = (r["chapter"], r["dataset"], r["setting"], r["split"], metric)
        out.append(exact.get(key, loose.get((r["chapter"], r["dataset"], r["split"], metric), float("nan"))))
    return pd.Series(out, index=rows.index, dtype=float)


def derived_tolerances(fresh: pd.DataFrame) -> pd.DataFrame:
    """Per-row tolerances from the chapter's own intervals, and the dataset each row needs.

    A summary row with an interval (``metric`` beside ``metric_ci95_lo`` / ``_hi``) gets the interval's
    half-width: a rerun elsewhere (another CPU, other bits) moves a number like another seed and test
    sample would. Its bounds get the interval's whole width: a bound moves with the estimate *and* with
    the half-width, which a 2- or 3-seed interval estimates no better than to its own size. (Measured on
    a second CPU, every chapter rerun cold: 3 of 260 estimates and 37 of 530 bounds moved by more than
    the half-width.) A claim's minimum detectable effect (``mde_rel``, a multiple of a standard error)
    gets its own size, as a bound gets its interval's width. Each of the two parts of a claim's standard
    error (``SE_PARTS``: seeds and test sample) may move by the whole error: the seed part is estimated
    from 2-5 trained seeds, and a rerun on another machine (2026-12-06, every chapter cold in a fresh clone)
    found it between 0.3x and 25x its recorded value where it was small beside the sample part, while the
    total, which the interval's bounds check, stayed within it. Rows without an interval are computed
    without training and get ``EXACT_TOL`` (p-values: ``EXACT_TOL`` in log10 units); so does a claim's
    outcome, checked exactly. Per-seed rows (seed >= 0) are left out:
    the summaries check them. Rows of a real dataset require it (``requires``); learnt scores carry
    their trivial value (``trivial_values``).
    """
    from sbir_core.data.registry import LOADERS

    df = fresh[fresh["seed"] < 0].copy()
    base = df["metric"].str.replace(r"_ci95_(lo|hi)$", "", regex=True)
    group = ["dataset", "method", "protocol", "setting", "split"]
    bounds = df.assign(base=base).pivot_table(index=group + ["base"], columns="metric", values="value", aggfunc="first")
    half = {}
    for key, row in bounds.iterrows():
        lo, hi = row.get(f"{key[-1]}_ci95_lo"), row.get(f"{key[-1]}_ci95_hi")
        if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
            half[key] = max((hi - lo) / 2, EXACT_TOL)
    parts = df[df["metric"].isin(SE_PARTS)].pivot_table(index=group, columns="metric", values="value", aggfunc="first")
    se_total = {k: float(np.hypot(*[np.nan_to_num(row.get(p, 0.0)) for p in SE_PARTS])) for k, row in parts.iterrows()}
    tols = []
    for (_, r), b, bound in zip(df.iterrows(), base, (base != df["metric"]).to_numpy()):
        h = half.get(tuple(r[g] for g in group) + (b,))
        if r["metric"] in SE_PARTS:  # a part of a trained claim's standard error may move by the whole of it
            tols.append(max(se_total.get(tuple(r[g] for g in group), EXACT_TOL), EXACT_TOL))
            continue
        if r["metric"] == "mde_rel":  # a multiple of the standard error: as uncertain as an interval's width
            tols.append(float(r["value"]) if np.isfinite(r["value"]) else EXACT_TOL)
            continue
        tols.append(EXACT_TOL if h is None else 2 * h if bound else h)
    df["tol"] = tols
    real = set(LOADERS) - {"style_world"}
    # a dataset made of two (e.g. "pacs_quickdraw": QuickDraw queries, PACS gallery) requires both
    df["requires"] = [
        d if d in real else "+".join(d.split("_")) if all(x in real for x in d.split("_")) else ""
        for d in df["dataset"]
    ]
    df["trivial"] = trivial_values(df)
    return df


def expect(
    chapter: str, tol: float | None, note: str, requires: str = "", scale: str = "ci", path: Path = EXPECTED
) -> int:
    """Record a chapter's fresh numbers as its expected values (replacing that chapter's rows).

    For maintainers, after a deliberate change. ``tol`` None derives each row's tolerance from the
    chapter's intervals (``derived_tolerances``); a number sets one tolerance for every row.
    """
    fresh = load_metrics(scale, chapter)
    if fresh.empty:
        print(f"[expect] no fresh metrics for {chapter}; run it first")
        return 1
    if tol is None:
        rows = derived_tolerances(fresh).assign(note=note)
        if requires:
            rows["requires"] = requires
        rows = rows[EXPECTED_COLUMNS]
    else:
        rows = fresh.assign(tol=tol, trivial=trivial_values(fresh), requires=requires, note=note)[EXPECTED_COLUMNS]
    old = load_expected(path, allow_empty=True) if path.exists() else pd.DataFrame(columns=EXPECTED_COLUMNS)
    new = pd.concat([old[old["chapter"] != chapter], rows], ignore_index=True).sort_values(KEY)
    new.to_csv(path, index=False, float_format="%.10g", na_rep="nan")
    print(f"[expect] {len(rows)} rows of {chapter} written to {path}")
    return 0


def _browse(pages, shots: bool = False) -> list[str]:
    """The built pages in headless Chromium at a laptop's and a phone's width (``pages.browse``), with ``shots`` a
    full-page screenshot of each in ``_build/screenshots``; without a browser, said and skipped, except under
    ``SBIR_REQUIRE_BROWSER=1`` (CI)."""
    from sbir_core.browser import BrowserError
    from sbir_core.pages import browse

    try:
        return browse(pages, shots=REPO_ROOT / "_build" / "screenshots" if shots else None)
    except BrowserError as err:
        if os.environ.get("SBIR_REQUIRE_BROWSER") == "1":
            return [f"the pages could not be opened in a browser: {err}"]
        print(f"[build] pages not checked in a browser: {err}")
        return []


def build(builder: str = "html", shots: bool = False) -> int:
    """Build the book from the executed notebooks with warnings as errors, and fail on what a reader must not meet
    on a page (stderr, warning or traceback text, "nan"; ``sbir_core.pages``); return the exit code. ``shots``: keep
    a screenshot of every page at each width checked (half of the check's time: 16 of 32 s here; off in
    ``make test``, where nobody looks at them)."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [
        str(jb) if jb.exists() else "jupyter-book",
        "build",
        str(REPO_ROOT),
        "-W",
        "-n",
        "--keep-going",
        "--builder",
        builder,
    ]
    missing = [c for c in chapters() if not (BOOK / f"{c}.ipynb").exists()]
    if missing:
        print(f"[build] not executed yet: {', '.join(missing)}; run `python -m sbir_core.book run` first")
        return 1
    from sbir_core.pages import html_problems, notebook_problems

    problems = notebook_problems(BOOK / f"{c}.ipynb" for c in chapters())
    code = subprocess.call(cmd, cwd=REPO_ROOT)
    if code == 0 and builder == "html":
        html = REPO_ROOT / "_build" / "html"
        pages = [f for f in html.rglob("*.html") if not f.relative_to(html).parts[0].startswith("_")]
        problems += html_problems(sorted(pages))
        problems += _browse(sorted(pages), shots)
    if problems:  # what a reader must not meet on a page (sbir_core.pages)
        print(f"[build] {len(problems)} page problem(s):\n  " + "\n  ".join(problems))
        return 1
    if code == 0:
        print(f"[build] open {REPO_ROOT / '_build' / 'html' / 'index.html'}")
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sbir_core.book", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute chapters with papermill")
    p_run.add_argument("--scale", choices=SCALES, default="ci")
    p_run.add_argument("--only", nargs="+", metavar="CHAPTER", help="chapter names, e.g. 01_evaluation")
    p_run.add_argument("--force", action="store_true", help="run chapters even when they are up to date")
    p_run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter for every chapter that has it, e.g. --set SEED=3 --set WORLD='{seed: 7}'",
    )
    p_run.add_argument("--out", type=Path, default=None, help="write results and notebooks here, not paper_runs/")
    p_run.add_argument(
        "--jobs",
        type=int,
        default=cores(),
        help="chapters run side by side, one thread each (default: this machine's cores, %(default)s); "
        "the numbers do not depend on it",
    )
    p_run.add_argument(
        "--smoke",
        action="store_true",
        help="a few steps of every part at the scale's image sizes and encoders (paper_runs/configs/smoke.yaml); "
        "needs --out: its numbers are not results",
    )
    p_cmp = sub.add_parser("compare", help="every claim's outcome and effect in two runs of the book, side by side")
    p_cmp.add_argument("a", type=Path, help="a results folder (paper_runs, or a run's --out)")
    p_cmp.add_argument("b", type=Path)
    p_cmp.add_argument("--scale", choices=SCALES, default="ci")
    p_check = sub.add_parser("check", help="compare fresh ci metrics with paper_runs/ci/expected.csv")
    p_check.add_argument(
        "--require-data",
        action="store_true",
        help="fail when a row is skipped because its dataset is absent (CI has the data)",
    )
    sub.add_parser("validate", help="dry run: every chapter has a config at every scale naming only its parameters")
    p_exp = sub.add_parser("expect", help="record a chapter's fresh ci numbers as expected (maintainers)")
    p_exp.add_argument("chapter")
    p_exp.add_argument(
        "--tol",
        type=float,
        default=None,
        help="absolute tolerance of every row (default: each row's from the chapter's intervals)",
    )
    p_exp.add_argument("--note", required=True, help="why this tolerance")
    p_exp.add_argument("--requires", default="", help="dataset the rows need, if any")
    p_exp.add_argument(
        "--platform",
        default="",
        help="record into expected.PLATFORM.csv, another platform's recording (book.recordings), not expected.csv",
    )
    p_build = sub.add_parser("build", help="build the HTML book (no execution)")
    p_build.add_argument("--builder", default="html")
    p_build.add_argument(
        "--shots", action="store_true", help="a full-page screenshot of every page at each width, in _build/screenshots"
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        overrides = parse_set(args.set)
        if args.smoke:
            if args.out is None:
                parser.error("--smoke writes into a folder of its own: give --out DIR")
            overrides = smoke_overrides() | overrides
        return 1 if run(args.scale, args.only, args.force, overrides, args.out, max(1, args.jobs)) else 0
    if args.command == "compare":
        both = compare_runs(args.a, args.b, args.scale)
        _print_comparison(both, args.a, args.b)
        return 0
    if args.command == "check":
        return check(require_data=args.require_data)
    if args.command == "validate":
        problems = validate()
        for p in problems:
            print(f"[validate] {p}")
        print(f"[validate] {len(chapters())} chapters x {len(SCALES)} scales: {len(problems)} problem(s)")
        return 1 if problems else 0
    if args.command == "expect":
        path = EXPECTED.with_name(f"{EXPECTED.stem}.{args.platform}{EXPECTED.suffix}") if args.platform else EXPECTED
        return expect(args.chapter, args.tol, args.note, args.requires, path=path)
    return build(args.builder, args.shots)


if __name__ == "__main__":
    sys.exit(main())
