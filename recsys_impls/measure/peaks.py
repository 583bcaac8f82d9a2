"""Measured machine peaks (memory bandwidth, GEMM FLOP/s) per framework, cached per machine.

The roofline of a benchmark record needs this machine's ceilings as the framework itself reaches them.
Measuring takes seconds, so entries are cached in ``<cache_dir>/peaks-<machine>.json``, keyed
``framework/device/threads`` ("default" when the framework's own thread count is used). The cache folder is
``$RECSYS_PEAKS_DIR`` or ``~/.cache/recsys-bench``; the machine is ``$RECSYS_MACHINE`` when set (the name the
results store uses) or the fingerprint's ``machine_name``.

An entry: mem_copy_bytes_per_s, mem_triad_bytes_per_s, gemm_fp32_flops_per_s, gemm_bf16_flops_per_s,
gemm_tf32_flops_per_s (CUDA only, else None), median (the same figures' medians), gemm_n, llc_bytes,
array_bytes, samples, threads (in effect), framework, framework_version, device, measured_at, seconds,
method, quick (true for the rough ``RECSYS_PEAKS_QUICK=1`` measurement; such an entry only answers a quick
request). How they are measured: recsys_impls/measure/peakcore.py.

PyTorch is measured in this process (its thread count is set for the duration and restored); TensorFlow
in a fresh subprocess, because its thread pools are fixed once its runtime starts.

    python -m recsys_impls.measure.peaks [--refresh] [--framework torch,tf] [--threads N[,M]] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys_impls.errors import ScenarioUnsupported, UsageError

FRAMEWORKS = ("torch", "tf")
PACKAGES = {"torch": "torch", "tf": "tensorflow"}
SCHEMA = 1


def cache_dir_default() -> Path:
    env = os.environ.get("RECSYS_PEAKS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "recsys-bench"


def machine() -> str:
    if os.environ.get("RECSYS_MACHINE"):
        return os.environ["RECSYS_MACHINE"]
    from recsys_impls.measure.fingerprint import machine_name

    return machine_name()


def cache_path(cache_dir: Path | None = None, machine_name: str | None = None) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", machine_name or machine()).strip("-") or "host"
    return Path(cache_dir or cache_dir_default()) / f"peaks-{name}.json"


def _check(framework: str, device: str, threads: int | None) -> tuple[str, int | None]:
    """Validate one request; returns (normalised device, threads or None for the default)."""
    if framework not in FRAMEWORKS:
        raise UsageError(f"peaks: framework {framework!r}; accepted: {', '.join(FRAMEWORKS)}")
    if device == "cuda":
        device = "cuda:0"
    if not re.fullmatch(r"cpu|cuda:\d+", device):
        raise UsageError(f"peaks: device {device!r}; accepted: cpu, cuda, cuda:N")
    if framework == "tf" and device != "cpu":
        raise UsageError(f"peaks: device {device!r} for tf; TensorFlow peaks are measured on cpu only")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise UsageError(f"peaks: threads {threads!r}; must be a positive integer (0 or None: framework default)")
    return device, threads or None


def entry_key(framework: str, device: str, threads: int | None) -> str:
    return f"{framework}/{device}/{threads or 'default'}"


def measure(framework: str, device: str, threads: int | None) -> dict[str, Any]:
    """Measure one entry now (no cache). Tests replace this function."""
    from recsys_impls.measure import peakcore

    if framework == "torch":
        from recsys_impls.torch_impl.peaks import measure as torch_measure

        entry = torch_measure(threads, device, **(peakcore.QUICK if peakcore.quick_mode() else {}))
    else:
        entry = _tf_subprocess(threads)  # the subprocess inherits RECSYS_PEAKS_QUICK
    entry["quick"] = peakcore.quick_mode()
    return entry


def _tf_subprocess(threads: int | None) -> dict[str, Any]:
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "recsys_impls.tf_impl.peaks", "--threads", str(threads or 0)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"tf peaks subprocess exited {proc.returncode}: {tail}")
    return json.loads(lines[-1])


def package_version(framework: str) -> str | None:
    """The installed framework's version, from package metadata (no import)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(PACKAGES[framework])
    except importlib.metadata.PackageNotFoundError:
        return None


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"schema": SCHEMA, "entries": {}}
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        return {"schema": SCHEMA, "entries": {}}
    return data


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def machine_peaks(framework: str, device: str = "cpu", threads: int | None = None, refresh: bool = False,
                  cache_dir: Path | None = None) -> dict[str, Any]:
    """This machine's peaks for ``framework`` on ``device`` at ``threads`` (None/0: framework default):
    the cached entry, or a fresh measurement (always with ``refresh``, or when the installed framework
    version differs from the cached entry's) that is then cached."""
    device, threads = _check(framework, device, threads)
    path = cache_path(cache_dir)
    key = entry_key(framework, device, threads)
    version = package_version(framework)
    if not refresh:
        hit = _load(path)["entries"].get(key)
        from recsys_impls.measure.peakcore import quick_mode

        if isinstance(hit, dict) and hit.get("package_version") == version and bool(hit.get("quick")) == quick_mode():
            return hit
    result = measure(framework, device, threads)
    result["key"] = key
    result["package_version"] = version
    data = _load(path)  # re-read: another process may have added entries meanwhile
    data["schema"] = SCHEMA
    data["machine"] = path.stem.removeprefix("peaks-")
    data["entries"][key] = result
    _save(path, data)
    return result


