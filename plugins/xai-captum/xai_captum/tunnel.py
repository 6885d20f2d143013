"""``noise-tunnel:<method>``: SmoothGrad, SmoothGrad² or VarGrad around a gradient method.

The wrapped method explains ``nt_samples`` noisy copies ``x + N(0, std)`` of every input, with
the same target and options (a per-sample baseline goes with its sample's copies), and the
attributions ``a`` of the copies are reduced as captum's ``NoiseTunnel`` does: ``smoothgrad`` their
mean, ``smoothgrad_sq`` the mean of ``a**2``, ``vargrad`` ``mean(a**2) - mean(a)**2`` (tested equal
given the same noise). ``std`` is ``nt_stdevs`` when given (captum's one number), else
``nt_noise_level`` times each sample's per-feature std over time (as ``smoothgrad``). The noise is
drawn from a generator seeded by ``nt_seed``, one copy of the batch at a time, so it is the same
however the copies are grouped into passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xaicore.plugin import BaseExplainer, LoadedModel, Option, XaiError, declared, modality_of, pass_rows

from .explainers import normal_copies

NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")
ALONE = ("noise-tunnel wraps a gradient method; use it as noise-tunnel:<method>, for example "
         "noise-tunnel:integrated-gradients")
TUNNEL_OPTIONS = (
    Option("nt_type", str, "smoothgrad", choices=NT_TYPES,
           help="smoothgrad: mean attribution over the noisy copies; smoothgrad_sq: mean of its "
                "square; vargrad: its variance"),
    Option("nt_samples", int, 25, min=1, max=10_000, help="noisy copies explained per sample"),
    Option("nt_stdevs", float, None, min=0.0, max=1e12,
           help="noise std in the inputs' units (captum's stdevs); default: nt_noise_level "
                "times each sample's per-feature std"),
    Option("nt_noise_level", float, 0.15, min=0.0, max=10.0,
           help="noise std as a multiple of each sample's per-feature std (when nt_stdevs is not "
                "given)"),
    Option("nt_seed", int, 0, min=0, max=2**32 - 1, help="seed of the noise"),
)
OWN = frozenset(option.name for option in TUNNEL_OPTIONS)


class NoiseTunnel:
    """The registered ``noise-tunnel`` entry: ``wrap(explainer)`` returns the tunnel around it."""

    name = "noise-tunnel"
    description = ("noise-tunnel:<method> (series, images): SmoothGrad, SmoothGrad² or VarGrad "
                   "around a gradient method")
    options = TUNNEL_OPTIONS  # what xai list shows; noise-tunnel:<method> takes them and <method>'s
    defaults = {option.name: option.default for option in TUNNEL_OPTIONS}

    def check(self, model: LoadedModel) -> str | None:
        return ALONE

    def explain(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                **options: Any) -> Any:
        raise XaiError(ALONE)

    def wrap(self, inner: Any) -> TunnelExplainer:
        if not getattr(inner, "differentiates", False) or hasattr(inner, "wrap"):
            raise XaiError(f"noise-tunnel wraps a gradient method (saliency, input-x-gradient, "
                           f"integrated-gradients, deeplift, gradient-shap), not "
                           f"{getattr(inner, 'name', inner)!r}")
        if inner.name == "smoothgrad":
            raise XaiError("smoothgrad is a noise tunnel already; use noise-tunnel:saliency")
        return TunnelExplainer(inner)


class TunnelExplainer(BaseExplainer):
    """The noise tunnel around ``inner``: its own options and the wrapped method's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = f"noise-tunnel:{inner.name}"  # type: ignore[misc]
        self.description = f"Noise tunnel around {inner.name}"  # type: ignore[misc]
        clash = OWN & {option.name for option in declared(inner)}
        if clash:
            raise XaiError(f"noise-tunnel cannot wrap {inner.name}: it has options "
                           f"{', '.join(sorted(clash))} of its own")
        self.options = (*TUNNEL_OPTIONS, *declared(inner))  # type: ignore[misc]
        self.defaults = {option.name: option.default for option in self.options}  # type: ignore[misc]
        self.requires = tuple(getattr(inner, "requires", ()))  # type: ignore[misc]

    def check(self, model: LoadedModel) -> str | None:
        if modality_of(model).masks_padding:
            return ("noise on a text's token ids is no text; the tunnel adds Gaussian noise to "
                    "continuous inputs (series, images)")
        return self.inner.check(model)

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **opts: Any) -> tuple[torch.Tensor, dict]:
        inner = {k: v for k, v in opts.items() if k not in OWN}
        series = self.series_names()
        n = int(opts["nt_samples"])
        if opts["nt_stdevs"] is not None:
            std = torch.full_like(inputs[:, :1], float(opts["nt_stdevs"]))
        else:  # as smoothgrad: each sample's per-feature std over time
            std = (inputs.std(1, keepdim=True) if inputs.shape[1] > 1
                   else torch.ones_like(inputs[:, :1])) * float(opts["nt_noise_level"])
        gen = torch.Generator(device="cpu").manual_seed(int(opts["nt_seed"]))
        per_call = max(1, pass_rows(inputs.device, inputs[0].numel()) // len(inputs))
        total = torch.zeros(inputs.shape, dtype=torch.float64, device=inputs.device)
        squares = torch.zeros_like(total)
        for start in range(0, n, per_call):
            copies = min(per_call, n - start)
            noisy = inputs + normal_copies(gen, copies, inputs) * std  # [copy, sample, ...]
            given = {k: v.repeat(copies, *[1] * (v.dim() - 1))  # each sample's array, per copy
                     if k in series and isinstance(v, torch.Tensor) else v for k, v in inner.items()}
            result = self.inner.explain(model, noisy.reshape(-1, *inputs.shape[1:]),
                                        target.repeat(copies), **given)
            attr = torch.as_tensor(np.asarray(result.attributions), device=inputs.device)
            attr = attr.to(torch.float64).reshape(copies, *inputs.shape)
            total += attr.sum(0)
            squares += (attr * attr).sum(0)
        mean, mean_sq = total / n, squares / n
        smoothed = {"smoothgrad": mean, "smoothgrad_sq": mean_sq,
                    "vargrad": mean_sq - mean * mean}[opts["nt_type"]]
        return smoothed.float(), {"noise_std": std.expand(-1, 1, inputs.shape[2]).float()}
