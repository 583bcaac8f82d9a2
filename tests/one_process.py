"""The one-process reference the distributed tests compare against."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np


def one_process_params(scenario: Any) -> dict[str, np.ndarray]:
    """The parameters one process reaches training on the distributed scenario's own global batches (its
    data as the launcher prepares it), with faults and balancing off: what an exact distributed update
    must reproduce."""
    from recsys_impls import registry
    from recsys_impls.parallel.shards import prepare_data

    single, data = prepare_data(replace(scenario, parallel="none"))
    impl = registry.build(replace(single, parallel="none", straggler="none", balance="static"))
    for batch in data.train.split(scenario.train.batch_size):
        impl.train_step(impl.stage(batch))
    return impl.get_params()


def one_process_retrieval_params(scenario: Any) -> dict[str, np.ndarray]:
    """The same for a retrieval model (two-tower, NeuMF): one process trained on the global batches every rank
    draws (``retrieval_runner.run_rank``), step for step."""
    from recsys_impls import retrieval_runner as rr
    from recsys_impls.models import retrieval as models

    t = scenario.train
    single = replace(scenario, parallel="none")
    cfg, data = models.config_from(single.model), rr.load_data(single)
    impl = models.build(single.model.arch, single.framework, cfg, data, t.optimizer, t.learning_rate, t.seed,
                        plan=rr.compression_plan(single))
    batches, _ = models.training_batches(single.model.arch, cfg, data, t.batch_size, t.warmup_steps + t.steps, t.seed)
    for i in range(t.warmup_steps + t.steps):
        impl.train_step(impl.stage(batches[i % len(batches)]))
    return impl.get_params()
