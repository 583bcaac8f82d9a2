"""Scenario configuration: plain dataclasses, validated with one-line errors.

Everything here is framework-neutral. A Scenario is the full description of one benchmark run;
its axes (framework, data, compression, parallel, device settings) are what asv parameterises.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from recsys_impls.errors import UsageError

FRAMEWORKS = ("torch", "tf")
OPTIMIZERS = ("sgd", "adagrad")
PRECISIONS = ("fp32", "tf32", "amp-fp16", "amp-bf16")
COMPILE_MODES = ("none", "torch-compile", "torch-compile-max-autotune", "cuda-graphs", "xla")

# Criteo-like cardinalities, capped so the default model fits CI (26 tables).
CRITEO_SMALL_TABLES = [
    1460, 583, 100000, 100000, 305, 24, 12517, 633, 3, 93145, 5683, 100000, 3194,
    27, 14992, 100000, 10, 5652, 2173, 4, 100000, 18, 15, 100000, 105, 100000,
]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the DLRM model (Naumov et al. 2019)."""

    num_dense: int = 13
    table_sizes: tuple[int, ...] = tuple(CRITEO_SMALL_TABLES)
    embedding_dim: int = 16
    bottom_mlp: tuple[int, ...] = (64, 32, 16)
    top_mlp: tuple[int, ...] = (64, 32, 1)
    ids_per_feature: int = 1

    @property
    def num_tables(self) -> int:
        return len(self.table_sizes)

    @property
    def interaction_dim(self) -> int:
        """Width of the top MLP input: bottom output plus the strictly-lower pairwise dots."""
        n = self.num_tables + 1
        return self.embedding_dim + n * (n - 1) // 2

    def validate(self) -> None:
        _positive("num_dense", self.num_dense)
        _positive("embedding_dim", self.embedding_dim)
        _positive("ids_per_feature", self.ids_per_feature)
        if not self.table_sizes:
            raise UsageError("config: table_sizes is empty; give a list of positive table cardinalities")
        for i, n in enumerate(self.table_sizes):
            if not isinstance(n, int) or n <= 0:
                raise UsageError(f"config: table_sizes[{i}] = {n!r}; every table size must be a positive integer")
        for name in ("bottom_mlp", "top_mlp"):
            widths = getattr(self, name)
            if not widths or any(not isinstance(w, int) or w <= 0 for w in widths):
                raise UsageError(f"config: {name} = {list(widths)!r}; give a non-empty list of positive layer widths")
        if self.bottom_mlp[-1] != self.embedding_dim:
            raise UsageError(
                f"config: bottom_mlp ends in {self.bottom_mlp[-1]} but embedding_dim is {self.embedding_dim}; "
                "the bottom MLP's last width must equal embedding_dim"
            )
        if self.top_mlp[-1] != 1:
            raise UsageError(f"config: top_mlp ends in {self.top_mlp[-1]}; its last width must be 1 (the logit)")


