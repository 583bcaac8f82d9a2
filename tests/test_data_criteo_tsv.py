"""Criteo TSV reader: good files, empty fields, .gz, CRLF, block boundaries, malformed lines, splits."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from recsys_impls.config import CRITEO_SMALL_TABLES, DataConfig, ModelConfig, Scenario
from recsys_impls.data.criteo_tsv import hash_ids, load_criteo_tsv
from recsys_impls.data.loader import load_dataset
from recsys_impls.errors import DataFormatError, UsageError

FIXTURE = Path(__file__).parent / "data" / "criteo_small.tsv"  # 20 lines, empty fields, one line all-empty
TABLES = tuple(CRITEO_SMALL_TABLES)


def _line(label: str = "1", dense: list[str] | None = None, cats: list[str] | None = None) -> str:
    dense = dense if dense is not None else [str(i) for i in range(13)]
    cats = cats if cats is not None else [f"{i:08x}" for i in range(26)]
    return "\t".join([label, *dense, *cats])


def _write(tmp_path: Path, lines: list[str], name: str = "d.tsv", newline: str = "\n") -> Path:
    p = tmp_path / name
    p.write_bytes((newline.join(lines) + newline).encode())
    return p


def _same(a, b) -> None:
    for split in ("train", "eval"):
        for name in ("dense", "ids", "lengths", "labels"):
            np.testing.assert_array_equal(getattr(getattr(a, split), name), getattr(getattr(b, split), name))


def _splitmix_reference(value: int, column: int, rows: int) -> int:
    """Independent pure-Python statement of the documented hash, to pin it across platforms."""
    m = (1 << 64) - 1
    x = value ^ (((column + 1) * 0x9E3779B97F4A7C15) & m)
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    x ^= x >> 31
    return 1 + x % (rows - 1)


def test_good_fixture() -> None:
    ds = load_criteo_tsv(FIXTURE, 13, TABLES, 15, 5)
    assert ds.train.batch_size == 15 and ds.eval.batch_size == 5
    assert ds.info["bad_lines"] == 0 and ds.info["lines_read"] == 20
    assert (ds.train.lengths == 1).all() and ds.train.lengths.shape == (26, 15)
    for f, rows in enumerate(TABLES):
        ids = ds.train.feature_ids(f)
        assert ids.min() >= 0 and ids.max() < rows
    text = FIXTURE.read_text().splitlines()
    fields = text[0].split("\t")
    assert ds.train.labels[0] == float(fields[0])
    expected_dense = [math.log1p(max(int(x), 0)) if x else 0.0 for x in fields[1:14]]
    np.testing.assert_allclose(ds.train.dense[0], expected_dense, rtol=1e-6)
    for f in range(26):
        x = fields[14 + f]
        want = _splitmix_reference(int(x, 16), f, TABLES[f]) if x else 0
        assert ds.train.feature_ids(f)[0] == want
    # the all-empty line (line 4): dense zeros, every id the reserved 0
    assert (ds.train.dense[3] == 0).all()
    assert all(ds.train.feature_ids(f)[3] == 0 for f in range(26))


def test_dense_transform_and_signs(tmp_path: Path) -> None:
    dense = ["-5", "0", "", "+7", "123456789012"] + ["1"] * 8
    p = _write(tmp_path, [_line(dense=dense), _line()])
    ds = load_criteo_tsv(p, 13, TABLES, 1, 1)
    np.testing.assert_allclose(ds.train.dense[0, :5], [0, 0, 0, math.log1p(7), math.log1p(123456789012)], rtol=1e-6)


def test_hash_is_fixed_and_case_insensitive() -> None:
    values = np.array([[0x68FD1E64, 0xA, 0]], dtype=np.uint64)
    ids = hash_ids(values, np.array([[True, True, False]]), (1000, 50, 10))
    assert ids.tolist() == [[_splitmix_reference(0x68FD1E64, 0, 1000), _splitmix_reference(0xA, 1, 50), 0]]


def test_hex_case_and_one_row_table(tmp_path: Path) -> None:
    lower = _line(cats=["abcdef01"] * 26)
    upper = _line(cats=["ABCDEF01"] * 26)
    p = _write(tmp_path, [lower, upper])
    tables = (1, *TABLES[1:])
    ds = load_criteo_tsv(p, 13, tables, 1, 1)
    np.testing.assert_array_equal(ds.train.ids, ds.eval.ids)
    assert ds.train.feature_ids(0)[0] == 0


def test_gzip_crlf_and_block_boundaries_give_the_same_data(tmp_path: Path) -> None:
    lines = FIXTURE.read_text().splitlines()
    plain = load_criteo_tsv(FIXTURE, 13, TABLES, 12, 8)
    gz = tmp_path / "c.tsv.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(FIXTURE.read_bytes())
    _same(plain, load_criteo_tsv(gz, 13, TABLES, 12, 8))
    _same(plain, load_criteo_tsv(_write(tmp_path, lines, "crlf.tsv", "\r\n"), 13, TABLES, 12, 8))
    _same(plain, load_criteo_tsv(FIXTURE, 13, TABLES, 12, 8, block_bytes=300))
    no_final_newline = tmp_path / "nofinal.tsv"
    no_final_newline.write_text("\n".join(lines))
    _same(plain, load_criteo_tsv(no_final_newline, 13, TABLES, 12, 8, block_bytes=1000))


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("\t".join(_line().split("\t")[:39]), "found 39 tab-separated field"),
        ("", "found 1 tab-separated field"),
        (_line(label="2"), "label is '2', not 0 or 1"),
        (_line(dense=["1.5"] + ["1"] * 12), r"dense column 1 \(field 2\) is '1.5', not an integer"),
        (_line(dense=["1"] * 12 + ["-"]), r"dense column 13 \(field 14\) is '-'"),
        (_line(dense=["1"] * 5 + ["12a"] + ["1"] * 7), r"dense column 6 "),
        (_line(cats=["0"] * 25 + ["xyz1"]), r"categorical column 26 \(field 40\) is 'xyz1', not a hex string"),
        (_line(cats=["1" * 17] + ["0"] * 25), r"categorical column 1 "),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad: str, match: str) -> None:
    p = _write(tmp_path, [_line(), _line(), bad, _line(), _line()])
    with pytest.raises(DataFormatError, match=rf"^{p}:3: {match}.*; expected 40 tab-separated fields") as err:
        load_criteo_tsv(p, 13, TABLES, 3, 1)
    assert isinstance(err.value, UsageError) and err.value.exit_code == 2
    assert "\n" not in str(err.value)


def test_error_line_number_across_blocks(tmp_path: Path) -> None:
    lines = [_line()] * 30
    lines[23] = _line(label="x")
    p = _write(tmp_path, lines)
    with pytest.raises(DataFormatError, match=rf"^{p}:24: label"):
        load_criteo_tsv(p, 13, TABLES, 25, 5, block_bytes=500)


def test_skip_bad_lines_counts_them(tmp_path: Path) -> None:
    good = FIXTURE.read_text().splitlines()
    lines = good[:5] + ["garbage"] + good[5:10] + [_line(label="7"), _line(cats=["zz"] * 26)] + good[10:]
    p = _write(tmp_path, lines)
    ds = load_criteo_tsv(p, 13, TABLES, 15, 5, skip_bad_lines=True, block_bytes=700)
    assert ds.info["bad_lines"] == 3
    _same(ds, load_criteo_tsv(FIXTURE, 13, TABLES, 15, 5))


def test_lines_after_the_needed_ones_are_not_read(tmp_path: Path) -> None:
    p = _write(tmp_path, [_line()] * 4 + ["broken"])
    ds = load_criteo_tsv(p, 13, TABLES, 3, 1)
    assert ds.info["lines_read"] == 4 and ds.info["bad_lines"] == 0


def test_short_file_split_in_proportion() -> None:
    ds = load_criteo_tsv(FIXTURE, 13, TABLES, 300, 100)
    assert (ds.train.batch_size, ds.eval.batch_size) == (15, 5)
    assert "only 20 good lines" in ds.info["split"]


def test_too_short_and_empty_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="only 1 usable line"):
        load_criteo_tsv(_write(tmp_path, [_line()]), 13, TABLES, 10, 10)
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"")
    with pytest.raises(UsageError, match="only 0 usable line"):
        load_criteo_tsv(empty, 13, TABLES, 10, 10)


def test_model_shape_must_match_criteo(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="26 categorical columns but the model has num_dense = 13 and 3 tables"):
        load_criteo_tsv(FIXTURE, 13, (10, 10, 10), 10, 5)
    with pytest.raises(UsageError, match="num_dense = 4"):
        load_criteo_tsv(FIXTURE, 4, TABLES, 10, 5)


def test_loader_dispatches_on_path() -> None:
    scenario = Scenario(data=DataConfig(source=str(FIXTURE))).validate()
    ds = load_dataset(scenario, 10, 10)
    assert ds.name == "tsv:criteo_small.tsv" and ds.table_sizes == scenario.model.table_sizes
    _same(ds, load_criteo_tsv(FIXTURE, 13, TABLES, 10, 10))
    bad = Scenario(model=ModelConfig(table_sizes=(5, 5)), data=DataConfig(source=str(FIXTURE))).validate()
    with pytest.raises(UsageError, match="2 tables"):
        load_dataset(bad, 10, 10)
