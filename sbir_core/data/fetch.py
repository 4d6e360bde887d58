"""Download the public datasets into the layout their loaders expect: ``python -m sbir_core.data fetch NAME --to DIR``.

Every step is there so that a fetched folder can be trusted as much as a hand-made one:

* URLs are pinned in ``DATASETS`` (a comment says where each came from). A publisher that states a
  sha256 has it pinned here; for the others (all of the current sets) the digest is recorded at the
  first good fetch in ``DIR/sbir-fetch-lock.json`` and every later fetch of that URL into ``DIR`` is
  checked against it, so a file changed upstream is noticed, not silently mixed into results.
* Downloads go to ``DIR/.sbir-downloads/<file>.part`` and resume with an HTTP Range request after an
  interruption; a stalled server ends the transfer after ``timeout`` seconds, with the part kept.
* An archive is verified before it is opened, and refused as a whole when any member would land
  outside the target folder (``../``, an absolute path, a link) or is not a plain file or folder.
* Nothing is written into an existing dataset folder: the set is unpacked into a temporary hidden
  sibling, its layout is checked with the loader's own check, and only then renamed into place.
  If ``DIR/<folder>`` already exists the fetch is refused before anything is downloaded.

QMUL-Shoe-V2 and QMUL-Chair-V2 are released on request only: ``fetch`` says where to ask and the
layout to unpack them into. Only the standard library and tqdm are used; ``.7z`` archives (Sketchy)
are downloaded and verified but must be unpacked by hand (no 7z reader is installed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import posixpath
import re
import shlex
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

from sbir_core.data.base import DataError

LOCK_NAME = "sbir-fetch-lock.json"  # beside the datasets, in the data root
DOWNLOADS = ".sbir-downloads"  # hidden, so that no loader takes it for a dataset
CHUNK = 1 << 16
USER_AGENT = "sbir_core-fetch/1 (+python urllib)"


@dataclass(frozen=True)
class Source:
    """One file to download: its pinned URL, the name it is saved under, its sha256 where the publisher states one."""

    url: str
    filename: str
    sha256: str | None = None  # None: recorded in the lock at the first good fetch, checked ever after


@dataclass(frozen=True)
class Dataset:
    """One fetchable set: where its files come from and how they map onto the loader's layout.

    ``place`` maps a path inside the archive (a folder or a file; "" for the whole archive) to a path
    inside the dataset folder; members outside every entry are not unpacked. Plain files (no archive)
    are put in the dataset folder under their own name.
    """

    name: str  # the registry name: load_dataset(name)
    folder: str  # the folder under the data root that the loader finds
    title: str
    size: str
    licence: str
    chapters: str
    page: str  # where a person reads about the set
    sources: tuple[Source, ...] = ()
    place: dict[str, str] = field(default_factory=dict)
    provenance: str = ""  # where the URL came from, and whether it was verified
    needs: str = ""  # a reader this package lacks (the archive is downloaded, verified, then unpacked by hand)
    on_request: str = ""  # how to ask, for sets not openly downloadable
    per_class_url: str = ""  # QuickDraw: one file a class, "{}" is the class name
    default_classes: tuple[str, ...] = ()

    @property
    def digest_kind(self) -> str:
        if self.on_request:
            return "none (released on request)"
        if self.per_class_url or any(s.sha256 is None for s in self.sources):
            return "recorded at first fetch"
        return "pinned (publisher's)"

    def files(self, classes=None) -> tuple[Source, ...]:
        """The files to download; for a per-class set, one per class (default: ``default_classes``)."""
        if not self.per_class_url:
            if classes:
                raise DataError(f"{self.name}: --classes applies to per-class sets (quickdraw) only")
            return self.sources
        chosen = list(classes or self.default_classes)
        bad = [c for c in chosen if not c.strip() or "/" in c or c.startswith(".")]
        if bad:
            raise DataError(f"{self.name}: not a class name: {bad[0]!r}")
        return tuple(Source(self.per_class_url.format(quote(c)), f"{c}.ndjson") for c in chosen)


# Folders inside the GitHub archives below: GitHub names the top folder <repo>-<commit>.
_SHOES_COMMIT = "d5022cd8909a3b11eabcd46bdb81f5c2d1c9dd4c"  # zoeyangdw/FG-SBIR "final", 2017-07-09
_SHOES_TOP = f"FG-SBIR-{_SHOES_COMMIT}"
_PACS_COMMIT = "d586a6cf3db84896fb6cc465c7bf51bdaf6d65d8"  # MachineLearning2020/Homework3-PACS, 2019-12-18
_SKETCHY_DRIVE_ID = "1z4--ToTXYb0-2cLuUWPYM5m7ST7Ob3Ck"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            name="quickdraw",
            folder="quickdraw",
            title="Quick, Draw! simplified drawings, one ndjson file a class",
            size="tens of MB a class (not verified offline)",
            licence="CC BY 4.0 (Google)",
            chapters="3, 7, 8",
            page="https://github.com/googlecreativelab/quickdraw-dataset",
            # URL scheme of the dataset's README ("Get the data": full/simplified/<class>.ndjson); default
            # classes: those PACS shares with QuickDraw (chapters 7 and 8 pair the two)
            per_class_url="https://storage.googleapis.com/quickdraw_dataset/full/simplified/{}.ndjson",
            default_classes=("dog", "elephant", "giraffe", "guitar", "horse", "house"),
            provenance="URL scheme from googlecreativelab/quickdraw-dataset's README; not verified offline",
        ),
        Dataset(
            name="tuberlin",
            folder="tuberlin",
            title="TU-Berlin: 20,000 sketches of 250 classes (Eitz et al. 2012)",
            size="about 525 MB",
            licence="CC BY 4.0",
            chapters="3",
            page="http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/",
            # the project page's "sketches (png)" link, as used by many public download scripts
            sources=(
                Source(
                    "http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/sketches_png.zip", "sketches_png.zip"
                ),
            ),
            place={"png": "png"},
            provenance="URL of the project page's sketch download; not verified offline",
        ),
        Dataset(
            name="sketchy",
            folder="sketchy",
            title="The Sketchy database, rendered 256x256 (Sangkloy et al. 2016)",
            size="about 2 GB (third-party estimate)",
            licence="see sketchy.eye.gatech.edu (not verified offline)",
            chapters="3, 7 (4-6 at paper scale)",
            page="http://sketchy.eye.gatech.edu/",
            # rendered_256x256.7z on Google Drive: the file id linked beside the official page in the
            # PSC6K release (Lu et al.); the page's own 2016 link uses an old-style id needing a resource key
            sources=(
                Source(
                    f"https://drive.usercontent.google.com/download?id={_SKETCHY_DRIVE_ID}&export=download&confirm=t",
                    "rendered_256x256.7z",
                ),
            ),
            place={"256x256": "256x256"},
            needs="a .7z reader (py7zr or 7-Zip), not installed with this package",
            provenance="Drive id from the PSC6K README, linked beside the official page; not verified offline, "
            "and Drive may send a web page instead of the file",
        ),
        Dataset(
            name="pacs",
            folder="pacs",
            title="PACS: photo, art painting, cartoon, sketch x 7 classes (Li et al. 2017)",
            size="about 190 MB",
            licence="none stated; research use",
            chapters="3, 4-6 (as pacs_sketchy), 7, 8",
            page="https://domaingeneralization.github.io/",
            # the authors' release is a Google Drive folder (not one downloadable file) and the zip that
            # DomainBed fetches (Drive id 1JFr8f805nMUelQWWmfnJR3y4_SYoN5Pd) is reported gone; this public
            # copy of the same four domain folders (the one shared/data's copy came from) is pinned to a commit
            sources=(
                Source(
                    f"https://github.com/MachineLearning2020/Homework3-PACS/archive/{_PACS_COMMIT}.zip",
                    f"Homework3-PACS-{_PACS_COMMIT}.zip",
                ),
            ),
            place={f"Homework3-PACS-{_PACS_COMMIT}/PACS": ""},
            provenance="GitHub copy MachineLearning2020/Homework3-PACS at a pinned commit, tree checked offline: "
            "2,048 art_painting, 2,344 cartoon, 1,670 photo, 3,929 sketch; the official release is a Drive folder",
        ),
        Dataset(
            name="shoes304",
            folder="shoes304",
            title="304 shoe photos, 912 sketches, 13 part attributes (FG-SBIR, Li et al. 2014)",
            size="tens of MB (whole repository)",
            licence="none stated in the repository; research use",
            chapters="3, 4-6",
            page="https://github.com/zoeyangdw/FG-SBIR",
            # the public repository the shared copy came from, pinned to its last commit; the tree was
            # checked against shared/data/shoes304 (same photo, sketch and attribute files)
            sources=(Source(f"https://github.com/zoeyangdw/FG-SBIR/archive/{_SHOES_COMMIT}.zip", f"{_SHOES_TOP}.zip"),),
            place={
                f"{_SHOES_TOP}/Data/Img&Anno/origin/original shoe image": "photo",
                f"{_SHOES_TOP}/Data/Img&Anno/origin/original shoe sketch": "sketch",
                f"{_SHOES_TOP}/13_A_image_label.mat": "13_A_image_label.mat",
                f"{_SHOES_TOP}/13_A_sketch_label.mat": "13_A_sketch_label.mat",
            },
            provenance="GitHub zoeyangdw/FG-SBIR at its last commit; tree checked offline, archive not downloaded",
        ),
        Dataset(
            name="shoev2",
            folder="ShoeV2",
            title="QMUL-Shoe-V2 (Yu et al., SketchX)",
            size="on request",
            licence="academic use, on request",
            chapters="3 (4-6 at paper scale)",
            page="http://sketchx.eecs.qmul.ac.uk/downloads/",
            on_request="ask the SketchX lab (Yi-Zhe Song's group) through the download page's request form, "
            "stating your affiliation and academic use",
        ),
        Dataset(
            name="chairv2",
            folder="ChairV2",
            title="QMUL-Chair-V2 (Yu et al., SketchX)",
            size="on request",
            licence="academic use, on request",
            chapters="2, 3, 4-6",
            page="http://sketchx.eecs.qmul.ac.uk/downloads/",
            on_request="ask the SketchX lab (Yi-Zhe Song's group) through the download page's request form, "
            "stating your affiliation and academic use (the stroke file alone, ChairV2_Coordinate, is also in "
            "the public repository AyanKumarBhunia/on-the-fly-FGSBIR)",
        ),
    ]
}


def listing(table: dict[str, Dataset] | None = None) -> str:
    """``fetch --list``: each set, its size, licence, digest kind and the chapters it fills, then notes."""
    table = DATASETS if table is None else table
    head = ("name", "folder", "size", "licence", "sha256", "chapters")
    rows = [head] + [(d.name, d.folder + "/", d.size, d.licence, d.digest_kind, d.chapters) for d in table.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append("")
    for d in table.values():
        url = d.per_class_url or (d.sources[0].url if d.sources else d.page)
        lines.append(f"{d.name}: {d.title}")
        lines.append(f"    from {url}")
        if d.provenance:
            lines.append(f"    ({d.provenance})")
        if d.needs:
            lines.append(f"    needs {d.needs}: downloaded and verified, then unpacked by hand")
        if d.on_request:
            lines.append(f"    released on request: {d.page}")
        if d.default_classes:
            lines.append(f"    default classes: {', '.join(d.default_classes)} (choose with --classes a,b,c)")
    return "\n".join(lines)


def instructions(ds: Dataset, root: Path | None = None) -> str:
    """Where and how to ask for a set released on request, and the layout to unpack it into."""
    from sbir_core.data.qmul import layout

    where = f"{root}/" if root is not None else "<root>/"
    return (
        f"{ds.name}: {ds.title} is released on request only, so it cannot be fetched.\n"
        f"To get it, {ds.on_request}: {ds.page}\n"
        f"Then unpack it so that {where}{ds.folder}/ holds:\n{layout(ds.folder)}\n"
        f"and check it with: python -c \"from sbir_core.data import check_layout; check_layout('{ds.name}')\""
    )


class Lock:
    """The digests recorded at first fetch (``sbir-fetch-lock.json``): URL -> sha256, size, file, date."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries = json.loads(path.read_text())["files"] if path.exists() else {}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(
                f"cannot read the fetch lock {path}: {err}; restore it, or delete it to record anew"
            ) from err

    def get(self, url: str) -> dict | None:
        return self.entries.get(url)

    def record(self, url: str, sha256: str, size: int, file: str) -> None:
        self.entries[url] = {"sha256": sha256, "bytes": size, "file": file, "recorded": dt.date.today().isoformat()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"version": 1, "files": self.entries}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's content, read in chunks (``hashlib.file_digest``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _range_total(header: str | None) -> int | None:
    """The total size in a Content-Range header (``bytes 0-9/100`` or ``bytes */100``); None when unknown."""
    m = re.match(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", header or "")
    return int(m.group(1)) if m else None


def _stopped(name: str, have: int, total: int | None, why: str, part: Path) -> DataError:
    of = f" of {total}" if total is not None else ""
    return DataError(
        f"download of {name} stopped after {have}{of} bytes ({why}); the part is kept in {part}: "
        "run the same command again to resume it"
    )


def download(url: str, part: Path, timeout: float = 60.0, progress: bool = True, _fresh: bool = False) -> None:
    """Bring ``url`` into ``part``, resuming from what ``part`` already holds (HTTP Range).

    A server that ignores the Range (answers 200) is read again from the start. An interrupted or
    stalled transfer (no data for ``timeout`` seconds) keeps the part and raises a DataError saying
    to run again. An HTTP error, or a web page where a file was expected, raises a DataError too.
    """
    from tqdm import tqdm

    name = part.name.removesuffix(".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as err:
        if err.code == 416 and have and not _fresh:
            if _range_total(err.headers.get("Content-Range")) == have:
                return  # the part was already whole
            part.unlink()
            return download(url, part, timeout, progress, _fresh=True)
        raise DataError(
            f"{url} answered HTTP {err.code} {err.reason}: the file is not there (moved or withdrawn?). "
            "Check the dataset's page (fetch --list) and report the broken URL"
        ) from err
    except (URLError, OSError) as err:
        why = getattr(err, "reason", err)
        if isinstance(why, TimeoutError):
            why = f"no answer within {timeout:g} s"
        raise DataError(f"cannot reach {url}: {why}; check the network and run the same command again") from err
    with resp:
        total = None
        if resp.status == 206:
            m = re.match(r"bytes\s+(\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                resp.close()
                part.unlink()
                if _fresh:
                    raise DataError(f"{url} answered a range we did not ask for; run the same command again")
                return download(url, part, timeout, progress, _fresh=True)
            total = _range_total(resp.headers.get("Content-Range"))
            mode = "ab"
        else:
            have, mode = 0, "wb"
            if resp.headers.get("Content-Length", "").isdigit():
                total = int(resp.headers["Content-Length"])
        if resp.headers.get_content_type() == "text/html" and not name.endswith((".html", ".htm")):
            raise DataError(
                f"{url} sent a web page instead of {name} (a quota or confirmation page?). Download it in a "
                f"browser and put it at {part.with_name(name)}; the next fetch verifies and unpacks it"
            )
        part.parent.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=name, disable=not progress, leave=False)
        with open(part, mode) as f, bar:
            try:
                while chunk := resp.read1(CHUNK):
                    f.write(chunk)
                    have += len(chunk)
                    bar.update(len(chunk))
            except TimeoutError as err:
                raise _stopped(name, have, total, f"no data for {timeout:g} s", part) from err
            except (OSError, http.client.HTTPException) as err:
                raise _stopped(name, have, total, f"{type(err).__name__}: {err}", part) from err
    if total is not None and have < total:
        raise _stopped(name, have, total, "the connection closed early", part)
    if total is not None and have > total:
        part.unlink()
        raise DataError(f"{url} sent {have} bytes where it announced {total}; deleted: run the same command again")


def verified(source: Source, downloads: Path, lock: Lock, timeout: float, progress: bool, log) -> tuple[Path, str, int]:
    """The downloaded file of ``source``, its sha256 and size, checked against the pinned or recorded digest.

    A file that fails the check is deleted (a wrong file must not be resumed or unpacked) and a
    DataError says whether the publisher's or the recorded digest disagreed and what to do.
    """
    final = downloads / source.filename
    if not final.exists():
        part = final.with_name(final.name + ".part")
        download(source.url, part, timeout, progress)
        os.replace(part, final)
    digest, size = sha256_of(final), final.stat().st_size
    if source.sha256 is not None:
        if digest != source.sha256.lower():
            final.unlink()
            raise DataError(
                f"{source.filename}: sha256 {digest} is not the publisher's {source.sha256}; the download is "
                "corrupt or the file changed upstream. It was deleted: run the same command again, and if the "
                "digest still differs, report it"
            )
        log(f"[fetch] {source.filename}: sha256 matches the publisher's")
        return final, digest, size
    known = lock.get(source.url)
    if known is not None:
        if digest != known["sha256"]:
            final.unlink()
            raise DataError(
                f"{source.filename}: sha256 {digest} differs from the one recorded at its first fetch on "
                f"{known.get('recorded', '?')} ({known['sha256']}, in {lock.path}): the file changed upstream or "
                "the download is corrupt. It was deleted. If the publisher changed it on purpose, remove its "
                "entry from the lock to accept the new file"
            )
        log(f"[fetch] {source.filename}: sha256 matches the one recorded on {known.get('recorded', '?')}")
    return final, digest, size


# ----------------------------------------------------------------------------------------------- archives


@dataclass
class Member:
    """One archive entry, the same for zip and tar: its name, kind (file, dir, link, other) and a reader."""

    name: str
    kind: str
    link: str = ""
    open: Callable | None = None


def _zip_members(zf: zipfile.ZipFile) -> Iterator[Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            yield Member(info.filename, "link", zf.read(info).decode("utf-8", "replace"))
        elif info.is_dir() or stat.S_ISDIR(mode):
            yield Member(info.filename, "dir")
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # no type bits: a plain file (most writers)
            yield Member(info.filename, "other")
        else:
            yield Member(info.filename, "file", open=lambda i=info: zf.open(i))


def _tar_members(tf: tarfile.TarFile) -> Iterator[Member]:
    for info in tf.getmembers():
        if info.issym() or info.islnk():
            yield Member(info.name, "link", info.linkname)
        elif info.isdir():
            yield Member(info.name, "dir")
        elif info.isfile():
            yield Member(info.name, "file", open=lambda i=info: tf.extractfile(i))
        else:
            yield Member(info.name, "other")


def member_path(name: str) -> PurePosixPath:
    """A member's path relative to the target folder, or a DataError when it would land outside it
    (an absolute or drive path, or ``..`` anywhere: refused even where it would climb back in)."""
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise DataError(f"member {name!r} has an absolute path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"member {name!r} climbs out of the folder with '..'")
    return PurePosixPath(*parts)


def _problem(m: Member) -> str | None:
    """Why ``m`` may not be unpacked, or None."""
    try:
        path = member_path(m.name)
    except DataError as err:
        return str(err)
    if m.kind == "link":
        target = m.link.replace("\\", "/")
        resolved = posixpath.normpath(posixpath.join(str(path.parent), target))
        inside = not target.startswith("/") and resolved != ".." and not resolved.startswith("../")
        where = "inside the archive" if inside else "outside the folder"
        return f"member {m.name!r} is a link to {m.link!r} ({where}); links are never unpacked"
    if m.kind == "other":
        return f"member {m.name!r} is not a plain file or folder (a device or pipe)"
    return None


def _placed(path: PurePosixPath, place: dict[str, str]) -> PurePosixPath | None:
    """Where ``path`` (inside the archive) goes in the dataset folder under ``place``; None: not unpacked."""
    for src, dst in place.items():
        if not src:
            return PurePosixPath(dst, path)
        base = PurePosixPath(src)
        if path == base or base in path.parents:
            return PurePosixPath(dst, path.relative_to(base))
    return None


def unpack(archive: Path, place: dict[str, str], dest: Path) -> int:
    """Unpack the members of ``archive`` (zip or tar) that ``place`` selects into ``dest``; the count of files.

    Every member is checked before anything is written: one that would land outside ``dest``, a link
    or a special file refuses the whole archive with a DataError naming the first offenders.
    """
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                return _unpack(archive, list(_zip_members(zf)), place, dest)
        with tarfile.open(archive) as tf:
            return _unpack(archive, list(_tar_members(tf)), place, dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"cannot unpack {archive}: {err}; delete it and fetch again") from err


def _unpack(archive: Path, members: list[Member], place: dict[str, str], dest: Path) -> int:
    problems = [p for p in map(_problem, members) if p]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError(
            f"refused to unpack {archive}: " + "; ".join(problems[:3]) + more + ". Such an archive could write "
            "outside its folder; nothing was unpacked. Delete it and report it to the publisher"
        )
    base, count = dest.resolve(), 0
    for m in members:
        rel = _placed(member_path(m.name), place)
        if rel is None or m.kind != "file" or not rel.parts:
            continue
        out = dest.joinpath(*rel.parts)
        if base not in out.resolve().parents:  # belt and braces: member_path already refused escapes
            raise DataError(f"refused to unpack {archive}: member {m.name!r} would land outside {dest}")
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with m.open() as src, open(out, "xb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        except FileExistsError as err:
            raise DataError(f"refused to unpack {archive}: two members would both be {out}") from err
        count += 1
    if not count:
        raise DataError(
            f"{archive} holds none of {', '.join(repr(k) for k in place)}: the release's layout has changed; "
            "report it (the archive is kept)"
        )
    return count


# ----------------------------------------------------------------------------------------------- fetch


def _existing(root: Path, ds: Dataset) -> Path | None:
    """A folder of the data root that would be (or hide) this dataset: its name in any case, or the loader's find."""
    from sbir_core.data.registry import LAYOUT_CHECKS, check_layout

    if root.is_dir():
        for child in root.iterdir():
            if child.name.lower() == ds.folder.lower():
                return child
        if ds.name in LAYOUT_CHECKS:
            try:
                return check_layout(ds.name, root)
            except DataError:
                return None
    return None


def fetch(
    name: str,
    root: str | os.PathLike,
    classes=None,
    timeout: float = 60.0,
    progress: bool = True,
    keep_archives: bool = False,
    table: dict[str, Dataset] | None = None,
    log=print,
) -> Path:
    """Download, verify and unpack dataset ``name`` into ``root/<folder>``; the new folder.

    Refuses (DataError) when that folder exists, for sets released on request (the message says how
    to ask), and for archives this package cannot read (kept, verified, with the steps to unpack by
    hand). New digests go into the lock only once the set unpacked and passed its layout check.
    """
    table = DATASETS if table is None else table
    if name not in table:
        raise DataError(f"no dataset {name!r} to fetch; fetchable: {', '.join(table)} (see fetch --list)")
    ds, root = table[name], Path(root).expanduser()
    if ds.on_request:
        raise DataError(instructions(ds, root))
    target = root / ds.folder
    found = _existing(root, ds)
    if found is not None:
        raise DataError(
            f"{name}: {found} already exists; fetch never writes into an existing dataset folder. "
            f"Remove or rename it to fetch again (or fetch into another --to folder)"
        )
    files = ds.files(classes)
    downloads = root / DOWNLOADS  # made by the first download, so a failed start leaves nothing behind
    lock = Lock(root / LOCK_NAME)
    got = [(s, *verified(s, downloads, lock, timeout, progress, log)) for s in files]
    if ds.needs:
        archive, into = shlex.quote(str(got[0][1])), shlex.quote(str(target))
        _record(lock, ds, got, log)
        raise DataError(
            f"{name}: {got[0][1]} is downloaded and verified, but unpacking it needs {ds.needs}. "
            f"Unpack it by hand:\n    mkdir {into} && 7z x {archive} -o{into}\n"
            f"(or: pip install py7zr && python -m py7zr x {archive} {into}) so that "
            f'{target / next(iter(ds.place.values()))} exists, then check it with: python -c "from sbir_core.data '
            f"import check_layout; check_layout('{name}', '{root}')\""
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{ds.folder}.fetching-", dir=root))
    try:
        new = staging / ds.folder
        new.mkdir()
        for source, path, _, _ in got:
            if ds.per_class_url:
                (shutil.copyfile if keep_archives else os.replace)(path, new / source.filename)
            else:
                n = unpack(path, ds.place, new)
                log(f"[fetch] {source.filename}: {n} files unpacked")
        _check(ds.name, staging)
        if _existing(root, ds) is not None:
            raise DataError(f"{name}: {target} appeared while fetching; left as it is, nothing replaced")
        os.rename(new, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _record(lock, ds, got, log)
    if not keep_archives:
        for _, path, _, _ in got:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            downloads.rmdir()  # only when empty: other sets' parts stay
    log(f"[fetch] {name} is ready in {target}")
    return target


def _check(name: str, root: Path) -> None:
    from sbir_core.data.registry import LAYOUT_CHECKS, check_layout

    if name in LAYOUT_CHECKS:
        try:
            check_layout(name, root)
        except DataError as err:
            raise DataError(
                f"{name}: the unpacked files fail the loader's layout check, so nothing was installed: {err}"
            ) from err


def _record(lock: Lock, ds: Dataset, got, log) -> None:
    for source, _, digest, size in got:
        if source.sha256 is None and lock.get(source.url) is None:
            lock.record(source.url, digest, size, f"{ds.folder}/{source.filename}")
            log(f"[fetch] {source.filename}: first fetch, sha256 {digest} recorded in {lock.path}")
