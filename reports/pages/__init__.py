"""The report's pages: every module here with an ``ORDER`` and a ``build(ctx) -> Page`` is one page.

Adding a page is adding one module (its ``build`` may also fill ``page.verdicts`` for the index);
``discover`` finds it, in ``ORDER`` (ties by name), so nothing else has to be edited.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def discover() -> list[ModuleType]:
    """Page modules in nav order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if callable(getattr(mod, "build", None)) and isinstance(getattr(mod, "ORDER", None), int):
            found.append(mod)
    return sorted(found, key=lambda m: (m.ORDER, m.__name__))
