"""Session-wide test settings."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_OWN_PEAKS_DIR: list[str] = []


def pytest_configure(config) -> None:
    """Machine peaks measured during the tests go to a folder of the session's own, never the user's cache
    (measured once per framework and thread count, then reused by every test of the session)."""
    if "RECSYS_PEAKS_DIR" not in os.environ:
        path = tempfile.mkdtemp(prefix="recsys-test-peaks-")
        _OWN_PEAKS_DIR.append(path)
        os.environ["RECSYS_PEAKS_DIR"] = path
    # Tests score rooflines for their structure, not their accuracy: the quick peaks take about a second
    # where the full measurement takes a minute per framework and thread count.
    os.environ.setdefault("RECSYS_PEAKS_QUICK", "1")


def pytest_unconfigure(config) -> None:
    for path in _OWN_PEAKS_DIR:
        shutil.rmtree(path, ignore_errors=True)


def _fixture_report(tmp_path_factory: pytest.TempPathFactory, store: str) -> Path:
    """The report built from tests/fixtures/asv/STORE into a fresh session folder."""
    from reports.__main__ import main

    out = tmp_path_factory.mktemp(f"{store}_report")
    results = Path(__file__).parent / "fixtures" / "asv" / store / "results"
    assert main(["build", "--results", str(results), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def store_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report built once from tests/fixtures/asv/store (read-only for the tests that share it)."""
    return _fixture_report(tmp_path_factory, "store")


@pytest.fixture(scope="session")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report built once from tests/fixtures/asv/quick (read-only for the tests that share it)."""
    return _fixture_report(tmp_path_factory, "quick")
