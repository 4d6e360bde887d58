"""QuickDraw: raw and simplified ndjson, sketch-rnn .npz without numpy pickles, malformed files."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from sbir_core.data import load_dataset
from sbir_core.data.base import DataError
from sbir_core.data.quickdraw import class_name, load, read_npz
from sbir_core.data.safe_pickle import UnsafePickleError


def _drawing(rng, raw=True):
    strokes = []
    for _ in range(rng.integers(1, 4)):
        n = int(rng.integers(2, 6))
        xs, ys = rng.uniform(0, 900 if raw else 255, n).round(1), rng.uniform(0, 600 if raw else 255, n).round(1)
        stroke = [xs.tolist(), ys.tolist()]
        if raw:
            stroke.append(list(range(0, 10 * n, 10)))
        strokes.append(stroke)
    return strokes


def write_ndjson(path, word, n, raw=True, seed=0, extra_lines=()):
    rng = np.random.default_rng(seed)
    lines = [
        json.dumps(
            {
                "word": word,
                "countrycode": "GB",
                "recognized": bool(i % 2),
                "key_id": str(1000 + i),
                "timestamp": "2017-01-01",
                "drawing": _drawing(rng, raw),
            }
        )
        for i in range(n)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*lines, *extra_lines]) + "\n")


def _stroke3(rng, n):
    arr = np.zeros((n, 3), np.int16)
    arr[:, :2] = rng.integers(-20, 20, (n, 2))
    arr[rng.integers(0, n), 2] = 1
    arr[-1, 2] = 1
    return arr


def write_npz(path, counts=(3, 1, 2), seed=0):
    rng = np.random.default_rng(seed)
    parts = {}
    for name, c in zip(("train", "valid", "test"), counts):
        arr = np.empty(c, dtype=object)
        for i in range(c):
            arr[i] = _stroke3(rng, int(rng.integers(3, 9)))
        parts[name] = arr
    np.savez(path, **parts)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))


def test_raw_simplified_and_npz_together(tmp_path):
    qd = tmp_path / "QuickDraw"
    write_ndjson(qd / "cat.ndjson", "cat", 5, raw=True)
    write_ndjson(qd / "full_simplified_dog.ndjson", "dog", 4, raw=False)
    write_npz(qd / "sketchrnn_owl.npz")
    (qd / "notes.md").write_text("x")
    d = load_dataset("quickdraw", tmp_path)
    assert d.sketches["category"].value_counts().to_dict() == {"cat": 5, "owl": 6, "dog": 4}
    assert d.sketches.loc[d.sketches.category == "owl", "file_split"].value_counts().to_dict() == {
        "train": 3,
        "test": 2,
        "val": 1,
    }
    assert d.sketches.loc[d.sketches.category == "cat", "sketch_id"].iloc[0] == "cat/1000"
    for s in d.strokes:  # every format comes out on the 256 canvas
        assert s.shape[1] == 3 and s[:, :2].min() >= 0 and s[:, :2].max() <= 256 and s[-1, 2] == 1
    assert d.sketch_images(16).shape == (15, 16, 16)
    assert any(p.endswith("notes.md") for p in d.info["ignored"])
    assert len(load(tmp_path, classes=["cat"], max_per_class=2)) == 2
    assert len(load(tmp_path, classes=["cat"], recognized_only=True)) == 2
    with pytest.raises(DataError, match=r"no file for classes \['zebra'\]"):
        load(tmp_path, classes=["zebra"])


def test_npz_object_arrays_never_use_numpy_pickle(tmp_path, monkeypatch):
    write_npz(tmp_path / "owl.npz")
    real_load = np.load

    def guarded(*args, **kwargs):
        assert not kwargs.get("allow_pickle"), "numpy pickle loading must stay off"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", guarded)
    out = read_npz(tmp_path / "owl.npz")
    assert [len(out[k]) for k in ("train", "valid", "test")] == [3, 1, 2]
    assert all(a.dtype == np.int16 and a.shape[1] == 3 for a in out["train"])


def test_npz_with_a_planted_pickle_is_refused(tmp_path):
    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    buf.write(pickle.dumps(np.array([Planted()], dtype=object)))
    with zipfile.ZipFile(tmp_path / "owl.npz", "w") as zf:
        zf.writestr("train.npy", buf.getvalue())
    with pytest.raises(UnsafePickleError, match="system"):
        load(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_plain_numeric_npz_members_load(tmp_path):
    np.savez(tmp_path / "bus.npz", train=np.zeros((2, 5, 3), np.int16) + [1, 1, 1])
    d = load(tmp_path)
    assert len(d) == 2


@pytest.mark.parametrize(
    "content, match",
    [
        (b"not a zip", "not a valid .npz"),
        (None, "stroke-3"),
    ],
)
def test_bad_npz(tmp_path, content, match):
    path = tmp_path / "owl.npz"
    if content is None:
        np.savez(path, train=np.array([np.zeros((3, 2)), np.zeros((4, 2))], dtype=object))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        load(tmp_path)


def test_truncated_npz(tmp_path):
    write_npz(tmp_path / "owl.npz")
    raw = (tmp_path / "owl.npz").read_bytes()
    (tmp_path / "owl.npz").write_bytes(raw[: len(raw) - 40])
    with pytest.raises(DataError, match="owl.npz"):
        load(tmp_path)


@pytest.mark.parametrize(
    "line, match",
    [
        ('{"word": "cat", "drawing": [[[1, 2], [3, 4]]', "not a JSON object"),  # truncated
        ("[1, 2, 3]", "'drawing' field"),
        ('{"word": "cat"}', "'drawing' field"),
        ('{"drawing": "abc"}', "bad 'drawing'"),
        ('{"drawing": []}', "bad 'drawing'"),
        ('{"drawing": [[[1, 2], [3]]]}', "bad 'drawing'"),
        ('{"drawing": [[[], []]]}', "bad 'drawing'"),
        ('{"drawing": [[["a", "b"], [1, 2]]]}', "bad 'drawing'"),
        ('{"drawing": [[[1, null], [1, 2]]]}', "bad 'drawing'"),
        ('{"drawing": [[[1, 1e999], [1, 2]]]}', "bad 'drawing'"),
        ('{"drawing": [5]}', "bad 'drawing'"),
        ("\x00\xff binary junk", "not a JSON object"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, match):
    write_ndjson(tmp_path / "quickdraw" / "cat.ndjson", "cat", 3, extra_lines=[line])
    with pytest.raises(DataError, match=rf"cat\.ndjson:4: .*{match}"):
        load(tmp_path)
    d = load(tmp_path, skip_bad=True)
    assert len(d) == 3 and d.skipped[0][0].endswith("cat.ndjson:4")


def test_binary_garbage_file_and_empty_folder(tmp_path):
    (tmp_path / "quickdraw").mkdir()
    with pytest.raises(DataError, match=r"no \.ndjson or \.npz files[\s\S]*Expected layout"):
        load(tmp_path)
    (tmp_path / "quickdraw" / "cat.ndjson").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match="cat.ndjson:1"):
        load(tmp_path)
    with pytest.raises(DataError, match="no readable drawings"):
        load(tmp_path, skip_bad=True)
    (tmp_path / "quickdraw" / "cat.ndjson").write_text("\n\n")
    with pytest.raises(DataError, match="no readable drawings"):
        load(tmp_path)


def test_class_names_and_splits():
    from pathlib import Path

    assert class_name(Path("full_raw_The Eiffel Tower.ndjson")) == "The Eiffel Tower"
    assert class_name(Path("sketchrnn_cat.full.npz")) == "cat.full"


def test_zero_shot_split(tmp_path):
    for i, w in enumerate(("cat", "dog", "owl", "bus")):
        write_ndjson(tmp_path / "quickdraw" / f"{w}.ndjson", w, 6, seed=i)
    d = load(tmp_path, unseen=2, seed=5)
    unseen = d.info["split"]["unseen_classes"]
    assert len(unseen) == 2 and (d.sketches.loc[d.sketches.category.isin(unseen), "split"] == "test").all()
    assert load(tmp_path, unseen=2, seed=5).info["split"] == d.info["split"]


def test_real_quickdraw(data_root):
    if not (data_root / "quickdraw").exists():
        pytest.skip(f"no quickdraw under {data_root}")
    d = load_dataset("quickdraw", data_root, max_per_class=3)
    assert d.sketches["category"].nunique() == 345 and len(d) == 3 * 345
    full = load_dataset("quickdraw", data_root, classes=["cat", "The Eiffel Tower"])
    assert full.sketches["category"].value_counts().min() >= 11  # README: 11 to 114 per class
    assert not full.skipped


# ---------------------------------------------------------------------- the sample shipped in the package


def test_the_shipped_sample_is_what_its_manifest_says_and_fits_its_budget():
    from sbir_core.data import sample as QS

    manifest = QS.verify()  # every file's SHA-256
    files = sorted(QS.SAMPLE_DIR.glob("*.ndjson"))
    assert {f.stem for f in files} == set(manifest["classes"]) and len(files) == QS.N_CLASSES
    assert set(QS.WORLD_CLASSES.values()) <= set(manifest["classes"])  # the world's categories come first
    assert sum(f.stat().st_size for f in files) == manifest["bytes"] <= QS.MAX_BYTES
    assert "CC BY 4.0" in (QS.SAMPLE_DIR / "ATTRIBUTION.md").read_text()
    for line in files[0].read_text().splitlines():
        rec = json.loads(line)
        assert set(rec) == {"word", "countrycode", "recognized", "key_id", "drawing"}  # no timestamps
        assert all(len(s) == 2 and min(s[0] + s[1]) >= 0 and max(s[0] + s[1]) <= 255 for s in rec["drawing"])


def test_the_sample_loads_without_a_data_root(monkeypatch):
    from sbir_core.data import available
    from sbir_core.data import sample as QS

    monkeypatch.delenv("SBIR_DATA", raising=False)
    assert available("quickdraw_sample")
    data = load_dataset("quickdraw_sample", seed=0)
    n = sum(e["drawings"] for e in QS.verify()["classes"].values())
    assert data.name == "quickdraw_sample" and len(data) == n and data.sketches["category"].nunique() == QS.N_CLASSES
    assert (data.sketches["countrycode"].str.len() == 2).mean() > 0.95
    assert set(data.sketches["split"]) == {"train", "val", "test"}


def test_a_changed_sample_file_is_refused(tmp_path):
    import shutil

    from sbir_core.data import sample as QS

    copy = shutil.copytree(QS.SAMPLE_DIR, tmp_path / "sample")
    QS.verify(copy)
    shoe = copy / "shoe.ndjson"
    shoe.write_text(shoe.read_text().replace('"US"', '"GB"', 1))
    with pytest.raises(DataError, match="shoe.ndjson is missing or changed"):
        QS.verify(copy)


def test_simplify_moves_scales_and_reduces_like_quickdraws_own():
    from sbir_core.data.sample import simplify

    line = [[list(range(100, 601, 5)), [300] * 101, list(range(101))], [[100, 600], [300, 550]]]
    out = simplify(line)
    assert out[0] == [[0, 255], [0, 0]]  # 101 collinear points -> their two ends, at the top-left, scaled to 255
    assert out[1] == [[0, 255], [0, 128]]
    with pytest.raises(DataError):
        simplify([])


def test_the_sample_is_rebuilt_byte_for_byte_from_its_source(tmp_path):
    """The build is a script, not a hand edit: run on the shared QuickDraw copy it was made from, it writes the
    same files (same SHA-256)."""
    from sbir_core.data import sample as QS
    from sbir_core.data.registry import available, check_layout

    if not available("quickdraw"):
        pytest.skip("no QuickDraw folder under SBIR_DATA")
    rebuilt = QS.build(check_layout("quickdraw"), tmp_path)
    shipped = QS.verify()
    counts = [{c: e["drawings"] for c, e in m["classes"].items()} for m in (rebuilt, shipped)]
    if counts[0] != counts[1]:
        pytest.skip("SBIR_DATA holds another QuickDraw copy than the one the sample was built from")
    assert rebuilt == shipped
