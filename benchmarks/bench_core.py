"""Core suite: every ranking model of the registry (``model`` parameter) in PyTorch vs TensorFlow on built-in
and real data.

asv imports this module to discover benchmarks: nothing heavy at module level; torch and TensorFlow
are imported in setup. asv regressions assume lower is better, so quality is published as 1-AUC and
logloss, and speed as seconds per sample.
"""

from recsys_impls import benchsupport as bs

FRAMEWORKS = ["torch", "tf"]
DATASETS = ["synthetic", "movielens"]
MODELS = bs.ranking_models()  # from the model registry (numpy-only: no framework imported here)


def _roofline_track(phase, key, unit):
    """A track_ benchmark publishing one figure of the record's roofline score for ``phase``."""

    def track(self, records, framework, data, model="dlrm"):
        return bs.roofline_figure(self.r, phase, key)

    track.__name__ = f"track_{phase}_{'roofline_fraction' if key == 'fraction' else key}"
    track.unit = unit
    return track


class Quality:
    """Train, evaluate and measure each scenario once (setup_cache), then publish its figures."""

    params = [FRAMEWORKS, DATASETS, MODELS]
    param_names = ["framework", "data", "model"]
    timeout = 1800

    def setup_cache(self):
        def build(framework, data, model):
            bs.model_or_skip(model)
            bs.framework_or_skip(framework)
            return bs.scenario_for(framework, data, model=model)

        combos = [(f, d, m) for m in MODELS for f in FRAMEWORKS for d in DATASETS]
        return bs.record_grid("core", ("framework", "data", "model"), combos, build)

    setup_cache.timeout = 1800 * len(MODELS)

    def setup(self, records, framework, data, model="dlrm"):
        self.r = bs.require_ok(records.get((framework, data, model)))

    def track_auc_gap(self, records, framework, data, model="dlrm"):
        return 1.0 - self.r["quality"]["auc"]

    track_auc_gap.unit = "1-AUC"

    def track_logloss(self, records, framework, data, model="dlrm"):
        return self.r["quality"]["logloss"]

    track_logloss.unit = "nats"

    def track_normalized_entropy(self, records, framework, data, model="dlrm"):
        return self.r["quality"]["ne"]

    track_normalized_entropy.unit = "NE"

    def track_train_seconds_per_sample(self, records, framework, data, model="dlrm"):
        return 1.0 / self.r["throughput"]["train_samples_per_s"]

    track_train_seconds_per_sample.unit = "seconds"

    def track_infer_seconds_per_sample(self, records, framework, data, model="dlrm"):
        return 1.0 / self.r["throughput"]["infer_samples_per_s"]

    track_infer_seconds_per_sample.unit = "seconds"

    def track_latency_p99(self, records, framework, data, model="dlrm"):
        return self.r["latency_ms"]["p99"] / 1e3

    track_latency_p99.unit = "seconds"

    def track_model_bytes(self, records, framework, data, model="dlrm"):
        return self.r["size"]["model_bytes"]

    track_model_bytes.unit = "bytes"

    def track_embedding_bytes(self, records, framework, data, model="dlrm"):
        return self.r["size"]["embedding_bytes"]

    track_embedding_bytes.unit = "bytes"

    # Roofline: how close each phase came to this machine's measured bound (higher is better).
    track_train_roofline_fraction = _roofline_track("train", "fraction", "fraction of bound")
    track_infer_roofline_fraction = _roofline_track("infer", "fraction", "fraction of bound")
    track_train_achieved_flops_per_s = _roofline_track("train", "achieved_flops_per_s", "FLOP/s")
    track_train_achieved_bytes_per_s = _roofline_track("train", "achieved_bytes_per_s", "bytes/s")
    track_infer_achieved_flops_per_s = _roofline_track("infer", "achieved_flops_per_s", "FLOP/s")
    track_infer_achieved_bytes_per_s = _roofline_track("infer", "achieved_bytes_per_s", "bytes/s")


class TrainStep:
    """One optimizer step, rotating through distinct pre-staged batches."""

    params = [FRAMEWORKS, ["tiny", "dlrm-ref"], MODELS]
    param_names = ["framework", "preset", "model"]
    timeout = 600
    # Timing discipline (asv.conf.json): 10 samples of one call each, in one process, after a warm-up.
    rounds = 1
    repeat = 10
    number = 0  # asv calibrates the calls per sample so one sample lasts sample_time
    sample_time = 0.1
    warmup_time = 1.0

    def setup(self, framework, preset, model="dlrm"):
        # asv re-runs setup before every sample: warm up once, and keep rotating the batches.
        bs.model_or_skip(model)
        self.impl, self.staged, _ = bs.timing_fixture(framework, preset, model=model)
        if getattr(self, "ready", None) != (framework, preset, model):
            for s in self.staged[:2]:
                self.impl.train_step(s)
            self.impl.synchronize()
            self.i = 0
            self.ready = (framework, preset, model)

    def time_train_step(self, framework, preset, model="dlrm"):
        self.impl.train_step(self.staged[self.i % len(self.staged)])
        self.impl.synchronize()
        self.i += 1


class InferBatch:
    """Inference on one batch (result brought to the host), rotating distinct batches."""

    params = [FRAMEWORKS, ["tiny", "dlrm-ref"], MODELS]
    param_names = ["framework", "preset", "model"]
    timeout = 600
    rounds = 1  # timing discipline as in TrainStep
    repeat = 10
    number = 0  # asv calibrates the calls per sample so one sample lasts sample_time
    sample_time = 0.1
    warmup_time = 0.5

    def setup(self, framework, preset, model="dlrm"):
        bs.model_or_skip(model)
        self.impl, self.staged, _ = bs.timing_fixture(framework, preset, model=model)
        if getattr(self, "ready", None) != (framework, preset, model):
            self.impl.to_numpy(self.impl.infer(self.staged[0]))
            self.i = 0
            self.ready = (framework, preset, model)

    def time_infer_batch(self, framework, preset, model="dlrm"):
        self.impl.to_numpy(self.impl.infer(self.staged[self.i % len(self.staged)]))
        self.i += 1


class Memory:
    """Peak resident memory of building the model and training a few steps."""

    params = [FRAMEWORKS, ["tiny", "dlrm-ref"], MODELS]
    param_names = ["framework", "preset", "model"]
    timeout = 600

    def setup(self, framework, preset, model="dlrm"):
        bs.model_or_skip(model)
        bs.framework_or_skip(framework)

    def peakmem_train(self, framework, preset, model="dlrm"):
        impl, staged, _ = bs.timing_fixture(framework, preset, n_batches=4, model=model)
        for s in staged:
            impl.train_step(s)
        impl.synchronize()


class LoopOverhead:
    """What the timed loop itself costs per step, as a fraction of a dlrm-ref training step."""

    params = [FRAMEWORKS]
    param_names = ["framework"]
    timeout = 600
    number = 1
    repeat = 1

    def setup(self, framework):
        from recsys_impls.measure.loop import loop_overhead_seconds, timed_loop

        impl, staged, _ = bs.timing_fixture(framework, "dlrm-ref")
        res = timed_loop(impl.train_step, staged, warmup=2, start=0, steps=2 * len(staged), sync=impl.synchronize)
        self.step_s = res.stats()["median"] / 1e3
        self.overhead_s = loop_overhead_seconds()

    def track_loop_overhead_fraction(self, framework):
        return self.overhead_s / self.step_s

    track_loop_overhead_fraction.unit = "loop s / step s"
