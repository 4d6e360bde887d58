"""sbir_core: data, models, training and metrics for the reproducible book on style in SBIR."""

from sbir_core.repro import seed_everything, setup

__all__ = ["seed_everything", "setup"]
__version__ = "0.1.0"
