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
