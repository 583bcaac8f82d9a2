"""Balance suite: framework x mode x fault x balance (static plan or adaptive re-plan), for the nightly job.

Each supported combination runs once in setup_cache through the one execution path (a record with the
1-process baseline, and for adaptive runs the static plan under the same fault right after). Not in the
quick subset (``bench --quick`` shows every entry as skipped with that reason): a full run launches
real engines several times per combination. Unsupported pairs are skipped with the reason.

Lower is better everywhere: seconds per sample, imbalance (max/mean per-rank busy time, 1.0 is
perfect), time relative to the static plan (static throughput / this throughput), AUC lost against the
static plan, staleness of asynchronous updates, AUC lost against the synchronous run, re-plan seconds,
bytes moved.
"""

import itertools

from recsys_impls import benchsupport as bs

FRAMEWORKS = ["torch", "tf"]
MODES = ["ddp:2", "sharded:2:table-wise", "ps:2"]
# A fault as "kind:value"; the hot table of the tiny preset is table 8 (3 rows: few bytes, many lookups).
FAULTS = ["none", "straggler:1:2", "hot-table:8:0.5"]
BALANCES = ["static", "adaptive"]


def _axes(mode, fault, balance):
    axes = {"parallel": mode, "balance": balance}
    kind, _, value = fault.partition(":")
    if kind == "straggler":
        axes["straggler"] = value
    return axes, ({"hot_table": value} if kind == "hot-table" else {})


def _unsupported(framework, mode, fault, balance):
    from recsys_impls.errors import ScenarioUnsupported
    from recsys_impls.parallel import faults
    from recsys_impls.parallel.spec import check_supported, parse_parallel

    plan = parse_parallel(mode)
    axes, _ = _axes(mode, fault, balance)
    try:
        check_supported(plan, framework)
        faults.check_supported(framework, plan.mode, plan.sharding, axes.get("straggler", "none"), balance)
    except ScenarioUnsupported as exc:
        return str(exc)
    return None


def _scenario(framework, mode, fault, balance):
    from dataclasses import replace

    axes, data = _axes(mode, fault, balance)
    scenario = bs.scenario_for(framework, **axes)
    if data:
        scenario = replace(scenario, data=replace(scenario.data, **data))
        scenario.validate()
        scenario.check_faults()
    return scenario


class Balance:
    params = [FRAMEWORKS, MODES, FAULTS, BALANCES]
    param_names = ["framework", "parallel", "fault", "balance"]
    timeout = 7200

    def setup_cache(self):
        def build(framework, mode, fault, balance):
            why = bs.quick_skip_reason(False) or _unsupported(framework, mode, fault, balance)
            if why is not None:
                raise NotImplementedError(why)
            bs.framework_or_skip(framework)
            return _scenario(framework, mode, fault, balance)

        combos = itertools.product(FRAMEWORKS, MODES, FAULTS, BALANCES)
        return bs.record_grid("balance", tuple(self.param_names), combos, build)

    setup_cache.timeout = 7200

    def setup(self, records, framework, parallel, fault, balance):
        self.r = bs.require_ok(records.get((framework, parallel, fault, balance)))
        self.p = self.r.get("parallel") or {}
        self.b = self.p.get("balance") or {}

    def track_train_seconds_per_sample(self, records, framework, parallel, fault, balance):
        return 1.0 / self.r["throughput"]["train_samples_per_s"]

    track_train_seconds_per_sample.unit = "seconds"

    def track_imbalance(self, records, framework, parallel, fault, balance):
        imb = self.b.get("imbalance")
        if imb is None:
            raise bs.skip("no per-rank busy time measured in this mode")
        return imb

    track_imbalance.unit = "max/mean"

    def track_imbalance_before_replan(self, records, framework, parallel, fault, balance):
        imb = self.b.get("imbalance_before", self.b.get("imbalance_first_window"))
        if imb is None:
            raise bs.skip("no re-plan in this run")
        return imb

    track_imbalance_before_replan.unit = "max/mean"

    def track_time_vs_static(self, records, framework, parallel, fault, balance):
        ratio = (self.p.get("balance_effect") or {}).get("throughput_ratio")
        if not ratio:
            raise bs.skip("static plan: no comparison")
        return 1.0 / ratio

    track_time_vs_static.unit = "time adaptive/static"

    def track_auc_loss_vs_static(self, records, framework, parallel, fault, balance):
        delta = (self.p.get("balance_effect") or {}).get("auc_delta")
        if delta is None:
            raise bs.skip("static plan: no comparison")
        return -delta

    track_auc_loss_vs_static.unit = "AUC(static) - AUC(adaptive)"

    def track_replan_seconds(self, records, framework, parallel, fault, balance):
        s = self.b.get("replan_s", self.b.get("replan_s_total"))
        if s is None or balance == "static":
            raise bs.skip("static plan: no re-plan")
        return s

    track_replan_seconds.unit = "seconds"

    def track_bytes_moved(self, records, framework, parallel, fault, balance):
        if balance == "static" or self.b.get("bytes_moved") is None:
            raise bs.skip("static plan: nothing moved")
        return self.b["bytes_moved"]

    track_bytes_moved.unit = "bytes"

    def track_staleness_mean(self, records, framework, parallel, fault, balance):
        s = ((self.p.get("consistency") or {}).get("staleness") or {}).get("mean")
        if s is None:
            raise bs.skip("synchronous mode: no stale updates")
        return s

    track_staleness_mean.unit = "updates"

    def track_staleness_p95(self, records, framework, parallel, fault, balance):
        s = ((self.p.get("consistency") or {}).get("staleness") or {}).get("p95")
        if s is None:
            raise bs.skip("synchronous mode: no stale updates")
        return s

    track_staleness_p95.unit = "updates"

    def track_auc_loss_vs_sync(self, records, framework, parallel, fault, balance):
        d = (self.p.get("consistency") or {}).get("auc_delta_vs_sync")
        if d is None:
            raise bs.skip("synchronous mode, or no synchronous reference")
        return -d

    track_auc_loss_vs_sync.unit = "AUC(sync) - AUC(async)"

    def track_replicas_differ(self, records, framework, parallel, fault, balance):
        same = self.p.get("replicas_identical")
        if same is None:
            raise bs.skip(self.p.get("replicas_identical_reason") or "no replica check")
        return 0.0 if same else 1.0

    track_replicas_differ.unit = "0 identical, 1 differ"
