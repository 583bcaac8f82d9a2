"""What benchmarks/bench_compression.py runs, kept here so asv discovery stays cheap and it is testable.

Scenario shape: the "tiny" preset's tables with 64-wide embeddings (row-wise int8 keeps 8 bytes of
scale and bias per row, so its ratio depends on the width: 64 -> 3.56x, 16 -> 2.67x) and short
training, one intra-op thread. Records are saved beside asv's results like the core suite's.
"""

from __future__ import annotations

from typing import Any

from recsys_impls.compression.codecs import STANDARD_CODECS, lossy_quality_effect, measure_codec

MODEL_METHODS = ("fp16", "bf16", "int8", "int4", "hash:0.1", "qr:10", "mixed-dim:0.3", "tt:16", "freq-prune:3",
                 "prune:0.8", "mlp-int8", "int8,prune:0.8")
QUICK_METHODS = ("int8", "int4", "hash:0.1", "qr:10", "mixed-dim:0.3")
CODECS = STANDARD_CODECS
LOSSY_CODECS = tuple(c for c in STANDARD_CODECS if "dense-" in c)
TRAIN = {"steps": 150, "batch_size": 256, "eval_samples": 10000, "latency_batches": 20}


def scenario(framework: str, data: str, compression: str = "none") -> Any:
    from recsys_impls.config import PRESETS, build_scenario

    layers: dict[str, dict[str, Any]] = {k: dict(v) for k, v in PRESETS["tiny"].items()}
    layers["model"].update(embedding_dim=64, bottom_mlp=[64, 64])
    layers["train"].update(TRAIN)
    layers["data"] = {"source": data}
    # One intra-op thread: on a shared 2-core machine, default threading made runs ~10x slower and the
    # baseline/compressed speed ratios noise; single-threaded both sides compare like for like.
    layers["device"] = {"threads": 1}
    layers["scenario"] = {"framework": framework, "compression": compression}
    return build_scenario(layers)


def require_section(record: dict[str, Any] | None) -> dict[str, Any]:
    """The record's compression section plus the absolute inference speed, or NotImplementedError."""
    from recsys_impls.benchsupport import require_ok

    r = require_ok(record)
    if "compression" not in r:
        raise NotImplementedError("record has no compression section")
    return {**r["compression"], "infer_samples_per_s": r["throughput"]["infer_samples_per_s"]}


def codec_batch(samples: int = 16384, seed: int = 0) -> Any:
    """A Criteo-shaped synthetic batch from the project's generator (numpy only)."""
    from recsys_impls.data.loader import load_dataset

    sc = scenario("torch", "synthetic")
    return load_dataset(sc, num_train=samples, num_eval=256).train


def codec_grid() -> dict[str, dict[str, Any]]:
    batch = codec_batch()
    return {c: measure_codec(c, batch, repeats=3) for c in CODECS}


def lossy_codec_grid(frameworks: list[str]) -> dict[Any, Any]:
    """Train each framework's baseline once on synthetic data; AUC of its eval data through each codec."""
    from recsys_impls import registry
    from recsys_impls.data.loader import prepare
    from recsys_impls.record import Record
    from recsys_impls.runner import train

    out: dict[Any, Any] = {}
    for framework in frameworks:
        base = scenario(framework, "synthetic")
        try:
            sc, data = prepare(base)
            impl = registry.build(sc)
            train(impl, data.train.split(sc.train.batch_size), sc.train.warmup_steps)
            for codec in LOSSY_CODECS:
                out[(codec, framework)] = {"status": "ok", **lossy_quality_effect(impl, data.eval, codec)}
        except Exception as exc:  # noqa: BLE001 - recorded with its reason
            for codec in LOSSY_CODECS:
                out[(codec, framework)] = Record.failed(base, exc).to_plain()
    return out


