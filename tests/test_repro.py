"""The one setup function: seeds, threads, determinism."""

import numpy as np
import torch

from sbir_core import seed_everything, setup


def test_setup_pins_threads_and_determinism():
    rng = setup(seed=3, threads=2, plots=False)
    assert torch.get_num_threads() == 2
    assert torch.are_deterministic_algorithms_enabled()
    assert isinstance(rng, np.random.Generator)


def test_threads_pin_every_native_pool_loaded_now_and_later(monkeypatch):
    """NumPy's OpenBLAS and the OpenMP runtime loaded now, and the pools of libraries loaded later (their
    variables), all run the chosen count: two chapters side by side do not fight for the same cores."""
    import os
    import subprocess
    import sys

    from threadpoolctl import threadpool_info

    from sbir_core.repro import THREAD_VARIABLES, set_threads

    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    try:
        set_threads(1)
        assert {p["num_threads"] for p in threadpool_info()} == {1}
        assert all(os.environ[name] == "1" for name in THREAD_VARIABLES)
        later = "import scipy.linalg, threadpoolctl; print({p['num_threads'] for p in threadpoolctl.threadpool_info()})"
        out = subprocess.run([sys.executable, "-c", later], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "{1}"  # a fresh process reading the variables, as a library loaded later does
    finally:
        set_threads(torch.get_num_threads())


def test_same_seed_same_draws_everywhere():
    import random

    def draws():
        rng = seed_everything(7)
        return random.random(), np.random.rand(), torch.rand(3).tolist(), rng.random()

    assert draws() == draws()
    a = draws()
    seed_everything(8)
    assert torch.rand(3).tolist() != a[2]


def test_seeded_training_step_is_bit_identical():
    def train():
        setup(seed=0, plots=False)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)
        )
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        x = torch.randn(8, 1, 8, 8)
        for _ in range(5):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    assert torch.equal(train(), train())


def test_plot_style_applies():
    import matplotlib.pyplot as plt

    setup(seed=0, plots=True)
    assert plt.rcParams["svg.hashsalt"] == "sbir"


def test_a_tables_text_cells_are_shown_whole():
    """pandas cuts text cells at 50 characters by default; a chapter's table shows the whole sentence."""
    import pandas as pd

    text = "not testable (Proposed's interval reaches its floor, pixel matching, on the seen drawers)"
    with pd.option_context("display.max_colwidth", 50):
        setup(seed=0, plots=True)
        html = pd.DataFrame({"outcome": [text]})._repr_html_()
    assert text.replace("'", "&#x27;") in html or text in html, html


def test_freed_buffers_are_kept_on_glibc_and_the_switch_turns_it_off(monkeypatch):
    """``keep_freed_buffers`` sets glibc's thresholds (True) on Linux and does nothing with ``SBIR_MALLOC=default``
    or off glibc. Its effect is speed, measured by a benchmark and not by a test (the docstring's figures): how many
    page faults a freed buffer costs later depends on how the heap has grown, which a test cannot pin."""
    import sys

    from sbir_core.repro import keep_freed_buffers

    monkeypatch.setenv("SBIR_MALLOC", "default")
    assert keep_freed_buffers() is False
    monkeypatch.delenv("SBIR_MALLOC")
    assert keep_freed_buffers() is sys.platform.startswith("linux")
