"""``python -m sbir_core.bench book``: the book's chapters run as ``book run --jobs`` runs them, timed cold."""

import os
import subprocess
import sys

from sbir_core.paths import REPO_ROOT


def test_two_chapters_run_side_by_side_in_their_own_processes_and_are_timed():
    """The spawned workers of ``book run --jobs 2`` (the path ``make test`` takes on two cores) execute real
    chapters: both start before either finishes, both finish ok, and the wall time is printed. With ``--warm`` (the
    project's caches): the rasters and statistics these chapters compute are the ones ``make test``'s book run reads
    next, instead of being computed twice, once into a temporary cache."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "sbir_core.bench", "book", "--only", "01_evaluation", "03_real_data", "--jobs", "2"]
    cmd.append("--warm")
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    events = [line for line in lines if line.startswith("[run] ")]
    first_done = next(i for i, line in enumerate(events) if " done in " in line)
    assert sum(line.endswith("(ci) ...") for line in events[:first_done]) == 2, events
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0][:2].isdigit()}
    assert set(rows) == {"01_evaluation", "03_real_data"}
    assert all(row.rstrip().endswith("ok") for row in rows.values()), rows
    assert any(line.startswith("total (wall)") and "warm caches, 2 chapters side by side" in line for line in lines), (
        lines
    )
