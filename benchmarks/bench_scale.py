"""Production-scale suite: the criteo-kaggle, criteo-terabyte and dlrm-v2 presets x embedding compression x
framework, in the memory-bound regime (tables far larger than every cache).

Cheap to import (asv discovery): the grid runs in setup_cache through ``recsys_impls.scalebench``. The 1TB
tables run with a row cap that fits a 24 GiB machine (``RECSYS_SCALE_MAX_ROWS`` changes it; 0 = full
tables). A cell whose pre-flight memory estimate does not fit the memory available is skipped with that
one line. The quick job (``RECSYS_BENCH_QUICK=1``) runs one short criteo-kaggle case (torch, fp32) or
skips it with the reason. Published numbers are lower-is-better: seconds per sample, seconds per GB of
embedding traffic, bytes; the roofline fraction is published as is (higher is closer to the bound).
"""

from recsys_impls import benchsupport as bs
from recsys_impls import scalebench as sb


class Scale:
    """Each preset x compression x framework trained once (with its fp32 baseline when compressed)."""

    params = [sb.SCALE_PRESETS, sb.COMPRESSIONS, sb.FRAMEWORKS]
    param_names = ["preset", "compression", "framework"]
    timeout = 7200

    def setup_cache(self):
        return sb.run_grid(sb.SCALE_PRESETS, sb.COMPRESSIONS, sb.FRAMEWORKS)

    setup_cache.timeout = 7200

    def setup(self, records, preset, compression, framework):
        self.r = bs.require_ok(records.get((preset, compression, framework)))

    def track_train_seconds_per_sample(self, records, preset, compression, framework):
        return 1.0 / self.r["throughput"]["train_samples_per_s"]

    track_train_seconds_per_sample.unit = "seconds"

    def track_infer_seconds_per_sample(self, records, preset, compression, framework):
        return 1.0 / self.r["throughput"]["infer_samples_per_s"]

    track_infer_seconds_per_sample.unit = "seconds"

    def track_infer_seconds_per_embedding_gb(self, records, preset, compression, framework):
        gbs = sb.embedding_gb_per_s(self.r, "infer")
        if not gbs:
            raise bs.skip("no roofline work for inference in this record")
        return 1.0 / gbs

    track_infer_seconds_per_embedding_gb.unit = "seconds"

    def track_train_roofline_fraction(self, records, preset, compression, framework):
        return bs.roofline_figure(self.r, "train", "fraction")

    track_train_roofline_fraction.unit = "fraction of the bound"

    def track_input_seconds_per_sample(self, records, preset, compression, framework):
        rate = ((self.r.get("input") or {}).get("producer") or {}).get("samples_per_s")
        if not rate:
            raise bs.skip("no input producer rate in this record")
        return 1.0 / rate

    track_input_seconds_per_sample.unit = "seconds"

    def track_peak_rss_bytes(self, records, preset, compression, framework):
        return self.r["memory"]["peak_host_rss_bytes"]

    track_peak_rss_bytes.unit = "bytes"


class ScaleRatios:
    """criteo-kaggle with hashing and QR at about 10x and 100x fewer rows (PyTorch): AUC cost against fp32 on
    the same data, the stored embedding ratio and the speed. Nightly only: the quick job skips every cell."""

    params = [sb.RATIO_COMPRESSIONS]
    param_names = ["compression"]
    timeout = 7200

    def setup_cache(self):
        return sb.run_ratio_grid()  # in the quick job every cell is a skipped record

    setup_cache.timeout = 7200

    def setup(self, records, compression):
        self.r = bs.require_ok(records.get((sb.RATIO_PRESET, compression, "torch")))

    def track_auc_cost_vs_fp32(self, records, compression):
        cost = sb.auc_cost(self.r)
        if cost is None:
            raise bs.skip("no fp32 baseline AUC in this record")
        return cost

    track_auc_cost_vs_fp32.unit = "AUC"

    def track_embedding_bytes(self, records, compression):
        return (self.r.get("compression") or {}).get("embedding_bytes") or self.r["size"]["embedding_bytes"]

    track_embedding_bytes.unit = "bytes"

    def track_train_seconds_per_sample(self, records, compression):
        return 1.0 / self.r["throughput"]["train_samples_per_s"]

    track_train_seconds_per_sample.unit = "seconds"

    def track_infer_seconds_per_sample(self, records, compression):
        return 1.0 / self.r["throughput"]["infer_samples_per_s"]

    track_infer_seconds_per_sample.unit = "seconds"


class LookupBandwidth:
    """Forward-only pooled lookups (PyTorch EmbeddingBag, fp32) at criteo-kaggle's tables, with the suite's
    Zipf-skewed ids and with uniform ones, as a fraction of the measured memory bandwidth (STREAM triad).
    Nightly only. Higher is closer to the bound; needs a quiet machine to mean anything."""

    params = [sb.LOOKUP_IDS]
    param_names = ["ids"]
    timeout = 1800

    def setup_cache(self):
        if bs.quick_mode():
            return {}
        return {ids: sb.lookup_bandwidth(ids=ids) for ids in sb.LOOKUP_IDS}

    setup_cache.timeout = 1800

    def setup(self, results, ids):
        if bs.quick_mode():
            raise NotImplementedError(bs.quick_skip_reason(False))
        self.r = results[ids]

    def track_fraction_of_memory_bandwidth(self, results, ids):
        if self.r.get("fraction_of_memory_bandwidth") is None:
            raise bs.skip("no memory bandwidth measured on this machine")
        return self.r["fraction_of_memory_bandwidth"]

    track_fraction_of_memory_bandwidth.unit = "fraction of STREAM triad"

    def track_seconds_per_gb(self, results, ids):
        return 1e9 / self.r["bytes_per_s"]

    track_seconds_per_gb.unit = "seconds"

