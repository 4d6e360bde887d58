"""Datasets by name: ``load_dataset("shoes304")``, with ``SBIR_DATA`` as the default root."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from sbir_core.data.base import DataError, SBIRData, data_root  # noqa: F401 - data_root is part of the registry's face

# name -> "module:function"; each loader takes (root: Path | None, **options) -> SBIRData.
# The style world needs no root; real datasets look under <root>/<folder>.
LOADERS: dict[str, str] = {
    "style_world": "sbir_core.data.synthetic:load",
    "shoev2": "sbir_core.data.qmul:load_shoev2",
    "chairv2": "sbir_core.data.qmul:load_chairv2",
    "shoes304": "sbir_core.data.shoes304:load",
    "sketchy": "sbir_core.data.sketchy:load",
    "tuberlin": "sbir_core.data.folders:load_tuberlin",
    "pacs": "sbir_core.data.folders:load_pacs",
    "domains": "sbir_core.data.folders:load_domains",
    "pacs_sketchy": "sbir_core.data.folders:load_pacs_sketchy",
    "quickdraw": "sbir_core.data.quickdraw:load",
    "quickdraw_sample": "sbir_core.data.sample:load",  # shipped in the package (CC BY 4.0): always there
}

# name -> "module:function" taking (root) and returning the dataset's path, or raising a DataError
# that names the missing file and shows the expected layout. Datasets without an entry need no files.
LAYOUT_CHECKS: dict[str, str] = {
    "shoev2": "sbir_core.data.qmul:check_shoev2",
    "chairv2": "sbir_core.data.qmul:check_chairv2",
    "shoes304": "sbir_core.data.shoes304:check",
    "sketchy": "sbir_core.data.sketchy:check",
    "tuberlin": "sbir_core.data.folders:check_tuberlin",
    "pacs": "sbir_core.data.folders:check_pacs",
    "domains": "sbir_core.data.folders:check_pacs",  # its default folder is pacs/
    "pacs_sketchy": "sbir_core.data.folders:check_pacs",
    "quickdraw": "sbir_core.data.quickdraw:check",
    "quickdraw_sample": "sbir_core.data.sample:check",
}


def _resolve(table: dict[str, str], name: str):
    module, func = table[name].split(":")
    return getattr(importlib.import_module(module), func)


def _call(table: dict[str, str], name: str, root, **options):
    """A loader or layout check, with an OSError (a folder or file that cannot be listed or read: no
    permission, an I/O error, a link loop) turned into a DataError naming the dataset, the path and why,
    so that one ``except DataError`` covers every way the data can be unusable."""
    try:
        return _resolve(table, name)(root, **options)
    except OSError as err:
        where = os.fsdecode(err.filename) if err.filename is not None else "its data folder"
        raise DataError(f"{name}: cannot read {where}: {err.strerror or err}") from err


def check_layout(name: str, root: str | os.PathLike | None = None) -> Path | None:
    """The layout check of one dataset: its path, or a DataError naming what is missing and the
    expected layout. None for datasets that need no files (the style world)."""
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(LOADERS))}")
    if name not in LAYOUT_CHECKS:
        return None
    return _call(LAYOUT_CHECKS, name, root)


def available(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether ``name`` can be loaded from the data root (its layout check passes); never raises
    for absent data (an unknown name is still an error)."""
    try:
        check_layout(name, root)
    except DataError:
        if name not in LOADERS:
            raise
        return False
    return True


def load_dataset(name: str, root: str | os.PathLike | None = None, **options) -> SBIRData:
    """Load a dataset by its registered name (see ``LOADERS``)."""
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(LOADERS))}")
    return _call(LOADERS, name, root, **options)
