"""Embedding compression layouts as objects, one per method, registered once (framework-neutral, numpy only).

A layout says, for every table f of a ModelConfig under a CompressionPlan:

* ``groups``: its parameter groups, each a ``Group`` (name suffix, training shape, index map). Group g of
  table f is the parameter ``emb.{f}`` (suffix "") or ``emb.{f}.{suffix}``; a ``table`` group is gathered
  by row and stored row-wise (any precision), a non-table group (a projection) is a dense float32 matrix.
* ``index``: per table group, the map from raw ids to its row ids as a tuple of primitive ``Step``s applied
  in order: ("floordiv", c), ("mod", c), ("hash", seed) (compression/hashing.hash32) and ("remap", name)
  (the stored sorted kept ids ``name``: position, or the fallback row; compression/freq.remap). The
  backends apply the same steps with their own ops; ``apply_index`` is the numpy version.
* ``combine``: how the gathered rows become one D-wide row, a ``Combine``: "identity" (one group), "mul",
  "add", "concat" (two groups, in order), "project" (rows @ the non-table group) or "tt" (tensor-train
  contraction of three cores, args (d1, d2, d3), rank). Identity and project are linear, so a backend may
  pool the rows of a bag first and combine after.
* ``init``: the seeded float32 starting values of every group (same draws as before the registry);
  layouts with ``plain_init`` start from the plain model's own tables. A config with
  ``init_table(f, shape, rng)`` (the retrieval models' ``TableSet``) draws the table groups that stand in
  for a plain table from it instead of the uniform default.
* ``stored_table``: the training-form table -> what is stored before precision (freq-prune keeps rows).
* ``lookup_work``: per table the widths of the stored rows one id reads, the pooled width, and the
  combine FLOPs per lookup, plus notes (the work model, recsys_impls/workmodel.py).
* ``parse``: the plan fields of ``name:args`` (compression/spec.py asks the registry for every layout).
* ``sharding_refusal``: why a sharded run (TorchRec ``sharded:N:...``, TensorFlow ``ps:N``) does not take the
  layout ("" where it does). TorchRec takes a layout whose table groups are plain tables looked up by
  mapped ids and whose combine commutes with the shards' sum pooling (identity, add, project): ``hash``,
  ``qr:add`` and ``mixed-dim``, one TorchRec table per group (torch_impl/distributed_sharded.py). The others
  combine rows per id before pooling (``qr:mult``, ``qr:concat``, ``tt``), or (TensorFlow's parameter
  servers) could be partitioned but that stage is not built. Data parallel runs take every layout.

``register_layout`` adds one; ``get_layout(name)`` finds it (an unknown name is a UsageError). A new method
is one subclass here (or anywhere, registered at import) and both frameworks build it generically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys_impls.errors import UsageError

Step = tuple[str, Any]  # (op, argument): floordiv c | mod c | hash seed | remap stored-array-name
STEP_OPS = ("floordiv", "mod", "hash", "remap")
COMBINE_OPS = ("identity", "mul", "add", "concat", "project", "tt")


@dataclass(frozen=True)
class Group:
    """One parameter group of one table."""

    suffix: str  # "" -> emb.{f}; else emb.{f}.{suffix}
    shape: tuple[int, int]  # training form [rows, width] (a projection: [in, out])
    index: tuple[Step, ...] = ()  # raw id -> row id in this group (training form); () = the id itself
    table: bool = True  # gathered by row and stored row-wise; False: a dense matrix used by ``combine``

    def name(self, f: int) -> str:
        return group_name(f, self.suffix)


@dataclass(frozen=True)
class Combine:
    """How the rows gathered from the table groups (in order) become one D-wide row."""

    op: str
    args: tuple[Any, ...] = ()

    @property
    def linear(self) -> bool:
        """A bag may be pooled before combining (identity, projection)."""
        return self.op in ("identity", "project")


@dataclass
class LookupWork:
    """Work-model facts of one layout: per table, the row widths one id reads, the pooled width, the
    combine FLOPs per lookup; notes on what is not modelled."""

    row_widths: list[list[int]]
    pooled_widths: list[int]
    flops_per_lookup: list[int]
    notes: list[str] = field(default_factory=list)


def group_name(f: int, suffix: str) -> str:
    return f"emb.{f}" + (f".{suffix}" if suffix else "")


class Layout:
    """Base: one fp32 row per id (the plain table). Subclasses override what differs."""

    name = "plain"
    aliases: tuple[str, ...] = ()
    usage = ""  # e.g. "hash:FRACTION", for the one-line parse errors
    plain_init = False  # starts from the plain model's seeded tables (the same draws as the baseline)
    needs_id_counts = False  # finalize needs the per-id training counts
    trained_as = ""  # the layout the float32 master weights are in ("" = this one)
    # Why sharded runs refuse it (the plain layout: see compression.spec.sharding_refusal).
    sharded_reason = ""

    def sharding_refusal(self, plan: Any, framework: str) -> str:
        """Why ``framework``'s sharded runs do not take this layout under ``plan`` (one clause; "" = they do)."""
        return self.sharded_reason or f"the {self.name} layout has no sharded stage"

    # --- parsing --------------------------------------------------------------------------------
    def parse(self, where: str, part: str, args: list[str]) -> dict[str, object]:
        """Plan fields of ``name:args``; UsageError (one line) on bad arguments."""
        if args:
            raise UsageError(f"{where}: '{part}' takes no parameter")
        return {}

    # --- shapes and index maps ----------------------------------------------------------------
    def groups(self, config: Any, plan: Any, f: int) -> list[Group]:
        return [Group("", (config.table_sizes[f], config.embedding_dim))]

    def index(self, config: Any, plan: Any, f: int, stored: bool) -> list[tuple[Step, ...]]:
        """Steps of each table group, in the training form or (``stored``) the stored form."""
        return [g.index for g in self.groups(config, plan, f) if g.table]

    def combine(self, config: Any, plan: Any, f: int) -> Combine:
        return Combine("identity")

    # --- initial values -------------------------------------------------------------------------
    def init(self, config: Any, plan: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Every group's float32 starting values, drawn from ``rng`` table by table, group by group."""
        out: dict[str, np.ndarray] = {}
        for f in range(config.num_tables):
            for g in self.groups(config, plan, f):
                out[g.name(f)] = self.init_group(config, plan, f, g, rng).astype(np.float32)
        return out

    def init_group(self, config: Any, plan: Any, f: int, g: Group, rng: np.random.Generator) -> np.ndarray:
        if not g.table:
            return rng.normal(0.0, np.sqrt(1.0 / g.shape[0]), size=g.shape)
        if hasattr(config, "init_table"):  # a model whose plain tables start otherwise (the retrieval models)
            return config.init_table(f, g.shape, rng)
        bound = np.sqrt(1.0 / config.table_sizes[f])
        return rng.uniform(-bound, bound, size=g.shape)

    # --- stored form ----------------------------------------------------------------------------
    def stored_table(self, plan: Any, name: str, table: np.ndarray,
                     counts: np.ndarray | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(table to store in the plan's precision, extra arrays stored as they are)."""
        return table, {}

    # --- work model -----------------------------------------------------------------------------
    def lookup_work(self, config: Any, plan: Any, train: bool) -> LookupWork:
        rows, pooled, flops = [], [], []
        for f in range(config.num_tables):
            tables = [g for g in self.groups(config, plan, f) if g.table]
            c = self.combine(config, plan, f)
            rows.append([g.shape[1] for g in tables])
            pooled.append(tables[0].shape[1] if c.linear else config.embedding_dim)
            flops.append(self.combine_flops(config, plan, f))
        return LookupWork(rows, pooled, flops, self.work_notes(train))

    def combine_flops(self, config: Any, plan: Any, f: int) -> int:
        """FLOPs of one id's combine outside the GEMMs the work model counts (projections are counted there)."""
        return 0

    def work_notes(self, train: bool) -> list[str]:
        return []


_REGISTRY: dict[str, Layout] = {}
_ALIASES: dict[str, str] = {}


def register_layout(layout: Layout) -> Layout:
    """Make ``layout`` known by its name (and aliases) to the parser, model_state, work model and backends."""
    _REGISTRY[layout.name] = layout
    for a in (layout.name, *layout.aliases):
        _ALIASES[a] = layout.name
    return layout


def unregister_layout(name: str) -> None:
    """Forget a layout (tests that register their own)."""
    layout = _REGISTRY.pop(name, None)
    for a in (name, *(layout.aliases if layout else ())):
        _ALIASES.pop(a, None)


def layout_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def find_layout(name: str) -> Layout | None:
    """The layout a spec item's method name (or alias) means, or None."""
    key = _ALIASES.get(name)
    return _REGISTRY[key] if key else None


def get_layout(name: str) -> Layout:
    layout = _REGISTRY.get(name)
    if layout is None:
        raise UsageError(f"--compression: unknown embedding layout {name!r}; accepted: {', '.join(_REGISTRY)}")
    return layout


def plan_layout(plan: Any) -> Layout:
    return get_layout(plan.layout)


# --- numpy primitives (the reference each backend's ops must match) ------------------------------

def apply_index(ids: np.ndarray, steps: Sequence[Step], arrays: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Row ids of ``ids`` after ``steps`` (int64); ``arrays`` holds what "remap" steps name."""
    from recsys_impls.compression.freq import remap
    from recsys_impls.compression.hashing import hash32

    x = np.asarray(ids, dtype=np.int64)
    for op, arg in steps:
        if op == "floordiv":
            x = x // np.int64(arg)
        elif op == "mod":
            x = x % np.int64(arg)
        elif op == "hash":
            x = hash32(x, arg)
        elif op == "remap":
            x = remap(x, (arrays or {})[arg])
        else:
            raise ValueError(f"unknown index step {op!r}; accepted: {', '.join(STEP_OPS)}")
    return x.astype(np.int64)


def apply_combine(rows: list[np.ndarray], combine: Combine, dense: list[np.ndarray]) -> np.ndarray:
    """float64 rows of the table groups -> one row per id (``dense``: the non-table groups)."""
    from recsys_impls.compression.qr import qr_combine
    from recsys_impls.compression.tt import tt_contract

    op = combine.op
    if op == "identity":
        return rows[0]
    if op in ("mul", "add", "concat"):
        return qr_combine(rows[0], rows[1], "mult" if op == "mul" else op)
    if op == "project":
        return rows[0] @ dense[0].astype(np.float64)
    if op == "tt":
        dims, rank = combine.args
        return tt_contract(rows, dims, rank)
    raise ValueError(f"unknown combine {op!r}; accepted: {', '.join(COMBINE_OPS)}")


# --- the built-in layouts -------------------------------------------------------------------------

def _float_arg(where: str, part: str, args: list[str], usage: str, lo: float, hi: float, what: str) -> float:
    if len(args) != 1:
        raise UsageError(f"{where}: '{part}' must be {usage}")
    try:
        v = float(args[0])
    except ValueError:
        v = float("nan")
    if not lo < v <= hi:
        raise UsageError(f"{where}: '{part}' needs {what} in ({lo:g}, {hi:g}], got {args[0]!r}")
    return v


def _int_arg(where: str, part: str, arg: str, lo: int, what: str) -> int:
    try:
        v = int(arg)
    except ValueError:
        v = lo - 1
    if v < lo:
        raise UsageError(f"{where}: '{part}' needs {what} as an integer >= {lo}, got {arg!r}")
    return v


class Plain(Layout):
    plain_init = True


class Hash(Layout):
    """Hashing trick: ids folded into K = ceil(FRACTION * rows) buckets by compression/hashing."""

    name, usage = "hash", "hash:FRACTION, e.g. hash:0.1"

    def sharding_refusal(self, plan: Any, framework: str) -> str:
        if framework == "torch":
            return ""  # TorchRec tables of the bucket counts, ids hashed before the KJT (distributed_sharded)
        return ("hash is one smaller plain table per feature and could be partitioned like one on the parameter "
                "servers with the hash applied first, but that TensorFlow stage is not built yet")

    def parse(self, where: str, part: str, args: list[str]) -> dict[str, object]:
        return {"hash_fraction": _float_arg(where, part, args, self.usage, 0.0, 1.0, "a table fraction")}

    def groups(self, config: Any, plan: Any, f: int) -> list[Group]:
        from recsys_impls.compression.hashing import DEFAULT_SEED, num_buckets

        k = num_buckets(config.table_sizes[f], plan.hash_fraction)
        return [Group("", (k, config.embedding_dim), (("hash", DEFAULT_SEED), ("mod", k)))]

    def work_notes(self, train: bool) -> list[str]:
        return ["hash: the id hashing (integer ops on the ids) is not modelled"]


class QR(Layout):
    """Quotient-remainder compositional embeddings (compression/qr.py)."""

    name, usage = "qr", "qr:COLLISIONS[:mult|add|concat], e.g. qr:4"

    def sharding_refusal(self, plan: Any, framework: str) -> str:
        if plan.qr_op == "add":
            if framework == "torch":
                return ""  # two TorchRec tables per feature, looked up by id // C and id % C (distributed_sharded)
            return ("qr:add commutes with sum pooling (two plain tables looked up by id // C and id % C), but "
                    "that TensorFlow two-table stage is not built yet")
        return (f"qr:{plan.qr_op} combines the quotient and remainder rows of each id before pooling, which "
                "sum-pooling shards cannot do")

    def parse(self, where: str, part: str, args: list[str]) -> dict[str, object]:
        from recsys_impls.compression.spec import QR_OPS

        if len(args) not in (1, 2):
            raise UsageError(f"{where}: '{part}' must be {self.usage}")
        out: dict[str, object] = {"qr_collisions": _int_arg(where, part, args[0], 2, "collisions per quotient")}
        if len(args) == 2:
            if args[1] not in QR_OPS:
                raise UsageError(f"{where}: '{part}' operation {args[1]!r}; accepted: {', '.join(QR_OPS)}")
            out["qr_op"] = args[1]
        return out

    def groups(self, config: Any, plan: Any, f: int) -> list[Group]:
        from recsys_impls.compression.qr import qr_dims, qr_table_rows

        c = plan.qr_collisions
        nq, nr = qr_table_rows(config.table_sizes[f], c)
        dq, dr = qr_dims(config.embedding_dim, plan.qr_op)
        return [Group("q", (nq, dq), (("floordiv", c),)), Group("r", (nr, dr), (("mod", c),))]

    def combine(self, config: Any, plan: Any, f: int) -> Combine:
        return Combine({"mult": "mul", "add": "add", "concat": "concat"}[plan.qr_op])

    def init_group(self, config: Any, plan: Any, f: int, g: Group, rng: np.random.Generator) -> np.ndarray:
        if g.suffix == "r" and plan.qr_op == "mult":
            return rng.uniform(0.5, 1.5, size=g.shape)  # near one: the product starts like the quotient row
        return super().init_group(config, plan, f, g, rng)

    def work_notes(self, train: bool) -> list[str]:
        return ["qr: the quotient/remainder index arithmetic is not modelled"]


class MixedDim(Layout):
    """Mixed-dimension tables, projected to D where narrower (compression/mixed_dim.py)."""

    name, aliases, usage = "mixed-dim", ("md",), "mixed-dim:ALPHA, e.g. mixed-dim:0.3"

    def sharding_refusal(self, plan: Any, framework: str) -> str:
        if framework == "torch":
            return ""  # TorchRec tables of the per-feature widths, projected after pooling (distributed_sharded)
        return ("mixed-dim tables differ in width per feature and their projection applies after pooling; "
                "shardable in principle, but that TensorFlow stage is not built yet")

    def parse(self, where: str, part: str, args: list[str]) -> dict[str, object]:
        return {"md_alpha": _float_arg(where, part, args, self.usage, 0.0, 1.0, "an exponent ALPHA")}

    def groups(self, config: Any, plan: Any, f: int) -> list[Group]:
        from recsys_impls.compression.mixed_dim import mixed_dims

        d = config.embedding_dim
        dim = mixed_dims(config.table_sizes, d, plan.md_alpha)[f]
        out = [Group("", (config.table_sizes[f], dim))]
        if dim < d:
            out.append(Group("proj", (dim, d), table=False))
        return out

    def combine(self, config: Any, plan: Any, f: int) -> Combine:
        return Combine("project") if len(self.groups(config, plan, f)) > 1 else Combine("identity")


class TT(Layout):
    """TT-Rec tensor-train cores (compression/tt.py): one row of each of three core tables, contracted."""

    name, usage = "tt", "tt:RANK, e.g. tt:8"
    sharded_reason = ("tt contracts one row of each of three cores per id before pooling, which sum-pooling "
                      "shards cannot do (each id needs all three cores' rows in one place)")

    def parse(self, where: str, part: str, args: list[str]) -> dict[str, object]:
        if len(args) != 1:
            raise UsageError(f"{where}: '{part}' must be {self.usage}")
        rank = _int_arg(where, part, args[0], 1, "a tensor-train rank")
        if rank > 4096:
            raise UsageError(f"{where}: '{part}' rank above 4096; accepted: tt:RANK with 1 <= RANK <= 4096")
        return {"tt_rank": rank}

    def groups(self, config: Any, plan: Any, f: int) -> list[Group]:
        from recsys_impls.compression.tt import core_shapes, row_factors

        n = config.table_sizes[f]
        _, n2, n3 = row_factors(n)
        steps: list[tuple[Step, ...]] = [(("floordiv", n2 * n3),), (("floordiv", n3), ("mod", n2)), (("mod", n3),)]
        return [Group(f"tt{k}", shape, steps[k]) for k, shape in enumerate(core_shapes(n, config.embedding_dim,
                                                                                        plan.tt_rank))]

    def combine(self, config: Any, plan: Any, f: int) -> Combine:
        from recsys_impls.compression.tt import dim_factors

        return Combine("tt", (dim_factors(config.embedding_dim), plan.tt_rank))

    def init_group(self, config: Any, plan: Any, f: int, g: Group, rng: np.random.Generator) -> np.ndarray:
        from recsys_impls.compression.tt import core_std

        return rng.normal(0.0, core_std(config.table_sizes[f], plan.tt_rank), size=g.shape)

    def combine_flops(self, config: Any, plan: Any, f: int) -> int:
        from recsys_impls.compression.tt import contraction_flops

        return contraction_flops(config.embedding_dim, plan.tt_rank)

    def work_notes(self, train: bool) -> list[str]:
        return ["tt: the per-id core contraction's intermediate [d1*d2, rank] rows are assumed fused"]


class FreqPrune(Layout):
    """Trained plain; stored with only the rows of ids seen >= MIN_COUNT times plus one fallback row."""

    name, usage = "freq-prune", "freq-prune:MIN_COUNT, e.g. freq-prune:3"
    sharded_reason = ("freq-prune trains plain tables and prunes them after training by the global id counts; "
                      "the pruned store of sharded tables is not built")
    plain_init, needs_id_counts, trained_as = True, True, "plain"

    def parse(self, where: str, part: str, args: list[str]) -> dict[str, object]:
        if len(args) != 1:
            raise UsageError(f"{where}: '{part}' must be {self.usage}")
        return {"freq_min_count": _int_arg(where, part, args[0], 2, "a minimum id count")}

    def index(self, config: Any, plan: Any, f: int, stored: bool) -> list[tuple[Step, ...]]:
        return [(("remap", f"emb.{f}.kept"),)] if stored else [()]

    def stored_table(self, plan: Any, name: str, table: np.ndarray,
                     counts: np.ndarray | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from recsys_impls.compression.freq import kept_ids, prune_table

        c = counts if counts is not None else np.zeros(table.shape[0], np.int64)
        kept = kept_ids(c, plan.freq_min_count)
        return prune_table(table, kept), {f"{name}.kept": kept}

    def work_notes(self, train: bool) -> list[str]:
        return [] if train else ["freq-prune: the kept-id search that remaps ids is not modelled"]


for _layout in (Plain(), Hash(), QR(), MixedDim(), TT(), FreqPrune()):
    register_layout(_layout)


def table_groups(config: Any, plan: Any) -> list[list[Group]]:
    """Every table's groups (the plan's layout)."""
    layout = plan_layout(plan)
    return [layout.groups(config, plan, f) for f in range(config.num_tables)]


def fusable(config: Any, plan: Any) -> bool:
    """Whether every table has the same groups (suffixes, widths, step ops), combine, and no dense group:
    then a backend may concatenate each group over the tables and look all ids up at once."""
    layout = plan_layout(plan)
    sig = {(tuple((g.suffix, g.shape[1], g.table, tuple(op for op, _ in g.index)) for g in groups),
            layout.combine(config, plan, f)) for f, groups in enumerate(table_groups(config, plan))}
    return len(sig) == 1 and all(g.table for g in table_groups(config, plan)[0])


def lookup_rows(config: Any, plan: Any, f: int, ids: np.ndarray, table: Callable[[str, int], np.ndarray],
                arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The numpy lookup of table f in the stored form: float64 [len(ids), D]. ``table(name, width)`` reads a
    (dequantized) stored table; ``arrays`` holds the other stored arrays (kept ids, projections)."""
    layout = plan_layout(plan)
    groups = layout.groups(config, plan, f)
    tables = [g for g in groups if g.table]
    steps = layout.index(config, plan, f, stored=True)
    got = [table(g.name(f), g.shape[1])[apply_index(ids, s, arrays)].astype(np.float64)
           for g, s in zip(tables, steps, strict=True)]
    dense = [arrays[g.name(f)] for g in groups if not g.table]
    return apply_combine(got, layout.combine(config, plan, f), dense)
