"""Datasets from the command line: ``python -m sbir_core.data fetch NAME --to DIR`` and ``fetch --list``;
``python -m sbir_core.data fixtures --to DIR [--bare]`` writes the tiny made-up data root of every layout.

``--to`` defaults to ``$SBIR_DATA``, the folder the loaders read. See ``sbir_core.data.fetch`` for
what a fetch checks (pinned or recorded sha256, resume, safe unpacking, no write into an existing folder).
"""

from __future__ import annotations

import argparse
import os
import sys

from sbir_core.data.base import DataError
from sbir_core.data.fetch import DATASETS, fetch, listing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sbir_core.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch", help="download a public dataset into the layout its loader expects")
    p.add_argument("name", nargs="?", choices=list(DATASETS), metavar="NAME", help=", ".join(DATASETS))
    p.add_argument("--list", action="store_true", help="show each set: size, licence, digest kind, chapters")
    p.add_argument(
        "--to", default=os.environ.get("SBIR_DATA"), metavar="DIR", help="the data root (default: $SBIR_DATA)"
    )
    p.add_argument("--classes", default=None, help="quickdraw only: comma-separated classes (default: the PACS ones)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a download stops (60)")
    p.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after unpacking")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    f = sub.add_parser("fixtures", help="write a tiny made-up data root in every dataset's official layout")
    f.add_argument("--to", required=True, metavar="DIR", help="an empty or new folder")
    f.add_argument("--bare", action="store_true", help="the releases without their optional parts (photos, extended)")
    args = parser.parse_args(argv)
    if args.command == "fixtures":
        from sbir_core.data.fixtures import write_root

        try:
            root = write_root(args.to, bare=args.bare)
        except FileExistsError as err:
            parser.error(str(err))
        print(
            f"[fixtures] wrote {root}; the book on it: SBIR_DATA={root} python -m sbir_core.book run --smoke --out DIR"
        )
        return 0
    if args.list:
        print(listing())
        return 0
    if args.name is None:
        parser.error("fetch needs a dataset NAME (or --list)")
    if not args.to:
        parser.error("where to? give --to DIR or set SBIR_DATA")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        fetch(args.name, args.to, classes, args.timeout, not args.quiet, args.keep_archives)
    except DataError as err:
        print(f"[fetch] {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[fetch] interrupted; run the same command again to resume the download", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
