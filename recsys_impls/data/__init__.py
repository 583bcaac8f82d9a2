"""Data sources: built-in synthetic Criteo-like data, Criteo TSV files, MovieLens-100k."""

from recsys_impls.data.batch import Batch

__all__ = ["Batch"]
