"""Run one benchmark by name: ``python -m sbir_core.bench {world,data,train,book,query,trunk,gpu,page} [options]``."""

import importlib
import sys

BENCHES = {
    "world": "sbir_core.bench.world",
    "data": "sbir_core.bench.data",
    "train": "sbir_core.bench.train",
    "book": "sbir_core.bench.book",
    "query": "sbir_core.bench.query",
    "trunk": "sbir_core.bench.trunk",
    "gpu": "sbir_core.bench.gpu",
    "page": "sbir_core.bench.page",
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BENCHES:
        print(f"usage: python -m sbir_core.bench {{{','.join(BENCHES)}}} [options]", file=sys.stderr)
        return 2
    return importlib.import_module(BENCHES[argv[0]]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
