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
    overrides).

    Whatever is wrong with the file (absent, unreadable, not UTF-8, not YAML, a ``!!python/...`` tag that
    ``safe_load`` refuses to build, not a mapping of UPPER_CASE names) is a ``ConfigError`` naming it, so that a
    reader sees which file to fix rather than a parser's traceback.
    """
    import yaml

    from sbir_core.errors import ConfigError, MissingConfig

    path = CONFIGS / scale / f"{chapter}.yaml"
    if not path.exists():
        raise MissingConfig(f"no config for {chapter} at scale {scale}: expected {path}")
    try:
        with open(path, encoding="utf-8") as f:  # a file, so that the parser's messages name it too
            params = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:  # syntax errors, and tags such as !!python/object that safe_load will not build
        raise ConfigError(f"{path}: not a valid chapter config: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the chapter config: {err}") from None
    if not isinstance(params, dict) or not all(isinstance(k, str) and k.isupper() for k in params):
        raise ConfigError(f"{path}: parameters must be a mapping of UPPER_CASE names")
    return params | {"SCALE": scale}
