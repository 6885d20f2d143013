"""``train()``: fit a registered network on a dataset spec and write a complete run directory.

The base recipe (Adam, StepLR dividing the rate by 10 every third of the epochs,
cross-entropy) applies unless the network class overrides defaults in ``training_defaults``
(each field is an ``Option`` of ``RECIPE_OPTIONS``); explicit arguments override both.
Everything is written into a temporary folder inside ``out`` and moved into place file by file
at the end (``runs.install_training``), so a failed or interrupted run leaves the previous files
as they were; files xai did not write are never touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xaicore.data.dataset import Dataset
from xaicore.data.loading import dataset_spec as spec_of
from xaicore.data.loading import load_dataset
from xaicore.errors import XaiError
from xaicore.models.checkpoints import CHECKPOINT_FORMAT, load_checkpoint
from xaicore.models.devices import resolve_device
from xaicore.models.kinds import modality_of
from xaicore.models.loaded import LoadedModel
from xaicore.plugins import registry
from xaicore.plugins.boundary import call
from xaicore.plugins.options import Option, defaults_of, resolve, validate
from xaicore.plugins.stages import render_stage
from xaicore.runs import directory as runs
from xaicore.runs.directory import CHECKPOINT
from xaicore.runs.predicting import probability_cells, probability_columns

SCHEDULERS = ("step", "cosine", "onecycle", "constant")
# The base recipe; a network class overrides defaults in its ``training_defaults`` dict.
RECIPE_OPTIONS: tuple[Option, ...] = (
    Option("epochs", int, 50, "training epochs", min=1, max=100_000),
    Option("batch_size", int, 32, "mini-batch size", min=1, max=1_000_000),
    Option("lr", float, 0.005, "learning rate", min=1e-12, max=10.0),
    Option("scheduler", str, "step", "learning-rate schedule", choices=SCHEDULERS),
    Option("weight_decay", float, 0.0, "decoupled weight decay (AdamW when above 0)", min=0.0,
           max=1.0),
    Option("label_smoothing", float, 0.0, "cross-entropy label smoothing", min=0.0, max=1.0),
    Option("augment", float, 0.0, "amplitude scaling and jitter strength (0: none)", min=0.0,
           max=1.0),
)
BASE_RECIPE: dict[str, Any] = defaults_of(RECIPE_OPTIONS)


def recipe_options(cls: type) -> list[Option]:
    """The recipe options with ``cls.training_defaults`` as their defaults (each checked)."""
    owner = f"training recipe of {getattr(cls, '__name__', cls)}"
    defaults = validate(owner, RECIPE_OPTIONS, getattr(cls, "training_defaults", None) or {})
    return [dataclasses.replace(option, default=defaults[option.name]) for option in RECIPE_OPTIONS]


def recipe_for(cls: type, **overrides: Any) -> dict[str, Any]:
    """The training recipe for a network class: the base one, the class's defaults, then overrides."""
    return validate("training", recipe_options(cls),
                    {k: v for k, v in overrides.items() if v is not None})


@contextlib.contextmanager
def deterministic(seed: int, threads: int | None = None) -> Iterator[None]:
    """Seed torch and numpy, use deterministic kernels and ``threads`` CPU threads, restoring the
    global settings after."""
    was_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    was = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)
        torch.set_num_threads(was_threads)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: dict, steps_per_epoch: int):
    """The learning-rate schedule and whether it steps per batch (else per epoch)."""
    epochs, kind = recipe["epochs"], recipe["scheduler"]
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, max(1, epochs // 3), gamma=0.1), False
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs), False
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe["lr"], epochs=epochs,
                                                   steps_per_epoch=steps_per_epoch), True
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0), False


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A seeded shuffle cut into batches; a last batch of one sample joins the one before
    (BatchNorm cannot train on a single sample)."""
    parts = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2:] = [torch.cat(parts[-2:])]
    return parts


@torch.no_grad()
def evaluate(module: nn.Module, X: torch.Tensor, y: torch.Tensor,
             batch_size: int = 256) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and class probabilities of ``module`` in eval mode."""
    module.eval()
    logits = torch.cat([module(X[i:i + batch_size]).float() for i in range(0, len(X), batch_size)])
    loss = nn.functional.cross_entropy(logits, y).item()
    return loss, (logits.argmax(1) == y).float().mean().item(), torch.softmax(logits, 1).cpu().numpy()


