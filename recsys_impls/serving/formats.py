"""Export formats and serving runtimes by name: which framework writes or runs each, and what it needs.

Kept as plain data so the CLI can check a name (one line, exit 2) before anything heavy is imported.
"""

from __future__ import annotations

from recsys_impls.errors import UsageError

# format -> frameworks that export it. "onnx-int8": uint8 tables with a float32 scale and bias per row
# (compression.quant's row-wise layout) and MLP weights dynamically quantized to int8 by ONNX Runtime.
FORMATS: dict[str, tuple[str, ...]] = {
    "exported-program": ("torch",),
    "aoti": ("torch",),
    "onnx": ("torch", "tf"),
    "onnx-int8": ("torch", "tf"),
    "savedmodel": ("tf",),
}
DEFAULT_FORMATS = {"torch": ("exported-program", "onnx"), "tf": ("savedmodel", "onnx")}

# runtime -> (frameworks whose model it runs, export format it loads, or None: the in-process model)
RUNTIMES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "torch-eager": (("torch",), None),
    "torch-compile": (("torch",), None),
    "torch-export": (("torch",), "exported-program"),
    "torch-aoti": (("torch",), "aoti"),
    "onnxruntime": (("torch", "tf"), "onnx"),
    "onnxruntime-cuda": (("torch", "tf"), "onnx"),
    "onnxruntime-tensorrt": (("torch", "tf"), "onnx"),
    "onnxruntime-int8": (("torch", "tf"), "onnx-int8"),
    "tf-native": (("tf",), None),
    "tf-savedmodel": (("tf",), "savedmodel"),
}
# The runtime that checks each format's parity against the native model.
PARITY_RUNTIME = {"exported-program": "torch-export", "aoti": "torch-aoti", "onnx": "onnxruntime",
                  "onnx-int8": "onnxruntime-int8", "savedmodel": "tf-savedmodel"}
LOSSY_FORMATS = ("onnx-int8",)


def parse_formats(text: str, framework: str) -> tuple[str, ...]:
    """``--format a,b`` (or ``all``) -> the formats, checked against the framework."""
    if text == "all":
        return tuple(f for f, fws in FORMATS.items() if framework in fws)
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not names:
        raise UsageError(f"--format {text!r}: accepted: {', '.join(FORMATS)} (comma-separated) or all")
    for name in names:
        if name not in FORMATS:
            raise UsageError(f"--format {name[:60]!r}: unknown; accepted: {', '.join(FORMATS)} or all")
        if framework not in FORMATS[name]:
            raise UsageError(f"--format {name}: not exported by --framework {framework}; "
                             f"{framework} exports: {', '.join(f for f, w in FORMATS.items() if framework in w)}")
    return names


def check_runtime(name: str, framework: str) -> str | None:
    """The export format ``name`` needs (None: in-process); UsageError for an unknown or mismatched one."""
    if name not in RUNTIMES:
        raise UsageError(f"--runtime {name[:60]!r}: unknown; accepted: {', '.join(RUNTIMES)}")
    frameworks, fmt = RUNTIMES[name]
    if framework not in frameworks:
        raise UsageError(f"--runtime {name}: runs {'/'.join(frameworks)} models, not --framework {framework}")
    return fmt
