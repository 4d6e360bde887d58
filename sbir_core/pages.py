"""What a reader must not meet on a page of the book, checked on the executed chapters and the built HTML.

``notebook_problems``: in the executed notebooks' outputs, anything written to stderr (warnings, progress
bars), a traceback or an error output, warning or error text printed to stdout, and a figure whose cell gives it
no caption and alt text (myst-nb's cell metadata ``mystnb.figure.caption`` and ``mystnb.image.alt``: numbered
captions in the book, and alt text that says what the figure shows), and a table (a DataFrame shown as HTML) with
no caption (``mystnb.figure.caption`` and ``classes: sbir-table``: "Table N"). ``html_problems``: in the
built pages' text outside code blocks, the same warning or traceback text and a ``nan`` / ``NaN`` (a missing
value glued into a sentence or left in a table cell; a page says "not run" or shows an em dash instead).
``browse``: each built page in headless Chromium at a laptop's and a phone's width, for broken images,
elements wider than the screen outside a scroll container, and failure text a reader sees.
``python -m sbir_core.book build`` fails on any of them and lists each problem with its page and context.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

TABLE = "sbir-table"  # the figure class that numbers a table output as a table (book/_ext/sbir_tables.py)
# "UserWarning: ...", "RuntimeError: ...", a traceback: text of a failure, not of the book
FAILURE = re.compile(r"\b[A-Z]\w*(?:Warning|Error|Exception)\b:|Traceback \(most recent call last\)")
# a missing value shown as such: "nan", "NaN", "nan%" (not "nanometre", "Nan Li", "finance", "x.nan")
MISSING = re.compile(r"(?<![\w.#/-])(?:nan|NaN)(?![\w-])")


def _context(text: str, match: re.Match, width: int = 60) -> str:
    a, b = max(match.start() - width, 0), min(match.end() + width, len(text))
    return " ".join(text[a:b].split())


def _text(value) -> str:
    return value if isinstance(value, str) else "".join(value)


def notebook_problems(paths) -> list[str]:
    """Every stderr stream, error output and warning or traceback text in the outputs of executed notebooks."""
    problems = []
    for path in map(Path, paths):
        cells = json.loads(path.read_text())["cells"]
        for i, cell in enumerate(cells):
            for out in cell.get("outputs", []):
                kind = out.get("output_type")
                where = f"{path.name}, cell {i}"
                if kind == "error":
                    problems.append(f"{where}: an error output ({out.get('ename')}: {out.get('evalue')})")
                elif kind == "stream":
                    text = _text(out.get("text", ""))
                    if out.get("name") == "stderr" and text.strip():
                        problems.append(f"{where}: text on stderr: {' '.join(text.split())[:160]!r}")
                    elif m := FAILURE.search(text):
                        problems.append(f"{where}: printed {_context(text, m)!r}")
                else:
                    meta = cell.get("metadata", {}).get("mystnb", {})
                    if "image/png" in out.get("data", {}) and not (
                        meta.get("figure", {}).get("caption") and meta.get("image", {}).get("alt")
                    ):
                        problems.append(
                            f"{where}: a figure without a caption and alt text (the cell's mystnb metadata: "
                            f"figure.caption, image.alt)"
                        )
                    if "<table" in _text(out.get("data", {}).get("text/html", "")) and not (
                        meta.get("figure", {}).get("caption") and TABLE in str(meta.get("figure", {}).get("classes"))
                    ):
                        problems.append(
                            f"{where}: a table without a caption (the cell's mystnb metadata: figure.caption, and "
                            f"figure.classes {TABLE!r}: numbered as a table by book/_ext/sbir_tables.py)"
                        )
                    for mime in ("text/plain", "text/markdown", "text/html"):
                        text = _text(out.get("data", {}).get(mime, ""))
                        if m := FAILURE.search(text):
                            problems.append(f"{where}: {mime} output shows {_context(text, m)!r}")
    return problems


def page_text(html: str) -> str:
    """A built page's visible text, code blocks, scripts and styles left out."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "pre", "code", "head", "nav"]):
        tag.decompose()
    for tag in soup.select("div.highlight, div.cell_input"):
        tag.decompose()
    return soup.get_text(" ")


