"""The whole book, cold: ``python -m sbir_core.bench book [--only CH ...] [--warm]``.

Executes every chapter of ``_toc.yml`` at the ci scale in book order, with an empty raster cache,
world cache and store of trained states (``--warm`` keeps the project's own), results and notebooks
written to a temporary folder, and prints each chapter's wall time against its budget
(its ``BUDGET_S`` parameter, ``sbir_core.book.budgets``) and the total against the book's (15 minutes on
2 cores). It measures; it does not fail when a budget is exceeded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    from sbir_core import book as B

    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench book", description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="CHAPTER", help="chapters to time (default: all)")
    ap.add_argument("--warm", action="store_true", help="keep the caches and the store (not a cold run)")
    args = ap.parse_args(argv)
    names = [c for c in B.chapters() if not args.only or c in args.only]
    saved = {k: os.environ.get(k) for k in ("SBIR_CACHE", "SBIR_STORE", "SBIR_RESULTS")}
    rows, total = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        if not args.warm:
            os.environ["SBIR_CACHE"] = str(Path(tmp) / "cache")
            os.environ.pop("SBIR_STORE", None)
        os.environ["SBIR_RESULTS"] = str(Path(tmp) / "results")
        try:
            for name in names:
                start = time.perf_counter()
                status = "ok"
                try:
                    B.execute(name, "ci", output=Path(tmp) / f"{name}.ipynb")
                except Exception as err:  # noqa: BLE001 - report and go on: this is a measurement
                    status = f"failed: {str(err)[:120]}"
                seconds = time.perf_counter() - start
                total += seconds
                budget = B.budgets().get(name)
                rows.append((name, seconds, budget, status))
                print(
                    f"{name:24s} {seconds:7.1f} s   budget {budget or '-':>4} s   "
                    f"{'within' if budget and seconds <= budget else 'OVER' if budget else ''}  {status}",
                    flush=True,
                )
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    print(
        f"{'total':24s} {total:7.1f} s   budget {B.BOOK_BUDGET:>4} s   "
        f"{'within' if total <= B.BOOK_BUDGET else 'OVER'}   ({'warm' if args.warm else 'cold'} caches, "
        f"SBIR_DATA={'set' if os.environ.get('SBIR_DATA') else 'unset'}, {os.cpu_count()} cores)"
    )
    return 0
