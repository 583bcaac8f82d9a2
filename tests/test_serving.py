"""Export and serving: the shared input layout, both frameworks' ONNX exports of the same seeded
parameters agreeing in ONNX Runtime, parity recorded in the manifests, the dynamic batcher, LoadGen
verdicts, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from recsys_impls.cli import main
from recsys_impls.data.batch import Batch
from recsys_impls.serving.batcher import DynamicBatcher
from recsys_impls.serving.layout import ServingInputs, concat, from_padded, to_padded

pytest.importorskip("onnxruntime")
MODEL = {"table_sizes": [50, 30, 20], "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [16, 1],
         "ids_per_feature": 2, "batch_size": 64}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cfg") / "model.json"
    path.write_text(json.dumps(MODEL))
    return str(path)


def _flags(config_file: str, framework: str, seed: int = 0) -> list[str]:
    return ["--framework", framework, "--config", config_file, "--steps", "0", "--eval-samples", "1024",
            # 0 = the process's CPUs, as the other in-process TF tests use: TF fixes its pools once per process
            "--seed", str(seed), "--threads", "0"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory, config_file) -> dict[str, Path]:
    """The seeded initial parameters (--steps 0) exported to ONNX by both frameworks (and SavedModel by TF)."""
    out = {}
    for framework, fmt in (("torch", "onnx"), ("tf", "onnx,savedmodel")):
        folder = tmp_path_factory.mktemp(f"export-{framework}")
        # The TorchScript-based exporter: about 1 s, where the dynamo one's first call costs 10-20 s here
        # (the dynamo path is exercised by the serving benchmark and recorded in its manifests).
        assert main(["export", *_flags(config_file, framework), "--format", fmt, "--out", str(folder),
                     "--force", "--onnx-exporter", "torchscript"]) == 0
        out[framework] = folder
    return out


def _batch(seed: int = 0, b: int = 9, f: int = 3) -> Batch:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 4, size=(f, b)).astype(np.int32)  # empty bags included
    ids = rng.integers(0, 20, size=int(lengths.sum())).astype(np.int64)
    return Batch(rng.normal(size=(b, 13)).astype(np.float32), ids, lengths, np.zeros(b, np.float32))


def test_layout_round_trip_and_concat():
    batch = _batch()
    padded = to_padded(batch)
    assert padded.ids.shape == (9, 3, 3) and padded.lengths.shape == (9, 3)
    back = from_padded(padded)
    np.testing.assert_array_equal(back.ids, batch.ids)
    np.testing.assert_array_equal(back.lengths, batch.lengths)
    np.testing.assert_array_equal(padded.ids[2, 1, : batch.lengths[1, 2]], batch.slice(2, 3).feature_ids(1))
    both = concat([padded.take([0, 1]), to_padded(_batch(1, b=2)).take([0])])
    assert both.batch_size == 3 and both.ids.shape[2] == max(3, to_padded(_batch(1, b=2)).ids.shape[2])


def test_both_frameworks_onnx_agree_and_parity_is_recorded(exports):
    import onnxruntime as ort

    mans = {fw: json.loads((exports[fw] / "manifest-onnx.json").read_text()) for fw in exports}
    assert mans["torch"]["params_checksum"] == mans["tf"]["params_checksum"]  # the same seeded parameters
    for man in [*mans.values(), json.loads((exports["tf"] / "manifest-savedmodel.json").read_text())]:
        assert man["parity"]["ok"] is True and man["parity"]["max_abs_diff"] <= 1e-5
        assert man["parity"]["samples"] > 0 and man["stored_bytes"] > 0
        assert [i["name"] for i in man["inputs"]] == ["dense", "ids", "lengths"]
    assert "TorchScript-based" in mans["torch"]["exporter"] and "tf2onnx" in mans["tf"]["exporter"]
    feeds = to_padded(_batch(3, b=33)).feeds()
    feeds["ids"] = feeds["ids"] % 20  # in range of every table
    probs = {fw: ort.InferenceSession(str(exports[fw] / "model.onnx"), providers=["CPUExecutionProvider"])
             .run(["probability"], feeds)[0] for fw in exports}
    assert probs["torch"].shape == (33,)
    assert np.abs(probs["torch"] - probs["tf"]).max() <= 1e-5
    assert np.all((probs["torch"] > 0) & (probs["torch"] < 1))


def test_batcher_batches_every_sample_once():
    samples = to_padded(_batch(b=10))
    done: list[tuple[list[int], np.ndarray]] = []
    lock = threading.Lock()

    def complete(ids, probs):
        with lock:
            done.append((ids, probs))

    b = DynamicBatcher(lambda x: x.dense[:, 0].copy(), samples, complete, max_batch=4, max_wait_s=5.0)
    b.submit([(100 + i, i) for i in range(10)])
    b.close()  # closing flushes the queue without waiting out max_wait
    assert sorted(i for ids, _ in done for i in ids) == list(range(100, 110))
    assert b.batch_sizes == [4, 4, 2]
    ids, probs = done[0]
    np.testing.assert_array_equal(probs, samples.dense[[i - 100 for i in ids], 0])

    failing = DynamicBatcher(lambda x: 1 / 0, samples, lambda *_: None, max_batch=1, max_wait_s=0.0)
    failing.submit([(0, 0)])
    with pytest.raises(ZeroDivisionError):
        failing.close()


def test_loadgen_scenarios_are_valid_and_logs_kept(exports, tmp_path):
    pytest.importorskip("mlperf_loadgen")
    from recsys_impls.serving import loadgen, runtimes

    rt = runtimes.build("onnxruntime", "torch", exports["torch"], threads=1)
    samples = ServingInputs(**{k: v for k, v in to_padded(_batch(4, b=256)).feeds().items()})
    samples = ServingInputs(samples.dense, samples.ids % 20, samples.lengths)
    settings = loadgen.LoadSettings(min_duration_ms=300, min_query_count=600, target_qps=3000,
                                    latency_bound_ms=200.0, max_batch=32, max_wait_ms=0.5)
    for scenario in loadgen.SCENARIOS:
        res = loadgen.run(rt, samples, scenario, settings, tmp_path / scenario)
        assert res["validity"] == "VALID", (scenario, res)
        assert res["figure"]["value"] is not None and res["figure"]["value"] > 0
        assert (tmp_path / scenario / "mlperf_log_summary.txt").is_file()
        assert res["batcher"]["samples"] >= 600
    assert res["batcher"]["max_batch_seen"] <= 32


@pytest.mark.parametrize("args, expect", [
    (["export", "--format", "tflite", "--out", "X"], "--format 'tflite': unknown"),
    (["export", "--framework", "tf", "--format", "aoti", "--out", "X"], "not exported by --framework tf"),
    (["serve", "--runtime", "tensorrt-llm"], "--runtime 'tensorrt-llm': unknown"),
    (["serve", "--framework", "tf", "--runtime", "torch-export"], "runs torch models"),
    (["serve", "--runtime", "onnxruntime", "--scenario", "MultiStream"], "--scenario 'MultiStream'"),
    (["export", "--steps", "-1", "--out", "X"], "steps = -1"),
    (["export", "--compression", "hash:0.1", "--format", "onnx", "--out", "X"], "export holds plain"),
    (["export", "--compression", "int8", "--format", "onnx", "--out", "X"], "use --format onnx-int8"),
])
def test_bad_input_is_one_line_and_exit_2(args, expect, capsys):
    assert main(args) == 2
    assert expect in _error_line(capsys)


def _error_line(capsys) -> str:
    """The one error line (a TensorFlow start-up note may follow it in a process that started TF)."""
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    return errors[0]


def test_non_empty_export_dir_and_mismatched_manifest_are_refused(exports, config_file, tmp_path, capsys):
    assert main(["export", *_flags(config_file, "torch"), "--format", "onnx", "--out", str(exports["torch"])]) == 2
    assert "exists and is not empty" in _error_line(capsys)
    # Another seed: other parameters than the export holds.
    assert main(["serve", *_flags(config_file, "torch", seed=1), "--runtime", "onnxruntime", "--export-dir",
                 str(exports["torch"]), "--out", str(tmp_path / "s")]) == 2
    err = _error_line(capsys)
    assert "params_checksum" in err and "does not match" in err
    assert main(["serve", *_flags(config_file, "torch"), "--runtime", "torch-export", "--export-dir",
                 str(exports["torch"]), "--out", str(tmp_path / "s2")]) == 2
    assert "no manifest-exported-program.json" in _error_line(capsys)


def test_bench_figures_and_cheap_import():
    import subprocess
    import sys

    from recsys_impls.serving import bench as sb

    rec = {"status": "ok", "serving": {"scenarios": {"Offline": {"samples_per_s": 4000.0},
                                                     "SingleStream": {"latency_ms": {"p90": 2.0}}},
                                       "server_search": {"max_valid_qps": 500.0}}}
    assert sb.figure(rec, "Offline") == pytest.approx(1 / 4000)
    assert sb.figure(rec, "SingleStream") == pytest.approx(0.002)
    assert sb.figure(rec, "Server-nobatch") == pytest.approx(1 / 500)
    assert "no tf variant" in sb._skip_reason("compile", "Offline", "tf")
    code = ("import sys, benchmarks.bench_serving, recsys_impls.serving.serve, recsys_impls.serving.bench;"
            "bad=[m for m in ('torch','tensorflow','onnxruntime') if m in sys.modules]; sys.exit(1 if bad else 0)")
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_serve_runs_loadgen_against_native_and_savedmodel(exports, config_file, tmp_path, capsys):
    pytest.importorskip("mlperf_loadgen")
    from recsys_impls.record import Record

    short = ["--min-duration-ms", "300", "--min-queries", "600", "--target-qps", "3000", "--latency-bound-ms", "200",
             "--samples", "512"]
    runs = {"torch-eager": (_flags(config_file, "torch"), "all", None),
            "tf-savedmodel": (_flags(config_file, "tf"), "Offline", exports["tf"])}
    for runtime, (flags, scenarios, export_dir) in runs.items():
        out = tmp_path / runtime
        extra = ["--export-dir", str(export_dir)] if export_dir else []
        assert main(["serve", *flags, "--runtime", runtime, "--scenario", scenarios, "--out", str(out), *short,
                     *extra]) == 0
        rec = Record.load(out / "record.json")
        assert rec["kind"] == "serving" and rec["serving"]["runtime"]["runtime"] == runtime
        assert rec["serving"]["all_valid"], rec["serving"]["scenarios"]
        for name, res in rec["serving"]["scenarios"].items():
            assert (out / "loadgen" / name / "mlperf_log_detail.txt").is_file()
            assert res["figure"]["value"] > 0
    assert set(Record.load(tmp_path / "torch-eager" / "record.json")["serving"]["scenarios"]) == {
        "SingleStream", "Offline", "Server"}
    assert "Offline: VALID" in capsys.readouterr().out


def test_server_search_brackets_the_highest_valid_qps(monkeypatch, tmp_path):
    from recsys_impls.serving import loadgen

    limit = {"qps": 1000.0}

    def fake_run(runtime, samples, scenario, settings, log_dir):
        ok = settings.target_qps <= limit["qps"]
        return {"valid": ok, "latency_ms": {"p99": 5.0 if ok else 50.0}, "completed_samples_per_s": None,
                "batcher": {"mean_batch": 1.0}, "log_dir": str(log_dir)}

    monkeypatch.setattr(loadgen, "run", fake_run)
    res = loadgen.server_search(None, None, loadgen.LoadSettings(), tmp_path, start_qps=300, tries=10)
    assert 900 <= res["max_valid_qps"] <= 1000 < res["first_invalid_qps"] <= 1.1 * res["max_valid_qps"] + 1
    limit["qps"] = 0.0  # nothing meets the bound
    never = loadgen.server_search(None, None, loadgen.LoadSettings(), tmp_path, start_qps=8000, tries=10)
    assert never["max_valid_qps"] is None and "no run down to" in never["reason"]
    assert min(a["target_qps"] for a in never["attempts"]) >= 8000 / 16


def test_serving_record_schema():
    from recsys_impls.record import Record, RecordError

    rec = Record.new({"framework": "torch"}, kind="serving", serving={"scenarios": {}}, env={})
    rec.validate()
    del rec["serving"]
    with pytest.raises(RecordError, match="a serving record needs 'serving'"):
        rec.validate()
