"""Scenario -> Recommender, through the backend registry (recsys_impls/models); frameworks are imported
only when a model is built (torch and TF are heavy)."""

from __future__ import annotations

from recsys_impls.base import Recommender
from recsys_impls.config import FRAMEWORKS, Scenario
from recsys_impls.errors import ScenarioUnsupported, UsageError
from recsys_impls.models import backend


def framework_available(name: str) -> bool:
    """Whether the framework's package is installed, without importing it."""
    return backend(name).available()


def _backend(name: str):  # noqa: ANN202
    if name not in FRAMEWORKS:
        raise UsageError(f"--framework {name}: accepted: {', '.join(FRAMEWORKS)}")
    b = backend(name)
    if not b.available():
        raise ScenarioUnsupported(f"framework {name}: package '{b.package}' is not installed")
    return b


def implementation(name: str) -> type[Recommender]:
    return _backend(name).load("model")


def build(scenario: Scenario) -> Recommender:
    """Build the scenario's implementation, initialised from the shared seeded parameters: the model's
    dense architecture (its spec's builder for this backend) over the scenario's embedding stage."""
    b = _backend(scenario.framework)
    scenario.model.spec.builder(b.name)  # the model exists for this backend (one line otherwise)
    if scenario.model.spec.task != "ranking":  # retrieval models are built by their own runner
        raise ScenarioUnsupported(f"model {scenario.model.arch}: a {scenario.model.spec.task} model is built by "
                                  "the retrieval runner (recsys_impls.retrieval_runner), not by this path")
    if scenario.compression not in ("", "none"):
        scenario.model.spec.require_axis("compression", f"compression {scenario.compression}")
        return b.load("compressed")(scenario)
    return b.load("model")(scenario)
