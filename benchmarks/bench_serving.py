"""Serving suite: each runtime under each MLPerf LoadGen scenario, for both frameworks.

Cheap to import (asv discovery); the grid runs once in setup_cache through ``recsys_impls.serving.bench``.
Figures are lower-is-better: SingleStream p90 latency, Offline seconds per sample, Server (and
Server-nobatch, batch size 1) seconds per query at the highest QPS whose p99 meets 10 ms.
``RECSYS_BENCH_QUICK=1`` runs native PyTorch and ONNX Runtime, Offline and SingleStream only.
"""

from recsys_impls import benchsupport as bs
from recsys_impls.serving import bench as sb


class Serving:
    params = [list(sb.RUNTIMES), list(sb.SCENARIOS), list(sb.FRAMEWORKS)]
    param_names = ["runtime", "scenario", "framework"]
    timeout = 3600

    def setup_cache(self):
        return sb.grid()

    setup_cache.timeout = 3600

    def setup(self, records, runtime, scenario, framework):
        self.record = records.get((runtime, scenario, framework))
        bs.require_ok(self.record)

    def track_figure(self, records, runtime, scenario, framework):
        return sb.figure(self.record, scenario)

    track_figure.unit = "seconds"

    def track_valid(self, records, runtime, scenario, framework):
        serving = self.record["serving"]
        if scenario.startswith("Server"):
            return 1.0 if (serving.get("server_search") or {}).get("max_valid_qps") else 0.0
        return 1.0 if serving["all_valid"] else 0.0

    track_valid.unit = "LoadGen VALID (1) or INVALID (0)"
