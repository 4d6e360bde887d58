"""What a reader must not meet on a page (``sbir_core.pages``): each kind of problem is found, clean pages pass."""

import json

from sbir_core.pages import html_problems, notebook_problems


def notebook(tmp_path, *outputs, name="nb.ipynb"):
    path = tmp_path / name
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "x", "outputs": list(outputs)}]}))
    return path


def stream(text, name="stdout"):
    return {"output_type": "stream", "name": name, "text": text}


def data(mime, text):
    return {"output_type": "display_data", "data": {mime: text}}


def test_clean_outputs_pass(tmp_path):
    path = notebook(
        tmp_path,
        stream("Acc@1 rose from 12% to 30%.\n"),
        data("text/markdown", "Finance, nanometres and Nan Li's error bars are fine."),
        data("text/plain", "an Error-free table"),
    )
    assert notebook_problems([path]) == []


def test_stderr_warnings_tracebacks_and_errors_are_found(tmp_path):
    cases = [
        stream("/tmp/ipykernel_1/123.py:4: UserWarning: something\n", "stderr"),
        stream("  0%|          | 0/10 [00:00<?, ?it/s]", "stderr"),
        stream("Pandas4Warning: the default will change\n"),
        data("text/plain", "Traceback (most recent call last):\n  File ..."),
        {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": []},
    ]
    for i, out in enumerate(cases):
        found = notebook_problems([notebook(tmp_path, out, name=f"{i}.ipynb")])
        assert len(found) == 1 and found[0].startswith(f"{i}.ipynb, cell 0"), (out, found)
    assert notebook_problems([notebook(tmp_path, stream("   \n", "stderr"))]) == []  # a blank line is nothing


def test_a_figure_needs_a_caption_and_alt_text(tmp_path):
    png = {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}}
    path = notebook(tmp_path, png)
    assert "without a caption" in notebook_problems([path])[0]
    cells = json.loads(path.read_text())
    cells["cells"][0]["metadata"] = {"mystnb": {"figure": {"caption": "What it shows."}, "image": {"alt": "A plot."}}}
    path.write_text(json.dumps(cells))
    assert notebook_problems([path]) == []


def test_a_table_needs_a_caption_numbered_as_a_table(tmp_path):
    table = {"output_type": "execute_result", "data": {"text/html": "<table><tr><td>1</td></tr></table>"}}
    path = notebook(tmp_path, table)
    assert "a table without a caption" in notebook_problems([path])[0]
    cells = json.loads(path.read_text())
    cells["cells"][0]["metadata"] = {"mystnb": {"figure": {"caption": "What it lists."}}}
    path.write_text(json.dumps(cells))
    assert "a table without a caption" in notebook_problems([path])[0]  # a caption alone numbers it as a figure
    cells["cells"][0]["metadata"]["mystnb"]["figure"]["classes"] = "sbir-table"
    path.write_text(json.dumps(cells))
    assert notebook_problems([path]) == []


def test_a_table_figure_is_numbered_as_a_table_with_its_caption_first(tmp_path):
    """book/_ext/sbir_tables.py on a document as myst-nb builds it (every output of a captioned cell wrapped in a
    figure with the cell's caption): a table output becomes a table for numbering, caption first; a cell's second
    table joins the first; a cell's output that is not its figure or table loses the wrapper (and its label); a
    Markdown figure outside any cell is left alone."""
    import sys

    from docutils import nodes
    from docutils.utils import new_document

    from sbir_core.paths import BOOK

    sys.path.insert(0, str(BOOK / "_ext"))
    import sbir_tables as X

    def fig(content, table=True, caption="Two toy methods."):
        f = nodes.figure("", content, classes=[X.CLASS] if table else [])
        f += nodes.caption("", caption)
        return f

    def cell(*figs):
        c = nodes.container(nb_element="cell_code_output")
        c += list(figs)
        return c

    doc = new_document("test")
    html = lambda text: nodes.raw("", text, format="html")
    note = fig(html("<p>a note</p>"), table=False)
    doc.note_explicit_target(note, note)
    note["names"].append("c01-fig-x")
    doc.nameids["c01-fig-x"], note["ids"] = "c01-fig-x", ["c01-fig-x"]
    doc.ids["c01-fig-x"] = note
    tables = cell(fig(html("<table>a</table>")), fig(html("<table>b</table>")))
    absent = cell(fig(html("<p>no table here</p>")))
    plot = cell(fig(nodes.image(uri="a.png"), table=False), note)
    markdown = fig(nodes.image(uri="m.png"), table=False)
    doc += [tables, absent, plot, markdown]
    X.TableFigures(doc).apply()
    found = list(doc.findall(X.table_figure))
    assert len(found) == 1 and isinstance(found[0][0], nodes.caption)
    assert [r.astext() for r in found[0].findall(nodes.raw)] == ["<table>a</table>", "<table>b</table>"]
    assert not list(absent.findall(nodes.figure)) and absent.astext() == "<p>no table here</p>"
    assert len(list(plot.findall(nodes.figure))) == 1 and "a note" in plot.astext()
    assert "c01-fig-x" not in doc.nameids and "c01-fig-x" not in doc.ids  # a {numref} to it: "not shown"
    assert markdown.parent is doc and type(markdown) is nodes.figure
    assert X._caption(found[0]) == "Two toy methods."


