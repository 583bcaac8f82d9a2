"""Hostile input: every bad value, path or limit ends as one line and exit code 2 before anything starts.

Each case runs the CLI in-process (``recsys_impls.cli.main``); none of them reaches training, so the
file stays fast. The cases come from a probe of the command line (sizes that were OOM-killed, world
sizes that started dozens of processes, values that trained and then failed, paths that lost the
record) plus the neighbours of each.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from recsys_impls import config, preflight
from recsys_impls.cli import main
from recsys_impls.config import CRITEO_SMALL_TABLES, Scenario, build_scenario
from recsys_impls.errors import MAX_ECHO, UsageError, clip, shown

FIXTURE = Path(__file__).parent / "data" / "criteo_small.tsv"  # 20 good lines
GOOD_LINE = FIXTURE.read_text().splitlines()[0]
LONGEST_MESSAGE = 600  # what + where + accepted, with at most MAX_ECHO characters of the input


@pytest.fixture(autouse=True)
def _nothing_launches(monkeypatch):
    """A case that got as far as starting workers or training has escaped the checks."""
    from recsys_impls.parallel import launch

    def refuse(*_a, **_k):
        raise AssertionError("a process group was launched")

    monkeypatch.setattr(launch, "run_group", refuse)
    monkeypatch.delenv(config.PARALLEL_TIMEOUT_ENV, raising=False)


def _two_cores(monkeypatch) -> None:
    monkeypatch.setattr(preflight, "available_cores", lambda *a, **k: {"cores": 2, "source": "test"})


def _error(capsys, *args: str) -> str:
    """Run the CLI; it must exit 2 with exactly one short line on stderr and no traceback."""
    code = main(["run", *args])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, (code, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert len(err) < LONGEST_MESSAGE, len(err)
    return err


def _cfg(tmp_path: Path, text: str | bytes, name: str = "c.toml") -> str:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


def _tsv(tmp_path: Path, lines: list[str], name: str = "d.tsv") -> str:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return str(p)


# --- sizes and limits --------------------------------------------------------------------------------


def test_huge_batch_is_refused_with_the_estimate_and_what_is_available(capsys):
    err = _error(capsys, "--batch-size", "100000000")
    assert "estimated peak memory" in err and "TiB" in err and "available" in err and "--batch-size" in err


def test_memory_check_compares_with_what_is_available(monkeypatch, capsys):
    monkeypatch.setattr(preflight, "available_memory", lambda *a, **k: {"bytes": 100 << 20, "source": "test"})
    err = _error(capsys, "--preset", "tiny")
    assert "exceeds the 100.0 MiB available (test)" in err


@pytest.mark.parametrize("name", ["c.toml", "c.json"])
def test_trillion_row_table_is_a_memory_error_not_a_numpy_traceback(tmp_path, capsys, name):
    sizes = [10**12] + [10] * 25
    text = (f"table_sizes = {sizes}\n" if name.endswith(".toml") else json.dumps({"table_sizes": sizes}))
    err = _error(capsys, "--config", _cfg(tmp_path, text, name))
    assert "estimated peak memory" in err and "table_sizes" in err


def test_world_size_beyond_the_cores_is_refused_before_launch(monkeypatch, capsys):
    _two_cores(monkeypatch)
    err = _error(capsys, "--parallel", "ddp:64")
    assert "64 processes x 1 thread(s) = 64 busy threads on 2 available core(s)" in err and "--oversubscribe" in err


def test_oversubscribe_lets_a_deliberate_run_through(monkeypatch):
    _two_cores(monkeypatch)
    s = build_scenario({"scenario": {"parallel": "ddp:8"}})
    with pytest.raises(UsageError):
        preflight.check_cores(s)
    out = preflight.check_cores(s, allow_oversubscribe=True)
    assert out["oversubscribed"] and out["busy_threads"] == 8 and out["cap"] == 4


@pytest.mark.parametrize("args, expect", [
    (["--threads", "100000"], "threads = 100000 (--threads"),
    (["--threads", "8"], "--threads 8: 8 threads on 2 available core(s)"),
    (["--parallel", "threads:9"], "--parallel threads:9: 9 threads"),
    (["--parallel", "ddp:2", "--threads", "3"], "2 processes x 3 thread(s) = 6 busy threads"),
])
def test_thread_counts(monkeypatch, capsys, args, expect):
    _two_cores(monkeypatch)
    assert expect in _error(capsys, *args)


def test_tf_parameter_servers_are_not_counted_as_busy(monkeypatch):
    _two_cores(monkeypatch)
    s = build_scenario({"scenario": {"framework": "tf", "parallel": "ps:2"}})
    out = preflight.check_cores(s)
    assert out["processes"] == {"trainers": 2, "servers": 3, "launchers": 0} and out["busy_threads"] == 2


# --- values: finite, integral, in range, no coercion ---------------------------------------------------


@pytest.mark.parametrize("args, expect", [
    (["--lr", "inf"], "learning_rate = inf (--lr"),
    (["--lr", "nan"], "learning_rate = nan (--lr"),
    (["--lr", "0"], "learning_rate = 0.0 (--lr"),
    (["--lr", "1e9"], "at most 1000"),
    (["--seed", "-1"], "seed = -1 (--seed"),
    (["--seed", str(2**64)], "an integer from 0 to 4294967295"),
    (["--steps", "0"], "steps = 0"),
    (["--steps", str(10**30)], "steps = 1000000000000000000000000000000"),
    (["--batch-size", "-5"], "batch_size = -5 (--batch-size"),
    (["--eval-samples", "0"], "eval_samples = 0"),
    (["--device", "cuda:99999999999"], "--device cuda:99999999999: accepted"),
    (["--parallel", "x" * 5000], "a string of at most 200 characters"),
    (["--compression", "int8," * 2000], "a string of at most 200 characters"),
])
def test_bad_flag_values(capsys, args, expect):
    assert expect in _error(capsys, *args)


@pytest.mark.parametrize("text, expect", [
    ("learning_rate = inf\n", "learning_rate = inf"),
    ("learning_rate = 1e400\n", "learning_rate = inf"),
    ("learning_rate = nan\n", "learning_rate = nan"),
    ("learning_rate = 1" + "0" * 400 + "\n", "at most 1000"),
    ("batch_size = 1e400\n", "a number past the float range reads as inf"),
    ("batch_size = 100.5\n", "a whole number, not rounded"),
    ("batch_size = true\n", "true/false is not accepted"),
    ("batch_size = '512'\n", "a string is not accepted"),
    ("zipf_exponent = inf\n", "zipf_exponent = inf"),
    ("warmup_steps = -1\n", "warmup_steps = -1"),
    ("threads = 5000\n", "threads = 5000"),
    ("skip_bad_lines = 1\n", "true or false"),
    ('table_sizes = ["100", 100, 100]\n', "table_sizes[0] = '100'"),
    ("table_sizes = [100, 100.7, 100]\n", "table_sizes[1] = 100.7"),
    ("table_sizes = [100, 100, true]\n", "table_sizes[2] = True"),
    ("table_sizes = []\n", "a list of 1 to 1024 table sizes"),
    ("table_sizes = [0, 1]\n", "table_sizes[0] = 0"),
    ("bottom_mlp = [64, -16]\n", "bottom_mlp[1] = -16"),
    (f"table_sizes = {[5] * 2000}\n", "a list of 1 to 1024 table sizes"),
    ("[train]\nseed = -3\n", "seed = -3"),
])
def test_bad_toml_values(tmp_path, capsys, text, expect):
    err = _error(capsys, "--config", _cfg(tmp_path, text))
    assert expect in err and ("accepted" in err or "must" in err)


@pytest.mark.parametrize("text, expect", [
    ('{"learning_rate": 1e400}', "learning_rate = inf"),
    ('{"learning_rate": NaN}', "learning_rate = nan"),
    ('{"batch_size": 1e400}', "reads as inf"),
    ('{"batch_size": ' + "9" * 5000 + "}", "not usable JSON"),
    ('{"table_sizes": ["100", 100.7, true]}', "table_sizes[0] = '100'"),
    ('{"table_sizes": [100, 100.7]}', "table_sizes[1] = 100.7"),
    ('{"table_sizes": [true]}', "table_sizes[0] = True"),
    ('{"seed": null}', "seed = None"),
    ('{"batch_size": 512.0, "steps": 1e400}', "steps = inf"),
    ("[1, 2]", "the top level must be a table"),
    ("{" * 100000, "JSON"),
])
def test_bad_json_values(tmp_path, capsys, text, expect):
    assert expect in _error(capsys, "--config", _cfg(tmp_path, text, "c.json"))


def test_integral_floats_from_json_are_accepted():
    cfg = {"model": {"table_sizes": [10.0, 20]}, "train": {"batch_size": 64.0}}
    s = build_scenario(cfg)
    assert s.model.table_sizes == (10, 20) and type(s.train.batch_size) is int


def test_config_file_problems(tmp_path, capsys):
    assert "not UTF-8 text (byte 0xff at offset 14)" in _error(
        capsys, "--config", _cfg(tmp_path, b"embedding_dim=\xff\xfe\n"))
    assert "is a directory" in _error(capsys, "--config", str(tmp_path))
    assert "no such file" in _error(capsys, "--config", str(tmp_path / "none.toml"))
    assert "not a regular file or a pipe" in _error(capsys, "--config", "/dev/null")
    big = _cfg(tmp_path, b"# " + b"x" * (config.MAX_CONFIG_BYTES + 10))
    assert "larger than 4 MiB" in _error(capsys, "--config", big)


def test_echo_of_user_input_is_bounded(tmp_path, capsys):
    """A huge value is quoted in at most MAX_ECHO characters (with its length), never whole."""
    text = "table_sizes = [" + ", ".join(['"9"'] * 100000) + "]\n"
    err = _error(capsys, "--config", _cfg(tmp_path, text))
    assert "table_sizes[0] = '9'" in err
    err = _error(capsys, "--data", "/no/such/" + "d" * 3000)
    assert "(3009 characters)" in err and "no such file" in err
    assert len(shown("x" * 10**6)) <= MAX_ECHO + 2 and len(clip("y" * 10**6)) <= MAX_ECHO
    assert shown([1] * 10**6).count("1") <= 8


# --- data paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, expect", [
    ("dir", "is a directory, not a file"),
    ("devnull", "is a character device, not a file or a pipe"),
    ("empty", "--data '': empty"),
    ("missing", "no such file"),
    ("broken-link", "a broken symbolic link"),
    ("not-a-folder", "a part of the path is not a folder"),
])
def test_data_paths_say_what_they_are(tmp_path, capsys, kind, expect):
    path = {"dir": str(tmp_path), "devnull": "/dev/null", "empty": "", "missing": str(tmp_path / "x.tsv"),
            "not-a-folder": str(FIXTURE / "x.tsv")}.get(kind)
    if kind == "broken-link":
        path = str(tmp_path / "link.tsv")
        os.symlink(tmp_path / "gone.tsv", path)
    err = _error(capsys, "--data", path)
    assert expect in err and "accepted: synthetic, movielens" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_data_file(tmp_path, capsys):
    p = Path(_tsv(tmp_path, [GOOD_LINE] * 3))
    p.chmod(0)
    assert "not readable (permission denied)" in _error(capsys, "--data", str(p))


def _fifo_with(tmp_path: Path, payload: bytes) -> tuple[str, threading.Thread]:
    fifo = tmp_path / "pipe.tsv"
    os.mkfifo(fifo)

    def write() -> None:
        try:
            with open(fifo, "wb") as fh:
                fh.write(payload)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return str(fifo), writer


@pytest.mark.parametrize("gz", [False, True])
def test_a_pipe_is_read_by_the_tsv_reader(tmp_path, gz):
    import gzip

    import numpy as np

    from recsys_impls.data.criteo_tsv import load_criteo_tsv

    raw = FIXTURE.read_bytes()
    fifo, writer = _fifo_with(tmp_path, gzip.compress(raw) if gz else raw)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    build_scenario({"data": {"source": fifo}})  # accepted as a data source; nothing is read
    got = load_criteo_tsv(fifo, 13, tuple(CRITEO_SMALL_TABLES), 12, 8)
    writer.join(5)
    ref = load_criteo_tsv(FIXTURE, 13, tuple(CRITEO_SMALL_TABLES), 12, 8)
    for split in ("train", "eval"):
        for name in ("dense", "ids", "labels"):
            np.testing.assert_array_equal(getattr(getattr(got, split), name), getattr(getattr(ref, split), name))


def test_a_pipe_cannot_feed_a_distributed_run(tmp_path, capsys):
    fifo = tmp_path / "p.tsv"
    os.mkfifo(fifo)  # never opened: the checks only stat it
    err = _error(capsys, "--data", str(fifo), "--parallel", "ddp:2")
    assert "a pipe can be read once" in err and "regular file" in err


def test_tsv_shape_is_checked_before_launch(tmp_path, capsys):
    err = _error(capsys, "--data", str(FIXTURE), "--config", _cfg(tmp_path, "num_dense = 4\n"), "--parallel", "ddp:2")
    assert "a Criteo TSV has 13 dense and 26 categorical columns" in err


def test_huge_tsv_field_is_rejected_at_once_and_not_echoed(tmp_path, capsys):
    fields = GOOD_LINE.split("\t")
    fields[20] = "a" * 20_000_000
    p = tmp_path / "big.tsv"
    p.write_text("\n".join([GOOD_LINE, "\t".join(fields), GOOD_LINE]) + "\n")
    err = _error(capsys, "--data", str(p), "--steps", "1", "--batch-size", "1", "--eval-samples", "1")
    assert f"{p}:2: line is longer than any valid line (704 bytes)" in err and "aaaaaaaaaa" not in err


def test_huge_field_inside_a_block_is_described_briefly(tmp_path):
    from recsys_impls.data.criteo_tsv import load_criteo_tsv

    fields = GOOD_LINE.split("\t")
    fields[30] = "f" * 5000
    p = _tsv(tmp_path, [GOOD_LINE, "\t".join(fields), GOOD_LINE])
    with pytest.raises(UsageError, match=r":2: line is 5\d\d\d bytes, longer than any valid line") as err:
        load_criteo_tsv(p, 13, tuple(CRITEO_SMALL_TABLES), 2, 1)
    assert len(str(err.value)) < LONGEST_MESSAGE
    ds = load_criteo_tsv(p, 13, tuple(CRITEO_SMALL_TABLES), 1, 1, skip_bad_lines=True)
    assert ds.info["bad_lines"] == 1


def test_a_file_without_newlines_is_not_buffered_whole(tmp_path):
    from recsys_impls.data.criteo_tsv import load_criteo_tsv

    p = tmp_path / "flat.tsv"
    p.write_bytes(b"1\t" * 3000 + b"\n".join([GOOD_LINE.encode()] * 3) + b"\n")
    with pytest.raises(UsageError, match=r"flat.tsv:1: line is longer than any valid line"):
        load_criteo_tsv(p, 13, tuple(CRITEO_SMALL_TABLES), 2, 1, block_bytes=1000)
    ds = load_criteo_tsv(p, 13, tuple(CRITEO_SMALL_TABLES), 1, 1, skip_bad_lines=True, block_bytes=1000)
    assert ds.info["bad_lines"] == 1 and ds.train.batch_size == 1


def test_short_tsv_names_eval_samples(tmp_path, capsys):
    p = _tsv(tmp_path, [GOOD_LINE] * 300)
    err = _error(capsys, "--data", p, "--steps", "1", "--batch-size", "256")
    assert "split into 2 train and 298 eval" in err and "--eval-samples to at most 44" in err


def test_a_tsv_shorter_than_one_batch(tmp_path, capsys):
    p = _tsv(tmp_path, [GOOD_LINE] * 30)
    assert "lower --batch-size below 30" in _error(capsys, "--data", p, "--batch-size", "64", "--steps", "1")


# --- MovieLens decides its own shape ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["table_sizes = [10, 20]\n", "num_dense = 4\n", "[model]\ntable_sizes = [5]\n"])
def test_movielens_refuses_a_shape_from_the_config_file(tmp_path, capsys, text):
    err = _error(capsys, "--data", "movielens", "--config", _cfg(tmp_path, text))
    assert "--data movielens decides its own tables" in err and "remove table_sizes/num_dense" in err


def test_movielens_with_a_preset_is_fine_and_the_record_says_what_was_replaced():
    from recsys_impls.data.dataset import Dataset
    from recsys_impls.data.loader import _note_shape

    s = build_scenario({"model": {"table_sizes": [5, 5]}, "data": {"source": "movielens"}})  # e.g. a preset
    ds = Dataset(name="movielens", train=None, eval=None, num_dense=4, table_sizes=(944, 1683), info={})
    _note_shape(ds, s.model)
    assert ds.info["model_shape"]["replaced"] == {"num_tables": 2, "num_dense": 13}
    assert ds.info["model_shape"]["table_sizes"] == [944, 1683]


# --- distributed rules, before launch -----------------------------------------------------------------


@pytest.mark.parametrize("args, expect", [
    (["--parallel", "ddp:3", "--batch-size", "256"], "divisible by the 3 processes (each trains on batch/3 samples)"),
    (["--parallel", "ddp:3", "--batch-size", "256"], "e.g. --batch-size 255 or 258"),
    (["--parallel", "ddp:2", "--batch-size", "1"], "divisible by the 2 processes (each trains on batch/2 samples)"),
    (["--parallel", "ddp:2", "--batch-size", "1"], "e.g. --batch-size 2"),
    (["--parallel", "ddp:2", "--eval-samples", "1"], "give at least 2"),
    (["--parallel", "sharded:2:table-wise", "--compression", "tt:2"], "which sum-pooling shards cannot do"),
    (["--framework", "tf", "--parallel", "ps:2", "--compression", "hash:0.5"], "hash:0.5 with --parallel ps:2"),
    (["--parallel", "mwms:2"], "MultiWorkerMirroredStrategy is TensorFlow-only"),
    (["--parallel", "sharded:2:row-wise", "--precision", "amp-bf16"], "fp32 only"),
    (["--framework", "tf", "--parallel", "ps:2", "--compile", "xla"], "without XLA"),
    (["--parallel", "sharded:3:column-wise", "--batch-size", "513"], "embedding_dim (16) divisible by the 3 processes"),
    (["--parallel", "sharded:2:column-wise", "--compression", "mixed-dim:0.3"],
     "needs every table width divisible by the 2 processes; 1, 3, 9, 11, 15 are not"),
    (["--parallel", "ddp:0"], "count '0' is not a positive integer"),
])
def test_distributed_mistakes_are_found_before_launch(monkeypatch, capsys, args, expect):
    monkeypatch.setattr(preflight, "available_cores", lambda *a, **k: {"cores": 64, "source": "test"})
    assert expect in _error(capsys, *args)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan", "1e400", "x" * 1000])
def test_bad_parallel_timeout_env(monkeypatch, capsys, value):
    monkeypatch.setenv(config.PARALLEL_TIMEOUT_ENV, value)
    err = _error(capsys, "--parallel", "ddp:2")
    assert "RECSYS_PARALLEL_TIMEOUT=" in err and "accepted: seconds" in err
    with pytest.raises(UsageError):
        config.parallel_timeout_s()


def test_parallel_timeout_env_values():
    assert config.parallel_timeout_s({}) == 600.0
    assert config.parallel_timeout_s({config.PARALLEL_TIMEOUT_ENV: " "}) == 600.0
    assert config.parallel_timeout_s({config.PARALLEL_TIMEOUT_ENV: "90.5"}) == 90.5


# --- the record's output path ----------------------------------------------------------------------


@pytest.mark.parametrize("path, expect", [
    ("DIR", "is a directory; accepted: a file path"),
    ("/proc/recsys-record.json", "cannot create a file there"),
    ("/dev/full", "cannot be written (No space left on device)"),
    ("MISSING/r.json", "does not exist"),
    ("FILE/r.json", "a part of the path is a file, not a folder"),
    ("", "--json '': empty"),
])
def test_unusable_json_paths_are_found_before_the_run(tmp_path, capsys, path, expect):
    path = path.replace("DIR", str(tmp_path)).replace("MISSING", str(tmp_path / "nope")).replace("FILE", str(FIXTURE))
    assert expect in _error(capsys, "--json", path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes files whatever their mode")
def test_read_only_json_file(tmp_path, capsys):
    p = tmp_path / "r.json"
    p.write_text("old")
    p.chmod(0o444)
    assert "cannot be written" in _error(capsys, "--json", str(p))


def test_json_probe_leaves_files_as_they_were(tmp_path):
    new = tmp_path / "new.json"
    assert preflight.check_json_path(str(new))["kind"] == "new file" and not new.exists()
    old = tmp_path / "old.json"
    old.write_text("keep me")
    preflight.check_json_path(str(old))
    assert old.read_text() == "keep me"
    assert preflight.check_json_path("/dev/null")["kind"] == "character device"


# --- the estimate itself ------------------------------------------------------------------------------


def test_check_returns_the_estimate():
    out = preflight.check(build_scenario({"train": {"steps": 10}}))
    mem = out["memory"]
    assert mem["bytes"] == sum(mem["components"].values())
    assert mem["components"]["tables"] == sum(CRITEO_SMALL_TABLES) * 16 * 4
    assert mem["components"]["optimizer_state"] >= mem["components"]["tables"]  # Adagrad accumulators
    assert mem["available_bytes"] and mem["available_source"]
    assert out["cpu"]["cores"] >= 1 and out["parallel_timeout_s"] == 600.0


def test_estimate_grows_with_what_the_run_holds():
    def est(**overrides):
        return preflight.estimate_memory(build_scenario(overrides))

    base = est()
    assert est(train={"batch_size": 1024})["bytes"] > base["bytes"]
    assert est(train={"eval_samples": 100000})["components"]["eval_data"] > base["components"]["eval_data"]
    assert est(train={"optimizer": "sgd"})["components"]["optimizer_state"] == 0
    ddp = est(scenario={"parallel": "ddp:4"})
    assert ddp["processes"]["trainer"]["count"] == 4 and ddp["bytes"] > 3 * base["bytes"]
    sharded = est(scenario={"parallel": "sharded:2:row-wise"})
    assert sharded["components"]["tables"] == base["components"]["tables"]  # two halves
    assert est(model={"embedding_dim": 64, "bottom_mlp": [64]})["components"]["tables"] == 4 * base["components"][
        "tables"]


def test_available_memory_reads_meminfo_and_cgroup_limits(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 1000 kB\nMemAvailable:   8000000 kB\n")
    root = tmp_path / "cg"
    (root / "job").mkdir(parents=True)
    (root / "job" / "memory.max").write_text("2147483648\n")
    (root / "job" / "memory.current").write_text("1073741824\n")
    (root / "memory.max").write_text("max\n")
    selfcg = tmp_path / "self"
    selfcg.write_text("0::/job\n")
    got = preflight.available_memory(str(meminfo), str(root), str(selfcg))
    assert got["bytes"] == 1 << 30 and "memory.max" in got["source"]
    (root / "job" / "memory.max").write_text("max\n")
    got = preflight.available_memory(str(meminfo), str(root), str(selfcg))
    assert got == {"bytes": 8000000 * 1024, "source": "MemAvailable in /proc/meminfo"}
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(3 << 30))
    (v1 / "memory" / "memory.usage_in_bytes").write_text(str(1 << 30))
    selfcg.write_text("4:memory:/not/visible\n")
    assert preflight.available_memory(str(meminfo), str(v1), str(selfcg))["bytes"] == 2 << 30


def test_available_cores_honours_a_cgroup_quota(tmp_path):
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cpu.max").write_text("100000 100000\n")
    selfcg = tmp_path / "self"
    selfcg.write_text("0::/\n")
    got = preflight.available_cores(str(root), str(selfcg))
    assert got["cores"] == 1 and (got["source"] == "cgroup CPU quota" or len(os.sched_getaffinity(0)) == 1)


def test_a_scenario_built_by_hand_is_validated_too():
    from dataclasses import replace

    bad = replace(Scenario(), train=replace(Scenario().train, learning_rate=float("inf")))
    with pytest.raises(UsageError, match="learning_rate = inf"):
        preflight.check(bad)


def test_a_run_reads_its_data_from_a_pipe_and_keeps_the_estimate(tmp_path, capsys):
    """End to end: ``--data <(zcat f.gz)`` works, and the record carries the preflight estimate."""
    import gzip

    fifo, writer = _fifo_with(tmp_path, gzip.compress(FIXTURE.read_bytes()))
    out = tmp_path / "r.json"
    code = main(["run", "--data", fifo, "--steps", "2", "--batch-size", "8", "--eval-samples", "4",
                 "--optimizer", "sgd", "--quiet", "--json", str(out)])
    writer.join(5)
    assert code == 0, capsys.readouterr().err
    record = json.loads(out.read_text())
    assert record["status"] == "ok" and record["data"]["train_samples"] == 16
    assert record["preflight"]["data"] == {"source": fifo, "kind": "pipe"}
    assert record["preflight"]["memory"]["bytes"] > 0
