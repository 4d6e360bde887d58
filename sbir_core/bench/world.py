"""Style-world benchmark: generation time of the ci world on one core, and reload time from cache.

``python -m sbir_core.bench world [--n-instances N] [--repeats R]`` prints the figures; it is a
measurement, not a test (the targets are <= 30 s to generate and <= 2 s to reload).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench world", description=__doc__)
    ap.add_argument("--n-instances", type=int, default=800, help="objects in the world (ci: 800)")
    ap.add_argument("--repeats", type=int, default=3, help="reloads to time (the best is reported)")
    args = ap.parse_args(argv)
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    if affinity:
        os.sched_setaffinity(0, {sorted(affinity)[0]})  # one core, as the target says
    old_cache = os.environ.get("SBIR_CACHE")
    try:
        return _run(args)
    finally:  # leave the process as it was, for callers that run the benchmark in-process
        if affinity:
            os.sched_setaffinity(0, affinity)
        if old_cache is None:
            os.environ.pop("SBIR_CACHE", None)
        else:
            os.environ["SBIR_CACHE"] = old_cache


def _run(args) -> int:
    from sbir_core.data import synthetic

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SBIR_CACHE"] = tmp  # a cold cache of our own, never the shared one
        cfg = synthetic.WorldConfig(n_instances=args.n_instances)
        t0 = time.perf_counter()
        data = synthetic.StyleWorld(cfg).generate()
        t_gen = time.perf_counter() - t0
        t0 = time.perf_counter()
        synthetic._save(data, os.path.join(tmp, f"world-{cfg.key}.npz"))
        t_save = time.perf_counter() - t0
        t_load = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            again = synthetic.load(**{"n_instances": args.n_instances})
            t_load.append(time.perf_counter() - t0)
        size = os.path.getsize(os.path.join(tmp, f"world-{cfg.key}.npz")) / 2**20
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"style world: {cfg.n_instances} instances, {len(data)} sketches, {len(data.photos)} photos "
          f"({'+'.join(cfg.media)}, {cfg.photo_size} px); cores used: {cores}")
    print(f"generate : {t_gen:7.2f} s   (target <= 30 s)")
    print(f"save npz : {t_save:7.2f} s   ({size:.1f} MiB)")
    print(f"reload   : {min(t_load):7.2f} s   (best of {args.repeats}; target <= 2 s)")
    assert len(again) == len(data)
    return 0
