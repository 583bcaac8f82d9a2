"""Retrieval suite: two-tower and NeuMF in PyTorch vs TensorFlow on synthetic interactions and MovieLens-100k.

asv regressions assume lower is better, so quality is published as 1-recall@10 / 1-NDCG@10 (two-tower:
brute-force retrieval over the whole corpus; NeuMF: HR@10 / NDCG@10 of leave-one-out with 100 sampled
items), and speed as seconds per training sample and per query. Nothing heavy at module level.
"""

from recsys_impls import benchsupport as bs

FRAMEWORKS = ["torch", "tf"]
DATASETS = ["synthetic", "movielens"]
MODELS = ["two-tower", "neumf"]
# Training length per model (the goals in the report were measured with these settings or longer).
TRAIN = {"two-tower": {"steps": 600, "batch_size": 512, "learning_rate": 0.1},
         "neumf": {"steps": 1000, "batch_size": 2048, "learning_rate": 0.1}}
HEADLINE = {"two-tower": "recall@10", "neumf": "hr@10"}


def scenario_for(framework, data, model):
    from recsys_impls.config import build_scenario

    train = dict(TRAIN[model], latency_batches=30, **({"steps": 200} if bs.quick_mode() else {}))
    return build_scenario({"model": {"arch": model}, "data": {"source": data}, "scenario": {"framework": framework},
                           "train": train})


class RetrievalQuality:
    """Train, evaluate and measure each scenario once (setup_cache), then publish its figures."""

    params = [FRAMEWORKS, DATASETS, MODELS]
    param_names = ["framework", "data", "model"]
    timeout = 3600

    def setup_cache(self):
        def build(framework, data, model):
            reason = bs.quick_skip_reason((framework, data, model) == ("torch", "synthetic", "two-tower"))
            if reason:
                raise NotImplementedError(reason)
            bs.framework_or_skip(framework)
            return scenario_for(framework, data, model)

        combos = [(f, d, m) for m in MODELS for f in FRAMEWORKS for d in DATASETS]
        return bs.record_grid("retrieval", ("framework", "data", "model"), combos, build)

    setup_cache.timeout = 3600

    def setup(self, records, framework, data, model):
        self.r = bs.require_ok(records.get((framework, data, model)))
        self.model = model

    def track_recall_gap(self, records, framework, data, model):
        return 1.0 - self.r["quality"][HEADLINE[model]]

    track_recall_gap.unit = "1-recall@10 (neumf: 1-HR@10)"

    def track_ndcg_gap(self, records, framework, data, model):
        return 1.0 - self.r["quality"]["ndcg@10"]

    track_ndcg_gap.unit = "1-NDCG@10"

    def track_popularity_recall_gap(self, records, framework, data, model):
        return 1.0 - self.r["quality"]["popularity"][HEADLINE[model]]

    track_popularity_recall_gap.unit = "1-recall@10 of the popularity baseline"

    def track_train_seconds_per_sample(self, records, framework, data, model):
        return 1.0 / self.r["throughput"]["train_samples_per_s"]

    track_train_seconds_per_sample.unit = "seconds"

    def track_query_seconds(self, records, framework, data, model):
        qps = self.r["throughput"].get("queries_per_s")
        if not qps:
            raise bs.skip(f"{model} serves scored candidate lists, not top-k retrieval")
        return 1.0 / qps

    track_query_seconds.unit = "seconds per query (top-100 over the corpus)"

    def track_latency_p99(self, records, framework, data, model):
        return self.r["latency_ms"]["p99"] / 1e3

    track_latency_p99.unit = "seconds"


class QueryBatch:
    """Serving cost: brute-force top-100 of a batch of 256 queries over a corpus of 100k items (64-wide),
    rotating distinct query batches; queries/s = 256 / the time."""

    params = [FRAMEWORKS, [100_000]]
    param_names = ["framework", "items"]
    timeout = 600
    rounds = 1  # timing discipline as in bench_core.TrainStep
    repeat = 10
    number = 0
    sample_time = 0.1
    warmup_time = 1.0

    def setup(self, framework, items):
        bs.framework_or_skip(framework)
        from recsys_impls.models.retrieval import serving_fixture

        key = (framework, items)
        if getattr(self, "key", None) != key:
            self.impl, self.queries = serving_fixture(framework, items)
            self.impl.retrieve(self.queries[0], 100)
            self.impl.synchronize()
            self.key, self.i = key, 0

    def time_top100_query_batch(self, framework, items):
        self.impl.to_numpy(self.impl.retrieve(self.queries[self.i % len(self.queries)], 100))
        self.i += 1
