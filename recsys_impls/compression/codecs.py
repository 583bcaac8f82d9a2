"""Data compression of a Batch on its way from storage to the model.

A codec name is ``LAYOUT[+GENERAL][+LOSSY]``:

* LAYOUT ``raw``: the four arrays as stored in memory. ``dict``: per feature, the batch's distinct ids
  (sorted, delta + varint coded) and for every id its code in that dictionary, in the narrowest
  unsigned width that fits; lengths as varints; 0/1 labels as bits; dense float bytes shuffled into
  four planes (sign/exponent bytes together), which general codecs compress much better.
* GENERAL ``zstd`` (zstandard, level 3) or ``lz4`` (lz4.frame), applied to the whole frame.
* LOSSY ``dense-fp16`` (dense features rounded to float16) or ``dense-int8`` (per-column affine int8:
  scale and bias per dense column, error <= half a step). Ids, lengths and labels stay exact.

Every codec is a pair of functions bytes <-> Batch; ``measure_codec`` reports ratio and MB/s and
``lossy_quality_effect`` the change in a trained model's AUC when eval data goes through the codec.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_impls.compression.varint import decode_varint, delta_decode, delta_encode, encode_varint
from recsys_impls.data.batch import Batch
from recsys_impls.errors import ScenarioUnsupported, UsageError

LAYOUTS = ("raw", "dict")
GENERAL = ("zstd", "lz4")
LOSSY = ("dense-fp16", "dense-int8")
# The codecs the benchmarks sweep (any valid combination is accepted by ``get_codec``).
STANDARD_CODECS = ("raw", "raw+zstd", "raw+lz4", "dict", "dict+zstd", "dict+lz4",
                   "dict+zstd+dense-fp16", "dict+zstd+dense-int8")


@dataclass(frozen=True)
class Codec:
    name: str
    layout: str
    general: str | None
    lossy: str | None

    @property
    def lossless(self) -> bool:
        return self.lossy is None

    def encode(self, batch: Batch) -> bytes:
        frame = _frame(_encode_sections(batch, self.layout, self.lossy))
        return _general_compress(frame, self.general)

    def decode(self, data: bytes) -> Batch:
        frame = _general_decompress(data, self.general)
        return _decode_sections(_unframe(frame), self.layout)


def get_codec(name: str) -> Codec:
    """Parse a codec name; UsageError naming the accepted parts on bad input."""
    parts = name.strip().lower().split("+")
    accepted = "LAYOUT[+zstd|+lz4][+dense-fp16|+dense-int8] with LAYOUT raw or dict"
    if not parts or parts[0] not in LAYOUTS:
        raise UsageError(f"codec {name!r}: must start with a layout; accepted: {accepted}")
    general = lossy = None
    for p in parts[1:]:
        if p in GENERAL and general is None and lossy is None:
            general = p
        elif p in LOSSY and lossy is None:
            lossy = p
        else:
            raise UsageError(f"codec {name!r}: unexpected or repeated part {p!r}; accepted: {accepted}")
    return Codec(name="+".join(parts), layout=parts[0], general=general, lossy=lossy)


# ---- general-purpose codecs -----------------------------------------------------------------------

def _general_compress(data: bytes, general: str | None) -> bytes:
    if general is None:
        return data
    if general == "zstd":
        zstd = _import("zstandard")
        return zstd.ZstdCompressor(level=3).compress(data)
    lz4 = _import("lz4.frame")
    return lz4.compress(data)


def _general_decompress(data: bytes, general: str | None) -> bytes:
    if general is None:
        return data
    if general == "zstd":
        return _import("zstandard").ZstdDecompressor().decompress(data)
    return _import("lz4.frame").decompress(data)


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        pkg = module.split(".")[0]
        raise ScenarioUnsupported(f"codec needs the '{pkg}' package: pip install {pkg}") from None


# ---- framing: a JSON header listing named arrays, then their bytes ---------------------------------

def _frame(sections: dict[str, Any]) -> bytes:
    meta: dict[str, Any] = {"arrays": [], "info": sections.pop("_info", {})}
    payload = []
    for key, arr in sections.items():
        raw = arr if isinstance(arr, bytes) else np.ascontiguousarray(arr).tobytes()
        entry = {"name": key, "nbytes": len(raw)}
        if not isinstance(arr, bytes):
            entry.update(dtype=arr.dtype.str, shape=list(arr.shape))
        meta["arrays"].append(entry)
        payload.append(raw)
    header = json.dumps(meta, separators=(",", ":")).encode()
    return struct.pack("<I", len(header)) + header + b"".join(payload)


def _unframe(frame: bytes) -> dict[str, Any]:
    (hlen,) = struct.unpack_from("<I", frame, 0)
    meta = json.loads(frame[4 : 4 + hlen])
    out: dict[str, Any] = {"_info": meta["info"]}
    pos = 4 + hlen
    for e in meta["arrays"]:
        raw = frame[pos : pos + e["nbytes"]]
        pos += e["nbytes"]
        out[e["name"]] = np.frombuffer(raw, dtype=e["dtype"]).reshape(e["shape"]) if "dtype" in e else raw
    return out


# ---- layouts ----------------------------------------------------------------------------------------

def _narrowest_uint(max_value: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def _shuffle(a: np.ndarray) -> np.ndarray:
    """Byte planes: all first bytes, then all second bytes, ... (like blosc's shuffle filter)."""
    return np.ascontiguousarray(a.reshape(-1).view(np.uint8).reshape(-1, a.dtype.itemsize).T)


def _unshuffle(planes: np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(planes.T).view(dtype).reshape(shape)


def _encode_dense(dense: np.ndarray, lossy: str | None) -> dict[str, Any]:
    if lossy == "dense-fp16":
        return {"dense16": _shuffle(dense.astype(np.float16))}
    if lossy == "dense-int8":
        lo = dense.min(axis=0) if dense.shape[0] else np.zeros(dense.shape[1], np.float32)
        hi = dense.max(axis=0) if dense.shape[0] else np.zeros(dense.shape[1], np.float32)
        scale = ((hi - lo) / 255.0).astype(np.float32)
        safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
        q = np.clip(np.rint((dense - lo) / safe), 0, 255).astype(np.uint8)
        return {"dense8": q, "dense8_scale": scale, "dense8_bias": lo.astype(np.float32)}
    return {"dense32": _shuffle(dense.astype(np.float32))}


def _decode_dense(s: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    if "dense16" in s:
        return _unshuffle(s["dense16"], np.dtype(np.float16), shape).astype(np.float32)
    if "dense8" in s:
        return (s["dense8"].astype(np.float32) * s["dense8_scale"] + s["dense8_bias"]).astype(np.float32)
    return _unshuffle(s["dense32"], np.dtype(np.float32), shape)


def _encode_sections(batch: Batch, layout: str, lossy: str | None) -> dict[str, Any]:
    b, d = batch.dense.shape
    f = batch.num_features
    info = {"B": b, "D": d, "F": f, "nnz": int(batch.ids.shape[0])}
    if layout == "raw":
        dense = {"dense": batch.dense} if lossy is None else _encode_dense(batch.dense, lossy)
        return {"_info": info, **dense, "ids": batch.ids, "lengths": batch.lengths, "labels": batch.labels}
    out: dict[str, Any] = {"_info": info, **_encode_dense(batch.dense, lossy)}
    offsets = batch.feature_offsets()
    dict_sizes = []
    for i in range(f):
        ids = batch.ids[offsets[i] : offsets[i + 1]]
        uniq, codes = np.unique(ids, return_inverse=True)
        dict_sizes.append(int(uniq.size))
        out[f"dict{i}"] = encode_varint(delta_encode(uniq)) if uniq.size and uniq.min() >= 0 else uniq
        out[f"codes{i}"] = codes.astype(_narrowest_uint(max(uniq.size - 1, 0)))
    info["dict_sizes"] = dict_sizes
    info["dict_varint"] = [isinstance(out[f"dict{i}"], bytes) for i in range(f)]
    out["lengths"] = encode_varint(batch.lengths.reshape(-1).astype(np.int64))
    binary = bool(np.isin(batch.labels, (0.0, 1.0)).all())
    info["labels_bits"] = binary
    out["labels"] = np.packbits(batch.labels.astype(bool)) if binary else batch.labels
    return out


def _decode_sections(s: dict[str, Any], layout: str) -> Batch:
    info = s["_info"]
    b, d, f = info["B"], info["D"], info["F"]
    if layout == "raw":
        dense = s["dense"].copy() if "dense" in s else _decode_dense(s, (b, d))
        return Batch(dense=dense, ids=s["ids"].copy(), lengths=s["lengths"].copy(), labels=s["labels"].copy())
    dense = _decode_dense(s, (b, d))
    ids = []
    for i in range(f):
        n = info["dict_sizes"][i]
        uniq = delta_decode(decode_varint(s[f"dict{i}"], n)) if info["dict_varint"][i] else s[f"dict{i}"]
        ids.append(uniq[s[f"codes{i}"].astype(np.int64)] if n else np.zeros(0, np.int64))
    lengths = decode_varint(s["lengths"], f * b).astype(np.int32).reshape(f, b)
    labels = (np.unpackbits(s["labels"], count=b).astype(np.float32) if info["labels_bits"]
              else s["labels"].copy())
    all_ids = np.concatenate(ids).astype(np.int64) if ids else np.zeros(0, np.int64)
    return Batch(dense=dense, ids=all_ids, lengths=lengths, labels=labels)


# ---- measurement -------------------------------------------------------------------------------------

def measure_codec(codec: Codec | str, batch: Batch, repeats: int = 3) -> dict[str, Any]:
    """Compression ratio (raw Batch bytes / encoded bytes) and encode/decode throughput in MB/s of raw
    data (1 MB = 1e6 bytes), best of ``repeats``; plus the max dense error for lossy codecs."""
    c = get_codec(codec) if isinstance(codec, str) else codec
    enc_t, dec_t = [], []
    data = b""
    decoded = batch
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        data = c.encode(batch)
        t1 = time.perf_counter()
        decoded = c.decode(data)
        t2 = time.perf_counter()
        enc_t.append(t1 - t0)
        dec_t.append(t2 - t1)
    raw = batch.nbytes
    exact = _batches_equal(batch, decoded)
    return {
        "codec": c.name,
        "lossless": c.lossless,
        "roundtrip_exact": exact,
        "raw_bytes": raw,
        "encoded_bytes": len(data),
        "ratio": raw / len(data),
        "encode_mb_per_s": raw / 1e6 / min(enc_t),
        "decode_mb_per_s": raw / 1e6 / min(dec_t),
        "dense_max_abs_error": float(np.abs(decoded.dense - batch.dense).max()) if batch.dense.size else 0.0,
    }


def _batches_equal(a: Batch, b: Batch) -> bool:
    return (a.dense.shape == b.dense.shape and np.array_equal(a.dense, b.dense) and np.array_equal(a.ids, b.ids)
            and np.array_equal(a.lengths, b.lengths) and np.array_equal(a.labels, b.labels))


def lossy_quality_effect(model: Any, eval_batch: Batch, codec: Codec | str) -> dict[str, Any]:
    """Evaluate the same trained Recommender on the eval Batch as stored and after a codec round trip.

    Returns the metrics on both and their difference (``auc_delta`` = decoded - original)."""
    from recsys_impls.metrics import all_metrics

    c = get_codec(codec) if isinstance(codec, str) else codec
    decoded = c.decode(c.encode(eval_batch))
    base = all_metrics(eval_batch.labels, model.predict(eval_batch))
    lossy = all_metrics(eval_batch.labels, model.predict(decoded))
    return {
        "codec": c.name,
        "auc": lossy["auc"],
        "auc_original": base["auc"],
        "auc_delta": lossy["auc"] - base["auc"],
        "logloss": lossy["logloss"],
        "logloss_delta": lossy["logloss"] - base["logloss"],
    }
