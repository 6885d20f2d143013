"""xai's ``shap`` beside shap's KernelExplainer and PermutationExplainer on the identical game.

The game (player space): the series is cut into ``--segments`` contiguous time segments (players);
``v(S) = mean_b f_c(x_S, b_rest)`` over the whole background (GunPoint's train split, 50 samples),
``f_c`` the logit of the predicted class. shap's explainers get this game as a function of 0/1
player masks (background: the all-zeros mask, explained point: the all-ones mask), and every mask
they ask for is evaluated with the real model on all background samples, batched, exactly as xai
does; so errors and times are comparable.

Reference: exact Shapley values of the game (``algorithm='exact'``: every coalition with every
background sample), cross-checked against KernelExplainer with every coalition enumerated.
Error per sample: ||phi - phi_exact||_2 / ||phi_exact||_2; the table shows the median over samples.
For each method the table prints the time, model rows evaluated, and, for xai's default, the ratio
of its time to the time of the cheapest Kernel budget reaching an error no larger than its own.

Usage: .venv/bin/python benchmarks/shap_speed.py [--run RUN_DIR] [--samples 8] [--segments 8]
       [--kernel 24,32,48,64,96,128,254] [--permutation 2,4,8,16] [--pairs 100,300,1000]
Without --run, the hybrid is trained on GunPoint first (--epochs, seed 0) in a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import xaicore
from xaicore.data.loading import dataset_spec, load_dataset
from xaicore.runs.model import load_checkpoint, load_run, pass_rows
from xaicore.runs.training import train


class PlayerGame:
    """``v(S)`` of one sample for 0/1 masks ``Z [k, players]``: all masks x background, batched
    in passes of the size xai's own game uses (``pass_rows``)."""

    def __init__(self, model, x: np.ndarray, background: np.ndarray, target: int,
                 bounds: list[int]) -> None:
        self.module, self.target = model.module, target
        self.batch_size = pass_rows(model.device, x.size)
        self.x = torch.from_numpy(x).to(model.device)
        self.background = torch.from_numpy(background).to(model.device)
        steps = np.zeros(x.shape[0], dtype=np.int64)
        for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            steps[a:b] = s
        self.steps = torch.from_numpy(steps).to(model.device)
        self.rows = 0

    @torch.no_grad()
    def __call__(self, Z: np.ndarray) -> np.ndarray:
        keep = torch.from_numpy(np.asarray(Z) > 0.5).to(self.x.device)[:, self.steps]  # [k, time]
        rows = torch.where(keep[:, None, :, None], self.x[None, None], self.background[None])
        flat = rows.reshape(-1, *self.x.shape)
        out = torch.cat([self.module(flat[i:i + self.batch_size])[:, self.target]
                         for i in range(0, len(flat), self.batch_size)])
        self.rows += len(flat)
        return out.double().reshape(len(Z), len(self.background)).mean(1).cpu().numpy()


