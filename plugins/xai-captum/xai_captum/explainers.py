"""Captum's gradient family as xai explainers, batch dimension first; passes hold what fits in
the free memory (``passes.py``)."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from captum.attr import DeepLift
from torch import nn

from xaicore.plugin import (
    BaseExplainer,
    LoadedModel,
    Option,
    Series,
    XaiError,
    as_background,
    modality_of,
    pass_rows,
    saved_bytes_per_row,
)

from .integrated import CLENSHAW_CURTIS, integrated_gradients, nested_integrated_gradients
from .integrated import METHODS as INTEGRATION_METHODS
from .passes import copies_per_pass, module_rows_that_fit, plan_passes, sample_groups, target_gradient

#: Layers whose internal nonlinearities captum's DeepLift rules do not reach.
DEEPLIFT_UNSUPPORTED = (nn.RNNBase, nn.MultiheadAttention, nn.TransformerEncoderLayer,
                        nn.TransformerDecoderLayer)

#: Steps tried in turn by integrated-gradients' n_steps="auto" until a sample's gap is under 1%:
#: Clenshaw-Curtis rules whose nodes nest (a sample that needs the next level reuses every gradient
#: row of the levels before it, where restarting Gauss-Legendre at 32, 64, ... steps computes them
#: all again), or for another integration_method its own rule at each count in turn.
AUTO_POINTS = (33, 65, 129, 257, 513, 1025)
AUTO_STEPS = (32, 64, 128, 256, 512, 1024)
DELTA_TOLERANCE = 0.01  # |delta| above this fraction of |F(x) - F(baseline)| triggers a warning
FLOAT_EPS = 1e-6  # float32 rounding floor, relative to |F(x)| + |F(baseline)|

#: the reference kinds of the built-in kinds of input (series: zero, mean, blurred, random; texts:
#: zero, pad, mask, unk); the kind of the model refuses one it does not have
BASELINE_KINDS = ("zero", "mean", "blurred", "random", "pad", "mask", "unk")
BASELINE_OPTIONS = (
    Option("baseline", Series, "zero", keywords=BASELINE_KINDS,
           help="reference input the path starts from: a kind (series: zero, mean, blurred, "
                "random; texts: zero, pad, mask, unk, special tokens kept; images: zero, mean, "
                "blurred), or your own array, one "
                "series [time, feature] ([time] for one feature) shared by every sample or one per "
                "sample [sample, time, feature] (a .npy file from the CLI)"),
    Option("background", object, None, help="train inputs [n, time, feature] for the mean baseline"),
    Option("blur_sigma", float, None, min=0.0, max=1e6,
           help="Gaussian blur width for the blurred baseline, in time steps or pixels "
                "(default: a tenth of the length or of the image's shorter side)"),
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


def leaf(inputs: torch.Tensor) -> torch.Tensor:
    """A copy of ``inputs`` that requires gradients (captum warns when it must set that itself)."""
    return inputs.detach().clone().requires_grad_(True)


def with_warnings(extras: dict, notes: list[str]) -> dict:
    """``extras`` with ``notes`` added to its ``warnings``."""
    if notes:
        extras["warnings"] = [*extras.get("warnings", []), *notes]
    return extras


def grouped_gradient(module: nn.Module, inputs: torch.Tensor, target: torch.Tensor | None,
                     method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``target_gradient`` of the batch: in one pass when it is no larger than the core's own
    passes (``xaicore.plugin.pass_rows``), else in groups of samples that fit in memory."""
    if len(inputs) <= pass_rows(inputs.device, inputs[0].numel()):
        return target_gradient(module, inputs, target)
    groups = sample_groups(len(inputs), module_rows_that_fit(module, inputs, method))
    parts = [target_gradient(module, inputs[g], None if target is None else target[g])
             for g in groups]
    return torch.cat([g for g, _ in parts]), torch.cat([logits for _, logits in parts])


