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
