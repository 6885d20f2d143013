"""The protocols plugins implement. Type-only imports keep this module free of torch at import time.

Every kind declares its options the same way: ``options``, a tuple of
``xaicore.plugins.options.Option`` (name, type, default, range or choices, help), which the core
checks with ``xaicore.plugins.options.resolve`` before the component runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from xaicore.data.dataset import Dataset
    from xaicore.explaining.explanation import Explanation


@runtime_checkable
class Modality(Protocol):
    """A kind of input (time series, token sequences, images): how its samples are laid out, how a
    network is built and wrapped for them, how inputs are checked, and what the methods and metrics
    that perturb or integrate need from it.

    Every kind's samples travel as float32 arrays ``[sample, position, channel]`` padded with NaN
    after each sample's length (``axes`` names the three axes: series ``sample, time, feature``,
    texts ``sample, token, feature`` with token ids in the one channel). ``masks_padding``: the
    kind's models mask padding themselves (texts), so they take padded batches and rows shorter
    than the longest they read; explainers see groups of one length, cut to it, for every kind.
    ``baselines`` and ``substrates`` name the reference inputs of path methods and what metrics
    replace removed cells with, default first.
    Optional: ``spatial_dims`` (the spatial axes of the kind's layers, 1 when absent: images 2,
    whose models keep ``image_size = (H, W)`` and whose Grad-CAM reads Conv2d maps),
    ``continuous`` (True when its values lie on a continuous scale, so metrics may impute them or
    add noise to them; False when absent), ``impute(model, inputs, removed, fallback)`` (ROAD's
    noise-free imputation of the ``removed`` cells, a boolean tensor like ``inputs``, from the kept
    ones, which it leaves unchanged; ``fallback [1, 1, channel]`` where a channel keeps no cell;
    a kind without it is interpolated linearly along the positions),
    ``removable(model, inputs)``, the boolean ``[sample, position, channel]`` cells metrics
    may remove (texts: the real tokens but the special ones; every valid cell when a kind has
    none), ``position_extras`` (extras with one value per position, columns of
    ``Explanation.to_dataframe``), ``annotate(model, inputs)`` (per-sample extras of every explanation: texts'
    token strings), ``reload(model, dataset)`` (a run's data as its model reads it),
    ``open_input(model, path, columns)`` (an ``InputSource`` over a file of this kind),
    ``dataset_spec(path, test, columns, seed, test_size, data)`` (the dataset spec of a file or
    folder of this kind: the model's kind decides how ``xai train --dataset PATH`` reads PATH), and for
    users' own networks (``xai import --module``): ``claims(dataset)`` (whether a dataset holds
    this kind's samples, so that import takes it without ``--kind``), ``layouts`` (the input
    layouts such a network may take, name to description, the default first) and
    ``adopt(network, facts, info)`` (the network as a Model: ``facts`` the dataset's ``info`` at
    import, the checkpoint at reload, holding what ``checkpoint_entries`` stored; ``info`` the
    ``LoadedModel`` keywords, ``layout`` and ``output`` among them). A kind without ``adopt``
    takes no such networks, unless it is the default kind. The players of perturbation games
    (SHAP, occlusion): ``player_units``, a dict of the units players
    may be (default first) to the names of the explainer options their players take, and
    ``players(model, inputs, unit, **options) -> (unit, ids)``: for ``unit`` (None: the default,
    which a kind may replace by another, warning, when what it needs is not installed) the unit
    used and int64 ``ids [sample, position]``, each position's player (all its channels one
    player), numbered from 0 per sample, -1 for positions that are never players (texts' special
    tokens); an absent player's positions take one of the kind's ``substrates``. A kind without
    players (series) is cut into time segments by the methods that need players.
    """

    name: str
    description: str
    options: ClassVar[tuple[Any, ...]]
    axes: ClassVar[tuple[str, str, str]]
    masks_padding: ClassVar[bool]
    baselines: ClassVar[tuple[str, ...]]
    substrates: ClassVar[tuple[str, ...]]
    #: the figure kinds ``Explanation.plot(kind=...)`` draws its explanations as
    views: ClassVar[tuple[str, ...]]

    def build(self, cls: type, dataset: Dataset, name: str, params: dict) -> Model:
        """A new network of class ``cls`` for ``dataset``, wrapped as a Model (untrained)."""

    def checkpoint_entries(self, model: Model, dataset: Dataset) -> dict[str, Any]:
        """What the checkpoint stores besides the weights to rebuild ``model`` (``restore``)."""

    def restore(self, cls: type, checkpoint: dict, run_dir: Path | None) -> Model:
        """The Model of a checkpoint of this kind (weights not loaded yet)."""

    def check_inputs(self, model: Model, inputs: Any) -> np.ndarray:
        """``inputs`` as this kind's float32 array for ``model``, or a one-line XaiError."""

    def differentiable(self, model: Model, inputs: torch.Tensor) -> Any:
        """None when gradients are taken at the inputs; otherwise a ``View`` (``module``,
        ``inputs`` and ``fold`` back to the inputs' shape) where they are taken (texts: the
        embeddings)."""

    def baseline(self, kind: str, model: Model, inputs: torch.Tensor, **options: Any) -> torch.Tensor:
        """The reference input of ``kind`` (one of ``baselines``) for every sample, in the space
        ``differentiable`` gives (the inputs themselves when it gives None)."""

    def substrate(self, kind: str, model: Model, inputs: np.ndarray, **options: Any) -> np.ndarray:
        """What removed cells of ``inputs`` become (``kind`` one of ``substrates``)."""


