"""The root of the package's own errors.

Every error ``sbir_core`` raises on purpose derives from ``SBIRError`` (and, where a caller would
expect it, from the built-in kind too: a bad stroke array is also a ``ValueError``), so an
application can catch everything the package refuses in one clause and let genuine bugs through.
"""


class SBIRError(Exception):
    """Something the package refuses or cannot do, said in words a reader can act on."""


class ConfigError(SBIRError, ValueError):
    """A chapter config that cannot be used: unreadable, not YAML, a tag that would build an object, or not a
    mapping of UPPER_CASE names. A ValueError, as callers caught before; the message names the file."""


class MissingConfig(ConfigError, FileNotFoundError):
    """No config file for a chapter at a scale (also a FileNotFoundError, as callers caught before)."""
