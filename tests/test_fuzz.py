"""Hostile and broken input for every loader: a clear error naming the file, or skipped and reported.

Each probe breaks one file of an otherwise good dataset and states the documented outcome:

* ``skip``: with ``skip_bad=True`` the load succeeds, the file (or line, or entry) is in
  ``skipped`` with a reason and the rest renders; without it a DataError names the file (for image
  folders when the image is decoded, for QuickDraw lines ``file:line``, for QMUL entries the key);
* ``error``: a DataError naming the file in both modes (the file is the dataset, or two files claim
  one id);
* ``ignored``: the entry is never read and is listed in ``info["ignored"]`` (symbolic links out of the
  data folder, dangling links, folders with image names);
* ``loaded``: an odd but valid file loads correctly (16-bit PNG with ink, non-UTF-8 name).

Pickles and ``.npz`` files are unpickled only in a child process (``_run_child``), so a crash (the
old sketch-rnn exploit segfaulted) fails these tests instead of killing pytest.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data_folders import write_pacs, write_tuberlin
from test_data_qmul import make_coordinates, write_qmul
from test_data_quickdraw import write_ndjson, write_npz
from test_data_shoes304 import write_shoes
from test_data_sketchy import write_sketchy

from sbir_core.data import load_dataset
from sbir_core.data.base import DataError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------ crafted image files


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(w: int, h: int, data: bytes = b"\x00" * 16) -> bytes:
    """A PNG whose header claims w x h greyscale pixels, with almost no pixel data."""
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(data))
        + _png_chunk(b"IEND", b"")
    )


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _sketch_img(mode="L") -> Image.Image:
    img = Image.new("L", (32, 32), 255)
    img.paste(0, (8, 8, 24, 12))
    return img.convert(mode)


def strip_png() -> bytes:
    """1 x 60000 pixels: small as a file, 3.6 G pixels once padded to a square."""
    return _encoded(Image.new("L", (1, 60000), 0), "PNG")


def png16() -> bytes:
    """A 16-bit greyscale sketch: white 65535, ink 0 (a plain convert to 8 bits clips it all to white)."""
    arr = np.full((32, 32), 65535, np.uint16)
    arr[8:24, 8:12] = 0
    return _encoded(Image.fromarray(arr), "PNG")


GOOD_PNG = _encoded(_sketch_img(), "PNG")
GOOD_JPG = _encoded(_sketch_img("RGB"), "JPEG")

# kind -> bytes written in place of one image file; outcome "skip" (unreadable) or "loaded" (valid)
IMAGE_PROBES: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "skip"),
    "truncated_png": (GOOD_PNG[: len(GOOD_PNG) // 2], "skip"),
    "truncated_jpeg": (GOOD_JPG[: len(GOOD_JPG) // 3], "skip"),
    "png_signature_only": (GOOD_PNG[:8], "skip"),
    "random_bytes": (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "skip"),
    "text": (b"this is not an image\n" * 20, "skip"),
    "strip_1x60000": (strip_png(), "skip"),
    "header_claims_9000x9000": (png_claiming(9000, 9000), "skip"),
    "header_claims_100000x100000": (png_claiming(100000, 100000), "skip"),
    "header_claims_0x0": (png_claiming(0, 0), "skip"),
    "bad_crc": (GOOD_PNG[:29] + b"\x00\x00\x00\x00" + GOOD_PNG[33:], "skip"),
    "tiff_bad_ifd": (b"II*\x00" + struct.pack("<I", 0xFFFFFF00) + b"\x00" * 64, "skip"),
    "bmp_huge_header": (
        b"BM"
        + struct.pack("<IHHI", 1000, 0, 0, 54)
        + struct.pack("<IiiHHIIiiII", 40, 70000, 70000, 1, 24, 0, 0, 0, 0, 0, 0),
        "skip",
    ),
    "gif_header_only": (b"GIF89a" + struct.pack("<HH", 10, 10) + b"\x00\x00\x00", "skip"),
    "webp_garbage": (b"RIFF" + struct.pack("<I", 100) + b"WEBPVP8 " + b"\x01" * 50, "skip"),
    "png_16bit": (png16(), "loaded"),
    "palette": (_encoded(_sketch_img("P"), "PNG"), "loaded"),
}
# kind -> how the file is replaced; outcome "ignored" or "error" (duplicate ids)
ENTRY_PROBES = ["symlink_out_of_root", "dangling_symlink", "folder_named_like_image", "duplicate_stem", "non_utf8_name"]


def _first(files) -> Path:
    return sorted(files, key=lambda p: os.fsencode(p))[0]


def _dataset(loader: str, root: Path) -> Path:
    """Write a small dataset for ``loader``; return the sketch file the probes break."""
    if loader == "shoes304":
        folder, _ = write_shoes(root, n=4, k=2, mats=False)
        return _first((folder / "sketch").glob("*.jpg"))
    if loader == "sketchy":
        write_sketchy(root, classes=("airplane", "bat"), photos_per_class=2, sketches_per_photo=2, extended=False)
        return _first(root.glob("sketchy/256x256/sketch/*/*/*.png"))
    if loader == "tuberlin":
        write_tuberlin(root, classes=("airplane", "bear"), n=3)
        return _first(root.glob("TU-Berlin/png/*/*.png"))
    write_pacs(root)
    return _first(root.glob("pacs/sketch/*/*.png"))


def _load(loader: str, root: Path, skip_bad: bool):
    return load_dataset(loader, root, skip_bad=skip_bad)


IMAGE_LOADERS = ["shoes304", "sketchy", "tuberlin", "pacs"]


@pytest.mark.parametrize("kind", sorted(IMAGE_PROBES))
@pytest.mark.parametrize("loader", IMAGE_LOADERS)
def test_image_file_probe(loader, kind, tmp_path):
    victim = _dataset(loader, tmp_path)
    content, outcome = IMAGE_PROBES[kind]
    victim.write_bytes(content)
    d = _load(loader, tmp_path, skip_bad=True)
    if outcome == "skip":
        reasons = dict(d.skipped)
        assert str(victim) in reasons and reasons[str(victim)], f"{kind} not reported: {d.skipped}"
        assert victim not in d.sketch_files
        assert np.isfinite(d.sketch_images(16)).all()
        strict = _load(loader, tmp_path, skip_bad=False)
        with pytest.raises(DataError, match=victim.name):
            strict.sketch_images(16, cache=False)
    else:
        assert not d.skipped
        imgs = d.sketch_images(16)
        row = next(i for i, f in enumerate(d.sketch_files) if f == victim)
        assert imgs[row].min() < 0.5, f"{kind} rendered blank"


def _break_entry(kind: str, victim: Path, outside: Path) -> Path:
    """Replace ``victim`` as ``kind`` says; return the path the report must name."""
    if kind == "symlink_out_of_root":
        outside.write_bytes(GOOD_PNG)
        victim.unlink()
        victim.symlink_to(outside)
    elif kind == "dangling_symlink":
        victim.unlink()
        victim.symlink_to(victim.with_name("no_such_file.png"))
    elif kind == "folder_named_like_image":
        victim.unlink()
        victim.mkdir()
    elif kind == "duplicate_stem":
        twin = victim.with_suffix(".bmp")
        _sketch_img().save(twin)
        return twin
    elif kind == "non_utf8_name":
        odd = victim.with_name(os.fsdecode(b"\xff\xfe" + os.fsencode(victim.name)))
        victim.rename(odd)
        return odd
    return victim


@pytest.mark.parametrize("kind", ENTRY_PROBES)
@pytest.mark.parametrize("loader", IMAGE_LOADERS)
def test_folder_entry_probe(loader, kind, tmp_path):
    root = tmp_path / "data"
    victim = _dataset(loader, root)
    named = _break_entry(kind, victim, tmp_path / "secret.png")
    if kind == "duplicate_stem":
        for skip in (True, False):
            with pytest.raises(DataError, match=r"duplicate.*" + victim.stem) as info:
                _load(loader, root, skip)
            assert victim.name in str(info.value) and named.name in str(info.value)
        return
    if kind == "non_utf8_name":
        if loader == "shoes304":  # not a NNN-K name: ignored, reported printably
            d = _load(loader, root, True)
            assert any("\\xff\\xfe" in p for p in d.report()["path"])
            return
        d = _load(loader, root, True)
        ids = d.sketches["sketch_id"].tolist()
        assert any("\\xff\\xfe" in i for i in ids)
        "".join(ids).encode("utf-8")  # ids print and hash
        assert d.sketch_images(16).shape[0] == len(d)
        assert d.fingerprint
        return
    for skip in (True, False):
        d = _load(loader, root, skip)
        assert named not in (d.sketch_files or [])
        ignored = " ".join(d.info["ignored"])
        assert str(named) in ignored
        if kind == "symlink_out_of_root":
            assert "refused" in ignored


# ------------------------------------------------------------------ QuickDraw ndjson lines

GOOD_DRAWING = [[[10, 20, 30], [10, 40, 20]]]
NDJSON_PROBES: dict[str, bytes] = {
    "not_json": b"{this is not json",
    "json_array": b"[1, 2, 3]",
    "no_drawing": json.dumps({"word": "cat"}).encode(),
    "drawing_string": json.dumps({"drawing": "abc"}).encode(),
    "drawing_empty": json.dumps({"drawing": []}).encode(),
    "stroke_lengths_differ": json.dumps({"drawing": [[[1, 2, 3], [1, 2]]]}).encode(),
    "stroke_one_list": json.dumps({"drawing": [[[1, 2, 3]]]}).encode(),
    "empty_stroke": json.dumps({"drawing": [[[], []]]}).encode(),
    "integer_400_digits": b'{"drawing": [[[1' + b"0" * 400 + b", 2], [3, 4]]]}",
    "integer_5000_digits": b'{"drawing": [[[1' + b"0" * 5000 + b", 2], [3, 4]]]}",
    "deep_nesting": b'{"drawing": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "nan": b'{"drawing": [[[NaN, 2], [3, 4]]]}',
    "infinity": b'{"drawing": [[[Infinity, 2], [3, 4]]]}',
    "near_1e308": b'{"drawing": [[[1e308, -1e308], [1e308, 5]]]}',
    "strings_as_coordinates": json.dumps({"drawing": [[["a", "b"], ["c", "d"]]]}).encode(),
    "nested_coordinates": json.dumps({"drawing": [[[[1], [2]], [[3], [4]]]]}).encode(),
    "invalid_utf8": b'{"drawing": [[[1, 2], [3, 4]]], "word": "\xff\xfe"}\xff',
    "null_bytes": b"\x00" * 64,
    "too_long_line": b'{"drawing": [[[' + b"1, " * 40000 + b"1], [" + b"1, " * 40000 + b"1]]]}",
    "booleans_as_coordinates": json.dumps({"drawing": [[[True, False, True], [True, True, False]]]}).encode(),
    "a_boolean_among_numbers": json.dumps({"drawing": [[[1, 20, True], [3, 4, 5]]]}).encode(),
}


@pytest.mark.parametrize("kind", sorted(NDJSON_PROBES))
def test_ndjson_line_probe(kind, tmp_path, monkeypatch):
    from sbir_core.data import quickdraw

    monkeypatch.setattr(quickdraw, "MAX_LINE", 64 << 10)  # so that a 120 kB line is "too long"
    path = tmp_path / "quickdraw" / "cat.ndjson"
    write_ndjson(path, "cat", 4)
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join(lines[:2] + [NDJSON_PROBES[kind]] + lines[2:]) + b"\n")
    d = load_dataset("quickdraw", tmp_path, skip_bad=True)
    assert len(d) == 4 and [p for p, _ in d.skipped] == [f"{path}:3"] and d.skipped[0][1]
    assert np.isfinite(np.concatenate(d.strokes)).all()
    with pytest.raises(DataError, match="cat.ndjson:3"):
        load_dataset("quickdraw", tmp_path, skip_bad=False)


def test_ndjson_metadata_junk_is_not_fatal(tmp_path):
    """Odd metadata beside a valid drawing (nested key_id, huge word) loads; ids stay short text."""
    path = tmp_path / "quickdraw" / "cat.ndjson"
    write_ndjson(
        path,
        "cat",
        2,
        extra_lines=[
            json.dumps({"drawing": GOOD_DRAWING, "key_id": [[[[1]]]], "word": "w" * 10000, "recognized": "yes"})
        ],
    )
    d = load_dataset("quickdraw", tmp_path, skip_bad=False)
    assert len(d) == 3 and d.sketches["sketch_id"].iloc[-1] == "cat/3"


# ------------------------------------------------------------------ pickles and npz, in a child process


class _Reduce:
    """Pickles as ``fn(*args)`` (and ``state`` for BUILD), without ever being unpickled here."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def _reconstruct():
    return np.zeros(1).__reduce__()[0]


