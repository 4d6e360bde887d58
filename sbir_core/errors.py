"""The root of the package's own errors.

Every error ``sbir_core`` raises on purpose derives from ``SBIRError`` (and, where a caller would
expect it, from the built-in kind too: a bad stroke array is also a ``ValueError``), so an
application can catch everything the package refuses in one clause and let genuine bugs through.
"""


class SBIRError(Exception):
    """Something the package refuses or cannot do, said in words a reader can act on."""
