"""The whole book, cold: ``python -m sbir_core.bench book [--only CH ...] [--warm]``.

Executes every chapter of ``_toc.yml`` at the ci scale as ``book run`` does (``--jobs`` side by side, the
store training each shared model once), with an empty raster cache,
world cache and store of trained states (``--warm`` keeps the project's own), results and notebooks
written to a temporary folder, and prints each chapter's wall time against its budget
(its ``BUDGET_S`` parameter, ``sbir_core.book.budgets``) and the whole run's wall time against the book's
(15 minutes on 2 cores). It measures; it does not fail when a budget is exceeded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    import pandas as pd

    from sbir_core import book as B
    from sbir_core.repro import cores

    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench book", description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="CHAPTER", help="chapters to time (default: all)")
    ap.add_argument("--warm", action="store_true", help="keep the caches and the store (not a cold run)")
    ap.add_argument("--jobs", type=int, default=cores(), help="chapters side by side, as book run (default: cores)")
    args = ap.parse_args(argv)
    names = [c for c in B.chapters() if not args.only or c in args.only]
    saved = {k: os.environ.get(k) for k in ("SBIR_CACHE", "SBIR_STORE", "SBIR_RESULTS")}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.warm:
            os.environ["SBIR_CACHE"] = str(Path(tmp) / "cache")
            os.environ.pop("SBIR_STORE", None)
        start = time.perf_counter()
        try:
            B.run("ci", names, force=True, out=Path(tmp) / "results", jobs=max(1, args.jobs))
            total = time.perf_counter() - start
            timings = pd.read_csv(Path(tmp) / "results" / "ci" / "timings.csv").set_index("chapter")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    print()
    for name in names:
        seconds, status = timings["seconds"].get(name, float("nan")), timings["status"].get(name, "not run")
        budget = B.budgets().get(name)
        print(
            f"{name:24s} {seconds:7.1f} s   budget {budget or '-':>4} s   "
            f"{'within' if budget and seconds <= budget else 'OVER' if budget else ''}  {status}",
            flush=True,
        )
    print(
        f"{'total (wall)':24s} {total:7.1f} s   budget {B.BOOK_BUDGET:>4} s   "
        f"{'within' if total <= B.BOOK_BUDGET else 'OVER'}   ({'warm' if args.warm else 'cold'} caches, "
        f"{args.jobs} chapters side by side, SBIR_DATA={'set' if os.environ.get('SBIR_DATA') else 'unset'}, "
        f"{os.cpu_count()} cores)"
    )
    return 0
