"""The model and backend registries: one descriptor per architecture, one per framework.

Framework-neutral and cheap to import (no numpy, torch or TensorFlow at module level), so `list`, the
CLI, asv discovery and the reports can read them. Everything heavy is named by a lazily imported
``"module:callable"`` path and resolved only when a model is built.

* ``ModelSpec``: what an architecture is. Its config fields and their validation, its parameters
  (names and shapes, seeded initialisation), a numpy reference forward pass (the parity oracle), a
  builder per backend, the quality metrics it publishes, and which scenario axes it supports (an
  unsupported axis names its reason, so a scenario is skipped with that reason).
* ``Backend``: what a framework offers. Its package, the module paths of its parts (model, profiler,
  launcher), and the precisions, compile modes and parallel modes it supports.

A new architecture is one module that calls ``register_model`` (listed in ``MODEL_MODULES`` so it is
imported on first use) plus one builder module per backend.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from recsys_impls.errors import ScenarioUnsupported, UsageError

# Scenario axes a model may or may not support (asv suites and `list` read them).
# ``compression:METHOD`` names one compression method a model may skip while taking the others.
# ``parallel:MODE`` names one --parallel mode a model may skip while taking the others; ``parallel:comm-hooks``
# the ddp:N:HOOK forms, ``parallel:faults`` --straggler and --balance adaptive.
AXES = ("compression", "compression:prune", "compression:mlp-int8", "parallel", "parallel:ddp", "parallel:mwms",
        "parallel:sharded", "parallel:ps", "parallel:comm-hooks", "parallel:faults", "device", "profiling",
        "data:synthetic", "data:movielens", "data:tsv")
SUPPORTED = "supported"


def load(path: str) -> Any:
    """Resolve ``"package.module:attribute"`` (imports the module)."""
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class ModelSpec:
    """One architecture. Callables take the scenario's ``ModelConfig``; shapes are PyTorch's [out, in]."""

    name: str
    task: str  # "ranking" (click probability per sample) or "retrieval" (top-K items per query)
    description: str
    reference: str  # the paper or benchmark it follows
    # ModelConfig fields this architecture reads (the others are ignored for it).
    config_fields: tuple[str, ...]
    # Raises UsageError (one line) for a config this architecture cannot be built from.
    validate: Callable[[Any], None]
    # {name: shape} of every trainable parameter in the uncompressed model.
    param_shapes: Callable[[Any], dict[str, tuple[int, ...]]]
    # (config, seed) -> {name: float32 array}: the seeded starting point both frameworks load.
    initial_params: Callable[[Any, int], dict[str, Any]]
    # (config, batch, param(name) -> array, rows(f, ids) -> float64 [n, D]) -> float32 outputs; float64
    # maths. ``param``/``rows`` abstract the storage, so compressed models share the oracle.
    forward: Callable[..., Any]
    # backend name -> "module:callable" building the backend's dense architecture for a config.
    builders: Mapping[str, str]
    # quality figures the model publishes (record keys under ``quality``), and their direction.
    quality_metrics: tuple[str, ...] = ("auc", "logloss", "ne")
    higher_is_better: tuple[str, ...] = ("auc",)
    # TrainConfig fields this model trains with unless the scenario sets them (flag, file or preset).
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    # axis -> SUPPORTED, or the reason it is skipped for this model.
    axes: Mapping[str, str] = field(default_factory=dict)
    # (config) -> width of the dense vector entering the top MLP (ranking models).
    top_in_dim: Callable[[Any], int] | None = None
    # (config) -> [(in, out)] of every dense GEMM of a training step's forward pass (work model).
    gemm_layers: Callable[[Any], list[tuple[int, int]]] | None = None
    # (config) -> extra forward FLOPs per sample outside the GEMMs (interaction, elementwise products).
    extra_flops: Callable[[Any], float] | None = None
    # Streamed form of ``initial_params`` for big tables (both or neither): (config, seed) -> iterator of
    # (table, first row, float32 [n, D]) chunks, and (config, seed) -> the non-table parameters, the same
    # values, without drawing the tables. A framework fills its tables from the chunks, so no full copy of
    # the tables' initial values is ever held; a compressed embedding stage takes only the dense part (it
    # draws its own tables) and never allocates a plain table it would throw away.
    initial_table_chunks: Callable[[Any, int], Any] | None = None
    initial_dense: Callable[[Any, int], dict[str, Any]] | None = None

    def axis_reason(self, axis: str) -> str | None:
        """None when the axis is supported, else why it is skipped for this model."""
        value = self.axes.get(axis, SUPPORTED)
        return None if value == SUPPORTED else value

    def require_axis(self, axis: str, what: str) -> None:
        reason = self.axis_reason(axis)
        if reason is not None:
            raise ScenarioUnsupported(f"model {self.name}: {what}: {reason}")

    def compression_reason(self, methods: tuple[str, ...]) -> str | None:
        """Why this model cannot take a compression plan's ``methods`` (axis ``compression``, or one method's
        ``compression:METHOD``), or None."""
        for axis in ("compression", *(f"compression:{m}" for m in methods)):
            reason = self.axis_reason(axis)
            if reason is not None:
                return reason if axis == "compression" else f"{axis.partition(':')[2]}: {reason}"
        return None

    def builder(self, backend: str) -> Callable[..., Any]:
        """The backend's builder for this architecture (imports the backend module)."""
        if backend not in self.builders:
            raise ScenarioUnsupported(f"model {self.name}: not implemented for {backend} "
                                      f"(implemented for: {', '.join(self.builders)})")
        return load(self.builders[backend])

    def reference_forward(self, params: Mapping[str, Any], config: Any, batch: Any) -> Any:
        """The parity oracle for plain (uncompressed) parameters."""
        return self.forward(config, batch, params.__getitem__, lambda f, ids: params[f"emb.{f}"][ids])


