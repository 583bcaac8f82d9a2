"""Parse a scenario's ``compression`` string into a CompressionPlan (framework-neutral; numpy-free unless
the spec names an embedding layout, whose arguments its object in compression/layouts.py parses).

A spec is a comma-separated list of methods, each ``name`` or ``name:arg[:arg]``::

    none | fp16 | bf16 | int8 | int4            embedding storage precision (post-training)
    hash:FRACTION                               hashing trick, K = ceil(FRACTION * rows) buckets
    qr:COLLISIONS[:mult|add|concat]             quotient-remainder embeddings (Shi et al. 2020)
    mixed-dim:ALPHA                             mixed-dimension embeddings (Ginart et al. 2021)
    tt:RANK                                     tensor-train cores (TT-Rec, Yin et al. 2021)
    freq-prune:MIN_COUNT                        ids seen < MIN_COUNT times in training share one row
    prune:SPARSITY                              MLP magnitude pruning + short fine-tune, stored sparse
    mlp-int8                                    dynamic int8 quantization of the MLP linear layers

Methods are grouped into slots (precision, id-mapping, MLP weights); two methods in one slot are a
conflict, reported as one UsageError line naming both.
"""

from __future__ import annotations

from dataclasses import dataclass

from recsys_impls.errors import UsageError

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int4")
QR_OPS = ("mult", "add", "concat")


@dataclass(frozen=True)
class CompressionPlan:
    """What to do to each part of the model. The default is the uncompressed fp32 baseline."""

    spec: str = "none"
    # Embedding storage precision, applied after training (row-wise scale and bias for int8/int4).
    precision: str = "fp32"
    # How ids map to stored rows (applied at training time).
    layout: str = "plain"
    hash_fraction: float = 0.0
    qr_collisions: int = 0
    qr_op: str = "mult"
    md_alpha: float = 0.0
    freq_min_count: int = 0
    tt_rank: int = 0
    layout_args: tuple[str, ...] = ()  # the layout's arguments as typed (a new layout may read only these)
    # MLP weights.
    prune_sparsity: float = 0.0
    mlp_int8: bool = False

    @property
    def is_baseline(self) -> bool:
        return self == CompressionPlan(spec=self.spec)

    @property
    def methods(self) -> tuple[str, ...]:
        """Method names in canonical order (for records and support checks)."""
        out = []
        if self.layout != "plain":
            out.append(self.layout)
        if self.precision != "fp32":
            out.append(self.precision)
        if self.prune_sparsity > 0:
            out.append("prune")
        if self.mlp_int8:
            out.append("mlp-int8")
        return tuple(out)

    @property
    def needs_training_change(self) -> bool:
        """Methods that change the trained model itself (not only post-training storage)."""
        return self.layout != "plain"


# (method, parameters, description, frameworks) for `python -m recsys_impls list`.
_METHODS: list[tuple[str, str, str, str]] = [
    ("none", "", "fp32 baseline, no compression", "torch, tf"),
    ("fp16", "", "embedding tables stored in float16 (post-training)", "torch, tf"),
    ("bf16", "", "embedding tables stored in bfloat16 (post-training)", "torch, tf"),
    ("int8", "", "row-wise int8 tables, fp32 scale+bias per row (FBGEMM byte-rowwise in torch)", "torch, tf"),
    ("int4", "", "row-wise int4 tables, fp16 scale+bias per row (FBGEMM 4bit-rowwise in torch)", "torch, tf"),
    ("hash", "FRACTION in (0,1]", "hashing trick: ids folded into ceil(FRACTION*rows) buckets by a fixed "
     "integer hash (trained that way)", "torch, tf"),
    ("qr", "COLLISIONS>=2[:mult|add|concat]", "quotient-remainder compositional embeddings, "
     "rows/COLLISIONS + COLLISIONS rows per table (trained that way)", "torch, tf"),
    ("mixed-dim", "ALPHA in (0,1]", "mixed-dimension tables: dim_f = D*(rows_min/rows_f)^ALPHA, "
     "projected to D (trained that way)", "torch, tf"),
    ("tt", "RANK>=1", "TT-Rec tensor-train embeddings: each table as three cores of rank RANK, rows "
     "n1*n2*n3 >= rows, columns d1*d2*d3 = D (trained that way)", "torch, tf"),
    ("freq-prune", "MIN_COUNT>=2", "embedding rows of ids seen fewer than MIN_COUNT times in the training "
     "data are dropped; those ids share one fallback row per table", "torch, tf"),
    ("prune", "SPARSITY in (0,1)", "MLP magnitude pruning at exactly SPARSITY per layer, short masked "
     "fine-tune, weights stored sparse", "torch, tf"),
    ("mlp-int8", "", "dynamic int8 quantization of the MLP linear layers for inference", "torch, tf"),
]


