"""`python -m recsys_impls list`: every scenario axis and its accepted values."""

from __future__ import annotations

from recsys_impls.config import COMPILE_MODES, OPTIMIZERS, PRECISIONS, PRESETS

_OPTIMIZER_NOTES = {
    "sgd": "plain SGD; embedding gradients sparse (only looked-up rows change)",
    "adagrad": "Adagrad with PyTorch's semantics in both frameworks (default, lr 0.05)",
}


_PER_TABLE = ("table_sizes", "zipf_exponents", "bag_sizes")


def _section(title: str, rows: list[tuple[str, str]]) -> str:
    width = max((len(a) for a, _ in rows), default=0)
    return "\n".join([title, *(f"  {a.ljust(width)}  {b}" for a, b in rows)])


def model_rows() -> list[tuple[str, str]]:
    """One row per registered model: what it is, its metrics, frameworks, and the axes it skips."""
    from recsys_impls.models import models

    rows = []
    for m in models():
        skipped = [f"{axis}: {m.axes[axis]}" for axis in m.axes if m.axis_reason(axis)]
        rows.append((m.name, f"{m.task}: {m.description} [{', '.join(m.builders)}]; quality: "
                             f"{', '.join(m.quality_metrics)}; axes: "
                             + ("all" if not skipped else "all but " + "; ".join(skipped))))
    return rows


def render() -> str:
    from recsys_impls.compression.spec import describe_methods, parallel_rows
    from recsys_impls.models import backends
    from recsys_impls.parallel.spec import describe_modes

    parts = [
        _section("frameworks (--framework)", [
            (b.name, f"{b.label}, {'installed' if b.available() else 'not installed'}; compile: "
                     f"{', '.join(b.compile_modes)}; parallel: {', '.join(b.parallel_modes)}") for b in backends()
        ]),
        _section("models (--model)", model_rows()),
        _section("data (--data)", [
            ("synthetic", "built-in Criteo-like data: Zipf ids, hidden-model labels (default)"),
            ("movielens", "MovieLens-100k read from the installed recbole package"),
            ("PATH.tsv[.gz]", "Criteo-format TSV: label, 13 integer, 26 hex columns"),
            ("PATH.csv", "retrieval models: interactions with header user_id,item_id[,timestamp], any string ids; "
                         "synthetic and movielens give them interactions too (latest per user held out)"),
        ]),
        _section("presets (--preset)", [
            (name, ", ".join(f"{k}={v}" for sec in p.values() for k, v in sec.items()
                             if k not in _PER_TABLE) + f", {len(p['model'].get('table_sizes', []))} tables"
             + f" ({sum(p['model'].get('table_sizes', [])):,} rows)"
             + ("".join(f", per-table {k}" for sec in p.values() for k in sec if k in _PER_TABLE[1:])))
            for name, p in PRESETS.items()
        ]),
        _section("input (--input; --max-rows N caps every table)", [
            ("compute-only", "a bounded set of distinct batches staged before the timed window, rotated (default)"),
            ("end-to-end", "a worker thread produces and stages every batch into a bounded queue inside the window"),
        ]),
        _section("optimizers (--optimizer)", [(o, _OPTIMIZER_NOTES[o]) for o in OPTIMIZERS]),
        _section("compression (--compression, comma-separated to combine)",
                 [(m["spec"], f"{m['description']} [{', '.join(m['frameworks'])}]") for m in describe_methods()]),
        _section("parallel (--parallel)", list(describe_modes())),
        _section("compression x parallel", parallel_rows()),
        _section("faults and balancing (distributed runs)", [
            ("--straggler RANK:FACTOR",
             "before each step that rank sleeps (FACTOR-1) x its own measured compute of the step before"),
            ("--hot-table F:SHARE", "synthetic table F takes SHARE of all lookups (bigger bags)"),
            ("--balance static|adaptive[:K]", "adaptive: data-parallel shares re-chosen every K steps (DDP, "
                                              "MultiWorkerMirrored); TorchRec table-wise tables re-placed once"),
        ]),
        _section("GPU settings", [
            ("--device", "cpu, cuda, cuda:N (PyTorch), GPU:N (TensorFlow)"),
            ("--precision", ", ".join(PRECISIONS)),
            ("--compile", ", ".join(COMPILE_MODES)),
            ("--pinned-memory", "pinned host buffers and non-blocking copies"),
        ]),
    ]
    return "\n\n".join(parts)
