"""CompressedTorchDLRM: the PyTorch DLRM under a compression plan.

Training runs on float32 master weights in the plan's layout (hash / QR / mixed-dim tables are trained
that way). Post-training methods (fp16/bf16/int8/int4 tables, freq-prune, MLP sparse storage, mlp-int8)
are applied by ``finalize``: the master weights go through the shared numpy ``model_state.finalize``
(so PyTorch and TensorFlow store identical arrays) and an inference network is built from those arrays:
FBGEMM row-wise quantized embedding bags, half-precision tables, the pruned MLPs (dense kernels on
the zero-filled weights; storage is sparse), or ``torch.ao.nn.quantized.dynamic.Linear`` layers with
the stored per-channel int8 weights. ``infer`` finalizes lazily after any training step.

Magnitude pruning: at 75% of the configured training steps the MLP weights are masked at exactly the
requested sparsity; the remaining steps are the masked fine-tune (weights re-masked after every step).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from recsys_impls.compression import model_state as ms
from recsys_impls.compression.spec import parse_compression
from recsys_impls.config import Scenario
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.init_params import check_params
from recsys_impls.torch_impl.compress_embeddings import CompressedEmbeddings
from recsys_impls.torch_impl.embeddings import EmbeddingBags
from recsys_impls.torch_impl.model import DLRMNet, StagedBatch, TorchDLRM, build_dense_arch

PRUNE_AT = 0.75  # fraction of the training steps after which the MLPs are pruned


def _int8_linear(weight_q: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> nn.Module:
    """A dynamic-quantized Linear holding exactly the stored per-channel int8 weights."""
    import torch.ao.nn.quantized.dynamic as nnqd

    out_dim, in_dim = weight_q.shape
    s = torch.from_numpy(np.where(scale > 0, scale, 1.0).astype(np.float64))
    w = torch.from_numpy(weight_q.astype(np.float32)) * s.float()[:, None]
    with warnings.catch_warnings():  # torch 2.13 marks quantized-tensor constructors deprecated
        warnings.simplefilter("ignore")
        lin = nnqd.Linear(in_dim, out_dim, dtype=torch.qint8)
        qw = torch.quantize_per_channel(w, s, torch.zeros(out_dim, dtype=torch.long), 0, torch.qint8)
        lin.set_weight_bias(qw, torch.from_numpy(bias.astype(np.float32)))
    return lin


def _inference_mlp(stored: dict[str, np.ndarray], prefix: str, widths: tuple[int, ...], in_dim: int,
                   final_relu: bool) -> nn.Module:
    layers: list[nn.Module] = []
    for k, w in enumerate(widths):
        name = f"{prefix}.{k}"
        bias = stored[f"{name}.bias"]
        if f"{name}.weight@int8" in stored:
            layers.append(_int8_linear(stored[f"{name}.weight@int8"], stored[f"{name}.weight@scale"], bias))
        else:
            lin = nn.Linear(in_dim, w)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(ms.mlp_weight(stored, f"{name}.weight")))
                lin.bias.copy_(torch.from_numpy(bias))
            layers.append(lin)
        if final_relu or k < len(widths) - 1:
            layers.append(nn.ReLU())
        in_dim = w
    return nn.Sequential(*layers)


class CompressedTorchDLRM(TorchDLRM):
    """TorchDLRM whose embeddings and MLPs follow ``scenario.compression``.

    A layer over whichever TorchDLRM comes next in the class's order: ``base_kwargs`` go to it, so the
    data-parallel model (distributed_ddp.DDPCompressedTorchDLRM) is this class over DDPTorchDLRM and
    each rank builds exactly the model one process builds."""

    def __init__(self, scenario: Scenario, **base_kwargs: Any) -> None:
        self.plan = parse_compression(scenario.compression)
        if scenario.device.compile == "cuda-graphs":
            raise ScenarioUnsupported("compression with cuda-graphs: the compressed inference net is not captured")
        if scenario.device.device.startswith("cuda"):
            op = "quantized::embedding_bag_byte_rowwise_offsets" if self.plan.precision == "int8" else \
                "quantized::embedding_bag_4bit_rowwise_offsets"
            has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")
            if self.plan.precision in ("int8", "int4") and not has_cuda:
                raise ScenarioUnsupported(f"compression {self.plan.precision} on {scenario.device.device}: "
                                          f"this PyTorch build has no CUDA kernel for {op}")
            if self.plan.mlp_int8:
                raise ScenarioUnsupported(f"compression mlp-int8 on {scenario.device.device}: PyTorch's dynamic "
                                          "int8 Linear runs on CPU only")
        cfg = scenario.model
        self._init = ms.initial_params(cfg, self.plan, scenario.train.seed)
        self._steps = 0
        self._masks: dict[str, torch.Tensor] | None = None
        self._stored: dict[str, np.ndarray] | None = None
        self._infer_net: DLRMNet | None = None
        # The base class builds the net around this plan's embedding stage (_make_embeddings) and loads
        # _initial_params: no plain table is allocated first.
        super().__init__(replace(scenario, compression="none"), **base_kwargs)
        self.scenario = replace(self.scenario, compression=scenario.compression)
        self._counts = torch.zeros(sum(cfg.table_sizes), dtype=torch.int64, device=self.device)

    def _make_embeddings(self) -> EmbeddingBags:
        return CompressedEmbeddings(self.model_config, self.plan, self._init)

    def _initial_params(self) -> dict[str, np.ndarray]:
        return self._init

    # --- training -------------------------------------------------------------------------------
    def train_step(self, staged: StagedBatch) -> None:
        if self.net.embeddings.layout.needs_id_counts:
            rows = self.net.embeddings.global_rows(staged.sparse)
            self._counts += torch.bincount(rows, minlength=self._counts.numel())
        super().train_step(staged)
        self._steps += 1
        self._stored = None
        if self.plan.prune_sparsity > 0:
            if self._masks is None and self._steps >= max(1, int(PRUNE_AT * self.train_config.steps)):
                self._masks = {name: torch.from_numpy(m).to(self.device) for name, m in
                               ms.prune_masks(self._mlp_params(), self.plan.prune_sparsity).items()}
            if self._masks is not None:
                with torch.no_grad():
                    for name, t in self.net.dense_arch.neutral_params().items():
                        if name in self._masks:
                            t.mul_(self._masks[name])

    def _mlp_params(self) -> dict[str, np.ndarray]:
        return self._dense_params()

    # --- post-training compression ----------------------------------------------------------------
    def id_counts(self) -> dict[int, np.ndarray]:
        """Per-feature id counts seen in training (freq-prune's statistics)."""
        return self._split_counts(self._counts)

    def _split_counts(self, counts: torch.Tensor) -> dict[int, np.ndarray]:
        c = counts.cpu().numpy()
        base = np.concatenate([[0], np.cumsum(self.model_config.table_sizes)])
        return {f: c[base[f] : base[f + 1]] for f in range(self.model_config.num_tables)}

    def set_id_counts(self, counts: dict[int, np.ndarray]) -> None:
        self._counts = torch.from_numpy(np.concatenate(
            [np.asarray(counts[f], np.int64) for f in range(self.model_config.num_tables)])).to(self.device)
        self._stored = None

    def finalize(self) -> dict[str, np.ndarray]:
        """Apply the post-training compression; returns the stored arrays."""
        if self._stored is None:
            self.load_stored(ms.finalize(self.model_config, self.plan, self.get_params(), self.id_counts()))
        assert self._stored is not None
        return self._stored

    def load_stored(self, stored: dict[str, np.ndarray]) -> None:
        """Build the inference network from stored arrays (e.g. read back from a checkpoint)."""
        cfg = self.model_config
        emb = CompressedEmbeddings(cfg, self.plan, {}, stored=stored)
        # The model's own dense architecture with the stored weights (pruned: zero-filled; int8: dequantized,
        # then the MLPs swapped for int8 layers holding exactly the stored values).
        arch = build_dense_arch(cfg)
        with torch.no_grad():
            for name, t in arch.neutral_params().items():
                t.copy_(torch.from_numpy(np.ascontiguousarray(ms.mlp_weight(stored, name), np.float32)))
        if self.plan.mlp_int8:
            arch.bottom = _inference_mlp(stored, "bottom", cfg.bottom_mlp, cfg.num_dense, True)
            arch.top = _inference_mlp(stored, "top", cfg.top_mlp, cfg.interaction_dim, False)
        net = DLRMNet(emb, arch).to(self.device)
        self._infer_net = net.eval()
        self._stored = stored

    def stored_arrays(self) -> dict[str, np.ndarray]:
        return self.finalize()

    def infer(self, staged: StagedBatch) -> torch.Tensor:
        self.finalize()
        assert self._infer_net is not None
        with torch.no_grad():
            return torch.sigmoid(self._infer_net(staged.dense, staged.sparse))

    def loss(self, staged: StagedBatch) -> float:
        p = self.infer(staged).clamp(1e-7, 1 - 1e-7)
        return float(torch.nn.functional.binary_cross_entropy(p, staged.labels))

    # --- parameters -------------------------------------------------------------------------------
    def get_params(self) -> dict[str, np.ndarray]:
        """The float32 master weights in the plan's training form (see model_state.param_shapes)."""
        return {**self.net.embeddings.export_named(), **self._dense_params()}

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        expected = ms.param_shapes(self.model_config, self.plan)
        check_params(params, expected)
        self.net.embeddings.load_named(params)
        self._load_dense(params)
        self._make_optimizers()
        self._stored = None

    def storage_bytes(self) -> dict[str, int]:
        """Serialized .npz bytes of the stored (compressed) arrays."""
        return ms.split_bytes(self.finalize())

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        self.finalize()
        assert self._infer_net is not None
        out.update(self._infer_net.embeddings.describe())
        out.update({
            "compression": self.plan.spec,
            "storage_format": "uncompressed .npz of the stored arrays (recsys_impls.compression.model_state)",
            "mlp_inference": "torch.ao dynamic int8 Linear (per-channel weights)" if self.plan.mlp_int8
            else "fp32 Linear" + (" on zero-filled pruned weights" if self.plan.prune_sparsity else ""),
            "prune_schedule": f"masked at step {max(1, int(PRUNE_AT * self.train_config.steps))} of "
            f"{self.train_config.steps}, then masked fine-tune" if self.plan.prune_sparsity else None,
        })
        return out
