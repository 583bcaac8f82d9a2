"""Scenario configuration: plain dataclasses, validated with one-line errors.

Everything here is framework-neutral. A Scenario is the full description of one benchmark run;
its axes (framework, data, compression, parallel, device settings) are what asv parameterises.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from recsys_impls.errors import UsageError, clip, shown

FRAMEWORKS = ("torch", "tf")
OPTIMIZERS = ("sgd", "adagrad")
PRECISIONS = ("fp32", "tf32", "amp-fp16", "amp-bf16")
COMPILE_MODES = ("none", "torch-compile", "torch-compile-max-autotune", "cuda-graphs", "xla")
# compute-only: a bounded set of distinct batches staged before the timed window, rotated (kernel-level
# comparisons); end-to-end: every batch produced by the input pipeline inside the window.
INPUT_MODES = ("compute-only", "end-to-end")
# compute-only: at most this many bytes of distinct batches are staged (never more than the steps), so small
# runs keep one fresh batch per step and long ones rotate with flat memory.
ROTATION_BYTES = 128 << 20
PREFETCH_DEPTH = 4  # end-to-end: batches the input worker may run ahead of the training loop
# uniform: a bag of 1..2k-1 ids (mean k); fixed: exactly k ids (MLPerf's materialised multi-hot Criteo).
BAG_DISTRIBUTIONS = ("uniform", "fixed")

# Ranges of the values a scenario accepts (beyond them a run cannot work: a thread pool of 100000
# segfaults PyTorch, a negative seed is refused by numpy, an id past int64 overflows).
MAX_THREADS = 1024
MAX_SEED = 2**32 - 1  # what every framework's seeding accepts
MAX_TABLES = 1024  # the pairwise interaction is quadratic in the number of tables
MAX_TABLE_ROWS = 2**40
MAX_LAYERS = 64
MAX_COUNT = 2**31 - 1  # batch sizes, sample counts, widths: int32 range
MAX_STEPS = 10**9
MAX_LEARNING_RATE = 1e3
MAX_ZIPF_EXPONENT = 100.0
MAX_TEXT = 200  # axis strings (framework, compression, parallel, device, ...)
MAX_PATH = 4096
MAX_CONFIG_BYTES = 4 << 20  # a config file is a few keys; this allows ~500k table sizes

# The CLI flag behind each config key, so a message names both.
_FLAGS = {
    ("train", "steps"): "--steps", ("train", "batch_size"): "--batch-size",
    ("train", "eval_samples"): "--eval-samples", ("train", "seed"): "--seed", ("train", "optimizer"): "--optimizer",
    ("train", "learning_rate"): "--lr", ("data", "source"): "--data", ("data", "skip_bad_lines"): "--skip-bad-lines",
    ("device", "device"): "--device", ("device", "precision"): "--precision", ("device", "compile"): "--compile",
    ("device", "pinned_memory"): "--pinned-memory", ("device", "threads"): "--threads",
    ("scenario", "framework"): "--framework", ("scenario", "compression"): "--compression",
    ("scenario", "parallel"): "--parallel", ("scenario", "straggler"): "--straggler",
    ("scenario", "balance"): "--balance", ("data", "hot_table"): "--hot-table", ("model", "arch"): "--model",
    ("train", "input_mode"): "--input", ("model", "max_rows"): "--max-rows",
}


def _where(section: str, key: str) -> str:
    """Where a value comes from, for messages: the flag and the config key."""
    flag = _FLAGS.get((section, key))
    name = key if section == "scenario" else f"{section}.{key}"
    return f"{flag}, or {name} in a --config file" if flag else f"{name} in a --config file"


def _bad(section: str, key: str, value: Any, accepted: str) -> UsageError:
    return UsageError(f"{key} = {shown(value)} ({_where(section, key)}); accepted: {accepted}")


def _text(value: Any) -> str:
    """A flag value as typed (strings unquoted), clipped."""
    return clip(value) if isinstance(value, str) else shown(value)


def _int_in(section: str, key: str, value: Any, lo: int, hi: int, label: str | None = None) -> None:
    """An int (not a bool) in [lo, hi], or a one-line UsageError."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"{label or key} = {shown(value)} ({_where(section, key)}); "
                         f"accepted: an integer from {lo} to {hi}")