def augment(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, strength: float) -> torch.Tensor:
    """Random amplitude scaling around the feature means (factor 1 +- strength) and Gaussian
    jitter (strength x the feature's standard deviation): a batch of plausible variants."""
    scale = 1 + strength * (2 * torch.rand(x.shape[0], 1, 1, device=x.device) - 1)
    return (x - mean) * scale + mean + torch.randn_like(x) * strength * std


def _log(progress: bool, message: str) -> None:
    if progress:
        import click

        click.echo(message, err=True)


def train(dataset_spec: dict | str | Path | None, model: str | None, out: str | Path, *,
          epochs: int | None = None,
          seed: int = 0, batch_size: int | None = None, lr: float | None = None,
          params: dict | None = None, force: bool = False, device: str | None = None,
          progress: bool = True, resume: bool = False, threads: int | None = 1) -> dict:
    """Train ``model`` on the dataset of ``dataset_spec`` (a spec, or a registered dataset name or
    a CSV/npz path) into run directory ``out``; the metrics.

    ``resume`` continues the run already in ``out`` from its optimizer and scheduler state up to
    ``epochs`` in total (its model, recipe, dataset and seed are reused; the result replaces the
    run).
    ``threads`` CPU threads are used (one by default: these small networks train fastest on one
    thread, several times faster on a shared machine; None keeps torch's setting).
    """
    out = Path(out)
    with runs.run_lock(out, "xai train"):  # held from the first check to the last file
        spec = spec_of(dataset_spec) if isinstance(dataset_spec, (str, Path)) else dataset_spec
        previous = None
        if resume:
            if not runs.is_run(out):
                raise XaiError(f"{out} is not an xai run directory (it has no {runs.MARKER}); "
                               f"--resume continues only runs xai wrote")
            previous = load_checkpoint(out / CHECKPOINT)
            model = model or previous["model"]
            if previous["model"] != model or "training" not in previous:
                raise XaiError(f"{out} holds a {previous.get('model')!r} run without resumable state; "
                               f"train {model!r} into a new directory instead")
            spec, seed = previous["dataset"], previous["seed"]
            params = previous["hyperparameters"]
            recipe_overrides = {**{k: v for k, v in previous["training"].items() if k in BASE_RECIPE},
                                "epochs": epochs}
        else:
            runs.check_replaceable(out, force)
            recipe_overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr}
        if not model or not spec:
            raise XaiError("train needs a model name and a dataset spec (or resume=True)")
        if params is not None and not isinstance(params, dict):
            raise XaiError(f"params must be a dict of network parameters, not {type(params).__name__}")
        cls = registry.get_model(model)
        # refuse bad --param values before any data is loaded
        params = resolve(f"model {model}", cls, params or {}, noun="parameter")
        recipe = recipe_for(cls, **recipe_overrides)
        dev = resolve_device(device)
        dataset = load_dataset(spec)
        if previous and recipe["epochs"] <= previous["epoch"]:
            raise XaiError(f"{out} already trained {previous['epoch']} epochs; resume needs --epochs "
                           f"above that")

        removed: list[str] = []
        with runs.staged(out, "xai train", removed) as tmp:
            with deterministic(seed, threads):
                metrics = _fit(dataset, spec, model, cls, params or {}, recipe, seed, dev, tmp,
                               progress, previous)
            _render(tmp, metrics, progress)
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if previous:
            _log(progress, resumed_note(out, previous, removed))
        _log(progress, f"{model} on {dataset.name}: test accuracy {metrics['test_accuracy']:.4f}, "
                       f"train accuracy {metrics['train_accuracy']:.4f}, {metrics['seconds']:.1f} s "
                       f"-> {out}")
        return metrics


