"""The manifest written beside every export: what the file is, what it takes, where it came from.

A served model is only usable (and comparable) if its reader knows the input layout, the parameter
values it was exported from and how close it is to the model that was trained. The manifest says so in
plain JSON (``manifest-<format>.json`` in the export folder): format, opset, inputs (name, dtype, shape,
meaning), output, model shape, a checksum of the parameters, the source framework and git commit, the
stored size, and the parity check against the native model.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from recsys_impls.config import ModelConfig
from recsys_impls.errors import UsageError
from recsys_impls.serving.layout import input_spec, output_spec

MANIFEST_VERSION = 1
PARITY_TOLERANCE = 1e-5  # max abs difference of probabilities, fp32 exports


def params_checksum(params: dict[str, np.ndarray]) -> str:
    """sha256 over the parameters (names, shapes, float32 bytes), independent of the framework."""
    h = hashlib.sha256()
    for name in sorted(params):
        a = np.ascontiguousarray(params[name], dtype=np.float32)
        h.update(name.encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def git_commit(root: Path | None = None) -> str | None:
    """HEAD of the checkout the code runs from, or None outside one."""
    root = root or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def model_shape(config: ModelConfig) -> dict[str, Any]:
    return {"num_dense": config.num_dense, "table_sizes": list(config.table_sizes),
            "embedding_dim": config.embedding_dim, "bottom_mlp": list(config.bottom_mlp),
            "top_mlp": list(config.top_mlp)}


def path_for(export_dir: Path, fmt: str) -> Path:
    return Path(export_dir) / f"manifest-{fmt}.json"


def build(fmt: str, framework: str, config: ModelConfig, checksum: str, files: list[str],
          **facts: Any) -> dict[str, Any]:
    """A manifest for one export (``facts``: opset, exporter, stored_bytes, parity, compression ...)."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "format": fmt,
        "framework": framework,
        "files": files,
        "inputs": input_spec(config.num_dense, config.num_tables),
        "output": output_spec(),
        "model": model_shape(config),
        "params_checksum": checksum,
        "git_commit": git_commit(),
        **facts,
    }


def save(export_dir: Path, manifest: dict[str, Any]) -> Path:
    from recsys_impls.record import clean

    path = path_for(export_dir, manifest["format"])
    path.write_text(json.dumps(clean(manifest), indent=1, sort_keys=True))
    return path


def load(export_dir: Path, fmt: str) -> dict[str, Any]:
    """The manifest of ``fmt`` in ``export_dir``; UsageError (one line) when missing or unreadable."""
    path = path_for(export_dir, fmt)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--export-dir {export_dir}: no {path.name} (export the {fmt!r} format first)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable manifest ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("manifest_version") != MANIFEST_VERSION:
        raise UsageError(f"{path}: not a version-{MANIFEST_VERSION} export manifest")
    return data


def check_matches(manifest: dict[str, Any], framework: str, config: ModelConfig, checksum: str,
                  where: str) -> None:
    """UsageError naming the first field where the export is not the model asked for."""
    wanted = {"framework": framework, "model": model_shape(config), "params_checksum": checksum}
    for key, value in wanted.items():
        if manifest.get(key) != value:
            raise UsageError(f"{where}: the export's {key} ({_short(manifest.get(key))}) does not match the model "
                             f"built from these flags ({_short(value)}); export again or pass the same flags")


def _short(value: Any) -> str:
    from recsys_impls.errors import shown

    return shown(value, 80)