def _number_in(section: str, key: str, value: Any, hi: float) -> None:
    """A finite number in (0, hi], or a one-line UsageError (inf, nan and 1e400 included)."""
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an int past the float range
        number = math.inf
    if not math.isfinite(number) or not 0 < number <= hi:
        raise _bad(section, key, value, f"a finite number greater than 0 and at most {hi:g}")


def _choice(section: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise _bad(section, key, value, ", ".join(choices))


def check_data_source(source: Any) -> None:
    """``--data``: synthetic, movielens, or a path to something the TSV reader can read: a regular file
    (plain or gzip) or a pipe (``--data <(zcat day_0.gz)``). One line naming what the path is otherwise."""
    accepted = ("accepted: synthetic, movielens, or a Criteo TSV (plain or gzip) as a regular file or a pipe, "
                "e.g. --data <(zcat day_0.gz)")
    if not isinstance(source, str):
        raise _bad("data", "source", source, accepted.removeprefix("accepted: "))
    if source in ("synthetic", "movielens"):
        return
    where = f"--data {clip(source)!s}" if source.strip() else f"--data {source!r}"
    if not source.strip():
        raise UsageError(f"{where}: empty; {accepted}")
    if "\x00" in source or len(source) > MAX_PATH:
        raise UsageError(f"{where}: not a usable path (a NUL byte, or over {MAX_PATH} characters); {accepted}")
    try:
        st = os.stat(source)
    except FileNotFoundError:
        why = "a broken symbolic link" if os.path.islink(source) else "no such file"
        raise UsageError(f"{where}: {why}; {accepted}") from None
    except NotADirectoryError:
        raise UsageError(f"{where}: no such file (a part of the path is not a folder); {accepted}") from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot be opened ({exc.strerror}); {accepted}") from None
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise UsageError(f"{where}: is a directory, not a file; {accepted}")
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        if not os.access(source, os.R_OK):
            raise UsageError(f"{where}: not readable (permission denied); {accepted}")
        return
    kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    raise UsageError(f"{where}: is {kind}, not a file or a pipe; {accepted}")


def is_pipe(source: str) -> bool:
    """Whether a data source is a pipe (readable once: a second reader would see nothing)."""
    try:
        return stat.S_ISFIFO(os.stat(source).st_mode)
    except (OSError, ValueError):
        return False


PARALLEL_TIMEOUT_ENV = "RECSYS_PARALLEL_TIMEOUT"
DEFAULT_PARALLEL_TIMEOUT_S = 600.0
MAX_PARALLEL_TIMEOUT_S = 7 * 24 * 3600.0


def parallel_timeout_s(environ: Mapping[str, str] | None = None) -> float:
    """Seconds a distributed run may take before its workers are stopped: ``RECSYS_PARALLEL_TIMEOUT``
    (default 600), validated so a bad value is one line, not a traceback at import."""
    env = os.environ if environ is None else environ
    text = env.get(PARALLEL_TIMEOUT_ENV)
    if text is None or not text.strip():
        return DEFAULT_PARALLEL_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= MAX_PARALLEL_TIMEOUT_S:
        raise UsageError(f"{PARALLEL_TIMEOUT_ENV}={shown(text)} (environment); accepted: seconds, a number greater "
                         f"than 0 and at most {MAX_PARALLEL_TIMEOUT_S:g} (default {DEFAULT_PARALLEL_TIMEOUT_S:g})")
    return value


# Criteo-like cardinalities, capped so the default model fits CI (26 tables).
CRITEO_SMALL_TABLES = [
    1460, 583, 100000, 100000, 305, 24, 12517, 633, 3, 93145, 5683, 100000, 3194,
    27, 14992, 100000, 10, 5652, 2173, 4, 100000, 18, 15, 100000, 105, 100000,
]


@dataclass(frozen=True)
class ModelConfig:
    """The architecture (``arch``, a name in the model registry, recsys_impls/models) and its shape.

    Each architecture reads the fields its ``ModelSpec.config_fields`` names and validates them."""

    arch: str = "dlrm"
    num_dense: int = 13
    table_sizes: tuple[int, ...] = tuple(CRITEO_SMALL_TABLES)
    embedding_dim: int = 16
    bottom_mlp: tuple[int, ...] = (64, 32, 16)
    top_mlp: tuple[int, ...] = (64, 32, 1)
    ids_per_feature: int = 1
    # dcnv2: low-rank cross layers (MLPerf DLRM-DCNv2: 3 layers of rank 512).
    cross_layers: int = 3
    cross_rank: int = 512
    # two-tower and neumf: the MLP tower's widths (empty: the model's default), the two-tower's softmax
    # temperature, NeuMF's sampled negatives per observed pair.
    tower_mlp: tuple[int, ...] = ()
    temperature: float = 0.05
    negatives: int = 4
    # Mean ids per sample of each table (multi-hot pooling factors); empty: ids_per_feature for every table.
    bag_sizes: tuple[int, ...] = ()
    # Cap on every table's rows (0: none); ids are hashed into the cap. Applied by data.loader.prepare.
    max_rows: int = 0

    @property
    def num_tables(self) -> int:
        return len(self.table_sizes)

    def ids_per_table(self) -> tuple[int, ...]:
        """Mean ids per sample of each table."""
        return self.bag_sizes or (self.ids_per_feature,) * self.num_tables

    def capped_table_sizes(self) -> tuple[int, ...]:
        """Rows of each table once ``max_rows`` is applied."""
        return tuple(min(n, self.max_rows) for n in self.table_sizes) if self.max_rows else self.table_sizes

    @property
    def spec(self):  # noqa: ANN201 - models.ModelSpec (imported lazily: the registry imports this module)
        from recsys_impls.models import model_spec

        return model_spec(self.arch)

    @property
    def interaction_dim(self) -> int:
        """Width of the top MLP input (the architecture's: for dlrm the bottom output plus the pairwise dots)."""
        return self.spec.top_in_dim(self)

    def validate(self) -> None:
        spec = self.spec  # an unknown --model is one line naming the registered ones
        _int_in("model", "num_dense", self.num_dense, 1, MAX_COUNT)
        _int_in("model", "embedding_dim", self.embedding_dim, 1, MAX_COUNT)
        _int_in("model", "ids_per_feature", self.ids_per_feature, 1, 10_000)
        _int_in("model", "max_rows", self.max_rows, 0, MAX_TABLE_ROWS)
        if not isinstance(self.bag_sizes, tuple) or self.bag_sizes and len(self.bag_sizes) != len(self.table_sizes):
            raise _bad("model", "bag_sizes", self.bag_sizes,
                       f"an empty list or one mean bag size per table ({len(self.table_sizes)} tables)")
        for i, k in enumerate(self.bag_sizes):
            _int_in("model", "bag_sizes", k, 1, 10_000, label=f"bag_sizes[{i}]")
        if not isinstance(self.table_sizes, tuple) or not 1 <= len(self.table_sizes) <= MAX_TABLES:
            raise _bad("model", "table_sizes", self.table_sizes,
                       f"a list of 1 to {MAX_TABLES} table sizes (rows), e.g. [100000, 5000]")
        for i, n in enumerate(self.table_sizes):
            _int_in("model", "table_sizes", n, 1, MAX_TABLE_ROWS, label=f"table_sizes[{i}]")
        for name in ("bottom_mlp", "top_mlp"):
            widths = getattr(self, name)
            if not isinstance(widths, tuple) or not 1 <= len(widths) <= MAX_LAYERS:
                raise _bad("model", name, widths, f"a list of 1 to {MAX_LAYERS} layer widths, e.g. [64, 16]")
            for i, w in enumerate(widths):
                _int_in("model", name, w, 1, MAX_COUNT, label=f"{name}[{i}]")
        spec.validate(self)


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
    input_mode: str = "compute-only"  # INPUT_MODES

    def validate(self) -> None:
        _int_in("train", "batch_size", self.batch_size, 1, MAX_COUNT)
        _int_in("train", "steps", self.steps, 1, MAX_STEPS)
        _int_in("train", "eval_samples", self.eval_samples, 1, MAX_COUNT)
        _int_in("train", "latency_batches", self.latency_batches, 1, 10**6)
        _int_in("train", "latency_batch_size", self.latency_batch_size, 1, MAX_COUNT)
        _int_in("train", "warmup_steps", self.warmup_steps, 0, MAX_STEPS)
        _int_in("train", "seed", self.seed, 0, MAX_SEED)
        _choice("train", "optimizer", self.optimizer, OPTIMIZERS)
        _choice("train", "input_mode", self.input_mode, INPUT_MODES)
        _number_in("train", "learning_rate", self.learning_rate, MAX_LEARNING_RATE)


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from: 'synthetic' (default), 'movielens', or a Criteo TSV path."""

    source: str = "synthetic"
    zipf_exponent: float = 1.05
    skip_bad_lines: bool = False
    hot_table: str = "none"  # "F:SHARE": synthetic table F takes SHARE of all lookups (parallel/faults.py)
    # Synthetic data: per-table Zipf exponents (empty: zipf_exponent for every table) and bag-size law.
    zipf_exponents: tuple[float, ...] = ()
    bag_distribution: str = "uniform"

    def validate(self) -> None:
        check_data_source(self.source)
        from recsys_impls.parallel.faults import parse_hot_table  # numpy-free, cheap

        if parse_hot_table(self.hot_table) is not None and self.source != "synthetic":
            raise UsageError(f"--hot-table {_text(self.hot_table)} with --data {_text(self.source)}: the hot table "
                             "skews synthetic ids only; accepted: --data synthetic, or --hot-table none")
        _number_in("data", "zipf_exponent", self.zipf_exponent, MAX_ZIPF_EXPONENT)
        if not isinstance(self.zipf_exponents, tuple):
            raise _bad("data", "zipf_exponents", self.zipf_exponents, "a list of numbers, one per table")
        for s in self.zipf_exponents:
            _number_in("data", "zipf_exponents", s, MAX_ZIPF_EXPONENT)
        _choice("data", "bag_distribution", self.bag_distribution, BAG_DISTRIBUTIONS)
        if not isinstance(self.skip_bad_lines, bool):
            raise _bad("data", "skip_bad_lines", self.skip_bad_lines, "true or false")

    def exponents(self, num_tables: int) -> tuple[float, ...]:
        """The Zipf exponent of each table."""
        return tuple(float(s) for s in self.zipf_exponents) or (float(self.zipf_exponent),) * num_tables

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
        if not isinstance(self.device, str) or not re.fullmatch(r"cpu|cuda(:\d{1,4})?|GPU:\d{1,4}", self.device):
            raise UsageError(f"--device {_text(self.device)}: accepted: cpu, cuda, cuda:N (PyTorch), "
                             "GPU:N (TensorFlow)")
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise UsageError(f"--precision {_text(self.precision)}: accepted: {', '.join(PRECISIONS)}")
        if not isinstance(self.compile, str) or self.compile not in COMPILE_MODES:
            raise UsageError(f"--compile {_text(self.compile)}: accepted: {', '.join(COMPILE_MODES)}")
        if not isinstance(self.pinned_memory, bool):
            raise _bad("device", "pinned_memory", self.pinned_memory, "true or false")
        _int_in("device", "threads", self.threads, 0, MAX_THREADS)


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
    straggler: str = "none"  # "RANK:FACTOR" (parallel/faults.py)
    balance: str = "static"  # "static" | "adaptive[:K]"

    def validate(self) -> Scenario:
        if not isinstance(self.framework, str) or self.framework not in FRAMEWORKS:
            raise UsageError(f"--framework {_text(self.framework)}: accepted: {', '.join(FRAMEWORKS)}")
        for key in ("compression", "parallel", "straggler", "balance"):
            value = getattr(self, key)
            if not isinstance(value, str) or len(value) > MAX_TEXT:
                raise _bad("scenario", key, value, f"a string of at most {MAX_TEXT} characters (see `list`)")
        self.model.validate()
        self.train.validate()
        self.data.validate()
        self.device.validate()
        if self.data.zipf_exponents and len(self.data.zipf_exponents) != self.model.num_tables:
            raise _bad("data", "zipf_exponents", list(self.data.zipf_exponents),
                       f"an empty list or one exponent per table ({self.model.num_tables} tables)")
        from recsys_impls.compression.spec import parse_compression  # framework-free, cheap
        from recsys_impls.parallel.spec import parse_parallel  # numpy-free, cheap

        parse_compression(self.compression)
        parse_parallel(self.parallel)
        from recsys_impls.parallel import faults

        faults.parse_straggler(self.straggler)
        faults.parse_balance(self.balance)
        return self

    def check_faults(self) -> None:
        """Faults and balancing need a distributed run, a rank that exists and (hot table) a table that does.

        Checked where a scenario is built from user input (``build_scenario``), not in ``validate``: the
        engines validate derived one-process scenarios (the data path, the 1-process baseline)."""
        from recsys_impls.parallel import faults
        from recsys_impls.parallel.spec import parse_parallel

        plan = parse_parallel(self.parallel)
        straggler = faults.parse_straggler(self.straggler)
        balance = faults.parse_balance(self.balance)
        hot = faults.parse_hot_table(self.data.hot_table)
        if hot is not None:
            faults.hot_bag_mean(hot, self.model.num_tables, self.model.ids_per_feature)
        if straggler is not None:
            if not plan.distributed:
                raise UsageError(f"--straggler {_text(self.straggler)} with --parallel {_text(self.parallel)}: a "
                                 "straggler needs a distributed run; accepted: --parallel ddp:N, mwms:N, sharded:N:...")
            if straggler.rank >= plan.world_size:
                raise UsageError(f"--straggler {_text(self.straggler)}: rank {straggler.rank} does not exist; "
                                 f"accepted: a rank from 0 to {plan.world_size - 1} for --parallel {plan.spec}")
        if balance.adaptive and not plan.distributed:
            raise UsageError(f"--balance {_text(self.balance)} with --parallel {_text(self.parallel)}: balancing needs "
                             "a distributed run; accepted: --parallel ddp:N, mwms:N, sharded:N:table-wise")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"]["name"] = self.data.name
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scenario:
        """Inverse of ``to_dict`` (from JSON too: lists become tuples), validated by ``build_scenario``,
        so a child process rebuilds exactly the scenario its parent ran."""
        sections = {k: dict(d[k]) for k in _CONFIG_SECTIONS if k in d}
        sections.get("data", {}).pop("name", None)
        return build_scenario({**sections, "scenario": {k: d[k] for k in _TOP_KEYS if k in d}})


# Keys a --config file may set, and which dataclass each belongs to.
_CONFIG_SECTIONS: dict[str, type] = {
    "model": ModelConfig, "train": TrainConfig, "data": DataConfig, "device": DeviceConfig,
}


_TOP_KEYS = ("framework", "compression", "parallel", "straggler", "balance")


def _field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


# load_config_file records which model keys the file itself set (presets do not), so build_scenario can
# refuse a shape the data would silently replace (MovieLens decides its own tables and dense features).
FROM_FILE = "_from_config_file"


def _read_config_text(path: str | Path) -> str:
    p = Path(path)
    where = f"--config {clip(str(path))}"
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"{where}: no such file; accepted: a TOML or JSON file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{where}: cannot be opened ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{where}: is a directory; accepted: a TOML or JSON file")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise UsageError(f"{where}: not a regular file or a pipe; accepted: a TOML or JSON file")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{where}: cannot be read ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(f"{where}: larger than {MAX_CONFIG_BYTES >> 20} MiB; a config file holds a few keys")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                         "TOML and JSON config files must be UTF-8") from None


def load_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a TOML or JSON config into {section: {key: value}}.

    Keys may be flat (``embedding_dim = 16``) or grouped in sections (``[model]``); flat keys are
    placed in the section that owns them. Unknown keys are an error naming the accepted ones.
    """
    p = Path(path)
    where = f"--config {clip(str(path))}"
    text = _read_config_text(path)
    kind = "JSON" if p.suffix.lower() == ".json" else "TOML"
    try:
        raw = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{where}: not valid {kind}: {clip(str(exc))}") from None
    except (ValueError, RecursionError) as exc:  # an integer of more than 4300 digits, nesting too deep
        raise UsageError(f"{where}: not usable {kind}: {clip(str(exc), 120)}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: the top level must be a table/object of keys")
    out: dict[str, dict[str, Any]] = {s: {} for s in _CONFIG_SECTIONS}
    owner = {name: s for s, cls in _CONFIG_SECTIONS.items() for name in _field_names(cls)}
    for key, value in raw.items():
        if key == "model" and isinstance(value, str):  # model = "dcnv2": the architecture, like --model
            out["model"]["arch"] = value
        elif key in _CONFIG_SECTIONS and isinstance(value, dict):
            for sub, v in value.items():
                if sub not in _field_names(_CONFIG_SECTIONS[key]):
                    accepted = ", ".join(_field_names(_CONFIG_SECTIONS[key]))
                    raise UsageError(f"{where}: unknown key {key}.{shown(sub, 60)}; accepted: {accepted}")
                out[key][sub] = v
        elif key in owner:
            out[owner[key]][key] = value
        elif key in _TOP_KEYS:
            out.setdefault("scenario", {})[key] = value
        else:
            accepted = ", ".join(sorted([*owner, *_TOP_KEYS]))
            raise UsageError(f"{where}: unknown key {shown(key, 60)}; accepted: {accepted}")
    out[FROM_FILE] = {f"model.{k}": str(path) for k in ("table_sizes", "num_dense") if k in out["model"]}
    return out


def _as_int(section: str, key: str, value: Any, what: str) -> int:
    """An int from an int or an integral finite float (JSON has one number type); never from a bool or
    a string, and never rounding (100.7 is an error, not 100)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a string" if isinstance(value, str) else "true/false" if isinstance(value, bool) else "not a number"
        raise _bad(section, key, value, f"{what} ({kind} is not accepted; write numbers without quotes)")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad(section, key, value, f"{what} (a number past the float range reads as inf)")
        if not value.is_integer():
            raise _bad(section, key, value, f"{what} (a whole number, not rounded)")
        return int(value)
    return value


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    """Turn config values into the dataclass field's type, with a one-line error; no silent coercion."""
    if isinstance(default, tuple) and (section, key) == ("data", "zipf_exponents"):
        if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                       for v in value):
            raise _bad(section, key, value, "a list of numbers without quotes, one per table")
        return tuple(float(v) for v in value)
    if isinstance(default, tuple):
        what = "a list of integers"
        if not isinstance(value, (list, tuple)):
            raise _bad(section, key, value, what)
        out = []
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(v, float) and not (
                    math.isfinite(v) and v.is_integer()):
                raise UsageError(f"{key}[{i}] = {shown(v)} ({_where(section, key)}); accepted: {what}, "
                                 "each a whole number without quotes (no strings, true/false or fractions)")
            out.append(int(v))
        return tuple(out)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _bad(section, key, value, "true or false")
        return value
    if isinstance(default, int):
        return _as_int(section, key, value, "an integer")
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(section, key, value, "a number (without quotes)")
        try:
            return float(value)
        except OverflowError:  # an int past the float range: validate() says what is accepted
            return math.inf
    if isinstance(default, str):
        if not isinstance(value, str):
            raise _bad(section, key, value, "a string")
        if len(value) > (MAX_PATH if (section, key) == ("data", "source") else MAX_TEXT):
            raise _bad(section, key, value, "a shorter string")
        return value
    return value


