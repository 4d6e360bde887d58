"""Benchmark: load and rasterise every shoes304 sketch, cold (empty cache) and warm (from cache).

``python -m sbir_core.bench data [--root DIR] [--size 64] [--line-width 1.5] [--repeat 3]``
Targets (issue 4): <= 5 s cold, <= 1 s from cache, for 912 sketches at 64 px. Figures are
printed, never asserted. The cache is a temporary SBIR_CACHE, removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sbir_core.bench data", description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="data root (default: $SBIR_DATA)")
    parser.add_argument("--size", type=int, default=64, help="raster side in pixels")
    parser.add_argument("--line-width", type=float, default=1.5, help="line width (stroke datasets only)")
    parser.add_argument("--repeat", type=int, default=3, help="cold and warm runs each; the best is shown")
    parser.add_argument("--dataset", default="shoes304", help="registered dataset name")
    args = parser.parse_args(argv)

    from sbir_core.data import DataError, load_dataset

    old = os.environ.get("SBIR_CACHE")
    cold, warm, n = [], [], 0
    try:
        for _ in range(max(1, args.repeat)):
            tmp = tempfile.mkdtemp(prefix="sbir-bench-cache-")
            os.environ["SBIR_CACHE"] = tmp
            try:
                for times in (cold, warm):  # first pass fills the empty cache, second reads it
                    t0 = time.perf_counter()
                    data = load_dataset(args.dataset, args.root)
                    imgs = data.sketch_images(args.size, args.line_width)
                    times.append(time.perf_counter() - t0)
                    n = len(imgs)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except DataError as err:
        print(f"{args.dataset} not available: {err}")
        return 1
    finally:
        if old is None:
            os.environ.pop("SBIR_CACHE", None)
        else:
            os.environ["SBIR_CACHE"] = old
    print(
        f"{args.dataset}: load + rasterise {n} sketches at {args.size} px "
        f"(best of {len(cold)}; OS file cache warm after the first run)"
    )
    print(
        f"  cold (empty raster cache): {min(cold):.3f} s   (target <= 5 s)   all: "
        + ", ".join(f"{t:.3f}" for t in cold)
    )
    print(
        f"  warm (from raster cache):  {min(warm):.3f} s   (target <= 1 s)   all: "
        + ", ".join(f"{t:.3f}" for t in warm)
    )
    return 0
