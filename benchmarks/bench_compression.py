"""Compression suite: compressed DLRMs against their fp32 baseline, and batch data codecs.

Cheap to import (asv discovery); everything heavy happens in setup_cache, once per class, through
``recsys_impls.compression.bench`` (testable library code). Published numbers are lower-is-better:
bytes, 1/ratio, AUC loss, seconds per sample, seconds per MB. Unsupported or failed combinations
raise NotImplementedError in setup, so asv shows them as skipped with the reason in the record.
``RECSYS_BENCH_QUICK=1`` limits the model methods to int8 and hash:0.1 (a couple of minutes).
"""

from recsys_impls import benchsupport as bs
from recsys_impls.compression import bench as cb

METHODS = list(cb.MODEL_METHODS)
FRAMEWORKS = ["torch", "tf"]
DATASETS = ["synthetic", "movielens"]


class CompressedModel:
    """Each method x framework x dataset trained once with its baseline; figures from the record."""

    params = [METHODS, FRAMEWORKS, DATASETS]
    param_names = ["method", "framework", "data"]
    timeout = 3600

    def setup_cache(self):
        return cb.run_model_grid(METHODS, FRAMEWORKS, DATASETS)

    setup_cache.timeout = 3600

    def setup(self, records, method, framework, data):
        self.c = cb.require_section(records.get((method, framework, data)))

    def track_model_bytes(self, records, method, framework, data):
        return self.c["model_bytes"]

    track_model_bytes.unit = "bytes"

    def track_embedding_bytes(self, records, method, framework, data):
        return self.c["embedding_bytes"]

    track_embedding_bytes.unit = "bytes"

    def track_inverse_embedding_ratio(self, records, method, framework, data):
        return 1.0 / self.c["embedding_ratio"]

    track_inverse_embedding_ratio.unit = "stored/fp32"

    def track_auc_loss(self, records, method, framework, data):
        return -self.c["auc_delta"]

    track_auc_loss.unit = "AUC (baseline - compressed)"

    def track_logloss_change(self, records, method, framework, data):
        return self.c["logloss_delta"]

    track_logloss_change.unit = "nats"

    def track_infer_seconds_per_sample(self, records, method, framework, data):
        return 1.0 / self.c["infer_samples_per_s"]

    track_infer_seconds_per_sample.unit = "seconds"

    def track_infer_time_vs_baseline(self, records, method, framework, data):
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
