"""The playground's latency as a user feels it: ``python -m sbir_core.bench page [--loads 3 --category shoe]``.

Serves the app (voila) and drives it in headless Chromium (``sbir_core.browser.record``): each of ``--loads``
page loads opens the app on another world sketch of the category (a fresh kernel each time), and draws that
sketch stroke by stroke with real mouse events. Prints p50 / p95 of the two waits a user meets: from asking for
the page to a pad that takes strokes, and from a stroke's release to the page showing its results. Needs the
method trained (its chapter run, or the playground's "train it here"). A measurement, not a test: run it on a
quiet machine; chapter 9 shows the same figures from the browser tests' recording.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def summary(records: list[dict]) -> dict:
    """p50 / p95 of page open (s) and of stroke end to results shown (ms) over ``record`` results."""
    opens = np.array([r["open_s"] for r in records])
    answers = np.array([f["answer_ms"] for r in records for f in r["frames"]])
    return {
        "loads": len(opens),
        "open_p50_s": float(np.percentile(opens, 50)),
        "open_p95_s": float(np.percentile(opens, 95)),
        "strokes": len(answers),
        "answer_p50_ms": float(np.percentile(answers, 50)),
        "answer_p95_ms": float(np.percentile(answers, 95)),
    }


def main(argv=None) -> int:
    from sbir_core import browser as BR

    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench page", description=__doc__)
    ap.add_argument("--loads", type=int, default=3, help="page loads, each drawing another world sketch")
    ap.add_argument("--method", default="04_triplet_baseline", help="the chapter whose trained model answers")
    ap.add_argument("--category", default="shoe")
    args = ap.parse_args(argv)
    if args.loads < 1:
        ap.error("--loads must be at least 1")
    records = []
    with tempfile.TemporaryDirectory() as tmp, BR.serve() as url, BR.browser_page() as page:
        for i in range(args.loads):
            rec = BR.record(Path(tmp) / str(i), url, args.method, args.category, target=i, page=page)
            records.append(rec)
            times = ", ".join(f"{f['answer_ms']:.0f}" for f in rec["frames"])
            print(f"load {i + 1}: page usable after {rec['open_s']:.1f} s; stroke end to results (ms): {times}")
    s = summary(records)
    print(
        f"page open to a usable pad: p50 {s['open_p50_s']:.1f} s, p95 {s['open_p95_s']:.1f} s over {s['loads']} loads\n"
        f"stroke end to results shown: p50 {s['answer_p50_ms']:.0f} ms, p95 {s['answer_p95_ms']:.0f} ms "
        f"over {s['strokes']} strokes"
    )
    return 0