def resumed_note(out: Path, previous: dict, removed: list[str]) -> str:
    """What ``--resume`` kept and what it invalidated."""
    kept = (f"resumed {out} from epoch {previous['epoch']}: kept its data, recipe, seed, history "
            f"and optimizer state")
    if not removed:
        return kept + "; it held no results of the old model"
    areas = sorted({rel.split("/")[0] for rel in removed})
    return (kept + f"; removed {len(removed)} result file(s) of the old model ({', '.join(areas)}): "
            f"explain, evaluate and report again")


def _fit(dataset: Dataset, spec: dict, model_name: str, cls: type, params: dict, recipe: dict,
         seed: int, dev: torch.device, run_dir: Path, progress: bool, previous: dict | None) -> dict:
    model = build_model(dataset, model_name, cls, params).to(dev)
    network, module, hyperparameters = model.network, model.module, model.hyperparameters
    modality = modality_of(model)
    entries = call("modalities", modality.name, f"{modality.name}.checkpoint_entries",
                   modality.checkpoint_entries, model, dataset)
    Xtr, ytr = (torch.from_numpy(a).to(dev) for a in (dataset.train.X, dataset.train.y))
    model.check_forward(Xtr[:2])
    Xte, yte = (torch.from_numpy(a).to(dev) for a in (dataset.test.X, dataset.test.y))
    generator = torch.Generator().manual_seed(seed)
    if recipe["augment"] and model.normalisation is None:
        raise XaiError(f"augment scales and jitters values around the train statistics, which "
                       f"model {model_name!r} ({model.modality}) does not have; train without it")
    normalisation = (None if model.normalisation is None else
                     (model.normalisation.mean, model.normalisation.std))
    steps = len(batches(len(Xtr), recipe["batch_size"], torch.Generator().manual_seed(0)))
    optimizer, scheduler, per_batch = optimisation(module, recipe, steps)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])
    history: list[dict] = []
    start = 0
    if previous:  # --resume: where the interrupted training stopped
        module.load_state_dict(previous["state_dict"])
        optimizer.load_state_dict(previous["optimizer"])
        scheduler.load_state_dict(previous["scheduler"])
        generator.set_state(previous["training"]["generator"])
        history = list(previous["training"]["history"])
        start = previous["epoch"]

    began = time.perf_counter()
    run_epochs(module, (Xtr, ytr, Xte, yte), recipe, generator,
               (optimizer, scheduler, per_batch, criterion), normalisation, history, start,
               progress)
    seconds = time.perf_counter() - began + (previous["training"]["seconds"] if previous else 0.0)

    train_loss, train_acc, _ = evaluate(module, Xtr, ytr)
    test_loss, test_acc, probs = evaluate(module, Xte, yte)
    predicted = probs.argmax(1)
    checkpoint = {
        "format": CHECKPOINT_FORMAT, "model": model_name, "hyperparameters": hyperparameters,
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "class_names": list(dataset.class_names), "feature_names": list(dataset.feature_names),
        "seq_len": int(dataset.seq_len), "modality": model.modality, **entries,
        "dataset": dict(spec), "optimizer": _to_cpu(optimizer.state_dict()),
        "scheduler": scheduler.state_dict(), "epoch": recipe["epochs"], "seed": int(seed),
        "training": {**recipe, "generator": generator.get_state(), "history": history,
                     "seconds": seconds}}
    report = write_training(run_dir, checkpoint, history, dataset, predicted, probs)
    return {"model": model_name, "dataset": dataset.name, "dataset_spec": dict(spec),
            "test_accuracy": test_acc, "train_accuracy": train_acc, "test_loss": test_loss,
            "train_loss": train_loss, "macro_f1": report["macro avg"]["f1-score"],
            "epochs": recipe["epochs"], "seconds": round(seconds, 3),
            **{k: recipe[k] for k in ("batch_size", "lr", "scheduler", "weight_decay",
                                      "label_smoothing", "augment")},
            "seed": int(seed), "device": str(dev), "hyperparameters": hyperparameters,
            "parameters": sum(p.numel() for p in network.parameters()),
            **data_summary(dataset), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "notes": []}


