"""One setup for every chapter and test: seeds, a fixed thread count, determinism, plot style."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import random
import sys

import numpy as np
import torch

# One thread: the bits of a run then do not depend on the machine's core count, and the cores run chapters
# (``book run --jobs``) and tests side by side. The ci workloads are small heads and batches, where a second
# thread bought 1.2x (StyleMeUp's meta-training: 25.0 s -> 20.7 s for 500 outer steps) and two one-thread
# runs side by side 1.5x (27.5 s for both).
DEFAULT_THREADS = 1


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and PyTorch from one integer; return a NumPy Generator on that seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextlib.contextmanager
def preserved_rng():
    """Python's, NumPy's and PyTorch's global random states (every device's) as they were on entry, on exit."""
    py, npy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


# the thread pools of the native libraries a chapter loads (NumPy's and SciPy's OpenBLAS, FAISS's OpenMP)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def set_threads(threads: int = DEFAULT_THREADS) -> None:
    """Pin PyTorch's intra-op threads (and inter-op threads where still allowed), and every other thread pool:
    the BLAS and OpenMP pools already loaded (threadpoolctl) and, through their variables, those loaded later.

    One and two threads give different floating-point bits on the CPU (TOOLCHAIN.md §5), so
    every run that must reproduce bit for bit pins the same count. Chapters and tests side by side each use
    one core: NumPy's OpenBLAS left at its default (every core) would make two chapters fight for both.
    """
    from threadpoolctl import threadpool_limits

    keep_freed_buffers()
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    threadpool_limits(threads)
    torch.set_num_threads(threads)
    # inter-op threads can only be set before the first parallel work; later calls keep them
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_buffers() -> bool:
    """Let glibc keep the buffers PyTorch frees for the next step instead of handing them back to the kernel.

    glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh mapping and unmaps
    it on free, and trims the heap's top beyond 128 kB. PyTorch's CPU allocator frees a step's activations
    when the step ends, so every step faulted in and zeroed its memory again: at 224 pixels most of an
    EfficientNet-Lite0 step was system time (2 threads: a training step of 12 images 0.86 s -> 0.47 s,
    inference on 64 images 1.5 s -> 0.41 s). Raising both thresholds keeps the freed memory in the heap
    (the process holds its peak). Bits are unchanged: only where memory comes from differs. No-op (False)
    off glibc, e.g. macOS, or if ``SBIR_MALLOC=default``.
    """
    if not sys.platform.startswith("linux") or os.environ.get("SBIR_MALLOC") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 2**30)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def setup(seed: int = 0, threads: int = DEFAULT_THREADS, plots: bool = True) -> np.random.Generator:
    """The first cell of every chapter: seeds, threads, deterministic algorithms, plot style.

    Returns the NumPy Generator seeded with ``seed``.
    """
    set_threads(threads)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if plots:
        _plot_style()
    return seed_everything(seed)


def _plot_style() -> None:
    import matplotlib
    import pandas as pd

    if os.environ.get("MPLBACKEND", "").lower() == "agg" and _in_kernel():
        # MPLBACKEND=agg silently drops every figure from executed notebooks (TOOLCHAIN.md §5)
        matplotlib.use("module://matplotlib_inline.backend_inline")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "figure.figsize": (7, 4),
            "svg.hashsalt": "sbir",
            "image.interpolation": "nearest",
        }
    )
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_columns", 20)
    # a table's text cells whole: by default pandas cuts each at 50 characters ("...") in the HTML the book renders,
    # which cut the end off 68 cells of chapter 10's claims table and every "not testable" outcome's reason
    pd.set_option("display.max_colwidth", None)


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