def html_problems(paths) -> list[str]:
    """Warning or traceback text, and missing values shown as "nan", in built pages outside code blocks."""
    problems = []
    for path in map(Path, paths):
        text = page_text(path.read_text(errors="replace"))
        for pattern, what in ((FAILURE, "failure text"), (MISSING, "a missing value shown as nan")):
            found = list(pattern.finditer(text))
            if found:
                more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
                problems.append(f"{path.name}: {what}: {_context(text, found[0])!r}{more}")
    return problems


# the page as a reader's browser lays it out: what sticks out of the viewport without a scroll container to
# hold it, images that did not load, and the visible text
_LAYOUT_JS = """() => {
  const vw = document.documentElement.clientWidth;
  const held = (el) => {
    for (let a = el; a && a !== document.body; a = a.parentElement) {
      const st = getComputedStyle(a);
      if (st.clip !== 'auto' || st.clipPath !== 'none') return true;  // hidden on purpose: screen-reader text
      // a scroll container around it holds it; overflow hidden or clip cuts it off: a problem
      if (a !== el && (st.overflowX === 'auto' || st.overflowX === 'scroll')) return true;
    }
    return false;
  };
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= vw + 1 || getComputedStyle(el).position === 'fixed') continue;
    if (held(el)) continue;
    const inner = Array.from(el.children).some((c) => c.getBoundingClientRect().right > vw + 1 && !held(c));
    if (!inner) wide.push(`${el.tagName.toLowerCase()}${el.className && typeof el.className === 'string' ?
      '.' + el.className.trim().split(/\\s+/).join('.') : ''} (${Math.round(r.right)} px)`);
  }
  const broken = Array.from(document.images)
    .filter((i) => i.getAttribute('src') && i.complete && i.naturalWidth === 0)
    .map((i) => i.getAttribute('src'));
  return {scroll: document.documentElement.scrollWidth, width: vw, wide: wide.slice(0, 5), n_wide: wide.length,
          broken, text: document.body.innerText};
}"""

WIDTHS = (1280, 390)  # a laptop and a phone, in CSS pixels


def browse(pages, widths=WIDTHS, shots: Path | None = None) -> list[str]:
    """Each built page opened in headless Chromium at each width (``sbir_core.browser``): a broken image, an element
    wider than the viewport outside a scroll container, or warning or traceback text a reader sees is a problem.
    ``shots``: a folder for a full-page screenshot of each (build artefacts, never committed)."""
    from sbir_core.browser import browser_page

    problems = []
    # a redirect (the root index.html) navigates away while it is read: its target is checked on its own
    pages = [
        Path(p).resolve() for p in pages if 'http-equiv="refresh"' not in Path(p).read_text(errors="replace").lower()
    ]
    for width in widths:
        with browser_page(width=width, height=900) as page:
            for path in pages:
                page.goto(path.as_uri(), wait_until="load")
                seen = page.evaluate(_LAYOUT_JS)
                where = f"{path.name} at {width} px"
                if seen["broken"]:
                    problems.append(f"{where}: {len(seen['broken'])} broken image(s), e.g. {seen['broken'][0]}")
                if seen["n_wide"]:
                    problems.append(
                        f"{where}: {seen['n_wide']} element(s) wider than the {seen['width']} px viewport outside a "
                        f"scroll container: {', '.join(seen['wide'])}"
                    )
                if m := FAILURE.search(seen["text"]):
                    problems.append(f"{where}: shows {_context(seen['text'], m)!r}")
                if shots is not None:
                    shots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(shots / f"{path.stem}-{width}.png"), full_page=True)
    return problems