def data_summary(dataset: Dataset) -> dict[str, Any]:
    """The shape of the data a model was trained on, for the training summary."""
    return {"n_train": len(dataset.train), "n_test": len(dataset.test), "seq_len": dataset.seq_len,
            "n_features": dataset.n_features, "class_names": list(dataset.class_names),
            "feature_names": list(dataset.feature_names)}


def build_model(dataset: Dataset, model_name: str, cls: type, params: dict) -> LoadedModel:
    """A new network of the plugin's class for the data, built by its kind of input."""
    modality = registry.get_modality(getattr(cls, "modality", None) or None)
    return call("modalities", modality.name, f"{modality.name}.build", modality.build, cls, dataset,
                model_name, params)


def run_epochs(module: nn.Module, tensors: tuple, recipe: dict, generator: torch.Generator,
               optimisation: tuple, normalisation: tuple | None, history: list[dict], start: int,
               progress: bool) -> None:
    """Epochs ``start`` to the recipe's last, each appended to ``history``, under a progress bar.

    ``tensors``: train inputs and labels, test inputs and labels; ``optimisation``: optimizer,
    scheduler, whether it steps per batch, loss."""
    from tqdm.auto import tqdm

    Xtr, ytr, Xte, yte = tensors
    optimizer, scheduler, per_batch, criterion = optimisation
    began = time.perf_counter()
    # one bar (epoch, loss, accuracy, ETA); redrawn at most every 0.5 s on a terminal, and every
    # 30 s into a log file, so a log gets a few lines instead of one per epoch
    # no tqdm monitor thread: it would outlive the bar, and `xai evaluate` forks worker processes
    # only from a process without other threads (a fork copies no thread but their locks)
    quiet = type("TrainingBar", (tqdm,), {"monitor_interval": 0})
    with quiet(total=recipe["epochs"], initial=start, desc="training", unit="epoch",
              disable=not progress, file=sys.stderr, dynamic_ncols=True,
              mininterval=0.5 if sys.stderr.isatty() else 30.0) as bar:
        for epoch in range(start, recipe["epochs"]):
            lr_now = optimizer.param_groups[0]["lr"]
            train_loss, train_acc = train_epoch(module, Xtr, ytr, recipe, generator, optimizer,
                                                scheduler if per_batch else None, criterion,
                                                normalisation)
            if not per_batch:
                scheduler.step()
            test_loss, test_acc, _ = evaluate(module, Xte, yte)
            history.append({"epoch": epoch + 1, "train_loss": train_loss,
                            "train_accuracy": train_acc, "test_loss": test_loss,
                            "test_accuracy": test_acc, "lr": lr_now,
                            "seconds": round(time.perf_counter() - began, 3)})
            bar.set_postfix({"loss": f"{train_loss:.4f}", "acc": f"{train_acc:.3f}",
                             "test acc": f"{test_acc:.3f}"}, refresh=False)
            bar.update(1)


def optimisation(module: nn.Module, recipe: dict, steps: int) -> tuple[Any, Any, bool]:
    """The optimizer, the scheduler and whether it steps per batch (``steps`` batches an epoch)."""
    # Adam as the seed; with weight decay, AdamW's decoupled form (Adam's L2 form hurt here)
    optimizer = (torch.optim.AdamW(module.parameters(), lr=recipe["lr"],
                                   weight_decay=recipe["weight_decay"]) if recipe["weight_decay"]
                 else torch.optim.Adam(module.parameters(), lr=recipe["lr"]))
    scheduler, per_batch = make_scheduler(optimizer, recipe, steps)
    return optimizer, scheduler, per_batch


