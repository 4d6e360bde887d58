"""The sketch playground's widgets (ipywidgets + ipycanvas): draw, retrieve, swap styles.

* ``SketchPad``: draw with a mouse, a pen (browsers deliver pen input as mouse events) or a finger
  (touch events); undo, clear, line width. It records each point with its time and gives the
  canonical (N, 3) stroke array (``sbir_core.strokes``) that the package's one rasteriser draws.
* ``Explorer``: a trained method from the store (``sbir_core.playground.methods``), a gallery (a
  style-world category, the PACS photos, a folder of your own images) and the top-k photos with
  their distances, updated when each stroke ends; with a world sketch shown to copy, the rank of
  its photo after every stroke (early retrieval).
* ``StyleSwap`` (StyleMeUp): move your drawing's style code towards another drawer's and watch
  the decoded sketch and its results.
* ``Playground``: all of them on one page; ``book/playground_app.py`` serves it with voila
  (``make app``).

Nothing here raises into the page: every failure becomes a message in the widget (the
``.sbir-message`` element), so the app keeps working. Nothing here runs as HTML what came from outside
the code (labels, file names, paths, error text, the URL's query): every HTML widget is an ``HTML``,
which shows any string as text unless ``markup`` made it, and ``markup`` escapes whatever it is given.
"""

from __future__ import annotations

import html
import io
import logging
import string
import time
import traceback
from pathlib import Path
from urllib.parse import parse_qs

import ipywidgets as W
import numpy as np
import traitlets
from ipycanvas import Canvas, hold_canvas

from sbir_core import playground as P
from sbir_core import strokes as SK

log = logging.getLogger(__name__)
FLUSH_S = 0.03  # draw the stroke in progress at most this often (seconds): see SketchPad._flush
FLUSH_POINTS = 64  # ... or after this many new points
LIVE_S = 0.2  # while a stroke is drawn, the results refresh at most this often (seconds): SketchPad.on_drawing
# ... and a refresh that took t seconds waits LIVE_COST * t before the next one starts, so that refreshing takes at
# most 1 / (1 + LIVE_COST) of the kernel while a stroke is drawn and the rest is left to taking the stroke's points.
# A refresh rasterises the whole drawing so far: a 10,000-point scribble's takes ~0.5 s, and at a fixed LIVE_S the
# kernel did little else, taking the scribble's points about 4x slower than with this (tests/test_browser.py).
LIVE_COST = 1.0
MIN_PHOTOS = 2  # different photos the kept drawings must show before personalising (Engine.personalise)
FIRST_GALLERY = "world:shoe"  # the gallery the explorer opens on (the README's first target), when the world has it
QUERY_KEYS = ("method", "gallery", "target", "scale")  # what the app's URL may set (besides the server's token)


def _wrap() -> W.Layout:
    """A row whose items go to the next line when the page is narrow (a phone) instead of overflowing it."""
    return W.Layout(flex_flow="row wrap")


class Markup(str):
    """HTML written in this module, made by ``markup``: the one kind of string an ``HTML`` widget shows as HTML."""


class _Escaping(string.Formatter):
    def format_field(self, value, format_spec):
        return html.escape(super().format_field(value, format_spec))


def markup(template: str, *args, **kwargs) -> Markup:
    """``template`` (HTML written here, never data) with its fields filled in escaped: a label, file name, path or
    error text holding ``<img onerror=...>`` shows as those characters instead of running."""
    return Markup(_Escaping().vformat(template, args, kwargs))


class HTML(W.HTML):
    """The playground's HTML widget: a value made by ``markup`` is shown as HTML, any other string is escaped
    first, so text built from data cannot inject HTML even where a call site forgets ``markup``."""

    @traitlets.validate("value")
    def _escape(self, proposal):
        value = proposal["value"]
        return value if isinstance(value, Markup) else Markup(html.escape(value))


