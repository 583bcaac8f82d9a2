"""`python -m recsys_impls list`: every scenario axis and its accepted values."""

from __future__ import annotations

from recsys_impls.config import COMPILE_MODES, FRAMEWORKS, OPTIMIZERS, PRECISIONS, PRESETS

_OPTIMIZER_NOTES = {
    "sgd": "plain SGD; embedding gradients sparse (only looked-up rows change)",
    "adagrad": "Adagrad with PyTorch's semantics in both frameworks (default, lr 0.05)",
}


_PER_TABLE = ("table_sizes", "zipf_exponents", "bag_sizes")


def _section(title: str, rows: list[tuple[str, str]]) -> str:
    width = max((len(a) for a, _ in rows), default=0)
    return "\n".join([title, *(f"  {a.ljust(width)}  {b}" for a, b in rows)])


def render() -> str:
    from recsys_impls.compression.spec import describe_methods
    from recsys_impls.parallel.spec import describe_modes
    from recsys_impls.registry import framework_available

    parts = [
        _section("frameworks (--framework)", [
            (f, "installed" if framework_available(f) else "not installed") for f in FRAMEWORKS
        ]),
        _section("data (--data)", [
            ("synthetic", "built-in Criteo-like data: Zipf ids, hidden-model labels (default)"),
            ("movielens", "MovieLens-100k read from the installed recbole package"),
            ("PATH.tsv[.gz]", "Criteo-format TSV: label, 13 integer, 26 hex columns"),
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
        _section("GPU settings", [
            ("--device", "cpu, cuda, cuda:N (PyTorch), GPU:N (TensorFlow)"),
            ("--precision", ", ".join(PRECISIONS)),
            ("--compile", ", ".join(COMPILE_MODES)),
            ("--pinned-memory", "pinned host buffers and non-blocking copies"),
        ]),
    ]
    return "\n\n".join(parts)
