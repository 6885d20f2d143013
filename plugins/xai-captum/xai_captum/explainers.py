"""Captum's gradient family as xai explainers: one captum call per batch, batch dimension first."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import numpy as np
import torch
from captum.attr import DeepLift, GradientShap
from torch import nn

from xaicore.plugin import BaseExplainer, LoadedModel, Option, XaiError

from .baselines import as_background, make_baseline
from .baselines import KINDS as BASELINE_KINDS
from .integrated import CLENSHAW_CURTIS
from .integrated import METHODS as INTEGRATION_METHODS
from .integrated import integrated_gradients, nested_integrated_gradients
from .passes import copies_per_pass, target_gradient

#: Layers whose internal nonlinearities captum's DeepLift rules do not reach.
DEEPLIFT_UNSUPPORTED = (nn.RNNBase, nn.MultiheadAttention, nn.TransformerEncoderLayer,
                        nn.TransformerDecoderLayer)

#: Steps tried in turn by integrated-gradients' n_steps="auto" until a sample's gap is under 1%:
#: Clenshaw-Curtis rules whose nodes nest (the demo run: 15.5k gradient rows for 150 samples where
#: Gauss-Legendre restarted at 32, 64, ... steps took 28k, with the same share converging at
#: each level), or for another integration_method its own rule at each count in turn.
AUTO_POINTS = (33, 65, 129, 257, 513, 1025)
AUTO_STEPS = (32, 64, 128, 256, 512, 1024)
DELTA_TOLERANCE = 0.01  # |delta| above this fraction of |F(x) - F(baseline)| triggers a warning
FLOAT_EPS = 1e-6  # float32 rounding floor, relative to |F(x)| + |F(baseline)|

BASELINE_OPTIONS = (
    Option("baseline", str, "zero", choices=BASELINE_KINDS, help="reference input the path starts from"),
    Option("background", object, None, help="train inputs [n, time, feature] for the mean baseline"),
    Option("blur_sigma", float, None, min=0.0, max=1e6,
           help="Gaussian blur width in time steps for the blurred baseline (default: length/10)"),
    Option("seed", int, 0, min=0, max=2**32 - 1, help="seed of the random baseline"),
)
SEED = Option("seed", int, 0, min=0, max=2**32 - 1, help="seed of the random draws")
BATCH = Option("internal_batch_size", int, None, min=1, max=10_000_000,
               help="rows per forward/backward pass (default: chosen by device)")


@torch.no_grad()
def target_logits(model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target class logit of every sample, without gradients."""
    return model.module(inputs).gather(1, target[:, None])[:, 0].float()


