"""Limits checked before anything is allocated or started: ``check(scenario) -> estimate``.

A run that cannot work should fail in a second with one line, not after minutes with a kernel OOM
kill, 66 processes on two cores, a segfault in a thread pool, or a record lost because the output
path was a directory. ``check`` raises UsageError (or ScenarioUnsupported for a valid combination a
mode cannot run), one line, exit code 2, on:

* memory: an estimate of the run's peak host memory (tables at their element size (after ``--max-rows``;
  a compressed layout: its trained parameter groups, on every data-parallel rank),
  the seeded initial values copied in, optimizer state, the data splits and their per-step slices (a
  streaming run: one batch and its bounded rotation or prefetch queue), staged batches, activations, the
  data source's working set, each framework's own footprint; per process, times the
  processes a distributed mode starts) above what is available (``MemAvailable`` in /proc/meminfo and
  the cgroup memory limit, whichever is lower). The message gives both figures and the largest parts.
  A CUDA run's tables, optimizer state, activations and staged batches are also checked against the
  device's free memory (NVML). The estimate is deliberately simple arithmetic (no allocation, no framework
  import); it is returned so the record can carry it beside the measured peak.
* cores: busy threads (trainer processes x intra-op threads each) above ``OVERSUBSCRIBE_FACTOR`` x
  the cores this process may run on (``os.sched_getaffinity`` and the cgroup CPU quota), unless the
  caller allows oversubscription (``--oversubscribe``: multi-node or deliberate runs). TensorFlow's
  parameter servers and chief wait on the workers and are not counted as busy.
* distributed rules the workers would otherwise find after launch: the global batch divisible by the
  world size, an eval split of at least one sample per rank, only the compressions sharded modes take
  (``compression.spec.sharding_refusal``; data parallel runs take every one),
  sharded/ps precision and compile limits, the framework/mode pairs of ``spec.check_supported``.
* paths: ``--json`` must be a writable file (probed: created and removed, or opened for append and a
  zero-byte write, which is what fails on /dev/full); ``--data`` must be a readable regular file or
  pipe, with the TSV model shape, and a pipe (readable once) cannot feed a distributed run, whose
  ranks each read the data.
* ``RECSYS_PARALLEL_TIMEOUT``: a number of seconds (``config.parallel_timeout_s``).

Pure Python: no framework, and no numpy except for a compression layout's group shapes (its registry);
reading a few /proc and /sys files, well under a second.
"""

from __future__ import annotations

import math
import os
import stat
import time
from pathlib import Path
from typing import Any

from recsys_impls.config import (
    MAX_THREADS,
    PARALLEL_TIMEOUT_ENV,
    PREFETCH_DEPTH,
    ROTATION_BYTES,
    Scenario,
    is_pipe,
    parallel_timeout_s,
)
from recsys_impls.errors import ScenarioUnsupported, UsageError, clip

OVERSUBSCRIBE_FACTOR = 2  # busy threads allowed per available core without --oversubscribe

MiB = 1 << 20
# Resident memory of a process before any model or data: the interpreter with numpy, plus the framework
# (measured: `import torch` 226 MB, `import tensorflow` 693 MB peak RSS on the CI machine, rounded up).
PYTHON_BYTES = 64 * MiB
FRAMEWORK_BYTES = {"torch": 288 * MiB, "tf": 768 * MiB}
# The Criteo TSV reader's working set while it parses one 16 MB block (measured: about 380 MB).
TSV_READER_BYTES = 400 * MiB
MIN_TSV_LINE_BYTES = 41  # label, 39 tabs, newline: every line is at least this long
# MovieLens-100k as the loader builds it (recsys_impls/data/movielens.py).
MOVIELENS = {"ratings": 100_000, "eval_fraction": 0.2, "rows": 2_700, "tables": 7, "dense": 4,
             "ids_per_sample": 9, "parse_bytes": 160 * MiB}