def refresh_all(frameworks: Sequence[str], threads: Sequence[int | None] | int | None, device: str = "cpu",
                cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Measure (and cache) every framework x thread count; returns the entries in that order."""
    counts = [threads] if threads is None or isinstance(threads, int) else list(threads)
    for fw in frameworks:  # validate everything before spending seconds on the first measurement
        for t in counts:
            _check(fw, device, t)
    # TensorFlow's subprocess first: after an in-process torch measurement, torch's OpenMP workers keep
    # spinning for a while and took half the cores from the subprocess (TF 2-thread GEMM measured 112
    # instead of 211 GFLOP/s right after torch, on this 2-core machine).
    order = sorted(frameworks, key=lambda fw: fw != "tf")
    measured = {(fw, t): machine_peaks(fw, device, t, refresh=True, cache_dir=cache_dir)
                for fw in order for t in counts}
    return [measured[(fw, t)] for fw in frameworks for t in counts]


def _giga(v: float | None) -> str:
    return "-" if v is None else f"{v / 1e9:.1f}"


def table(entries: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of entries: GB/s and GFLOP/s."""
    head = ("key", "threads", "copy GB/s", "triad GB/s", "fp32 GFLOP/s", "tf32 GFLOP/s", "bf16 GFLOP/s", "seconds")
    rows = [head]
    for e in entries:
        rows.append((str(e.get("key", "")), str(e.get("threads")), _giga(e.get("mem_copy_bytes_per_s")),
                     _giga(e.get("mem_triad_bytes_per_s")), _giga(e.get("gemm_fp32_flops_per_s")),
                     _giga(e.get("gemm_tf32_flops_per_s")), _giga(e.get("gemm_bf16_flops_per_s")),
                     str(e.get("seconds", "-"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in rows)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _parse_list(flag: str, text: str, kind: type) -> list[Any]:
    items = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in items):
        raise UsageError(f"{flag} {text!r}: give a comma-separated list, e.g. {'torch,tf' if kind is str else '1,2'}")
    if kind is int:
        if not all(re.fullmatch(r"\d+", p) for p in items):
            raise UsageError(f"{flag} {text!r}: thread counts must be non-negative integers (0: framework default)")
        return [int(p) for p in items]
    return items


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python -m recsys_impls.measure.peaks", allow_abbrev=False,
                description="measure (or show the cached) memory bandwidth and GEMM peaks of this machine")
    p.add_argument("--refresh", action="store_true", help="measure again even when cached")
    p.add_argument("--framework", default="torch,tf", help="comma-separated: torch, tf (default both)")
    p.add_argument("--threads", default="0", help="comma-separated intra-op thread counts (0: framework default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (cuda: torch only)")
    p.add_argument("--cache-dir", default=None,
                   help="cache folder (default $RECSYS_PEAKS_DIR or ~/.cache/recsys-bench)")
    try:
        args = p.parse_args(argv)
        frameworks = _parse_list("--framework", args.framework, str)
        threads = [t or None for t in _parse_list("--threads", args.threads, int)]
        cache_dir = Path(args.cache_dir) if args.cache_dir else None
        if args.refresh:
            entries = refresh_all(frameworks, threads, args.device, cache_dir)
        else:
            for fw in frameworks:
                for t in threads:
                    _check(fw, args.device, t)
            entries = [machine_peaks(fw, args.device, t, cache_dir=cache_dir) for fw in frameworks for t in threads]
    except (UsageError, ScenarioUnsupported) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"machine peaks ({cache_path(cache_dir)}):")
    print(table(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
