"""The benches that print figures (``python -m sbir_core.bench world | data | query``) run, small, and print them.
Their figures are measurements and are never asserted; that each bench reaches its table on the path it claims to
measure is. (``bench query`` had gone stale when chapter 4 moved to the frozen trunk: it built a model from config
keys the chapter no longer has, and failed before printing a figure.)"""

import re

import pytest

from sbir_core.bench import data as BD
from sbir_core.bench import query as BQ
from sbir_core.bench import world as BW
from sbir_core.data import available


def test_query_bench_answers_drawings_on_the_playgrounds_path(capsys):
    code = BQ.main(["--gallery", "600", "--queries", "3", "--sizes", "2000", "--hnsw", "all", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0
    # every stage of a drawn query, the frozen trunk among them where chapter 4 reads its features
    stages = re.findall(r"^\s*(\w+)\s+[0-9.]+\s+[0-9.]+$", out, re.M)
    assert stages[:6] == ["rasterise", "sketch_tensor", "trunk", "embed_query", "search_top10", "total"], out
    assert "3 style-world sketches" in out and "end-to-end p95" in out
    for model in ("clustered", "isotropic"):  # both synthetic models, with every index family
        assert f"{model} N=2,000:" in out
    assert "IVFFlat" in out and "HNSWFlat" in out


def test_world_bench_prints_generation_and_reload_times(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path / "cache"))
    assert BW.main(["--n-instances", "32", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for line in ("generate cold", "another style_gap", "reload"):
        assert re.search(rf"^{line}\s*:\s+[0-9.]+ s", out, re.M), out


@pytest.mark.skipif(not available("shoes304"), reason="shoes304 is not under SBIR_DATA")
def test_data_bench_prints_cold_and_warm_rasterising(capsys):
    assert BD.main(["--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"cold \(empty raster cache\): [0-9.]+ s", out), out
    assert re.search(r"warm \(from raster cache\):\s+[0-9.]+ s", out), out
