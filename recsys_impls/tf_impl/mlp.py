"""The bottom and top MLPs as plain variables; kernels are stored [in, out] (TensorFlow's layout)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from recsys_impls.errors import ScenarioUnsupported


class MLP(tf.Module):
    """Linear layers with ReLU after each one, except (optionally) the last.

    Parameters are imported and exported in PyTorch's ``{prefix}.{k}.weight`` [out, in] layout and
    transposed to and from the ``[in, out]`` kernels used here, so ``x @ kernel`` needs no transpose.
    """

    def __init__(self, prefix: str, params: dict[str, np.ndarray], relu_last: bool) -> None:
        super().__init__(name=f"{prefix}_mlp")
        self.prefix = prefix
        self.relu_last = relu_last
        self.kernels: list[tf.Variable] = []
        self.biases: list[tf.Variable] = []
        k = 0
        while f"{prefix}.{k}.weight" in params:
            self.kernels.append(tf.Variable(np.asarray(params[f"{prefix}.{k}.weight"], np.float32).T,
                                            name=f"{prefix}_{k}_kernel"))
            self.biases.append(tf.Variable(np.asarray(params[f"{prefix}.{k}.bias"], np.float32),
                                           name=f"{prefix}_{k}_bias"))
            k += 1

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Runs in ``x.dtype``: fp32 variables are cast for mixed precision (gradients stay fp32)."""
        last = len(self.kernels) - 1
        for k, (w, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
            # BiasAdd, not a broadcasting +: its gradient is one BiasAddGrad instead of a shape
            # comparison and a generic Sum, and grappler still fuses MatMul + BiasAdd + Relu.
            x = tf.nn.bias_add(tf.matmul(x, tf.cast(w, x.dtype)), tf.cast(b, x.dtype))
            if k < last or self.relu_last:
                x = tf.nn.relu(x)
        return x

    def get_params(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for k, (w, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
            out[f"{self.prefix}.{k}.weight"] = np.ascontiguousarray(w.numpy().T)
            out[f"{self.prefix}.{k}.bias"] = b.numpy()
        return out

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        for k, (w, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
            w.assign(np.asarray(params[f"{self.prefix}.{k}.weight"], np.float32).T)
            b.assign(np.asarray(params[f"{self.prefix}.{k}.bias"], np.float32))


MLPFactory = Callable[[str, dict[str, np.ndarray], bool, str], MLP]
_FACTORIES: dict[str, MLPFactory] = {"none": lambda prefix, params, relu_last, _arg: MLP(prefix, params, relu_last)}


def register_mlp(name: str, factory: MLPFactory) -> None:
    """Make an MLP variant selectable by name (``factory(prefix, params, relu_last, argument)``)."""
    _FACTORIES[name] = factory


def make_mlp(prefix: str, params: dict[str, np.ndarray], relu_last: bool, variant: str = "none") -> MLP:
    name, _, argument = variant.partition(":")
    if name not in _FACTORIES:
        raise ScenarioUnsupported(f"MLP variant {variant!r}: not implemented for TensorFlow "
                                  f"(available: {', '.join(sorted(_FACTORIES))})")
    return _FACTORIES[name](prefix, params, relu_last, argument)
