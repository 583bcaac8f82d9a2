"""TensorFlow's ``__init__`` imports Keras eagerly (``keras.src.optimizers``, which pulls in scikit-learn,
SciPy and pandas) so that Keras optimizers are registered for SavedModel loading. The suite's TensorFlow
models use no Keras, and that import is about 40% of TensorFlow's start-up (~2.5 s of ~6.5 s per process
on a 2-core CI machine), paid by every worker, ps server and benchmark process.

``install()`` puts a finder first on ``sys.meta_path`` that refuses ``keras.*`` only while the
``tensorflow`` module itself is initialising; TensorFlow catches that ImportError and goes on. Afterwards
the finder is inert: ``tf.keras`` stays TensorFlow's lazy loader and ``import keras`` works as usual.
"""

from __future__ import annotations

import sys
from typing import Any


class SkipKerasDuringTensorFlowImport:
    """A meta-path finder that only ever refuses Keras submodules while ``tensorflow`` is initialising."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.startswith("keras."):
            tf = sys.modules.get("tensorflow")
            spec = getattr(tf, "__spec__", None)
            if spec is not None and getattr(spec, "_initializing", False):
                raise ImportError(f"{name}: skipped while TensorFlow initialises (the suite uses no Keras)")
        return None


def install() -> None:
    """Install the finder once, before TensorFlow is imported (no effect if it already is)."""
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, SkipKerasDuringTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, SkipKerasDuringTensorFlowImport())
