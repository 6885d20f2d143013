"""``extremal-mask`` and ``dynamask``: masks over a series' cells learned by gradient descent.

Both learn, for every sample of a batch, its own mask ``M`` in ``[0, 1]^{time x feature}`` (the
parameters start at 0.5 and are clamped to ``[0, 1]`` where they are used); the whole batch is one
optimisation (Adam, ``epochs`` steps of ``lr``). The prediction kept is the probability ``p`` of the
target class: ``mse(p(x'), p(x))`` over the batch, where ``x'`` is the perturbed input. The result is
the mask, unsigned: a high value is a cell the prediction needs.

- ``extremal-mask`` (Enguehard, ICML 2023; tint's ``ExtremalMaskNet``): ``x' = M * x + (1 - M) *
  NN(x)``, with ``NN`` a bidirectional GRU (hidden size = features) and a linear layer from its
  two directions back to the features, trained with the masks; loss ``mse + mean(lambda_1 * |M| +
  lambda_2 * |NN(x)|)``. ``NN`` works in the model's normalised units when the model has a
  normalisation (a train mean and std), so ``|NN(x)|`` pulls the perturbation towards the train mean
  as tint's pulls it towards 0 on its standardised data. ``seed`` draws ``NN``'s first weights.
- ``dynamask`` (Crabbé & van der Schaar, ICML 2021; tint's ``MaskNet``): ``x'`` fades each cell
  towards its feature's mean over time (``fade_moving_average``) or blurs it with a Gaussian over
  time whose width is ``sigma_max * (1 - M)`` (``gaussian_blur``); loss ``mse + size_reg * mean((r -
  sort(M))^2) + time_reg * mean(|M[t + 1] - M[t]|)``, where ``r`` is 0 for the ``1 - keep``
  smallest cells and 1 for the others (the area constraint) and ``size_reg`` grows from
  ``size_reg_init`` by ``size_reg_dilation`` over the epochs. One mask per sample is trained for
  every value of ``keep_percent``; each sample keeps the smallest area whose mask changes the
  target's probability by at most ``tolerance`` (the paper's extremal mask), else the area that
  changes it least. Defaults after tint's HMM experiment (``size_reg_init`` 0.1, ``time_reg`` 1).
  Nothing is drawn at random (no seed): the same batch gives the same masks.

Where this departs from tint: both keep the target class's probability (tint's ExtremalMask keeps
the target's output of the function it is given, probabilities in its experiments; its DynaMask
every class's output, which the paper compares by cross entropy), so ``--target`` changes the
mask; DynaMask's area is chosen per sample (tint chooses one for the whole batch, of the lowest
summed loss); its time term averages every step-to-step difference (tint's leaves out the last);
Gaussian weights beyond ``BLUR_RADIUS`` times ``sigma_max`` (below ``exp(-18)`` of the centre's)
are left out; the defaults train 100 epochs at a learning rate of 0.05 (tint's experiments: 500
at 0.01 for ExtremalMask, 1000 at 0.001 for DynaMask), to keep a batch's cost to seconds; only
the preservation game is built (not tint's deletion modes). As in tint, the perturbation network
of ``extremal-mask`` is one for the batch, so a sample's mask depends a little on the samples
explained with it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from xaicore.plugin import BaseExplainer, LoadedModel, Option, modality_of

PERTURBATIONS = ("fade_moving_average", "gaussian_blur")
BLUR_RADIUS = 6  # Gaussian weights kept within this many sigma_max of a cell
EPS = 1e-7  # tint's: the smallest blur width (a kept cell) and the weights' normaliser
PROGRESS_BLOCKS = 10  # progress updates per optimisation
SERIES_ONLY = ("it learns a mask over a series' time steps and features; texts (token ids) and "
               "images (no time axis) are not supported")


def epochs_option(default: int) -> Option:
    return Option("epochs", int, default, "optimisation steps over the batch (all its samples "
                  "together, each with its own mask)", min=1, max=100_000)


def lr_option(default: float) -> Option:
    return Option("lr", float, default, "Adam's learning rate", min=1e-9, max=100.0)


PROGRESS = Option("progress", bool, True, "show a progress bar of the epochs on stderr")


class LearnedMask(BaseExplainer):
    """The half both methods share: series only, the target's probability, the training loop."""

    evaluation_samples: ClassVar[int | None] = 48  # epochs forward/backward passes per batch

    def check(self, model: LoadedModel) -> str | None:
        kind = modality_of(model)
        if kind.masks_padding or getattr(kind, "spatial_dims", 1) != 1:
            return SERIES_ONLY
        return None

    def train(self, parameters: list[torch.Tensor], loss_of: Callable[[float], torch.Tensor],
              opts: dict, size: int, step: Callable[[], None] = lambda: None) -> float:
        """``opts["epochs"]`` Adam steps of ``loss_of(epoch fraction)`` over ``parameters`` (the
        model's own weights get no gradient), ``step`` after each; the last loss."""
        optimiser = torch.optim.Adam(parameters, lr=float(opts["lr"]))
        epochs = int(opts["epochs"])
        block = max(1, math.ceil(epochs / PROGRESS_BLOCKS))
        bar = progress_bar(self.name, epochs, size, opts["progress"])
        loss = torch.zeros(())
        try:
            for epoch in range(epochs):
                loss = loss_of(epoch / epochs)
                grads = torch.autograd.grad(loss, parameters)
                for parameter, grad in zip(parameters, grads):
                    parameter.grad = grad
                optimiser.step()
                step()
                if (epoch + 1) % block == 0 or epoch + 1 == epochs:
                    bar.set_postfix(loss=f"{float(loss.detach()):.4g}", refresh=False)
                    bar.update(epoch + 1 - bar.n)
        finally:
            bar.close()
        return float(loss.detach())