@dataclass(frozen=True)
class Backend:
    """One framework behind the Recommender interface."""

    name: str  # the --framework value
    package: str  # what must be importable
    label: str
    # role -> "module:callable": "model" (the Recommender class), "compressed", "peaks", "profiler", ...
    modules: Mapping[str, str]
    precisions: tuple[str, ...]
    compile_modes: tuple[str, ...]
    parallel_modes: tuple[str, ...]

    def available(self) -> bool:
        """Whether the package is installed, without importing it."""
        return importlib.util.find_spec(self.package) is not None

    def load(self, role: str) -> Any:
        if role not in self.modules:
            raise ScenarioUnsupported(f"framework {self.name}: has no {role} (has: {', '.join(self.modules)})")
        return load(self.modules[role])


_MODELS: dict[str, ModelSpec] = {}
_BACKENDS: dict[str, Backend] = {}

# Modules whose import registers models; imported on first registry use (in this order: `list` order).
MODEL_MODULES = ["recsys_impls.models.dlrm", "recsys_impls.models.dcnv2", "recsys_impls.models.retrieval_specs"]
BACKEND_MODULES = ["recsys_impls.models.frameworks"]
_loaded = False


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in (*BACKEND_MODULES, *MODEL_MODULES):
            importlib.import_module(module)


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _MODELS and _MODELS[spec.name] is not spec:
        raise ValueError(f"model {spec.name!r} registered twice")
    _MODELS[spec.name] = spec
    return spec


def register_backend(backend: Backend) -> Backend:
    _BACKENDS[backend.name] = backend
    return backend


def model_names() -> tuple[str, ...]:
    _ensure_loaded()
    return tuple(_MODELS)


def backend_names() -> tuple[str, ...]:
    _ensure_loaded()
    return tuple(_BACKENDS)


def model_spec(name: str) -> ModelSpec:
    """The spec of ``--model NAME``; a one-line UsageError naming the accepted ones otherwise."""
    _ensure_loaded()
    if not isinstance(name, str) or name not in _MODELS:
        from recsys_impls.errors import shown

        raise UsageError(f"--model {shown(name) if not isinstance(name, str) else name[:60]}: "
                         f"accepted: {', '.join(_MODELS)}")
    return _MODELS[name]


def backend(name: str) -> Backend:
    _ensure_loaded()
    if name not in _BACKENDS:
        raise UsageError(f"--framework {str(name)[:60]}: accepted: {', '.join(_BACKENDS)}")
    return _BACKENDS[name]


def models(task: str | None = None) -> list[ModelSpec]:
    """Every registered model (of one task if given), in registration order."""
    _ensure_loaded()
    return [m for m in _MODELS.values() if task is None or m.task == task]


def backends() -> list[Backend]:
    _ensure_loaded()
    return list(_BACKENDS.values())
