"""Datasets by name: ``load_dataset("shoes304")``, with ``SBIR_DATA`` as the default root."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from sbir_core.data.base import DataError, SBIRData

# name -> "module:function"; each loader takes (root: Path | None, **options) -> SBIRData.
# The style world needs no root; real datasets look under <root>/<folder>.
LOADERS: dict[str, str] = {
    "style_world": "sbir_core.data.synthetic:load",
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$SBIR_DATA``; a DataError when neither is set."""
    value = root if root is not None else os.environ.get("SBIR_DATA")
    if not value:
        raise DataError("no data root: pass root=... or set SBIR_DATA to the folder that holds the datasets")
    return Path(value).expanduser()


def load_dataset(name: str, root: str | os.PathLike | None = None, **options) -> SBIRData:
    """Load a dataset by its registered name (see ``LOADERS``)."""
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(LOADERS))}")
    module, func = LOADERS[name].split(":")
    return getattr(importlib.import_module(module), func)(root, **options)
