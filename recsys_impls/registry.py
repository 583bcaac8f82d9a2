"""Framework name -> Recommender class, imported only when asked for (torch and TF are heavy)."""

from __future__ import annotations

import importlib
import importlib.util

from recsys_impls.base import Recommender
from recsys_impls.config import FRAMEWORKS, Scenario
from recsys_impls.errors import ScenarioUnsupported, UsageError

_IMPLEMENTATIONS = {
    "torch": ("recsys_impls.torch_impl.model", "TorchDLRM"),
    "tf": ("recsys_impls.tf_impl.model", "TFDLRM"),
}
_PACKAGES = {"torch": "torch", "tf": "tensorflow"}


def framework_available(name: str) -> bool:
    """Whether the framework's package is installed, without importing it."""
    return importlib.util.find_spec(_PACKAGES[name]) is not None


def implementation(name: str) -> type[Recommender]:
    if name not in _IMPLEMENTATIONS:
        raise UsageError(f"--framework {name}: accepted: {', '.join(FRAMEWORKS)}")
    if not framework_available(name):
        raise ScenarioUnsupported(f"framework {name}: package '{_PACKAGES[name]}' is not installed")
    module, cls = _IMPLEMENTATIONS[name]
    return getattr(importlib.import_module(module), cls)


def build(scenario: Scenario) -> Recommender:
    """Build the scenario's implementation, initialised from the shared seeded parameters."""
    if scenario.compression not in ("", "none"):
        implementation(scenario.framework)  # same checks (known framework, package installed)
        module, cls = _COMPRESSED[scenario.framework]
        return getattr(importlib.import_module(module), cls)(scenario)
    return implementation(scenario.framework)(scenario)


# Compressed variants subclass the plain implementations.
_COMPRESSED = {
    "torch": ("recsys_impls.torch_impl.compress_model", "CompressedTorchDLRM"),
    "tf": ("recsys_impls.tf_impl.compress_model", "CompressedTFDLRM"),
}
