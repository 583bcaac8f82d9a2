"""PyTorch side of export and serving: the served module, its export to ExportedProgram, AOTInductor and
ONNX, and the loaders the serving runtimes call.

``ServingNet`` is the DLRM on the shared serving layout (``recsys_impls.serving.layout``): one fused
table gathered with the padded ids (shifted by each table's base row), masked by ``lengths`` and summed;
then the same bottom MLP, dot interaction and top MLP as ``TorchDLRM``. It is built from the framework-
neutral parameters (``get_params``), so what is exported is exactly what was trained, and with
``int8_tables`` the tables are stored as uint8 rows with a float32 scale and bias per row (the
``compression.quant`` row-wise layout), dequantized after the gather.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recsys_impls.config import ModelConfig
from recsys_impls.serving.layout import INPUT_NAMES, OUTPUT_NAME, ServingInputs, from_padded
from recsys_impls.torch_impl.mlp import MLP

ONNX_OPSET = 18
Predict = Callable[[ServingInputs], np.ndarray]


def _mlp(in_dim: int, widths: tuple[int, ...], final_relu: bool, prefix: str, params: dict[str, np.ndarray]) -> MLP:
    mlp = MLP(in_dim, widths, final_relu)
    with torch.no_grad():
        for k, lin in enumerate(mlp.linears()):
            lin.weight.copy_(torch.from_numpy(np.asarray(params[f"{prefix}.{k}.weight"], np.float32)))
            lin.bias.copy_(torch.from_numpy(np.asarray(params[f"{prefix}.{k}.bias"], np.float32)))
    return mlp


class ServingNet(nn.Module):
    """(dense [B, n], ids [B, T, L], lengths [B, T]) -> probability [B]; no autograd functions, export-friendly."""

    def __init__(self, config: ModelConfig, params: dict[str, np.ndarray], int8_tables: bool = False) -> None:
        super().__init__()
        tables = [np.asarray(params[f"emb.{f}"], np.float32) for f in range(config.num_tables)]
        base = np.concatenate([[0], np.cumsum([t.shape[0] for t in tables])[:-1]]).astype(np.int64)
        self.register_buffer("base", torch.from_numpy(base).view(1, -1, 1))
        full = np.concatenate(tables, axis=0)
        self.int8_tables = int8_tables
        if int8_tables:
            from recsys_impls.compression.quant import quantize_rowwise

            qt = quantize_rowwise(full, 8)
            self.register_buffer("table_q", torch.from_numpy(np.ascontiguousarray(qt.q, np.uint8)))
            self.register_buffer("row_scale", torch.from_numpy(np.asarray(qt.scale, np.float32)))
            self.register_buffer("row_bias", torch.from_numpy(np.asarray(qt.bias, np.float32)))
        else:
            self.register_buffer("table", torch.from_numpy(full))
        self.bottom = _mlp(config.num_dense, config.bottom_mlp, True, "bottom", params)
        self.top = _mlp(config.interaction_dim, config.top_mlp, False, "top", params)
        n = config.num_tables + 1
        li, lj = np.tril_indices(n, -1)
        self.register_buffer("pair_index", torch.from_numpy((li * n + lj).astype(np.int64)))

    def _rows(self, rows: torch.Tensor) -> torch.Tensor:
        if not self.int8_tables:
            return self.table[rows]
        return self.table_q[rows].to(torch.float32) * self.row_scale[rows].unsqueeze(-1) + \
            self.row_bias[rows].unsqueeze(-1)

    def forward(self, dense: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        width = ids.shape[2]
        mask = torch.arange(width, device=ids.device).view(1, 1, -1) < lengths.unsqueeze(2)  # [B, T, L]
        pooled = (self._rows(ids + self.base) * mask.unsqueeze(3).to(torch.float32)).sum(2)  # [B, T, D]
        x = self.bottom(dense)
        t = torch.cat([x.unsqueeze(1), pooled], dim=1)
        dots = torch.bmm(t, t.transpose(1, 2)).flatten(1).index_select(1, self.pair_index)
        return torch.sigmoid(self.top(torch.cat([x, dots], dim=1)).squeeze(1))


def serving_net(config: ModelConfig, params: dict[str, np.ndarray], int8_tables: bool = False) -> ServingNet:
    return ServingNet(config, params, int8_tables).eval()


def _args(inputs: ServingInputs) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (inputs.dense, inputs.ids, inputs.lengths))


def example_args(inputs: ServingInputs) -> tuple[torch.Tensor, ...]:
    """Example inputs for tracing with B >= 2 and L >= 2, so neither axis is specialised to a constant."""
    x = inputs.take(np.arange(max(2, min(inputs.batch_size, 8))) % inputs.batch_size)
    ids = x.ids if x.ids.shape[2] >= 2 else np.pad(x.ids, ((0, 0), (0, 0), (0, 2 - x.ids.shape[2])))
    return _args(ServingInputs(x.dense, ids, x.lengths))


def _dynamic_shapes() -> dict[str, dict[int, Any]]:
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    bag = torch.export.Dim("bag", min=1, max=1 << 16)
    return {"dense": {0: batch}, "ids": {0: batch, 2: bag}, "lengths": {0: batch}}


def export_program(net: ServingNet, example: ServingInputs) -> torch.export.ExportedProgram:
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pytree's LeafSpec deprecation, from inside torch.export
        return torch.export.export(net, example_args(example), dynamic_shapes=_dynamic_shapes())


def export(fmt: str, config: ModelConfig, params: dict[str, np.ndarray], out_dir: Path,
           example: ServingInputs, onnx_exporter: str = "auto") -> dict[str, Any]:
    """Write ``fmt`` (exported-program, aoti, onnx, onnx-int8-tables) into ``out_dir``; returns manifest facts.

    ``onnx_exporter``: "auto" (the dynamo exporter, falling back to the TorchScript-based one), "dynamo"
    or "torchscript" (about 1 s where the dynamo exporter's first call takes 10-20 s on a small CPU).
    """
    int8 = fmt == "onnx-int8-tables"
    net = serving_net(config, params, int8_tables=int8)
    facts: dict[str, Any] = {"torch_version": str(torch.__version__)}
    if fmt == "exported-program":
        path = out_dir / "model.pt2"
        torch.export.save(export_program(net, example), str(path))
        return facts | {"files": [path.name], "exporter": "torch.export.export (strict=False), dynamic B and L",
                        "opset": None}
    if fmt == "aoti":
        path = out_dir / "model-aoti.pt2"
        torch._inductor.aoti_compile_and_package(export_program(net, example), package_path=str(path))
        return facts | {"files": [path.name], "exporter": "torch._inductor.aoti_compile_and_package", "opset": None}
    if fmt in ("onnx", "onnx-int8-tables"):
        path = out_dir / ("model.onnx" if fmt == "onnx" else "model-int8-tables.onnx")
        exporter = _onnx_export(net, example, path, onnx_exporter)
        return facts | {"files": [path.name], "exporter": exporter, "opset": ONNX_OPSET}
    raise ValueError(f"torch export format {fmt!r}")


def _onnx_export(net: ServingNet, example: ServingInputs, path: Path, exporter: str) -> str:
    """The dynamo exporter where it works here, else the TorchScript-based one; returns which ran."""
    import contextlib
    import io
    import logging
    import warnings

    args = example_args(example)
    reason = "asked for (onnx_exporter=torchscript)"
    if exporter != "torchscript":
        onnx_log = logging.getLogger("torch.onnx")
        level = onnx_log.level
        try:
            # The exporter's progress lines, deprecation warnings and "torchvision is not installed" notes.
            onnx_log.setLevel(logging.ERROR)
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(net, args, dynamo=True, dynamic_shapes=_dynamic_shapes(),
                                            input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                                            opset_version=ONNX_OPSET, verbose=False)
            program.save(str(path))
            return "torch.onnx.export(dynamo=True)"
        except Exception as exc:  # noqa: BLE001 - the older exporter is the documented fallback
            if exporter == "dynamo":
                raise
            reason = f"dynamo exporter failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
        finally:
            onnx_log.setLevel(level)
    axes = {"dense": {0: "B"}, "ids": {0: "B", 2: "L"}, "lengths": {0: "B"}, OUTPUT_NAME: {0: "B"}}
    with torch.no_grad():
        torch.onnx.export(net, args, str(path), dynamo=False, input_names=list(INPUT_NAMES),
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=ONNX_OPSET)
    return f"torch.onnx.export(dynamo=False, TorchScript-based); {reason}"


# --- loaders: each returns predict(ServingInputs) -> float32 numpy [B] --------------------------------
def _wrap(fn: Callable[..., torch.Tensor]) -> Predict:
    def predict(inputs: ServingInputs) -> np.ndarray:
        with torch.inference_mode():
            return fn(*_args(inputs)).numpy().reshape(-1)

    return predict


def load_exported_program(out_dir: Path) -> Predict:
    return _wrap(torch.export.load(str(Path(out_dir) / "model.pt2")).module())


def load_aoti(out_dir: Path) -> Predict:
    return _wrap(torch._inductor.aoti_load_package(str(Path(out_dir) / "model-aoti.pt2")))


def compiled(config: ModelConfig, params: dict[str, np.ndarray]) -> Predict:
    """The served module under ``torch.compile`` (dynamic shapes: one graph for every batch size)."""
    return _wrap(torch.compile(serving_net(config, params), dynamic=True))


def eager(config: ModelConfig, params: dict[str, np.ndarray]) -> Predict:
    """The served module in eager mode (the padded layout, no compiler)."""
    return _wrap(serving_net(config, params))


def native(impl: Any) -> Predict:
    """The trained TorchDLRM's own inference path (fused EmbeddingBag), fed from the serving layout."""
    return lambda inputs: impl.predict(from_padded(inputs))
