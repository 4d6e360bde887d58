"""The one setup function: seeds, threads, determinism."""

import os

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


def test_freed_buffers_stay_in_the_heap_on_glibc_and_the_switch_turns_it_off():
    """Buffers above glibc's mmap threshold are kept for reuse (no page faults on every step). Each case in a fresh
    process, whose heap no earlier test has shaped: a 256 MB buffer freed and taken again costs no fresh minor page
    faults with ``set_threads`` (which calls ``keep_freed_buffers``), about 65,000 4 kB faults without it."""
    import subprocess
    import sys

    probe = (
        "import resource, sys, torch\n"
        "from sbir_core.repro import keep_freed_buffers, set_threads\n"
        "set_threads(2)\n"
        "x = torch.ones(64 * 2**20); del x\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "y = torch.ones(64 * 2**20)\n"
        "print(keep_freed_buffers(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )

    def faults(**env):
        done = subprocess.run([sys.executable, "-c", probe], env=os.environ | env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        kept, n = done.stdout.split()
        return kept == "True", int(n)

    kept, n_default = faults(SBIR_MALLOC="default")
    assert not kept
    if not sys.platform.startswith("linux"):
        return
    kept, n_kept = faults()
    if not kept:  # a libc without mallopt (musl): nothing to check
        return
    assert n_kept < 1000 < 30000 < n_default, (n_kept, n_default)
