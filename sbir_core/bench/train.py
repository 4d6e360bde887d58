"""Training throughput: ``python -m sbir_core.bench train [--size 64 --batch 32 ...]``.

Measures, in one run and with the same thread count:
1. the machine's fp32 matrix-multiply rate (square ``torch.mm``, best of several repeats), GFLOP/s;
2. for a few encoder / data-path settings, the full Triplet-SN training step as the trainer runs
   it (triplet sampling from cached tensors, shared flip, forward, backward, Adam step): images/s
   and achieved GFLOP/s = ``flops_per_image(training=True)`` x images/s, and that as a fraction of (1).

FLOPs count only convolutions and linear layers (``models.encoders.layer_macs``); the target of
issue 5 is >= 50 % of the matmul rate at the ``ci`` setting (the first row: the encoder and input
size of ``book/04_triplet_baseline.py`` at the ci scale).

With ``--processes 1,2``: the same step data-parallel (``sbir_core.distributed``, torchrun, gloo), the
global batch sharded over P processes that share the cores: images/s, and efficiency against P times
one process with the same threads each.

On a shared 2-core machine any other process running OpenMP threads at the same time slows both
by up to ten times (threads spin at barriers); run it on a quiet machine and read the matmul
figure printed beside the rates: both are measured in the same run, before and after.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from sbir_core.data.views import RetrievalView
from sbir_core.models.encoders import CNNConfig, SmallCNN, flops_per_image
from sbir_core.models.triplet import TripletSN
from sbir_core.repro import set_threads
from sbir_core.samplers import triplets


def matmul_gflops(n: int = 2048, repeats: int = 5, rounds: int = 3) -> float:
    """Best fp32 ``a @ b`` rate over ``rounds`` of ``repeats`` products of (n, n) matrices, GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - t))
    return best / 1e9


