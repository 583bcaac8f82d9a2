"""The PyTorch ranking models behind the framework-neutral Recommender interface (contract: base.py).

``DLRMNet`` is the nn.Module: an embedding stage (the scenario's, see embeddings.py) -> pooled [B, F, D],
and a ``DenseArch`` (bottom MLP, the model's interaction, top MLP; built by the model spec's PyTorch
builder: dlrm.py, dcnv2.py) that torch.compile can take whole. ``TorchDLRM``
adds staging, the optimizers (sparse ones for embedding tables, fused/foreach ones for the MLPs), the
precision / compile / CUDA-graph settings, parameter export and the serialized size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys_impls.base import Recommender
from recsys_impls.config import ModelConfig, Scenario
from recsys_impls.data.batch import Batch
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.init_params import check_params, initial_params, param_shapes
from recsys_impls.torch_impl.embeddings import EmbeddingBags, build_embeddings, to_device
from recsys_impls.torch_impl.mlp import build_mlp
from recsys_impls.torch_impl.optim import backward_and_step, make_optimizers
from recsys_impls.torch_impl.settings import TorchSettings, resolve


@dataclass
class StagedBatch:
    """A Batch already on the device: what train_step / infer / loss consume."""

    dense: torch.Tensor  # float32 [B, num_dense]
    sparse: Any  # the embedding module's staged ids
    labels: torch.Tensor  # float32 [B]
    batch_size: int


class DenseArch(nn.Module):
    """Everything after the lookups: bottom MLP, the model's interaction, top MLP -> logits [B].

    Every ranking model's dense architecture is one of these; the model's builder (its ModelSpec's
    ``builders["torch"]``) picks the interaction. An interaction with parameters of its own exposes
    them as ``neutral_params()`` under the spec's names.
    """

    def __init__(self, bottom: nn.Module, interaction: nn.Module, top: nn.Module) -> None:
        super().__init__()
        self.bottom = bottom
        self.interaction = interaction
        self.top = top

    def forward(self, dense: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        x = self.bottom(dense)
        return self.top(self.interaction(x, pooled)).squeeze(1)

    def neutral_params(self) -> dict[str, torch.Tensor]:
        """name -> parameter tensor, in the spec's names and PyTorch's [out, in] layout."""
        out: dict[str, torch.Tensor] = {}
        for prefix, mlp in (("bottom", self.bottom), ("top", self.top)):
            for k, lin in enumerate(mlp.linears()):
                out[f"{prefix}.{k}.weight"] = lin.weight
                out[f"{prefix}.{k}.bias"] = lin.bias
        extra = getattr(self.interaction, "neutral_params", None)
        if extra is not None:
            out.update(extra())
        return out


def ranking_arch(config: ModelConfig, interaction: nn.Module, compression: str = "none") -> DenseArch:
    """Bottom MLP, ``interaction``, top MLP over the spec's ``top_in_dim`` (builders call this)."""
    bottom = build_mlp(config.num_dense, config.bottom_mlp, True, compression)
    top = build_mlp(config.interaction_dim, config.top_mlp, False, compression)
    return DenseArch(bottom, interaction, top)


class DLRMNet(nn.Module):
    """A ranking model: an embedding stage (the scenario's) and a dense architecture (the model's)."""

    def __init__(self, embeddings: EmbeddingBags, dense_arch: DenseArch) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.dense_arch = dense_arch

    def forward(self, dense: torch.Tensor, sparse: Any) -> torch.Tensor:
        return self.dense_arch(dense, self.embeddings(sparse))


def build_dense_arch(config: ModelConfig, compression: str = "none") -> DenseArch:
    """The model's dense architecture, from its spec's PyTorch builder."""
    return config.spec.builder("torch")(config, compression)


def build_net(scenario: Scenario, embeddings: EmbeddingBags | None = None) -> DLRMNet:
    """Build the module tree for a scenario (parameters uninitialised; TorchDLRM loads them)."""
    cfg = scenario.model
    if embeddings is None:
        embeddings = build_embeddings(cfg, scenario.compression)
    return DLRMNet(embeddings, build_dense_arch(cfg, scenario.compression))


