"""Load pickles that may only hold data: numbers, text, containers and numeric numpy arrays.

The QMUL ``*_Coordinate`` files and sketch-rnn ``.npz`` object arrays are pickles. A bare
``pickle.load`` runs whatever callable the file names; this unpickler resolves only the names
numpy's own array pickles use, and not to numpy's callables but to checked stand-ins:

* ``numpy.core.multiarray._reconstruct`` (and the ``numpy._core`` spelling) with ``numpy.ndarray``
  as its class, followed by the one state numpy writes, ``(1, shape, dtype, fortran, raw bytes)``:
  the array is rebuilt with ``np.frombuffer`` from bytes whose length must match shape and dtype;
* ``numpy.dtype`` for plain numeric codes (bool, int, uint, float, complex) with numpy's state;
* ``numpy.core.multiarray.scalar`` and ``numpy._core.numeric._frombuffer`` (protocol 5) of those dtypes;
* ``_codecs.encode`` of latin-1 text (how protocol <= 2 stores bytes).

Nothing the file names can be called any other way: ``numpy.ndarray`` is a token that only
``_reconstruct`` accepts (calling it directly would build an array over arbitrary memory), and
every stand-in refuses a second state or a state of another form (BUILD cannot write attributes).
The stand-ins are made afresh for each load and every name resolves to one of them, never to a function or
class of this module: a pickle's BUILD on a name is refused, so no file can change the defaults or attributes
that a later load relies on (the module keeps no state between loads).
Object arrays (an array of Python objects) are refused unless the caller passes
``object_items``, the shape every element must have; then each element must itself be a numeric
array of that shape (sketch-rnn stores lists of (n, 3) stroke arrays this way).
Every refusal is an UnsafePickleError (a DataError) naming the source.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

import numpy as np

from sbir_core.data.base import DataError

NUMERIC_KINDS = "biufc"  # bool, signed, unsigned, float, complex: data that cannot point anywhere
MAX_DEPTH = 200  # containers nested deeper than this are not data a loader reads


class UnsafePickleError(DataError):
    """A pickle that names a global, or builds an object, other than numpy's plain array reconstruction."""


class _Refused(UnsafePickleError):
    """Raised inside a stand-in; ``loads`` adds the source to the message."""


class _Stub:
    """A value under construction: numpy's pickles create an object, then set its state once."""

    done = False

    def __setstate__(self, state):
        what = getattr(self, "name", type(self).__name__.strip("_"))
        raise _Refused(f"refused to set the state of {what} (attribute writes are not data)")

    def value(self):
        raise NotImplementedError


class _NdarrayToken(_Stub):
    """What ``numpy.ndarray`` resolves to: accepted as ``_reconstruct``'s class argument, never called."""

    def __call__(self, *args, **kwargs):
        raise _Refused(
            "refused to call numpy.ndarray directly: it can build an array over arbitrary memory; "
            "only numpy's _reconstruct + state form is allowed"
        )

    def value(self):
        raise _Refused("a bare numpy.ndarray class is not data")


class _Callable(_Stub):
    """A name the pickle may call (``numpy.dtype``, ``_codecs.encode``...), one per load: calling it calls
    ``fn``; setting its state is refused (``_Stub``), so a pickle cannot reach ``fn``'s attributes or defaults."""

    def __init__(self, name: str, fn):
        self.name, self.fn = name, fn

    def __call__(self, *args):
        return self.fn(*args)

    def value(self):
        raise _Refused(f"{self.name} itself is not data")


class _Dtype(_Stub):
    """``numpy.dtype(code, align, copy)`` for a plain numeric (or, when asked, object) code."""

    def __init__(self, code, align=False, copy=True):
        if not isinstance(code, str) or len(code) > 8:
            raise _Refused(f"refused numpy.dtype({code!r}): only plain type codes such as 'f8' are allowed")
        try:
            dt = np.dtype(code)
        except TypeError as err:
            raise _Refused(f"refused numpy.dtype({code!r}): {err}") from None
        if dt.kind not in NUMERIC_KINDS + "O" or dt.fields is not None or dt.subdtype is not None:
            raise _Refused(f"refused numpy.dtype({code!r}): only numeric dtypes are data")
        self.dtype = dt

    def __setstate__(self, state):
        if self.done:
            raise _Refused("refused a second state for numpy.dtype")
        ok = (
            isinstance(state, tuple)
            and len(state) in (8, 9)
            and state[0] in (3, 4)
            and state[1] in ("<", ">", "|", "=")
            and state[2:5] == (None, None, None)
            and state[5] in (-1, self.dtype.itemsize)
            and state[6] in (-1, self.dtype.alignment)
        )
        if not ok:
            raise _Refused(f"refused numpy.dtype state {_short(state)}: only a plain dtype's byte order is allowed")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])
        self.done = True

    def value(self):
        return self.dtype


