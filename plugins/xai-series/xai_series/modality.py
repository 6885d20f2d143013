"""Time series ``[sample, time, feature]``: the default kind of input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from xaicore.plugin import Dataset, LoadedModel, XaiError, as_series, build_network, pad_to, series_lengths

from .baselines import KINDS, make_baseline
from .substrates import SUBSTRATES, substrate_for


class SeriesModality:
    """Float series, z-normalised inside the model with the train split's per-feature statistics;
    samples of different lengths are NaN-padded and explained in groups of one length."""

    name = "series"
    description = "Time series [sample, time, feature]"
    options = ()
    axes = ("sample", "time", "feature")
    masks_padding = False
    baselines = KINDS
    substrates = SUBSTRATES
    views = ("overlay", "heatmap", "compare")
    #: values on a continuous scale: metrics may add noise to them (infidelity)
    continuous = True

    def build(self, cls: type, dataset: Dataset, name: str, params: dict) -> LoadedModel:
        """A new network for the data, normalised by the train statistics of the valid steps."""
        network = build_network(cls, name, dataset.n_features, dataset.seq_len, dataset.n_classes,
                                **params)
        hyperparameters = dict(getattr(network, "params", None) or params)
        if dataset.variable_length and not getattr(network, "variable_length", False):
            raise XaiError(f"{dataset.name} holds series of different lengths (padded) but model "
                           f"{name!r} cannot mask padding; use one that can (every built-in "
                           f"model does)")
        X = dataset.train.X
        return LoadedModel(network, name=name, class_names=dataset.class_names,
                           feature_names=dataset.feature_names, seq_len=dataset.seq_len,
                           mean=np.nanmean(X, axis=(0, 1)), std=np.nanstd(X, axis=(0, 1)),
                           hyperparameters=hyperparameters, dataset=dataset.name)

    def checkpoint_entries(self, model: LoadedModel, dataset: Dataset) -> dict[str, Any]:
        assert model.normalisation is not None  # build always normalises
        mean, std = (model.normalisation.mean.cpu().numpy().reshape(-1),
                     model.normalisation.std.cpu().numpy().reshape(-1))
        return {"normalisation": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}}

    def restore(self, cls: type, checkpoint: dict, run_dir: Path | None) -> LoadedModel:
        name = checkpoint["model"]
        network = build_network(cls, name, len(checkpoint["feature_names"]), checkpoint["seq_len"],
                                len(checkpoint["class_names"]), **checkpoint["hyperparameters"],
                                refusal=f"the checkpoint's hyperparameters do not fit model {name!r}")
        norm = checkpoint.get("normalisation")
        if norm is None:  # xai train always stores it
            raise XaiError(f"the checkpoint lacks 'normalisation' (the train split's per-feature "
                           f"mean and std that model {name!r} was trained with)")
        return LoadedModel(network, name=name, class_names=checkpoint["class_names"],
                           feature_names=checkpoint["feature_names"], seq_len=checkpoint["seq_len"],
                           mean=norm.get("mean"), std=norm.get("std"),
                           hyperparameters=checkpoint["hyperparameters"],
                           dataset=(checkpoint.get("dataset") or {}).get("name", ""))

    def check_inputs(self, model: LoadedModel, inputs: Any) -> np.ndarray:
        """Inputs as float32 ``[batch, time, feature]``, or an XaiError saying what is wrong."""
        X = as_series(inputs, f"inputs for model {model.name!r}", model.n_features)
        if X.shape[2] != model.n_features:
            raise XaiError(f"inputs have {X.shape[2]} feature(s) per time step but model "
                           f"{model.name!r} was trained on {model.n_features} "
                           f"({', '.join(model.feature_names)})")
        if model.variable_length and model.seq_len is not None and X.shape[1] < model.seq_len:
            X = pad_to(X, model.seq_len)  # shorter series are padded to the trained length
        if model.seq_len is not None and X.shape[1] != model.seq_len:
            longest = "at most " if model.variable_length else ""
            raise XaiError(f"inputs have {X.shape[1]} time steps but model {model.name!r} was "
                           f"trained on series of length {longest}{model.seq_len}")
        lengths = series_lengths(X)
        if not model.variable_length and (lengths < X.shape[1]).any():
            i = int(np.argmax(lengths < X.shape[1]))
            raise XaiError(f"inputs are variable-length (sample {i} ends in NaN padding after "
                           f"{int(lengths[i])} of {X.shape[1]} steps) but model {model.name!r} "
                           f"cannot mask padding; use a model that can (the built-in ones do)")
        return X

    def differentiable(self, model: LoadedModel, inputs: torch.Tensor) -> None:
        return None  # gradients are taken at the series themselves

    def baseline(self, kind: str, model: LoadedModel, inputs: torch.Tensor, *, background: Any = None,
                 blur_sigma: float | None = None, seed: int = 0, method: str = "baseline",
                 **options: Any) -> torch.Tensor:
        return make_baseline(kind, inputs, background=background, blur_sigma=blur_sigma, seed=seed,
                             method=method)

    def substrate(self, kind: str, model: LoadedModel, inputs: np.ndarray, *, background: Any = None,
                  sigma: float | None = None, **options: Any) -> np.ndarray:
        return substrate_for(model, inputs, kind, background, sigma)
