"""The one setup function: seeds, threads, determinism."""

import numpy as np
import torch

from sbir_core import seed_everything, setup


def test_setup_pins_threads_and_determinism():
    rng = setup(seed=3, threads=2, plots=False)
    assert torch.get_num_threads() == 2
    assert torch.are_deterministic_algorithms_enabled()
    assert isinstance(rng, np.random.Generator)


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
