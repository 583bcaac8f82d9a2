"""The CLI's contract: one-line errors with exit code 2, records on disk, a readable summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_impls.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--steps", "30", "--batch-size", "128", "--eval-samples", "4000"]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys_impls", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize(
    "args, expect",
    [
        (["run", "--framework", "jax"], "--framework jax: accepted: torch, tf"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
        (["run", "--steps", "many"], "invalid int value"),
        (["run", "--steps", "0"], "steps = 0"),
        (["run", "--optimizer", "adam"], "accepted: sgd, adagrad"),
        (["run", "--data", "/no/such/file.tsv"], "no such file"),
        (["run", "--device", "tpu"], "accepted: cpu, cuda"),
        (["run", "--precision", "fp8"], "accepted: fp32"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, expect, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expect in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("framework, parallel, compression, expect", [
    ("torch", "sharded:2:table-wise", "tt:4", "tt contracts one row of each of three cores per id before pooling"),
    ("torch", "sharded:2:row-wise", "qr:4", "qr:mult combines the quotient and remainder rows"),
    ("torch", "sharded:2:table-wise", "hash:0.1,int8", "int8 compress(es) the trained model after training"),
    ("tf", "ps:2", "hash:0.1", "that TensorFlow stage is not built yet"),
    ("tf", "ps:2", "int8", "int8 compress(es) the trained model after training"),
])
def test_compressed_sharded_is_refused_in_one_line(framework, parallel, compression, expect, capsys):
    assert main(["run", "--framework", framework, "--parallel", parallel, "--compression", compression]) == 2
    err = capsys.readouterr().err
    assert expect in err and "use --parallel ddp:N" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_config_file_keys(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("embedding_dim = 8\nbottom_mlp = [16, 8]\nwidgets = 3\n")
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'widgets'" in err and "accepted:" in err
    cfg.write_text("embedding_dim = 8\nbottom_mlp = [16, 9]\n")
    assert main(["run", "--config", str(cfg)]) == 2
    assert "bottom_mlp ends in 9 but embedding_dim is 8" in capsys.readouterr().err
    cfg.write_text("table_sizes = 'big'\n")
    assert main(["run", "--config", str(cfg)]) == 2
    assert "model.table_sizes" in capsys.readouterr().err


def test_config_file_then_flags(tmp_path):
    from recsys_impls.cli import build_parser, scenario_from_args

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"table_sizes": [10, 20], "embedding_dim": 8, "bottom_mlp": [16, 8],
                               "top_mlp": [4, 1], "ids_per_feature": 2, "batch_size": 64}))
    args = build_parser().parse_args(["run", "--config", str(cfg), "--batch-size", "32", "--framework", "tf"])
    s = scenario_from_args(args)
    assert s.model.table_sizes == (10, 20) and s.model.ids_per_feature == 2
    assert s.train.batch_size == 32 and s.framework == "tf"


def test_unwritable_json_path(capsys):
    assert main(["run", "--json", "/no/such/dir/out.json", *SMALL]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_list_shows_every_axis():
    out = _cli("list")
    assert out.returncode == 0, out.stderr
    for word in ("torch", "tf", "synthetic", "movielens", "int8", "ddp", "--precision", "dlrm-ref"):
        assert word in out.stdout


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_run_writes_record(framework, tmp_path):
    out = tmp_path / "r.json"
    proc = _cli("run", "--framework", framework, "--preset", "tiny", *SMALL, "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "AUC" in proc.stdout and "train throughput" in proc.stdout
    record = json.loads(out.read_text())
    assert record["status"] == "ok" and record["framework"] == framework
    for section in ("quality", "throughput", "latency_ms", "size", "memory", "energy", "env", "scenario"):
        assert section in record
    q = record["quality"]
    assert set(q) >= {"auc", "logloss", "ne", "accuracy", "precision", "recall", "f1"}
    assert 0.5 < q["auc"] <= 1.0
    assert record["throughput"]["train_samples_per_s"] > 0
    assert record["size"]["embedding_bytes"] > 0
    # No GPU here: energy is null with its reason, never zero.
    if record["energy"].get("joules", "x") is None:
        assert record["energy"]["reason"]


def test_import_stays_cheap():
    code = ("import sys, recsys_impls, recsys_impls.config, recsys_impls.cli, recsys_impls.benchsupport;"
            "import benchmarks.bench_core;"
            "bad=[m for m in ('torch','tensorflow') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