def progress_bar(method: str, epochs: int, size: int, show: bool) -> Any:
    """A tqdm bar of the epochs on stderr (updated once per block of epochs), hidden unless
    ``show``."""
    from tqdm.auto import tqdm

    return tqdm(total=epochs, desc=f"{method} ({size} series)", unit="epoch", leave=False,
                file=sys.stderr, disable=not show, dynamic_ncols=True, mininterval=0.5)


def target_probability(model: LoadedModel, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The probability of each row's target class."""
    return torch.softmax(model.module(x), 1).gather(1, target[:, None])[:, 0]


class Perturbation(nn.Module):
    """ExtremalMask's perturbation network: a bidirectional GRU (hidden size = features) and a
    linear layer from its two directions back to the features, as in tint's experiments."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(n_features, n_features, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * n_features, n_features)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(z)[0])


class ExtremalMask(LearnedMask):
    """A mask and a perturbation network learned together: ``x' = M x + (1 - M) NN(x)``."""

    name = "extremal-mask"
    description = "Series only: a mask learned with a perturbation network (ExtremalMask)"
    options = (
        epochs_option(100),
        lr_option(0.05),
        Option("lambda_1", float, 1.0, "weight of the mask's mean |M| (smaller masks)", min=0.0,
               max=1e6),
        Option("lambda_2", float, 1.0, "weight of the perturbation's mean |NN(x)| (in the model's "
               "normalised units: perturbations near the train mean)", min=0.0, max=1e6),
        Option("seed", int, 0, "seed of the perturbation network's first weights", min=0,
               max=2**32 - 1),
        PROGRESS,
    )

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **opts: Any) -> tuple[torch.Tensor, dict, torch.Tensor]:
        with torch.no_grad():
            logits = model.module(inputs)
            kept = torch.softmax(logits, 1).gather(1, target[:, None])[:, 0]
        norm = model.normalisation
        z = inputs if norm is None else norm(inputs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(opts["seed"]))
            network = Perturbation(inputs.shape[2])
        network = network.to(inputs.device)
        mask = torch.full_like(inputs, 0.5, requires_grad=True)
        lambda_1, lambda_2 = float(opts["lambda_1"]), float(opts["lambda_2"])

        def loss_of(progress: float) -> torch.Tensor:
            m = mask.clamp(0, 1)
            perturbation = network(z)
            fill = perturbation if norm is None else perturbation * norm.std + norm.mean
            x = m * inputs + (1 - m) * fill
            preserved = (target_probability(model, x, target) - kept).square().mean()
            return preserved + (lambda_1 * mask.abs() + lambda_2 * perturbation.abs()).mean()

        loss = self.train([mask, *network.parameters()], loss_of, opts, len(inputs))
        return mask.detach().clamp(0, 1), {"loss": loss}, logits


