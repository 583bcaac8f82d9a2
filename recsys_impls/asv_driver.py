"""`python -m recsys_impls bench`: asv in the current environment, then the HTML report.

Does what a user would otherwise type by hand: register the machine (asv needs a machine record
before the first run; its record has no GPU field, so the name carries the GPU), run the suite
against HEAD with ``--python=same`` (results are saved only when asv knows the commit, hence
``--set-commit-hash``), keep the environment fingerprint beside the results, build the report.
``quick`` selects the suite's quick subset (RECSYS_BENCH_QUICK=1), not asv's ``--quick``: that would
time each benchmark once; the ``time_*`` classes set their own sample counts instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from recsys_impls import signals
from recsys_impls.benchsupport import QUICK_ENV, failed_records, records_dir_for, repo_root
from recsys_impls.errors import UsageError


def _git_head(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise UsageError(f"bench: {root} is not a git checkout with a commit; asv needs one") from None
    return out.stdout.strip()


def run(quick: bool = True, machine: str | None = None, bench: str | None = None, report: bool = True,
        verbose: bool = False) -> int:
    from recsys_impls.measure.fingerprint import environment_fingerprint, machine_name

    check_bench_regex(bench)
    root = repo_root()
    if not (root / "asv.conf.json").is_file():
        raise UsageError(f"bench: no asv.conf.json in {root}; run from the project checkout")
    machine = machine or machine_name()
    commit = _git_head(root)
    # asv sets ASV_COMMIT only in environments it builds; with --python=same the records need it too.
    env = dict(os.environ, RECSYS_MACHINE=machine, ASV_COMMIT=commit)
    # asv drops PYTHONPATH from benchmark processes; ASV_PYTHONPATH puts this checkout's package first,
    # so the code benchmarked is the commit recorded even where another checkout is installed.
    env["ASV_PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("ASV_PYTHONPATH")]))
    if quick:
        env[QUICK_ENV] = "1"
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes", "--machine", machine], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    fp_dir = root / ".asv" / "records" / machine
    fp_dir.mkdir(parents=True, exist_ok=True)
    (fp_dir / "fingerprint.json").write_text(json.dumps(environment_fingerprint(), indent=1, sort_keys=True))
    cmd = [*asv, "run", "--python=same", "--set-commit-hash", commit, "--machine", machine]
    if verbose:  # every benchmark process's stderr, TensorFlow's start-up lines included
        cmd.append("--show-stderr")
    if bench:
        cmd += ["--bench", bench]
    print("$", " ".join(cmd[2:]), flush=True)
    # asv goes on past a failing benchmark and saves the others; its exit code says one failed. Its own
    # session: an interrupt ends asv and its benchmark processes through the signal policy.
    started = time.time()
    status = signals.run_child(cmd, cwd=root, env=env)
    failed = failed_records(records_dir_for(root, machine, commit), since=started - 1.0)
    if failed:
        print(f"bench: {len(failed)} scenario(s) failed; the others ran and were saved:", file=sys.stderr)
        for name, error in failed:
            print(f"  {name}: {error.splitlines()[0][:300] if error else ''}", file=sys.stderr)
    elif status != 0:
        print(f"bench: asv exited with code {status}: a benchmark failed", file=sys.stderr)
    if status != 0 and not verbose:
        # Without --show-stderr asv marks a failure "failed" but prints the output of only some kinds.
        print("bench: a failed benchmark's output: rerun it with "
              "`python -m recsys_impls bench --verbose --bench REGEX`", file=sys.stderr, flush=True)
    _annotate(root, machine, commit)
    if report:
        built = subprocess.run([sys.executable, "-m", "reports", "build"], cwd=root, env=env).returncode
        if built != 0 and not (failed or status):
            return built
    return 1 if failed or status != 0 else 0


def check_bench_regex(pattern: str | None) -> None:
    """asv takes --bench as a regular expression: a bad one is one line here, not asv's traceback."""
    if pattern is None:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"bench --bench {pattern!r}: not a valid regular expression ({exc}); it is matched "
                         "against benchmark names, e.g. --bench 'bench_core' or --bench 'Quality.track_auc'") from None


def _annotate(root: Path, machine: str, commit: str) -> None:
    """Flag, in the records themselves, figures that asv and the record measured differently (> 2x)."""
    from reports.consistency import annotate_records

    if not (root / ".asv" / "results" / machine).is_dir():
        return  # asv saved nothing for this machine (e.g. every benchmark was filtered out)
    try:
        flags = annotate_records(root / ".asv" / "results", root / ".asv" / "records", machine, commit)
    except UsageError as exc:
        print(f"bench: consistency check skipped: {exc}", file=sys.stderr)
        return
    for flag in flags:
        print(f"bench: flag {flag['figure']}: {flag['detail'][:200]}", file=sys.stderr)