def sharding_refusal(spec: str, framework: str) -> str:
    """Why ``framework``'s sharded runs (TorchRec sharded:N:..., TensorFlow ps:N) do not take compression
    ``spec`` ("" where they do): its layout's reason (compression/layouts.py), else that of its
    post-training methods."""
    plan = parse_compression(spec)
    if plan.layout != "plain":
        from recsys_impls.compression.layouts import get_layout

        why = get_layout(plan.layout).sharding_refusal(plan, framework)
        if why:
            return why
    post = [m for m in plan.methods if m != plan.layout]
    if post:
        return (f"{', '.join(post)} compress(es) the trained model after training and a sharded run's tables "
                "stay split over the ranks, so the stored model is not built from them")
    return ""


_POST_TRAINING_EXAMPLES = ("fp16", "int8", "prune:0.5", "mlp-int8")


def parallel_rows() -> list[tuple[str, str]]:
    """(method, how it runs with --parallel) rows for ``list``: every method runs data parallel; sharded
    runs refuse each with its reason (``sharding_refusal``)."""
    from recsys_impls.compression.layouts import get_layout, layout_names

    rows = [("data parallel", "every method: torch ddp:N, tf mwms:N (ddp:N); each rank builds the compressed "
                              "model one process builds, post-training methods compress the float32 master "
                              "weights trained data parallel")]
    examples = []
    for name in layout_names():
        usage = get_layout(name).usage
        if name != "plain":
            examples.append(usage.split("e.g. ")[-1] if "e.g. " in usage else name)
        if name == "qr":
            examples.append(f"{examples[-1]}:add")
    for spec in (*examples, *_POST_TRAINING_EXAMPLES):
        torch_why, tf_why = sharding_refusal(spec, "torch"), sharding_refusal(spec, "tf")
        if torch_why == tf_why:
            rows.append((f"{spec} sharded", f"refused (torch sharded:N, tf ps:N): {torch_why}"))
            continue
        rows.append((f"{spec} sharded", "torch sharded:N:...: " + (f"refused: {torch_why}" if torch_why else
                     "runs (one TorchRec table per table group, of the mapped rows and widths, ids mapped "
                     "before the KeyedJaggedTensor, the combine applied to the pooled rows)")
                     + "; tf ps:N: " + (f"refused: {tf_why}" if tf_why else "runs")))
    return rows


def describe_methods() -> list[dict[str, object]]:
    """Every compression method for `list`: method, parameters, spec (as typed), description, frameworks."""
    out: list[dict[str, object]] = []
    for method, params, description, frameworks in _METHODS:
        arg = params.split(" ")[0] if params else ""
        out.append({"method": method, "parameters": params, "spec": f"{method}:{arg}" if arg else method,
                    "description": description + (f" ({params})" if params else ""),
                    "frameworks": [f.strip() for f in frameworks.split(",")]})
    from recsys_impls.compression.layouts import find_layout, layout_names

    listed = {row["method"] for row in out}
    for name in layout_names():  # layouts registered beyond the built-in ones
        layout = find_layout(name)
        if name not in listed and name != "plain" and layout is not None:
            doc = (type(layout).__doc__ or "").strip().splitlines()
            out.append({"method": name, "parameters": layout.usage, "spec": layout.usage.split(",")[0] or name,
                        "description": doc[0] if doc else name, "frameworks": ["torch", "tf"]})
    return out


