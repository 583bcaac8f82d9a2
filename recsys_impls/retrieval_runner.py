"""Run one retrieval or collaborative-filtering scenario (two-tower, NeuMF) end to end; return its record.

``recsys_impls.execute`` sends scenarios of these models here. Load interactions, build the backend's
model, stage the training batches (outside the timed window), train through the one timed loop, score
the held-out split (beside the popularity baseline and, on synthetic data, the generator's own ranking:
the achievable figure), then time serving: for two-tower, queries/s of brute-force top-100 over the
whole item corpus and single-query latency; for NeuMF, scored (user, item) pairs/s and the latency of
one user's candidate list. A compressed model (``--compression``) trains in its layout, is finalized into
its stored form after training, and is scored and served from that (``compression.section`` runs it
beside its fp32 baseline).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from recsys_impls import threads
from recsys_impls.config import Scenario
from recsys_impls.data.interactions import Interactions, SyntheticInteractionsConfig, load_interactions, oracle_vectors
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.measure import fingerprint, host, nvml, timing
from recsys_impls.measure.loop import sync_each_step_on, timed_loop
from recsys_impls.metrics_retrieval import hit_ratio_ndcg, retrieval_quality
from recsys_impls.models import retrieval as models
from recsys_impls.record import Record, timestamp

SERVING_K = 100
QUERY_BATCH = 256
TABLES = (".table", "gmf.user", "gmf.item", "mlp.user", "mlp.item")  # embedding parameters of the plain models


def _apply_threads(scenario: Scenario) -> None:
    settings = threads.resolve(scenario.device.threads)
    if scenario.framework == "torch":
        from recsys_impls.torch_impl.settings import apply_threads
    else:
        from recsys_impls.tf_impl.runtime import apply_threads
    apply_threads(settings)  # notes what it applied for the record's threads section


def achievable(arch: str, data: Interactions, seed: int) -> dict[str, Any] | None:
    """What the generator's own probabilities score under the same protocol (synthetic data only)."""
    oracle = oracle_vectors(data)
    if oracle is None:
        return None
    ou, ov = oracle
    if arch == "two-tower":
        out: dict[str, Any] = retrieval_quality(ou[data.test_user], ov, data.test_item, data.test_user, data.seen())
    else:
        users, items = models.neumf_eval_pairs(data, seed)
        scores = np.einsum("uc,ukc->uk", ou[users[:, 0]], ov[items])
        out = hit_ratio_ndcg(scores[:, 0], scores[:, 1:], 10)
    out["how"] = "the generator's P(item | user) as the ranking (Bayes-optimal for the planted structure)"
    return out


