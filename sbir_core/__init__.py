"""sbir_core: data, models, training and metrics for the reproducible book on style in SBIR."""

import os

from sbir_core.repro import seed_everything, setup

__all__ = ["seed_everything", "setup"]
__version__ = "0.1.0"


def _absolute_path_variables() -> None:
    """Relative ``SBIR_*`` folders made absolute once, by the first process that imports the package: the
    chapters' kernels run in ``book/`` and the playground's in its own folder, and each inherits them; read
    there, ``SBIR_DATA=../data`` named another folder (the chapter found no data while its stamp recorded it)."""
    for var in ("SBIR_DATA", "SBIR_CACHE", "SBIR_STORE", "SBIR_RESULTS"):
        value = os.environ.get(var)
        if value and not os.path.isabs(value):
            os.environ[var] = os.path.abspath(value)


_absolute_path_variables()
