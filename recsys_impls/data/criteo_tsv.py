"""Criteo-format TSV reader: streaming, vectorised per chunk, strict about malformed lines.

Format (Criteo Display Advertising Challenge / Terabyte): one sample a line, 40 tab-separated fields:
the label (0 or 1), 13 integer count columns, 26 categorical columns as hex strings. Any of the 39
feature fields may be empty. Plain or gzip files (detected by content, not by name).

Transformations, fixed so results are comparable across machines:

* dense: ``log(1 + max(x, 0))``; an empty field is 0.
* categorical: the hex string's value (1 to 16 hex digits, case-insensitive; so "0a" and "a" are the
  same value) is mixed with the column index by the SplitMix64 finaliser (pure uint64 arithmetic, no
  salted Python ``hash``) and mapped to ``1 + h % (rows - 1)``; row 0 is reserved for an empty field.
  A table with one row maps everything to 0.

The file is read as bytes in blocks of ``BLOCK_BYTES`` (cut at the last newline); separators are
found, checked and converted with numpy over the whole block, with no Python object per line or
field. Reading stops once enough good lines are in: the first ``num_train`` good lines are the
training split, the next ``num_eval`` the eval split. A shorter file is split in the same proportion
(at least one line each), and ``info["split"]`` says so; a file with fewer than two good lines is a
UsageError.

The input may be a pipe (``--data <(zcat day_0.gz)``): gzip is detected from the first bytes without
seeking. A line longer than ``MAX_LINE_BYTES`` (the longest line the format allows) is bad as soon as
that many bytes are buffered, so a huge field or a file without newlines is neither held in memory
nor parsed; messages quote at most a few dozen characters of a field.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from recsys_impls.config import check_data_source
from recsys_impls.data.batch import Batch
from recsys_impls.data.dataset import Dataset
from recsys_impls.errors import DataFormatError, UsageError, clip

NUM_DENSE = 13
NUM_CAT = 26
NUM_FIELDS = 1 + NUM_DENSE + NUM_CAT
BLOCK_BYTES = 16 << 20  # about 100k Criteo lines
MAX_DENSE_DIGITS = 18  # fits int64 with room for the sign
MAX_HEX_DIGITS = 16  # fits uint64
# The longest valid line: label, 13 signed integers, 26 hex strings, 39 tabs and a \r.
MAX_LINE_BYTES = 1 + NUM_DENSE * (1 + MAX_DENSE_DIGITS) + NUM_CAT * MAX_HEX_DIGITS + (NUM_FIELDS - 1) + 1
QUOTE_CHARS = 40  # at most this much of a bad field is quoted in a message
EXPECTED = (
    f"expected {NUM_FIELDS} tab-separated fields: label 0 or 1, {NUM_DENSE} integers (may be empty), "
    f"{NUM_CAT} hex strings of 1-{MAX_HEX_DIGITS} digits (may be empty)"
)

_PAD = 32  # zero bytes after a block, wider than any gathered field
_NIBBLE = np.full(256, -1, dtype=np.int16)
for _c in b"0123456789":
    _NIBBLE[_c] = _c - ord("0")
for _c in b"abcdef":
    _NIBBLE[_c] = _c - ord("a") + 10
    _NIBBLE[_c - 32] = _c - ord("a") + 10
_NIBBLE[0] = -2  # padding after the end of the string


class _Prefixed(io.RawIOBase):
    """A stream with the bytes already read put back in front: gzip detection on a pipe, which cannot seek."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001 - a writable buffer
        if self._head:
            n = min(len(b), len(self._head))
            b[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)


@contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes, gunzipped when it starts with the gzip magic; regular files and pipes alike."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
        if fh.seekable():
            fh.seek(0)
            stream: BinaryIO = fh
        else:
            stream = io.BufferedReader(_Prefixed(magic, fh), buffer_size=1 << 20)  # type: ignore[arg-type]
        if magic == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=stream, mode="rb") as gz:
                yield gz  # type: ignore[misc]
        else:
            yield stream


