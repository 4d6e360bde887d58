"""Load pickles that may only rebuild numpy arrays: nothing in the file can run code.

Admitted: ``numpy.core.multiarray._reconstruct`` and ``.scalar`` (both the ``numpy.core`` and
``numpy._core`` spellings), ``numpy.ndarray``, ``numpy.dtype``, ``numpy._core.numeric._frombuffer``
(protocol 5 arrays) and ``_codecs.encode`` restricted to latin-1 text (protocol <= 2 bytes).

The QMUL ``*_Coordinate`` files and sketch-rnn ``.npz`` object arrays are pickles. A bare
``pickle.load`` runs whatever callable the file names; this unpickler resolves only the few
globals that numpy's own array pickles use, and refuses every other one with a DataError
naming it. Persistent ids and protocol-0 ``INST``/``OBJ`` go through the same check.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from sbir_core.data.base import DataError

# The callables numpy's pickles name, taken from numpy itself so that both spellings
# (numpy.core before 2.0, numpy._core since) resolve to the running version's objects.
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 rebuilds arrays from a bytes buffer


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """The only use of ``_codecs.encode`` in numpy pickles of protocol <= 2: bytes stored as latin-1 text."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise UnsafePickleError(f"refused _codecs.encode({type(text).__name__}, {encoding!r}): "
                                "only latin-1 text to bytes is allowed")
    return text.encode("latin1")


ALLOWED: dict[tuple[str, str], object] = {}
for _pkg in ("numpy.core", "numpy._core"):
    ALLOWED[(f"{_pkg}.multiarray", "_reconstruct")] = _RECONSTRUCT
    ALLOWED[(f"{_pkg}.multiarray", "scalar")] = _SCALAR
    ALLOWED[(f"{_pkg}.numeric", "_frombuffer")] = _FROMBUFFER
ALLOWED[("numpy", "ndarray")] = np.ndarray
ALLOWED[("numpy", "dtype")] = np.dtype
ALLOWED[("_codecs", "encode")] = _latin1_bytes


class UnsafePickleError(DataError):
    """A pickle that names a global other than numpy's array reconstruction."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` admits only numpy array reconstruction (see ``ALLOWED``)."""

    def __init__(self, file, *, source: str = "<pickle>", encoding: str = "ASCII"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refused to load: the pickle asks for {module}.{name}, and only numpy "
                f"array reconstruction ({', '.join(sorted({f'{m}.{n}' for m, n in ALLOWED}))}) is "
                f"allowed; a file that names other callables may run code when loaded") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refused to load: persistent id {pid!r} in the pickle")


def loads(data: bytes, source: str = "<bytes>", encoding: str = "ASCII"):
    """Unpickle bytes with ``NumpyOnlyUnpickler``; every failure is a DataError naming ``source``."""
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data), source=source, encoding=encoding).load()
    except DataError:
        raise
    except MemoryError as err:
        raise DataError(f"{source}: the pickle asks for more memory than there is ({err})") from err
    except Exception as err:  # noqa: BLE001 - any failure of a malformed pickle becomes one clear error
        raise DataError(f"{source}: not a readable pickle of numpy arrays "
                        f"({type(err).__name__}: {err})") from err


def load(path: str | Path, encoding: str = "ASCII"):
    """Unpickle a file with ``NumpyOnlyUnpickler``; a DataError names the file when it fails."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    return loads(data, str(path), encoding)