# Working set of the synthetic generator's hidden model per table row: Zipf CDF, rank->id map and the
# per-id weight kept (24 B), hidden id vectors of the paired tables (32 B), and the temporaries while
# the largest table is built (about 150 B per row).
SYNTH_KEPT_PER_ROW, SYNTH_VECTOR_PER_ROW, SYNTH_BUILD_PER_ROW = 24, 32, 150
SYNTH_PAIRED_TABLES = 16  # NUM_PAIRS = 8 pairs of tables at most
# Tables above this many rows keep no per-row generator state (synthetic.LARGE_TABLE_ROWS).
SYNTH_LARGE_TABLE_ROWS = 1 << 20
ACTIVATION_COPIES = 3  # forward outputs, their gradients, temporaries


# ------------------------------------------------------------------------------------------------
# What the machine offers


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return None


def _meminfo_available(meminfo: str) -> int | None:
    text = _read(meminfo)
    for line in (text or "").splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def _cgroup_dirs(self_cgroup: str, root: str, controller: str) -> list[Path]:
    """This process's cgroup folder and its ancestors under ``root`` (v2: ``0::/path``; v1: the controller's
    line), the innermost first; the mount root itself when the path is not visible (a namespaced mount)."""
    dirs: list[Path] = []
    for line in (_read(self_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, rel = parts
        if controller == "" and hier == "0" and controllers == "":
            base = Path(root)
        elif controller and controller in controllers.split(","):
            base = Path(root) / controller
        else:
            continue
        d = base / rel.lstrip("/")
        while True:
            if d.is_dir():
                dirs.append(d)
            if d == base or base not in d.parents:
                break
            d = d.parent
        if base not in dirs and base.is_dir():
            dirs.append(base)
    return dirs


def _int_file(path: Path) -> int | None:
    text = (_read(str(path)) or "").strip()
    return int(text) if text.isdigit() else None


def available_memory(meminfo: str = "/proc/meminfo", cgroup_root: str = "/sys/fs/cgroup",
                     self_cgroup: str = "/proc/self/cgroup") -> dict[str, Any]:
    """Bytes this run may still allocate: MemAvailable, lowered by any cgroup limit (v2 memory.max minus
    memory.current; v1 memory.limit_in_bytes minus memory.usage_in_bytes) on the way to the root."""
    figures: list[tuple[int, str]] = []
    mem = _meminfo_available(meminfo)
    if mem is not None:
        figures.append((mem, "MemAvailable in /proc/meminfo"))
    for d in _cgroup_dirs(self_cgroup, cgroup_root, ""):
        limit, used = _int_file(d / "memory.max"), _int_file(d / "memory.current")
        if limit is not None:  # "max" (no limit) is not digits
            figures.append((max(limit - (used or 0), 0), f"cgroup memory.max at {d}"))
    for d in _cgroup_dirs(self_cgroup, cgroup_root, "memory"):
        limit, used = _int_file(d / "memory.limit_in_bytes"), _int_file(d / "memory.usage_in_bytes")
        if limit is not None and limit < 1 << 60:  # v1 writes "no limit" as about 2**63
            figures.append((max(limit - (used or 0), 0), f"cgroup memory.limit_in_bytes at {d}"))
    if not figures:
        return {"bytes": None, "source": "unknown (no /proc/meminfo, no cgroup limit)"}
    value, source = min(figures)
    return {"bytes": value, "source": source}


def available_cores(cgroup_root: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup") -> dict[str, Any]:
    """Cores this process may run on: its CPU affinity, lowered by a cgroup CPU quota (v2 cpu.max,
    v1 cpu.cfs_quota_us / cpu.cfs_period_us)."""
    from recsys_impls.threads import available_cpus

    cores = available_cpus()
    source = "sched_getaffinity" if hasattr(os, "sched_getaffinity") else "os.cpu_count"
    quotas: list[float] = []
    for d in _cgroup_dirs(self_cgroup, cgroup_root, ""):
        parts = (_read(str(d / "cpu.max")) or "").split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit() and int(parts[1]) > 0:
            quotas.append(int(parts[0]) / int(parts[1]))
    for d in _cgroup_dirs(self_cgroup, cgroup_root, "cpu"):
        q, period = _read(str(d / "cpu.cfs_quota_us")), _read(str(d / "cpu.cfs_period_us"))
        if q and period and q.strip().isdigit() and period.strip().isdigit() and int(period) > 0:
            quotas.append(int(q) / int(period))
    if quotas and math.ceil(min(quotas)) < cores:
        cores, source = max(1, math.ceil(min(quotas))), "cgroup CPU quota"
    return {"cores": cores, "source": source}


# ------------------------------------------------------------------------------------------------
# The plan: processes and threads


def _plan(scenario: Scenario) -> Any:
    from recsys_impls.parallel.spec import parse_parallel  # numpy-free

    return parse_parallel(scenario.parallel)


def _processes(scenario: Scenario, plan: Any) -> dict[str, int]:
    """How many processes of each kind the run starts (recsys_impls/parallel/run.py and tf_launch.py)."""
    if not plan.distributed:
        return {"trainers": 1, "servers": 0, "launchers": 0}
    n = plan.world_size
    if scenario.framework == "tf" and plan.mode in ("sharded", "ps"):
        return {"trainers": n, "servers": n + 1, "launchers": 0}  # N workers; N ps + the chief
    return {"trainers": n, "servers": 0, "launchers": 1 if scenario.framework == "torch" else 0}  # torchrun


def _threads_per_process(scenario: Scenario, plan: Any, cores: int) -> int:
    if plan.mode == "threads":
        return plan.threads
    if plan.distributed:
        return scenario.device.threads or 1  # parallel/run.py: one thread per process unless --threads
    return scenario.device.threads or cores  # 0: the framework's default, one per core


def check_cores(scenario: Scenario, allow_oversubscribe: bool = False, cores: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """Busy threads against the cores available; UsageError beyond OVERSUBSCRIBE_FACTOR x cores."""
    plan = _plan(scenario)
    cores = cores or available_cores()
    n = cores["cores"]
    procs = _processes(scenario, plan)
    threads = _threads_per_process(scenario, plan, n)
    if threads > MAX_THREADS:
        raise UsageError(f"--threads / --parallel {clip(scenario.parallel)}: {threads} threads per process; "
                         f"accepted: at most {MAX_THREADS}")
    busy = procs["trainers"] * threads
    cap = OVERSUBSCRIBE_FACTOR * n
    out = {"cores": n, "cores_source": cores["source"], "processes": procs, "threads_per_process": threads,
           "busy_threads": busy, "cap": cap, "oversubscribed": busy > cap, "allow_oversubscribe": allow_oversubscribe}
    if busy > cap and not allow_oversubscribe:
        if plan.distributed:
            what = (f"--parallel {clip(scenario.parallel)}: {procs['trainers']} processes x {threads} thread(s) "
                    f"= {busy} busy threads")
            fix = "fewer processes or --threads"
        elif plan.mode == "threads":
            what, fix = f"--parallel {clip(scenario.parallel)}: {busy} threads", "fewer threads"
        else:
            what, fix = f"--threads {threads}: {busy} threads", "a lower --threads (0 = one per core)"
        raise UsageError(f"{what} on {n} available core(s) ({cores['source']}); at most {OVERSUBSCRIBE_FACTOR} x "
                         f"cores = {cap}: use {fix}, or pass --oversubscribe for a deliberate (e.g. multi-node) run")
    return out


# ------------------------------------------------------------------------------------------------
# Rules the distributed workers would otherwise find after launch


def check_parallel(scenario: Scenario) -> None:
    """Everything about a ``--parallel`` value that can be known before a process starts."""
    plan = _plan(scenario)
    if not plan.distributed:
        return
    from recsys_impls.parallel import faults
    from recsys_impls.parallel.spec import check_supported

    check_supported(plan, scenario.framework, scenario.device.device)
    faults.check_supported(scenario.framework, plan.mode, plan.sharding, scenario.straggler, scenario.balance)
    n, t, spec = plan.world_size, scenario.train, clip(scenario.parallel)
    if t.batch_size % n:
        lower, upper = t.batch_size // n * n, (t.batch_size // n + 1) * n
        near = f"{lower} or {upper}" if lower else str(upper)
        raise UsageError(f"--batch-size {t.batch_size} with --parallel {spec}: the global batch must be divisible "
                         f"by the {n} processes (each trains on batch/{n} samples); e.g. --batch-size {near}")
    if t.eval_samples < n:
        raise UsageError(f"--eval-samples {t.eval_samples} with --parallel {spec}: each of the {n} processes "
                         f"evaluates a slice; give at least {n}")
    sharded = plan.mode in ("sharded", "ps")
    if sharded and scenario.compression not in ("", "none"):
        from recsys_impls.compression.spec import sharding_refusal

        why = sharding_refusal(scenario.compression, scenario.framework)
        if why:
            raise ScenarioUnsupported(f"--compression {clip(scenario.compression)} with --parallel {spec}: {why}; "
                                      f"use --parallel ddp:N{' or mwms:N' if scenario.framework == 'tf' else ''} "
                                      "(data parallel)")
    if sharded and scenario.device.precision != "fp32":
        raise ScenarioUnsupported(f"--parallel {spec}: sharded embeddings run in fp32 only (--precision fp32)")
    if sharded and scenario.framework == "tf" and scenario.device.compile != "none":
        raise ScenarioUnsupported(f"--parallel {spec}: TensorFlow ps sharding runs without XLA (--compile none)")
    if plan.mode == "sharded" and plan.sharding == "column-wise" and scenario.model.embedding_dim % n:
        raise ScenarioUnsupported(f"--parallel {spec}: column-wise sharding needs embedding_dim "
                                  f"({scenario.model.embedding_dim}) divisible by the {n} processes")
    if plan.mode == "sharded" and plan.sharding == "column-wise" and scenario.compression not in ("", "none"):
        from recsys_impls.compression.layouts import table_groups
        from recsys_impls.compression.spec import parse_compression

        groups = table_groups(scenario.model, parse_compression(scenario.compression))
        odd = sorted({g.shape[1] for gs in groups for g in gs if g.table and g.shape[1] % n})
        if odd:  # a sharded compressed stage's TorchRec tables have the layout's widths (mixed-dim: per feature)
            raise ScenarioUnsupported(f"--parallel {spec} with --compression {scenario.compression}: column-wise "
                                      f"sharding needs every table width divisible by the {n} processes; "
                                      f"{', '.join(map(str, odd))} are not")


# ------------------------------------------------------------------------------------------------
# Paths


def check_json_path(path: Any) -> dict[str, Any]:
    """The record's output file must be writable now, not found out after the run.

    A new file is created and removed again; an existing one is opened for append (never truncated) and
    given a zero-byte write, which fails where a real write would (/dev/full, /proc files)."""
    if not isinstance(path, str) or not path.strip():
        raise UsageError(f"--json {path!r}: empty; accepted: a path to a file to write the record to")
    where = f"--json {clip(path)}"
    if "\x00" in path:
        raise UsageError(f"{where}: contains a NUL byte; accepted: a path to a file")
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise UsageError(f"{where}: a part of the path is a file, not a folder") from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot be used ({exc.strerror})") from None
    if st is None:
        parent = Path(path).parent
        if not parent.is_dir():
            raise UsageError(f"{where}: folder {clip(str(parent.resolve()))} does not exist")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise UsageError(f"{where}: cannot create a file there ({exc.strerror})") from None
        try:
            os.write(fd, b"")
        finally:
            os.close(fd)
            os.unlink(path)
        return {"path": path, "kind": "new file"}
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise UsageError(f"{where}: is a directory; accepted: a file path, e.g. {clip(path.rstrip('/'))}/record.json")
    if stat.S_ISREG(mode):
        flags, kind = os.O_WRONLY | os.O_APPEND, "existing file (overwritten)"
    elif stat.S_ISCHR(mode):
        flags, kind = os.O_WRONLY, "character device"
    elif stat.S_ISFIFO(mode):
        flags, kind = os.O_WRONLY | os.O_NONBLOCK, "pipe"
    else:
        raise UsageError(f"{where}: is a socket or block device; accepted: a file path")
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        why = "no process reads the pipe" if kind == "pipe" and exc.errno == 6 else exc.strerror
        raise UsageError(f"{where}: cannot be written ({why})") from None
    try:
        os.write(fd, b"")
    except OSError as exc:
        raise UsageError(f"{where}: cannot be written ({exc.strerror})") from None
    finally:
        os.close(fd)
    return {"path": path, "kind": kind}


def check_data(scenario: Scenario) -> dict[str, Any]:
    """``--data``: a readable file or pipe (config.check_data_source), the Criteo TSV shape, and no pipe
    for runs that read the data more than once."""
    from recsys_impls.config import check_data_source

    source = scenario.data.source
    check_data_source(source)
    if source in ("synthetic", "movielens"):
        return {"source": source}
    from recsys_impls.data.criteo_tsv import NUM_CAT, NUM_DENSE

    m = scenario.model
    if m.num_dense != NUM_DENSE or m.num_tables != NUM_CAT:
        raise UsageError(
            f"--data {clip(source)}: a Criteo TSV has {NUM_DENSE} dense and {NUM_CAT} categorical columns but the "
            f"model has num_dense = {m.num_dense} and {m.num_tables} tables; set num_dense = {NUM_DENSE} and give "
            f"{NUM_CAT} table_sizes")
    pipe = is_pipe(source)
    if pipe and _plan(scenario).distributed:
        raise UsageError(f"--data {clip(source)}: a pipe can be read once, but every process of --parallel "
                         f"{clip(scenario.parallel)} reads the data; give a regular file")
    return {"source": source, "kind": "pipe" if pipe else "file"}


# ------------------------------------------------------------------------------------------------
# Memory


def _data_shape(scenario: Scenario) -> tuple[int, list[int], float]:
    """(num_dense, table rows, ids per sample) of the data the run will load."""
    if scenario.data.source == "movielens":
        per = MOVIELENS["rows"] // MOVIELENS["tables"]
        return MOVIELENS["dense"], [per] * MOVIELENS["tables"], float(MOVIELENS["ids_per_sample"])
    m = scenario.model
    rows = list(m.capped_table_sizes())
    if scenario.data.source != "synthetic":
        return m.num_dense, rows, float(m.num_tables)
    return m.num_dense, rows, float(sum(m.ids_per_table()))  # synthetic bags: their mean sizes


def streams(scenario: Scenario) -> bool:
    """Whether the run draws its training batches on demand (runner path, synthetic data) instead of
    loading steps x batch_size samples first."""
    return scenario.data.source == "synthetic" and not _plan(scenario).distributed


def staged_train_batches(scenario: Scenario, batch_bytes: int) -> int:
    """Training batches a streaming run holds staged at once: the compute-only rotation (``ROTATION_BYTES``
    of them, at most the steps) or, end-to-end, the queue plus the one in production and the one training."""
    steps = scenario.train.steps
    if scenario.train.input_mode == "end-to-end":
        return min(steps, PREFETCH_DEPTH + 2)
    return max(1, min(steps, ROTATION_BYTES // max(batch_bytes, 1)))


def _samples(scenario: Scenario) -> tuple[int, int]:
    t = scenario.train
    n_train, n_eval = t.steps * t.batch_size, t.eval_samples
    source = scenario.data.source
    if source == "movielens":
        n = MOVIELENS["ratings"]
        n_eval = min(n_eval, int(n * MOVIELENS["eval_fraction"]))
        return min(n_train, n - n_eval), n_eval
    if source != "synthetic" and not is_pipe(source):
        try:
            with open(source, "rb") as fh:
                gz = fh.read(2) == b"\x1f\x8b"
            lines = os.stat(source).st_size // MIN_TSV_LINE_BYTES + 1
        except OSError:
            gz, lines = True, 0
        if not gz and lines < n_train + n_eval:  # a short plain file: at most this many lines to hold
            n_eval = min(n_eval, lines)
            n_train = min(n_train, lines)
    return n_train, n_eval


def _mlp_params(scenario: Scenario) -> int:
    """Parameters of the model's dense architecture (MLPs, and cross layers where it has them)."""
    from math import prod

    m = scenario.model
    return sum(prod(shape) for name, shape in m.spec.param_shapes(m).items() if not name.startswith("emb."))


# Values of a table drawn at a time by the seeded initialisation (models.ranking.TABLE_CHUNK_VALUES; this
# module stays numpy-free, a test keeps the two equal).
INIT_CHUNK_VALUES = 1 << 22


def streams_initial_tables(scenario: Scenario, plan: Any) -> bool:
    """Whether the model fills its plain tables in place from the seeded chunks (``_load_initial`` of
    torch_impl.model and distributed_sharded, ``_initial_table_chunks`` of tf_impl.model) instead of
    loading a full numpy copy."""
    if scenario.compression not in ("", "none") or scenario.model.spec.initial_table_chunks is None:
        return False
    if scenario.framework == "tf":
        return not plan.distributed  # the plain single-process model only
    return True  # the fused tables, DDP replicas and TorchRec's shards all fill from the chunks


def stage_fraction(scenario: Scenario) -> float:
    """Bytes of the embedding stage a compressed run trains (its layout's float32 parameter groups:
    hashed, QR, mixed-dim, TT-Rec) over those of the plain tables; 1.0 for the plain layout (post-training
    methods train plain tables). Imports the layout registry (numpy) only for a layout method."""
    if scenario.compression in ("", "none"):
        return 1.0
    from recsys_impls.compression.spec import parse_compression

    plan = parse_compression(scenario.compression)
    if plan.layout == "plain":
        return 1.0
    from recsys_impls.compression.layouts import table_groups

    m = scenario.model
    plain = sum(m.table_sizes) * m.embedding_dim
    stage = sum(g.shape[0] * g.shape[1] for groups in table_groups(m, plan) for g in groups)
    return stage / plain if plain else 1.0


def _initial_values_bytes(scenario: Scenario, plan: Any, table_bytes: int) -> int:
    """Host bytes the seeded initial values take beside the tables while they load: a chunk (float64 as
    drawn, float32, and the framework's copy) when streamed, else the whole float32 copy and a chunk."""
    chunk = (8 + 4 + 4) * INIT_CHUNK_VALUES
    return chunk if streams_initial_tables(scenario, plan) else table_bytes + chunk


def estimate_memory(scenario: Scenario) -> dict[str, Any]:
    """Peak host bytes of the run, by part and by process (see the module docstring for the model)."""
    plan = _plan(scenario)
    procs = _processes(scenario, plan)
    n = procs["trainers"]
    dense, rows, ids = _data_shape(scenario)
    m, t = scenario.model, scenario.train
    f = len(rows)
    dim = m.embedding_dim
    n_train, n_eval = _samples(scenario)
    sample = dense * 4 + ids * 8 + f * 4 + 4  # dense f32, ids i64, lengths i32, label f32
    staged_sample = sample + f * 8  # plus the per-bag offsets the frameworks build
    table_bytes = sum(rows) * dim * 4
    plain_table_bytes = table_bytes
    table_bytes = int(table_bytes * stage_fraction(scenario))  # a compressed layout's trained groups
    adagrad = t.optimizer == "adagrad"
    mlp = _mlp_params(scenario) * 4
    local_batch = t.batch_size // n if plan.distributed else t.batch_size
    cross = m.cross_layers * (3 * m.interaction_dim + m.cross_rank) if m.arch == "dcnv2" else 0
    act_per_sample = 4 * (dense + sum(m.bottom_mlp) + (f + 1) * dim + (f + 1) ** 2 + m.interaction_dim
                          + sum(m.top_mlp) + cross) + ids * dim * 4
    if scenario.data.source == "synthetic":
        largest = sorted((r for r in rows if r <= SYNTH_LARGE_TABLE_ROWS), reverse=True) or [0]
        source_bytes = (SYNTH_KEPT_PER_ROW * sum(largest) + SYNTH_VECTOR_PER_ROW * sum(largest[:SYNTH_PAIRED_TABLES])
                        + SYNTH_BUILD_PER_ROW * largest[0] + 2 * 32768 * sample)  # + the calibration pilot
    elif scenario.data.source == "movielens":
        source_bytes = MOVIELENS["parse_bytes"]
    else:
        source_bytes = TSV_READER_BYTES
    shard = n if plan.mode in ("sharded", "ps") else 1
    on_device = scenario.device.device != "cpu"
    streamed = streams(scenario)
    if streamed:  # one batch for the data facts; the staged rotation or queue instead of the whole split
        train_data = t.batch_size * sample
        staged_train = staged_train_batches(scenario, t.batch_size * sample) * t.batch_size * staged_sample
    else:
        # the split as loaded, and its per-step batches (every rank of a distributed run loads the whole
        # split, cuts it into global batches and keeps its slice of each)
        train_data = 2 * n_train * sample
        staged_train = n_train * staged_sample // n
    staged = staged_train + n_eval * staged_sample // n
    activations = ACTIVATION_COPIES * local_batch * act_per_sample
    trainer = {
        "framework": PYTHON_BYTES + FRAMEWORK_BYTES.get(scenario.framework, 0),
        "data_source": source_bytes,
        "train_data": train_data,
        "eval_data": n_eval * sample * 2,
        "staged_batches": 0 if on_device else staged,
        "initial_values": _initial_values_bytes(scenario, plan, table_bytes),
        "tables": 0 if on_device else table_bytes // shard,
        "optimizer_state": 0 if on_device or not adagrad else table_bytes // shard + mlp,
        "mlp": mlp * 2,
        "activations": 0 if on_device else activations,
        # a compressed run also holds the trained weights' copy and their stored (compressed) form
        "compression_copies": 2 * table_bytes if scenario.compression not in ("", "none") else 0,
    }
    device_parts = {
        "tables": table_bytes // shard, "optimizer_state": table_bytes // shard if adagrad else 0,
        "mlp": mlp * 2 + (mlp if adagrad else 0), "activations": activations, "staged_batches": staged,
    } if on_device else None
    if scenario.framework == "tf" and plan.mode in ("sharded", "ps"):
        # the chief loads and stages the data; the workers run steps; the ps hold the table shards
        chief = dict(trainer, tables=0, optimizer_state=0)
        worker = {"framework": PYTHON_BYTES + FRAMEWORK_BYTES["tf"], "activations": trainer["activations"]}
        ps = {"framework": PYTHON_BYTES + FRAMEWORK_BYTES["tf"], "tables": trainer["tables"],
              "optimizer_state": trainer["optimizer_state"]}
        per_kind = {"chief": (1, chief), "worker": (n, worker), "ps": (n, ps)}
    else:
        per_kind = {"trainer": (n, trainer)}
        if procs["launchers"]:
            per_kind["torchrun"] = (1, {"framework": PYTHON_BYTES + FRAMEWORK_BYTES["torch"]})
    if plan.distributed:
        per_kind["parent"] = (1, {"framework": PYTHON_BYTES})
    components: dict[str, int] = {}
    for count, parts in per_kind.values():
        for k, v in parts.items():
            components[k] = components.get(k, 0) + count * int(v)
    total = sum(components.values())
    return {
        "bytes": total,
        "components": dict(sorted(components.items(), key=lambda kv: -kv[1])),
        "processes": {kind: {"count": count, "bytes_each": int(sum(parts.values()))}
                      for kind, (count, parts) in per_kind.items()},
        "train_samples": n_train, "eval_samples": n_eval, "streamed_input": streamed,
        "input_mode": t.input_mode, "table_rows": sum(rows), "table_bytes": plain_table_bytes,
        "embedding_stage_bytes": table_bytes,
        "device": ({"bytes": sum(device_parts.values()), "components": device_parts, "per_process": True}
                   if device_parts else None),
        "device_memory": "estimated per process" if on_device else "cpu run: everything is host memory",
    }


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


_HINTS = {
    "train_data": "--steps x --batch-size", "staged_batches": "--steps x --batch-size", "eval_data": "--eval-samples",
    "activations": "--batch-size", "tables": "table_sizes x embedding_dim (or --max-rows)",
    "initial_values": "table_sizes (or --max-rows)", "optimizer_state": "table_sizes (or --optimizer sgd)",
    "data_source": "table_sizes (or --max-rows)", "compression_copies": "table_sizes (or --max-rows)",
    "framework": "the number of processes", "mlp": "the MLP widths",
}


def available_device_memory(device: str, nvml: Any | None = None) -> dict[str, Any]:
    """Free bytes on the CUDA device a run will use (NVML, ``cuda:N`` among the visible devices), or None
    with the reason. NVML is imported lazily and only for a device run."""
    from recsys_impls.measure.nvml import open_nvml

    mod, handles, reason = open_nvml(nvml)
    if mod is None:
        return {"bytes": None, "source": f"not checked: {reason}"}
    try:
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if not 0 <= index < len(handles):
            return {"bytes": None, "source": f"not checked: {device} is not among the {len(handles)} visible GPU(s)"}
        free = int(mod.nvmlDeviceGetMemoryInfo(handles[index][1]).free)
        return {"bytes": free, "source": f"NVML free memory of GPU {handles[index][0]}"}
    except Exception as exc:  # noqa: BLE001 - unknown free memory is not a reason to refuse
        return {"bytes": None, "source": f"not checked: NVML {type(exc).__name__}: {exc}"[:200]}
    finally:
        try:
            mod.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110
            pass


def _refuse(what: str, total: int, components: dict[str, int], avail: dict[str, Any]) -> UsageError:
    top = sorted(components.items(), key=lambda kv: -kv[1])[:3]
    parts = ", ".join(f"{k} {_size(v)}" for k, v in top)
    levers = ", ".join(dict.fromkeys(_HINTS.get(k, k) for k, _ in top[:2]))
    return UsageError(f"estimated peak {what} {_size(total)} ({parts}) exceeds the {_size(avail['bytes'])} "
                      f"available ({avail['source']}); lower {levers}")


def check_memory(scenario: Scenario, available: dict[str, Any] | None = None,
                 device_available: dict[str, Any] | None = None) -> dict[str, Any]:
    """The estimate, or a UsageError naming it, what is available, and the largest parts: host memory
    always, and device memory for a CUDA run (per process, against the device's free memory)."""
    est = estimate_memory(scenario)
    avail = available or available_memory()
    est["available_bytes"], est["available_source"] = avail["bytes"], avail["source"]
    if avail["bytes"] is not None and est["bytes"] > avail["bytes"]:
        raise _refuse("memory", est["bytes"], est["components"], avail)
    dev = est.get("device")
    if dev is not None and scenario.device.device.startswith("cuda"):
        d_avail = device_available or available_device_memory(scenario.device.device)
        dev["available_bytes"], dev["available_source"] = d_avail["bytes"], d_avail["source"]
        if d_avail["bytes"] is not None and dev["bytes"] > d_avail["bytes"]:
            raise _refuse(f"device memory on {scenario.device.device}", dev["bytes"], dev["components"], d_avail)
    return est


def check(scenario: Scenario, json_path: str | None = None, allow_oversubscribe: bool = False) -> dict[str, Any]:
    """Every limit, before any allocation or process start; returns the estimate for record["preflight"].

    Raises UsageError / ScenarioUnsupported (one line, exit code 2) on the first problem.
    """
    start = time.perf_counter()
    scenario = scenario.validate()
    timeout = parallel_timeout_s()
    check_parallel(scenario)
    data = check_data(scenario)
    out_file = check_json_path(json_path) if json_path is not None else None
    cpu = check_cores(scenario, allow_oversubscribe)
    mem = check_memory(scenario)
    return {
        "memory": mem, "cpu": cpu, "data": data, "json": out_file,
        "parallel_timeout_s": timeout, "parallel_timeout_env": PARALLEL_TIMEOUT_ENV,
        "oversubscribe_factor": OVERSUBSCRIBE_FACTOR,
        "seconds": time.perf_counter() - start,
    }
