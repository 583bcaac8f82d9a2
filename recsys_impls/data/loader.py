"""One entry point for every data source, so the runner and asv never care where data comes from."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from recsys_impls.config import ModelConfig, Scenario
from recsys_impls.data.batch import Batch
from recsys_impls.data.dataset import Dataset
from recsys_impls.errors import UsageError, clip


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"load_dataset: {name} = {value!r}; must be a positive integer")


def load_dataset(scenario: Scenario, num_train: int, num_eval: int, streaming: bool = False) -> Dataset:
    """Train and eval splits for ``scenario.data.source``: "synthetic", "movielens" or a Criteo TSV path.

    ``streaming``: synthetic training batches are drawn on demand (``Dataset.stream``) instead of
    ``num_train`` samples up front; files are loaded as before (their batches rotate).

    Build the model with the returned ``table_sizes`` and ``num_dense``: for synthetic and TSV data they
    are the scenario's; for MovieLens they come from the data, and ``info["model_shape"]`` says what
    they replaced (a shape set in a --config file is refused earlier, in build_scenario).
    """
    _check_count("num_train", num_train)
    _check_count("num_eval", num_eval)
    source = scenario.data.source
    model = scenario.model
    if source == "synthetic":
        from recsys_impls.data.synthetic import load_synthetic
        from recsys_impls.parallel.faults import hot_bag_mean, parse_hot_table

        spec = parse_hot_table(scenario.data.hot_table)
        hot = None if spec is None else (spec.table, hot_bag_mean(spec, model.num_tables, model.ids_per_feature))
        return load_synthetic(
            model.num_dense, model.table_sizes, model.ids_per_feature, scenario.data.zipf_exponent,
            scenario.train.seed, num_train, num_eval, bag_sizes=model.bag_sizes,
            exponents=scenario.data.exponents(model.num_tables), bag_distribution=scenario.data.bag_distribution,
            stream_batch_size=scenario.train.batch_size if streaming else None, hot=hot,
        )
    if source == "movielens":
        from recsys_impls.data.movielens import load_movielens

        data = load_movielens(seed=scenario.train.seed, num_train=num_train, num_eval=num_eval)
        _note_shape(data, model)
        _check_train_split(data, scenario, num_train, num_eval)
        return data
    from recsys_impls.data.criteo_tsv import load_criteo_tsv

    data = load_criteo_tsv(
        source, model.num_dense, model.table_sizes, num_train, num_eval, skip_bad_lines=scenario.data.skip_bad_lines,
    )
    _check_train_split(data, scenario, num_train, num_eval)
    return data


def _note_shape(data: Dataset, model: ModelConfig) -> None:
    """Say in the record that the data decided the tables and dense features, and what they replaced."""
    if (tuple(data.table_sizes), data.num_dense) == (tuple(model.table_sizes), model.num_dense):
        return
    data.info["model_shape"] = {
        "from": "the data", "table_sizes": list(data.table_sizes), "num_dense": data.num_dense,
        "replaced": {"num_tables": model.num_tables, "num_dense": model.num_dense},
        "note": "MovieLens has its own tables and dense features; embedding_dim and the MLPs are the scenario's",
    }


def _check_train_split(data: Dataset, scenario: Scenario, num_train: int, num_eval: int) -> None:
    """A file too short for one training batch: say which flags decide the split, before training fails."""
    have, batch = data.train.batch_size, scenario.train.batch_size
    if have >= batch or have >= num_train:  # not cut short by the data (a caller may ask for less)
        return
    total = have + data.eval.batch_size
    where = f"--data {clip(scenario.data.source)}"
    if total <= batch:
        fix = f"lower --batch-size below {total}"
    else:
        fix = f"lower --eval-samples to at most {total - batch}, or --batch-size"
    raise UsageError(
        f"{where}: {total} usable samples, split into {have} train and {data.eval.batch_size} eval (asked: "
        f"{num_train} train = --steps x --batch-size, {num_eval} eval = --eval-samples); the training split is "
        f"smaller than one batch (--batch-size {batch}): {fix}"
    )


def cap_rows(scenario: Scenario) -> tuple[Scenario, dict | None]:
    """Apply ``model.max_rows`` to the tables: (scenario with capped table_sizes, the record's note or None)."""
    m = scenario.model
    if not m.max_rows:
        return scenario, None
    capped = m.capped_table_sizes()
    note = {"max_rows": m.max_rows, "tables_capped": sum(a != b for a, b in zip(m.table_sizes, capped, strict=True)),
            "rows_before": sum(m.table_sizes), "rows_after": sum(capped),
            "how": "synthetic ids are drawn over the capped tables; file ids are hashed into them"}
    return replace(scenario, model=replace(m, table_sizes=capped)), note


def hash_into(batch: Batch, table_sizes: tuple[int, ...]) -> Batch:
    """Ids taken modulo each table's rows (vectorised over the feature-major ids): for a row cap on data
    whose tables were decided by the data (MovieLens)."""
    sizes = np.repeat(np.asarray(table_sizes, dtype=np.int64), batch.lengths.sum(axis=1))
    return replace(batch, ids=batch.ids % sizes)


def prepare(scenario: Scenario, streaming: bool = False) -> tuple[Scenario, Dataset]:
    """Load the scenario's data and fit the model shape to it (MovieLens decides its own tables).

    ``streaming``: see ``load_dataset``; the runner streams, callers that slice ``data.train`` do not.
    A row cap (``--max-rows``) is applied here and noted in ``data.info["row_cap"]``."""
    scenario = scenario.validate()
    scenario, cap_note = cap_rows(scenario)
    t = scenario.train
    data = load_dataset(scenario, num_train=t.steps * t.batch_size, num_eval=t.eval_samples, streaming=streaming)
    sizes = tuple(data.table_sizes)
    if cap_note and max(sizes) > scenario.model.max_rows:  # the data decided its tables: hash into the cap
        sizes = tuple(min(n, scenario.model.max_rows) for n in sizes)
        data.train, data.eval = hash_into(data.train, sizes), hash_into(data.eval, sizes)
        data.table_sizes = sizes
    if cap_note:
        data.info["row_cap"] = cap_note
    model = replace(scenario.model, num_dense=data.num_dense, table_sizes=sizes)
    return replace(scenario, model=model).validate(), data
