"""A benchmarking and profiling suite for the computational efficiency of large recommender models.

Importing this package must stay cheap: torch and TensorFlow are imported lazily by the registry.
"""

__version__ = "0.1.0"
