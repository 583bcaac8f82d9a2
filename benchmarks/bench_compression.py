"""Compression suite: compressed models (``model`` parameter: every registered model, ranking and retrieval)
against their fp32 baseline, and batch data codecs.

Cheap to import (asv discovery); everything heavy happens in setup_cache, once per class, through
``recsys_impls.compression.bench`` (testable library code). Published numbers are lower-is-better:
bytes, 1/ratio, AUC loss, seconds per sample, seconds per MB; ``track_quality_loss`` is the loss in each
model's gate metric (AUC for ranking, recall@10 for two-tower, HR@10 for NeuMF), the AUC and logloss
tracks skip for the retrieval models. Unsupported or failed combinations (a retrieval model with an MLP
method) raise NotImplementedError in setup, so asv shows them as skipped with the reason in the record.
``RECSYS_BENCH_QUICK=1`` limits the model methods to cb.QUICK_METHODS on dlrm (a couple of minutes); the
other models show as skipped with the quick reason.
"""

from recsys_impls import benchsupport as bs
from recsys_impls.compression import bench as cb

METHODS = list(cb.MODEL_METHODS)
FRAMEWORKS = ["torch", "tf"]
DATASETS = ["synthetic", "movielens"]
MODELS = bs.all_models()  # from the model registry (numpy-only: no framework imported here)


class CompressedModel:
    """Each method x framework x dataset x model trained once with its baseline; figures from the record."""

    params = [METHODS, FRAMEWORKS, DATASETS, MODELS]
    param_names = ["method", "framework", "data", "model"]
    timeout = 3600

    def setup_cache(self):
        def build(method, framework, data, model):
            bs.model_or_skip(model, "compression")
            bs.compression_or_skip(model, method)
            why = bs.quick_skip_reason(method in cb.QUICK_METHODS)
            if why:
                raise NotImplementedError(why)
            bs.framework_or_skip(framework)
            return bs.with_model(cb.scenario(framework, data, method), model)

        combos = [(c, f, d, m) for m in MODELS for f in FRAMEWORKS for d in DATASETS for c in METHODS]
        return bs.record_grid("compression", ("method", "framework", "data", "model"), combos, build)

    setup_cache.timeout = 3600 * len(MODELS)

    def setup(self, records, method, framework, data, model="dlrm"):
        self.c = cb.require_section(records.get((method, framework, data, model)))

    def track_model_bytes(self, records, method, framework, data, model="dlrm"):
        return self.c["model_bytes"]

    track_model_bytes.unit = "bytes"

    def track_embedding_bytes(self, records, method, framework, data, model="dlrm"):
        return self.c["embedding_bytes"]

    track_embedding_bytes.unit = "bytes"

    def track_inverse_embedding_ratio(self, records, method, framework, data, model="dlrm"):
        return 1.0 / self.c["embedding_ratio"]

    track_inverse_embedding_ratio.unit = "stored/fp32"

    def _figure(self, key):
        if self.c.get(key) is None:
            raise bs.skip(f"the record has no {key} (gate metric: {self.c.get('gate_metric')})")
        return self.c[key]

    def track_auc_loss(self, records, method, framework, data, model="dlrm"):
        return -self._figure("auc_delta")

    track_auc_loss.unit = "AUC (baseline - compressed)"

    def track_quality_loss(self, records, method, framework, data, model="dlrm"):
        return -self._figure(f"{self.c.get('gate_metric', 'auc')}_delta")

    track_quality_loss.unit = "gate metric (baseline - compressed)"

    def track_logloss_change(self, records, method, framework, data, model="dlrm"):
        return self._figure("logloss_delta")

    track_logloss_change.unit = "nats"

    def track_infer_seconds_per_sample(self, records, method, framework, data, model="dlrm"):
        return 1.0 / self.c["infer_samples_per_s"]

    track_infer_seconds_per_sample.unit = "seconds"

    def track_infer_time_vs_baseline(self, records, method, framework, data, model="dlrm"):
        return 1.0 / self.c["infer_speed_vs_baseline"]

    track_infer_time_vs_baseline.unit = "compressed/baseline"


class DataCodecs:
    """Lossless and lossy batch encodings: ratio and throughput on a synthetic Criteo-like batch."""

    params = [list(cb.CODECS)]
    param_names = ["codec"]
    timeout = 600

    def setup_cache(self):
        return cb.codec_grid()

    def setup(self, results, codec):
        self.m = results[codec]

    def track_inverse_ratio(self, results, codec):
        return 1.0 / self.m["ratio"]

    track_inverse_ratio.unit = "encoded/raw"

    def track_encode_seconds_per_mb(self, results, codec):
        return 1.0 / self.m["encode_mb_per_s"]

    track_encode_seconds_per_mb.unit = "seconds"

    def track_decode_seconds_per_mb(self, results, codec):
        return 1.0 / self.m["decode_mb_per_s"]

    track_decode_seconds_per_mb.unit = "seconds"


class LossyDataCodecQuality:
    """AUC change when the eval data goes through a lossy dense-feature codec (same trained model)."""

    params = [list(cb.LOSSY_CODECS), FRAMEWORKS]
    param_names = ["codec", "framework"]
    timeout = 1800

    def setup_cache(self):
        return cb.lossy_codec_grid(FRAMEWORKS)

    setup_cache.timeout = 1800

    def setup(self, results, codec, framework):
        self.r = bs.require_ok(results.get((codec, framework)))

    def track_auc_loss(self, results, codec, framework):
        return -self.r["auc_delta"]

    track_auc_loss.unit = "AUC (original - decoded)"
