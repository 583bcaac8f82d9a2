"""Parallel suite: framework x parallel mode (threads, data parallel, sharded embeddings).

Each supported pair runs once in setup_cache (distributed modes launch real engines: torchrun + DDP or
TorchRec DMP, TF MultiWorkerMirroredStrategy or ParameterServerStrategy) and its record is published.
Unsupported pairs are skipped in setup with the reason. Lower is better everywhere: seconds per sample, 1 - scaling
efficiency, imbalance (max/mean load, 1.0 is perfect), 1 - AUC.
"""

import itertools

from recsys_impls import benchsupport as bs

FRAMEWORKS = ["torch", "tf"]
MODES = ["none", "threads:1", "threads:2", "ddp:2", "ddp:2:fp16", "ddp:2:powersgd", "sharded:2:table-wise",
         "sharded:2:row-wise", "mwms:2"]


def _supported(framework, mode):
    from recsys_impls.errors import ScenarioUnsupported
    from recsys_impls.parallel.spec import check_supported, parse_parallel

    try:
        check_supported(parse_parallel(mode), framework)
    except ScenarioUnsupported as exc:
        return str(exc)
    return None


class Parallel:
    params = [FRAMEWORKS, MODES]
    param_names = ["framework", "parallel"]
    timeout = 3600

    def setup_cache(self):
        def build(framework, mode):
            why = bs.quick_skip_reason((framework, mode) in bs.QUICK_PARALLEL) or _supported(framework, mode)
            if why is not None:
                raise NotImplementedError(why)
            bs.framework_or_skip(framework)
            return bs.scenario_for(framework, parallel=mode)

        combos = itertools.product(FRAMEWORKS, MODES)
        return bs.record_grid("parallel", ("framework", "parallel"), combos, build)

    setup_cache.timeout = 3600

    def setup(self, records, framework, parallel):
        self.r = bs.require_ok(records.get((framework, parallel)))
        self.p = self.r.get("parallel") or {}

    def track_train_seconds_per_sample(self, records, framework, parallel):
        return 1.0 / self.r["throughput"]["train_samples_per_s"]

    track_train_seconds_per_sample.unit = "seconds"

    def track_scaling_inefficiency(self, records, framework, parallel):
        eff = self.p.get("scaling_efficiency")
        if eff is None:
            raise bs.skip("no scaling efficiency for a single-process mode")
        return 1.0 - eff

    track_scaling_inefficiency.unit = "1-efficiency"

    def track_imbalance_bytes(self, records, framework, parallel):
        imb = self.p.get("imbalance")
        if not imb:
            raise bs.skip("no sharding plan in this mode")
        return imb["bytes"]

    track_imbalance_bytes.unit = "max/mean"

    def track_imbalance_lookups(self, records, framework, parallel):
        imb = self.p.get("imbalance")
        if not imb:
            raise bs.skip("no sharding plan in this mode")
        return imb["lookups"]

    track_imbalance_lookups.unit = "max/mean"

    def track_auc_gap(self, records, framework, parallel):
        return 1.0 - self.r["quality"]["auc"]

    track_auc_gap.unit = "1-AUC"

    def track_hook_auc_loss(self, records, framework, parallel):
        effect = self.p.get("comm_hook_effect")
        if not effect or effect.get("auc_delta") is None:
            raise bs.skip("no communication hook in this mode")
        return -effect["auc_delta"]

    track_hook_auc_loss.unit = "AUC(plain) - AUC(hook)"

    def track_hook_step_time_ratio(self, records, framework, parallel):
        effect = self.p.get("comm_hook_effect")
        if not effect or effect.get("step_time_ratio") is None:
            raise bs.skip("no communication hook in this mode")
        return effect["step_time_ratio"]

    track_hook_step_time_ratio.unit = "step time hook/plain"

    def track_peak_rss_bytes(self, records, framework, parallel):
        peak = (self.r.get("memory") or {}).get("peak_host_rss_bytes")
        if peak is None:
            raise bs.skip("no peak RSS in this record")
        return peak

    track_peak_rss_bytes.unit = "bytes"

    def track_train_roofline_fraction(self, records, framework, parallel):
        return bs.roofline_figure(self.r, "train", "fraction")

    track_train_roofline_fraction.unit = "fraction of bound (per rank)"
