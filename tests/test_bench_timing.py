"""asv timing discipline: every time_* benchmark takes enough one-call samples for a finite 99% interval."""

from __future__ import annotations

import importlib
import inspect

import pytest

# Modules whose time_* classes carry the attributes (asv.conf.json describes the scheme).
MODULES = ["benchmarks.bench_core", "benchmarks.bench_gpu"]


def _timed_classes(module_name: str) -> list[type]:
    module = importlib.import_module(module_name)
    return [cls for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and any(n.startswith("time_") for n in vars(cls))]


@pytest.mark.parametrize("module_name", MODULES)
def test_time_benchmarks_take_ten_steady_state_samples_in_one_process(module_name):
    classes = _timed_classes(module_name)
    assert classes, f"{module_name} has no time_* benchmarks"
    for cls in classes:
        # asv_runner: repeat N fixes min = max = N samples per round; one round = one process.
        assert getattr(cls, "repeat", 0) >= 10, cls
        # number 0: asv calibrates back-to-back calls per sample to fill sample_time (steady state)
        assert getattr(cls, "number", 1) == 0 and getattr(cls, "sample_time", 0) >= 0.05, cls
        assert getattr(cls, "rounds", 2) == 1, cls
        assert getattr(cls, "warmup_time", -1) > 0, cls


def test_setup_rerun_keeps_rotating_the_batches(monkeypatch):
    """asv re-runs setup before every sample; the batch index must not reset to 0 each time."""
    from benchmarks import bench_core

    class FakeImpl:
        def __init__(self):
            self.seen = []

        def train_step(self, batch):
            self.seen.append(batch)

        def synchronize(self):
            pass

    impl = FakeImpl()
    bench = bench_core.TrainStep()
    monkeypatch.setattr(bench_core.bs, "timing_fixture", lambda framework, preset, **kw: (impl, list(range(8)), None))
    for _ in range(4):
        bench.setup("torch", "tiny")
        bench.time_train_step("torch", "tiny")
    assert impl.seen == [0, 1, 0, 1, 2, 3]  # two warm-up steps once, then batches 0, 1, 2, 3


def test_roofline_tracks_publish_the_record_figures_or_skip_with_the_reason():
    from benchmarks import bench_core

    q = bench_core.Quality()
    q.r = {"roofline": {"train": {"fraction": 0.5, "achieved_flops_per_s": 2e9}, "infer": None,
                        "reason": "no peaks here"}}
    assert q.track_train_roofline_fraction(None, "torch", "synthetic") == 0.5
    assert q.track_train_achieved_flops_per_s(None, "torch", "synthetic") == 2e9
    assert bench_core.Quality.track_train_roofline_fraction.unit == "fraction of bound"
    with pytest.raises(NotImplementedError, match="no peaks here"):
        q.track_infer_roofline_fraction(None, "torch", "synthetic")
