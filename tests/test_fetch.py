"""The dataset fetcher without the internet: tiny archives built here, served from 127.0.0.1.

The server (http.server in a thread) answers Range requests itself and can misbehave on purpose:
cut a transfer short once, stall, ignore ranges, send a web page. A guard refuses any connection
that is not to the loopback address, so no test can reach outside the machine.
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import threading
import time
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sbir_core.data import check_layout
from sbir_core.data.__main__ import main
from sbir_core.data.base import DataError
from sbir_core.data.fetch import DATASETS, DOWNLOADS, LOCK_NAME, Lock, Source, fetch, listing, unpack

routes: dict[str, dict] = {}  # path -> {"body": bytes, "mode": None | "truncate_once" | "stall", "ranges", "type"}
asked: list[tuple[str, str | None]] = []  # (path, Range header) of every request


class Handler(BaseHTTPRequestHandler):
    """Serves routes with byte ranges (206, 416), a 404 for anything else, and the misbehaviours above."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        asked.append((self.path, self.headers.get("Range")))
        spec = routes.get(self.path)
        if spec is None:
            self.send_error(404)
            return
        body, start = spec["body"], 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and spec.get("ranges", True):
            start = int(m.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        self.send_header("Content-Type", spec.get("type", "application/octet-stream"))
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        if spec.get("mode") == "truncate_once":
            spec["mode"] = None
            self.wfile.write(rest[: len(rest) // 2])  # then the connection closes
        elif spec.get("mode") == "stall":
            self.wfile.write(rest[:10])
            self.wfile.flush()
            spec["release"].wait(5)  # silent until the test is done
        else:
            self.wfile.write(rest)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fresh routes per test, no proxy, and a connection anywhere but 127.0.0.1 is an error."""
    routes.clear()
    asked.clear()
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] in ("127.0.0.1", "localhost"), f"a test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# a TU-Berlin release in miniature: png/<class>/<n>.png and the release's file list
TUBERLIN = {
    "png/airplane/1.png": b"\x89PNG one" * 50,
    "png/airplane/2.png": b"\x89PNG two" * 50,
    "png/cat/3.png": b"\x89PNG three" * 50,
    "png/filelist.txt": b"airplane/1.png\nairplane/2.png\ncat/3.png\n",
}


def serve(server, path, body, **spec) -> str:
    routes[path] = {"body": body, **spec}
    return server + path


def tuberlin(url, sha256=None) -> dict:
    """The real tuberlin entry (its place map and layout check) with the URL pointed at the local server."""
    return {"tuberlin": replace(DATASETS["tuberlin"], sources=(Source(url, "sketches_png.zip", sha256),))}


def run(name, root, table, **kw):
    logs = []
    kw.setdefault("timeout", 5)
    return fetch(name, root, table=table, progress=False, log=logs.append, **kw), logs


def downloaded(root: Path) -> list[str]:
    """What the downloads folder holds (it exists only while something is there)."""
    folder = root / DOWNLOADS
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def leftovers(root: Path) -> list[str]:
    """Hidden staging folders or stray files a fetch might have left in the data root."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".") and p.name != DOWNLOADS)


def test_good_download_installs_and_records_the_digest(server, tmp_path):
    body = zip_bytes(TUBERLIN)
    table = tuberlin(serve(server, "/tub.zip", body))
    target, logs = run("tuberlin", tmp_path, table)
    assert target == tmp_path / "tuberlin"
    assert (target / "png" / "cat" / "3.png").read_bytes() == TUBERLIN["png/cat/3.png"]
    assert check_layout("tuberlin", tmp_path) == target / "png"
    entry = Lock(tmp_path / LOCK_NAME).get(server + "/tub.zip")
    assert entry["sha256"] == hashlib.sha256(body).hexdigest() and entry["bytes"] == len(body)
    assert any("first fetch" in line for line in logs)
    assert not (tmp_path / DOWNLOADS).exists(), "the archive is removed once unpacked, and its empty folder"
    assert leftovers(tmp_path) == []
    # a second fetch never writes into the existing folder, and asks nothing of the server
    asked.clear()
    with pytest.raises(DataError, match="already exists"):
        run("tuberlin", tmp_path, table)
    assert asked == []


def test_a_changed_file_is_caught_by_the_recorded_digest(server, tmp_path):
    url = serve(server, "/tub.zip", zip_bytes(TUBERLIN))
    target, _ = run("tuberlin", tmp_path, tuberlin(url))
    for f in sorted(target.rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    target.rmdir()
    serve(server, "/tub.zip", zip_bytes({**TUBERLIN, "png/cat/4.png": b"new upstream"}))
    with pytest.raises(DataError, match="differs from the one recorded"):
        run("tuberlin", tmp_path, tuberlin(url))
    assert not target.exists() and downloaded(tmp_path) == []


def test_pinned_digest_right_and_wrong(server, tmp_path):
    body = zip_bytes(TUBERLIN)
    url = serve(server, "/tub.zip", body)
    with pytest.raises(DataError, match="not the publisher's"):
        run("tuberlin", tmp_path / "a", tuberlin(url, "0" * 64))
    assert not (tmp_path / "a" / "tuberlin").exists()
    assert downloaded(tmp_path / "a") == [], "a wrong file is deleted, neither kept nor resumed"
    _, logs = run("tuberlin", tmp_path / "b", tuberlin(url, hashlib.sha256(body).hexdigest()))
    assert any("matches the publisher's" in line for line in logs)
    assert Lock(tmp_path / "b" / LOCK_NAME).get(url) is None, "pinned digests are not recorded"


def test_truncated_transfer_resumes_with_a_range_request(server, tmp_path):
    body = zip_bytes(TUBERLIN)
    url = serve(server, "/tub.zip", body, mode="truncate_once")
    with pytest.raises(DataError, match=rf"stopped after {len(body) // 2} of {len(body)} bytes.*run the same"):
        run("tuberlin", tmp_path, tuberlin(url))
    part = tmp_path / DOWNLOADS / "sketches_png.zip.part"
    assert part.stat().st_size == len(body) // 2
    target, _ = run("tuberlin", tmp_path, tuberlin(url))
    assert asked[-1] == ("/tub.zip", f"bytes={len(body) // 2}-")
    assert (target / "png" / "airplane" / "2.png").exists() and not part.exists()
    assert Lock(tmp_path / LOCK_NAME).get(url)["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_server_that_ignores_ranges_is_read_from_the_start(server, tmp_path):
    body = zip_bytes(TUBERLIN)
    url = serve(server, "/tub.zip", body, ranges=False)
    part = tmp_path / DOWNLOADS / "sketches_png.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from elsewhere")
    run("tuberlin", tmp_path, tuberlin(url, hashlib.sha256(body).hexdigest()))
    assert asked[-1][1] == "bytes=26-" and (tmp_path / "tuberlin" / "png").is_dir()


def test_a_part_already_whole_is_not_fetched_again(server, tmp_path):
    body = zip_bytes(TUBERLIN)
    url = serve(server, "/tub.zip", body)
    part = tmp_path / DOWNLOADS / "sketches_png.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(body)  # stopped after the last byte, before the rename
    run("tuberlin", tmp_path, tuberlin(url, hashlib.sha256(body).hexdigest()))
    assert asked == [("/tub.zip", f"bytes={len(body)}-")]  # answered 416: nothing more to send
    assert (tmp_path / "tuberlin" / "png").is_dir()


def test_404_says_the_file_is_not_there(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        run("tuberlin", tmp_path, tuberlin(server + "/gone.zip"))
    assert downloaded(tmp_path) == [] and not any(tmp_path.iterdir()), "a failed start leaves nothing"


def test_a_stalled_server_times_out_and_keeps_the_part(server, tmp_path):
    release = threading.Event()
    url = serve(server, "/tub.zip", zip_bytes(TUBERLIN), mode="stall", release=release)
    t0 = time.monotonic()
    try:
        with pytest.raises(DataError, match=r"no data for 0.5 s"):
            run("tuberlin", tmp_path, tuberlin(url), timeout=0.5)
    finally:
        release.set()
    assert time.monotonic() - t0 < 4
    assert (tmp_path / DOWNLOADS / "sketches_png.zip.part").stat().st_size == 10


def test_a_web_page_instead_of_the_file_is_refused(server, tmp_path):
    url = serve(server, "/tub.zip", b"<html>quota exceeded</html>", type="text/html")
    with pytest.raises(DataError, match="web page"):
        run("tuberlin", tmp_path, tuberlin(url))
    assert Lock(tmp_path / LOCK_NAME).get(url) is None


def tar_bytes(entries) -> bytes:
    """entries: (name, data) for files, (name, "->", target) for symbolic links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for entry in entries:
            info = tarfile.TarInfo(entry[0])
            if len(entry) == 3:
                info.type, info.linkname = tarfile.SYMTYPE, entry[2]
                tf.addfile(info)
            else:
                info.size = len(entry[1])
                tf.addfile(info, io.BytesIO(entry[1]))
    return buf.getvalue()


def zip_link(name: str, target: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("png/cat/ok.png", b"fine")
        info = zipfile.ZipInfo(name)
        info.external_attr = (0o120777 << 16) | 0x20  # a symbolic link, as Info-ZIP stores one
        zf.writestr(info, target)
    return buf.getvalue()


UNSAFE = {
    "zip-dotdot": (".zip", zip_bytes({"png/cat/ok.png": b"fine", "png/../../evil.txt": b"x"}), "'..'"),
    "zip-absolute": (".zip", zip_bytes({"png/cat/ok.png": b"fine", "/tmp/evil.txt": b"x"}), "absolute"),
    "zip-drive": (".zip", zip_bytes({"png/cat/ok.png": b"fine", "C:/evil.txt": b"x"}), "absolute"),
    "zip-link-out": (".zip", zip_link("png/cat/evil.png", "../../../../etc/passwd"), "outside the folder"),
    "tar-dotdot": (".tar", tar_bytes([("png/cat/ok.png", b"fine"), ("../evil.txt", b"x")]), "'..'"),
    "tar-absolute": (".tar", tar_bytes([("png/cat/ok.png", b"fine"), ("/tmp/evil.txt", b"x")]), "absolute"),
    "tar-link-out": (".tar", tar_bytes([("png/cat/ok.png", b"fine"), ("png/evil", "->", "/etc")]), "outside"),
    "tar-link-then-write": (
        ".tar",
        tar_bytes([("png/up", "->", "../.."), ("png/up/evil.txt", b"x")]),
        "outside the folder",
    ),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_archives_with_escaping_members_are_refused_whole(tmp_path, case):
    suffix, data, why = UNSAFE[case]
    archive = tmp_path / f"a{suffix}"
    archive.write_bytes(data)
    dest = tmp_path / "deep" / "er" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(DataError, match=rf"refused to unpack.*{re.escape(why)}"):
        unpack(archive, {"": ""}, dest)
    assert not any(dest.iterdir()), "nothing is unpacked, not even the harmless members"
    assert not list(tmp_path.rglob("evil*"))


def test_an_escaping_archive_fetched_end_to_end_installs_nothing(server, tmp_path):
    url = serve(server, "/bad.zip", zip_bytes({**TUBERLIN, "png/../../evil.txt": b"x"}))
    with pytest.raises(DataError, match="refused to unpack"):
        run("tuberlin", tmp_path / "root", tuberlin(url))
    assert not (tmp_path / "root" / "tuberlin").exists() and leftovers(tmp_path / "root") == []
    assert not list(tmp_path.rglob("evil*"))
    assert Lock(tmp_path / "root" / LOCK_NAME).get(url) is None, "a refused archive's digest is never recorded"


SHOES_TOP = "FG-SBIR-d5022cd8909a3b11eabcd46bdb81f5c2d1c9dd4c"
PACS_TOP = "Homework3-PACS-d586a6cf3db84896fb6cc465c7bf51bdaf6d65d8"
RELEASES = {  # the real place maps on archives shaped like the pinned GitHub commits
    "shoes304": {
        f"{SHOES_TOP}/Data/Img&Anno/origin/original shoe image/001.jpg": b"photo",
        f"{SHOES_TOP}/Data/Img&Anno/origin/original shoe sketch/001-1.jpg": b"sketch",
        f"{SHOES_TOP}/13_A_image_label.mat": b"mat",
        f"{SHOES_TOP}/13_A_sketch_label.mat": b"mat",
        f"{SHOES_TOP}/Data/DPMs/model_shoe001_C3.mat": b"not kept",
    },
    "pacs": {
        f"{PACS_TOP}/PACS/sketch/dog/n02103406_1011-1.png": b"sketch",
        f"{PACS_TOP}/PACS/photo/dog/056_0001.jpg": b"photo",
        f"{PACS_TOP}/gradient_reversal_example.py": b"not kept",
    },
}
KEPT = {
    "shoes304": ["13_A_image_label.mat", "13_A_sketch_label.mat", "photo/001.jpg", "sketch/001-1.jpg"],
    "pacs": ["photo/dog/056_0001.jpg", "sketch/dog/n02103406_1011-1.png"],
}


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_the_pinned_releases_unpack_into_the_loaders_layout(server, tmp_path, name):
    ds = DATASETS[name]
    url = serve(server, f"/{name}.zip", zip_bytes(RELEASES[name]))
    target, _ = run(name, tmp_path, {name: replace(ds, sources=(replace(ds.sources[0], url=url),))})
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == KEPT[name]
    check_layout(name, tmp_path)


def test_quickdraw_fetches_one_file_a_class(server, tmp_path):
    for cls in ("dog", "ice cream"):
        serve(server, f"/qd/{cls.replace(' ', '%20')}.ndjson", b'{"word": "%s", "drawing": []}\n' % cls.encode())
    table = {"quickdraw": replace(DATASETS["quickdraw"], per_class_url=server + "/qd/{}.ndjson")}
    target, _ = run("quickdraw", tmp_path, table, classes=["dog", "ice cream"])
    assert sorted(p.name for p in target.iterdir()) == ["dog.ndjson", "ice cream.ndjson"]
    assert len(Lock(tmp_path / LOCK_NAME).entries) == 2
    with pytest.raises(DataError, match="per-class sets"):
        run("tuberlin", tmp_path, tuberlin(server + "/x.zip"), classes=["dog"])


def test_a_7z_set_is_downloaded_verified_and_left_to_unpack_by_hand(server, tmp_path):
    url = serve(server, "/r.7z", b"7z\xbc\xaf\x27\x1c tiny")
    table = {"sketchy": replace(DATASETS["sketchy"], sources=(Source(url, "rendered_256x256.7z"),))}
    with pytest.raises(DataError, match=r"(?s)needs a \.7z reader.*7z x"):
        run("sketchy", tmp_path, table)
    assert (tmp_path / DOWNLOADS / "rendered_256x256.7z").exists() and not (tmp_path / "sketchy").exists()
    assert Lock(tmp_path / LOCK_NAME).get(url) is not None


def test_sets_on_request_say_where_to_ask_and_the_layout(tmp_path, capsys):
    assert main(["fetch", "shoev2", "--to", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "on request" in err and "sketchx" in err and "ShoeV2/ShoeV2_Coordinate" in err
    assert not any(tmp_path.iterdir())


def test_cli_list_and_refusal_of_an_existing_folder(tmp_path, capsys):
    assert main(["fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert out == listing() + "\n"
    for name in ("quickdraw", "sketchy", "tuberlin", "pacs", "shoes304", "shoev2", "chairv2"):
        assert re.search(rf"^{name}\s", out, re.M)
    assert "recorded at first fetch" in out and "released on request" in out and ".7z reader" in out
    (tmp_path / "TU-Berlin" / "png").mkdir(parents=True)  # the loader would find this one: never a second copy
    assert main(["fetch", "tuberlin", "--to", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