def train_epoch(module: nn.Module, X: torch.Tensor, y: torch.Tensor, recipe: dict,
                generator: torch.Generator, optimizer: torch.optim.Optimizer, scheduler: Any,
                criterion: nn.Module,
                normalisation: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[float, float]:
    """One pass over the shuffled training batches (``scheduler`` stepped per batch when given):
    the mean loss and the accuracy."""
    module.train()
    total, correct = 0.0, 0
    for idx in batches(len(X), recipe["batch_size"], generator):
        idx = idx.to(X.device)
        xb, yb = X[idx], y[idx]
        if recipe["augment"] and normalisation is not None:
            xb = augment(xb, *normalisation, recipe["augment"])
        optimizer.zero_grad(set_to_none=True)
        logits = module(xb)
        loss = criterion(logits, yb)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(idx)
        correct += int((logits.argmax(1) == yb).sum())
    return total / len(X), correct / len(X)


def write_training(run_dir: Path, checkpoint: dict, history: list[dict], dataset: Dataset,
                   predicted: np.ndarray, probs: np.ndarray) -> dict:
    """The checkpoint, the history, the test predictions and the classification report (returned)."""
    torch.save(checkpoint, run_dir / CHECKPOINT)
    _write_csv(run_dir / "history.csv", history)
    write_predictions(run_dir / "test_predictions.csv", dataset, predicted, probs)
    report = classification_report(dataset.test.y, predicted, dataset.class_names)
    (run_dir / "classification_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / "classification_report.txt").write_text(report_text(report))
    return report


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Precision, recall, F1 and support per class, with accuracy and macro/weighted averages."""
    report: dict[str, Any] = {}
    for c, name in enumerate(class_names):
        tp = int(((y_pred == c) & (y_true == c)).sum())
        predicted, support = int((y_pred == c).sum()), int((y_true == c).sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[name] = {"precision": precision, "recall": recall, "f1-score": f1, "support": support}
    rows = [report[n] for n in class_names]
    total = sum(r["support"] for r in rows)
    report["accuracy"] = float((y_true == y_pred).mean()) if total else 0.0
    for avg, weights in (("macro avg", [1.0] * len(rows)), ("weighted avg", [r["support"] for r in rows])):
        norm = sum(weights) or 1.0
        report[avg] = {k: sum(w * r[k] for w, r in zip(weights, rows)) / norm
                       for k in ("precision", "recall", "f1-score")}
        report[avg]["support"] = total
    return report


def report_text(report: dict) -> str:
    """The report as a table like scikit-learn's ``classification_report``."""
    names = [k for k in report if k not in ("accuracy", "macro avg", "weighted avg")]
    width = max(len(n) for n in names + ["weighted avg"])
    lines = [f"{'':>{width}}  precision    recall  f1-score   support", ""]
    row = lambda n, r: (f"{n:>{width}}  {r['precision']:9.4f} {r['recall']:9.4f} "  # noqa: E731
                        f"{r['f1-score']:9.4f} {r['support']:9d}")
    lines += [row(n, report[n]) for n in names] + [""]
    total = report["macro avg"]["support"]
    lines.append(f"{'accuracy':>{width}}  {'':9} {'':9} {report['accuracy']:9.4f} {total:9d}")
    lines += [row(n, report[n]) for n in ("macro avg", "weighted avg")]
    return "\n".join(lines) + "\n"


def _to_cpu(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_cpu(v) for v in state)
    return state


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_predictions(path: Path, dataset: Dataset, predicted: np.ndarray,
                       probs: np.ndarray) -> None:
    names = dataset.class_names
    columns = probability_columns(names)
    rows = [{"sample": i, "true": names[t], "predicted": names[p], "correct": int(t == p),
             **dict(zip(columns, probability_cells(pr, names)))}
            for i, (t, p, pr) in enumerate(zip(dataset.test.y, predicted, probs))]
    _write_csv(path, rows)


def _render(run_dir: Path, metrics: dict, progress: bool) -> None:
    """Run every installed renderer of stage "run"; a failure is noted, never fatal."""
    metrics["notes"] += render_stage("run", [], run_dir, run_dir=run_dir)[1]
    for note in metrics["notes"]:
        _log(progress, f"note: {note}")