def test_nan_in_prose_or_a_table_cell_is_found_not_in_code(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(
        "<html><body><p>Ours beats it by 3.0 points.</p>"
        '<div class="highlight"><pre>x = float("nan")  # UserWarning: in code</pre></div>'
        "<table><tr><td>0.5</td><td>—</td></tr></table></body></html>"
    )
    assert html_problems([page]) == []
    page.write_text("<html><body><p>The gain is nan% (Acc@1).</p><table><td>NaN</td></table></body></html>")
    found = html_problems([page])
    assert len(found) == 1 and "nan%" in found[0] and "(and 1 more)" in found[0]
    page.write_text("<html><body><p>UserWarning: the kernel's temporary file</p></body></html>")
    assert "failure text" in html_problems([page])[0]


def test_pages_in_a_browser_find_broken_images_overflow_and_failure_text(tmp_path):
    """A page as a phone lays it out (``pages.browse``, headless Chromium): a broken image, a table wider than the
    viewport outside a scroll container, and warning text are each found; the same table in a scroll container,
    and a redirect page, are not problems. Without a browser it skips, except under SBIR_REQUIRE_BROWSER=1."""
    import os

    import pytest

    from sbir_core import browser as BR
    from sbir_core.pages import browse

    if BR.chromium_path() is None:
        if os.environ.get("SBIR_REQUIRE_BROWSER") == "1":
            pytest.fail("SBIR_REQUIRE_BROWSER=1 but no Chromium")
        pytest.skip("no Chromium")
    wide = "<table><tr>" + "".join(f"<td>column{i:02d}</td>" for i in range(60)) + "</tr></table>"
    good, bad, redirect = tmp_path / "good.html", tmp_path / "bad.html", tmp_path / "index.html"
    hidden = "position:absolute;clip:rect(1px,1px,1px,1px);overflow:hidden"  # screen-reader text, as MathJax's
    good.write_text(
        f"<html><body><p>fine</p><div style='overflow-x:auto'>{wide}</div><span style='{hidden}'>{wide}</span>"
        "</body></html>"
    )
    bad.write_text(
        f"<html><body><img src='missing.png'><div style='overflow-x:hidden'>{wide}</div>"
        "<p>/tmp/x.py:3: UserWarning: shown to the reader</p></body></html>"
    )
    redirect.write_text('<meta http-equiv="Refresh" content="0; url=good.html" />')
    found = browse([good, bad, redirect], widths=(390,), shots=tmp_path / "shots")
    assert [p.split(":")[0] for p in found] == ["bad.html at 390 px"] * 3, found
    assert "broken image" in found[0] and "wider than the 390 px viewport" in found[1] and "UserWarning" in found[2]
    assert sorted(f.name for f in (tmp_path / "shots").iterdir()) == ["bad-390.png", "good-390.png"]


def test_a_reference_to_a_table_this_build_does_not_hold_says_so():
    """A chapter's table shown only where a dataset is present: its {numref} reads "not shown in this build" where
    the dataset is absent (no broken link, no build error); another missing reference stays an error."""
    import sys

    from sphinx import addnodes

    from sbir_core.paths import BOOK

    sys.path.insert(0, str(BOOK / "_ext"))
    import sbir_tables as X

    ref = addnodes.pending_xref("", reftype="numref", reftarget="c04-tbl-real")
    assert X._not_shown(None, None, ref, None).astext() == "a table not shown in this build"
    assert X._not_shown(None, None, addnodes.pending_xref("", reftype="numref", reftarget="intro"), None) is None
    assert X._not_shown(None, None, addnodes.pending_xref("", reftype="ref", reftarget="c04-fig-x"), None) is None