def _scalar():
    return np.float64(0).__reduce__()[0]


def hostile_pickles(marker: Path) -> dict[str, bytes]:
    """Pickled payloads that must never build anything but numeric arrays."""
    arr_state = lambda shape, dt, raw: _Reduce(
        _reconstruct(),
        (np.ndarray, (0,), b"b"),  # noqa: E731
        (1, shape, np.dtype(dt), False, raw),
    )
    return {
        "os_system": pickle.dumps(_Reduce(os.system, (f"touch {marker}",))),
        "ndarray_over_bytes": pickle.dumps(_Reduce(np.ndarray, ((4,), np.dtype(object), b"A" * 32))),
        "ndarray_called_numeric": pickle.dumps(_Reduce(np.ndarray, ((4,), np.dtype("f8"), b"A" * 32))),
        "object_array_of_strings": pickle.dumps(np.array(["a", "b"], dtype=object)),
        "object_array_of_dicts": pickle.dumps(np.array([{"a": 1}, {"b": 2}], dtype=object)),
        "object_array_state_bytes": pickle.dumps(arr_state((4,), object, b"\x41" * 32)),
        "short_raw_data": pickle.dumps(arr_state((1000,), "f8", b"\x00" * 8)),
        "huge_shape": pickle.dumps(arr_state((2**40, 2**30), "f8", b"")),
        "negative_shape": pickle.dumps(arr_state((-1,), "f8", b"")),
        "dtype_attribute_write": pickle.dumps(_Reduce(np.dtype, ("f8", False, True), {"names": ("a",)})),
        "dtype_structured": pickle.dumps(_Reduce(np.dtype, ([("a", "O")], False, True))),
        "scalar_attribute_write": pickle.dumps(_Reduce(_scalar(), (np.dtype("f8"), b"\x00" * 8), {"x": 1})),
        "scalar_object": pickle.dumps(_Reduce(_scalar(), (np.dtype(object), "x"))),
        "reconstruct_other_class": pickle.dumps(_Reduce(_reconstruct(), (np.dtype, (0,), b"b"))),
        "second_state": pickle.dumps(arr_state((1,), "f8", b"\x00" * 8))[:-1]
        + pickle.dumps((1, (1,), np.dtype("f8"), False, b"\x00" * 8), protocol=2)[2:-1]
        + b"b.",
        "builtins_eval": pickle.dumps(_Reduce(eval, ("1+1",))),
        "numpy_load": pickle.dumps(_Reduce(np.load, ("/etc/passwd",))),
        "deep_list": b"\x80\x02" + b"]" * 3000 + b"a" * 2999 + b".",
        "self_referencing_list": pickle.dumps(_self_list()),
        "truncated": pickle.dumps({"/train/a_1": np.ones((4, 3))})[:40],
        "empty": b"",
        "garbage": bytes(range(256)) * 4,
    }


