"""The PyTorch DLRM, split into replaceable parts so other variants plug in without touching the model.

Modules (each has one job):

* ``model``        ``TorchDLRM`` (the Recommender) and ``DLRMNet`` (the nn.Module): wiring, train step,
                   inference, parameter export/import, storage size.
* ``embeddings``   ``EmbeddingBags`` base class (stage a Batch's ids, pool them to [B, F, D], export and
                   load per-table float32 arrays) and ``FusedEmbeddingBags``, the plain fp32 one: all
                   tables in one ``nn.EmbeddingBag`` (one kernel, sparse gradients, bags staged
                   sample-major so the output is [B, F, D] without a copy).
                   Extension point: ``register_embeddings(name, builder)``; the scenario's ``compression``
                   string picks the builder by its prefix before ``:`` (e.g. ``"qr:4"`` -> ``"qr"``).
* ``mlp``          ``MLP`` (Linear + ReLU stack) and ``register_mlp(name, builder)``: a compression
                   variant that also replaces the MLPs registers a builder under the same prefix;
                   otherwise the plain fp32 MLP is used.
* ``interaction``  the pairwise dot-product interaction (bmm + one gather of the strictly-lower pairs;
                   backward through the symmetry of T T^T: one bmm), and concatenation.
* ``dlrm``, ``dcnv2``  the dense architectures of the registered models (their specs' PyTorch builders:
                   ``build(config, compression) -> DenseArch``).
* ``optim``        SparseSGD (row-sparse SGD with one index_add_) and the optimizer factory
                   (SparseAdagrad (optim.py) for the sparse tables, foreach SGD / fused Adagrad for the MLPs).
* ``settings``     device / precision / compile / pinned-memory settings resolved from DeviceConfig,
                   with ScenarioUnsupported for combinations this machine or PyTorch cannot run.
* ``graphs``       CUDA-graph capture of the inference step with static, padded input buffers.

Nothing here imports torch at package import time; ``import recsys_impls.torch_impl.model`` does.
Built on these: ``compress_model.CompressedTorchDLRM`` (the registry picks it when compression
is not "none") and ``distributed_ddp`` / ``distributed_sharded`` (data parallel, sharded tables)
subclass ``TorchDLRM`` (compressed data parallel: ``CompressedTorchDLRM`` over ``DDPTorchDLRM``) or reuse
``build_dense_arch``; they rely on ``TorchDLRM.net``, ``_compile``,
``_dense_fn``, ``DenseArch.neutral_params`` and ``StagedBatch``: keep those names stable.
"""