def build_scenario(overrides: dict[str, dict[str, Any]] | None = None, base: Scenario | None = None) -> Scenario:
    """Apply {section: {key: value}} overrides (from a file, then flags) to a Scenario and validate.

    Every source of values (flags, TOML, JSON, presets, asv) comes through here, so one set of rules
    applies: finite, integral where needed, in range, no bool-as-int, no string-as-number.
    """
    scenario = base or Scenario()
    overrides = overrides or {}
    parts: dict[str, Any] = {}
    for section in _CONFIG_SECTIONS:
        current = getattr(scenario, section)
        values = {k: _coerce(section, k, v, getattr(current, k)) for k, v in overrides.get(section, {}).items()}
        parts[section] = replace(current, **values) if values else current
    # The model's own training defaults (e.g. a smaller learning rate), where nothing set that field.
    arch = parts["model"].arch
    if isinstance(arch, str) and arch != scenario.model.arch:
        from recsys_impls.models import model_spec

        given = overrides.get("train", {})
        defaults = {k: v for k, v in model_spec(arch).train_defaults.items() if k not in given
                    and getattr(parts["train"], k) == getattr(TrainConfig(), k)}
        if defaults:
            parts["train"] = replace(parts["train"], **defaults)
    top = {k: v for k, v in overrides.get("scenario", {}).items()}
    for k, v in top.items():
        if not isinstance(v, str) or len(v) > MAX_TEXT:
            raise _bad("scenario", k, v, f"a string of at most {MAX_TEXT} characters")
    built = replace(scenario, **parts, **top).validate()
    built.check_faults()
    from_file = overrides.get(FROM_FILE) or {}
    if built.data.source == "movielens" and from_file:
        keys = ", ".join(k.split(".", 1)[1] for k in sorted(from_file))
        raise UsageError(
            f"--config {clip(next(iter(from_file.values())))} sets {keys}, but --data movielens decides its own "
            "tables (user, item, age bucket, gender, occupation, genres, release decade) and 4 dense features; "
            "remove table_sizes/num_dense from the file, or use --data synthetic or a TSV"
        )
    return built


