"""The widgets' Python side without a browser: canvas events are fed as the front end sends them
(``Canvas._handle_frontend_event``), and what the widgets show is read from their values."""

import html
import time
from urllib.parse import urlencode

import numpy as np
import pytest

from sbir_core import playground as P
from sbir_core import widgets as WG


def send(canvas, event, x=0.0, y=0.0):
    if event.startswith("touch"):
        canvas._handle_frontend_event(None, {"event": event, "touches": [{"x": x, "y": y}]}, [])
    else:
        canvas._handle_frontend_event(None, {"event": event, "x": x, "y": y}, [])


def stroke(pad, points, kind="mouse"):
    down, move, up = (
        ("mouse_down", "mouse_move", "mouse_up") if kind == "mouse" else ("touch_start", "touch_move", "touch_end")
    )
    send(pad.canvas, down, *points[0])
    for p in points[1:]:
        send(pad.canvas, move, *p)
    send(pad.canvas, up, *points[-1])


def test_pad_records_strokes_with_pen_flags_and_times():
    pad = WG.SketchPad()
    seen = []
    pad.on_stroke_end(lambda p: seen.append(len(p.parts)))
    stroke(pad, [(10, 10), (20, 12), (30, 15)])
    stroke(pad, [(50, 50), (60, 70)], kind="touch")
    send(pad.canvas, "mouse_move", 99, 99)  # moving without the button down draws nothing
    pts = pad.points()
    assert pts.shape == (5, 3) and list(pts[:, 2]) == [0, 0, 1, 0, 1]
    assert np.allclose(pts[:, :2], [(10, 10), (20, 12), (30, 15), (50, 50), (60, 70)])
    t = pad.times()
    assert t.shape == (5,) and t[0] == 0 and (np.diff(t) >= 0).all()
    assert seen == [1, 2] and pad.status.value.startswith("2 strokes, 5 points")
    s, note = pad.strokes()
    assert s.shape == (5, 3) and note == ""
    img = pad.raster(32)
    assert img.shape == (32, 32) and img.min() < 0.5  # ink where the strokes are


def test_pad_scales_a_smaller_canvas_to_the_256_grid():
    pad = WG.SketchPad(size=128)
    stroke(pad, [(10, 10), (64, 64)])
    assert np.allclose(pad.points()[:, :2], [(20, 20), (128, 128)])


def test_pad_undo_clear_load_and_mouse_out():
    pad = WG.SketchPad()
    stroke(pad, [(10, 10), (20, 20)])
    send(pad.canvas, "mouse_down", 30, 30)
    send(pad.canvas, "mouse_move", 40, 40)
    send(pad.canvas, "mouse_out", 300, 40)  # leaving the canvas ends the stroke
    assert len(pad.parts) == 2 and not pad._drawing
    pad.undo()
    assert len(pad.parts) == 1
    pad.clear()
    assert pad.strokes()[0] is None and pad.n_points == 0
    pad.undo()  # undo on an empty pad is harmless
    sketch = np.array([[5, 5, 0], [9, 9, 1], [20, 20, 1]], float)
    pad.load(sketch)
    assert np.allclose(pad.points(), sketch)


def test_pad_one_point_and_long_scribble():
    pad = WG.SketchPad()
    send(pad.canvas, "mouse_down", 100, 100)
    send(pad.canvas, "mouse_up", 100, 100)
    s, _ = pad.strokes()
    assert s.shape == (1, 3) and pad.raster(32).min() < 1  # a dot is drawn, not lost
    pad.clear()
    rng = np.random.default_rng(0)
    stroke(pad, [tuple(p) for p in rng.uniform(0, 256, (10_000, 2))])
    s, note = pad.strokes()
    assert s.shape == (10_000, 3) and note == ""


def test_a_failing_listener_does_not_break_drawing():
    pad = WG.SketchPad()
    pad.on_stroke_end(lambda p: 1 / 0)
    stroke(pad, [(1, 1), (2, 2)])
    assert len(pad.parts) == 1


# ---------------------------------------------------------------------- the explorer with a stand-in store


