"""One entry point for every data source, so the runner and asv never care where data comes from."""

from __future__ import annotations

from dataclasses import replace

from recsys_impls.config import Scenario
from recsys_impls.data.dataset import Dataset
from recsys_impls.errors import UsageError


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"load_dataset: {name} = {value!r}; must be a positive integer")


def load_dataset(scenario: Scenario, num_train: int, num_eval: int) -> Dataset:
    """Train and eval splits for ``scenario.data.source``: "synthetic", "movielens" or a Criteo TSV path.

    Build the model with the returned ``table_sizes`` and ``num_dense``: for synthetic and TSV data they
    are the scenario's; for MovieLens they come from the data.
    """
    _check_count("num_train", num_train)
    _check_count("num_eval", num_eval)
    source = scenario.data.source
    model = scenario.model
    if source == "synthetic":
        from recsys_impls.data.synthetic import load_synthetic

        return load_synthetic(
            model.num_dense, model.table_sizes, model.ids_per_feature, scenario.data.zipf_exponent,
            scenario.train.seed, num_train, num_eval,
        )
    if source == "movielens":
        from recsys_impls.data.movielens import load_movielens

        return load_movielens(seed=scenario.train.seed, num_train=num_train, num_eval=num_eval)
    from recsys_impls.data.criteo_tsv import load_criteo_tsv

    return load_criteo_tsv(
        source, model.num_dense, model.table_sizes, num_train, num_eval, skip_bad_lines=scenario.data.skip_bad_lines,
    )


def prepare(scenario: Scenario) -> tuple[Scenario, Dataset]:
    """Load the scenario's data and fit the model shape to it (MovieLens decides its own tables)."""
    scenario = scenario.validate()
    t = scenario.train
    data = load_dataset(scenario, num_train=t.steps * t.batch_size, num_eval=t.eval_samples)
    model = replace(scenario.model, num_dense=data.num_dense, table_sizes=tuple(data.table_sizes))
    return replace(scenario, model=model).validate(), data
