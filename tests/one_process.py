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
