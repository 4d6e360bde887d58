"""Verified on-disk caches: arrays stored with a checksum, checked on every load, healed when bad.

Every cache of the package (the style world, rasterised sketches, decoded photos, region
proposals, gallery embeddings) goes through ``cached_arrays``: a ``.npz`` written atomically (a
unique temporary file, then ``os.replace``) that carries a SHA-256 of its arrays' names, dtypes,
shapes and bytes. A load recomputes the checksum and checks the expected names, shapes and
dtypes; a missing, truncated, tampered or mis-shaped file is reported (a ``CacheWarning`` naming
the file and the reason), deleted and recomputed, never used. Nothing is unpickled.

Processes side by side (``book run --jobs``) compute each file once: a process that misses takes the
file's lock (``computing``), looks again, and only then computes; another that wants the same file
waits and loads it.

Keys are the caller's business and must cover the content that determines the output (stroke
bytes, file hashes), never modification times.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sbir_core.errors import SBIRError

CHECKSUM = "__sha256__"


class CacheWarning(UserWarning):
    """A cache file was unusable (the message names it and why) and is being recomputed."""


class CacheCorrupt(SBIRError, ValueError):
    """A cache file that failed its checks."""


@contextlib.contextmanager
def computing(path: str | os.PathLike):
    """Hold ``.<name>.lock`` beside ``path`` (an OS file lock: released when its holder ends, however it ends)
    while computing what goes to ``path``, so that processes side by side compute it once. Where the lock file
    cannot be made (a read-only folder) nothing is held: the work is then done, at worst, twice."""
    from filelock import FileLock

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path.with_name(f".{path.name}.lock"))  # hidden beside it; kept (unlinking one races)
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def checksum(arrays: dict[str, np.ndarray]) -> bytes:
    """SHA-256 over each array's name, dtype, shape and bytes, in name order: 32 bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.digest()


def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` with their checksum to ``path`` atomically; concurrent writers never clash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bad = [k for k, a in arrays.items() if np.asarray(a).dtype == object or k == CHECKSUM]
    if bad:
        raise ValueError(f"cannot cache {bad}: object arrays and the name {CHECKSUM!r} are not allowed")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, **{CHECKSUM: np.frombuffer(checksum(arrays), dtype=np.uint8)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_arrays(path: str | os.PathLike, expect: dict[str, tuple] | None = None) -> dict[str, np.ndarray]:
    """Read and verify a file written by ``save_arrays``; ``CacheCorrupt`` says what is wrong.

    expect: name -> (shape, dtype); a shape entry of None matches any length on that axis, and a
    shape of None any shape. Arrays are checked for these and the whole file for its checksum.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as err:  # noqa: BLE001 - zlib.error, MemoryError, NotImplementedError... all mean "recompute"
        raise CacheCorrupt(f"unreadable ({type(err).__name__}: {err})") from err
    stored = arrays.pop(CHECKSUM, None)
    if stored is None:
        raise CacheCorrupt("no checksum (written by another version?)")
    if stored.tobytes() != checksum(arrays):
        raise CacheCorrupt("checksum mismatch (the file was changed or damaged)")
    for name, (shape, dtype) in (expect or {}).items():
        if name not in arrays:
            raise CacheCorrupt(f"array {name!r} missing")
        a = arrays[name]
        if dtype is not None and a.dtype != np.dtype(dtype):
            raise CacheCorrupt(f"array {name!r} has dtype {a.dtype}, expected {np.dtype(dtype)}")
        if shape is not None and (
            a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape))
        ):
            raise CacheCorrupt(f"array {name!r} has shape {a.shape}, expected {shape}")
    return arrays


def cached_arrays(
    path: str | os.PathLike,
    compute: Callable[[], dict[str, np.ndarray]],
    expect: dict[str, tuple] | None = None,
    use_cache: bool = True,
) -> dict[str, np.ndarray]:
    """The verified arrays at ``path``, or ``compute()``'s, saved there for next time.

    A file that fails ``load_arrays`` is reported with a ``CacheWarning``, deleted and recomputed. A process
    that misses computes under the file's lock (``computing``) after looking again: one computes, the others
    wait and load.
    """
    if not use_cache:
        return compute()
    path = Path(path)
    if path.exists():  # written whole by os.replace, so read without the lock
        with contextlib.suppress(CacheCorrupt):
            return load_arrays(path, expect)
    with computing(path):
        if path.exists():
            try:
                return load_arrays(path, expect)
            except CacheCorrupt as err:
                warnings.warn(
                    f"cache {path} is unusable ({err}); deleting and recomputing it", CacheWarning, stacklevel=2
                )
                path.unlink(missing_ok=True)
        arrays = compute()
        save_arrays(path, arrays)
    return arrays


def cached_array(
    path: str | os.PathLike,
    compute: Callable[[], np.ndarray],
    shape: tuple | None = None,
    dtype=None,
    use_cache: bool = True,
) -> np.ndarray:
    """One verified array (see ``cached_arrays``); ``shape`` and ``dtype`` are checked on load, and a float
    array must be finite (a NaN raster is never stored or used)."""

    def checked():
        arr = compute()
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"refusing to cache non-finite values at {path}")
        return {"array": arr}

    out = cached_arrays(path, checked, {"array": (shape, dtype)}, use_cache)
    if use_cache and out["array"].dtype.kind == "f" and not np.isfinite(out["array"]).all():
        warnings.warn(
            f"cache {path} is unusable (non-finite values); deleting and recomputing it", CacheWarning, stacklevel=2
        )
        Path(path).unlink(missing_ok=True)
        out = cached_arrays(path, checked, {"array": (shape, dtype)}, use_cache)
    return out["array"]


def content_hash(*parts) -> str:
    """A short SHA-1 of byte strings, strings and numpy arrays (values, dtype and shape): a cache key."""
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        elif isinstance(p, bytes):
            h.update(p)
        else:
            h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