@runtime_checkable
class Network(Protocol):
    """A registered model architecture: a ``torch.nn.Module`` class built from the data's shape.

    ``forward`` takes ``[batch, time, feature]`` (already normalised) and returns logits
    ``[batch, class]``. ``gradcam_layer`` names (dotted attribute path) the convolution Grad-CAM
    targets by default, or is None. A network with attention also defines ``attention_weights()``,
    returning the weights of its last forward pass as a list (one per attention layer, input to
    output) of ``[batch, heads, query, key]`` tensors; ``prefix_tokens`` (optional, 0 when absent)
    says how many tokens of its own come before the input's (a ViT's CLS token: attention is
    then read from the first token's row), and ``token_grid`` (rows, columns) where the tokens
    after them lie on an image (row-major).

    ``options`` declares the parameters ``--param`` may set (their defaults are the network's);
    a network that declares only a ``default_params`` dict gets options typed after it.

    ``modality`` names the kind of input it takes (``protocols.Modality``; the default kind, series,
    when it names none); a network of another kind takes what that kind's ``build`` gives it.

    Optional: ``per_step`` (an int, at least 1) declares that the network predicts at every step
    from that many steps on: ``forward`` on a prefix ``x[:, :t + 1]`` of at least ``per_step``
    steps gives its prediction after step t (``time-forward:<method>`` explains those).

    Optional: ``variable_length = True`` declares that ``forward(x, lengths)`` masks padding (the
    steps from ``lengths[i]`` on are zeros in ``x``) so that a padded series gives the logits of
    the series alone; only such networks train on or explain variable-length series.
    """

    options: ClassVar[tuple[Any, ...]]
    gradcam_layer: ClassVar[str | None]

    def __init__(self, n_features: int, seq_len: int, n_classes: int, **params: Any) -> None: ...

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Model(Protocol):
    """A network ready to explain: the torch module (raw inputs in, logits out) plus its metadata."""

    name: str
    module: torch.nn.Module
    network: torch.nn.Module
    class_names: list[str]
    feature_names: list[str]
    seq_len: int | None
    input_layout: str  # always "NTF": [batch, time, feature]
    #: Train-set standardisation (``.mean``, ``.std`` tensors ``[feature]``) or None.
    normalisation: torch.nn.Module | None
    hyperparameters: dict[str, Any]
    dataset: str | None  # name of the dataset the network was trained on
    #: The fewest time steps it predicts from, when it predicts at every step: its logits on a
    #: prefix ``inputs[:, :t + 1]`` (``t + 1 >= per_step``) are its prediction after step t (the
    #: network's ``per_step``); None when it predicts from whole series only.
    per_step: int | None

    @property
    def n_classes(self) -> int: ...

    @property
    def n_features(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def gradcam_layer(self) -> torch.nn.Module | None:
        """The layer Grad-CAM targets by default, or None when the model has no convolution."""

    def attention_weights(self) -> list[torch.Tensor] | None:
        """Attention weights of the last forward pass, or None when the model has no attention."""

    def has_attention(self) -> bool:
        """Whether the network exposes attention weights."""

    def layer(self, path: str) -> torch.nn.Module:
        """The network's submodule at dotted ``path`` (e.g. ``cnn.3``), or a one-line XaiError."""

    def check_inputs(self, inputs: Any) -> np.ndarray:
        """``inputs`` as float32 ``[batch, time, feature]`` matching the model, or a XaiError."""

    def logits(self, inputs: Any, batch_size: int | None = None) -> np.ndarray:
        """Logits ``[batch, class]`` for raw inputs, in batches without gradients."""

    def predict_proba(self, inputs: Any, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities ``[batch, class]`` for raw inputs."""

    def to(self, device: str | torch.device) -> Model:
        """The model moved to ``device`` (returns itself)."""


@runtime_checkable
class Explainer(Protocol):
    """Attributes a model's output for a target class to every input time step and feature."""

    name: str
    description: str
    options: ClassVar[tuple[Any, ...]]

    def check(self, model: Model) -> str | None:
        """None when this explainer can explain ``model``, otherwise the reason it cannot."""

    def explain(self, model: Model, inputs: torch.Tensor, target: torch.Tensor,
                **options: Any) -> Explanation:
        """Explain a batch ``inputs [batch, time, feature]`` for ``target [batch]`` class indices."""


@runtime_checkable
class Renderer(Protocol):
    """Turns explanations into files (figures, reports).

    ``render`` also receives context it may ignore (``run_dir``, ``formats``, ...): the options it
    declares are checked when given, the rest pass through unchecked.
    """

    name: str
    description: str
    options: ClassVar[tuple[Any, ...]]

    def render(self, explanations: Sequence[Explanation], out_dir: Path,
               **options: Any) -> list[Path]:
        """Write files under ``out_dir`` and return their paths."""

    # Optional, for ``Explanation.plot``: the figure kinds this renderer draws in memory, and
    # ``figure(explanations, sample, kind)`` returning a matplotlib Figure of sample position
    # ``sample`` (several explanations: one panel per method).
    # kinds: tuple[str, ...]
    # def figure(self, explanations, sample: int, kind: str) -> "matplotlib.figure.Figure": ...


@runtime_checkable
class Metric(Protocol):
    """Scores how faithful an explanation is to its model (higher or lower is better: say which).

    ``capabilities`` declares which optional protocols below it also implements, by the names of
    ``METRIC_CAPABILITIES``; the evaluation uses a method only when its capability is declared
    (``xaicore.explaining.metric.BaseMetric`` checks the declared options of every call).
    Optional: ``check(model) -> str | None``, why it cannot score explanations of ``model`` (a kind
    of input it does not fit), or None; the evaluation skips such a metric with that reason.
    """

    name: str
    description: str
    higher_is_better: bool
    options: ClassVar[tuple[Any, ...]]
    capabilities: ClassVar[frozenset[str]]

    def evaluate(self, model: Model, explanation: Explanation, **options: Any) -> dict[str, float]:
        """Scores for the explanation, keyed by score name."""


class CurvesMetric(Metric, Protocol):
    """Capability ``"curves"``: scores with the curve behind them and per-sample scores."""

    def evaluate_curves(self, model: Model, explanation: Explanation,
                        **options: Any) -> tuple[dict[str, float], dict[str, Any]]:
        """``(scores, curve)``; ``curve["per_sample"]`` maps score names to per-sample arrays."""


class ManyMetric(Metric, Protocol):
    """Capability ``"many"``: several methods' explanations of the same samples scored together."""

    def evaluate_many(self, model: Model, explanations: Sequence[Explanation],
                      **options: Any) -> list[tuple[dict[str, float], dict[str, Any]]]:
        """One ``(scores, curve)`` per explanation, in order."""


class PartedMetric(Metric, Protocol):
    """Capability ``"parts"``: the work split into independent parts run side by side."""

    def parts(self, model: Model, explanation: Explanation, **options: Any) -> int:
        """How many parts the work of ``explanation`` takes."""

    def evaluate_part(self, model: Model, explanation: Explanation, part: int,
                      **options: Any) -> Any:
        """Part ``part``, seeding its own randomness."""

    def combine(self, explanation: Explanation, parts: list,
                **options: Any) -> tuple[dict[str, float], dict[str, Any]]:
        """``(scores, curve)`` from every part's result, in order."""


#: capability name -> the methods a metric that declares it implements
METRIC_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "curves": ("evaluate_curves",),
    "many": ("evaluate_many",),
    "parts": ("parts", "evaluate_part", "combine"),
}


class DatasetLoader(Protocol):
    """Loads a dataset by name into train and test splits; ``options`` (an attribute of the
    function) declares the ``**options`` it takes, which reach it checked, defaults filled in."""

    options: tuple[Any, ...]

    def __call__(self, name: str, **options: Any) -> Dataset: ...


@runtime_checkable
class Engine(Protocol):
    """Where streamed batches are explained (``xai explain --engine NAME``).

    ``run`` explains every batch of ``job`` (``job.batches()`` gives the row ranges from
    ``job.start`` on) by calling ``xaicore.explaining.streaming.explain_batch`` wherever it likes (in this
    process, on a pool of workers, on a cluster) and yields ``(start_row, {method: Explanation})``
    in input order; the core writes what it yields to the stores. ``options`` declares what it
    takes (the ray engine: ``workers``, ``gpus_per_worker``, ``address``); the command line's
    values are checked against it before ``run``, so an engine without ``workers`` refuses
    ``--workers``.
    """

    name: str
    description: str
    options: ClassVar[tuple[Any, ...]]

    def run(self, job: Any, **options: Any) -> Iterator[tuple[int, dict[str, Explanation]]]: ...
