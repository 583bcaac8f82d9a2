"""TensorFlow side of export and serving: the served module, its SavedModel (with a serving signature)
and ONNX (through tf2onnx) exports, and the loaders the serving runtimes call.

``ServingModule`` is the DLRM on the shared serving layout (``recsys_impls.serving.layout``): one table
variable gathered with the padded ids shifted by each table's base row, masked by ``lengths`` and summed,
then the same MLPs (``tf_impl.mlp.MLP``) and dot interaction as ``TFDLRM``. It is built from the
framework-neutral parameters, so the export holds exactly what was trained; with ``int8_tables`` the
tables are uint8 rows with a float32 scale and bias per row (``compression.quant``), dequantized after
the gather.

tf2onnx is given the signature with its variables frozen to constants (converting the live function
leaves the variables as extra graph inputs), except the tables, which go in as graph inputs and are put
back as initializers afterwards; the ONNX graph's tensors are renamed to the shared input and output
names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from recsys_impls.config import ModelConfig
from recsys_impls.serving.layout import INPUT_NAMES, OUTPUT_NAME, ServingInputs, from_padded
from recsys_impls.tf_impl.mlp import MLP

ONNX_OPSET = 18
Predict = Callable[[ServingInputs], np.ndarray]


class ServingModule(tf.Module):
    """``serve(dense, ids, lengths) -> {"probability": [B]}`` with a fixed input signature."""

    def __init__(self, config: ModelConfig, params: dict[str, np.ndarray], int8_tables: bool = False) -> None:
        super().__init__(name="dlrm_serving")
        tables = [np.asarray(params[f"emb.{f}"], np.float32) for f in range(config.num_tables)]
        base = np.concatenate([[0], np.cumsum([t.shape[0] for t in tables])[:-1]]).astype(np.int64)
        self.base = tf.constant(base[None, :, None])
        full = np.concatenate(tables, axis=0)
        self.int8_tables = int8_tables
        if int8_tables:
            from recsys_impls.compression.quant import quantize_rowwise

            qt = quantize_rowwise(full, 8)
            arrays = {"table_q": np.asarray(qt.q, np.uint8), "row_scale": np.asarray(qt.scale, np.float32),
                      "row_bias": np.asarray(qt.bias, np.float32)}
        else:
            arrays = {"table": full}
        self.table_arrays = arrays  # numpy: what the ONNX export puts back as initializers
        self.tables = [tf.Variable(a, trainable=False, name=k) for k, a in arrays.items()]
        self.bottom = MLP("bottom", params, relu_last=True)
        self.top = MLP("top", params, relu_last=False)
        n = config.num_tables + 1
        self.n = n
        self.pair_index = tf.constant(self._pairs(n))
        spec = [tf.TensorSpec([None, config.num_dense], tf.float32, name="dense"),
                tf.TensorSpec([None, config.num_tables, None], tf.int64, name="ids"),
                tf.TensorSpec([None, config.num_tables], tf.int64, name="lengths")]
        self.serve = tf.function(lambda dense, ids, lengths: self._forward(self.tables, dense, ids, lengths),
                                 input_signature=spec)
        # The same graph with the tables as inputs: what tf2onnx converts (see _onnx_export).
        table_spec = [tf.TensorSpec(a.shape, tf.as_dtype(a.dtype), name=k) for k, a in arrays.items()]
        self.serve_tables_as_inputs = tf.function(
            lambda *args: self._forward(list(args[:len(arrays)]), *args[len(arrays):]),
            input_signature=table_spec + spec)

    @staticmethod
    def _pairs(n: int) -> np.ndarray:
        li, lj = np.tril_indices(n, -1)
        return (li * n + lj).astype(np.int64)

    def _rows(self, tables: list[Any], rows: tf.Tensor) -> tf.Tensor:
        if not self.int8_tables:
            return tf.gather(tables[0], rows)
        table_q, scale, bias = tables
        q = tf.cast(tf.gather(table_q, rows), tf.float32)
        return q * tf.gather(scale, rows)[..., None] + tf.gather(bias, rows)[..., None]

    def _forward(self, tables: list[Any], dense: tf.Tensor, ids: tf.Tensor, lengths: tf.Tensor) -> dict[str, tf.Tensor]:
        width = tf.shape(ids, out_type=tf.int64)[2]
        mask = tf.cast(tf.range(width)[None, None, :] < lengths[:, :, None], tf.float32)  # [B, T, L]
        pooled = tf.reduce_sum(self._rows(tables, ids + self.base) * mask[..., None], axis=2)  # [B, T, D]
        x = self.bottom(dense)
        t = tf.concat([x[:, None, :], pooled], axis=1)
        z = tf.reshape(tf.matmul(t, t, transpose_b=True), [-1, self.n * self.n])
        logits = self.top(tf.concat([x, tf.gather(z, self.pair_index, axis=1)], axis=1))
        return {OUTPUT_NAME: tf.sigmoid(logits[:, 0])}


def export(fmt: str, config: ModelConfig, params: dict[str, np.ndarray], out_dir: Path,
           example: ServingInputs, onnx_exporter: str = "auto") -> dict[str, Any]:
    """Write ``fmt`` (savedmodel, onnx, onnx-int8-tables) into ``out_dir``; returns manifest facts."""
    del example, onnx_exporter  # the signature is fixed (nothing to trace from data); tf2onnx is the one exporter
    module = ServingModule(config, params, int8_tables=fmt == "onnx-int8-tables")
    facts: dict[str, Any] = {"tensorflow_version": tf.__version__}
    if fmt == "savedmodel":
        path = out_dir / "savedmodel"
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
        return facts | {"files": [path.name], "exporter": "tf.saved_model.save, signature serving_default",
                        "opset": None}
    if fmt in ("onnx", "onnx-int8-tables"):
        path = out_dir / ("model.onnx" if fmt == "onnx" else "model-int8-tables.onnx")
        version = _onnx_export(module, path)
        how = "from_graph_def; variables frozen, tables put back as initializers"
        return facts | {"files": [path.name], "exporter": f"tf2onnx {version} ({how})",
                        "opset": ONNX_OPSET}
    raise ValueError(f"tf export format {fmt!r}")


@contextlib.contextmanager
def _quiet_tf_log() -> Iterator[None]:
    """tf2onnx and the freezing call log TF1 deprecation notices through TensorFlow's logger."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _onnx_export(module: ServingModule, path: Path) -> str:
    """tf2onnx on the graph with the tables as inputs (its optimizer re-serializes every constant on each
    pass: a 200 MB table frozen in took minutes and 12 GB), then the tables put back as initializers."""
    import io

    import onnx
    import tf2onnx
    from onnx import numpy_helper
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), _quiet_tf_log():
        frozen = convert_variables_to_constants_v2(module.serve_tables_as_inputs.get_concrete_function())
        inputs = [t.name for t in frozen.inputs]
        outputs = [t.name for t in frozen.outputs]
        proto, _ = tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=inputs,
                                                  output_names=outputs, opset=ONNX_OPSET)
    names = [*module.table_arrays, *INPUT_NAMES]
    rename = dict(zip(inputs, names, strict=True)) | {outputs[0]: OUTPUT_NAME}
    for value in [*proto.graph.input, *proto.graph.output]:
        value.name = rename.get(value.name, value.name)
    for node in proto.graph.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    kept = [v for v in proto.graph.input if v.name not in module.table_arrays]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    proto.graph.initializer.extend(numpy_helper.from_array(a, name) for name, a in module.table_arrays.items())
    onnx.save(proto, str(path))
    return str(tf2onnx.__version__)


# --- loaders: each returns predict(ServingInputs) -> float32 numpy [B] --------------------------------
def load_savedmodel(out_dir: Path) -> Predict:
    loaded = tf.saved_model.load(str(Path(out_dir) / "savedmodel"))
    fn = loaded.signatures["serving_default"]

    def predict(inputs: ServingInputs) -> np.ndarray:
        out = fn(dense=tf.constant(inputs.dense), ids=tf.constant(inputs.ids), lengths=tf.constant(inputs.lengths))
        return out[OUTPUT_NAME].numpy().reshape(-1)

    predict.keepalive = loaded  # type: ignore[attr-defined] - the signature needs its module alive
    return predict


def native(impl: Any) -> Predict:
    """The trained TFDLRM's own predict step (sorted segment sums), fed from the serving layout."""
    return lambda inputs: impl.predict(from_padded(inputs))
