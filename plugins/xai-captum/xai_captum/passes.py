"""Batched gradient passes over many copies of a batch (path points, noisy samples), planned to fit
the free memory.

Captum takes gradients of ``torch.unbind(outputs)``: one scalar tensor per row, which costs more
than the network itself on batches of thousands. The gradient of the summed target logits gives
the same per-row gradients (rows are independent in eval mode) at the cost of a plain pass.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from xaicore.plugin import XaiError, pass_budget, saved_bytes_per_row

AUTO_ROWS = {"cpu": 128, "cuda": 8192}  # rows per pass when the caller gives no batch size
#: on CPU, the bytes a default pass's saved tensors may take: rows larger than AUTO_ROWS allows
#: (large images through a ResNet) go in fewer rows per pass, which stay faster in cache
CPU_PASS_SAVED_BYTES = 2**29
BYTES_FACTOR = 256  # bytes per input value of a row for buffers the probe does not see


def row_bytes(row: torch.Tensor, saved: int = 0) -> int:
    """Estimated peak bytes of one row like ``row`` in a forward/backward pass: twice what its
    forward keeps for backward (``saved`` per row, ``saved_bytes_per_row``: those tensors and
    their gradients) plus ``BYTES_FACTOR`` bytes per input value."""
    return row.numel() * 4 * BYTES_FACTOR + 2 * saved


def rows_that_fit(row: torch.Tensor, device: torch.device, method: str, saved: int = 0) -> int:
    """How many rows like ``row`` one pass may hold (``pass_budget``, ``row_bytes``); an XaiError
    naming the estimate when not even one fits."""
    need, budget = row_bytes(row, saved), pass_budget(device)
    if need > budget:
        raise XaiError(f"{method}: one series of shape {tuple(row.shape)} needs about "
                       f"{need / 2**30:.1f} GiB per pass but only {budget / 2**30:.1f} GiB "
                       f"is available; shorten or downsample the series")
    return budget // need


def module_rows_that_fit(module: nn.Module, inputs: torch.Tensor, method: str) -> int:
    """``rows_that_fit`` for rows of ``inputs`` through ``module``, its saved tensors measured."""
    return rows_that_fit(inputs[0], inputs.device, method, saved_bytes_per_row(module, inputs[0]))


def plan_passes(module: nn.Module, inputs: torch.Tensor, internal_batch_size: int | None,
                method: str) -> tuple[int, int | None, list[str]]:
    """The rows that fit in one pass, the rows per pass asked (``internal_batch_size``, capped at
    that) and, when it was capped, the warning saying so (also warned)."""
    fit = module_rows_that_fit(module, inputs, method)
    if internal_batch_size is None or internal_batch_size <= fit:
        return fit, internal_batch_size, []
    message = (f"{method}: internal_batch_size {internal_batch_size:,} capped at {fit:,} rows "
               f"per pass, the most that fit in the {pass_budget(inputs.device) / 2**30:.1f} GiB "
               f"free for one pass")
    warnings.warn(message, UserWarning, stacklevel=3)
    return fit, fit, [message]


def copies_per_pass(batch: int, internal_batch_size: int | None, device: torch.device,
                    method: str, fit: int | None = None, saved: int = 0) -> int:
    """How many copies of a ``batch``-row batch go through one pass (at least one), within
    ``fit`` rows when given.

    By default a pass holds ``AUTO_ROWS`` rows for the device: on CPU small passes stay in cache
    and are fastest, and rows whose forward keeps ``saved`` bytes each for backward go at most
    ``CPU_PASS_SAVED_BYTES`` to a pass; on CUDA large passes fill the device.
    """
    rows = int(internal_batch_size or default_rows(device, saved))
    if rows < 1:
        raise XaiError(f"{method}: internal_batch_size must be positive, got {rows}")
    if fit is not None:
        rows = min(rows, fit)
    return max(1, rows // batch)


def default_rows(device: torch.device, saved: int = 0) -> int:
    """Rows per pass when the caller gives none (``copies_per_pass``)."""
    if device.type != "cpu":
        return AUTO_ROWS.get(device.type, AUTO_ROWS["cuda"])
    if saved <= 0:
        return AUTO_ROWS["cpu"]
    return max(1, min(AUTO_ROWS["cpu"], CPU_PASS_SAVED_BYTES // saved))


def sample_groups(batch: int, fit: int) -> list[slice]:
    """Consecutive sample ranges of at most ``fit`` rows covering a batch."""
    return [slice(start, start + fit) for start in range(0, batch, max(1, fit))]


def target_gradient(module: nn.Module, points: torch.Tensor,
                    target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of each row's target logit with respect to that row, and the logits, from one
    forward/backward."""
    points = points.detach().requires_grad_(True)
    logits = module(points)
    if target is None:  # the predicted class, from this very forward pass
        target = logits.detach().argmax(1)
    (grads,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), points)
    return grads, logits.detach()