def _quote(field: bytes) -> str:
    """A bad field for a message: its first QUOTE_CHARS characters, repr'd."""
    text = field[: QUOTE_CHARS + 1].decode(errors="replace")
    return repr(text[:QUOTE_CHARS]) + (f"... ({len(field)} bytes)" if len(field) > QUOTE_CHARS else "")


def _gather_chars(buf: np.ndarray, start: np.ndarray, length: np.ndarray, max_width: int) -> np.ndarray:
    """Fields given by start/length into buf -> uint8 [*, width], zero after each field's end.

    Fields longer than ``max_width`` are cut (the caller rejects them by length); blocks are < 2 GiB.
    """
    width = int(min(max(int(length.max(initial=0)), 1), max_width))
    pos = np.arange(width, dtype=np.int32)
    chars = buf.take(start.astype(np.int32)[..., None] + pos)  # buf is padded, so no index runs off
    chars[pos >= length[..., None]] = 0
    return chars


def _parse_dense(ch: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """chars uint8 [n, 13, W] and lengths -> (int64 values, bool ok [n, 13]); empty fields are 0."""
    inside = np.arange(ch.shape[-1]) < length[..., None]
    is_digit = (ch >= ord("0")) & (ch <= ord("9")) & inside
    first = ch[..., 0]
    signed = ((first == ord("-")) | (first == ord("+"))) & (length > 0)
    ndigits = is_digit.sum(axis=-1)
    ok = (length == ndigits + signed) & (ndigits <= MAX_DENSE_DIGITS) & ~(signed & (ndigits == 0))
    value = np.zeros(length.shape, dtype=np.int64)
    for i in range(ch.shape[-1]):
        value = np.where(is_digit[..., i], value * 10 + (ch[..., i].astype(np.int64) - ord("0")), value)
    value = np.where(first == ord("-"), -value, value)
    return np.where(ok, value, 0), ok


def _parse_hex(ch: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """chars uint8 [n, 26, W] and lengths -> (uint64 values, bool ok); empty fields are ok (value 0)."""
    nib = _NIBBLE[ch]
    inside = np.arange(ch.shape[-1]) < length[..., None]
    ok = ((nib >= 0) | ~inside).all(axis=-1) & (length <= MAX_HEX_DIGITS)
    value = np.zeros(length.shape, dtype=np.uint64)
    for i in range(ch.shape[-1]):
        step = (value << np.uint64(4)) | np.maximum(nib[..., i], 0).astype(np.uint64)
        value = np.where(inside[..., i], step, value)
    return value, ok


def _mix(value: np.ndarray, column: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of value ^ (column+1) * golden ratio: a fixed, platform-independent hash."""
    x = value ^ ((column.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15))
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_ids(values: np.ndarray, present: np.ndarray, table_sizes: tuple[int, ...]) -> np.ndarray:
    """uint64 hex values [n, 26] -> int64 row ids [n, 26]; missing -> 0, others in 1..rows-1."""
    sizes = np.asarray(table_sizes, dtype=np.uint64)
    h = _mix(values, np.arange(values.shape[1])[None, :])
    buckets = np.maximum(sizes - np.uint64(1), np.uint64(1))
    ids = (np.uint64(1) + h % buckets).astype(np.int64)
    ids = np.where(sizes[None, :] > 1, ids, 0)
    return np.where(present, ids, 0)


def _describe_bad(line: bytes) -> str:
    """What is wrong with one line, for the error message (the slow path, first bad line only)."""
    if len(line) > MAX_LINE_BYTES:
        return f"line is {len(line)} bytes, longer than any valid line ({MAX_LINE_BYTES} bytes)"
    fields = line.rstrip(b"\r").split(b"\t")
    if len(fields) != NUM_FIELDS:
        return f"found {len(fields)} tab-separated field(s)"
    if fields[0] not in (b"0", b"1"):
        return f"label is {_quote(fields[0])}, not 0 or 1"
    for i, field in enumerate(fields[1:]):
        arr = np.frombuffer(field or b"0", dtype=np.uint8)
        ch, n = arr[None, None, :], np.array([[len(field)]])
        if i < NUM_DENSE and not _parse_dense(ch, n)[1].all():
            return f"dense column {i + 1} (field {i + 2}) is {_quote(field)}, not an integer"
        if i >= NUM_DENSE and not _parse_hex(ch, n)[1].all():
            return (f"categorical column {i - NUM_DENSE + 1} (field {i + 2}) is "
                    f"{_quote(field)}, not a hex string of 1-{MAX_HEX_DIGITS} digits")
    return "malformed line"


class _Chunk:
    """Parsed good rows of one block of lines."""

    def __init__(self, labels: np.ndarray, dense: np.ndarray, ids: np.ndarray) -> None:
        self.labels, self.dense, self.ids = labels, dense, ids


def _parse_block(
    block: bytes, first_lineno: int, need: int, path: Path, table_sizes: tuple[int, ...], skip: bool
) -> tuple[_Chunk, int, int]:
    """Parse whole lines (block ends in a newline) until ``need`` good ones.

    Returns (good rows, bad lines among the lines used, lines used). Everything is vectorised over
    the block: separators are found with numpy, fields are gathered into fixed-width char matrices.
    """
    buf = np.frombuffer(block + bytes(_PAD), dtype=np.uint8)
    is_nl = buf == ord("\n")
    nl = np.flatnonzero(is_nl)
    line_start = np.concatenate([[0], nl[:-1] + 1])
    line_end = nl - ((nl > line_start) & (buf[np.maximum(nl - 1, 0)] == ord("\r")))  # drop a trailing \r
    sep_mask = (buf == ord("\t")) | is_nl
    seps = np.flatnonzero(sep_mask)
    sep_line = np.searchsorted(nl, seps)  # line index of each separator
    tabs = np.bincount(sep_line, minlength=nl.size) - 1
    shaped = tabs == NUM_FIELDS - 1
    good_seps = seps[shaped[sep_line]].reshape(-1, NUM_FIELDS)
    starts = np.concatenate([line_start[shaped][:, None], good_seps[:, :-1] + 1], axis=1)
    ends = np.concatenate([good_seps[:, :-1], line_end[shaped][:, None]], axis=1)
    lengths = ends - starts
    label_ch = buf[starts[:, 0]]
    label_ok = (lengths[:, 0] == 1) & ((label_ch == ord("0")) | (label_ch == ord("1")))
    d_start, d_len = starts[:, 1 : 1 + NUM_DENSE], lengths[:, 1 : 1 + NUM_DENSE]
    dense, dense_ok = _parse_dense(_gather_chars(buf, d_start, d_len, MAX_DENSE_DIGITS + 2), d_len)
    h_start, h_len = starts[:, 1 + NUM_DENSE :], lengths[:, 1 + NUM_DENSE :]
    hexv, hex_ok = _parse_hex(_gather_chars(buf, h_start, h_len, MAX_HEX_DIGITS + 1), h_len)
    ok = np.zeros(nl.size, dtype=bool)
    ok[shaped] = label_ok & dense_ok.all(axis=1) & hex_ok.all(axis=1)
    cum = np.cumsum(ok)
    used = nl.size if cum[-1] < need else int(np.searchsorted(cum, need)) + 1
    bad = int(used - cum[used - 1])
    if bad and not skip:
        first = int(np.argmin(ok[:used]))
        line = block[line_start[first] : nl[first]]
        raise DataFormatError(f"{clip(str(path))}:{first_lineno + first}: {_describe_bad(line)}; {EXPECTED}")
    keep = ok[shaped]
    keep &= np.cumsum(keep) <= need  # rows after the last needed one are not used
    labels = (label_ch[keep] == ord("1")).astype(np.float32)
    dense_t = np.log1p(np.maximum(dense[keep], 0).astype(np.float64)).astype(np.float32)
    ids = hash_ids(hexv[keep], h_len[keep] > 0, table_sizes)
    return _Chunk(labels, dense_t, ids), bad, used


def _to_batch(chunks: list[_Chunk], start: int, stop: int) -> Batch:
    labels = np.concatenate([c.labels for c in chunks])[start:stop]
    dense = np.concatenate([c.dense for c in chunks])[start:stop]
    ids = np.concatenate([c.ids for c in chunks])[start:stop]
    n = labels.size
    return Batch(
        dense=np.ascontiguousarray(dense),
        ids=np.ascontiguousarray(ids.T).reshape(-1),  # feature-major
        lengths=np.ones((NUM_CAT, n), dtype=np.int32),
        labels=np.ascontiguousarray(labels),
    )


def load_criteo_tsv(
    path: str | Path, num_dense: int, table_sizes: tuple[int, ...], num_train: int, num_eval: int,
    skip_bad_lines: bool = False, block_bytes: int = BLOCK_BYTES,
) -> Dataset:
    """Read the first ``num_train + num_eval`` good lines of a Criteo TSV (or .gz) file."""
    p = Path(path)
    where = clip(str(p))
    if num_dense != NUM_DENSE or len(table_sizes) != NUM_CAT:
        raise UsageError(
            f"--data {where}: a Criteo TSV has {NUM_DENSE} dense and {NUM_CAT} categorical columns but the model has "
            f"num_dense = {num_dense} and {len(table_sizes)} tables; set num_dense = {NUM_DENSE} and give "
            f"{NUM_CAT} table_sizes"
        )
    check_data_source(str(p))  # a regular file or a pipe, readable; else one line saying what it is
    want = num_train + num_eval
    chunks: list[_Chunk] = []
    have = bad = lineno = 0
    try:
        with _open(p) as fh:
            rest = b""
            skipping = False  # inside an over-long line that --skip-bad-lines drops
            while have < want:
                data = fh.read(block_bytes)
                eof = not data
                if skipping:
                    cut = data.find(b"\n")
                    if cut < 0:
                        if eof:
                            break
                        continue
                    data, skipping = data[cut + 1 :], False
                block = rest + data
                if eof:
                    block += b"" if not block or block.endswith(b"\n") else b"\n"
                    rest = b""
                else:
                    cut = block.rfind(b"\n") + 1
                    block, rest = block[:cut], block[cut:]
                if block:
                    chunk, n_bad, used = _parse_block(block, lineno + 1, want - have, p, table_sizes, skip_bad_lines)
                    chunks.append(chunk)
                    have += chunk.labels.size
                    bad += n_bad
                    lineno += used
                if eof or have >= want:
                    break
                if len(rest) > MAX_LINE_BYTES:  # a line longer than any valid one, its end not yet read
                    if not skip_bad_lines:
                        raise DataFormatError(
                            f"{where}:{lineno + 1}: line is longer than any valid line ({MAX_LINE_BYTES} bytes); "
                            f"{EXPECTED}")
                    bad, lineno, rest, skipping = bad + 1, lineno + 1, b"", True
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        why = clip(str(exc), 120)
        raise DataFormatError(f"{where}:{lineno + 1}: cannot read the file ({why}); {EXPECTED}") from None
    if have < 2:
        raise UsageError(
            f"--data {where}: only {have} usable line(s) ({bad} bad skipped); need at least 2, one for training "
            "and one for evaluation"
        )
    if have >= want:
        n_train, n_eval = num_train, num_eval
        split = f"first {n_train} good lines train, next {n_eval} eval"
    else:
        n_eval = min(have - 1, max(1, round(have * num_eval / want)))
        n_train = have - n_eval
        split = (f"file has only {have} good lines (asked {num_train} + {num_eval}): first {n_train} train, "
                 f"last {n_eval} eval, in the asked proportion")
    train = _to_batch(chunks, 0, n_train)
    evaluation = _to_batch(chunks, n_train, n_train + n_eval)
    return Dataset(
        name="tsv:" + p.name,
        train=train,
        eval=evaluation,
        num_dense=NUM_DENSE,
        table_sizes=tuple(int(n) for n in table_sizes),
        info={
            "bad_lines": bad, "lines_read": lineno, "split": split,
            "ctr": float(train.labels.mean()), "eval_ctr": float(evaluation.labels.mean()),
            "hash": "splitmix64(value ^ (column+1)*0x9E3779B97F4A7C15) % (rows-1) + 1; empty -> 0",
            "dense_transform": "log(1 + max(x, 0))",
        },
    )