class _ByteCounter(io.RawIOBase):
    """A write-only sink that keeps the count of bytes written and nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.count += n
        return n

    def tell(self) -> int:
        return self.count


def serialized_size(state: dict[str, Any]) -> int:
    """Bytes ``torch.save`` writes for a state dict (what a checkpoint of it would take on disk), counted as
    they are written: a 2 GB state dict needs no 2 GB buffer to be measured."""
    sink = _ByteCounter()
    torch.save(state, sink)
    return sink.count


class TorchDLRM(Recommender):
    """PyTorch DLRM: fused EmbeddingBag with sparse gradients, fused/foreach dense optimizers, optional AMP,
    torch.compile of the dense arch, CUDA-graph inference."""

    framework = "torch"

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario)
        if scenario.parallel != "none":
            raise ScenarioUnsupported(
                f"parallel {scenario.parallel!r}: the single-process PyTorch DLRM runs parallel=none only"
            )
        self.settings: TorchSettings = resolve(scenario.device)
        self.device = self.settings.device
        self.net = build_net(scenario, self._make_embeddings()).to(self.device)
        self._dense_fn = self.settings.compiled(self.net.dense_arch)
        self._graphs = None
        if self.settings.compile == "cuda-graphs":
            from recsys_impls.torch_impl.graphs import GraphedInference

            self._graphs = GraphedInference(self)
        self._load_initial()

    # --- building blocks ----------------------------------------------------------------------
    def _make_embeddings(self) -> EmbeddingBags:
        """The scenario's embedding stage (a compressed variant builds its own; nothing is built twice)."""
        return build_embeddings(self.model_config, self.scenario.compression)

    def _initial_params(self) -> dict[str, np.ndarray]:
        return initial_params(self.model_config, self.train_config.seed)

    def _load_initial(self) -> None:
        """The seeded start. Plain tables are filled in row chunks straight from the seeded stream (the
        spec's streamed form, same values as ``_initial_params``), so no full numpy copy of the tables is
        held beside the weight; other embedding stages load ``_initial_params`` whole."""
        spec, cfg, seed = self.model_config.spec, self.model_config, self.train_config.seed
        fill = getattr(self.net.embeddings, "fill_rows", None)
        if fill is None or spec.initial_table_chunks is None or spec.initial_dense is None:
            self.set_params(self._initial_params())
            return
        for f, start, chunk in spec.initial_table_chunks(cfg, seed):
            fill(f, start, chunk)
        self._load_dense(spec.initial_dense(cfg, seed))
        self._make_optimizers()

    def _make_optimizers(self) -> None:
        """Sparse optimizer for embedding tables, a fused or foreach one for the rest (optim.py); fresh state."""
        lr = self.train_config.learning_rate
        sparse = self.net.embeddings.sparse_parameters()
        sparse_ids = {id(p) for p in sparse}
        dense = [p for p in self.net.parameters() if p.requires_grad and id(p) not in sparse_ids]
        self._opts = make_optimizers(self.train_config.optimizer, lr, sparse, dense)
        self._params = [p for g in self._opts for group in g.param_groups for p in group["params"]]
        self._scaler = torch.amp.GradScaler(self.device.type) if self.settings.uses_grad_scaler else None

    def _logits(self, staged: StagedBatch) -> torch.Tensor:
        with self.settings.autocast():
            pooled = self.net.embeddings(staged.sparse)
            return self._dense_fn(staged.dense, pooled).float()

    # --- Recommender ---------------------------------------------------------------------------
    def stage(self, batch: Batch) -> StagedBatch:
        pin = self.settings.pinned_memory
        return StagedBatch(
            dense=to_device(batch.dense.astype(np.float32, copy=False), self.device, pin),
            sparse=self.net.embeddings.stage(batch, self.device, pin),
            labels=to_device(batch.labels.astype(np.float32, copy=False), self.device, pin),
            batch_size=batch.batch_size,
        )

    def train_step(self, staged: StagedBatch) -> None:
        with self.settings.math_mode():
            for p in self._params:
                p.grad = None
            loss = F.binary_cross_entropy_with_logits(self._logits(staged), staged.labels)
            backward_and_step(loss, self._opts, self._scaler)

    def infer(self, staged: StagedBatch) -> torch.Tensor:
        with self.settings.math_mode():
            if self._graphs is not None:
                return self._graphs(staged)
            with torch.no_grad():
                return torch.sigmoid(self._logits(staged))

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def to_numpy(self, output: Any) -> np.ndarray:
        return output.detach().float().cpu().numpy().reshape(-1)

    def loss(self, staged: StagedBatch) -> float:
        with self.settings.math_mode(), torch.no_grad():
            return float(F.binary_cross_entropy_with_logits(self._logits(staged), staged.labels))

    # --- parameters ----------------------------------------------------------------------------
    def _dense_params(self) -> dict[str, np.ndarray]:
        """The dense architecture's parameters as float32 numpy, in the spec's names."""
        return {name: t.detach().float().cpu().numpy().copy()
                for name, t in self.net.dense_arch.neutral_params().items()}

    def _load_dense(self, params: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            for name, t in self.net.dense_arch.neutral_params().items():
                t.copy_(torch.from_numpy(np.asarray(params[name], dtype=np.float32)))

    def get_params(self) -> dict[str, np.ndarray]:
        out = {f"emb.{f}": t for f, t in enumerate(self.net.embeddings.export_tables())}
        out.update(self._dense_params())
        return out

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        expected = param_shapes(self.model_config)
        check_params(params, expected)
        self.net.embeddings.load_tables([params[f"emb.{f}"] for f in range(self.model_config.num_tables)])
        self._load_dense(params)
        self._make_optimizers()

    def storage_bytes(self) -> dict[str, int]:
        return {
            "model": serialized_size(self.net.state_dict()),
            "embedding": serialized_size(self.net.embeddings.state_dict()),
        }

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "torch_version": str(torch.__version__),  # TorchVersion would make pickles import torch
            "optimizer": self.train_config.optimizer,
            "sparse_optimizer": type(self._opts[0]).__name__ + " (sparse gradients)"
            if self.net.embeddings.sparse_parameters() else None,
            "model": self.model_config.arch,
            "interaction": getattr(self.net.dense_arch.interaction, "description", None),
            "input_conversion_in_timed_window": False,
            "input_conversion": "stage(): numpy -> device tensors (ids shifted by table base) before timing",
            "storage_format": "torch.save of the state dict",
        }
        out.update(self.net.embeddings.describe())
        out.update(self.settings.describe())
        if self._graphs is not None:
            out["cuda_graphs"] = "inference step captured per batch size; ids padded into static buffers"
            out.update(self._graphs.describe())
        return out
