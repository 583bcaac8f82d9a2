"""The TensorFlow DLRM: plain ``tf.Variable``/``tf.Module`` components and compiled ``tf.function`` steps.

Importing this package does not import TensorFlow; ``recsys_impls.tf_impl.model`` does.

Modules, one job each:

* ``runtime``    - process-wide TensorFlow settings from the scenario's DeviceConfig (threads, device,
                   TF32, GPU memory growth, compute dtype). Must run before TensorFlow initialises.
* ``embeddings`` - embedding components: pooled (sum) lookups of the categorical features.
* ``mlp``        - the bottom and top MLPs.
* ``optim``      - SGD and Adagrad written out with PyTorch's semantics (sparse updates for
                   ``tf.IndexedSlices`` gradients, dense otherwise).
* ``loss_scale`` - dynamic loss scaling for fp16 mixed precision.
* ``model``      - ``TFDLRM``, the Recommender that wires the components together.

Extension points (for compressed embeddings and tf.distribute strategies):

* New embedding variants subclass ``embeddings.EmbeddingComponent`` in their own module and register
  with ``embeddings.register_embedding("name", factory)``; ``embeddings.make_embeddings`` picks the
  factory by the prefix of ``Scenario.compression`` before the first ':' (``"hash:0.1"`` -> ``"hash"``),
  and raises ScenarioUnsupported for unknown names. A component owns its variables, implements
  ``pool(ids, lengths) -> [B, F, D]`` in graph code, ``get_params``/``set_params`` in the shared
  ``emb.{f}`` layout (or raises ScenarioUnsupported where a lossy format cannot round-trip), and
  ``storage_bytes``. Its trainable variables get gradients like any other: ``tf.IndexedSlices``
  (from ``tf.gather``) are applied sparsely, dense tensors densely.
* MLP variants (pruned, int8) subclass ``mlp.MLP`` and register with ``mlp.register_mlp``.
* Distribution: ``TFDLRM`` creates every variable inside ``self.variable_scope()`` and exposes the
  per-replica pieces (``forward``, ``compute_loss``, ``apply_gradients``) so a strategy can create the
  model under ``strategy.scope()`` and run its own step with ``strategy.run``.

Performance notes (2-core shared CI CPU, dlrm-ref preset; noisy, see the commit log for figures):
the TF step is on par with the PyTorch one (0.94-0.96x with one thread each, interleaved in one
process; 1.18x on the 26-table Criteo-like default). Sorted ``segment_sum`` pooling is 3x faster
than ``unsorted_segment_sum``; the concatenated and per-table layouts measured equal within noise;
XLA for the dense part is slower on CPU (no oneDNN matmuls), while amp-bf16 is about 1.8x faster.
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) drowns the CLI's output; keep
# warnings and errors. Set before TensorFlow is imported; an explicit user setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recsys_impls.tf_impl import skip_keras  # noqa: E402

skip_keras.install()
