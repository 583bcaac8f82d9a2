"""Model and backend registries (see spec.py): architectures and frameworks as descriptors."""

from recsys_impls.models.spec import (
    AXES,
    SUPPORTED,
    Backend,
    ModelSpec,
    backend,
    backend_names,
    backends,
    load,
    model_names,
    model_spec,
    models,
    register_backend,
    register_model,
)

__all__ = ["AXES", "SUPPORTED", "Backend", "ModelSpec", "backend", "backend_names", "backends", "load",
           "model_names", "model_spec", "models", "register_backend", "register_model"]
