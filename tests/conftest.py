"""Session-wide test settings."""

from __future__ import annotations

import os
import shutil
import tempfile

_OWN_PEAKS_DIR: list[str] = []


def pytest_configure(config) -> None:
    """Machine peaks measured during the tests go to a folder of the session's own, never the user's cache
    (measured once per framework and thread count, then reused by every test of the session)."""
    if "RECSYS_PEAKS_DIR" not in os.environ:
        path = tempfile.mkdtemp(prefix="recsys-test-peaks-")
        _OWN_PEAKS_DIR.append(path)
        os.environ["RECSYS_PEAKS_DIR"] = path


def pytest_unconfigure(config) -> None:
    for path in _OWN_PEAKS_DIR:
        shutil.rmtree(path, ignore_errors=True)
