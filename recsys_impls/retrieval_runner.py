"""Run one retrieval or collaborative-filtering scenario (two-tower, NeuMF) end to end; return its record.

``recsys_impls.execute`` sends scenarios of these models here. Load interactions, build the backend's
model, stage the training batches (outside the timed window), train through the one timed loop, score
the held-out split (beside the popularity baseline and, on synthetic data, the generator's own ranking:
the achievable figure), then time serving: for two-tower, queries/s of brute-force top-100 over the
whole item corpus and single-query latency; for NeuMF, scored (user, item) pairs/s and the latency of
one user's candidate list. A compressed model (``--compression``) trains in its layout, is finalized into
its stored form after training, and is scored and served from that (``compression.section`` runs it
beside its fp32 baseline). Data parallel (``ddp:N``, ``mwms:N``): each rank runs ``run_rank`` (launched
by ``parallel.run``); rank 0 evaluates and serves through the same ``evaluate``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from recsys_impls import hugepages, threads
from recsys_impls.config import Scenario
from recsys_impls.data.interactions import Interactions, SyntheticInteractionsConfig, load_interactions, oracle_vectors
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.measure import fingerprint, host, nvml, timing
from recsys_impls.measure.loop import sync_each_step_on, timed_loop
from recsys_impls.metrics_retrieval import hit_ratio_ndcg, retrieval_quality
from recsys_impls.models import retrieval as models
from recsys_impls.record import Record, timestamp
from recsys_impls.runner import device_memory_reason, energy_record

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


def _serving_two_tower(impl: Any, data: Interactions, t: Any, device: str, window: list) -> tuple[dict, dict]:
    users, items, batches = _query_batches(impl, data)
    res = timed_loop(lambda q: impl.retrieve(q, SERVING_K), batches, warmup=1, start=0, steps=len(batches),
                     sync=impl.synchronize, sync_each_step=sync_each_step_on(device), window=window)
    n = QUERY_BATCH * len(batches)
    serving = {"samples": n, "k": SERVING_K, "corpus_items": int(items.shape[0]), "query_batch": QUERY_BATCH,
               "queries": n, "seconds": res.seconds, "batch_ms": res.stats(),
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


def _serving_neumf(impl: Any, data: Interactions, t: Any, device: str, window: list) -> tuple[dict, dict]:
    users, items, batches = _pair_batches(impl, data, t)
    fu = users.reshape(-1)
    bs = t.batch_size
    res = timed_loop(impl.infer, batches, warmup=1, start=0, steps=len(batches), sync=impl.synchronize,
                     sync_each_step=sync_each_step_on(device), window=window)
    serving = {"samples": int(fu.size), "pairs": int(fu.size), "batch_size": bs, "seconds": res.seconds,
               "batch_ms": res.stats(), "pairs_per_s": fu.size / res.seconds if res.seconds else None}
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
        from recsys_impls.parallel.spec import parse_parallel

        par = parse_parallel(scenario.parallel)
        if par.mode != "threads":
            spec.require_axis(f"parallel:{par.mode}", f"--parallel {scenario.parallel}")
        if par.comm_hook != "none":
            spec.require_axis("parallel:comm-hooks", f"--parallel {scenario.parallel}")
        faulted = [f"--{k} {v}" for k, v, off in (("straggler", scenario.straggler, "none"),
                                                  ("balance", scenario.balance, "static")) if v not in ("", off)]
        if par.distributed and faulted:
            spec.require_axis("parallel:faults", " ".join(faulted))
    return compression_plan(scenario)


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
                        scenario.device, plan=plan)
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


def evaluate(scenario: Scenario, cfg: Any, data: Interactions, impl: Any, energy_window: Any = None) -> dict[str, Any]:
    """After training: the size section (a compressed model finalized into its stored form first), the
    held-out quality beside the popularity baseline and the achievable figure, and serving (throughput and
    single-query latency; ``energy_window``: an NVML window over the serving loop). What one process records,
    and what rank 0 of a data-parallel run records."""
    arch, t, device = scenario.model.arch, scenario.train, scenario.device.device
    size, master = _bytes(impl.get_params(), TABLES), None
    plan = compression_plan(scenario)
    if plan is not None:
        from recsys_impls.compression.layouts import plan_layout

        post_training = plan.precision != "fp32" or bool(plan_layout(plan).trained_as)
        size, master = _to_stored(arch, cfg, data, impl, plan, t.seed, post_training)
    quality = models.quality(arch, impl, data, t.seed)
    window = [energy_window] if energy_window is not None else []
    reach = achievable(arch, data, t.seed)
    if reach is not None:
        quality["achievable"] = reach
    if arch == "two-tower":
        serving, latency = _serving_two_tower(impl, data, t, device, window)
        throughput = {"queries_per_s": serving["queries_per_s"], "infer_samples_per_s": serving["queries_per_s"]}
    else:
        serving, latency = _serving_neumf(impl, data, t, device, window)
        throughput = {"infer_samples_per_s": serving["pairs_per_s"]}
    return {"size": size, "master_quality": master, "quality": quality, "serving": serving, "latency_ms": latency,
            "throughput": throughput}


def resolved_model(arch: str, cfg: Any, data: Interactions) -> dict[str, Any]:
    """The record's model fields the data decides: table sizes (users, items) and the resolved config."""
    return {"table_sizes": [data.user_features.rows, data.item_features.rows],
            "resolved": {"arch": arch, **asdict(cfg)}}


