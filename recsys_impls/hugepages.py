"""Transparent huge pages for the process's large allocations (the embedding tables above all).

Why: where the kernel's THP mode is ``madvise`` (the default of many distributions and cloud images), a
table of a few GB gets 4 KiB pages unless the process asks otherwise, and then nearly every random row
lookup also misses the TLB; under a hypervisor's nested paging that page walk costs about as much as the
row's own DRAM access. On the 2-core EPYC VM this suite is developed on, pooled lookups into a 2.2 GB
table ran 1.9-2.1x faster with 2 MiB pages (same ids, interleaved, 4 samples each).

How: glibc's ``glibc.malloc.hugetlb=1`` tunable makes malloc advise THP (``madvise(MADV_HUGEPAGE)``) for
the memory it maps. PyTorch's and TensorFlow's CPU allocators both allocate through malloc, so both
frameworks get the same pages and a comparison between them stays fair. glibc reads tunables only when a
process starts, so ``python -m recsys_impls`` re-executes itself once with the tunable set; the processes
it starts (distributed workers, asv and its benchmark processes) inherit it.

``RECSYS_HUGE_PAGES=off`` keeps 4 KiB pages (to measure what huge pages change). Every record says what was
asked for and what the process got (``record_section``). Nothing here imports a framework.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SETTING_ENV = "RECSYS_HUGE_PAGES"
SETTINGS = ("on", "off")
TUNABLES_ENV = "GLIBC_TUNABLES"
TUNABLE = "glibc.malloc.hugetlb=1"
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")
_REEXEC_MARK = "RECSYS_HUGE_PAGES_REEXEC"


def requested(env: Mapping[str, str] = os.environ) -> bool:
    """Whether huge pages are asked for: ``RECSYS_HUGE_PAGES`` is ``on`` (the default) or ``off``."""
    value = env.get(SETTING_ENV, "on").strip().lower() or "on"
    if value not in SETTINGS:
        from recsys_impls.errors import UsageError

        raise UsageError(f"{SETTING_ENV}={env.get(SETTING_ENV)!r}: accepted: {', '.join(SETTINGS)}")
    return value == "on"


def thp_mode(path: Path = THP_ENABLED) -> str | None:
    """The kernel's THP mode, the bracketed word of ``[always] madvise never``; None where unknown."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def tunable_active(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process's environment carries the malloc tunable (glibc read it at start)."""
    return TUNABLE in env.get(TUNABLES_ENV, "").split(":")


def with_tunable(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` with the malloc tunable added to any tunables already there."""
    out = dict(env)
    if not tunable_active(out):
        out[TUNABLES_ENV] = ":".join(filter(None, [out.get(TUNABLES_ENV, ""), TUNABLE]))
    return out


def needs_reexec(env: Mapping[str, str] = os.environ, mode: str | None = None) -> bool:
    """True where huge pages are asked for, the kernel gives them only on request, and this process
    started without the tunable (and has not been re-executed for it already)."""
    mode = thp_mode() if mode is None else mode
    return (requested(env) and mode == "madvise" and not tunable_active(env)
            and not sys.platform.startswith("win") and env.get(_REEXEC_MARK) != "1")


def reexec_if_needed() -> None:
    """Replace this process with the same command line and the tunable set (see the module docstring).
    Returns only where no re-execution is needed or possible."""
    if not needs_reexec():
        return
    argv = list(getattr(sys, "orig_argv", [])) or [sys.executable, *sys.argv]
    env = with_tunable(os.environ)
    env[_REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:]], env)
    except OSError:
        return  # the run goes on with 4 KiB pages; the record says so


def anon_huge_bytes(path: Path = Path("/proc/self/smaps_rollup")) -> int | None:
    """Bytes of this process's anonymous memory now backed by huge pages (``AnonHugePages``)."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def record_section(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """What was asked for and what the process got, for the record."""
    mode = thp_mode()
    active = tunable_active(env)
    effective = mode == "always" or (mode == "madvise" and active)
    why = {
        "always": "the kernel backs every large anonymous mapping with huge pages",
        "madvise": (f"malloc advises huge pages ({TUNABLE})" if active else
                    f"4 KiB pages: the process started without {TUNABLE}"),
        "never": "the kernel gives no transparent huge pages (THP mode never)",
    }.get(mode or "", "THP mode unknown on this system")
    return {"requested": requested(env), "thp_mode": mode, "malloc_tunable": active, "effective": effective,
            "anon_huge_bytes": anon_huge_bytes(), "note": why}


def main() -> int:
    """``python -m recsys_impls.hugepages``: print ``GLIBC_TUNABLES=...`` for a shell to export where this
    process would re-execute for huge pages (shell scripts that start asv or workers themselves), else nothing."""
    try:
        if needs_reexec():
            print(f"{TUNABLES_ENV}={with_tunable(os.environ)[TUNABLES_ENV]}")
    except Exception as exc:  # noqa: BLE001 - one line for the calling script
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
