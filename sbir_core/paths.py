"""Where things are: the repository root and its folders, in one place."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK = REPO_ROOT / "book"
RUNS = REPO_ROOT / "paper_runs"  # configs, reference numbers, expected ci numbers (committed)
CONFIGS = RUNS / "configs"
PACKAGE = REPO_ROOT / "sbir_core"


def chapter_config(chapter: str, scale: str) -> dict:
    """The parameters of one chapter at one scale, as its YAML config holds them, with ``SCALE``: the one reader of
    ``paper_runs/configs/<scale>/<chapter>.yaml`` (``book.load_params``; ``recipes.load_params`` adds a run's
    overrides)."""
    import yaml

    path = CONFIGS / scale / f"{chapter}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no config for {chapter} at scale {scale}: expected {path}")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) and k.isupper() for k in params):
        raise ValueError(f"{path}: parameters must be a mapping of UPPER_CASE names")
    return params | {"SCALE": scale}
