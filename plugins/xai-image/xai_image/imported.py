"""Users' own image networks (``xai import``): their input layout, their logits and the Conv2d
Grad-CAM reads when they name none."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xaicore.plugin import LoadedModel, XaiError

from .modules import ImageModule

LAYOUTS = {"NCHW": "[batch, channel, height, width] (torch's)",
           "NHWC": "[batch, height, width, channel] (channels last)"}


class ImportedNetwork(nn.Module):
    """The user's network called on ``[batch, channel, H, W]`` (NCHW) or ``[batch, H, W, channel]``
    (NHWC); ``output`` picks the logits when it returns a tuple (logits, features, ...)."""

    def __init__(self, net: nn.Module, layout: str, output: int | None) -> None:
        super().__init__()
        self.net, self.layout, self.output = net, layout, output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.permute(0, 2, 3, 1) if self.layout == "NHWC" else x)
        if self.output is not None:
            if not isinstance(out, (tuple, list)):
                raise XaiError(f"output {self.output} picks from a tuple, but the network returns "
                               f"a {type(out).__name__}")
            return out[self.output]
        if isinstance(out, (tuple, list)):
            raise XaiError(f"the network returns a {type(out).__name__} of {len(out)}; name the "
                           f"logits' position with --output (e.g. --output 0)")
        return out


def last_map_layer(network: nn.Module, module: nn.Module, height: int, width: int,
                   channels: int) -> str | None:
    """The Conv2d the network runs last among those whose map is larger than 1x1 (found by one
    forward pass of a black image), or None (no such layer, or a forward that fails: the import's
    own check names why)."""
    names = {m: n for n, m in network.named_modules() if isinstance(m, nn.Conv2d)}
    maps: list[tuple[str, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda m, _i, out: maps.append((names[m], tuple(out.shape))))
             for m in names]
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, height * width, channels))
    except Exception:  # noqa: BLE001 - the user's forward; check_forward reports it
        return None
    finally:
        for hook in hooks:
            hook.remove()
    larger = [name for name, shape in maps if len(shape) == 4 and shape[2] * shape[3] > 1]
    return larger[-1] if larger else None


def adopt(network: nn.Module, facts: dict, *, layout: str, output: int | None,
          gradcam_layer: str | None, **info: Any) -> LoadedModel:
    """The user's network as an image model for images of ``facts["height"] x facts["width"]``
    (the dataset's info, or the checkpoint's entries), reading the pixels as the data hold them
    (no standardisation: the network's own, if any)."""
    from .modality import image_model

    height, width = facts.get("height"), facts.get("width")
    if not isinstance(height, int) or not isinstance(width, int):
        raise XaiError("an imported image model needs images of one height and width, but the "
                       "data declare none; give --data images (a registered image dataset or an "
                       "image file)")
    if layout not in LAYOUTS:
        raise XaiError(f"--layout for images must be one of "
                       f"{', '.join(f'{k} {v}' for k, v in LAYOUTS.items())}; not {layout!r}")
    forward = ImportedNetwork(network, layout, output)
    channels = len(info["feature_names"])
    if gradcam_layer is None:
        gradcam_layer = last_map_layer(network, ImageModule(nn.Identity(), forward, height, width),
                                       height, width, channels)
    return image_model(network, height, width, forward=forward, gradcam_layer=gradcam_layer,
                       reading=facts.get("reading"), **info)