def data_section(data: Interactions) -> dict[str, Any]:
    info = {k: v for k, v in data.info.items() if not k.startswith("_")}
    return {"name": data.name, "users": data.num_users, "items": data.num_items,
            "train_interactions": data.num_train, "eval_users": int(data.test_user.size), **info}


def run_rank(ctx: Any, comm: Any) -> None:
    """One rank of a data-parallel retrieval run (``ddp:N`` torch, ``mwms:N`` TensorFlow), through the workers'
    protocol (phases, result file) and the one timed loop.

    Every rank loads the same interactions and draws the same global batches (``training_batches``, one
    seeded draw, NeuMF's sampled negatives included), and keeps its contiguous B/N rows of each, as the
    ranking models' data-parallel path does: the union of the ranks' rows is the one-process batch. The
    model is the one-process model made data parallel (``comm.build``). After training, rank 0 evaluates
    and serves (``evaluate``: the replicas are identical, so any rank gives the same figures) while the
    others wait at the barrier. ``comm``: ``build(arch, cfg, data, scenario, plan)``, ``barrier()``,
    ``gather_strings(text)`` (every rank's string, in rank order), ``backend``, ``framework``."""
    from recsys_impls.measure.host import peak_rss_bytes
    from recsys_impls.parallel.shards import fingerprint, local_rows
    from recsys_impls.record import rank_result

    rank, world = ctx.rank, ctx.world_size
    scenario = ctx.scenario
    arch, t = scenario.model.arch, scenario.train
    plan = check_axes(scenario)
    ctx.phase("data")
    cfg = models.config_from(scenario.model)
    data = load_data(scenario)
    batches, epochs = models.training_batches(arch, cfg, data, t.batch_size, t.warmup_steps + t.steps, t.seed)
    local = [local_rows(b, t.batch_size, rank, world) for b in batches]
    ctx.phase("build")
    impl = comm.build(arch, cfg, data, scenario, plan)
    staged = [impl.stage(b) for b in local]
    impl.synchronize()
    ctx.phase("train")
    loop = timed_loop(impl.train_step, staged, warmup=t.warmup_steps, steps=t.steps, sync=impl.synchronize,
                      sync_each_step=sync_each_step_on(scenario.device.device), barrier=comm.barrier)
    # a collective for two-tower (the global batch's items): every rank takes part
    final_loss = impl.loss(staged[(t.warmup_steps + t.steps - 1) % len(staged)])
    ctx.phase("evaluate")
    params = impl.get_params()
    prints = comm.gather_strings(fingerprint(params))
    if ctx.job.get("dump_params"):
        np.savez(ctx.run_dir / f"rank{rank}.params.npz", **params)
    result = rank_result(rank, world, ctx.job["plan"]["mode"], loop.summary(t.batch_size // world),
                         t.batch_size // world, threads=ctx.job.get("threads_per_process", 1),
                         threads_section=threads.record_section(comm.framework), backend=comm.backend,
                         final_loss=final_loss, replica_fingerprints=prints, peak_rss_bytes=peak_rss_bytes(),
                         epochs=epochs, distinct_batches=len(staged))
    if rank == 0:
        ev = evaluate(scenario, cfg, data, impl)
        result.update(quality=ev["quality"], size=ev["size"], serving=ev["serving"], latency_ms=ev["latency_ms"],
                      serving_throughput=ev["throughput"], data_name=data.name, data_section=data_section(data),
                      resolved_model=resolved_model(arch, cfg, data))
        if ev["master_quality"] is not None:
            result["master_quality"] = ev["master_quality"]
    ctx.write_result(result)
    comm.barrier()
    ctx.phase("done")


def run_retrieval(scenario: Scenario, progress: bool = False, data: Interactions | None = None) -> Record:
    """Train, evaluate and measure the scenario's retrieval model (``model.arch``: two-tower or neumf) in this
    process (``execute`` launches the data-parallel ones, whose ranks run ``run_rank``)."""
    from recsys_impls.parallel.spec import parse_parallel

    if parse_parallel(scenario.parallel or "none").distributed:
        check_axes(scenario)  # an unsupported mode is refused for what it is
        raise ValueError(f"run_retrieval runs one process; --parallel {scenario.parallel} goes through execute()")
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
    sampler = nvml.NvmlSampler()
    idle_watts = sampler.measure_idle(seconds=1.0) if sampler.available else None
    host_w = host.host_window()
    train_w, serve_w = (sampler.window(), sampler.window()) if sampler.available else (None, None)
    res = timed_loop(impl.train_step, staged, warmup=t.warmup_steps, steps=t.steps, sync=impl.synchronize,
                     sync_each_step=sync_each_step_on(device), window=[host_w] + ([train_w] if train_w else []),
                     progress=progress, desc="train")
    train = res.summary(t.batch_size) | {"steps": t.warmup_steps + t.steps, "batch_size": t.batch_size,
                                         "epochs": epochs, "distinct_batches": len(staged), "stage_seconds": stage_s,
                                         "final_loss": impl.loss(staged[(t.warmup_steps + t.steps - 1) % len(staged)])}
    ev = evaluate(scenario, cfg, data, impl, serve_w)
    sampler.close()
    energy = energy_record(sampler, idle_watts, (train_w, train["timed_samples"]), (serve_w, ev["serving"]["samples"]))
    throughput = {"train_samples_per_s": train["samples_per_s"], **ev["throughput"],
                  "input_conversion_in_timed_window": False}
    sc = scenario.to_dict()
    sc["model"].update(resolved_model(arch, cfg, data))
    record = Record.new(
        sc, quality=ev["quality"], train=train, infer=ev["serving"], serving=ev["serving"], throughput=throughput,
        latency_ms=ev["latency_ms"], size=ev["size"],
        memory={"peak_host_rss_bytes": host.peak_rss_bytes(), "huge_pages": hugepages.record_section(),
                "peak_device_bytes": None, "peak_device_bytes_reason": device_memory_reason(scenario)},
        energy=energy,
        implementation=impl.describe(),
        cpu={"train": res.windows[0].summary(), **host.cpu_energy_status()},
        data=data_section(data),
        roofline={"reason": "no analytic work model for retrieval models"},
        env=fingerprint.environment_fingerprint(),
    )
    if ev["master_quality"] is not None:
        record["master_quality"] = ev["master_quality"]
    record["threads"] = threads.record_section(scenario.framework)
    record["duration_s"] = time.time() - started
    record["timestamp"] = timestamp(started)
    return record.cleaned()
