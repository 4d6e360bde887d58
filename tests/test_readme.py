"""The README's Python examples, run verbatim: the ten lines on the style world, and the real-set lines on the
fixture data root (``sbir_core.data.fixtures``) in the official layouts they name."""

import re
from pathlib import Path

from sbir_core.data.fixtures import write_root

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(heading: str) -> list[str]:
    text = README.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.S)


def test_the_real_set_examples_run_verbatim(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SBIR_DATA", str(write_root(tmp_path / "data", datasets=("shoev2", "sketchy"))))
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SBIR_STORE", str(tmp_path / "store"))
    code = blocks("### The package on a real set")
    assert len(code) == 2
    scope: dict = {}
    for block in code:
        exec(compile(block, str(README), "exec"), scope)  # noqa: S102 - the README's own lines
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and all(re.match(r"^\d+\.\d+ \[\d+\.\d+, \d+\.\d+\]", line) for line in printed), printed
    assert scope["zs"].relevant().any(1).all()  # every unseen query has its class among the unseen photos


def test_the_ten_lines_run_verbatim(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SBIR_STORE", str(tmp_path / "store"))
    (code,) = blocks("## The package in ten lines")
    exec(compile(code, str(README), "exec"), {})  # noqa: S102
    out = capsys.readouterr().out
    assert "acc_at_1" in out and "map_all" in out