@pytest.fixture()
def explorer_env(small_triplet_engine, monkeypatch, tmp_path):
    """The explorer's store as if it held chapter 4's run (the small engine) and not chapter 6's."""
    engine = small_triplet_engine
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))
    stored = P.Choice(P.RECIPES[0], "ci", {}, "widget_test", 0, True)
    missing = P.Choice(P.RECIPES[1], "ci", {}, "not_there", 0, False)
    monkeypatch.setattr(P, "methods", lambda scale="ci", **overrides: [stored, missing])
    monkeypatch.setattr(P, "load", lambda choice, train=False, progress=True: engine)
    return engine


def test_explorer_updates_results_and_target_rank_after_each_stroke(explorer_env):
    ex = WG.Explorer(options={"gallery": "world:shoe", "target": "2"})
    assert ex.gallery.name == "world: shoe" and ex.target is ex.gallery.targets[2]
    parts = __import__("sbir_core.strokes", fromlist=["x"]).split_strokes(ex.target.strokes)
    for n, part in enumerate(parts[:3], 1):
        stroke(ex.pad, [tuple(p) for p in part])
        assert len(ex.history) == n
        assert f"data-strokes='{n}'" in ex.done.value
    shown = [c.children[1].value for c in ex.cells]
    assert all("d²=" in v for v in shown)
    assert ex.cells[0].children[0].value[:4] == b"\x89PNG"
    assert f"data-rank='{ex.history[-1]}'" in ex.rank.value
    expected = explorer_env.query(ex.pad.strokes()[0], ex.gallery, 10, ex.target.index)
    assert ex.history[-1] == expected.target_rank
    assert ex.gallery.labels[expected.index[0]] in shown[0]


def test_the_first_minute_shoes_a_copyable_target_and_a_hint_not_empty_slots(explorer_env):
    """The explorer opens on the shoes with the first sketch whose own copy the model ranks in its top 10 (the
    stated rule, said on the page), shows a hint and no empty image slot before a drawing, and the rank trail
    starts again when the sketch is put on the pad."""
    ex = WG.Explorer()
    assert ex.gallery.name == "world: shoe"
    rule = explorer_env.first_copyable_target(ex.gallery, ex.k)
    assert rule is not None and ex.target is ex.gallery.targets[rule]
    first = explorer_env.query(ex.target.strokes, ex.gallery, 1, ex.target.index).target_rank
    assert first <= ex.k and "top 10" in ex.rank.value
    assert all(c.layout.display == "none" for c in ex.cells) and ex.hint.layout.display == ""
    stroke(ex.pad, [(10, 10), (40, 40)])
    assert ex.hint.layout.display == "none" and ex.cells[0].layout.display == ""
    stroke(ex.pad, [(60, 10), (90, 40)])
    assert len(ex.history) == 2
    ex.show_target.click()  # a new drawing replaces the old: its trail alone
    assert ex.history == [first] and f"data-rank='{first}'" in ex.rank.value
    ex.next_target.click()
    assert "top 10" not in ex.rank.value  # a sketch stepped to is not the rule's pick
    ex.pad.clear()
    assert all(c.layout.display == "none" for c in ex.cells) and ex.hint.layout.display == ""


def test_results_refresh_while_a_stroke_is_drawn_throttled(explorer_env, monkeypatch):
    ex = WG.Explorer(options={"gallery": "world:shoe", "target": "1"})
    calls = []
    ex.pad.on_drawing(lambda pad: calls.append(pad.n_points))
    monkeypatch.setattr(WG, "FLUSH_S", 0.0)
    monkeypatch.setattr(WG, "LIVE_S", 3600.0)  # throttled: none within the hour
    send(ex.pad.canvas, "mouse_down", 10, 10)
    for x in range(11, 30):
        send(ex.pad.canvas, "mouse_move", x, x)
    assert calls == [] and ex.hint.layout.display == ""
    monkeypatch.setattr(WG, "LIVE_S", 0.0)
    send(ex.pad.canvas, "mouse_move", 30, 30)
    assert len(calls) == 1 and "sbir-live-rank" in ex.rank.value and ex.history == []
    assert ex.cells[0].children[0].value[:4] == b"\x89PNG"  # the grid shows the drawing so far
    monkeypatch.setattr(WG, "LIVE_S", 3600.0)
    for x in range(31, 50):
        send(ex.pad.canvas, "mouse_move", x, x)
    assert len(calls) == 1
    send(ex.pad.canvas, "mouse_up", 50, 50)
    assert len(ex.history) == 1 and "sbir-target-rank" in ex.rank.value  # a finished stroke joins the trail
    assert len(calls) == 1  # none at the stroke's end: that is on_stroke_end's