def _dtype_of(obj, what: str) -> np.dtype:
    if not isinstance(obj, _Dtype):
        raise _Refused(f"{what}: expected a numpy dtype, got {type(obj).__name__}")
    return obj.dtype


def _raw_bytes(raw, what: str) -> bytes:
    if isinstance(raw, str):  # Python 2 pickles read with encoding="latin1"
        raw = raw.encode("latin1")
    if isinstance(raw, pickle.PickleBuffer):
        raw = bytes(raw.raw())
    if not isinstance(raw, (bytes, bytearray)):
        raise _Refused(f"{what}: array data must be bytes, got {type(raw).__name__}")
    return bytes(raw)


def _from_bytes(raw: bytes, dtype: np.dtype, shape, order: str, what: str) -> np.ndarray:
    if not (
        isinstance(shape, tuple)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        and len(shape) <= 32
    ):
        raise _Refused(f"{what}: bad array shape {_short(shape)}")
    count = math.prod(shape)
    if count * dtype.itemsize != len(raw):
        raise _Refused(
            f"{what}: shape {shape} of {dtype} needs {count * dtype.itemsize} bytes, the pickle holds {len(raw)}"
        )
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if order in (True, "F") else "C")
    return arr.astype(dtype.newbyteorder("="), copy=True)  # native, writable, owning its memory


class _Array(_Stub):
    """``_reconstruct(ndarray, (0,), b'b')`` then numpy's state ``(1, shape, dtype, fortran, data)``."""

    def __init__(self, unpickler: NumpyOnlyUnpickler):
        self.unpickler = unpickler
        self.array = None

    def __setstate__(self, state):
        if self.done:
            raise _Refused("refused a second state for one array")
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1 and isinstance(state[3], bool)):
            raise _Refused(f"refused array state {_short(state)}: only numpy's (1, shape, dtype, fortran, data) form")
        _, shape, dt, fortran, raw = state
        dtype = _dtype_of(dt, "array state")
        if dtype.kind == "O":
            self.array = self.unpickler.object_array(shape, raw)
        else:
            self.array = _from_bytes(_raw_bytes(raw, "array state"), dtype, shape, fortran, "array state")
        self.done = True

    def value(self):
        if not self.done:
            raise _Refused("an array was created but never given its data")
        return self.array


class _Value(_Stub):
    """A finished value (scalar, protocol-5 array): no state may follow."""

    def __init__(self, v):
        self.v = v
        self.done = True

    def value(self):
        return self.v


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """The only use of ``_codecs.encode`` in numpy pickles of protocol <= 2: bytes stored as latin-1 text."""
    if (
        not isinstance(text, str)
        or not isinstance(encoding, str)
        or encoding.lower().replace("-", "").replace("_", "") != "latin1"
    ):
        raise _Refused(
            f"refused _codecs.encode({type(text).__name__}, {encoding!r}): only latin-1 text to bytes is allowed"
        )
    return text.encode("latin1")


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An Unpickler that builds data only: ``find_class`` gives checked stand-ins (see the module doc).

    ``object_items``: None refuses object arrays; a shape pattern such as ``(None, 3)`` admits
    object arrays whose every element is a numeric array of that shape (None: any length).
    """

    def __init__(self, file, *, source: str = "<pickle>", encoding: str = "ASCII", object_items=None):
        super().__init__(file, encoding=encoding)
        self.source = source
        self.object_items = object_items
        self.ndarray = _NdarrayToken()
        names = {("numpy", "dtype"): _Dtype, ("_codecs", "encode"): _latin1_bytes}
        for pkg in ("numpy.core", "numpy._core"):
            names[(f"{pkg}.multiarray", "_reconstruct")] = self._reconstruct
            names[(f"{pkg}.multiarray", "scalar")] = self._scalar
            names[(f"{pkg}.numeric", "_frombuffer")] = self._frombuffer
        self.allowed = {key: _Callable(".".join(key), fn) for key, fn in names.items()}
        self.allowed[("numpy", "ndarray")] = self.ndarray

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refused to load: the pickle asks for {module}.{name}, and only numpy "
                f"array reconstruction ({', '.join(sorted({f'{m}.{n}' for m, n in self.allowed}))}) is "
                f"allowed; a file that names other callables may run code when loaded"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refused to load: persistent id {_short(pid)} in the pickle")

    # the stand-ins numpy's names resolve to
    def _reconstruct(self, cls, shape, typecode):
        if cls is not self.ndarray:
            raise _Refused(f"refused _reconstruct of {getattr(cls, 'name', type(cls).__name__)}: only numpy.ndarray")
        return _Array(self)

    def _scalar(self, dt, raw=None):
        dtype = _dtype_of(dt, "scalar")
        if dtype.kind == "O":
            raise _Refused("refused an object scalar: only numeric scalars are data")
        return _Value(_from_bytes(_raw_bytes(raw, "scalar"), dtype, (), "C", "scalar")[()])

    def _frombuffer(self, buf, dt, shape, order):
        dtype = _dtype_of(dt, "_frombuffer")
        if dtype.kind == "O":
            raise _Refused("refused _frombuffer of objects")
        return _Value(_from_bytes(_raw_bytes(buf, "_frombuffer"), dtype, shape, order, "_frombuffer"))

    def object_array(self, shape, items) -> np.ndarray:
        """An object array's flat item list, admitted only as numeric arrays of ``object_items`` shape."""
        if self.object_items is None:
            raise _Refused("refused an object array: this loader reads numeric arrays only")
        if not isinstance(items, list) or not isinstance(shape, tuple) or len(shape) != 1 or shape[0] != len(items):
            raise _Refused(
                f"refused an object array of shape {_short(shape)} holding {type(items).__name__}: "
                "expected a flat list of arrays"
            )
        out = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            arr = item.value() if isinstance(item, _Stub) else item
            pattern = self.object_items
            if (
                not isinstance(arr, np.ndarray)
                or arr.dtype.kind not in NUMERIC_KINDS
                or arr.ndim != len(pattern)
                or any(p is not None and p != n for p, n in zip(pattern, arr.shape))
            ):
                raise _Refused(
                    f"object array item {i}: expected a numeric array of shape {pattern}, got "
                    f"{type(arr).__name__} {getattr(arr, 'shape', '')} {getattr(arr, 'dtype', '')}"
                )
            out[i] = arr
        return out


