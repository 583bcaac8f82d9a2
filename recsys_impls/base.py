"""The framework-neutral Recommender interface that the PyTorch and TensorFlow DLRMs implement.

Contract (both implementations follow it exactly, so that comparing them is fair):

* Model (Naumov et al. 2019): dense [B, num_dense] -> bottom MLP (ReLU after every layer) -> x [B, D].
  Each categorical feature f is sum-pooled from its own table ``emb.f`` [rows_f, D].
  Interaction: T = [x, e_0, ..., e_{F-1}] as [B, F+1, D]; Z = T T^T; take Z[i, j] for i > j in
  row-major order of (i, j) (i.e. ``numpy.tril_indices(F + 1, -1)``), concatenate [x, those dots].
  Top MLP: ReLU after every layer but the last, which gives one logit. Loss: mean binary
  cross-entropy with logits. Prediction: sigmoid(logit).
* Parameters, exported and imported as numpy float32 with these names and shapes:
  ``emb.{f}`` [table_sizes[f], D]; ``bottom.{k}.weight`` [out, in]; ``bottom.{k}.bias`` [out];
  ``top.{k}.weight`` [out, in]; ``top.{k}.bias`` [out]  (PyTorch's [out, in] layout).
  ``recsys_impls.init_params.initial_params`` gives the shared, seeded starting point.
* Optimizers, with PyTorch's semantics in both frameworks so one step gives the same parameters:
  ``sgd``: p -= lr * g (embedding gradients are sparse: only looked-up rows change).
  ``adagrad``: s += g*g; p -= lr * g / (sqrt(s) + 1e-10), s starting at 0; for embeddings the
  sparse gradient is coalesced (duplicate ids summed) before the update, and untouched rows keep s.
* Compression and device options arrive in the Scenario; an implementation that cannot honour one
  raises ``ScenarioUnsupported`` with the reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from recsys_impls.config import Scenario
from recsys_impls.data.batch import Batch


class Recommender(ABC):
    """One DLRM, built from a Scenario, trained and evaluated on Batches."""

    framework: str = ""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.model_config = scenario.model
        self.train_config = scenario.train

    # --- input -------------------------------------------------------------------------------
    @abstractmethod
    def stage(self, batch: Batch) -> Any:
        """Convert a Batch into framework tensors on the target device (outside timed windows)."""

    # --- training and inference ----------------------------------------------------------------
    @abstractmethod
    def train_step(self, staged: Any) -> None:
        """One optimizer step on a staged batch. May return before the device finishes."""

    @abstractmethod
    def infer(self, staged: Any) -> Any:
        """Predicted probabilities as a framework tensor (no host copy). May be asynchronous."""

    @abstractmethod
    def synchronize(self) -> None:
        """Block until all queued device work is done; call before reading a clock."""

    def to_numpy(self, output: Any) -> np.ndarray:
        """Framework output -> float32 numpy [B]."""
        return np.asarray(output, dtype=np.float32).reshape(-1)

    def predict(self, batch: Batch) -> np.ndarray:
        """Probabilities for a Batch as float32 numpy [B]."""
        return self.to_numpy(self.infer(self.stage(batch)))

    @abstractmethod
    def loss(self, staged: Any) -> float:
        """Mean binary cross-entropy on a staged batch, without updating (for logging)."""

    # --- parameters and size -------------------------------------------------------------------
    @abstractmethod
    def get_params(self) -> dict[str, np.ndarray]:
        """All trainable parameters as float32 numpy arrays, named as in the module docstring."""

    @abstractmethod
    def set_params(self, params: dict[str, np.ndarray]) -> None:
        """Load parameters (same names and shapes as ``get_params``); resets optimizer state."""

    @abstractmethod
    def storage_bytes(self) -> dict[str, int]:
        """Bytes as actually stored: {'model': all parameters, 'embedding': tables only}."""

    def describe(self) -> dict[str, Any]:
        """Implementation facts for the record (kernels used, input path, etc.)."""
        return {}