class DynaMask(LearnedMask):
    """Masks of fixed areas learned against a fade or a blur over time (Dynamask)."""

    name = "dynamask"
    description = "Series only: masks of set areas learned against a fade or a blur (DynaMask)"
    options = (
        epochs_option(100),
        lr_option(0.05),
        Option("keep_percent", list, [10, 30, 50], "the mask's area, in percent of the cells; one "
               "mask per value, each sample keeps the smallest within tolerance", min=1, max=99),
        Option("tolerance", float, 0.05, "the change of the target's probability a sample's mask "
               "may leave: the smallest area within it is kept (none within: the area that "
               "changes it least)", min=0.0, max=1.0),
        Option("perturbation", str, "fade_moving_average", choices=PERTURBATIONS,
               help="what a cell outside the mask becomes: its feature's mean over time "
                    "(fade_moving_average) or a Gaussian blur over time of width sigma_max * "
                    "(1 - M)"),
        Option("sigma_max", float, 1.0, "gaussian_blur: the blur's largest width, in time steps",
               min=1e-3, max=1e4),
        Option("size_reg_init", float, 0.1, "first weight of the area constraint", min=0.0,
               max=1e6),
        Option("size_reg_dilation", float, 100.0, "how many times the area constraint's weight "
               "grows over the epochs", min=1.0, max=1e9),
        Option("time_reg", float, 1.0, "weight of the mean step-to-step change of the mask "
               "(smoother masks over time)", min=0.0, max=1e6),
        PROGRESS,
    )

    def attribute(self, model: LoadedModel, inputs: torch.Tensor, target: torch.Tensor,
                  **opts: Any) -> tuple[torch.Tensor, dict, torch.Tensor]:
        with torch.no_grad():
            logits = model.module(inputs)
            kept = torch.softmax(logits, 1).gather(1, target[:, None])[:, 0]
        ratios = [p / 100 for p in sorted(set(opts["keep_percent"]))]
        k, (n, steps, features) = len(ratios), inputs.shape
        cells = steps * features
        reference = torch.zeros(k, n, cells, device=inputs.device)
        for i, ratio in enumerate(ratios):
            reference[i, :, int((1 - ratio) * cells):] = 1.0
        mask = torch.full((k, n, steps, features), 0.5, device=inputs.device, requires_grad=True)
        x, targets = inputs.repeat(k, 1, 1), target.repeat(k)
        kept_all = kept.repeat(k)
        perturb = fade if opts["perturbation"] == "fade_moving_average" else blur
        size_init, dilation = float(opts["size_reg_init"]), float(opts["size_reg_dilation"])
        time_reg, sigma_max = float(opts["time_reg"]), float(opts["sigma_max"])

        def loss_of(progress: float) -> torch.Tensor:
            m = mask.reshape(k * n, steps, features)
            error = (target_probability(model, perturb(x, m, sigma_max), targets) - kept_all).square()
            size = (reference - mask.reshape(k, n, cells).sort(-1).values).square().mean()
            loss = error.mean() + size_init * dilation ** progress * size
            if time_reg > 0 and steps > 1:
                loss = loss + time_reg * (mask[:, :, 1:] - mask[:, :, :-1]).abs().mean()
            return loss

        def clamp() -> None:
            with torch.no_grad():
                mask.clamp_(0, 1)

        loss = self.train([mask], loss_of, opts, n, step=clamp)
        with torch.no_grad():
            m = mask.reshape(k * n, steps, features)
            change = (target_probability(model, perturb(x, m, sigma_max), targets)
                      - kept_all).abs().reshape(k, n)
        best = smallest_within(change, float(opts["tolerance"]))
        chosen = mask.detach()[best, torch.arange(n, device=inputs.device)]
        keep = torch.tensor(ratios, device=inputs.device)[best]
        return chosen, {"keep_ratio": keep, "loss": loss}, logits


def smallest_within(change: torch.Tensor, tolerance: float) -> torch.Tensor:
    """For every sample (``change [area, sample]``, areas ascending), the smallest area whose
    change is at most ``tolerance``, else the area of the smallest change."""
    within = change <= tolerance
    first = within.to(torch.int8).argmax(0)  # the first area within tolerance
    return torch.where(within.any(0), first, change.argmin(0))


def fade(x: torch.Tensor, m: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """Each cell faded towards its feature's mean over time by ``1 - m``."""
    return m * x + (1 - m) * x.mean(1, keepdim=True)


def blur(x: torch.Tensor, m: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """Each cell replaced by a Gaussian average over time of width ``sigma_max * (1 + EPS - m)``
    (tint's ``gaussian_blur``), weights within ``BLUR_RADIUS`` widths."""
    steps = x.shape[1]
    radius = min(steps - 1, math.ceil(BLUR_RADIUS * sigma_max))
    offsets = torch.arange(-radius, radius + 1, device=x.device)
    source = torch.arange(steps, device=x.device)[:, None] + offsets  # [time, taps]
    inside = (source >= 0) & (source < steps)
    values = x[:, source.clamp(0, steps - 1)]  # [n, time, taps, feature]
    sigma = (sigma_max * ((1 + EPS) - m))[:, :, None]  # [n, time, 1, feature]
    weights = torch.exp(-offsets.to(x.dtype)[:, None].square() / (2 * sigma.square()))
    weights = weights * inside[None, :, :, None]
    weights = weights / (weights.sum(2, keepdim=True) + EPS)
    return (weights * values).sum(2)
