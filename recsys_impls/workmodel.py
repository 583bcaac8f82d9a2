"""Analytic work (FLOPs and memory bytes) of one ranking-model training step or inference batch, for roofline
scoring.

``dlrm-cat`` replaces the dot interaction below by a concatenation (no FLOPs, its bytes counted);
``dcnv2`` adds after it ``cross_layers`` low-rank cross layers, each a bias-free [W, rank] and a biased
[rank, W] GEMM plus one fused elementwise op (W = bottom width + F*D), counted like MLP layers.

The model follows the DLRM of this suite (``config.ModelConfig``, ``models/dlrm.py``): bottom MLP
(ReLU after every layer) on the dense features -> x [B, D]; F sum-pooled embedding bags of
``ids_per_table()`` ids each (ids_per_feature, or per-table bag_sizes) -> pooled [B, F, D]; dot interaction
of the N = F + 1 vectors, keeping the P = N(N-1)/2 strictly-lower dots, concatenated after x -> [B, D + P];
top MLP (ReLU except after the last, width-1 layer); sigmoid (inference) or binary cross-entropy (training).

FLOPs (what the roofline's compute peak, a GEMM rate, is compared with):

* Only GEMM-like work is counted: the MLP linear layers, the mixed-dim projections and the interaction's
  batched matmul. A GEMM [B, K] x [K, N] is 2*B*K*N FLOPs forward. Elementwise work (bias, ReLU, sigmoid,
  loss, pooling sums, QR combine, optimizer updates) runs at memory speed: its bytes are counted, its
  arithmetic is not.
* The interaction is counted as both implementations execute it: the full N x N batched matmul
  (2*B*N*N*D forward), not only the P kept pairs (2*B*P*D).
* Training = forward + backward, backward = 2x forward (gradient of the input and of the weight) for every
  GEMM, except the first bottom-MLP layer, whose input (the dense features) needs no gradient: its backward
  is 1x. The interaction's backward is counted as 2x forward too (what TensorFlow's autograd runs); the
  PyTorch implementation uses the symmetry of T T^T and runs half of that, so for PyTorch the model
  over-counts 2*B*N*N*D FLOPs per step (about 0.5% of a dlrm-ref step).

Bytes (compared with the STREAM triad bandwidth):

* Each logical op -- a linear layer with its bias and ReLU, the pooling of all tables, the interaction
  as a whole, the loss/sigmoid, the optimizer update -- reads its inputs and writes its outputs once from
  main memory; intermediates inside an op (the cat of x and the pooled vectors, the full Z before the
  gather, the gathered rows before pooling) are assumed fused. This is a lower bound on traffic, as a
  roofline needs, except for the next point.
* Embedding rows: every lookup reads its row (B*F*L rows), and in training every lookup's row is read and
  written by the sparse update (plus the Adagrad accumulator row, fp32, read and written). Repeated ids
  inside a batch are counted each time, so with Zipf-skewed ids (hot rows stay in cache) this term is an
  upper bound; a memory-bound step whose traffic is mostly embedding rows can score a fraction above 1.
  The sparse gradient's values (one D-row per lookup) are assumed fused into the update.
* Ids are int64 (8 bytes) and bag offsets (B*F + 1 of them) int64, read in forward and again in training's
  backward.
* Linear layer forward reads the input [B, K] and writes the output [B, N]. Backward reads dY [B, N],
  the saved output [B, N] if a ReLU follows (its mask), the saved input [B, K] (for dW), and writes
  dX [B, K] (not for the first bottom layer). Interaction forward reads T [B, N, D], writes [B, D + P];
  backward reads d[B, D + P] and T, writes dT [B, N, D]. Pooling writes pooled [B, F, D]; training's update
  reads d pooled [B, F, D]. Loss/sigmoid read and write [B] floats (fp32).
* MLP (and mixed-dim projection) parameters, fp32 masters: forward reads them once, backward reads them
  again (for dX) and writes fp32 gradients; the optimizer reads parameter and gradient and writes the
  parameter (SGD: 12 bytes per parameter), Adagrad also reads and writes its fp32 accumulator (+8).
  Under AMP (amp-bf16 / amp-fp16) the autocast copy is counted: forward reads the fp32 master and writes a
  2-byte copy, and the GEMMs read the copy (2 bytes) in forward and backward.

Element sizes: activations (pooled vectors included) 4 bytes for fp32/tf32, 2 bytes under amp-bf16 /
amp-fp16 (the casts of fp32 inputs are not counted). Embedding tables are fp32 in training. In inference
the embedding-precision compression sets the row size: fp16/bf16 2*D bytes, int8 D + 8 (fp32 scale and
bias per row), int4 ceil(D/2) + 4 (fp16 scale and bias per row). Those are post-training methods: a
training step always reads fp32 rows.

Compression layouts: hash and freq-prune shrink tables, not bytes per lookup (unchanged); qr reads two rows
per id (quotient and remainder tables, widths from ``qr_dims``) and updates both in training; tt reads one row
of each of the three cores per id (widths r_{k-1} d_k r_k) and counts the contraction's two small matmuls as
FLOPs; mixed-dim reads d_f-wide rows and runs a [B, d_f] x [d_f, D] projection (a bias-free linear layer) for
each table with d_f < D. mlp-int8 (inference) reads 1-byte weights plus an fp32 scale per output channel; its
int8 multiply-adds are counted as FLOPs. prune keeps dense kernels on zero-filled weights, so its work is
unchanged. What is not modelled is listed in ``Work.notes``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from recsys_impls.config import ModelConfig

PHASES = ("train", "infer")
OPTIMIZERS = ("sgd", "adagrad")
# Precision axis values (config.PRECISIONS) plus the plain dtype names, mapped to the activation size.
ACTIVATION_BYTES = {"fp32": 4, "tf32": 4, "amp-bf16": 2, "amp-fp16": 2, "bf16": 2, "fp16": 2}
AMP_PRECISIONS = ("amp-bf16", "amp-fp16", "bf16", "fp16")
ID_BYTES = 8
FP32 = 4


@dataclass(frozen=True)
class Work:
    """FLOPs and bytes of one step (train) or one batch (infer); totals are properties."""

    phase: str
    batch_size: int
    precision: str
    optimizer: str
    compression: str
    mlp_flops: int
    interaction_flops: int
    projection_flops: int
    embedding_bytes_read: int
    embedding_bytes_written: int
    index_bytes_read: int
    dense_activation_bytes: int
    param_bytes_read: int
    param_bytes_written: int
    notes: tuple[str, ...] = field(default=())

    @property
    def flops(self) -> int:
        return self.mlp_flops + self.interaction_flops + self.projection_flops

    @property
    def bytes_total(self) -> int:
        return (self.embedding_bytes_read + self.embedding_bytes_written + self.index_bytes_read
                + self.dense_activation_bytes + self.param_bytes_read + self.param_bytes_written)

    @property
    def intensity(self) -> float:
        """FLOPs per byte of memory traffic."""
        return self.flops / self.bytes_total if self.bytes_total else math.inf

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        d["flops"] = self.flops
        d["bytes_total"] = self.bytes_total
        d["intensity_flops_per_byte"] = self.intensity
        return d


@dataclass
class _Tally:
    """Running sums while walking the model's ops."""

    train: bool
    act: int  # activation element size
    mlp_flops: int = 0
    interaction_flops: int = 0
    projection_flops: int = 0
    emb_read: int = 0
    emb_written: int = 0
    index: int = 0
    act_bytes: int = 0
    params: int = 0  # dense parameter count (MLPs, projections)
    int8_weights: int = 0  # of which stored int8 in inference (mlp-int8)
    int8_channels: int = 0

    def linear(self, b: int, k: int, n: int, relu: bool, needs_dx: bool, bias: bool = True) -> int:
        """One linear layer; returns its forward FLOPs."""
        fwd = 2 * b * k * n
        self.act_bytes += (b * k + b * n) * self.act
        self.params += k * n + (n if bias else 0)
        if self.train:
            self.act_bytes += (b * n + (b * n if relu else 0) + b * k + (b * k if needs_dx else 0)) * self.act
            fwd_and_bwd = fwd * (3 if needs_dx else 2)
            return fwd_and_bwd
        return fwd