def _where(spec: str) -> str:
    return f"--compression {spec}"


def _float_arg(spec: str, part: str, arg: str, lo: float, hi: float, hi_inclusive: bool, what: str) -> float:
    try:
        v = float(arg)
    except ValueError:
        v = float("nan")
    ok = lo < v < hi or (hi_inclusive and v == hi)
    if not ok:
        bound = "]" if hi_inclusive else ")"
        raise UsageError(f"{_where(spec)}: '{part}' needs {what} in ({lo:g}, {hi:g}{bound}, got {arg!r}")
    return v


def _accepted() -> str:
    return ("none, fp16, bf16, int8, int4, hash:F, qr:C[:mult|add|concat], mixed-dim:A, tt:R, freq-prune:N, prune:S, "
            "mlp-int8")


def _layout(name: str):  # noqa: ANN202 - a compression.layouts.Layout or None
    if name in ("fp16", "bf16", "int8", "int4", "prune", "mlp-int8", "none", "plain"):
        return None
    from recsys_impls.compression.layouts import find_layout  # numpy: only for a layout method

    return find_layout(name)


def parse_compression(spec: str) -> CompressionPlan:
    """Parse and validate a compression spec; raise UsageError (one line) on bad or conflicting input."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"{_where(spec)}: empty; accepted: {_accepted()} (comma-separated to combine)")
    text = spec.strip().lower()
    parts = [p.strip() for p in text.split(",")]
    if text == "none":
        return CompressionPlan(spec="none")
    fields: dict[str, object] = {}
    slot_owner: dict[str, str] = {}

    def claim(slot: str, part: str) -> None:
        if slot in slot_owner:
            raise UsageError(
                f"{_where(spec)}: '{slot_owner[slot]}' and '{part}' conflict (both set the {slot}); "
                "choose one of them"
            )
        slot_owner[slot] = part

    for part in parts:
        if not part:
            raise UsageError(f"{_where(spec)}: empty item between commas; accepted: {_accepted()}")
        name, *args = part.split(":")
        if name == "none":
            raise UsageError(f"{_where(spec)}: 'none' cannot be combined with other methods")
        if name in ("fp16", "bf16", "int8", "int4"):
            if args:
                raise UsageError(f"{_where(spec)}: '{name}' takes no parameter, got '{part}'")
            claim("embedding precision", part)
            fields["precision"] = name
        elif (layout := _layout(name)) is not None:
            # An embedding layout (compression/layouts.py) parses its own arguments.
            layout_fields = layout.parse(_where(spec), part, args)
            claim("embedding id mapping", part)
            fields.update(layout=layout.name, layout_args=tuple(args), **layout_fields)
        elif name == "prune":
            if len(args) != 1:
                raise UsageError(f"{_where(spec)}: '{part}' must be prune:SPARSITY, e.g. prune:0.8")
            claim("MLP weight format", part)
            fields["prune_sparsity"] = _float_arg(spec, part, args[0], 0.0, 1.0, False, "a sparsity")
        elif name == "mlp-int8":
            if args:
                raise UsageError(f"{_where(spec)}: 'mlp-int8' takes no parameter, got '{part}'")
            claim("MLP weight format", part)
            fields["mlp_int8"] = True
        else:
            raise UsageError(f"{_where(spec)}: unknown method {name!r}; accepted: {_accepted()}")
    canonical = ",".join(parts)
    return CompressionPlan(spec=canonical, **fields)  # type: ignore[arg-type]
