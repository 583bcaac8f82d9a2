"""Data parallel TensorFlow retrieval models (two-tower, NeuMF) under MultiWorkerMirroredStrategy: the
single-process model, its traced step and loss run per replica by ``strategy.run``.

Inside the replica the model's own step averages its gradients over the workers (``param_model.replicas``:
dense ones all-reduced, the tables' IndexedSlices all-gathered) and two-tower gathers the global batch's
items for its in-batch negatives (``TFTwoTower.in_batch_items``). Every worker starts from the same seeded
variables and applies the same averaged gradients, so the replicas stay identical; each worker's loss is
the mean over its B/N queries, so the averaged gradient is the one-process gradient on the whole batch.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def data_parallel(model: Any, strategy: tf.distribute.Strategy) -> Any:
    """``model`` (a ParamDictModel) with its train step and loss run per replica of ``strategy``."""

    def step(*inputs: tf.Tensor) -> Any:
        return strategy.run(model._train_step, args=inputs)

    def loss(*inputs: tf.Tensor) -> Any:
        return strategy.experimental_local_results(strategy.run(model._loss, args=inputs))[0]

    model._train = tf.function(step, input_signature=model.signature)
    model._loss_fn = tf.function(loss, input_signature=model.signature)
    return model


class MWMSComm:
    """What ``retrieval_runner.run_rank`` needs of the strategy: the model builder and host collectives."""

    framework = "tf"
    backend = "MultiWorkerMirroredStrategy RING"

    def __init__(self, strategy: tf.distribute.Strategy, device: str) -> None:
        from recsys_impls.tf_impl.distributed_mwms import Collectives
        from recsys_impls.tf_impl.param_model import tf_device

        self.strategy = strategy
        self.collectives = Collectives(strategy, tf_device(device))

    def build(self, arch: str, cfg: Any, data: Any, scenario: Any, plan: Any) -> Any:
        from recsys_impls.models import retrieval as models

        t = scenario.train
        return data_parallel(models.build(arch, "tf", cfg, data, t.optimizer, t.learning_rate, t.seed,
                                          scenario.device, plan=plan), self.strategy)

    def barrier(self) -> None:
        self.collectives.barrier()

    def gather_strings(self, text: str) -> list[str]:
        return self.collectives.gather_strings(text)