def png(image: np.ndarray, scale: int = 1) -> bytes:
    """(H, W) float in [0, 1] or (H, W, 3) uint8 -> PNG bytes, enlarged ``scale`` times (nearest)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    img = Image.fromarray(arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _reset_canvas_manager() -> None:
    """Voila runs the notebook before the browser connects, and ipycanvas's one-off "switch canvas"
    command sent then is lost (TOOLCHAIN.md §4): forget the current canvas so that the next command
    switches again. A private API of ipycanvas 0.14; harmless where the bug does not occur."""
    try:
        from ipycanvas import canvas as _c

        _c._CANVAS_MANAGER._current_canvas = None
    except (ImportError, AttributeError):  # another ipycanvas: nothing to work around
        pass


class SketchPad:
    """A drawing canvas recording strokes with timing. ``widget`` is what to display.

    size: the canvas side in screen pixels; points are stored on the canonical 256 canvas.
    """

    def __init__(self, size: int = 256, line_width: int = 3):
        self.size = size
        self.scale = SK.CANVAS / size
        self.canvas = Canvas(
            width=size, height=size, layout=W.Layout(width=f"{size}px", height=f"{size}px", border="1px solid #888")
        )
        self.canvas.add_class("sbir-pad")
        self.line = W.IntSlider(
            value=line_width,
            min=1,
            max=12,
            description="line width",
            style={"description_width": "initial"},
            layout=W.Layout(width="220px"),
        )
        self.undo_button = W.Button(description="undo", icon="undo", layout=W.Layout(width="80px"))
        self.clear_button = W.Button(description="clear", icon="trash", layout=W.Layout(width="80px"))
        self.status = HTML()
        self.status.add_class("sbir-pad-status")
        self.parts: list[list[tuple[float, float, float]]] = []  # strokes of (x, y, ms) on the 256 canvas
        self._drawing = False
        self._drawn, self._flushed = 0, 0.0  # points of the current stroke already drawn; when
        self._t0: float | None = None
        self._listeners = []
        self._live, self._lived = [], 0.0  # listeners while drawing; when they were last called
        self._live_took = 0.0  # how long the last live refresh took (seconds)
        c = self.canvas
        c.on_mouse_down(self._down)
        c.on_mouse_move(self._move)
        c.on_mouse_up(self._up)
        c.on_mouse_out(self._up)
        c.on_touch_start(lambda touches: self._down(*touches[0]))
        c.on_touch_move(lambda touches: self._move(*touches[0]))
        c.on_touch_end(lambda touches: self._up(*(touches[0] if touches else (0, 0))))
        c.on_touch_cancel(lambda touches: self._up(0, 0))
        self.undo_button.on_click(lambda _: self.undo())
        self.clear_button.on_click(lambda _: self.clear())
        self.widget = W.VBox(
            [self.canvas, W.HBox([self.undo_button, self.clear_button, self.line], layout=_wrap()), self.status]
        )
        self._say()

    # -- what was drawn
    @property
    def n_points(self) -> int:
        return sum(len(p) for p in self.parts)

    def points(self) -> np.ndarray:
        """(N, 3) x, y, pen (1 on each stroke's last point) on the 256 canvas, unchecked; (0, 3) when empty."""
        if not self.parts:
            return np.zeros((0, 3))
        return np.concatenate(
            [np.column_stack([np.asarray(p)[:, :2], np.eye(1, len(p), len(p) - 1)[0]]) for p in self.parts]
        )

    def times(self) -> np.ndarray:
        """(N,) milliseconds since the first point, aligned with ``points()``."""
        return np.array([t for p in self.parts for _, _, t in p], dtype=np.float64)

    def strokes(self) -> tuple[np.ndarray | None, str]:
        """The canonical sketch (clipped to the canvas; None when empty) and a note on what was changed."""
        return P.clean_strokes(self.points())

    def raster(self, size: int = 64, line_width: float = 1.5) -> np.ndarray | None:
        s, _ = self.strokes()
        return None if s is None else SK.rasterise(s, size, line_width)

    def on_stroke_end(self, callback) -> None:
        """Call ``callback(pad)`` after each stroke, undo and clear."""
        self._listeners.append(callback)

    def on_drawing(self, callback) -> None:
        """Call ``callback(pad)`` while a stroke is being drawn, at most every ``LIVE_S`` seconds (the drawing
        so far, the stroke in progress included)."""
        self._live.append(callback)

    # -- editing
    def undo(self) -> None:
        if self.parts:
            self.parts.pop()
        self.redraw()
        self._changed()

    def clear(self) -> None:
        self.parts.clear()
        self._t0 = None
        self.redraw()
        self._changed()

    def load(self, strokes) -> None:
        """Show a canonical sketch on the pad as if drawn (no timing: every point at 0 ms)."""
        self.parts = [
            [(float(x), float(y), 0.0) for x, y in part] for part in SK.split_strokes(SK.check_strokes(strokes))
        ]
        self.redraw()
        self._changed()

    def redraw(self) -> None:
        with hold_canvas():
            self.canvas.clear()
            self._pen()
            for part in self.parts:
                pts = [(x / self.scale, y / self.scale) for x, y, _ in part]
                if len(pts) == 1:
                    self.canvas.fill_circle(*pts[0], self.line.value / 2)
                else:
                    self.canvas.stroke_lines(pts)

    # -- events
    def _pen(self) -> None:
        c = self.canvas
        c.stroke_style = c.fill_style = "black"
        c.line_width = self.line.value
        c.line_cap = c.line_join = "round"

    def _now(self) -> float:
        if self._t0 is None:
            self._t0 = time.perf_counter()
            return 0.0
        return (time.perf_counter() - self._t0) * 1000.0

    def _down(self, x, y) -> None:
        _reset_canvas_manager()
        self._pen()
        self._drawing = True
        self.parts.append([(x * self.scale, y * self.scale, self._now())])
        self._drawn, self._flushed = 1, time.perf_counter()
        self._lived = self._flushed  # the first live refresh comes LIVE_S into the stroke
        self._live_took = 0.0

    def _move(self, x, y) -> None:
        if not self._drawing:
            return
        self.parts[-1].append((x * self.scale, y * self.scale, self._now()))
        if time.perf_counter() - self._flushed > FLUSH_S or len(self.parts[-1]) - self._drawn >= FLUSH_POINTS:
            self._flush()

    def _flush(self) -> None:
        """Draw the points of the current stroke not drawn yet, as one command. Sending one command
        per mouse move would exceed the server's IOPub message rate on a fast scribble, and the
        server then drops messages, the widgets' updates among them."""
        part = self.parts[-1]
        new = part[self._drawn - 1 :]
        if len(new) >= 2:
            self.canvas.stroke_lines([(px / self.scale, py / self.scale) for px, py, _ in new])
        self._drawn = len(part)
        self._flushed = time.perf_counter()
        self._say(drawing=True)
        if (
            self._live
            and self._drawing
            and self._flushed - self._lived >= max(LIVE_S, (1 + LIVE_COST) * self._live_took)
        ):
            self._lived = self._flushed
            self._notify(self._live)
            self._live_took = time.perf_counter() - self._lived

    def _up(self, x, y) -> None:
        if not self._drawing:
            return
        self._drawing = False
        if len(self.parts[-1]) == 1:
            px, py = self.parts[-1][0][0] / self.scale, self.parts[-1][0][1] / self.scale
            self.canvas.fill_circle(px, py, self.line.value / 2)
        else:
            self._flush()
        self._changed()

    def _say(self, drawing: bool = False) -> None:
        n = len(self.parts)
        self.status.value = f"{n} stroke{'s' * (n != 1)}, {self.n_points} points" + (" (drawing)" if drawing else "")

    def _changed(self) -> None:
        self._say()
        self._notify(self._listeners)

    def _notify(self, listeners) -> None:
        for cb in listeners:
            try:
                cb(self)
            except Exception:  # noqa: BLE001 - a listener's error must not break drawing
                log.exception("stroke listener failed")


class Explorer:
    """Retrieval as you draw: method, gallery, the top-k, the copied target's rank stroke by stroke.

    scale: which scale's trained models to offer ("ci": what the book's CI trains).
    options: initial choices, e.g. from the app's URL: ``method`` (a chapter name), ``gallery``
    ("world:<category>", "pacs", "folder" or an absolute folder path), ``target`` (index of the world
    sketch to copy). Each is checked; one that cannot be used is ignored and said in ``notice``.
    overrides: chapter parameters that differ from the scale's configs (``playground.methods``).
    notes: what is already known to be wrong with the options (``Playground.from_query_string``), for ``notice``.
    """

    def __init__(
        self,
        pad: SketchPad | None = None,
        scale: str = "ci",
        k: int = 10,
        options: dict | None = None,
        overrides: dict | None = None,
        notes: list[str] | None = None,
    ):
        options = options or {}
        self.pad = pad or SketchPad()
        self.notice = HTML(layout=W.Layout(display="none"))  # shown once there is something to say
        self.notice.add_class("sbir-notice")
        self.notes: list[str] = []
        for note in notes or []:
            self._reject(note)
        self.k = k
        self.engine: P.Engine | None = None
        self.gallery: P.Gallery | None = None
        self.target: P.Target | None = None
        self.history: list[int] = []
        self.message = HTML()
        self.message.add_class("sbir-message")
        self.rank = HTML()
        self.rank.add_class("sbir-rank")
        self.done = HTML()  # an invisible mark of the drawing last handled, for the browser tests
        self.done.add_class("sbir-done")
        self.choices = P.methods(scale, **(overrides or {}))
        self.method = W.Dropdown(
            options=[(c.label, i) for i, c in enumerate(self.choices)],
            description="method",
            layout=W.Layout(width="360px", max_width="100%"),
        )
        self.train_button = W.Button(
            description=f"train it here ({scale} scale)",
            button_style="warning",
            layout=W.Layout(display="none", width="220px"),
        )
        self.train_output = W.Output()
        self.source = W.Dropdown(description="gallery", layout=W.Layout(width="360px", max_width="100%"))
        self.source.add_class("sbir-gallery")
        self.folder = W.Text(placeholder="a folder of your own images", layout=W.Layout(display="none", width="360px"))
        self.folder_button = W.Button(description="load folder", layout=W.Layout(display="none"))
        self.target_image = W.Image(format="png", width=96, height=96)
        self.next_target = W.Button(description="another sketch to copy", layout=W.Layout(width="200px"))
        self.show_target = W.Button(description="put it on the pad", layout=W.Layout(width="200px"))
        self.cells = [W.VBox([W.Image(format="png", width=80, height=80), HTML()]) for _ in range(k)]
        # as many 96-pixel columns as the page's width holds (five on a laptop, three on a phone), never cut off
        self.grid = W.GridBox(
            self.cells,
            layout=W.Layout(grid_template_columns="repeat(auto-fill, 96px)", grid_gap="4px", max_width="508px"),
        )
        self.grid.add_class("sbir-results")
        self.hint = HTML(
            markup("<i>draw on the pad, or press 'put it on the pad': the {} nearest photos appear here</i>", k)
        )
        self.hint.add_class("sbir-hint")
        self.widget = W.VBox(
            [
                self.notice,
                W.HBox([self.method, self.train_button], layout=_wrap()),
                self.train_output,
                W.HBox([self.source, self.folder, self.folder_button], layout=_wrap()),
                W.HBox(
                    [
                        self.pad.widget,
                        W.VBox(
                            [
                                HTML(markup("<b>a world sketch to copy</b>")),
                                self.target_image,
                                self.next_target,
                                self.show_target,
                                self.rank,
                            ]
                        ),
                    ],
                    # on a phone the sketch to copy goes under the pad instead of over its right side
                    layout=W.Layout(flex_flow="row wrap", grid_gap="8px"),
                ),
                self.message,
                HTML(markup("<b>top {}</b>", k)),
                self.hint,
                self.grid,
                self.done,
            ]
        )
        self.widget.add_class("sbir-explorer")
        self._relabelling = False  # True while _train renames the options: not a choice of the reader's
        self.method.observe(lambda ch: None if self._relabelling else self._guard(self._pick_method), names="value")
        self.source.observe(lambda ch: self._guard(self._pick_gallery), names="value")
        self.train_button.on_click(lambda _: self._guard(self._train))
        self.folder_button.on_click(lambda _: self._guard(self._load_folder))
        self.next_target.on_click(lambda _: self._guard(self._step_target))
        self.show_target.on_click(lambda _: self._guard(self._copy_target))
        self.pad.on_stroke_end(lambda _: self._guard(self.update, mark=True))
        self.pad.on_drawing(lambda _: self._guard(lambda: self.update(live=True)))
        self._target_index = 0
        self._chosen = False  # whether the target shown was picked by the first-minute rule (``_set_gallery``)
        self.kept_photos: set[int] = set()  # photos of the drawings kept to personalise (``Personalise``)
        self._wanted_target = self._target_option(options.get("target"))
        self._guard(lambda: self._start(options))

    # -- plumbing
    def _guard(self, fn, mark: bool = False) -> None:
        """Run ``fn``; any failure becomes a message in the page, never a traceback. With ``mark``, say
        afterwards (in ``.sbir-done``) how many strokes the page now answers for."""
        try:
            fn()
        except P.PlaygroundError as err:
            self.message.value = f"⚠ {err}"
        except Exception as err:  # noqa: BLE001 - the page must stay usable whatever happened
            log.error("playground error:\n%s", traceback.format_exc())
            self.message.value = f"⚠ something went wrong: {type(err).__name__}: {err}"
        finally:
            if mark:
                self.done.value = markup(
                    "<span data-strokes='{}' data-points='{}'></span>", len(self.pad.parts), self.pad.n_points
                )

    def _reject(self, note: str) -> None:
        """An initial option that cannot be used (the URL's): it is ignored, and ``notice`` says so and why."""
        self.notes.append(note)
        self.notice.value = "⚠ " + "; ".join(self.notes)
        self.notice.layout.display = ""

    def _target_option(self, value) -> int | None:
        """The ``target`` option as an index (checked against the first gallery's sketches later), or None."""
        if value is None:
            return None
        try:
            index = int(value)
        except (TypeError, ValueError):
            index = -1
        if index < 0:
            self._reject(f"target {value!r} is not a whole number from 0: the default sketch is shown")
            return None
        return index

    def _start(self, options: dict) -> None:
        if not self.choices:
            raise P.PlaygroundError("no method chapter of the book exists yet: nothing to query")
        wanted = options.get("method")
        pick = next((i for i, c in enumerate(self.choices) if c.recipe.chapter == wanted), None)
        if pick is None and wanted is not None:
            known = ", ".join(c.recipe.chapter for c in self.choices)
            self._reject(f"method {wanted!r} is not one of {known}")
        if pick is None:
            pick = next((i for i, c in enumerate(self.choices) if c.stored), 0)
        self._initial_gallery = options.get("gallery")
        if self.method.value == pick:
            self._pick_method()
        else:
            self.method.value = pick

    def _pick_method(self) -> None:
        choice = self.choices[self.method.value]
        self.engine = None
        self._clear_results()
        if not choice.stored:
            self.train_button.layout.display = ""
            raise P.PlaygroundError(
                f"{choice.recipe.label} is not trained at the {choice.scale} scale yet. Press "
                f"'train it here', or run its chapter: python -m sbir_core.book run --only "
                f"{choice.recipe.chapter}"
            )
        self.train_button.layout.display = "none"
        self.engine = P.load(choice)
        self.message.value = ""
        self._offer_galleries()

    def _train(self) -> None:
        choice = self.choices[self.method.value]
        self.message.value = f"training {choice.recipe.label} at the {choice.scale} scale ..."
        self.train_button.disabled = True
        try:
            with self.train_output:
                self.engine = P.load(choice, train=True, progress=True)
        finally:
            self.train_button.disabled = False
        # new options move a dropdown to its first (Triplet-SN): the model just trained stays the chosen one
        chosen, self._relabelling = self.method.value, True
        try:
            self.method.options = [(c.label, i) for i, c in enumerate(self.choices)]
            self.method.value = chosen
        finally:
            self._relabelling = False
        self.train_button.layout.display = "none"
        self.message.value = ""
        self._offer_galleries()

    def _offer_galleries(self) -> None:
        options = [(f"style world: {c}", f"world:{c}") for c in P.world_categories(self.engine.views)]
        from sbir_core.data.registry import available

        if available("pacs"):
            options.append(("PACS photos", "pacs"))
        options.append(("a folder of your own images ...", "folder"))
        initial = self._initial_gallery
        self._initial_gallery = None
        old = self.source.value
        self.source.options = options
        values = [v for _, v in options]
        if initial and initial not in values:
            if initial.startswith("world:") or not Path(initial).expanduser().is_absolute():
                self._reject(f"gallery {initial!r} is not one of {', '.join(values)} or an absolute folder path")
                initial = None
            else:
                self.folder.value = initial
                initial = "folder"
        first = FIRST_GALLERY if FIRST_GALLERY in values else values[0]
        value = initial if initial in values else (old if old in values else first)
        if self.source.value == value:
            self._pick_gallery()
        else:
            self.source.value = value

    def _pick_gallery(self) -> None:
        value = self.source.value
        folder = value == "folder"
        self.folder.layout.display = self.folder_button.layout.display = "" if folder else "none"
        if self.engine is None or value is None:
            return
        if folder:
            if self.folder.value.strip():
                self._load_folder()
            return
        if value == "pacs":
            self._set_gallery(P.pacs_gallery(self.engine.size))
        else:
            self._set_gallery(P.world_gallery(self.engine.views, value.split(":", 1)[1]))

    def _load_folder(self) -> None:
        self._set_gallery(P.folder_gallery(self.folder.value.strip(), self.engine.size))

    def _set_gallery(self, gallery: P.Gallery) -> None:
        self.gallery = gallery
        self.engine.gallery_search(gallery)  # embed now, not on the first stroke
        self.message.value = gallery.message
        wanted, self._wanted_target = self._wanted_target, None  # the option's target, checked once
        if wanted is not None and gallery.targets and wanted >= len(gallery.targets):
            last = len(gallery.targets) - 1
            self._reject(
                f"target {wanted} is out of range: this gallery has sketches 0 to {last}; the default is shown"
            )
        elif wanted is not None:
            self._target_index = wanted
        self._chosen = wanted is None or wanted >= len(gallery.targets)
        if self._chosen:  # the stated rule: the first sketch whose own copy this model ranks in its top k
            self._target_index = self.engine.first_copyable_target(gallery, self.k) or 0
        self._set_target(self._target_index)
        self.update()

    def _copy_target(self) -> None:
        """Put the sketch to copy on the pad: a new drawing, so its rank trail starts again."""
        self.history = []
        self.pad.load(self.target.strokes)

    def _step_target(self) -> None:
        """The next sketch to copy; while drawings are kept to personalise (``kept_photos``), the next one of a
        photo neither kept nor shown now, since adapting needs drawings of different photos."""
        self._chosen = False
        targets = self.gallery.targets if self.gallery else []
        step = 1
        if self.kept_photos and self.target is not None:
            skip = self.kept_photos | {self.target.index}
            n = len(targets)
            step = next((d for d in range(1, n) if targets[(self._target_index + d) % n].index not in skip), 1)
        self._set_target(self._target_index + step)
        self.update()

    def _set_target(self, i: int) -> None:
        targets = self.gallery.targets if self.gallery else []
        self.history = []
        if not targets:
            self.target = None
            self.target_image.value = png(np.ones((32, 32)), 3)
            self.rank.value = markup("<i>no sketch to copy in this gallery</i>")
            return
        self._target_index = i % len(targets)
        self.target = targets[self._target_index]
        self.target_image.value = png(SK.rasterise(self.target.strokes, 96, 2.0))
        why = f"; picked as the first sketch whose copy this model ranks in its top {self.k}" if self._chosen else ""
        self.rank.value = (
            f"copy it: its photo's rank appears here after each stroke ({self.target.sketch_id}{why})"
        )  # fmt: skip

    # -- retrieval
    def _clear_results(self) -> None:
        """No results: the cells hidden (an empty image is a broken-image icon in a browser), the hint shown."""
        for cell in self.cells:
            cell.children[0].value = b""
            cell.children[1].value = ""
            cell.layout.display = "none"
        self.hint.layout.display = ""

    def update(self, live: bool = False) -> None:
        """Search with the pad's drawing and show the results: after each stroke, and with ``live`` while one is
        drawn (the rank is shown, not added to the trail, which counts finished strokes)."""
        if self.engine is None or self.gallery is None:
            return
        strokes, note = self.pad.strokes()
        if strokes is None and live:
            return
        if strokes is None:
            self._clear_results()
            self._set_target(self._target_index)  # the rank trail starts again
            notes = [n for n in (self.gallery.message, "" if "nothing" in note else note) if n]
            self.message.value = ("⚠ " + "; ".join(notes) + ". " if notes else "") + "draw on the canvas to search"
            return
        target = self.target.index if self.target is not None else None
        hits = self.engine.query(strokes, self.gallery, self.k, target)
        for cell, (i, d) in zip(self.cells, zip(hits.index, hits.distance)):
            hit = self.target is not None and i == self.target.index
            cell.children[0].value = png(self.gallery.images[i], max(1, 80 // self.gallery.images.shape[1]))
            cell.children[1].value = markup(
                "<span class='sbir-hit' style='color:{}'>{}{}<br>d²={:.3f}</span>",
                "green" if hit else "black",
                "✔ " if hit else "",
                self.gallery.labels[i],
                d,
            )
        for cell in self.cells[: len(hits.index)]:
            cell.layout.display = ""
        for cell in self.cells[len(hits.index) :]:
            cell.children[0].value, cell.children[1].value = b"", ""
            cell.layout.display = "none"
        self.hint.layout.display = "none"
        notes = [n for n in (note, self.gallery.message) if n]
        self.message.value = ("⚠ " + "; ".join(notes)) if notes else ""
        if hits.target_rank is not None and live:
            self.rank.value = markup(
                "<span class='sbir-live-rank'>target rank now <b>{}</b> of {} (drawing)</span><br>by stroke: {}",
                hits.target_rank,
                len(self.gallery),
                " → ".join(map(str, self.history[-12:])) or "-",
            )
        elif hits.target_rank is not None:
            self.history.append(hits.target_rank)
            trail = " → ".join(map(str, self.history[-12:]))
            self.rank.value = markup(
                "<span class='sbir-target-rank' data-rank='{0}'>target rank <b>{0}</b> of {1}</span><br>by stroke: {2}",
                hits.target_rank,
                len(self.gallery),
                trail,
            )


class StyleSwap:
    """StyleMeUp only: your drawing on this tab's own pad, its style code moved towards another drawer's, and
    what the swapped code retrieves (``Engine.swap_hits``): the decoded sketch where the model reads images,
    and at every scale the top 5 photos of the swapped code, which a reader can see even where the decoding
    is not a picture (the ci scale's decoder redraws trunk features)."""

    def __init__(self, explorer: Explorer, k: int = 5):
        self.explorer, self.k = explorer, k
        self.pad = SketchPad(size=192)
        self.copy = W.Button(description="copy the explorer's drawing", layout=W.Layout(width="220px"))
        self.amount = W.FloatSlider(
            value=0.5,
            min=0.0,
            max=1.0,
            step=0.1,
            description="towards the other style",
            style={"description_width": "initial"},
            continuous_update=False,
        )
        self.source = W.IntSlider(
            value=0,
            min=0,
            max=50,
            description="other drawer's sketch",
            style={"description_width": "initial"},
            continuous_update=False,
        )
        self.images = W.HBox([W.Image(format="png", width=96, height=96) for _ in range(3)], layout=_wrap())
        self.hits = W.HBox([W.Image(format="png", width=80, height=80) for _ in range(k)], layout=_wrap())
        for img in (*self.images.children, *self.hits.children):
            img.layout.display = "none"  # an empty image is a broken-image icon in a browser
        self.message = HTML()
        self.message.add_class("sbir-message")
        self.widget = W.VBox(
            [
                HTML(markup("<b>style swap</b> (StyleMeUp): draw here, then move your style towards another drawer's")),
                W.HBox([self.pad.widget, W.VBox([self.copy, self.source, self.amount])], layout=_wrap()),
                HTML(markup("your drawing, the other style, and the decoding (where the model draws images)")),
                self.images,
                HTML(markup("<b>what the swapped code retrieves</b> (top {})", k)),
                self.hits,
                self.message,
            ]
        )
        self.widget.add_class("sbir-swap")
        for w in (self.amount, self.source):
            w.observe(lambda ch: self._run(self.update), names="value")
        self.pad.on_stroke_end(lambda _: self._run(self.update))
        self.copy.on_click(lambda _: self._run(self._copy))
        self.update()

    def _run(self, fn) -> None:
        """``fn``; a PlaygroundError becomes this tab's message, anything else the explorer's guard's."""

        def guarded():
            try:
                fn()
            except P.PlaygroundError as err:
                self.message.value = f"⚠ {err}"

        self.explorer._guard(guarded)

    def _copy(self) -> None:
        strokes, _ = self.explorer.pad.strokes()
        if strokes is None:
            raise P.PlaygroundError("the explorer's pad is empty: draw there or here")
        self.pad.load(strokes)

    def _show(self, widgets, pictures) -> None:
        for img, pic in zip(widgets, pictures):
            img.value, img.layout.display = (b"", "none") if pic is None else (pic, "")
        for img in widgets[len(pictures) :]:
            img.value, img.layout.display = b"", "none"

    def update(self) -> None:
        engine, gallery = self.explorer.engine, self.explorer.gallery
        method = None if engine is None else getattr(engine.method, "method", engine.method)
        if engine is None or not hasattr(method, "swap"):
            self.message.value = "choose StyleMeUp (chapter 6) in the explorer to swap styles"
            return
        strokes, _ = self.pad.strokes()
        if strokes is None or gallery is None or not gallery.targets:
            self.message.value = (
                "draw something here (with a style-world gallery chosen in the explorer) to swap its style"
            )
            self._show(self.images.children, [])
            self._show(self.hits.children, [])
            return
        other = gallery.targets[self.source.value % len(gallery.targets)]
        decoded, hits = engine.swap_hits(strokes, other.strokes, self.amount.value, gallery, self.k)
        self._show(
            self.images.children,
            [
                png(engine.raster(strokes), 3),
                png(engine.raster(other.strokes), 3),
                None if decoded is None else png(decoded, 3),
            ],
        )
        self._show(
            self.hits.children, [png(gallery.images[i], max(1, 80 // gallery.images.shape[1])) for i in hits.index]
        )
        labels = ", ".join(gallery.labels[i] for i in hits.index)
        where = (
            ""
            if decoded is not None
            else " (at this scale the decoder redraws trunk features, not a sketch: no picture)"
        )
        self.message.value = f"the swapped code's top {self.k}: {labels}{where}"


class Personalise:
    """Adapt the explorer's model to your own drawings (Adaptive FG-SBIR, chapter 7): copy a sketch of the
    style-world gallery on the pad, keep it, repeat for two or more different photos, then adapt; the
    explorer then searches with the adapted model (``Engine.personalise``) until you forget the drawings."""

    def __init__(self, explorer: Explorer):
        self.explorer = explorer
        self.drawings: list = []
        self.rows: list[int] = []
        self.gallery = None
        self.base = self.adapted = None  # the engine adapted from, and the adapted one
        self.keep = W.Button(description="keep this drawing")
        self.adapt = W.Button(description="adapt to my drawings", button_style="success")
        self.forget = W.Button(description="forget them")
        self.count = HTML()
        self.count.add_class("sbir-count")
        self.message = HTML()
        self.message.add_class("sbir-message")
        self.widget = W.VBox(
            [
                HTML(
                    markup(
                        "<b>personalise</b> (Adaptive FG-SBIR): copy a few sketches your way on the "
                        "pad, keep each one, then adapt the model to them"
                    )
                ),
                W.HBox([self.keep, self.adapt, self.forget]),
                self.count,
                self.message,
            ]
        )
        self.widget.add_class("sbir-personalise")
        self.keep.on_click(lambda _: self._run(self._keep))
        self.adapt.on_click(lambda _: self._run(self._adapt))
        self.forget.on_click(lambda _: self._run(self._forget))
        self._show()

    def _run(self, fn) -> None:
        """``fn``; a PlaygroundError becomes this tab's message (the explorer's guard handles the rest)."""
        try:
            fn()
        except P.PlaygroundError as err:
            self.message.value = f"⚠ {err}"
            return
        finally:
            self._show()

    def _show(self) -> None:
        state = "adapted" if self.adapted is not None and self.explorer.engine is self.adapted else "not adapted"
        photos = len(set(self.rows))
        self.explorer.kept_photos = set(self.rows)
        self.count.value = (
            f"kept: {len(self.drawings)} drawing(s) of {photos} photo(s); adapting needs drawings of at least "
            f"{MIN_PHOTOS} different photos; the explorer's model is {state}"
        )

    def _keep(self) -> None:
        ex = self.explorer
        if ex.engine is None or ex.gallery is None:
            raise P.PlaygroundError("choose a method and a style-world gallery first")
        if not getattr(ex.engine.method, "adaptive", False):
            raise P.PlaygroundError("choose Adaptive FG-SBIR (chapter 7) to personalise")
        if ex.target is None:
            raise P.PlaygroundError("personalising needs sketches to copy: choose a style-world gallery")
        strokes, _ = ex.pad.strokes()
        if strokes is None:
            raise P.PlaygroundError("draw the sketch to copy on the pad first")
        if self.gallery is not None and self.gallery is not ex.gallery:  # rows of another gallery mean nothing here
            self.drawings, self.rows = [], []
        self.gallery = ex.gallery
        self.drawings.append(np.asarray(strokes).copy())
        self.rows.append(int(ex.target.index))
        self.message.value = "kept: press 'another sketch to copy' in the explorer for a sketch of another photo"

    def _adapt(self) -> None:
        ex = self.explorer
        if ex.engine is None or self.gallery is None:
            raise P.PlaygroundError(f"keep drawings of at least {MIN_PHOTOS} different photos first")
        base = self.base if ex.engine is self.adapted and self.base is not None else ex.engine
        self.adapted = base.personalise(self.drawings, self.gallery, self.rows)
        self.base, ex.engine = base, self.adapted
        self.message.value = f"adapted to your {len(self.drawings)} drawings: the explorer now searches with it"
        ex._guard(ex.update)

    def _forget(self) -> None:
        ex = self.explorer
        if self.adapted is not None and ex.engine is self.adapted:
            ex.engine = self.base
        self.drawings, self.rows, self.gallery, self.base, self.adapted = [], [], None, None, None
        self.message.value = "forgotten: the explorer searches with the trained model again"
        ex._guard(ex.update)


class Playground:
    """The whole page: the explorer, the style swap when a StyleMeUp model is trained, and personalise when an
    Adaptive FG-SBIR model is."""

    def __init__(
        self,
        scale: str = "ci",
        options: dict | None = None,
        overrides: dict | None = None,
        notes: list[str] | None = None,
    ):
        self.explorer = Explorer(scale=scale, options=options, overrides=overrides, notes=notes)
        self.swap = StyleSwap(self.explorer)
        self.personalise = Personalise(self.explorer)
        self.widget = W.Tab([self.explorer.widget, self.swap.widget, self.personalise.widget])
        for i, title in enumerate(("draw and retrieve", "style swap", "personalise")):
            self.widget.set_title(i, title)

    @classmethod
    def from_query_string(cls, query: str | None, scale: str = "ci", overrides: dict | None = None) -> Playground:
        """A playground set up from a URL query (``?method=04_triplet_baseline&gallery=world:shoe&target=3``).

        Whoever sent the link wrote the query: an unknown parameter, or a ``scale`` that is not a config folder
        (``playground.scales``), is ignored and said in the page; the explorer checks the other parameters."""
        options = {k: v[-1] for k, v in parse_qs(query or "").items()}
        options.pop("token", None)  # the server's (sbir_core.browser.serve), not the app's
        notes = [f"unknown parameter {k!r} ignored" for k in options if k not in QUERY_KEYS]
        wanted = options.pop("scale", scale)
        if wanted not in P.scales():
            notes.append(f"scale {wanted!r} is not one of {', '.join(P.scales())}: the {scale} scale is shown")
            wanted = scale
        options = {k: v for k, v in options.items() if k in QUERY_KEYS}
        return cls(scale=wanted, options=options, overrides=overrides, notes=notes)
