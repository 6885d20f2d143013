"""The ``background`` option of the methods that need training data: train inputs like the inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xaicore.errors import XaiError


def as_background(background: Any, inputs: torch.Tensor, method: str) -> torch.Tensor:
    """The ``background`` option (raw train inputs ``[n, time, feature]``) as a tensor."""
    if background is None:
        raise XaiError(f"{method} needs training data: pass background= (raw train inputs "
                       f"[sample, time, feature]); the CLI passes the run's train split")
    if isinstance(background, torch.Tensor):
        bg = background.detach().float()
    else:
        bg = torch.as_tensor(np.asarray(background, dtype=np.float32))
    if bg.ndim == 2 and inputs.shape[2] == 1:
        bg = bg[:, :, None]
    if bg.ndim != 3 or bg.shape[1:] != inputs.shape[1:] or len(bg) == 0:
        raise XaiError(f"{method}: background must be [sample, time, feature] with "
                       f"(time, feature) = {tuple(inputs.shape[1:])}; got shape {tuple(bg.shape)}")
    if not torch.isfinite(bg).all():
        raise XaiError(f"{method}: background holds NaN or infinite values")
    return bg.to(inputs.device)
