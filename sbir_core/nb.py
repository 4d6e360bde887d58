"""Small helpers for chapters: glue numbers into prose safely."""

from __future__ import annotations

import re

_KEY = re.compile(r"^c\d\d_[a-z0-9_]+$")


def glue(key: str, value, display: bool = False):
    """``myst_nb.glue`` with the book's conventions: keys ``cNN_name``; NumPy scalars as Python numbers.

    NumPy 2 prints scalars as ``np.float64(0.5)``, which the book's ``{glue:text}`key:.1%` ``
    formatting cannot parse, so they are converted first.
    """
    from myst_nb import glue as _glue

    if not _KEY.match(key):
        raise ValueError(f"glue key {key!r} must look like c01_name (chapter number, lower-case name)")
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    return _glue(key, value, display=display)