@dataclass(frozen=True)
class TrainConfig:
    """How a scenario trains and is measured."""

    batch_size: int = 512
    steps: int = 200
    eval_samples: int = 50000
    # Adagrad learns the sparse, Zipf-skewed tables far faster than SGD in a short run
    # (tiny preset, 300 steps: AUC 0.738 with adagrad lr 0.05 vs 0.688 with SGD lr 0.5).
    optimizer: str = "adagrad"
    learning_rate: float = 0.05
    seed: int = 0
    warmup_steps: int = 5
    latency_batches: int = 50
    latency_batch_size: int = 64

    def validate(self) -> None:
        _positive("batch_size", self.batch_size)
        _positive("steps", self.steps)
        _positive("eval_samples", self.eval_samples)
        _positive("latency_batches", self.latency_batches)
        _positive("latency_batch_size", self.latency_batch_size)
        if self.warmup_steps < 0:
            raise UsageError(f"config: warmup_steps = {self.warmup_steps}; must be >= 0")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"config: optimizer = {self.optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")
        if not self.learning_rate > 0:
            raise UsageError(f"config: learning_rate = {self.learning_rate}; must be > 0")


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from: 'synthetic' (default), 'movielens', or a Criteo TSV path."""

    source: str = "synthetic"
    zipf_exponent: float = 1.05
    skip_bad_lines: bool = False

    def validate(self) -> None:
        if self.source in ("synthetic", "movielens"):
            pass
        elif not Path(self.source).exists():
            raise UsageError(
                f"--data {self.source}: no such file; accepted: synthetic, movielens, or a path to a Criteo TSV file"
            )
        if not self.zipf_exponent > 0:
            raise UsageError(f"config: zipf_exponent = {self.zipf_exponent}; must be > 0")

    @property
    def name(self) -> str:
        return self.source if self.source in ("synthetic", "movielens") else "tsv:" + Path(self.source).name


@dataclass(frozen=True)
class DeviceConfig:
    """GPU settings axis. CPU is the default; the GPU issue fills in the rest."""

    device: str = "cpu"
    precision: str = "fp32"
    compile: str = "none"
    pinned_memory: bool = False
    threads: int = 0  # 0: framework default

    def validate(self) -> None:
        if not re.fullmatch(r"cpu|cuda(:\d+)?|GPU:\d+", self.device):
            raise UsageError(f"--device {self.device}: accepted: cpu, cuda, cuda:N (PyTorch), GPU:N (TensorFlow)")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision}: accepted: {', '.join(PRECISIONS)}")
        if self.compile not in COMPILE_MODES:
            raise UsageError(f"--compile {self.compile}: accepted: {', '.join(COMPILE_MODES)}")
        if self.threads < 0:
            raise UsageError(f"--threads {self.threads}: must be >= 0 (0 = framework default)")


@dataclass(frozen=True)
class Scenario:
    """One benchmark run: every axis value. Serialised into the record as-is."""

    framework: str = "torch"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    compression: str = "none"
    parallel: str = "none"

    def validate(self) -> Scenario:
        if self.framework not in FRAMEWORKS:
            raise UsageError(f"--framework {self.framework}: accepted: {', '.join(FRAMEWORKS)}")
        self.model.validate()
        self.train.validate()
        self.data.validate()
        self.device.validate()
        from recsys_impls.compression.spec import parse_compression  # numpy-free, cheap

        parse_compression(self.compression)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"]["name"] = self.data.name
        return d


# Keys a --config file may set, and which dataclass each belongs to.
_CONFIG_SECTIONS: dict[str, type] = {
    "model": ModelConfig, "train": TrainConfig, "data": DataConfig, "device": DeviceConfig,
}


def _field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def load_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a TOML or JSON config into {section: {key: value}}.

    Keys may be flat (``embedding_dim = 16``) or grouped in sections (``[model]``); flat keys are
    placed in the section that owns them. Unknown keys are an error naming the accepted ones.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config {path}: no such file")
    text = p.read_text()
    try:
        raw = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if p.suffix.lower() == ".json" else "TOML"
        raise UsageError(f"--config {path}: not valid {kind}: {exc}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"--config {path}: the top level must be a table/object of keys")
    out: dict[str, dict[str, Any]] = {s: {} for s in _CONFIG_SECTIONS}
    owner = {name: s for s, cls in _CONFIG_SECTIONS.items() for name in _field_names(cls)}
    for key, value in raw.items():
        if key in _CONFIG_SECTIONS and isinstance(value, dict):
            for sub, v in value.items():
                if sub not in _field_names(_CONFIG_SECTIONS[key]):
                    accepted = ", ".join(_field_names(_CONFIG_SECTIONS[key]))
                    raise UsageError(f"--config {path}: unknown key {key}.{sub}; accepted: {accepted}")
                out[key][sub] = v
        elif key in owner:
            out[owner[key]][key] = value
        elif key in ("framework", "compression", "parallel"):
            out.setdefault("scenario", {})[key] = value
        else:
            accepted = ", ".join(sorted([*owner, "framework", "compression", "parallel"]))
            raise UsageError(f"--config {path}: unknown key {key!r}; accepted: {accepted}")
    return out


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    """Turn config values into the dataclass field's type, with a one-line error."""
    where = f"{section}.{key}"
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"config: {where} = {value!r}; expected a list of integers")
        try:
            return tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise UsageError(f"config: {where} = {value!r}; expected a list of integers") from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UsageError(f"config: {where} = {value!r}; expected true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise UsageError(f"config: {where} = {value!r}; expected an integer")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"config: {where} = {value!r}; expected a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise UsageError(f"config: {where} = {value!r}; expected a string")
        return value
    return value


def build_scenario(overrides: dict[str, dict[str, Any]] | None = None, base: Scenario | None = None) -> Scenario:
    """Apply {section: {key: value}} overrides (from a file, then flags) to a Scenario and validate."""
    scenario = base or Scenario()
    overrides = overrides or {}
    parts: dict[str, Any] = {}
    for section in _CONFIG_SECTIONS:
        current = getattr(scenario, section)
        values = {k: _coerce(section, k, v, getattr(current, k)) for k, v in overrides.get(section, {}).items()}
        parts[section] = replace(current, **values) if values else current
    top = {k: v for k, v in overrides.get("scenario", {}).items()}
    for k, v in top.items():
        if not isinstance(v, str):
            raise UsageError(f"config: {k} = {v!r}; expected a string")
    return replace(scenario, **parts, **top).validate()


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The configuration the DLRM reference comparison uses (DESIGN.md section 7).
    "dlrm-ref": {
        "model": {
            "num_dense": 13,
            "table_sizes": [100000] * 8,
            "embedding_dim": 64,
            "bottom_mlp": [512, 256, 64],
            "top_mlp": [512, 256, 1],
            "ids_per_feature": 1,
        },
        "train": {"batch_size": 2048},
    },
    # Small enough for a quick asv run on two CPU cores.
    "tiny": {
        "model": {
            "table_sizes": [1000, 500, 20000, 20000, 300, 24, 5000, 600, 3, 20000, 5000, 20000, 3000,
                            27, 10000, 20000, 10, 5000, 2000, 4, 20000, 18, 15, 20000, 100, 20000],
            "embedding_dim": 16,
            "bottom_mlp": [64, 16],
            "top_mlp": [64, 1],
        },
        "train": {"batch_size": 256, "steps": 100, "eval_samples": 20000},
    },
}


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UsageError(f"config: {name} = {value!r}; must be a positive integer")