def baselines_for(name: str, model: LoadedModel, inputs: torch.Tensor, opts: dict) -> torch.Tensor:
    """The baseline of every sample: the user's array (per sample, shaped like ``inputs`` by
    ``BaseExplainer``) or the one of the chosen kind."""
    if isinstance(opts["baseline"], torch.Tensor):
        return opts["baseline"]
    return modality_of(model).baseline(opts["baseline"], model, inputs, background=opts["background"],
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

    differentiates = True
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
        baselines = baselines_for(self.name, model, inputs, opts)
        with torch.no_grad():  # the logits of the Explanation, and F(x) for completeness
            logits = model.module(inputs)
        _, rows, notes = plan_passes(model.module, inputs, opts["internal_batch_size"], self.name)
        opts = {**opts, "internal_batch_size": rows}
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
            extras = convergence(self.name, model, attr, inputs, baselines, target, fx, fb)
            return attr, with_warnings(extras, notes), logits
        attr, steps = self.converged(model, inputs, baselines, target, fx, fb, opts)
        extras = convergence(self.name, model, attr, inputs, baselines, target, fx, fb)
        extras["n_steps"] = steps
        return attr, with_warnings(extras, notes), logits

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

    differentiates = True
    name = "saliency"
    options = (Option("abs", bool, True, help="absolute gradient"),)

    def attribute(self, model, inputs, target, **opts):
        grads, logits = grouped_gradient(model.module, inputs, target, self.name)  # captum's Saliency
        return (grads.abs() if opts["abs"] else grads), {}, logits


class InputXGradientExplainer(BaseExplainer):
    """Input times the gradient of the target logit."""

    resolves_predicted = True  # one forward+backward finds the class and its gradient

    differentiates = True
    name = "input-x-gradient"

    def attribute(self, model, inputs, target, **opts):
        grads, logits = grouped_gradient(model.module, inputs, target, self.name)
        return inputs * grads, {}, logits


class SmoothGradExplainer(BaseExplainer):
    """SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies of each input.

    The noise std is ``noise_level`` times each sample's per-feature std over time; the
    ``n_samples`` noisy copies go through batched passes (``passes.py``) of at most
    ``internal_batch_size`` rows and of what fits in memory.
    """

    differentiates = True
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
        fit, rows, notes = plan_passes(model.module, inputs, opts["internal_batch_size"], self.name)
        per_pass = copies_per_pass(len(inputs), rows, inputs.device, self.name, fit,
                                   saved_bytes_per_row(model.module, inputs[0]))
        std = inputs.std(1, keepdim=True) if inputs.shape[1] > 1 else torch.ones_like(inputs[:, :1])
        scale = float(opts["noise_level"]) * std
        gen = torch.Generator(device="cpu").manual_seed(int(opts["seed"]))
        total = torch.zeros_like(inputs, dtype=torch.float32)
        for start in range(0, n, per_pass):
            noisy = inputs + normal_copies(gen, min(per_pass, n - start), inputs) * scale
            for group in sample_groups(len(inputs), fit):
                total[group] += copies_gradient(model.module, noisy[:, group], target[group]).sum(0)
        mean = total / n
        return (mean.abs() if opts["abs"] else mean), with_warnings({}, notes)


def normal_copies(generator: torch.Generator, copies: int, like: torch.Tensor) -> torch.Tensor:
    """``[copies, *like.shape]`` standard normal draws, one call per copy: the same numbers
    however the copies are grouped into passes."""
    return torch.stack([torch.randn(like.shape, generator=generator)
                        for _ in range(copies)]).to(like.device, like.dtype)


def copies_gradient(module: nn.Module, copies: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradients of the target logits of copies ``[copy, sample, time, feature]`` of a batch,
    in one pass."""
    grads, _ = target_gradient(module, copies.reshape(-1, *copies.shape[2:]),
                               target.repeat(len(copies)))
    return grads.float().reshape(copies.shape)


@torch.no_grad()
def chunked_logits(module: nn.Module, inputs: torch.Tensor, rows: int) -> torch.Tensor:
    """Logits of ``inputs`` in passes of at most ``rows`` rows."""
    return torch.cat([module(inputs[group]).float() for group in sample_groups(len(inputs), rows)])


class DeepLiftExplainer(BaseExplainer):
    """DeepLIFT with the rescale rule (Shrikumar et al. 2017) against a baseline."""

    differentiates = True
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
        reused = reused_nonlinearities(model)
        if reused:
            return (f"captum's DeepLift keeps one input and output per nonlinear module, but this "
                    f"network calls {', '.join(reused)} more than once in a forward pass; give "
                    f"each use its own module, or use integrated-gradients or gradient-shap")
        return None

    def attribute(self, model, inputs, target, **opts):
        baselines = baselines_for(self.name, model, inputs, opts)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]etting forward, backward hooks.*")
            # inputs and baselines go through one pass together: two rows per sample
            fit = module_rows_that_fit(model.module, inputs, self.name)
            attr = torch.cat([DeepLift(model.module).attribute(
                leaf(inputs[group]), baselines=baselines[group], target=target[group])
                for group in sample_groups(len(inputs), max(1, fit // 2))])
        return attr, convergence(self.name, model, attr, inputs, baselines, target)


def reused_nonlinearities(model: LoadedModel) -> list[str]:
    """The nonlinear modules DeepLift overrides (ReLU, max-pools, ...) that one forward pass of
    a zero input calls more than once (none checked when the model's length is not fixed)."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    if not isinstance(model.seq_len, int):
        return []
    calls: dict[str, int] = {}
    hooks = [module.register_forward_hook(
        lambda *_, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
        for name, module in model.network.named_modules()
        if type(module) in SUPPORTED_NON_LINEAR]
    try:
        with torch.no_grad():
            model.module(torch.zeros(1, model.seq_len, model.n_features, device=model.device))
    except Exception:  # a network that cannot take a zero input: DeepLift's own call reports it
        return []
    finally:
        for hook in hooks:
            hook.remove()
    return [name for name, count in calls.items() if count > 1]


class GradientShapExplainer(BaseExplainer):
    """GradientSHAP (expected gradients): baselines drawn from the train split (``background``),
    or the user's own (``baseline``, an array).

    For each of ``n_samples`` draws per sample: a baseline ``b`` from the background (or the
    user's baseline of that sample), ``a`` uniform in [0, 1] and Gaussian noise of std ``stdevs``
    on the input ``x``; the attribution is the mean of ``(x - b) * grad F(b + a (x - b))``
    (captum's GradientShap), in batched passes.
    """

    differentiates = True
    name = "gradient-shap"
    options = (
        Option("background", object, None, help="train inputs [n, time, feature] to draw baselines from"),
        Option("baseline", Series, "background", keywords=("background",),
               help="background: draw each baseline from the background; or your own array, one "
                    "series [time, feature] ([time] for one feature) shared by every sample or one "
                    "per sample [sample, time, feature] (a .npy file from the CLI), every draw "
                    "starting from it"),
        Option("background_size", int, 100, min=1, max=100_000, help="baselines drawn from background"),
        Option("n_samples", int, 25, min=1, max=10_000, help="random baselines per sample"),
        Option("stdevs", float, 0.0, min=0.0, max=10.0, help="Gaussian noise added to each input"),
        SEED, BATCH)
    requires = ("background",)

    def check(self, model: LoadedModel) -> str | None:
        if modality_of(model).masks_padding:
            return ("it draws its baselines from other samples of the train split, and other "
                    "texts (of other lengths, other words) are no reference for a text; use "
                    "integrated-gradients with baseline pad or mask")
        return None

    def attribute(self, model, inputs, target, **opts):
        own = opts["baseline"] if isinstance(opts["baseline"], torch.Tensor) else None
        gen = torch.Generator(device="cpu").manual_seed(int(opts["seed"]))
        size, n = int(opts["background_size"]), int(opts["n_samples"])
        if size < 1 or n < 1:
            raise XaiError(f"{self.name}: background_size and n_samples must be at least 1")
        if own is None:
            bg = as_background(opts["background"], inputs, self.name)
            if len(bg) > size:
                bg = bg[torch.randperm(len(bg), generator=gen)[:size].to(bg.device)]
        fit, rows, notes = plan_passes(model.module, inputs, opts["internal_batch_size"], self.name)
        per_pass = copies_per_pass(len(inputs), rows, inputs.device, self.name, fit,
                                   saved_bytes_per_row(model.module, inputs[0]))
        total = torch.zeros_like(inputs, dtype=torch.float32)
        for start in range(0, n, per_pass):
            copies = min(per_pass, n - start)
            if own is None:
                base, alpha, noise = baseline_draws(gen, copies, inputs, bg)
            else:
                alpha, noise = path_draws(gen, copies, inputs)
                base = own.expand(copies, *own.shape)
            noisy = inputs + float(opts["stdevs"]) * noise
            for group in sample_groups(len(inputs), fit):
                diff = noisy[:, group] - base[:, group]
                points = base[:, group] + alpha[:, group, None, None] * diff
                total[group] += (diff * copies_gradient(model.module, points,
                                                        target[group])).sum(0)
        attr = total / n
        # Expected value per sample: the mean target logit over the background, or the target
        # logit of the user's baseline.
        expected = (chunked_logits(model.module, bg, fit)[:, target].mean(0) if own is None
                    else target_logits(model, own, target))
        fx = target_logits(model, inputs, target)
        delta = attr.sum(dim=(1, 2)) - (fx - expected)
        return attr, with_warnings({"expected_value": expected, "convergence_delta": delta}, notes)


def baseline_draws(generator: torch.Generator, copies: int, inputs: torch.Tensor,
                   background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per copy of the batch: a background sample per sample, a point in [0, 1] along the path and
    standard normal input noise, ``[copy, sample, ...]``; drawn one copy at a time, so the same
    however the copies are grouped into passes."""
    batch = len(inputs)
    draws = [(torch.randint(len(background), (batch,), generator=generator),
              torch.rand(batch, generator=generator),
              torch.randn(inputs.shape, generator=generator)) for _ in range(copies)]
    index, alpha, noise = (torch.stack(parts) for parts in zip(*draws))
    device = inputs.device
    return (background[index.to(background.device)], alpha.to(device, inputs.dtype),
            noise.to(device, inputs.dtype))


def path_draws(generator: torch.Generator, copies: int,
               inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per copy of the batch: a point in [0, 1] along the path per sample and standard normal
    input noise, ``[copy, sample, ...]``, drawn one copy at a time (a user's baseline: nothing
    to draw it from)."""
    batch = len(inputs)
    draws = [(torch.rand(batch, generator=generator), torch.randn(inputs.shape, generator=generator))
             for _ in range(copies)]
    alpha, noise = (torch.stack(parts) for parts in zip(*draws))
    return alpha.to(inputs.device, inputs.dtype), noise.to(inputs.device, inputs.dtype)