def run_shap(kind: str, budget: int, games: list[PlayerGame], m: int, seed: int) -> np.ndarray:
    import shap

    phi = []
    for game in games:
        if kind == "kernel":
            explainer = shap.KernelExplainer(game, np.zeros((1, m)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                np.random.seed(seed)
                phi.append(explainer.shap_values(np.ones((1, m)), nsamples=budget, silent=True,
                                                 l1_reg=False)[0])
        else:
            explainer = shap.PermutationExplainer(game, shap.maskers.Independent(np.zeros((1, m))),
                                                  seed=seed)
            phi.append(explainer(np.ones((1, m)), max_evals=budget * (2 * m + 1) - 1,
                                 silent=True).values[0])
    return np.asarray(phi, dtype=np.float64)


def rel_error(phi: np.ndarray, exact: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(phi - exact, axis=1) / np.linalg.norm(exact, axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained cnn-lstm-attention GunPoint run")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--kernel", default="24,32,48,64,96,128,254", help="KernelExplainer nsamples")
    parser.add_argument("--pairs", default="100,1000", help="xai sampled n_pairs beside the default")
    parser.add_argument("--permutation", default="2,4,8,16",
                        help="PermutationExplainer permutations (max_evals = p (2m + 1) - 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import shap  # noqa: F401  (import time kept out of the timings)

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "gunpoint"
            metrics = train(dataset_spec("GunPoint"), "cnn-lstm-attention", run, epochs=args.epochs,
                            seed=0, progress=False)
            print(f"trained cnn-lstm-attention on GunPoint: test accuracy "
                  f"{metrics['test_accuracy']:.3f}")
        model = load_run(run)
        dataset = load_dataset(load_checkpoint(run / "checkpoint.pt")["dataset"])
    X = dataset.test.X[:args.samples]
    background = dataset.train.X[:50]
    target = model.logits(X).argmax(1)
    m = args.segments
    print(f"model {model.name}, {len(X)} samples {X.shape[1:]}, {m} players, background "
          f"{len(background)}, torch threads {torch.get_num_threads()}")

    def per_player(e) -> np.ndarray:
        bounds = e.extras["segment_bounds"]
        return np.stack([e.attributions[:, a:b, 0].astype(np.float64).sum(1)
                         for a, b in zip(bounds[:-1], bounds[1:])], 1)

    def per_player_se(e) -> np.ndarray:
        bounds = e.extras["segment_bounds"]
        se = e.extras["standard_error"][:, :, 0].astype(np.float64)
        return np.stack([se[:, a:b].sum(1) for a, b in zip(bounds[:-1], bounds[1:])], 1)

    rows: list[tuple[str, float, float, int, str]] = []
    # warm-up (lazy imports, thread pools, first passes) outside every timing
    xaicore.explain(model, X[:2], method="shap", target=target[:2], background=background,
                    n_segments=m)
    start = time.perf_counter()
    default = xaicore.explain(model, X, method="shap", target=target, background=background,
                              n_segments=m)
    t_default = time.perf_counter() - start
    phi_default = per_player(default)
    bounds = default.extras["segment_bounds"]
    exact_e, t_exact = default, t_default  # the default is exact when that is cheap (<= 5 players)
    if default.extras["algorithm"] != "exact":
        start = time.perf_counter()
        exact_e = xaicore.explain(model, X, method="shap", target=target, background=background,
                                  n_segments=m, algorithm="exact")
        t_exact = time.perf_counter() - start
    exact = per_player(exact_e)
    se = default.extras["standard_error"].reshape(len(X), -1)
    rows.append((f"xai default ({default.extras['algorithm']})", rel_error(phi_default, exact),
                 t_default, default.extras["n_model_evaluations"],
                 f"max rel. standard error {float(np.max(default.extras['relative_standard_error'])):.3f}"
                 f", sum se {se.sum():.2e}"))
    rows.append(("xai exact", 0.0, t_exact, exact_e.extras["n_model_evaluations"],
                 "reference" + (" (the default run)" if exact_e is default else "")))
    for pairs in [int(v) for v in args.pairs.split(",") if v]:
        start = time.perf_counter()
        e = xaicore.explain(model, X, method="shap", target=target, background=background,
                            n_segments=m, algorithm="sampled", n_pairs=pairs)
        rows.append((f"xai sampled n_pairs={pairs}", rel_error(per_player(e), exact),
                     time.perf_counter() - start, e.extras["n_model_evaluations"],
                     f"median ||se|| / ||error|| "
                     f"{np.median(np.linalg.norm(per_player_se(e), axis=1) / np.linalg.norm(per_player(e) - exact, axis=1)):.2f}"))

    kernel_points = []
    for kind, budgets in (("kernel", args.kernel), ("permutation", args.permutation)):
        for budget in [int(v) for v in budgets.split(",") if v]:
            games = [PlayerGame(model, X[i], background, int(target[i]), bounds)
                     for i in range(len(X))]
            start = time.perf_counter()
            phi = run_shap(kind, budget, games, m, seed=0)
            elapsed = time.perf_counter() - start
            error = rel_error(phi, exact)
            name = (f"shap Kernel nsamples={budget}" if kind == "kernel"
                    else f"shap Permutation {budget} perms")
            rows.append((name, error, elapsed, sum(g.rows for g in games), ""))
            if kind == "kernel":
                kernel_points.append((error, elapsed))
                if budget >= 2 ** m - 2:
                    rows[-1] = rows[-1][:4] + (f"all coalitions: vs xai default "
                                               f"{rel_error(phi_default, phi):.1e}",)

    print(f"{'method':<40} {'median rel err':>14} {'time s':>8} {'model rows':>11}  note")
    for name, error, elapsed, evaluations, note in rows:
        print(f"{name:<40} {error:14.4f} {elapsed:8.2f} {evaluations:11d}  {note}")
    err_default = rows[0][1]
    matching = [t for e, t in kernel_points if e <= max(err_default, 1e-9) + 1e-6]
    if matching:
        print(f"xai default / cheapest Kernel with error <= {err_default:.4f}: "
              f"{t_default / min(matching):.2f}")
    at5 = [t for e, t in kernel_points if e <= 0.05]
    if at5 and err_default <= 0.05:
        print(f"xai default / cheapest Kernel with error <= 0.05: {t_default / min(at5):.2f}")


if __name__ == "__main__":
    main()
