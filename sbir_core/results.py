"""Tidy result files: ``paper_runs/<scale>/<chapter>/{metrics.csv, params.yaml, env.json}``.

Every number a chapter reports goes through ``save_results``; tables and the CI check read the
files back. Writes are atomic: a folder is filled beside the old one and swapped in, so a
failing run never leaves half-written results and never destroys the last good ones. Writers of
one chapter take a lock (``.<chapter>.lock``), so two processes saving at once both succeed, the
last one's files win whole. Temporary folders (``.<chapter>.*``, left by a killed run) are never
read as results and are removed by the next save.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from sbir_core.errors import SBIRError
from sbir_core.paths import REPO_ROOT, RUNS

SCALES = ("ci", "paper")


class ResultsError(SBIRError, ValueError):
    """A result, expected or timing file that cannot be read or is not valid; the message names the file."""


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive advisory lock on ``path`` (created if absent), held for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_table(path: Path, **options) -> pd.DataFrame:
    """``pd.read_csv`` whose every failure is a ResultsError naming the file (not a pandas traceback)."""
    try:
        return pd.read_csv(path, **options)
    except (
        OSError,
        ValueError,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        OverflowError,
        MemoryError,
    ) as err:
        raise ResultsError(f"{path}: not a readable table ({type(err).__name__}: {str(err)[:300]})") from err


KEY = ["chapter", "dataset", "method", "protocol", "setting", "split", "metric", "seed"]
COLUMNS = KEY[:-1] + ["value", "seed"]


def results_root() -> Path:
    """Where results are written: ``$SBIR_RESULTS`` if set (tests use a temporary folder), else paper_runs."""
    return Path(os.environ.get("SBIR_RESULTS", RUNS))


def chapter_dir(chapter: str, scale: str = "ci") -> Path:
    """Folder that holds one chapter's results at one scale."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return results_root() / scale / chapter


def metric_rows(chapter: str, rows: list[dict]) -> pd.DataFrame:
    """Build a tidy metrics frame from dicts with the keys of ``COLUMNS`` (chapter filled in).

    ``seed`` may be omitted (then -1: a number that does not belong to one seed, e.g. a mean);
    ``setting`` (the swept condition, "style_gap=2") may be omitted (then "").
    """
    df = pd.DataFrame(rows, columns=None if rows else COLUMNS)
    df["chapter"] = chapter
    if "seed" not in df:
        df["seed"] = -1
    if "setting" not in df:
        df["setting"] = ""
    df["setting"] = df["setting"].fillna("").astype(str)
    df["seed"] = df["seed"].fillna(-1).astype(int)
    missing = [c for c in COLUMNS if c not in df]
    if missing:
        raise ValueError(f"metric rows lack columns {missing}")
    df = df[COLUMNS].astype({"value": float})
    dup = df.duplicated(KEY)
    if dup.any():
        raise ValueError(f"duplicate metric keys:\n{df[dup].head()}")
    return df


def cpu() -> str:
    """The CPU as its model name and the instruction set PyTorch's kernels use here, e.g. "AMD EPYC (AVX512)".

    Trained numbers depend on it (``book.recordings``): the same code and seeds give other bits on another CPU.
    """
    import torch

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    return f"{model} ({torch.backends.cpu.get_cpu_capability()})"


def environment() -> dict:
    """Versions, threads, device, CPU and git revision of this run."""
    import numpy
    import torch

    try:
        rev = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu(),
        "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "git_revision": rev,
        "sbir_data": os.environ.get("SBIR_DATA"),
    }


def save_results(chapter: str, scale: str, metrics: pd.DataFrame, params: dict) -> Path:
    """Write metrics.csv, params.yaml and env.json for a chapter, atomically; return the folder."""
    target = chapter_dir(chapter, scale)
    target.parent.mkdir(parents=True, exist_ok=True)
    metrics = metric_rows(chapter, metrics.to_dict("records")) if "chapter" not in metrics else metrics
    with locked(target.parent / f".{chapter}.lock"):
        _clean_temporaries(target.parent, chapter)  # left by a killed save; no other save runs now
        tmp = Path(tempfile.mkdtemp(prefix=f".{chapter}.", dir=target.parent))
        try:
            metrics.sort_values(KEY).to_csv(tmp / "metrics.csv", index=False, float_format="%.10g", na_rep="nan")
            (tmp / "params.yaml").write_text(yaml.safe_dump(_plain(params), sort_keys=True))
            (tmp / "env.json").write_text(json.dumps(environment(), indent=2, sort_keys=True))
            old = target.with_name(f".{chapter}.old")
            if old.exists():
                shutil.rmtree(old)
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _clean_temporaries(folder: Path, chapter: str) -> None:
    for p in folder.glob(f".{chapter}.*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def load_metrics(scale: str = "ci", chapter: str | None = None) -> pd.DataFrame:
    """All metrics of a scale (or one chapter) as one frame; empty frame when none exist.

    Only chapter folders are read: hidden temporaries (``.<chapter>.*``) never count as results.
    A file that cannot be read, or lacks columns, is a ResultsError naming it.
    """
    base = results_root() / scale
    files = sorted(
        f
        for f in (base.glob(f"{chapter or '*'}/metrics.csv") if base.exists() else [])
        if not f.parent.name.startswith(".")
    )
    frames = []
    for f in files:
        df = read_table(f, keep_default_na=False, dtype=str)
        missing = [c for c in COLUMNS if c not in df]
        if missing:
            raise ResultsError(f"{f}: missing columns {missing}")
        frames.append(parse_columns(df, f, ["value"], ["seed"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def parse_columns(df: pd.DataFrame, path: Path, floats: list[str], ints: list[str]) -> pd.DataFrame:
    """Number columns of a table read as text; a ResultsError names the file, line and value that is not one."""
    for col in floats + ints:
        out = []
        for i, v in enumerate(df[col]):
            try:
                out.append(float(v) if str(v) != "" else float("nan")) if col in floats else out.append(int(v))
            except (TypeError, ValueError) as err:
                raise ResultsError(
                    f"{path}, line {i + 2}: column {col!r} holds {str(v)[:40]!r}, "
                    f"not a {'number' if col in floats else 'whole number'}"
                ) from err
        df[col] = out
    return df


def numeric(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Parse number columns read with ``keep_default_na=False`` (which keeps "" and "nan" as text)."""
    for col in columns:
        df[col] = [float(v) if str(v) != "" else float("nan") for v in df[col]]
    return df


def load_reference(name: str | None = None) -> pd.DataFrame:
    """Published numbers from ``paper_runs/reference/*.csv`` (one row per number, with source)."""
    files = sorted((RUNS / "reference").glob(f"{name or '*'}.csv"))
    frames = [pd.read_csv(f, keep_default_na=False) for f in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj
