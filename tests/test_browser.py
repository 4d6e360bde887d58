"""Browser tests of the playground app: voila serves ``book/playground_app.py``, Playwright drives
Debian's Chromium with real mouse events (``sbir_core.browser``).

They need chapter 4's trained Triplet-SN (seed ``SEED`` of its ci parameters): the fixture takes it
from the store, or trains it as the playground's "train it here" does, under the same key, so the
chapter later loads it instead of training it again. Without Chromium or Playwright the tests
skip, except where ``SBIR_REQUIRE_BROWSER=1`` (CI), where that is a failure.

The recorded frames go to ``<cache>/playground/frames``, where the playground chapter finds them.
"""

import contextlib
import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from sbir_core import browser as BR
from sbir_core import playground as P
from sbir_core.data.base import cache_dir

REQUIRED = os.environ.get("SBIR_REQUIRE_BROWSER") == "1"


def _missing() -> str | None:
    if BR.chromium_path() is None:
        return "no Chromium (apt-get install chromium, or set SBIR_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None


@pytest.fixture(scope="module")
def engine():
    why = _missing()
    if why:
        if REQUIRED:
            pytest.fail(f"SBIR_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    return P.load(P.choice("04_triplet_baseline", "ci"), train=True, progress=False)


# StyleMeUp and Adaptive FG-SBIR trained for a few steps, by the page's own "train it here", for the style swap and
# personalise tabs' happy paths (chapter 4's run, the other tests' model, is the same with or without these)
SMALL_RUNS = {"SMU_STEPS": 4, "META_STEPS": 3}


@pytest.fixture(scope="module")
def page(engine):
    with BR.serve(overrides=SMALL_RUNS) as url, BR.browser_page() as page:
        page.app_url = url
        yield page


def copy_target(engine, category: str = "shoe") -> int:
    """A world sketch that the evaluator ranks first from its own raster (its index among the targets)."""
    i = engine.first_ranked_target(P.world_gallery(engine.views, category))
    if i is None:
        pytest.fail(f"the trained model ranks no {category} sketch's photo first: is it trained?")
    return i


def test_drawn_copy_of_a_world_sketch_finds_its_photo(engine, page):
    """Stroke by stroke, the grid fills and updates; the finished copy's photo is in the top 10.

    The copy is drawn with real mouse events through the canvas, so its points are the browser's
    (whole or fractional pixels), not the dataset's: the page's rank is compared with the evaluator's
    rank of the same sketch, and the frames keep both."""
    target = copy_target(engine)
    out = cache_dir() / "playground" / "frames"
    rec = BR.record(out, url=page.app_url, target=target, page=page)
    frames = rec["frames"]
    assert len(frames) == rec["strokes"] >= 2
    assert all(len(f["top"]) == 10 for f in frames), [len(f["top"]) for f in frames]
    assert frames[-1]["offline_rank"] == 1
    assert frames[-1]["rank"] <= 10, frames
    assert not page.errors, page.errors
    assert json.loads((out / "frames.json").read_text())["sketch_id"] == rec["sketch_id"]
    assert all((out / f["file"]).stat().st_size > 5_000 for f in frames)


def test_bad_drawings_leave_the_app_working(engine, page):
    BR.open_app(page, page.app_url, method="04_triplet_baseline", gallery="world:mug")
    box = BR.pad_box(page)
    assert BR.page_state(page)["top"] == []  # nothing drawn: an empty grid
    # a one-point drawing: a click
    BR.draw_stroke(page, np.array([[128.0, 128.0]]), box)
    BR.wait_for_strokes(page, 1)
    state = BR.page_state(page)
    assert len(state["top"]) == 10 and "Traceback" not in page.content()
    # an empty drawing: clear
    page.get_by_role("button", name="clear").click()
    BR.wait_for_strokes(page, 0)
    state = BR.page_state(page)
    assert state["top"] == [] and "draw on the canvas" in state["message"]
    # a 10,000-point scribble (dispatched: real input arrives one event per frame, see dispatch_stroke)
    rng = np.random.default_rng(0)
    scribble = np.cumsum(rng.normal(0, 6, (10_000, 2)), 0) % 250 + 3
    BR.dispatch_stroke(page, scribble)
    BR.wait_for_strokes(page, 1, timeout=180)
    state = BR.page_state(page)
    assert len(state["top"]) == 10, state
    assert page.inner_text(".sbir-pad-status").startswith("1 stroke, 10000 points")
    # a stroke that leaves the canvas: it ends at the edge, and the app answers it
    BR.draw_stroke(page, np.array([[200.0, 128.0], [250.0, 128.0], [330.0, 128.0], [400.0, 140.0]]), box)
    BR.wait_for_strokes(page, 2)
    assert len(BR.page_state(page)["top"]) == 10
    assert not page.errors, page.errors
    assert "Traceback" not in page.content()


XSS = "<img src=x onerror=window.__xss=1>"


def injected(page) -> dict:
    """Whether a payload ran (``window.__xss`` set) or became an element (an ``<img src=x|y>`` in the page)."""
    return page.evaluate(
        """() => ({ran: window.__xss !== undefined,
                   elements: document.querySelectorAll('img[src=x], img[src=y]').length})"""
    )


def test_html_in_the_url_and_in_a_folder_shows_as_text(engine, page, tmp_path):
    """Reflected: every parameter of the URL, and a parameter's name, hold a payload. Stored: a folder gallery
    whose image (its label, in the results) and unreadable file (the skipped list) are named as HTML, then a
    folder path typed in that is HTML (the error). Each shows as its characters; none runs or becomes an element.
    One page load for all: each load starts a kernel."""
    folder = tmp_path / "gallery"
    folder.mkdir()
    Image.new("RGB", (20, 20), (200, 30, 30)).save(folder / f"{XSS}.png")
    (folder / "<img src=y onerror=window.__xss=2>.jpg").write_bytes(b"not an image")

    BR.open_app(page, page.app_url, gallery=XSS, method=XSS, target=XSS, scale=XSS, **{XSS: "1"})
    notice = page.inner_text(".sbir-notice")
    assert all(f"{what} '{XSS}'" in notice for what in ("gallery", "method", "target", "scale", "parameter")), notice

    page.select_option(".sbir-gallery select", label="a folder of your own images ...")
    page.get_by_placeholder("a folder of your own images").fill(str(folder))
    page.get_by_role("button", name="load folder").click()
    page.wait_for_function("() => document.querySelector('.sbir-message').innerText.includes('skipped')")
    BR.draw_stroke(page, np.array([[60.0, 60.0], [200.0, 190.0]]), BR.pad_box(page))
    BR.wait_for_strokes(page, 1)
    state = BR.page_state(page)
    assert state["top"][0].startswith(XSS) and "<img src=y onerror=window.__xss=2>.jpg" in state["message"], state

    page.get_by_placeholder("a folder of your own images").fill(f"/nowhere/{XSS}")
    page.get_by_role("button", name="load folder").click()
    page.wait_for_function("() => document.querySelector('.sbir-message').innerText.includes('is not a folder')")
    assert f"/nowhere/{XSS} is not a folder" in BR.page_state(page)["message"]
    assert injected(page) == {"ran": False, "elements": 0}
    assert not page.errors, page.errors


def test_record_leaves_a_running_event_loop_for_a_worker_thread(monkeypatch, tmp_path):
    """A notebook kernel runs an asyncio loop, where Playwright's sync API refuses to start (chapter 9 after
    `make book` on a fresh clone failed so): record() without a page then works from a thread without one.
    The loop runs in a thread of its own here, since this thread may hold the page fixture's Playwright."""
    import asyncio
    import threading

    seen, errors = {}, []

    def choice(*args, **kwargs):
        try:
            seen["loop"] = asyncio.get_running_loop()
        except RuntimeError:
            seen["loop"] = None
        raise RuntimeError("stopped after the check")

    monkeypatch.setattr(P, "choice", choice)

    async def in_a_loop():
        return BR.record(tmp_path)

    def run():
        try:
            asyncio.run(in_a_loop())
        except RuntimeError as err:
            errors.append(str(err))

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(60)
    assert errors == ["stopped after the check"] and "loop" in seen and seen["loop"] is None


def test_on_a_phone_nothing_covers_the_pad_or_leaves_the_screen(engine, page):
    """At 390 px the sketch to copy goes under the pad (it covered the pad's right side, where touches were lost),
    and the page, the grid included, fits the screen's width: nothing sticks out outside a scroll container. The
    strokes are drawn with a finger (touch input), as on a phone, one of them over the pad's right side."""
    from sbir_core.pages import _LAYOUT_JS

    page.set_viewport_size({"width": 390, "height": 844})
    try:
        BR.open_app(page, page.app_url, method="04_triplet_baseline", gallery="world:shoe")
        pad = BR.pad_box(page)
        BR.touch_stroke(page, np.array([[60.0, 60.0], [120.0, 130.0], [200.0, 200.0]]), pad)
        BR.wait_for_strokes(page, 1)
        BR.touch_stroke(page, np.array([[240.0, 20.0], [250.0, 128.0], [240.0, 236.0]]), pad)
        BR.wait_for_strokes(page, 2)
        assert page.inner_text(".sbir-pad-status").startswith("2 strokes, 6 points")
        target = page.query_selector(".sbir-rank").bounding_box()
        overlap_x = min(pad["x"] + pad["width"], target["x"] + target["width"]) - max(pad["x"], target["x"])
        overlap_y = min(pad["y"] + pad["height"], target["y"] + target["height"]) - max(pad["y"], target["y"])
        assert overlap_x <= 0 or overlap_y <= 0, (pad, target)
        seen = page.evaluate(_LAYOUT_JS)
        assert seen["n_wide"] == 0, seen["wide"]
        cells = [c.bounding_box() for c in page.query_selector_all(".sbir-results img")]
        shown = [c for c in cells if c and c["width"] > 0]
        assert len(shown) == 10 and all(c["x"] + c["width"] <= 390 for c in shown), shown
    finally:
        page.set_viewport_size({"width": 1100, "height": 1000})


def tab(page, title: str) -> None:
    page.locator(".lm-TabBar-tab", has_text=title).click()


def train_here(page) -> None:
    """Press the explorer's "train it here" and wait until the grid shows results for the drawing on the pad."""
    page.get_by_role("button", name="train it here").click()
    page.wait_for_function(
        "() => { const m = document.querySelector('.sbir-message').innerText;"
        "        return !m.includes('not trained') && !m.includes('training'); }",
        timeout=240_000,
    )


def visible_images(page, selector: str) -> int:
    """How many images under ``selector`` are shown and decoded (a broken image has naturalWidth 0)."""
    return page.eval_on_selector_all(
        f"{selector} img", "els => els.filter(e => e.offsetWidth > 0 && e.naturalWidth > 0).length"
    )


def test_the_page_says_what_it_loads_then_style_swap_shows_what_the_swapped_code_retrieves(engine, page):
    """While the kernel starts the page says what it is loading and for how long (voila's own spinner said
    "Executing 1 of 2"); then the style swap tab's happy path: StyleMeUp trained here, a drawing on the
    explorer's pad copied to the tab's own pad, and the swapped code's top 5 photos shown as pictures."""
    page.goto(BR.app_url(page.app_url, method="06_stylemeup", gallery="world:shoe"), wait_until="commit")
    page.wait_for_selector("#loading_text.sbir-loading", timeout=60_000)
    assert "loading the trained model and its gallery" in page.inner_text("#loading_text")
    page.wait_for_selector(".sbir-rank", state="attached", timeout=120_000)
    if "not trained" in BR.page_state(page)["message"]:
        train_here(page)
    BR.draw_stroke(page, np.array([[40.0, 60.0], [200.0, 80.0], [120.0, 210.0]]), BR.pad_box(page))
    BR.wait_for_strokes(page, 1)
    tab(page, "style swap")
    page.get_by_role("button", name="copy the explorer's drawing").click()
    page.wait_for_function(
        "() => document.querySelector('.sbir-swap .sbir-message').innerText.includes('top 5')", timeout=60_000
    )
    assert visible_images(page, ".sbir-swap") == 3 + 5 - 1  # drawing, other style, 5 photos (no decoded picture)
    message = page.inner_text(".sbir-swap .sbir-message")
    assert "the swapped code's top 5: shoe" in message, message
    assert not page.errors, page.errors


def test_personalise_keeps_drawings_of_two_photos_and_adapts_the_explorers_model(engine, page):
    """The personalise tab's happy path as the page tells it: Adaptive FG-SBIR trained here; put the sketch to copy
    on the pad, keep it, step to another sketch to copy (another photo), keep it, adapt; then forget."""
    BR.open_app(page, page.app_url, method="07_adaptive", gallery="world:shoe")
    if "not trained" in BR.page_state(page)["message"]:
        train_here(page)
    for n in (1, 2):
        tab(page, "draw and retrieve")
        if n == 2:
            page.get_by_role("button", name="another sketch to copy").click()
        page.get_by_role("button", name="put it on the pad").click()
        page.wait_for_function("() => parseInt(document.querySelector('.sbir-pad-status').innerText) > 0")
        tab(page, "personalise")
        page.get_by_role("button", name="keep this drawing").click()
        page.wait_for_function("n => document.body.innerText.includes(`kept: ${n} drawing(s) of ${n} photo(s)`)", arg=n)
    page.get_by_role("button", name="adapt to my drawings").click()
    said = "(s) => document.querySelector('.sbir-count').innerText.includes(s)"
    page.wait_for_function(said, arg="the explorer's model is adapted", timeout=120_000)
    assert "adapted to your 2 drawings" in page.inner_text(".sbir-personalise .sbir-message")
    page.get_by_role("button", name="forget them").click()
    page.wait_for_function(said, arg="the explorer's model is not adapted")
    assert "searches with the trained model again" in page.inner_text(".sbir-personalise .sbir-message")
    assert not page.errors, page.errors


PAGES = 3


def test_pages_opened_and_closed_leave_no_kernel_running(engine, page):
    """Each page load starts a kernel (about 1.4 GB at its peak). Three tabs opened and closed, each before its app
    is shown (the kernel still runs the app, then sits idle with no page), leave no kernel once the culler's idle
    time has passed: closed tabs do not pile up kernels until the server stops. Prints the memory held. (A server
    of its own, culling after 2 idle seconds; the same browser. Three, not five: their kernels run at once, beside
    the other test process, on CI's 24 GB; five took it to 22.5 GB.)"""
    import psutil

    def voilas() -> set:
        out = set()
        for p in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                if "voila" in " ".join(p.cmdline()) and "ipykernel" not in " ".join(p.cmdline()):
                    out.add(p.pid)
        return out

    def kernels(server) -> list:
        out = []
        for p in server.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                if "ipykernel" in " ".join(p.cmdline()):
                    out.append(p)
        return out

    def rss_mb(procs) -> float:
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                total += p.memory_info().rss
        return total / 2**20

    before = voilas()
    with BR.serve(cull_idle=2) as url:
        (pid,) = voilas() - before
        server, started, peak = psutil.Process(pid), set(), 0.0
        for _ in range(PAGES):
            page.goto(BR.app_url(url, gallery="world:shoe"), wait_until="commit")  # the page asks for its kernel
            page.goto("about:blank")  # and the tab leaves it before the app is shown
            deadline = time.monotonic() + 60
            while not {p.pid for p in kernels(server)} - started:
                assert time.monotonic() < deadline, "no kernel started for the page"
                time.sleep(0.2)
            started |= {p.pid for p in kernels(server)}
        assert len(started) == PAGES
        deadline = time.monotonic() + 240  # each kernel runs the app first: a busy kernel is not culled
        while alive := kernels(server):
            peak = max(peak, rss_mb(alive))
            assert time.monotonic() < deadline, f"{len(alive)} kernel(s) still running after 240 s"
            time.sleep(0.5)
        print(
            f"\n{PAGES} page loads: kernels held up to {peak:.0f} MB; after the culler, 0 kernels and the server "
            f"{rss_mb([server]):.0f} MB"
        )
