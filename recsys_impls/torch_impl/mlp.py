"""MLP stages of the PyTorch DLRM (bottom and top), replaceable per compression variant.

A compression variant that changes the MLPs too (e.g. int8 linear layers) calls
``register_mlp(name, builder)`` with ``builder(in_dim, widths, final_relu, compression)``; variants that
only compress embeddings register nothing here and get the plain fp32 ``MLP``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn


class MLP(nn.Sequential):
    """Linear layers with ReLU after each, optionally not after the last (the logit layer)."""

    def __init__(self, in_dim: int, widths: Sequence[int], final_relu: bool) -> None:
        layers: list[nn.Module] = []
        for k, w in enumerate(widths):
            layers.append(nn.Linear(in_dim, int(w)))
            if final_relu or k < len(widths) - 1:
                layers.append(nn.ReLU(inplace=True))  # saves one [B, w] buffer per layer
            in_dim = int(w)
        super().__init__(*layers)

    def linears(self) -> list[nn.Linear]:
        """The linear layers in order: parameter k of the exported names is the k-th of these."""
        return [m for m in self if isinstance(m, nn.Linear)]


MLPBuilder = Callable[[int, Sequence[int], bool, str], nn.Module]
_BUILDERS: dict[str, MLPBuilder] = {}


def register_mlp(name: str, builder: MLPBuilder) -> None:
    """Make ``compression=name`` (or ``name:args``) build both MLPs with ``builder``."""
    _BUILDERS[name] = builder


def build_mlp(in_dim: int, widths: Sequence[int], final_relu: bool, compression: str) -> nn.Module:
    """The MLP for a compression setting; plain fp32 unless that variant registered its own.

    Whatever is returned must expose ``linears()`` (the nn.Linear-like layers in order, each with
    ``weight`` [out, in] and ``bias`` [out]) so parameters export under the shared names.
    """
    builder = _BUILDERS.get(compression.split(":", 1)[0])
    if builder is None:
        return MLP(in_dim, widths, final_relu)
    return builder(in_dim, widths, final_relu, compression)