# Production shapes. Cardinalities are public facts: the Criteo Kaggle (Display Advertising Challenge) counts
# as the DLRM reference (facebookresearch/dlrm) reports them for its Kaggle run, and the Criteo 1TB counts
# after MLPerf's hashing into at most 40M rows per table (dlrm --max-ind-range=40000000, the MLPerf DLRM and
# DLRM-DCNv2 training benchmarks).
CRITEO_KAGGLE_TABLES = [
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
]
CRITEO_TB_40M_TABLES = [
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
    2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
]
# MLPerf Training DLRM-DCNv2 multi-hot Criteo: ids per sample of each table (its materialised dataset holds
# exactly this many per sample, 214 in all; the extra ids of a bag are drawn uniformly near the one-hot id).
MLPERF_MULTI_HOT_SIZES = [3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1]


def criteo_zipf_exponents(table_sizes: list[int]) -> list[float]:
    """Per-table Zipf exponents for the Criteo-shaped presets: an assumption, not a fit.

    No per-table skew figures are published for Criteo and its raw logs cannot be downloaded here, so the
    rule only encodes the qualitative fact that id-like features (millions of values) have a few very hot
    ids and a long tail, while small categorical features (devices, categories) are closer to uniform:
    1.1 above 1M rows, 1.05 (this suite's default) from 10k to 1M, 0.9 below 10k.
    """
    return [1.1 if n > 1_000_000 else 1.05 if n >= 10_000 else 0.9 for n in table_sizes]


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The DLRM reference's Kaggle configuration: D=16, bottom 13-512-256-64-16, top 512-256-1;
    # 33.76M rows, 2.16 GB of fp32 tables. Bags: one id per table (Kaggle is one-hot). SGD at lr 0.1, the
    # reference's Kaggle optimizer (no optimizer state beside the tables).
    "criteo-kaggle": {
        "model": {"num_dense": 13, "table_sizes": CRITEO_KAGGLE_TABLES, "embedding_dim": 16,
                  "bottom_mlp": [512, 256, 64, 16], "top_mlp": [512, 256, 1], "ids_per_feature": 1},
        "data": {"zipf_exponents": criteo_zipf_exponents(CRITEO_KAGGLE_TABLES)},
        "train": {"batch_size": 2048, "optimizer": "sgd", "learning_rate": 0.1},
    },
    # MLPerf DLRM (v1) on Criteo 1TB: D=128, bottom 13-512-256-128, top 1024-1024-512-256-1; 187.8M rows,
    # 96.1 GB of fp32 tables: run it with --max-rows on a small machine. SGD (MLPerf v1's optimizer) at lr 0.1:
    # MLPerf's 1.0 relies on a learning-rate warm-up this suite does not have.
    "criteo-terabyte": {
        "model": {"num_dense": 13, "table_sizes": CRITEO_TB_40M_TABLES, "embedding_dim": 128,
                  "bottom_mlp": [512, 256, 128], "top_mlp": [1024, 1024, 512, 256, 1], "ids_per_feature": 1},
        "data": {"zipf_exponents": criteo_zipf_exponents(CRITEO_TB_40M_TABLES)},
        "train": {"batch_size": 2048, "optimizer": "sgd", "learning_rate": 0.1},
    },
    # MLPerf DLRM-DCNv2's tables and multi-hot bags (exactly MLPERF_MULTI_HOT_SIZES ids per sample), D=128.
    # Dense part: DCNv2 (3 low-rank cross layers of rank 512) between MLPerf's bottom and top MLPs.
    # Adagrad at lr 0.005, as MLPerf DLRM-DCNv2's reference trains.
    "dlrm-v2": {
        "model": {"arch": "dcnv2", "cross_layers": 3, "cross_rank": 512,
                  "num_dense": 13, "table_sizes": CRITEO_TB_40M_TABLES, "embedding_dim": 128,
                  "bottom_mlp": [512, 256, 128], "top_mlp": [1024, 1024, 512, 256, 1], "ids_per_feature": 1,
                  "bag_sizes": MLPERF_MULTI_HOT_SIZES},
        "data": {"zipf_exponents": criteo_zipf_exponents(CRITEO_TB_40M_TABLES), "bag_distribution": "fixed"},
        "train": {"batch_size": 2048, "optimizer": "adagrad", "learning_rate": 0.005},
    },
    # The shape of the DLRM reference script's random-data benchmark (facebookresearch/dlrm), so the two
    # can be timed side by side on the same work.
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
    # MLPerf Training's DLRM-DCNv2 dense shape (bottom 13-512-256-128, D=128, 3 cross layers of rank 512,
    # top 1024-1024-512-256-1) over the dlrm-ref tables.
    "dcnv2-ref": {
        "model": {
            "arch": "dcnv2",
            "num_dense": 13,
            "table_sizes": [100000] * 8,
            "embedding_dim": 128,
            "bottom_mlp": [512, 256, 128],
            "top_mlp": [1024, 1024, 512, 256, 1],
            "cross_layers": 3,
            "cross_rank": 512,
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