def _plan(compression: str, notes: list[str]) -> Any:
    from recsys_impls.compression.spec import CompressionPlan, parse_compression
    from recsys_impls.errors import UsageError

    try:
        return parse_compression(compression)
    except UsageError as exc:
        notes.append(f"compression {compression!r} not recognised ({exc}); modelled as uncompressed")
        return CompressionPlan(spec="none")


def _row_bytes(dim: int, precision: str) -> int:
    """Bytes read for one stored embedding row (fused FBGEMM-style layouts for int8/int4)."""
    if precision in ("fp16", "bf16"):
        return 2 * dim
    if precision == "int8":
        return dim + 2 * FP32
    if precision == "int4":
        return (dim + 1) // 2 + 2 * 2
    return FP32 * dim


def work_per_step(model: ModelConfig, batch_size: int, phase: str = "train", optimizer: str = "sgd",
                  precision: str = "fp32", compression: str = "none") -> Work:
    """FLOPs and bytes of one training step (``phase="train"``) or one inference batch (``"infer"``)."""
    if phase not in PHASES:
        raise ValueError(f"work_per_step: phase {phase!r}; accepted: {', '.join(PHASES)}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"work_per_step: optimizer {optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")
    if precision not in ACTIVATION_BYTES:
        raise ValueError(f"work_per_step: precision {precision!r}; accepted: {', '.join(ACTIVATION_BYTES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"work_per_step: batch_size {batch_size!r}; must be a positive integer")
    train = phase == "train"
    notes: list[str] = []
    plan = _plan(compression, notes)
    b, d, f = batch_size, model.embedding_dim, model.num_tables
    n_vec = f + 1
    t = _Tally(train=train, act=ACTIVATION_BYTES[precision])

    # Bottom MLP: ReLU after every layer; the first layer's input needs no gradient.
    k = model.num_dense
    for i, w in enumerate(model.bottom_mlp):
        t.mlp_flops += t.linear(b, k, w, relu=True, needs_dx=i > 0)
        k = w

    # Embedding lookups and pooling.
    from recsys_impls.compression.layouts import plan_layout

    lw = plan_layout(plan).lookup_work(model, plan, train)
    notes.extend(lw.notes)
    table_precision = "fp32" if train else plan.precision
    if train and plan.precision != "fp32":
        notes.append(f"embedding precision {plan.precision} applies after training: training reads fp32 rows")
    per_table = model.ids_per_table()  # mean ids per sample of each table (multi-hot bags)
    t.index += (b * sum(per_table) + b * f + 1) * ID_BYTES * (2 if train else 1)
    for widths, pooled, combine_flops, k in zip(lw.row_widths, lw.pooled_widths, lw.flops_per_lookup, per_table,
                                                strict=True):
        lookups = b * k
        t.emb_read += lookups * sum(_row_bytes(w, table_precision) for w in widths)
        if train:
            rows = lookups * sum(FP32 * w for w in widths)
            t.emb_read += rows
            t.emb_written += rows
            if optimizer == "adagrad":
                t.emb_read += rows
                t.emb_written += rows
        t.act_bytes += b * pooled * t.act  # pooled output
        if pooled < d:  # mixed-dim projection to D (bias-free), trained with the table
            t.projection_flops += t.linear(b, pooled, d, relu=False, needs_dx=True, bias=False)
        if train:
            t.act_bytes += b * pooled * t.act  # the update reads d pooled
        # A per-id combine outside the GEMMs (TT-Rec's core contraction); backward 2x, as for a GEMM.
        if combine_flops:
            t.projection_flops += lookups * combine_flops * (3 if train else 1)

    if model.arch == "dlrm":
        # Dot interaction: full N x N batched matmul, strictly-lower pairs gathered, cat after x.
        pairs = n_vec * (n_vec - 1) // 2
        out_width = d + pairs
        fwd = 2 * b * n_vec * n_vec * d
        t.interaction_flops += fwd * (3 if train else 1)
        t.act_bytes += (b * n_vec * d + b * out_width) * t.act
        if train:
            t.act_bytes += (b * out_width + 2 * b * n_vec * d) * t.act
    else:
        if model.arch not in ("dlrm-cat", "dcnv2"):
            notes.append(f"model {model.arch}: its interaction is modelled as a concatenation")
        # Concatenation (dlrm-cat, dcnv2): x and the pooled vectors read, x_0 [B, W] written (and back).
        x_width = model.bottom_mlp[-1]
        out_width = x_width + f * d
        t.act_bytes += (b * (x_width + f * d) + b * out_width) * t.act * (2 if train else 1)
        for _ in range(model.cross_layers if model.arch == "dcnv2" else 0):
            # x_{l+1} = x_0 * (U (V^T x_l) + b) + x_l: two GEMMs (V^T bias-free), then one fused elementwise
            # op reading x_0, U V^T x_l, x_l and writing x_{l+1} (training: reads those and d x_{l+1} again,
            # writes d x_0, d x_l and d(U V^T x_l)).
            t.mlp_flops += t.linear(b, out_width, model.cross_rank, relu=False, needs_dx=True, bias=False)
            t.mlp_flops += t.linear(b, model.cross_rank, out_width, relu=False, needs_dx=True)
            t.act_bytes += 4 * b * out_width * t.act
            if train:
                t.act_bytes += 7 * b * out_width * t.act

    # Top MLP: ReLU after all but the last (logit) layer.
    k = out_width
    for i, w in enumerate(model.top_mlp):
        t.mlp_flops += t.linear(b, k, w, relu=i < len(model.top_mlp) - 1, needs_dx=True)
        k = w

    # Sigmoid (infer: logits in, probabilities out) or BCE (train: logits and labels in, d logits out).
    t.act_bytes += (3 if train else 2) * b * FP32

    param_read, param_written = _param_bytes(model, t.params, plan, train, optimizer, precision, notes)
    if plan.prune_sparsity > 0:
        notes.append("prune: dense kernels on zero-filled weights, work unchanged; the re-masking after "
                     "fine-tune steps is not modelled")
    return Work(
        phase=phase, batch_size=b, precision=precision, optimizer=optimizer, compression=plan.spec,
        mlp_flops=t.mlp_flops, interaction_flops=t.interaction_flops, projection_flops=t.projection_flops,
        embedding_bytes_read=t.emb_read, embedding_bytes_written=t.emb_written, index_bytes_read=t.index,
        dense_activation_bytes=t.act_bytes, param_bytes_read=param_read, param_bytes_written=param_written,
        notes=tuple(notes),
    )


def _param_bytes(model: ModelConfig, params: int, plan: Any, train: bool, optimizer: str, precision: str,
                 notes: list[str]) -> tuple[int, int]:
    """(read, written) bytes of the dense parameters (MLPs and projections) in one step."""
    amp = precision in AMP_PRECISIONS
    if not train:
        if plan.mlp_int8:
            weights = sum(k * n for k, n in _mlp_layers(model))
            channels = sum(n for _, n in _mlp_layers(model))
            notes.append("mlp-int8: int8 GEMM FLOPs are scored against the fp32 GEMM peak; the dynamic "
                         "quantization of activations is not modelled")
            return weights + channels * FP32 + (params - weights) * FP32, 0
        if amp:  # read the master, write the autocast copy, the GEMMs read the copy
            return params * (FP32 + 2), params * 2
        return params * FP32, 0
    if plan.mlp_int8:
        notes.append("mlp-int8 applies after training: training uses fp32 MLP weights")
    if amp:
        read = params * (FP32 + 2 + 2)  # master, copy in forward, copy in backward
        written = params * (2 + FP32)  # copy, fp32 gradient
    else:
        read = params * 2 * FP32  # forward and backward
        written = params * FP32  # gradient
    read += params * 2 * FP32  # optimizer reads parameter and gradient
    written += params * FP32  # and writes the parameter
    if optimizer == "adagrad":
        read += params * FP32
        written += params * FP32
    return read, written


def _mlp_layers(model: ModelConfig) -> list[tuple[int, int]]:
    """(in, out) of every dense linear layer (the model spec's GEMMs: bottom, cross layers, top)."""
    return model.spec.gemm_layers(model)
