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
