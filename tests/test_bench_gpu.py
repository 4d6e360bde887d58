"""The GPU check (``python -m sbir_core.bench gpu``) on the CPU: every chapter's paper model, built as its chapter
builds it at the paper scale (trunk trained end to end, the paper's image size, batch, sampler and train step),
trains one step and is evaluated. The CPU path of the paper configuration that CI can afford; the figures
themselves are only printed (a GPU machine gives the real ones)."""

import pandas as pd
import pytest
import torch

from sbir_core.bench import gpu as G
from sbir_core.recipes import MAIN_RUNS


def test_images_in_counts_every_image_of_a_nested_batch():
    batch = {"a": torch.zeros(4, 3, 8, 8), "b": [torch.zeros(2, 1, 8, 8), {"c": torch.zeros(5, 3, 8, 8)}]}
    assert G.images_in(batch | {"idx": torch.arange(4), "f": torch.zeros(9, 16)}) == 11


# Two of the five runs: the paper smoke (tests/test_smoke.py) trains and evaluates every chapter's paper model
# through its chapter; this checks the GPU bench's own path, on the simplest run and on the meta-learner's.
CHAPTERS = ["04_triplet_baseline", "07_adaptive"]


def test_the_gpu_bench_trains_paper_models_a_step_and_evaluates_them_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "gpu.csv"
    args = [
        "--device",
        "cpu",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--modes",
        "fp32",
        "--batch",
        "1",
        "--eval-queries",
        "8",
    ]
    code = G.main([*args, "--chapters", *CHAPTERS, "--out", str(out)])
    table = pd.read_csv(out)
    assert "error" not in table or table["error"].isna().all(), table.get("error")
    assert code == 0
    assert list(table["chapter"]) == CHAPTERS and set(CHAPTERS) <= set(MAIN_RUNS)
    assert (table["train images/s"] > 0).all() and (table["eval images/s"] > 0).all()
    assert "train images/s" in capsys.readouterr().out


def test_a_mode_that_fails_is_its_rows_error_and_the_exit_code_says_so(monkeypatch, tmp_path):
    def broken(run, held, device, mode, steps, warmup, batch):
        raise RuntimeError(f"{mode} not here")

    monkeypatch.setattr(G, "measure", broken)
    code = G.main(
        ["--device", "cpu", "--modes", "fp32", "--chapters", "04_triplet_baseline", "--out", str(tmp_path / "t")]
    )
    assert code == 1
    assert pd.read_csv(tmp_path / "t")["error"].tolist() == ["RuntimeError: fp32 not here"]


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        G.main(["--device", "cpu", "--modes", "fp64"])
    if not torch.cuda.is_available():
        assert G.main(["--device", "cuda"]) == 2
