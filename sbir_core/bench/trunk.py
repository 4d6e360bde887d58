"""Frozen-trunk feature extraction: ``python -m sbir_core.bench trunk [--size 64 --block 10 --n 2048]``.

Prints images/s of the frozen EfficientNet-Lite0 trunk (``models.trunk.Trunk``) on sketches and on photos
(edge maps), for the way ``Trunk.forward`` runs it without gradients on the CPU (chunks of
``INFERENCE_CHUNK`` images, channels-last) against single contiguous batches of other sizes, best of
``--repeats``, and the largest difference between their features. A measurement, not a test: run it on a
quiet machine (another process's OpenMP threads slow both by up to ten times).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from sbir_core.models.trunk import INFERENCE_CHUNK, Trunk, TrunkSpec


def rate(fn, x: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    """Best images/s of ``fn(x)`` over ``repeats`` calls, and its output."""
    best, out = 0.0, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(x)
        best = max(best, len(x) / (time.perf_counter() - t))
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench trunk", description=__doc__)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (the ci scale's: 64)")
    ap.add_argument("--block", type=int, default=10, help="last EfficientNet-Lite0 block (the ci scale's: 10)")
    ap.add_argument("--n", type=int, default=2048, help="images per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="32,256,1024", help="contiguous batch sizes to compare")
    args = ap.parse_args(argv)
    trunk = Trunk(TrunkSpec(block=args.block, pool=4))
    g = torch.Generator().manual_seed(0)
    inputs = {
        "sketches": (torch.rand(args.n, 1, args.size, args.size, generator=g) > 0.9).float(),
        "photos": torch.rand(args.n, 3, args.size, args.size, generator=g) * 2 - 1,
    }
    rows = []
    for kind, x in inputs.items():
        ref_rate, ref = rate(trunk, x, args.repeats)
        rows.append({"input": kind, "how": f"Trunk.forward ({INFERENCE_CHUNK} a chunk, channels-last)",
                     "images/s": round(ref_rate), "max |diff|": 0.0})  # fmt: skip
        for b in (int(s) for s in args.batches.split(",")):

            def whole(x, b=b):
                with torch.no_grad():
                    return torch.cat([trunk._pooled(c) for c in x.split(b)])

            r, out = rate(whole, x, args.repeats)
            diff = float((out - ref).abs().max())
            rows.append({"input": kind, "how": f"batches of {b}, contiguous", "images/s": round(r), "max |diff|": diff})
    threads = torch.get_num_threads()
    print(f"threads {threads}, {args.size} px, block {args.block}, {args.n} images, best of {args.repeats}")
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
