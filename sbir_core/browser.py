"""The playground as a page: serve it with voila, drive it in Chromium, record what it shows.

``python -m sbir_core.browser serve [--port 8866]`` (what ``make app`` runs) serves
``book/playground_app.py`` as a standalone page with no code visible, on 127.0.0.1, to whoever has the
URL it prints: the URL carries a secret token made at each start, and the server answers only requests
addressed to a loopback name (see ``serve``). ``record(...)`` opens that
page in headless Chromium through Playwright, draws a world sketch with real mouse events, one
stroke at a time, and after each stroke takes a screenshot and reads the target's rank from the
page: the browser tests assert on it, and the playground chapter shows the frames.

Chromium is Debian's (``/usr/bin/chromium``, or ``$SBIR_CHROMIUM``); Playwright's own browser
download is not reachable here and is never used.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from sbir_core.errors import SBIRError
from sbir_core.paths import BOOK

APP = BOOK / "playground_app.py"
TEMPLATES = Path(__file__).parent / "app_template"  # on voila's JUPYTER_PATH: voila/templates/sbir
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# voila's configuration, as ``voila.json`` beside the app's notebook (its command line makes a dict's values
# strings, and the string "False" is true): answer only requests whose Host is a loopback address or "localhost"
# (jupyter_server's check_host, which voila turns off), on pages and kernel websockets alike, so that a
# web page whose name is re-bound to 127.0.0.1 (DNS rebinding) is refused; take the token from
# $JUPYTER_TOKEN (not the command line, which other users can read); fail rather than move to another port; show
# the page through the "sbir" template (TEMPLATES: voila's lab template with a loading message a reader understands).
VOILA_CONFIG = {
    "Voila": {
        "tornado_settings": {"allow_remote_access": False, "local_hostnames": ["localhost"]},
        "auto_token": True,
        "port_retries": 0,
    },
    "VoilaConfiguration": {"show_tracebacks": False, "template": "sbir"},
}
# A kernel holds about 1 GB at its peak (while the app loads); voila keeps one per page load until the server stops.
# The culler ends a kernel that no page is connected to (the tab was closed, or its connection dropped) once it has
# been idle this long; a page still open is never culled, however long its reader thinks.
CULL_IDLE_S = 300


def voila_config(cull_idle: int = CULL_IDLE_S) -> dict:
    """``VOILA_CONFIG`` with jupyter_server's idle-kernel culler set to ``cull_idle`` seconds (0: never cull),
    checked every fifth of that (1 to 60 s)."""
    if cull_idle < 0:
        raise ValueError(f"cull_idle must be >= 0 seconds, got {cull_idle}")
    cull = {"cull_idle_timeout": int(cull_idle), "cull_interval": int(min(60, max(1, cull_idle // 5)))}
    return VOILA_CONFIG | {"MappingKernelManager": cull | {"cull_connected": False, "cull_busy": False}}


class BrowserError(SBIRError, RuntimeError):
    """No Chromium, no Playwright, or a page that did not do what it should."""


def chromium_path() -> str | None:
    """The system Chromium: ``$SBIR_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on the PATH."""
    env = os.environ.get("SBIR_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_notebook(folder: Path, cull_idle: int = CULL_IDLE_S) -> Path:
    """``book/playground_app.py`` as a notebook in ``folder`` (voila serves notebooks), with the server's
    configuration beside it (``voila_config``; voila reads ``voila.json`` from its working folder)."""
    import jupytext

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "playground_app.ipynb"
    jupytext.write(jupytext.read(APP), path)
    (folder / "voila.json").write_text(json.dumps(voila_config(cull_idle), indent=1))
    return path


def app_url(url: str, **options) -> str:
    """``url`` (the server's, with its token) with ``options`` (None: left out) added to its query."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query) + [(k, str(v)) for k, v in options.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextlib.contextmanager
def serve(
    port: int | None = None,
    timeout: float = 60.0,
    quiet: bool = True,
    overrides: dict | None = None,
    cull_idle: int = CULL_IDLE_S,
):
    """Serve the playground with voila on 127.0.0.1; yields its URL, token included; on exit stops the server
    and its kernels (``_stop``).

    The token is new at each start: without it (or the cookie a page opened with it gets) voila answers
    pages with its login form and API and websocket requests with 403, so no other local user and no web
    page in the browser can start or drive a kernel. A request whose Host is not a loopback name gets 403
    whatever it carries (``VOILA_CONFIG``).
    overrides: chapter parameters for the app's methods other than the configs' (``playground.methods``).
    cull_idle: seconds after which a kernel no page is connected to is ended (``CULL_IDLE_S``; 0: never)."""
    from sbir_core.data.base import cache_dir

    port = port or _free_port()
    nb = app_notebook(cache_dir() / "app", cull_idle)
    log = open(nb.with_suffix(".log"), "w") if quiet else None  # noqa: SIM115 - the server writes it until it stops
    cmd = [sys.executable, "-m", "voila", str(nb), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"]
    token = secrets.token_urlsafe(24)
    jupyter_path = os.pathsep.join(p for p in (str(TEMPLATES), os.environ.get("JUPYTER_PATH", "")) if p)
    env = os.environ | {
        "JUPYTER_TOKEN": token,
        "SBIR_PLAYGROUND_OVERRIDES": json.dumps(overrides or {}),
        "JUPYTER_PATH": jupyter_path,
    }
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT if quiet else None,
        cwd=nb.parent,
        env=env,
        start_new_session=True,  # Ctrl-C in a terminal reaches only this process, which stops voila in order
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise BrowserError(f"voila exited with {proc.returncode}; see {nb.with_suffix('.log')}")
            try:
                urllib.request.urlopen(base + "api", timeout=2)
                break
            except urllib.error.HTTPError:  # any answer means the server is up
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BrowserError(f"voila did not answer on {base} within {timeout:.0f} s") from None
                time.sleep(0.3)
        yield app_url(base, token=token)
    finally:
        _stop(proc)
        if log:
            log.close()


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """End voila and every process it started. SIGTERM to its process group lets voila shut its kernels
    down; but jupyter_client starts each kernel in a session of its own, out of the group's reach, so the
    process tree is listed first and whatever of it is left after ``grace`` seconds is killed."""
    import psutil  # ipykernel's dependency, so there wherever voila runs kernels

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    _, alive = psutil.wait_procs(tree, timeout=max(0.0, deadline - time.monotonic()))
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def browser_page(width: int = 1100, height: int = 1000):
    """A Playwright page in headless system Chromium (BrowserError when either is missing)."""
    exe = chromium_path()
    if exe is None:
        raise BrowserError("no Chromium: install Debian's chromium (apt-get install chromium) or set SBIR_CHROMIUM")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        raise BrowserError(
            "the browser tests need playwright (pip install playwright; never 'playwright install': "
            "it uses the system Chromium)"
        ) from err
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            # the uncaught errors of the document now shown: a new document starts a new list (the one navigated
            # away from can fail as it unloads, its kernel connection closing under it: "Cannot send")
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("framenavigated", lambda frame: errors.clear() if frame == page.main_frame else None)
            page.errors = errors
            yield page
        finally:
            browser.close()


PAD = ".sbir-pad"


def open_app(page, url: str, timeout: float = 120.0, **options) -> None:
    """Go to the app (``options`` become its URL query) and wait until the pad and the results are there (the
    results hidden while the chosen method is not trained)."""
    page.goto(app_url(url, **options), timeout=timeout * 1000)
    page.wait_for_selector(f"{PAD} canvas, canvas{PAD}", timeout=timeout * 1000)
    page.wait_for_selector(".sbir-rank", state="attached", timeout=timeout * 1000)


def pad_box(page) -> dict:
    el = page.query_selector(f"canvas{PAD}") or page.query_selector(f"{PAD} canvas")
    box = el.bounding_box()
    if box is None:
        raise BrowserError("the sketch pad is not visible")
    return box


def draw_stroke(page, points: np.ndarray, box: dict, canvas: float = 256.0) -> None:
    """One stroke with real mouse events: press at its first point, move through the rest, release."""
    sx, sy = box["width"] / canvas, box["height"] / canvas
    xy = [(box["x"] + float(x) * sx, box["y"] + float(y) * sy) for x, y in np.asarray(points)[:, :2]]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for p in xy[1:]:
        page.mouse.move(*p)
    page.mouse.up()


def touch_stroke(page, points: np.ndarray, box: dict, canvas: float = 256.0) -> None:
    """One stroke with a finger: real touch input through the DevTools protocol (touch start at its first point,
    moves through the rest, end), on a page with touch switched on (``Emulation.setTouchEmulationEnabled``), as a
    phone's browser delivers it."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 1})
        sx, sy = box["width"] / canvas, box["height"] / canvas
        xy = [{"x": box["x"] + float(x) * sx, "y": box["y"] + float(y) * sy} for x, y in np.asarray(points)[:, :2]]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [xy[0]]})
        for p in xy[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [p]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    finally:
        cdp.detach()


def dispatch_stroke(page, points: np.ndarray, canvas: float = 256.0, chunk: int = 500, timeout: float = 120.0) -> None:
    """One stroke as DOM mouse events dispatched on the pad, ``chunk`` at a time. Chromium delivers real
    input (``draw_stroke``) once per frame, 16.7 ms an event, so 10,000 points would take three
    minutes. Dispatched events reach the same listeners at once, but a burst of thousands overflows the
    queues between page and kernel and some are lost (the release among them), which real input never
    does; so each chunk waits until the kernel has recorded the previous one (the pad's status, updated
    every ``widgets.FLUSH_POINTS`` points)."""
    from sbir_core.widgets import FLUSH_POINTS

    pts = np.asarray(points)[:, :2].tolist()
    before = points_seen(page)
    send = """(el, a) => { const r = el.getBoundingClientRect(), sx = r.width / a.canvas, sy = r.height / a.canvas;
                 for (const [type, p] of a.events) el.dispatchEvent(new MouseEvent(type, {bubbles: true,
                     clientX: r.left + p[0] * sx, clientY: r.top + p[1] * sy,
                     buttons: type === 'mouseup' ? 0 : 1})); }"""
    sel = f"canvas{PAD}, {PAD} canvas"
    for start in range(0, len(pts), chunk):
        events = [("mousedown" if start + i == 0 else "mousemove", p) for i, p in enumerate(pts[start : start + chunk])]
        page.eval_on_selector(sel, send, {"events": events, "canvas": canvas})
        sent = before + min(start + chunk, len(pts))
        page.wait_for_function(
            """n => { const m = /([0-9]+) points/.exec(document.querySelector('.sbir-pad-status').innerText);
                      return m && parseInt(m[1]) >= n; }""",
            arg=sent - FLUSH_POINTS,
            timeout=timeout * 1000,
        )
    page.eval_on_selector(sel, send, {"events": [("mouseup", pts[-1])], "canvas": canvas})


def points_seen(page) -> int:
    """How many points the pad's Python side has recorded, as its status line says."""
    import re

    m = re.search(r"(\d+) points", page.inner_text(".sbir-pad-status"))
    return int(m.group(1)) if m else 0


def wait_for_strokes(page, n: int, timeout: float = 30.0) -> None:
    """Wait until the kernel has seen ``n`` strokes and the page shows the results of the last one."""
    page.wait_for_function(
        """n => { const s = document.querySelector('.sbir-pad-status');
                  const d = document.querySelector('.sbir-done [data-strokes]');
                  return s && parseInt(s.innerText) === n && d && d.dataset.strokes === String(n); }""",
        arg=n,
        timeout=timeout * 1000,
    )


def page_state(page) -> dict:
    """What the page shows: the target's rank (None when not shown), the top labels, the message."""
    rank_el = page.query_selector(".sbir-target-rank")
    return {
        "rank": int(rank_el.get_attribute("data-rank")) if rank_el else None,
        "top": [t.strip() for t in page.eval_on_selector_all(".sbir-hit", "els => els.map(e => e.innerText)")],
        "message": page.inner_text(".sbir-message").strip(),
        "errors": list(page.errors),
    }


def record(
    out: Path,
    url: str | None = None,
    method: str = "04_triplet_baseline",
    category: str = "shoe",
    target: int = 0,
    page=None,
    overrides: dict | None = None,
    scale: str = "ci",
) -> dict:
    """Draw world sketch ``target`` of ``category`` in the app stroke by stroke, screenshot each result, with
    ``method``'s model at ``scale`` (the app's URL says which).

    Writes ``out/frame_NN.png`` (the page after stroke NN) and ``out/frames.json``; returns that record:
    the sketch id, and per stroke the rank of its photo shown in the page and the top labels, and the latency
    as a user feels it: ``open_s``, from asking for the page to a pad that takes strokes (the kernel started and
    the app run), and per stroke ``answer_ms``, from the mouse's release to the page showing that stroke's
    results (measured from this side of Playwright, so a few ms of its round trips are included). Without a
    ``page``, called where an event loop runs (a notebook's kernel), it records from a worker thread:
    Playwright's sync API refuses to start inside a running loop. A given page stays on its own thread.
    """
    if page is None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                return pool.submit(record, out, url, method, category, target, None, overrides, scale).result()
    from sbir_core import playground as P
    from sbir_core import strokes as SK

    choice = P.choice(method, scale, **(overrides or {}))
    engine = P.load(choice)
    gallery = P.world_gallery(engine.views, category)
    tgt = gallery.targets[target % len(gallery.targets)]
    parts = SK.split_strokes(tgt.strokes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("frame_*.png"):
        old.unlink()
    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(serve(overrides=overrides))
        if page is None:
            page = stack.enter_context(browser_page())
        t0 = time.perf_counter()
        open_app(page, url, method=method, gallery=f"world:{category}", target=target, scale=scale)
        box = pad_box(page)
        open_s = time.perf_counter() - t0
        frames = []
        for n, part in enumerate(parts, 1):
            draw_stroke(page, part, box)
            released = time.perf_counter()
            wait_for_strokes(page, n)
            answer_ms = 1000 * (time.perf_counter() - released)
            state = page_state(page)
            shot = out / f"frame_{n:02d}.png"
            page.locator(".sbir-explorer").screenshot(path=str(shot))
            offline = engine.query(SK.join_strokes(parts[:n]), gallery, 10, tgt.index).target_rank
            frames.append(
                {
                    "stroke": n,
                    "rank": state["rank"],
                    "offline_rank": offline,
                    "top": state["top"],
                    "message": state["message"],
                    "file": shot.name,
                    "answer_ms": answer_ms,
                }
            )
    rec = {
        "method": method,
        "key": choice.key,
        "category": category,
        "sketch_id": tgt.sketch_id,
        "gallery": len(gallery),
        "strokes": len(parts),
        "open_s": open_s,
        "frames": frames,
    }
    (out / "frames.json").write_text(json.dumps(rec, indent=1))
    return rec


def _interrupt(signum, frame):
    """SIGTERM stops ``serve`` as Ctrl-C does (its default would end this process alone, leaving voila and
    its kernels running): the interrupt unwinds ``serve()``, which stops them."""
    raise KeyboardInterrupt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.browser", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the playground app (make app)")
    s.add_argument("--port", type=int, default=8866)
    s.add_argument("--no-browser", action="store_true")
    s.add_argument(
        "--cull-idle",
        type=int,
        default=CULL_IDLE_S,
        metavar="SECONDS",
        help=f"end a kernel no page is connected to after this long idle (default {CULL_IDLE_S}; 0: never)",
    )
    r = sub.add_parser("record", help="draw a world sketch in the app and save the frames")
    r.add_argument("out", type=Path)
    r.add_argument("--target", type=int, default=0)
    r.add_argument("--category", default="shoe")
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        signal.signal(signal.SIGTERM, _interrupt)
        with serve(args.port, quiet=False, cull_idle=args.cull_idle) as url:
            print(f"the playground is at {url} (Ctrl-C stops it)", flush=True)
            if not args.no_browser:
                webbrowser.open(url)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        return 0
    rec = record(args.out, category=args.category, target=args.target)
    for f in rec["frames"]:
        print(f"stroke {f['stroke']:>2}: rank {f['rank']} (offline {f['offline_rank']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