def _view(n: int, size: int, channels_last: bool) -> RetrievalView:
    g = torch.Generator().manual_seed(0)
    q = (torch.rand(n, 1, size, size, generator=g) > 0.9).float()
    p = torch.rand(n // 2, 3, size, size, generator=g) * 2 - 1
    if channels_last:
        q, p = q.contiguous(memory_format=torch.channels_last), p.contiguous(memory_format=torch.channels_last)
    tab = pd.DataFrame({"i": range(n)})
    return RetrievalView("bench", q, p, torch.arange(n) // 2, tab, pd.DataFrame({"i": range(n // 2)}))


def train_step_rate(
    config: CNNConfig, size: int, batch: int, steps: int = 20, warmup: int = 3, channels_last: bool = True
) -> dict:
    """Time ``steps`` full triplet training steps; images/s counts sketch + positive + negative."""
    torch.manual_seed(0)
    enc = SmallCNN(config)
    if channels_last:
        enc = enc.to(memory_format=torch.channels_last)
    model = TripletSN(enc)
    view = _view(max(4 * batch, 256), size, channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    best = float("inf")
    for rnd in range(2):  # best of two timed rounds: the machine is shared
        for i in range(steps + (warmup if rnd == 0 else 0)):
            if rnd == 0 and i == warmup or rnd == 1 and i == 0:
                t = time.perf_counter()
            loss = model.training_loss(triplets(view, batch, gen))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        best = min(best, (time.perf_counter() - t) / steps)
    images = 3 * batch / best
    flops = flops_per_image(enc, size, training=True)
    return {"images_per_s": images, "gflops": flops * images / 1e9, "train_mflop_per_image": flops / 1e6}


def ddp_worker(size: int, batch: int, config: CNNConfig, steps: int, threads: int, warmup: int = 3) -> dict | None:
    """One process of a data-parallel run (under ``torchrun``, or alone): the trainer's step on its shard
    of the global ``batch``, gradients averaged; rank 0 returns the global images/s."""
    from sbir_core import distributed as D

    ctx = D.init_from_env()
    set_threads(threads)
    torch.manual_seed(0)
    model = TripletSN(SmallCNN(config).to(memory_format=torch.channels_last))
    view = _view(max(4 * batch, 256), size, True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)  # the same on every rank: the same global batches
    for i in range(warmup + steps):
        if i == warmup:
            D.barrier()
            t = time.perf_counter()
        part = triplets(view, batch, gen)
        if ctx.active:
            part = D.shard(part, ctx.rank, ctx.world)
        model.train_step(part, [opt])
    D.barrier()
    seconds = (time.perf_counter() - t) / steps
    D.shutdown()
    if not ctx.main:
        return None
    return {"processes": ctx.world, "threads": threads, "images_per_s": 3 * batch / seconds}


def scaling(processes: list[int], size: int, batch: int, config: CNNConfig, steps: int, cores: int) -> pd.DataFrame:
    """Images/s of the same global batch with 1 process on every core, and with P processes (torchrun)
    sharing the cores; efficiency against 1 process with the same threads per process."""
    import json
    import subprocess
    import sys

    def run(p: int, threads: int) -> dict:
        cmd = [
            sys.executable,
            "-m",
            "sbir_core.bench",
            "train",
            "--ddp-worker",
            "--size",
            str(size),
            "--batch",
            str(batch),
            "--width",
            str(config.width),
            "--depth",
            str(config.depth),
            "--embed-dim",
            str(config.embed_dim),
            "--steps",
            str(steps),
            "--threads",
            str(threads),
        ]
        if p > 1:
            cmd[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={p}", "-m", "sbir_core.bench"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        if out.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows = []
    for p in processes:
        threads = max(1, cores // p)
        r = run(p, threads)
        one = run(1, threads) if p > 1 else r  # one process with the threads each of the P processes has
        rows.append(
            {
                "processes": p,
                "threads each": threads,
                "images/s": r["images_per_s"],
                "1 process, same threads": one["images_per_s"],
                "efficiency": r["images_per_s"] / (p * one["images_per_s"]),
            }
        )
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench train", description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=48, help="input size in px (ci: 48)")
    ap.add_argument("--batch", type=int, default=32, help="anchors per step (ci: 32; 3x images)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="only the ci setting")
    ap.add_argument(
        "--processes",
        default=None,
        help="e.g. 1,2: data-parallel scaling with torchrun (gloo) instead of the settings table",
    )
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    base = dict(width=args.width, depth=args.depth, embed_dim=args.embed_dim)
    if args.ddp_worker:
        r = ddp_worker(args.size, args.batch, CNNConfig(**base, double_conv=False), args.steps, args.threads)
        if r is not None:
            import json

            print(json.dumps(r), flush=True)
        return 0
    if args.processes:
        procs = [int(p) for p in args.processes.split(",")]
        table = scaling(procs, args.size, args.batch, CNNConfig(**base, double_conv=False), args.steps, args.threads)
        print(
            f"data-parallel scaling, ci Triplet-SN step, global batch {args.batch}, {args.size} px, "
            f"{args.threads} cores, gloo:"
        )
        print(table.round(3).to_string(index=False))
        return 0
    set_threads(args.threads)

    mm = matmul_gflops()
    print(f"fp32 matmul (2048^2, {torch.get_num_threads()} threads): {mm:.1f} GFLOP/s")
    settings = [("ci (single conv)", CNNConfig(**base, double_conv=False), args.batch, True)]
    if not args.quick:
        settings += [
            ("ci, NCHW memory", CNNConfig(**base, double_conv=False), args.batch, False),
            ("ci, batch 8", CNNConfig(**base, double_conv=False), 8, True),
            ("ci, batch 128", CNNConfig(**base, double_conv=False), 128, True),
            ("double conv per block", CNNConfig(**base, double_conv=True), args.batch, True),
            ("ci, 2x width", CNNConfig(**dict(base, width=2 * args.width), double_conv=False), args.batch, True),
        ]
    rows = []
    for name, cfg, batch, cl in settings:
        r = train_step_rate(cfg, args.size, batch, args.steps, channels_last=cl)
        rows.append(dict(setting=name, size=args.size, batch=batch, **r, fraction_of_matmul=r["gflops"] / mm))
        print(
            f"{name:24s} batch {batch:4d}: {r['images_per_s']:8.0f} images/s, "
            f"{r['gflops']:7.1f} GFLOP/s = {r['gflops'] / mm:6.1%} of matmul "
            f"({r['train_mflop_per_image']:.1f} MFLOP per image per training step)",
            flush=True,
        )
    mm_after = matmul_gflops()
    if mm_after > mm:  # the machine is shared: keep the better of the two measurements of the same kernel
        print(f"fp32 matmul measured again after the runs: {mm_after:.1f} GFLOP/s (used for the fractions below)")
        mm = mm_after
        for r in rows:
            r["fraction_of_matmul"] = r["gflops"] / mm
    print(pd.DataFrame(rows).round(3).to_string(index=False))
    ci = rows[0]
    verdict = "meets" if ci["fraction_of_matmul"] >= 0.5 else "misses"
    print(f"ci setting {verdict} the 50% target: {ci['fraction_of_matmul']:.1%} of {mm:.0f} GFLOP/s")
    return 0
