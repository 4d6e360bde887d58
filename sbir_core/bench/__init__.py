"""Benchmarks that print figures (never timed tests): ``python -m sbir_core.bench NAME``."""