def _query_batches(impl: Any, data: Interactions) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """(user vectors, item vectors, staged query batches) of two-tower serving; the corpus staged on the model."""
    users, items = models.encode_all(impl, data)
    impl.stage_corpus(items)
    reps = -(-QUERY_BATCH * 8 // max(users.shape[0], 1))
    pool = np.tile(users, (reps, 1))
    batches = [impl.stage_queries(pool[s : s + QUERY_BATCH]) for s in range(0, pool.shape[0] - QUERY_BATCH + 1,
                                                                             QUERY_BATCH)]
    return users, items, batches


def _serving_two_tower(impl: Any, data: Interactions, t: Any, device: str) -> tuple[dict, dict]:
    users, items, batches = _query_batches(impl, data)
    res = timed_loop(lambda q: impl.retrieve(q, SERVING_K), batches, warmup=1, start=0, steps=len(batches),
                     sync=impl.synchronize, sync_each_step=sync_each_step_on(device))
    n = QUERY_BATCH * len(batches)
    serving = {"k": SERVING_K, "corpus_items": int(items.shape[0]), "query_batch": QUERY_BATCH, "queries": n,
               "seconds": res.seconds, "batch_ms": res.stats(),
               "queries_per_s": n / res.seconds if res.seconds else None,
               "how": "one matmul of the query batch against the encoded corpus, then top-k, on the device"}
    singles = [impl.stage_queries(users[i : i + 1]) for i in range(min(t.latency_batches, users.shape[0]))]
    lat = timed_loop(lambda q: impl.to_numpy(impl.retrieve(q, SERVING_K)), singles, warmup=1, start=0,
                     steps=len(singles), sync=impl.synchronize, sync_each_step=True)
    latency = timing.latency_percentiles(lat.step_seconds) | {"batch_size": 1, "stats": lat.stats(),
                                                             "what": f"one query, top-{SERVING_K}, result on the host"}
    return serving, latency


def _pair_batches(impl: Any, data: Interactions, t: Any) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """(users, candidate items, staged batches of flattened pairs) of NeuMF serving: the leave-one-out lists."""
    users, items = models.neumf_eval_pairs(data, t.seed)
    fu, fi = users.reshape(-1), items.reshape(-1)
    bs = t.batch_size
    return users, items, [impl.stage({"users": fu[s : s + bs], "items": fi[s : s + bs]}) for s in range(0, fu.size, bs)]


def _serving_neumf(impl: Any, data: Interactions, t: Any, device: str) -> tuple[dict, dict]:
    users, items, batches = _pair_batches(impl, data, t)
    fu = users.reshape(-1)
    bs = t.batch_size
    res = timed_loop(impl.infer, batches, warmup=1, start=0, steps=len(batches), sync=impl.synchronize,
                     sync_each_step=sync_each_step_on(device))
    serving = {"pairs": int(fu.size), "batch_size": bs, "seconds": res.seconds, "batch_ms": res.stats(),
               "pairs_per_s": fu.size / res.seconds if res.seconds else None}
    per_user = users.shape[1]
    singles = [impl.stage({"users": users[i], "items": items[i]}) for i in range(min(t.latency_batches,
                                                                                     users.shape[0]))]
    lat = timed_loop(lambda s: impl.to_numpy(impl.infer(s)), singles, warmup=1, start=0, steps=len(singles),
                     sync=impl.synchronize, sync_each_step=True)
    latency = timing.latency_percentiles(lat.step_seconds) | {"batch_size": per_user, "stats": lat.stats(),
                                                             "what": "one user's candidate list scored"}
    return serving, latency


def _bytes(params: dict[str, np.ndarray], tables: tuple[str, ...]) -> dict[str, int]:
    return {"model_bytes": int(sum(v.nbytes for v in params.values())),
            "embedding_bytes": int(sum(v.nbytes for k, v in params.items() if k.endswith(tables))),
            "how": "float32 parameter bytes"}


def synthetic_shape(scenario: Scenario) -> SyntheticInteractionsConfig:
    """The synthetic interactions' size: ``table_sizes = [users, items]`` when the scenario sets exactly two
    (``--config``), else the defaults."""
    sizes = scenario.model.table_sizes
    if len(sizes) == 2:
        return replace(SyntheticInteractionsConfig(), num_users=int(sizes[0]), num_items=int(sizes[1]))
    return SyntheticInteractionsConfig()


def check_axes(scenario: Scenario) -> Any:
    """ScenarioUnsupported for an axis value these models do not take (before anything is loaded or
    trained); returns the compression plan (None: the plain model)."""
    arch = scenario.model.arch
    spec = scenario.model.spec
    if spec.task != "retrieval":
        raise ValueError(f"run_retrieval runs retrieval models; {arch} is a {spec.task} model")
    if scenario.parallel not in ("", "none"):
        spec.require_axis("parallel", f"--parallel {scenario.parallel}")
    plan = compression_plan(scenario)
    d = scenario.device
    if (d.precision, d.compile, d.pinned_memory) != ("fp32", "none", False):
        raise ScenarioUnsupported(f"model {arch}: --precision {d.precision}, --compile {d.compile}, --pinned-memory "
                                  f"{d.pinned_memory}: retrieval models run in fp32 without compile modes or pinned "
                                  "buffers (yet); --device cpu, cuda[:N] or GPU:N is supported")
    return plan


def _model(scenario: Scenario, data: Interactions | None) -> tuple[Any, Interactions, Any]:
    """Check the scenario's axes, apply its threads, load its interactions and build its model: (config, data,
    model)."""
    arch = scenario.model.arch
    plan = check_axes(scenario)
    t = scenario.train
    cfg = models.config_from(scenario.model)
    _apply_threads(scenario)
    data = data or load_data(scenario)
    impl = models.build(arch, scenario.framework, cfg, data, t.optimizer, t.learning_rate, t.seed,
                        scenario.device.device, plan=plan)
    return cfg, data, impl


def load_data(scenario: Scenario) -> Interactions:
    """The scenario's interactions (a compressed run and its baseline share one load)."""
    return load_interactions(scenario.data.source, scenario.train.seed, scenario.data.skip_bad_lines,
                             synthetic_shape(scenario))


def compression_plan(scenario: Scenario) -> Any:
    """The scenario's compression plan, or None for the plain model; ScenarioUnsupported (with the model's
    reason) for a method these models do not take."""
    if scenario.compression in ("", "none"):
        return None
    from recsys_impls.compression.spec import parse_compression

    plan = parse_compression(scenario.compression)
    reason = scenario.model.spec.compression_reason(plan.methods)
    if reason is not None:
        raise ScenarioUnsupported(f"model {scenario.model.arch}: --compression {scenario.compression}: {reason}")
    return plan


def _to_stored(arch: str, cfg: Any, data: Interactions, impl: Any, plan: Any, seed: int,
               record_master: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Finalize the trained model into its stored form and serve from it from here on; returns its size
    section (serialized stored bytes, and the plain fp32 model's through the same container) and, where
    the plan has post-training steps (a storage precision, freq-prune), the quality of the float32 master
    weights before them."""
    from recsys_impls.compression.layouts import plan_layout
    from recsys_impls.models import retrieval_tables as rt

    ts = models.table_set(arch, cfg, data)
    layout = plan_layout(plan)
    counts = rt.id_counts(ts, models.table_counts(arch, data)) if layout.needs_id_counts else None
    master = models.quality(arch, impl, data, seed) if record_master else None
    stored = rt.stored_form(ts, plan, impl.get_params(), counts)
    got = rt.stored_bytes(stored)
    impl.use_stored(stored)
    size = {"model_bytes": got["model"], "embedding_bytes": got["embedding"],
            "how": "serialized .npz of the stored arrays (quality and serving measured from them)",
            "baseline_container_bytes": rt.baseline_bytes(ts, models.plain_initial(arch, cfg, data, seed))}
    return size, master


def prepared_steps(scenario: Scenario, phase: str = "train", max_steps: int | None = None) -> tuple[Any, list, Any]:
    """(model, staged batches, step) of one phase, for the profiler: the training batches and train step, or
    the serving batches and their step (two-tower: top-SERVING_K over the corpus; NeuMF: scored pairs)."""
    cfg, data, impl = _model(scenario, None)
    t = scenario.train
    if phase == "train":
        steps = t.warmup_steps + t.steps if max_steps is None else max_steps
        batches, _ = models.training_batches(scenario.model.arch, cfg, data, t.batch_size, steps, t.seed)
        staged, step = [impl.stage(b) for b in batches[:steps]], impl.train_step
    elif scenario.model.arch == "two-tower":
        staged, step = _query_batches(impl, data)[2], (lambda q: impl.retrieve(q, SERVING_K))
    else:
        staged, step = _pair_batches(impl, data, t)[2], impl.infer
    impl.synchronize()
    return impl, staged[:max_steps] if max_steps is not None else staged, step


def run_retrieval(scenario: Scenario, progress: bool = False, data: Interactions | None = None) -> Record:
    """Train, evaluate and measure the scenario's retrieval model (``model.arch``: two-tower or neumf)."""
    started = time.time()
    arch = scenario.model.arch
    cfg, data, impl = _model(scenario, data)
    t = scenario.train
    device = scenario.device.device
    batches, epochs = models.training_batches(arch, cfg, data, t.batch_size, t.warmup_steps + t.steps, t.seed)
    t0 = time.perf_counter()
    staged = [impl.stage(b) for b in batches]
    impl.synchronize()
    stage_s = time.perf_counter() - t0
    host_w = host.host_window()
    res = timed_loop(impl.train_step, staged, warmup=t.warmup_steps, steps=t.steps, sync=impl.synchronize,
                     sync_each_step=sync_each_step_on(device), window=[host_w], progress=progress, desc="train")
    train = res.summary(t.batch_size) | {"steps": t.warmup_steps + t.steps, "batch_size": t.batch_size,
                                         "epochs": epochs, "distinct_batches": len(staged), "stage_seconds": stage_s,
                                         "final_loss": impl.loss(staged[(t.warmup_steps + t.steps - 1) % len(staged)])}
    size, master = _bytes(impl.get_params(), TABLES), None
    plan = compression_plan(scenario)
    if plan is not None:
        from recsys_impls.compression.layouts import plan_layout

        post_training = plan.precision != "fp32" or bool(plan_layout(plan).trained_as)
        size, master = _to_stored(arch, cfg, data, impl, plan, t.seed, post_training)
    quality = models.quality(arch, impl, data, t.seed)
    reach = achievable(arch, data, t.seed)
    if reach is not None:
        quality["achievable"] = reach
    if arch == "two-tower":
        serving, latency = _serving_two_tower(impl, data, t, device)
        throughput = {"queries_per_s": serving["queries_per_s"], "infer_samples_per_s": serving["queries_per_s"]}
    else:
        serving, latency = _serving_neumf(impl, data, t, device)
        throughput = {"infer_samples_per_s": serving["pairs_per_s"]}
    throughput = {"train_samples_per_s": res.summary(t.batch_size)["samples_per_s"], **throughput,
                  "input_conversion_in_timed_window": False}
    sc = scenario.to_dict()
    sc["model"]["table_sizes"] = [data.user_features.rows, data.item_features.rows]
    sc["model"]["resolved"] = {"arch": arch, **asdict(cfg)}
    info = {k: v for k, v in data.info.items() if not k.startswith("_")}
    record = Record.new(
        sc, quality=quality, train=train, infer=serving, serving=serving, throughput=throughput, latency_ms=latency,
        size=size,
        memory={"peak_host_rss_bytes": host.peak_rss_bytes(), "peak_device_bytes": None,
                "peak_device_bytes_reason": "not measured for retrieval models"},
        energy=nvml.null_summary("not sampled for retrieval models"),
        cpu={"train": res.windows[0].summary(), **host.cpu_energy_status()},
        data={"name": data.name, "users": data.num_users, "items": data.num_items,
              "train_interactions": data.num_train, "eval_users": int(data.test_user.size), **info},
        roofline={"reason": "no analytic work model for retrieval models"},
        env=fingerprint.environment_fingerprint(),
    )
    if master is not None:
        record["master_quality"] = master
    record["threads"] = threads.record_section(scenario.framework)
    record["duration_s"] = time.time() - started
    record["timestamp"] = timestamp(started)
    return record.cleaned()
