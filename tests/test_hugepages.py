"""Huge pages: the setting, the kernel's mode, the tunable, the re-execution and what the record says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_impls import hugepages as hp
from recsys_impls.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def test_setting_defaults_on_and_rejects_other_words():
    assert hp.requested({}) is True
    assert hp.requested({hp.SETTING_ENV: "OFF"}) is False
    with pytest.raises(UsageError, match="accepted: on, off"):
        hp.requested({hp.SETTING_ENV: "yes"})


@pytest.mark.parametrize(("text", "mode"), [
    ("always [madvise] never\n", "madvise"), ("[always] madvise never", "always"),
    ("always madvise [never]", "never"), ("garbled", None)])
def test_thp_mode_is_the_bracketed_word(tmp_path, text, mode):
    f = tmp_path / "enabled"
    f.write_text(text)
    assert hp.thp_mode(f) == mode
    assert hp.thp_mode(tmp_path / "missing") is None


def test_tunable_is_added_beside_existing_tunables_once():
    env = hp.with_tunable({hp.TUNABLES_ENV: "glibc.malloc.arena_max=2"})
    assert env[hp.TUNABLES_ENV] == f"glibc.malloc.arena_max=2:{hp.TUNABLE}"
    assert hp.with_tunable(env)[hp.TUNABLES_ENV] == env[hp.TUNABLES_ENV]
    assert hp.with_tunable({})[hp.TUNABLES_ENV] == hp.TUNABLE


def test_reexec_only_where_the_kernel_needs_asking():
    assert hp.needs_reexec({}, mode="madvise")
    assert not hp.needs_reexec({}, mode="always")
    assert not hp.needs_reexec({}, mode="never")
    assert not hp.needs_reexec({hp.SETTING_ENV: "off"}, mode="madvise")
    assert not hp.needs_reexec({hp.TUNABLES_ENV: hp.TUNABLE}, mode="madvise")


def test_anon_huge_bytes_reads_smaps_rollup(tmp_path):
    f = tmp_path / "smaps_rollup"
    f.write_text("Rss:  100 kB\nAnonHugePages:    4096 kB\n")
    assert hp.anon_huge_bytes(f) == 4096 * 1024
    assert hp.anon_huge_bytes(tmp_path / "missing") is None


def _child_env(**extra: str) -> dict[str, str]:
    import os

    drop = (hp.TUNABLES_ENV, hp.SETTING_ENV, "RECSYS_HUGE_PAGES_REEXEC")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(ROOT)
    return env | extra


@pytest.mark.skipif(hp.thp_mode() != "madvise", reason="the re-execution happens only where THP mode is madvise")
def test_cli_reexecutes_with_the_tunable_and_a_bad_setting_is_one_line(tmp_path):
    """The CLI entry point restarts itself with the tunable (the child sees it in its environment); a bad
    RECSYS_HUGE_PAGES value is one line and exit 2."""
    probe = ("import os, runpy, sys; sys.argv = ['recsys_impls', 'list']; "
             "from recsys_impls import hugepages as hp; hp.reexec_if_needed(); "
             "print(json.dumps([hp.tunable_active(), os.environ.get('RECSYS_HUGE_PAGES_REEXEC')]))")
    out = subprocess.run([sys.executable, "-c", "import json; " + probe], capture_output=True, text=True,
                         env=_child_env(), timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True, "1"], out.stderr
    bad = subprocess.run([sys.executable, "-m", "recsys_impls", "list"], capture_output=True, text=True,
                         env=_child_env(RECSYS_HUGE_PAGES="maybe"), timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "RECSYS_HUGE_PAGES" in bad.stderr


def test_record_section_says_what_the_process_got():
    sec = hp.record_section({hp.TUNABLES_ENV: hp.TUNABLE})
    assert set(sec) == {"requested", "thp_mode", "malloc_tunable", "effective", "anon_huge_bytes", "note"}
    assert sec["malloc_tunable"] is True
    assert sec["effective"] == (sec["thp_mode"] in ("always", "madvise"))
    off = hp.record_section({hp.SETTING_ENV: "off"})
    assert off["requested"] is False and off["malloc_tunable"] is False
    assert off["effective"] == (off["thp_mode"] == "always")
