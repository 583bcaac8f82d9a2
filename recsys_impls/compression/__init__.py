"""Compression scenarios: framework-neutral spec parsing, numpy oracles and data codecs.

Framework variants live in ``recsys_impls/torch_impl/compress_*.py`` and ``tf_impl/compress_*.py``.
Nothing here imports torch or TensorFlow.
"""

from recsys_impls.compression.spec import CompressionPlan, describe_methods, parse_compression

__all__ = ["CompressionPlan", "describe_methods", "parse_compression"]
