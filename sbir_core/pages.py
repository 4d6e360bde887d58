"""What a reader must not meet on a page of the book, checked on the executed chapters and the built HTML.

``notebook_problems``: in the executed notebooks' outputs, anything written to stderr (warnings, progress
bars), a traceback or an error output, and warning or error text printed to stdout. ``html_problems``: in the
built pages' text outside code blocks, the same warning or traceback text and a ``nan`` / ``NaN`` (a missing
value glued into a sentence or left in a table cell; a page says "not run" or shows an em dash instead).
``python -m sbir_core.book build`` fails on either and lists each problem with its page and context.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

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