def _self_list():
    x = []
    x.append(x)
    return x


def _npy(descr: str, shape, payload: bytes, fortran=False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buf.getvalue() + payload


def _zip(members: dict[str, bytes], compress=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _good_npz_bytes(tmp: Path) -> bytes:
    write_npz(tmp / "good.npz")
    return (tmp / "good.npz").read_bytes()


def hostile_npz(tmp: Path, marker: Path) -> dict[str, bytes]:
    """Whole .npz files (sketch-rnn layout) that must be refused or skipped, never crash."""
    out = {f"pickle_{k}": _zip({"train.npy": _npy("|O", (1,), v)}) for k, v in hostile_pickles(marker).items()}
    deflated = _zip({"train.npy": _npy("<i2", (200, 3), np.zeros((200, 3), np.int16).tobytes())}, zipfile.ZIP_DEFLATED)
    at = deflated.index(b"train.npy") + len("train.npy")  # corrupt the compressed stream after the local header
    good = _good_npz_bytes(tmp)
    out.update(
        {
            "not_a_zip": b"PK\x03\x04 not really",
            "empty_file": b"",
            "truncated_zip": good[: len(good) // 2],
            "zlib_error": deflated[: at + 5] + b"\xff" * 40 + deflated[at + 45 :],
            "bad_npy_magic": _zip({"train.npy": b"NOTNUMPY" + b"\x00" * 100}),
            "header_lies_about_shape": _zip({"train.npy": _npy("<f8", (10**12, 3), b"\x00" * 48)}),
            "structured_dtype": _zip({"train.npy": _npy("[('a', '<f8')]", (2,), b"\x00" * 16)}),
            "unicode_dtype": _zip({"train.npy": _npy("<U4", (2,), b"\x00" * 32)}),
            "wrong_last_dim_3d": _zip({"train.npy": _npy("<i2", (2, 4, 2), b"\x00" * 32)}),
            "object_items_bool": _zip({"train.npy": _npy("|O", (1,), _pickled_obj_payload([np.ones((3, 3), bool)]))}),
            "object_items_wrong_shape": _zip({"train.npy": _npy("|O", (1,), _pickled_obj_payload([np.zeros((3, 2))]))}),
            "object_items_nested_objects": _zip(
                {"train.npy": _npy("|O", (1,), _pickled_obj_payload([_obj_array([np.zeros((3, 3))])]))}
            ),
            "bad_header_dict": _zip({"train.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': __import__('os')}  \n"}),
        }
    )
    return out


def _obj_array(items) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    for i, it in enumerate(items):
        arr[i] = it
    return arr


def _pickled_obj_payload(items) -> bytes:
    """The bytes numpy writes after the header of an object .npy: a pickle of the array."""
    return pickle.dumps(_obj_array(items), protocol=3)


CHILD = r"""
import json, sys, traceback
from pathlib import Path
from sbir_core.data import quickdraw, qmul
from sbir_core.data.base import DataError
quickdraw.MAX_MEMBER = 1 << 20
for line in sys.stdin:
    case, loader, root = json.loads(line)
    out = {"case": case}
    for skip in (True, False):
        try:
            if loader == "quickdraw":
                d = quickdraw.load(root, skip_bad=skip)
            else:
                d = qmul.load(root, "ChairV2", skip_bad=skip)
            d.sketch_images(8, cache=False)
            out[str(skip)] = {"outcome": "ok", "skipped": [list(s) for s in d.skipped], "n": len(d)}
        except DataError as err:
            out[str(skip)] = {"outcome": "error", "message": str(err)}
        except BaseException as err:
            out[str(skip)] = {"outcome": "crash", "message": traceback.format_exc()}
    print(json.dumps(out), flush=True)
"""


def _run_child(cases: list[tuple[str, str, str]]) -> tuple[dict, subprocess.CompletedProcess]:
    """Unpickle hostile files in a child process: results per case (a missing case: the child died there)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD],
        input="\n".join(json.dumps(c) for c in cases) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    results = {}
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        results[rec["case"]] = rec
    return results, proc


@pytest.fixture(scope="module")
def child_results(tmp_path_factory):
    """Every pickle/npz probe, written to its own data root and loaded (both modes) in one child process."""
    base = tmp_path_factory.mktemp("hostile")
    marker = base / "pwned"
    cases = []
    for kind, data in hostile_npz(base, marker).items():
        root = base / "qd" / kind
        write_ndjson(root / "quickdraw" / "cat.ndjson", "cat", 3)
        (root / "quickdraw" / "owl.npz").write_bytes(data)
        cases.append((f"npz/{kind}", "quickdraw", str(root)))
    for kind, data in hostile_qmul(base, marker).items():
        root = base / "qmul" / kind
        folder = write_qmul(root)
        if isinstance(data, bytes):
            (folder / "ChairV2_Coordinate").write_bytes(data)
        cases.append((f"qmul/{kind}", "qmul", str(root)))
    results, proc = _run_child(cases)
    return {"results": results, "proc": proc, "marker": marker, "roots": {c[0]: c[2] for c in cases}}


def _case(child_results, name):
    rec = child_results["results"].get(name)
    proc = child_results["proc"]
    assert rec is not None, (
        f"the child process died before finishing {name} (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    )
    for mode in ("True", "False"):
        assert rec[mode]["outcome"] != "crash", rec[mode]["message"]
    assert not child_results["marker"].exists(), "a pickle ran code"
    return rec


def _npz_kinds():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return sorted(hostile_npz(Path(tmp), Path(tmp) / "m"))


@pytest.mark.parametrize("kind", _npz_kinds())
def test_npz_probe_in_child(child_results, kind):
    """A hostile or broken .npz: skipped and reported with skip_bad, else a DataError naming the file."""
    rec = _case(child_results, f"npz/{kind}")
    npz = str(Path(child_results["roots"][f"npz/{kind}"]) / "quickdraw" / "owl.npz")
    lenient, strict = rec["True"], rec["False"]
    assert lenient["outcome"] == "ok" and lenient["n"] >= 3, lenient
    assert any(p.startswith(npz) and r for p, r in lenient["skipped"]), lenient
    assert strict["outcome"] == "error" and npz in strict["message"], strict


def test_npz_near_1e308_is_rejected_at_load_naming_the_item(tmp_path):
    qd = tmp_path / "quickdraw"
    qd.mkdir()
    write_ndjson(qd / "cat.ndjson", "cat", 2)
    items = _obj_array([np.array([[1e308, -1e308, 0], [0, 0, 1]]), np.array([[1, 2, 0], [3, 4, 1]])])
    np.savez(qd / "owl.npz", train=items)
    results, proc = _run_child([("x", "quickdraw", str(tmp_path))])
    rec = results["x"]
    assert rec["True"]["outcome"] == "ok" and rec["True"]["n"] == 3, (rec, proc.stderr)
    assert rec["True"]["skipped"][0][0].endswith("owl.npz[train][0]") and "beyond" in rec["True"]["skipped"][0][1]
    assert rec["False"]["outcome"] == "error" and "owl.npz[train] item 0" in rec["False"]["message"]


# ------------------------------------------------------------------ QMUL coordinate files


def hostile_qmul(tmp: Path, marker: Path) -> dict[str, bytes]:
    """Coordinate files: hostile pickles (the whole file is refused) and bad entries (skipped with skip_bad)."""
    rng = np.random.default_rng(0)
    good = make_coordinates(rng)
    key = sorted(good)[0]

    def entry(value):
        return pickle.dumps(dict(good, **{key: value}))

    out = {f"pickle_{k}": v for k, v in hostile_pickles(marker).items()}
    out.update(
        {
            "not_a_dict": pickle.dumps([np.ones((3, 3))]),
            "empty_dict": pickle.dumps({}),
            "entry_wrong_shape": entry(np.ones((4, 2))),
            "entry_nan": entry(np.array([[np.nan, 1, 0], [1, 1, 1]])),
            "entry_near_1e308": entry(np.array([[1e308, 1e308, 0], [-1e308, 1, 1]])),
            "entry_string": entry("abc"),
            "entry_pen_2": entry(np.array([[1, 1, 2], [1, 1, 1]])),
            "entry_empty": entry(np.zeros((0, 3))),
            "entry_object_array": entry(_obj_array([np.ones((2, 3))])),
            "entry_complex": entry(np.ones((2, 3), complex)),
            "entry_bool": entry(np.ones((2, 3), bool)),
            "key_with_and_without_slash": pickle.dumps(dict(good) | {key.lstrip("/"): good[key]}),
            "key_not_a_string": pickle.dumps(dict(good, **{}) | {7: np.ones((2, 3))}),
            "key_malformed": pickle.dumps(dict(good) | {"/elsewhere/x": np.ones((2, 3))}),
            "key_with_slash_photo": pickle.dumps(dict(good) | {"/train/a/b_1": np.ones((2, 3))}),
        }
    )
    return out


QMUL_ENTRY = {
    "entry_wrong_shape",
    "entry_nan",
    "entry_near_1e308",
    "entry_string",
    "entry_pen_2",
    "entry_empty",
    "entry_complex",
    "entry_bool",
    "key_not_a_string",
    "key_malformed",
    "key_with_slash_photo",
}


def _qmul_kinds():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return sorted(hostile_qmul(Path(tmp), Path(tmp) / "m"))


@pytest.mark.parametrize("kind", _qmul_kinds())
def test_qmul_probe_in_child(child_results, kind):
    """A hostile coordinate file is refused naming it; a bad entry is skipped (skip_bad) or named with its key."""
    rec = _case(child_results, f"qmul/{kind}")
    coord = str(Path(child_results["roots"][f"qmul/{kind}"]) / "ChairV2" / "ChairV2_Coordinate")
    lenient, strict = rec["True"], rec["False"]
    assert strict["outcome"] == "error" and coord in strict["message"], strict
    if kind in QMUL_ENTRY:
        assert lenient["outcome"] == "ok" and lenient["skipped"] and lenient["skipped"][0][0].startswith(coord)
    else:
        assert lenient["outcome"] == "error" and coord in lenient["message"], lenient


def test_qmul_photo_probes(tmp_path):
    """Photos beside the coordinate file: a corrupt one skipped, a duplicate stem an error naming both."""
    folder = write_qmul(tmp_path)
    victim = _first((folder / "photo").glob("*.png"))
    victim.write_bytes(strip_png())
    d = load_dataset("chairv2", tmp_path, skip_bad=True)
    assert str(victim) in dict(d.skipped) and victim.stem not in set(d.photos["photo_id"])
    victim.write_bytes(GOOD_PNG)
    _sketch_img("RGB").save(victim.with_suffix(".jpg"))
    with pytest.raises(DataError, match="duplicate") as info:
        load_dataset("chairv2", tmp_path)
    assert victim.name in str(info.value) and victim.with_suffix(".jpg").name in str(info.value)


def test_probe_counts():
    """At least 15 kinds of broken or hostile input per loader (the note's table counts these)."""
    image = len(IMAGE_PROBES) + len(ENTRY_PROBES)
    assert image >= 15 and len(NDJSON_PROBES) >= 15 and len(_npz_kinds()) >= 15 and len(_qmul_kinds()) >= 15


def test_quickdraw_folder_entries(tmp_path):
    """QuickDraw files: a link out of the data folder refused, a non-UTF-8 class printable, two files of a
    class named."""
    qd = tmp_path / "data" / "quickdraw"
    write_ndjson(qd / "cat.ndjson", "cat", 3)
    write_ndjson(tmp_path / "secret.ndjson", "dog", 3)
    (qd / "dog.ndjson").symlink_to(tmp_path / "secret.ndjson")
    write_ndjson(qd / os.fsdecode(b"\xffowl.ndjson"), "owl", 2)
    d = load_dataset("quickdraw", tmp_path / "data", skip_bad=False)
    assert set(d.sketches["category"]) == {"cat", "\\xffowl"}
    assert any("dog.ndjson" in p and "refused" in p for p in d.info["ignored"])
    write_ndjson(qd / "full_raw_cat.ndjson", "cat", 2)
    for skip in (True, False):
        with pytest.raises(DataError, match=r"duplicate class 'cat'.*cat\.ndjson.*full_raw_cat\.ndjson"):
            load_dataset("quickdraw", tmp_path / "data", skip_bad=skip)


# ------------------------------------------------------------------ the raster cache


def _forge(path: Path, array: np.ndarray) -> None:
    """Rewrite a cache file with another array and a valid checksum (what a buggy writer could leave)."""
    from sbir_core.cache import save_arrays

    save_arrays(path, {"array": array})


CACHE_PROBES = {
    "zero_bytes": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "garbage": lambda p: p.write_bytes(b"\x00garbage" * 100),
    "flipped_bytes": lambda p: p.write_bytes(
        bytes(b ^ 0xFF if 200 <= i < 216 else b for i, b in enumerate(p.read_bytes()))
    ),
    "wrong_shape": lambda p: _forge(p, np.ones((1, 16, 16), np.float32)),
    "wrong_dtype": lambda p: _forge(p, np.ones((3, 16, 16), np.float64)),
    "nan": lambda p: _forge(p, np.full((3, 16, 16), np.nan, np.float32)),
}


@pytest.mark.parametrize("kind", sorted(CACHE_PROBES))
def test_a_damaged_raster_cache_is_reported_and_recomputed(kind, tmp_path):
    import pandas as pd

    from sbir_core.cache import CacheWarning
    from sbir_core.data.base import SBIRData, cache_dir

    strokes = [np.array([[10.0 * i, 10, 0], [200, 100 + i, 1]]) for i in range(3)]
    table = pd.DataFrame({"sketch_id": ["a", "b", "c"], "split": "train"})
    want = SBIRData("x", table.copy(), pd.DataFrame(), strokes=strokes).sketch_images(16)
    (path,) = cache_dir().glob("sketch-*.npz")
    CACHE_PROBES[kind](path)
    with pytest.warns(CacheWarning, match=path.name):
        got = SBIRData("x", table.copy(), pd.DataFrame(), strokes=strokes).sketch_images(16)
    assert np.array_equal(got, want)
    assert np.array_equal(SBIRData("x", table.copy(), pd.DataFrame(), strokes=strokes).sketch_images(16), want)


# ------------------------------------------------------------------ what the outside fuzzing probe found (issue 30)


def test_qmul_key_with_and_without_slash_names_both(child_results):
    """'/train/x_1' and 'train/x_1' are one sketch: refused naming both, never two rows of one sketch."""
    rec = _case(child_results, "qmul/key_with_and_without_slash")
    for mode in ("True", "False"):
        msg = rec[mode]["message"]
        assert rec[mode]["outcome"] == "error" and "'/test/t2_1'" in msg and "'test/t2_1'" in msg, msg


DATA_LOADERS = [*IMAGE_LOADERS, "quickdraw", "chairv2"]


def _data_folder(loader: str, root: Path) -> Path:
    """Write ``loader``'s small dataset under ``root``; return a folder of it that holds data files."""
    if loader == "quickdraw":
        write_ndjson(root / "quickdraw" / "cat.ndjson", "cat", 3)
        return root / "quickdraw"
    if loader == "chairv2":
        return write_qmul(root)
    return _dataset(loader, root).parent


@pytest.mark.parametrize("loader", DATA_LOADERS)
def test_an_unreadable_folder_is_a_data_error_naming_it(loader, tmp_path, monkeypatch):
    """A folder that may not be listed (chmod 000), simulated: tests may run as root, where chmod denies nothing."""
    folder = _data_folder(loader, tmp_path)
    iterdir = Path.iterdir

    def denied(self):
        if self == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", denied)
    for skip in (True, False):
        with pytest.raises(DataError, match=re.escape(str(folder)) + ".*Permission denied"):
            load_dataset(loader, tmp_path, skip_bad=skip)


def test_a_folder_without_permissions_is_a_data_error(tmp_path):
    """The same with a real chmod 000 (skipped where the file system does not deny: running as root)."""
    folder = _data_folder("tuberlin", tmp_path)
    folder.chmod(0)
    try:
        try:
            os.listdir(folder)
        except PermissionError:
            pass
        else:
            pytest.skip("chmod 000 does not deny listing here (running as root); the simulated test covers it")
        with pytest.raises(DataError, match=re.escape(str(folder))):
            load_dataset("tuberlin", tmp_path)
    finally:
        folder.chmod(0o755)


def test_an_unreadable_file_is_a_data_error_when_hashed(tmp_path, monkeypatch):
    """A file that turns unreadable after loading: the raster cache key names it instead of a raw OSError."""
    from sbir_core.data import base

    victim = _dataset("tuberlin", tmp_path)
    d = load_dataset("tuberlin", tmp_path)
    real_open = open

    def denied(path, *args, **kwargs):
        if Path(path) == victim:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(base, "open", denied, raising=False)
    base._DIGESTS.clear()
    with pytest.raises(DataError, match=re.escape(str(victim)) + ".*Permission denied"):
        d.sketch_images(8)


@pytest.mark.parametrize("loader", ["sketchy", "tuberlin", "pacs"])
def test_links_back_into_the_data_count_each_file_once(loader, tmp_path):
    """``loop -> .`` links and a second link to a class folder: every file once, the repeats listed as ignored."""
    victim = _dataset(loader, tmp_path)
    want = load_dataset(loader, tmp_path)
    classes = victim.parent.parent
    (classes / "zz_again").symlink_to(victim.parent.name)
    (classes / "loop").symlink_to(".")
    (victim.parent / "loop").symlink_to(".")
    for skip in (True, False):
        d = load_dataset(loader, tmp_path, skip_bad=skip)
        assert len(d) == len(want) and len(d.photos) == len(want.photos)
        assert sorted(d.sketch_files) == sorted(want.sketch_files)
        assert any("zz_again" in p and "same file" in p for p in d.info["ignored"]), d.info["ignored"]


def test_a_linked_sketch_file_counts_once_in_shoes304(tmp_path):
    victim = _dataset("shoes304", tmp_path)
    n = len(load_dataset("shoes304", tmp_path))
    twin = victim.with_name(victim.stem[:-1] + "9" + victim.suffix)
    twin.symlink_to(victim.name)
    d = load_dataset("shoes304", tmp_path)
    assert len(d) == n and twin not in d.sketch_files
    assert any(twin.name in p and "same file" in p for p in d.info["ignored"])


def test_folder_gallery_odd_names_link_loops_and_unreadable_folders(tmp_path, monkeypatch):
    """A non-UTF-8 name loads with a printable label; ``loop -> .`` adds nothing; a folder that cannot be
    listed is skipped and listed, never a raw error."""
    from sbir_core import playground as P

    g = tmp_path / "g"
    (g / "cats").mkdir(parents=True)
    (g / "cats" / "a.png").write_bytes(GOOD_PNG)
    fd = os.open(os.fsencode(g) + b"/\xff\xfe.png", os.O_CREAT | os.O_WRONLY)
    os.write(fd, GOOD_PNG)
    os.close(fd)
    (g / "loop").symlink_to(".")
    (g / "cats" / "up").symlink_to("..")
    (g / "locked").mkdir()
    (g / "locked" / "b.png").write_bytes(GOOD_PNG)
    iterdir = Path.iterdir

    def denied(self):
        if self == g / "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", denied)
    gallery = P.folder_gallery(g, 16)
    assert sorted(gallery.labels) == ["\\xff\\xfe", "cats"]
    assert gallery.digest and gallery.message.encode("utf-8")  # labels and names encode: nothing raw escapes
    ((where, why),) = gallery.skipped
    assert where == str(g / "locked") and "Permission denied" in why


@pytest.mark.parametrize(
    "text",
    [
        b"N: !!python/object/apply:os.system ['true']\n",
        b"N: !!python/object:collections.OrderedDict {}\n",
        b"N: [1, 2\n",
        b"N: 1\n  M: 2\n",
        b"N: \xff\xfe\n",
        b"- a list\n",
        b"n: 1\n",
    ],
)
def test_a_broken_chapter_config_is_a_config_error_naming_it(text, tmp_path, monkeypatch):
    """Unsafe tags, syntax errors, bad bytes and wrong shapes: a ConfigError (a ValueError) naming the file."""
    from sbir_core import paths
    from sbir_core.errors import ConfigError

    monkeypatch.setattr(paths, "CONFIGS", tmp_path)
    path = tmp_path / "ci" / "01_x.yaml"
    path.parent.mkdir()
    path.write_bytes(text)
    with pytest.raises(ConfigError, match=re.escape(str(path))) as info:
        paths.chapter_config("01_x", "ci")
    assert isinstance(info.value, ValueError)
    with pytest.raises(FileNotFoundError, match="02_y"):  # a ConfigError too, caught as before
        paths.chapter_config("02_y", "ci")


SAFE_PICKLE_STATE = r"""
import json, pickle
from sbir_core.data import safe_pickle as sp

ENCODE_DEFAULT = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abc\x85R."  # _codecs.encode("abc"), default encoding
GLOBALS = [b"_codecs\nencode", b"numpy\ndtype", b"numpy\nndarray", b"numpy.core.multiarray\n_reconstruct",
           b"numpy.core.multiarray\nscalar", b"numpy.core.numeric\n_frombuffer", b"numpy._core.multiarray\nscalar"]
STATES = [{"x": 1}, (None, {"__defaults__": ("utf-8",)}), (None, {"__kwdefaults__": {"a": 1}}),
          (None, {"done": True}), (None, {"object_items": (None,)})]


def reachable():
    # what a later load depends on and a pickle could reach: the module's callables and the unpickler's methods
    objs = [v for v in vars(sp).values() if callable(v)] + list(vars(sp.NumpyOnlyUnpickler).values())
    return repr([(getattr(o, "__defaults__", None), sorted(getattr(o, "__dict__", {}) or {})) for o in objs
                 if hasattr(o, "__code__")])


before = (sp.loads(ENCODE_DEFAULT), reachable())
refused = 0
for glob in GLOBALS:
    for state in STATES:
        try:
            sp.loads(b"\x80\x02c" + glob + b"\n" + pickle.dumps(state, protocol=2)[2:-1] + b"b.")
        except sp.UnsafePickleError:
            refused += 1
after = (sp.loads(ENCODE_DEFAULT), reachable())
print(json.dumps({"same": before == after, "refused": refused, "total": len(GLOBALS) * len(STATES),
                  "before": repr(before), "after": repr(after)}))
"""


def test_a_pickle_cannot_change_safe_pickle_for_later_loads():
    """BUILD on a name the unpickler resolves (``_codecs.encode``, ``numpy.dtype``...) must not write its
    attributes or defaults: each hostile pickle is refused, and a later load behaves as before (in a child)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", SAFE_PICKLE_STATE], capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["same"], out
    assert out["refused"] == out["total"], out


def _bomb(tmp_path: Path, shape=(200_000, 8, 3)) -> Path:
    """A sketch-rnn-like .npz whose deflated member of zeros inflates about a thousandfold (9.6 MB from ~10 kB)."""
    qd = tmp_path / "quickdraw"
    write_ndjson(qd / "cat.ndjson", "cat", 3)
    payload = _npy("<i2", shape, b"")
    data = _zip({"train.npy": payload + bytes(int(np.prod(shape)) * 2)}, zipfile.ZIP_DEFLATED)
    (qd / "owl.npz").write_bytes(data)
    return qd / "owl.npz"


def test_an_npz_that_inflates_a_thousandfold_is_refused_before_inflating(tmp_path):
    """A zip bomb under the byte cap (``MAX_MEMBER``): refused by its inflation ratio, before anything is read."""
    npz = _bomb(tmp_path)
    assert npz.stat().st_size < 100_000
    d = load_dataset("quickdraw", tmp_path, skip_bad=True)
    assert len(d) == 3 and [p for p, _ in d.skipped] == [str(npz)] and "inflate" in d.skipped[0][1]
    with pytest.raises(DataError, match=re.escape(str(npz)) + r"\[train.npy\].*inflate"):
        load_dataset("quickdraw", tmp_path)


def test_an_npz_drawing_longer_than_any_drawing_is_refused_from_its_header(tmp_path, monkeypatch):
    """One plain (n, 3) member is one drawing: more than ``MAX_POINTS`` points is refused from the header."""
    from sbir_core.data import quickdraw

    monkeypatch.setattr(quickdraw, "MAX_POINTS", 100)
    qd = tmp_path / "quickdraw"
    write_ndjson(qd / "cat.ndjson", "cat", 3)
    (qd / "owl.npz").write_bytes(_zip({"train.npy": _npy("<i2", (101, 3), bytes(606))}))
    with pytest.raises(DataError, match=r"owl\.npz\[train.npy\].*101 points.*100"):
        load_dataset("quickdraw", tmp_path)
    (qd / "owl.npz").write_bytes(_zip({"train.npy": _npy("<i2", (100, 3), bytes(600))}))
    assert len(load_dataset("quickdraw", tmp_path)) == 4


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.5, 2.0])
def test_shoes304_attributes_must_be_zero_or_one(value, tmp_path):
    """A NaN (or fractional) attribute matrix would cast to arbitrary int8 values: refused naming the file."""
    import scipy.io as sio

    folder, img_label = write_shoes(tmp_path, n=4, k=2)
    bad = img_label.astype(np.float64)
    bad[1, 3] = value
    sio.savemat(folder / "13_A_image_label.mat", {"image_label": bad})
    for skip in (True, False):
        with pytest.raises(DataError, match=r"13_A_image_label\.mat.*0 or 1"):
            load_dataset("shoes304", tmp_path, skip_bad=skip)


def test_a_damaged_word_embedding_cache_is_reported_and_recomputed(tmp_path, monkeypatch):
    """The word-embedding cache is checksummed like the others: damaged, forged or NaN files are recomputed."""
    from sbir_core.cache import CacheWarning
    from sbir_core.models import adaptive as A

    calls = []

    def fake(names):  # the sentence model, offline and instant
        calls.append(list(names))
        e = np.random.default_rng(len(names)).standard_normal((len(names), A.WORD_DIM)).astype(np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    monkeypatch.setattr(A, "_encode_names", fake)
    want = A.word_embeddings(["shoe", "boot"])
    (path,) = (tmp_path / "cache" / "word_embeddings").glob("*.npz")
    damage = {
        "truncated": lambda: path.write_bytes(path.read_bytes()[:100]),
        "garbage": lambda: path.write_bytes(b"\x00garbage" * 50),
        "wrong_shape": lambda: _forge(path, np.ones((3, A.WORD_DIM), np.float32)),
        "nan": lambda: _forge(path, np.full((2, A.WORD_DIM), np.nan, np.float32)),
    }
    for kind, harm in damage.items():
        harm()
        with pytest.warns(CacheWarning, match=path.name):
            got = A.word_embeddings(["shoe", "boot"])
        assert np.array_equal(got, want), kind
    assert len(calls) == 1 + len(damage)
    assert np.array_equal(A.word_embeddings(["shoe", "boot"]), want) and len(calls) == 1 + len(damage)
