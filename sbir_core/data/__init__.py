"""Datasets: the embedded style world and loaders for real sketch data, one sample model for all."""

from sbir_core.data.base import DataError, SBIRData, data_root
from sbir_core.data.registry import LOADERS, available, check_layout, load_dataset

__all__ = ["DataError", "LOADERS", "SBIRData", "available", "check_layout", "data_root", "load_dataset"]
