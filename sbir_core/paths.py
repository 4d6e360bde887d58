"""Where things are: the repository root and its folders, in one place."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK = REPO_ROOT / "book"
RUNS = REPO_ROOT / "paper_runs"  # configs, reference numbers, expected ci numbers (committed)
CONFIGS = RUNS / "configs"
PACKAGE = REPO_ROOT / "sbir_core"