def _short(obj, n: int = 80) -> str:
    text = repr(obj) if not isinstance(obj, (bytes, bytearray)) or len(obj) < n else f"<{len(obj)} bytes>"
    return text if len(text) <= n else text[:n] + "..."


def _materialise(obj, depth: int = 0, seen=None):
    """Replace stand-ins by their values in the containers a pickle can build; refuse anything else."""
    if depth > MAX_DEPTH:
        raise _Refused(f"containers nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, _Stub):
        return obj.value()
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, np.ndarray, np.generic)):
        return obj
    seen = {} if seen is None else seen
    if id(obj) in seen:
        if seen[id(obj)] is None:
            raise _Refused("a container that holds itself is not data a loader reads")
        return seen[id(obj)]
    seen[id(obj)] = None
    if isinstance(obj, list):
        out = [_materialise(v, depth + 1, seen) for v in obj]
    elif isinstance(obj, tuple):
        out = tuple(_materialise(v, depth + 1, seen) for v in obj)
    elif isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, _Stub):
                raise _Refused("an array as a dict key is not data")
            out[k] = _materialise(v, depth + 1, seen)
    elif isinstance(obj, (set, frozenset)):
        if any(isinstance(v, _Stub) for v in obj):
            raise _Refused("arrays in a set are not data")
        out = obj
    elif isinstance(obj, bytearray):
        out = bytes(obj)
    else:
        raise _Refused(f"a {type(obj).__name__} is not data")
    seen[id(obj)] = out
    return out


def loads(data: bytes, source: str = "<bytes>", encoding: str = "ASCII", object_items=None):
    """Unpickle bytes with ``NumpyOnlyUnpickler``; every failure is a DataError naming ``source``.

    ``object_items``: see ``NumpyOnlyUnpickler`` (None: object arrays are refused).
    """
    try:
        raw = NumpyOnlyUnpickler(io.BytesIO(data), source=source, encoding=encoding, object_items=object_items).load()
        return _materialise(raw)
    except _Refused as err:
        raise UnsafePickleError(f"{source}: refused to load: {err}") from None
    except DataError:
        raise
    except MemoryError as err:
        raise DataError(f"{source}: the pickle asks for more memory than there is ({err})") from err
    except RecursionError as err:
        raise DataError(f"{source}: the pickle nests too deeply to be data ({err})") from err
    except Exception as err:  # noqa: BLE001 - any failure of a malformed pickle becomes one clear error
        raise DataError(
            f"{source}: not a readable pickle of numpy arrays ({type(err).__name__}: {_short(str(err), 200)})"
        ) from err


def load(path: str | Path, encoding: str = "ASCII", object_items=None):
    """Unpickle a file with ``NumpyOnlyUnpickler``; a DataError names the file when it fails."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    return loads(data, str(path), encoding, object_items)
