"""Optimizers of the PyTorch DLRM, with the semantics fixed in recsys_impls/base.py.

Embedding tables get sparse gradients. ``SparseAdagrad`` has the contract's sparse Adagrad semantics
(duplicate ids summed first, s += g*g on touched rows, p -= lr * g / (sqrt(s) + eps), eps=1e-10, s
starts at 0), the same as ``torch.optim.Adagrad``'s sparse path, but works on the summed rows
directly: two ``index_add_`` and one ``index_select`` of [rows, D] instead of two dense += sparse
adds and a ``sparse_mask`` (dlrm-ref, one thread, torch.profiler: the sparse step went from about 16
to 7 ms). For SGD, ``SparseSGD`` applies a sparse gradient with one ``index_add_`` of the pre-scaled
rows (duplicate ids add up, as p -= lr * g requires); on the dlrm-ref table (800k x 64, 16k ids) that
took 2.3 ms of CPU time against 3.6 ms for ``torch.optim.SGD``'s dense += sparse path. Dense
parameters use foreach SGD, and fused Adagrad where torch has a fused kernel for their device (one pass
per tensor; on CPU foreach Adagrad runs four separate ops per tensor: on the dcnv2-ref dense parameters,
6.6M, one thread, the step went from about 94 to 11 ms, same updates within 3e-7).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch


class SparseSGD(torch.optim.Optimizer):
    """p -= lr * g for parameters whose gradients are sparse COO tensors (rows of a table)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr = group["lr"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if not g.is_sparse or g.sparse_dim() != 1:  # dense, or not row-sparse: the generic add
                    p.add_(g, alpha=-lr)
                    continue
                rows = g._indices()[0]
                p.index_add_(0, rows, g._values().to(p.dtype) * -lr)


def coalesce_rows(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique sorted rows of a row-sparse COO gradient and their summed values.

    ``torch.unique`` plus one ``index_add_`` measured about 1.5x faster than ``Tensor.coalesce()`` on
    the dlrm-ref gradient (16k ids, 64 wide).
    """
    if g.is_coalesced():
        return g._indices()[0], g._values()
    rows, inverse = torch.unique(g._indices()[0], sorted=True, return_inverse=True)
    values = g._values()
    return rows, values.new_zeros((rows.numel(), *values.shape[1:])).index_add_(0, inverse, values)


class SparseAdagrad(torch.optim.Optimizer):
    """Adagrad for parameters whose gradients are row-sparse COO tensors (a dense gradient, which a
    compressed embedding variant may produce, gets the same update on every row)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, eps: float = 1e-10) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["step"] = torch.tensor(0.0)
                state["step"] += 1
                if not g.is_sparse or g.sparse_dim() != 1:
                    g = g.to_dense() if g.is_sparse else g
                    state["sum"].addcmul_(g, g)
                    p.addcdiv_(g, state["sum"].sqrt().add_(eps), value=-lr)
                    continue
                rows, values = coalesce_rows(g)
                values = values.to(p.dtype)
                acc = state["sum"]
                acc.index_add_(0, rows, values * values)  # rows are unique: an indexed +=
                std = acc.index_select(0, rows).sqrt_().add_(eps)
                p.index_add_(0, rows, torch.div(values, std, out=std).mul_(-lr))  # std's buffer reused


def fused_supported(params: list[torch.nn.Parameter]) -> bool:
    """Whether torch's fused optimizer kernels take every one of these parameters (floating point, on a
    device type with fused kernels)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # an older torch without the list: keep foreach
        return False
    devices = _get_fused_kernels_supported_devices()
    return all(p.device.type in devices and torch.is_floating_point(p) for p in params)


def make_optimizers(
    name: str, lr: float, sparse: list[torch.nn.Parameter], dense: list[torch.nn.Parameter]
) -> list[torch.optim.Optimizer]:
    """Optimizers for the sparse (embedding) and dense parameters; fresh state."""
    opts: list[torch.optim.Optimizer] = []
    if name == "sgd":
        if sparse:
            opts.append(SparseSGD(sparse, lr=lr))
        if dense:
            opts.append(torch.optim.SGD(dense, lr=lr, foreach=True))
    elif name == "adagrad":
        kw = {"lr": lr, "eps": 1e-10, "initial_accumulator_value": 0.0, "lr_decay": 0.0, "weight_decay": 0.0}
        if sparse:
            opts.append(SparseAdagrad(sparse, lr=lr, eps=kw["eps"]))
        if dense:
            mode = {"fused": True} if fused_supported(dense) else {"foreach": True}
            opts.append(torch.optim.Adagrad(dense, **mode, **kw))
    else:
        raise ValueError(f"optimizer {name!r}: accepted: sgd, adagrad")
    return opts


def backward_and_step(loss: torch.Tensor, optimizers: Iterable[torch.optim.Optimizer],
                      scaler: torch.amp.GradScaler | None = None) -> float:
    """Backward, then one step of every optimizer; with a GradScaler (amp-fp16) the loss is scaled, a step
    with inf/NaN gradients is skipped and the scale updated. Sparse gradients come from our own lookups, so
    torch's sparse invariant checks are skipped. Returns ``time.perf_counter()`` when backward ended (the
    data-parallel step splits its compute there)."""
    with torch.sparse.check_sparse_tensor_invariants(enable=False):
        if scaler is None:
            loss.backward()
            done = time.perf_counter()
            for opt in optimizers:
                opt.step()
        else:
            scaler.scale(loss).backward()
            done = time.perf_counter()
            for opt in optimizers:
                scaler.step(opt)
            scaler.update()
    return done