def test_a_slow_live_refresh_waits_its_own_cost_before_the_next(monkeypatch):
    """A refresh that took t seconds lets the next start no sooner than (1 + LIVE_COST) t after it began, so that
    a long drawing's refreshes cannot keep the kernel from taking its points."""
    pad = WG.SketchPad()
    calls = []
    pad.on_drawing(lambda p: (calls.append(time.perf_counter()), time.sleep(0.3)))
    monkeypatch.setattr(WG, "FLUSH_S", 0.0)
    monkeypatch.setattr(WG, "LIVE_S", 0.0)
    monkeypatch.setattr(WG, "LIVE_COST", 1.0)
    send(pad.canvas, "mouse_down", 10, 10)
    send(pad.canvas, "mouse_move", 11, 11)
    assert len(calls) == 1
    send(pad.canvas, "mouse_move", 12, 12)  # 0.3 s after the first began: it wants 0.6
    assert len(calls) == 1
    time.sleep(0.35)
    send(pad.canvas, "mouse_move", 13, 13)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.6
    send(pad.canvas, "mouse_up", 13, 13)
    send(pad.canvas, "mouse_down", 20, 20)  # a new stroke starts with the plain interval
    send(pad.canvas, "mouse_move", 21, 21)
    assert len(calls) == 3


def test_explorer_empty_drawing_and_errors_become_messages(explorer_env, monkeypatch):
    ex = WG.Explorer(options={"gallery": "world:bag"})
    stroke(ex.pad, [(10, 10), (40, 40)])
    ex.pad.clear()
    assert "draw on the canvas" in ex.message.value and all(c.children[1].value == "" for c in ex.cells)
    monkeypatch.setattr(explorer_env, "query", lambda *a, **k: (_ for _ in ()).throw(ValueError("boom")))
    stroke(ex.pad, [(10, 10), (40, 40)])  # no exception escapes; the page says what happened
    assert "ValueError: boom" in ex.message.value and "data-strokes='1'" in ex.done.value


def test_explorer_offers_training_for_a_missing_model(explorer_env):
    ex = WG.Explorer()
    ex.method.value = 1  # the stand-in "not stored" StyleMeUp
    assert ex.train_button.layout.display == "" and "--only 06_stylemeup" in ex.message.value
    assert ex.engine is None
    stroke(ex.pad, [(10, 10), (40, 40)])  # drawing without a model is harmless
    ex.method.value = 0
    assert ex.train_button.layout.display == "none" and ex.engine is explorer_env


def test_training_here_keeps_the_method_just_trained(explorer_env, monkeypatch):
    """After "train it here" the explorer searches with the model it trained: renaming the dropdown's options
    (the "not trained yet" label goes) used to move it back to its first method, Triplet-SN, without a word."""
    trained, loads = object.__new__(P.Engine), []

    def load(choice, train=False, progress=True):  # as P.load: a model trained is stored from then on
        choice.stored = choice.stored or train
        loads.append(choice.key)
        return trained if choice.key == "not_there" else explorer_env

    monkeypatch.setattr(P, "load", load)
    monkeypatch.setattr(WG.Explorer, "_offer_galleries", lambda self: None)
    ex = WG.Explorer()
    ex.method.value = 1
    ex.train_button.click()
    assert ex.method.value == 1 and ex.engine is trained and loads[-1] == "not_there", loads
    assert ex.train_button.layout.display == "none"


