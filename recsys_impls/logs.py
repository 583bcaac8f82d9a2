"""Where a failure leaves its whole story, so that the user sees one line and loses nothing.

One folder per failure under ``$RECSYS_LOG_DIR``, else ``$XDG_CACHE_HOME/recsys-bench/logs``, else
``~/.cache/recsys-bench/logs``; the newest ``KEEP`` folders are kept. The one-line message names the
folder or file. Nothing here may raise: a log that cannot be written is reported as absent (None).
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path

LOG_ENV = "RECSYS_LOG_DIR"
KEEP = 30
TRACEBACK_FILE = "traceback.txt"


def root() -> Path:
    """The folder that holds every failure's log folder."""
    if os.environ.get(LOG_ENV):
        return Path(os.environ[LOG_ENV])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "recsys-bench" / "logs"


def new_dir(kind: str) -> Path | None:
    """A fresh, empty folder for one failure (``kind`` names what failed), or None if none can be made."""
    base = root()
    for n in range(100):
        now = time.time()
        # a fixed-width time stamp first: names sort by age
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now * 1e6) % 1000000:06d}"
        path = base / (f"{stamp}-{kind}-{os.getpid()}" + ("" if n == 0 else f"-{n}"))
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError:
            return None
        _prune(base)
        return path
    return None


def _prune(base: Path) -> None:
    """Keep the newest KEEP folders (their names start with the time they were made)."""
    try:
        folders = sorted(p for p in base.iterdir() if p.is_dir())
    except OSError:
        return
    for old in folders[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def write_traceback(exc: BaseException, log_dir: Path | None = None, kind: str = "error",
                    details: str = "") -> Path | None:
    """Write ``exc``'s traceback (and ``details``) to ``traceback.txt`` in ``log_dir`` or a new folder;
    return the file's path, or None when nothing could be written."""
    folder = log_dir if log_dir is not None and log_dir.is_dir() else new_dir(kind)
    if folder is None:
        return None
    text = "".join(traceback.format_exception(exc))
    if details:
        text += "\n" + details.rstrip() + "\n"
    path = folder / TRACEBACK_FILE
    try:
        path.write_text(text)
    except OSError:
        return None
    return path
