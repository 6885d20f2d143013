"""The runs of a comparison report: read, checked to share one test split, their models named,
and every method they explained compared pair by pair (``xai report --run A --run B``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xaicore.application import Agreement, agreement, dataset_difference, model_labels
from xaicore.plugin import Explanation, XaiError

from .explorer import target_kind
from .run_files import RunFiles, read_run


@dataclass
class ComparedRun:
    """One run of the comparison: its files, the name its model goes by in the report, and its
    explanations of the predicted class by method."""

    files: RunFiles
    label: str
    by_method: dict[str, Explanation] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return self.files.run_dir.resolve().name

    @property
    def model_digest(self) -> str:
        """The digest of the model its explanations were computed with (the run's own: results
        of another model are left out when the run is read)."""
        return next(iter(self.by_method.values())).model_digest

    def prediction(self, sid: int) -> tuple[int, float, int] | None:
        """The model's predicted class, its probability and the true class (-1: unknown) of
        sample ``sid``, from any of its explanations of that sample; None when none holds it."""
        for e in self.by_method.values():
            hits = (e.sample_ids == sid).nonzero()[0]
            if len(hits):
                i = int(hits[0])
                pred = int(e.predictions[i])
                return pred, float(e.probabilities[i, pred]), int(e.labels[i])
        return None


@dataclass
class Comparison:
    """What the comparison report shows: the runs, the methods every run explained, the samples
    all runs explained with one of them, and per method the agreement of every pair of runs."""

    runs: list[ComparedRun]
    methods: list[str]
    sample_ids: list[int]
    pairs: dict[str, list[tuple[int, int, Agreement]]]  # method -> (run a, run b, Agreement)

    @property
    def class_names(self) -> list[str]:
        return list(next(iter(self.runs[0].by_method.values())).class_names)


def read_comparison(run_dirs: list[Path]) -> Comparison:
    """Read and check the runs: distinct run folders, one test split, at least one method that
    every run explained (of the predicted class), on common samples."""
    seen: dict[Path, Path] = {}
    for run in run_dirs:
        key = Path(run).resolve()
        if key in seen:
            raise XaiError(f"run {run} is given twice (as {seen[key]}); compare different runs")
        seen[key] = Path(run)
    files = [read_run(Path(run)) for run in run_dirs]
    first = files[0]
    for other in files[1:]:
        difference = dataset_difference(first.checkpoint.get("dataset", "?"),
                                        other.checkpoint.get("dataset", "?"))
        if difference:
            raise XaiError(f"runs {first.run_dir.name} and {other.run_dir.name} were trained on "
                           f"different datasets ({difference}); a comparison needs one test split")
    own = [{e.method: e for e in f.explanations if target_kind(e) == "predicted"} for f in files]
    names = [next((e.model_name for e in o.values() if e.model_name), str(f.checkpoint["model"]))
             for f, o in zip(files, own)]
    labels = model_labels(names, [f.run_dir.resolve().name for f in files])
    runs = [ComparedRun(f, label, o) for f, label, o in zip(files, labels, own)]
    methods = sorted(set.intersection(*(set(o) for o in own)))
    if not methods:
        missing = [r.folder for r in runs if not r.by_method]
        raise XaiError((f"run {missing[0]} holds no explanation of its predicted class" if missing
                        else "the runs explained no method in common") +
                       "; explain each with the same methods and samples first, e.g. xai explain "
                       "--run RUN --method gradcam --samples 0:16")
    pairs: dict[str, list[tuple[int, int, Agreement]]] = {}
    for method in methods:
        pairs[method] = [(a, b, agreement(runs[a].by_method[method], runs[b].by_method[method]))
                         for a in range(len(runs)) for b in range(a + 1, len(runs))]
    sample_ids = sorted({int(s) for method in methods for s in set.intersection(
        *({int(s) for s in r.by_method[method].sample_ids} for r in runs))})
    return Comparison(runs, methods, sample_ids, pairs)


def default_out(run_dirs: list[Path]) -> Path:
    """``comparison-A-B.html`` beside the first run, named by the runs' folders."""
    names = "-".join(Path(r).resolve().name for r in run_dirs)
    return Path(run_dirs[0]).resolve().parent / f"comparison-{names}.html"
