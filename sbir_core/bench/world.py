"""Style-world benchmark: generation time of the ci world on one core, a gap variant, and reload time.

``python -m sbir_core.bench world [--n-instances N] [--repeats R]`` prints the figures; it is a
measurement, not a test (the targets are <= 30 s to generate cold and <= 2 s to reload).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench world", description=__doc__)
    ap.add_argument("--n-instances", type=int, default=None, help="objects in the world (default: the ci world's)")
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

    options = {} if args.n_instances is None else {"n_instances": args.n_instances}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SBIR_CACHE"] = tmp  # a cold cache of our own, never the shared one
        cfg = synthetic.WorldConfig(**options)
        t0 = time.perf_counter()
        data = synthetic.load(**options)
        t_gen = time.perf_counter() - t0
        t0 = time.perf_counter()
        synthetic.load(**options, style_gap=cfg.style_gap + 1)
        t_gap = time.perf_counter() - t0
        t_load = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            again = synthetic.load(**options)
            t_load.append(time.perf_counter() - t0)
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)) / 2**20
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    sk = data.sketches
    print(
        f"style world: {cfg.n_instances} instances in families of {cfg.family_size}, {len(data)} sketches "
        f"({int((sk['drawer_split'] == 'seen').sum())} seen drawers', {int(sk['adaptation'].sum())} adaptation, "
        f"{int(((sk['drawer_split'] == 'unseen') & (sk['split'] == 'test')).sum())} unseen test), "
        f"{len(data.photos)} photos ({'+'.join(cfg.media)}, {cfg.photo_size} px); cores used: {cores}"
    )
    print(f"generate cold          : {t_gen:7.2f} s   (target <= 30 s), with saving both cache files")
    print(f"another style_gap      : {t_gap:7.2f} s   (photos and seen drawers from cache, unseen redrawn)")
    print(
        f"reload                 : {min(t_load):7.2f} s   (best of {args.repeats}; target <= 2 s; cache {size:.1f} MiB)"
    )
    assert len(again) == len(data)
    return 0
