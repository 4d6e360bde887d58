"""safe_pickle: numpy arrays load, anything that could run code is refused with a clear error."""

import os
import pickle

import numpy as np
import pytest

from sbir_core.data import safe_pickle
from sbir_core.data.base import DataError
from sbir_core.data.safe_pickle import UnsafePickleError


class _Planted:
    """Unpickling this runs os.system: the classic pickle exploit."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_arrays_round_trip_in_every_protocol(protocol):
    data = {
        "/train/a_b_1": np.arange(12.0).reshape(4, 3),
        "i": np.array([1, 2], np.int16),
        "s": np.float32(2.5),
        "n": [1, "x", (2.0, None)],
    }
    out = safe_pickle.loads(pickle.dumps(data, protocol=protocol))
    assert np.array_equal(out["/train/a_b_1"], data["/train/a_b_1"])
    assert out["i"].dtype == np.int16 and out["s"] == np.float32(2.5) and out["n"] == [1, "x", (2.0, None)]


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_planted_pickle_is_refused_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "ChairV2_Coordinate"
    path.write_bytes(pickle.dumps({"/train/x_1": _Planted(marker)}, protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"refused to load.*(posix|nt)\.system") as info:
        safe_pickle.load(path)
    assert str(path) in str(info.value)
    assert not marker.exists()
    assert isinstance(info.value, DataError)


@pytest.mark.parametrize("target", [eval, exec, getattr, __import__])
def test_builtins_and_other_globals_are_refused(target):
    class Evil:
        def __reduce__(self):
            return (target, ("1",))

    with pytest.raises(UnsafePickleError, match="builtins"):
        safe_pickle.loads(pickle.dumps(Evil()))


def test_other_numpy_callables_are_refused():
    # np.load would happily read a file; only array reconstruction is on the list
    class Sneaky:
        def __reduce__(self):
            return (np.load, ("/etc/passwd",))

    with pytest.raises(UnsafePickleError, match=r"numpy.*load"):
        safe_pickle.loads(pickle.dumps(Sneaky()))


def test_codecs_encode_admits_only_latin1():
    payload = pickle.dumps(b"\x00\xff", protocol=2)  # protocol 2 stores bytes via _codecs.encode
    assert safe_pickle.loads(payload) == b"\x00\xff"
    evil = payload.replace(b"latin1", b"rot_13")
    with pytest.raises(DataError, match="latin-1"):
        safe_pickle.loads(evil)


def test_persistent_ids_are_refused():
    import io

    buf = io.BytesIO()
    p = pickle.Pickler(buf)
    p.persistent_id = lambda obj: "pid" if isinstance(obj, str) else None
    p.dump(["x"])
    with pytest.raises(UnsafePickleError, match="persistent"):
        safe_pickle.loads(buf.getvalue())


@pytest.mark.parametrize("cut", [1, 10, 100, -1])
def test_truncated_pickle_is_a_data_error(cut):
    data = pickle.dumps({"/train/a_1": np.ones((30, 3))})
    with pytest.raises(DataError, match="not a readable pickle"):
        safe_pickle.loads(data[:cut], "trunc.pkl")


@pytest.mark.parametrize("junk", [b"", b"hello world", b"\x80\x05\x95garbage", bytes(range(256))])
def test_garbage_is_a_data_error(junk):
    with pytest.raises(DataError):
        safe_pickle.loads(junk)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        safe_pickle.load(tmp_path / "nope")


def test_calling_ndarray_directly_is_refused():
    class Huge:  # numpy.ndarray(shape, ...) could build an array over any memory: never called
        def __reduce__(self):
            return (np.ndarray, ((2**62,),))

    with pytest.raises(UnsafePickleError, match="numpy.ndarray directly"):
        safe_pickle.loads(pickle.dumps(Huge()))


def _objects(items):
    arr = np.empty(len(items), dtype=object)
    for i, it in enumerate(items):
        arr[i] = it
    return arr


def test_object_arrays_only_when_asked_and_checked():
    good = pickle.dumps(_objects([np.zeros((2, 3), np.int16), np.ones((5, 3))]), protocol=3)
    with pytest.raises(UnsafePickleError, match="object array"):
        safe_pickle.loads(good)
    out = safe_pickle.loads(good, object_items=(None, 3))
    assert out.dtype == object and [a.shape for a in out] == [(2, 3), (5, 3)] and out[0].dtype == np.int16
    with pytest.raises(UnsafePickleError, match=r"item 1: expected a numeric array of shape \(None, 3\)"):
        safe_pickle.loads(pickle.dumps(_objects([np.zeros((2, 3)), np.zeros((2, 2))])), object_items=(None, 3))
    with pytest.raises(UnsafePickleError, match="item 0"):
        safe_pickle.loads(pickle.dumps(_objects(["text"])), object_items=(None, 3))


def test_attribute_writes_are_refused():
    class Build:
        def __reduce__(self):
            return (np.dtype, ("f8", False, True), {"names": ("a",)})

    with pytest.raises(UnsafePickleError, match="dtype state"):
        safe_pickle.loads(pickle.dumps(Build()))


def test_big_endian_and_fortran_arrays_come_back_equal():
    a = np.arange(12, dtype=">i4").reshape(3, 4)
    f = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    out = safe_pickle.loads(pickle.dumps({"a": a, "f": f}, protocol=2))
    assert np.array_equal(out["a"], a) and out["a"].dtype == np.int32 and np.array_equal(out["f"], f)