def complete(delta: torch.Tensor, fx: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """Per sample: is the completeness gap within 1% of ``|F(x) - F(baseline)|`` (plus float32
    rounding)?"""
    rounding = FLOAT_EPS * (fx.abs() + fb.abs() + 1.0)
    return delta.abs() <= DELTA_TOLERANCE * (fx - fb).abs() + rounding


def convergence(name: str, model: LoadedModel, attributions: torch.Tensor, inputs: torch.Tensor,
                baselines: torch.Tensor, target: torch.Tensor,
                fx: torch.Tensor | None = None, fb: torch.Tensor | None = None) -> dict:
    """Completeness check: delta = sum(attr) - (F(x) - F(baseline)), warned about above 1%
    (``fx``, ``fb``: the target logits when already computed)."""
    fx = target_logits(model, inputs, target) if fx is None else fx
    fb = target_logits(model, baselines, target) if fb is None else fb
    difference = fx - fb
    delta = attributions.detach().float().sum(dim=(1, 2)) - difference
    extras: dict[str, Any] = {"convergence_delta": delta, "output_difference": difference}
    bad = ~complete(delta, fx, fb)
    if bad.any():
        worst = int((delta.abs() / difference.abs().clamp_min(1e-12)).argmax())
        message = (f"{name}: convergence delta exceeds {DELTA_TOLERANCE:.0%} of "
                   f"|F(x) - F(baseline)| for {int(bad.sum())} of {len(bad)} samples (worst: "
                   f"sample {worst}, delta {float(delta[worst]):.4g} vs difference "
                   f"{float(difference[worst]):.4g}); attributions do not sum to the output change")
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        extras["warnings"] = [message]
    return extras


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's and numpy's global generators (captum draws from both), then restore them."""
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def leaf(inputs: torch.Tensor) -> torch.Tensor:
    """A copy of ``inputs`` that requires gradients (captum warns when it must set that itself)."""
    return inputs.detach().clone().requires_grad_(True)


def baselines_for(name: str, inputs: torch.Tensor, opts: dict) -> torch.Tensor:
    return make_baseline(opts["baseline"], inputs, background=opts["background"],
                         blur_sigma=opts["blur_sigma"], seed=opts["seed"], method=name)


class IntegratedGradientsExplainer(BaseExplainer):
    """Integrated Gradients (Sundararajan et al. 2017) with the convergence delta per sample.

    The path is computed in batched passes (``integrated.py``) with captum's integration rules
    or Clenshaw-Curtis (the default). With ``n_steps="auto"`` (the default) each sample's rule is
    raised until its completeness gap is under 1% of ``|F(x) - F(baseline)|``: Clenshaw-Curtis
    from 33 to at most 1025 points, each level reusing the previous one's nodes (another rule:
    32 to 1024 steps, each computed afresh). The steps each sample took are in the extra
    ``n_steps``, and samples still above 1% are warned about.
    """

    name = "integrated-gradients"
    options = (
        Option("n_steps", int, "auto", min=1, max=10_000, keywords=("auto",),
               help="integration steps along the path, or auto: raised per sample until the "
                    "completeness gap is under 1% (Clenshaw-Curtis 33, 65, ... 1025 points, "
                    "nested; another rule 32 ... 1024 steps)"),
        Option("integration_method", str, CLENSHAW_CURTIS, choices=INTEGRATION_METHODS,
               help="integration rule: clenshaw_curtis (nested, both ends of the path) or one "
                    "of captum's"),
        BATCH, *BASELINE_OPTIONS)
    requires = ("background",)
    resolves_predicted = True  # its one forward without gradients gives the class and F(x)

    def attribute(self, model, inputs, target, **opts):
        baselines = baselines_for(self.name, inputs, opts)
        with torch.no_grad():  # the logits of the Explanation, and F(x) for completeness
            logits = model.module(inputs)
        target = logits.argmax(1) if target is None else target
        fx = logits.gather(1, target[:, None])[:, 0].float()
        if baselines.shape[0] == inputs.shape[0]:
            fb = target_logits(model, baselines, target)
        else:  # one baseline shared by every sample: one forward row
            with torch.no_grad():
                fb = model.module(baselines)[0, target].float()
        if opts["n_steps"] != "auto":
            attr = integrated_gradients(model.module, inputs, baselines, target,
                                        int(opts["n_steps"]), opts["integration_method"],
                                        opts["internal_batch_size"])
            return attr, convergence(self.name, model, attr, inputs, baselines, target, fx,
                                     fb), logits
        attr, steps = self.converged(model, inputs, baselines, target, fx, fb, opts)
        extras = convergence(self.name, model, attr, inputs, baselines, target, fx, fb)
        extras["n_steps"] = steps
        return attr, extras, logits

    def converged(self, model, inputs, baselines, target, fx, fb,
                  opts) -> tuple[torch.Tensor, torch.Tensor]:
        """Attributions with each sample's rule raised until its gap is under 1%, and the steps
        each sample took."""
        if opts["integration_method"] == CLENSHAW_CURTIS:
            def converged(rows: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
                delta = attr.sum(dim=(1, 2)) - (fx[rows] - fb[rows])
                return complete(delta, fx[rows], fb[rows])

            return nested_integrated_gradients(model.module, inputs, baselines, target,
                                               AUTO_POINTS, converged, opts["internal_batch_size"])
        per_sample = baselines.shape[0] == inputs.shape[0]
        attr = torch.zeros_like(inputs, dtype=torch.float32)
        steps = torch.zeros(len(inputs), dtype=torch.int64)
        pending = torch.arange(len(inputs), device=inputs.device)
        for n_steps in AUTO_STEPS:
            part = integrated_gradients(
                model.module, inputs[pending], baselines[pending] if per_sample else baselines,
                target[pending], n_steps, opts["integration_method"], opts["internal_batch_size"])
            attr[pending] = part.float()
            steps[pending.cpu()] = n_steps
            delta = part.float().sum(dim=(1, 2)) - (fx[pending] - fb[pending])
            pending = pending[~complete(delta, fx[pending], fb[pending])]
            if not len(pending):
                break
        return attr, steps


class SaliencyExplainer(BaseExplainer):
    """Gradient of the target logit with respect to each input value (absolute by default)."""

    resolves_predicted = True  # one forward+backward finds the class and its gradient

    name = "saliency"
    options = (Option("abs", bool, True, help="absolute gradient"),)

    def attribute(self, model, inputs, target, **opts):
        grads, logits = target_gradient(model.module, inputs, target)  # what captum's Saliency does
        return (grads.abs() if opts["abs"] else grads), {}, logits


class InputXGradientExplainer(BaseExplainer):
    """Input times the gradient of the target logit."""

    resolves_predicted = True  # one forward+backward finds the class and its gradient

    name = "input-x-gradient"

    def attribute(self, model, inputs, target, **opts):
        grads, logits = target_gradient(model.module, inputs, target)
        return inputs * grads, {}, logits


class SmoothGradExplainer(BaseExplainer):
    """SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies of each input.

    The noise std is ``noise_level`` times each sample's per-feature std over time; the
    ``n_samples`` noisy copies go through batched passes (``passes.py``) of at most
    ``internal_batch_size`` rows.
    """

    name = "smoothgrad"
    options = (
        Option("noise_level", float, 0.15, min=0.0, max=10.0,
               help="noise std as a multiple of each sample's per-feature std"),
        Option("n_samples", int, 25, min=1, max=10_000, help="noisy copies averaged per sample"),
        Option("abs", bool, True, help="absolute gradients"),
        SEED, BATCH)

    def attribute(self, model, inputs, target, **opts):
        n = int(opts["n_samples"])
        if n < 1 or float(opts["noise_level"]) < 0:
            raise XaiError(f"{self.name}: n_samples must be >= 1 and noise_level >= 0; got "
                           f"{opts['n_samples']} and {opts['noise_level']}")
        gen = torch.Generator(device="cpu").manual_seed(int(opts["seed"]))
        noise = torch.randn((n, *inputs.shape), generator=gen).to(inputs.device, inputs.dtype)
        std = inputs.std(1, keepdim=True) if inputs.shape[1] > 1 else torch.ones_like(inputs[:, :1])
        noisy = inputs + noise * float(opts["noise_level"]) * std
        per_pass = copies_per_pass(len(inputs), opts["internal_batch_size"], inputs.device,
                                   self.name)
        total = torch.zeros_like(inputs, dtype=torch.float32)
        for start in range(0, n, per_pass):
            chunk = noisy[start:start + per_pass]
            grads, _ = target_gradient(model.module, chunk.reshape(-1, *inputs.shape[1:]),
                                       target.repeat(len(chunk)))
            total += grads.float().reshape(chunk.shape).sum(0)
        mean = total / n
        return (mean.abs() if opts["abs"] else mean), {}


class DeepLiftExplainer(BaseExplainer):
    """DeepLIFT with the rescale rule (Shrikumar et al. 2017) against a baseline."""

    name = "deeplift"
    options = BASELINE_OPTIONS
    requires = ("background",)

    def check(self, model: LoadedModel) -> str | None:
        layers = [f"{n} ({type(m).__name__})" for n, m in model.network.named_modules()
                  if isinstance(m, DEEPLIFT_UNSUPPORTED)]
        if not layers and model.has_attention():
            layers = ["attention (softmax over query-key products)"]
        if layers:
            return (f"captum's DeepLift has no rescale rule for the gates of recurrent or "
                    f"attention layers, so its attributions would silently break completeness; "
                    f"this model has {', '.join(layers)}. Use integrated-gradients or "
                    f"gradient-shap instead")
        return None

    def attribute(self, model, inputs, target, **opts):
        baselines = baselines_for(self.name, inputs, opts)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]etting forward, backward hooks.*")
            attr = DeepLift(model.module).attribute(leaf(inputs), baselines=baselines,
                                                    target=target)
        return attr, convergence(self.name, model, attr, inputs, baselines, target)


class GradientShapExplainer(BaseExplainer):
    """GradientSHAP (expected gradients): baselines drawn from the train split (``background``)."""

    name = "gradient-shap"
    options = (
        Option("background", object, None, help="train inputs [n, time, feature] to draw baselines from"),
        Option("background_size", int, 100, min=1, max=100_000, help="baselines drawn from background"),
        Option("n_samples", int, 25, min=1, max=10_000, help="random baselines per sample"),
        Option("stdevs", float, 0.0, min=0.0, max=10.0, help="Gaussian noise added to each input"),
        SEED)
    requires = ("background",)

    def attribute(self, model, inputs, target, **opts):
        bg = as_background(opts["background"], inputs, self.name)
        gen = torch.Generator(device="cpu").manual_seed(int(opts["seed"]))
        size = int(opts["background_size"])
        if size < 1 or int(opts["n_samples"]) < 1:
            raise XaiError(f"{self.name}: background_size and n_samples must be at least 1")
        if len(bg) > size:
            bg = bg[torch.randperm(len(bg), generator=gen)[:size].to(bg.device)]
        with seeded(int(opts["seed"]), inputs.device):
            attr = GradientShap(model.module).attribute(
                inputs, baselines=bg, target=target, n_samples=int(opts["n_samples"]),
                stdevs=float(opts["stdevs"]))
        # Expected value per sample: the mean target logit over the background.
        with torch.no_grad():
            expected = model.module(bg).float()[:, target].mean(0)
        fx = target_logits(model, inputs, target)
        delta = attr.detach().float().sum(dim=(1, 2)) - (fx - expected)
        return attr, {"expected_value": expected, "convergence_delta": delta}