def test_explorer_folder_gallery_and_style_swap_message(explorer_env, tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (20, 20), (255, 0, 0)).save(tmp_path / "imgs" / "only.png")
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"nope")
    pg = WG.Playground(options={"gallery": str(tmp_path / "imgs")})
    ex = pg.explorer
    assert ex.source.value == "folder" and len(ex.gallery) == 1
    assert "one image" in ex.message.value and "bad.jpg" in ex.message.value
    stroke(ex.pad, [(10, 10), (40, 40)])
    assert "only" in ex.cells[0].children[1].value and "no sketch to copy" in ex.rank.value
    assert "StyleMeUp" in pg.swap.message.value  # a Triplet-SN has no style code to swap


def test_style_swap_tab_has_its_own_pad_and_shows_what_the_swapped_code_retrieves(explorer_env, monkeypatch):
    import torch

    from sbir_core.models.base import build_method

    torch.manual_seed(0)
    smu = build_method("stylemeup", size=explorer_env.size, width=8, depth=3, hidden=32, latent=16).eval()
    eng = P.Engine(smu, "smu_widget_test", explorer_env.size, explorer_env.line_width, "smu", explorer_env.views)
    monkeypatch.setattr(P, "load", lambda choice, train=False, progress=True: eng)
    pg = WG.Playground(options={"gallery": "world:shoe"})
    swap = pg.swap
    assert "draw something here" in swap.message.value
    assert all(i.layout.display == "none" for i in swap.hits.children)  # no empty image slots
    swap.copy.click()
    assert "explorer&#x27;s pad is empty" in swap.message.value  # said in this tab, as text
    stroke(pg.explorer.pad, [(20, 20), (120, 140), (200, 60)])
    swap.copy.click()  # the explorer's drawing onto the tab's own pad
    assert np.allclose(swap.pad.points(), pg.explorer.pad.points())
    shown = [i.value[:4] for i in swap.hits.children]
    assert shown == [b"\x89PNG"] * 5 and all(i.layout.display == "" for i in swap.hits.children)
    assert [i.value[:4] for i in swap.images.children] == [b"\x89PNG"] * 3  # drawing, other style, decoding
    assert "the swapped code&#x27;s top 5" in swap.message.value
    before = swap.images.children[2].value
    swap.amount.value = 1.0
    assert swap.images.children[2].value != before  # the decoding moves with the amount


def test_the_apps_url_query_picks_method_gallery_and_target(explorer_env):
    pg = WG.Playground.from_query_string("method=04_triplet_baseline&gallery=world:lamp&target=3")
    ex = pg.explorer
    assert ex.method.value == 0 and ex.gallery.name == "world: lamp" and ex.target is ex.gallery.targets[3]
    pg = WG.Playground.from_query_string("method=06_stylemeup")
    assert pg.explorer.method.value == 1 and "not trained" in pg.explorer.message.value


def test_personalise_tab_adapts_the_explorers_model_and_forgets(explorer_env, monkeypatch):
    import torch
    from conftest import image_adaptive

    from sbir_core.book import load_params

    pg = WG.Playground(options={"gallery": "world:shoe"})  # the stand-in Triplet-SN does not adapt
    pg.explorer.pad.load(pg.explorer.target.strokes)
    pg.personalise.keep.click()
    assert "choose Adaptive FG-SBIR" in pg.personalise.message.value and pg.personalise.drawings == []

    torch.manual_seed(0)
    eng = P.Engine(
        image_adaptive(load_params("04_triplet_baseline", "ci"), inner_lr=5.0),
        "adaptive_widget_test",
        explorer_env.size,
        explorer_env.line_width,
        "adaptive",
        explorer_env.views,
    )
    monkeypatch.setattr(P, "load", lambda choice, train=False, progress=True: eng)
    pg = WG.Playground(options={"gallery": "world:shoe"})
    ex, tab = pg.explorer, pg.personalise
    tab.keep.click()
    assert "draw the sketch" in tab.message.value
    tab.adapt.click()
    assert "keep drawings of at least 2 different photos" in tab.message.value and ex.engine is eng
    for n in (1, 2):
        ex.pad.load(ex.target.strokes)
        tab.keep.click()
        assert f"{n} drawing(s) of {n} photo(s)" in tab.count.value and "at least 2 different" in tab.count.value
        ex.next_target.click()  # one press: a sketch of a photo not kept yet
        assert ex.target.index not in tab.rows
    assert len(tab.drawings) == 2 and tab.rows[0] != tab.rows[1]
    tab.adapt.click()
    assert ex.engine is tab.adapted and ex.engine is not eng and "is adapted" in tab.count.value
    assert "adapted to your 2 drawings" in tab.message.value
    tab.forget.click()
    assert ex.engine is eng and tab.drawings == [] and "not adapted" in tab.count.value


# ---------------------------------------------------------------------- nothing from outside runs as HTML

XSS = "<img src=x onerror=window.__xss=1>"


def test_markup_escapes_its_fields_and_the_html_widget_escapes_plain_text():
    assert WG.markup("<b title='{}'>{:.1f} {}</b>", "'", 2.25, XSS) == (
        "<b title='&#x27;'>2.2 &lt;img src=x onerror=window.__xss=1&gt;</b>"
    )
    assert WG.HTML(XSS).value == "&lt;img src=x onerror=window.__xss=1&gt;"
    assert WG.HTML(WG.markup("<i>{}</i>", XSS)).value == "<i>&lt;img src=x onerror=window.__xss=1&gt;</i>"
    w = WG.HTML()
    w.value = w.value + XSS  # a string made from a shown value is text again, escaped once
    w.value = w.value
    assert w.value == "&lt;img src=x onerror=window.__xss=1&gt;"


def test_file_names_labels_and_errors_show_as_text(explorer_env, tmp_path):
    """A folder gallery whose image (its label) and unreadable file (the skipped list) are named as HTML, and a
    folder path that is HTML (the error): the widgets hold them escaped, never as markup."""
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (20, 20), (255, 0, 0)).save(folder / f"{XSS}.png")
    (folder / "<img src=y onerror=window.__xss=2>.jpg").write_bytes(b"nope")
    ex = WG.Explorer(options={"gallery": str(folder)})
    assert "&lt;img src=y onerror=window.__xss=2&gt;.jpg" in ex.message.value and "<img" not in ex.message.value
    stroke(ex.pad, [(10, 10), (40, 40)])
    label = ex.cells[0].children[1].value
    assert "&lt;img src=x onerror=window.__xss=1&gt;" in label and "<img" not in label
    assert label.startswith("<span class='sbir-hit'")  # the widget's own markup stays markup
    ex.folder.value = f"/nowhere/{XSS}"
    ex.folder_button.click()
    assert "is not a folder" in ex.message.value and "&lt;img" in ex.message.value and "<img" not in ex.message.value


def test_the_apps_url_query_is_checked_and_bad_values_said_as_text(explorer_env):
    """Each bad parameter is ignored and named in the notice; the page works with the defaults; the token is the
    server's and passes silently."""
    query = urlencode({"scale": "../../..", "method": XSS, "target": XSS, "gallery": XSS, XSS: "1", "token": "t0ken"})
    pg = WG.Playground.from_query_string(query)
    ex = pg.explorer
    notice, shown = ex.notice.value, html.unescape(ex.notice.value)
    assert "<img" not in notice and "token" not in shown
    for what in ("scale '../../..'", f"method '{XSS}'", f"target '{XSS}'", f"gallery '{XSS}'", f"parameter '{XSS}'"):
        assert what in shown, (what, shown)
    default = ex.gallery.targets[explorer_env.first_copyable_target(ex.gallery, ex.k) or 0]
    assert ex.engine is explorer_env and ex.gallery.name == "world: shoe" and ex.target is default
    for gallery in ("world:no-such-category", "relative/folder"):
        ex = WG.Playground.from_query_string(urlencode({"gallery": gallery})).explorer
        assert f"gallery '{gallery}' is not one of world:" in html.unescape(ex.notice.value)
        assert ex.gallery.name.startswith("world")
    ex = WG.Playground.from_query_string("gallery=world:shoe&target=100000").explorer
    assert "target 100000 is out of range" in ex.notice.value and ex.target.sketch_id == default.sketch_id
    ex = WG.Playground.from_query_string("gallery=world:shoe&target=-1").explorer
    assert "target '-1' is not a whole number" in html.unescape(ex.notice.value)
    assert WG.Playground.from_query_string("gallery=world:shoe&target=3&scale=ci").explorer.notice.value == ""
