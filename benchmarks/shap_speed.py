"""xai's ``shap`` beside shap's KernelExplainer and PermutationExplainer on the identical game.

The game (player space): the series is cut into ``--segments`` contiguous time segments (players);
``v(S) = mean_b f_c(x_S, b_rest)`` over the whole background (GunPoint's train split, 50 samples),
``f_c`` the logit of the predicted class. shap's explainers get this game as a function of 0/1
player masks (background: the all-zeros mask, explained point: the all-ones mask), and every mask
they ask for is evaluated with the real model on all background samples, batched, exactly as xai
does; so errors and times are comparable.

Reference: exact Shapley values of the game (``algorithm='exact'``: every coalition with every
background sample), cross-checked against KernelExplainer with every coalition enumerated.
Error per sample: ||phi - phi_exact||_2 / ||phi_exact||_2; the table shows the median over
samples, averaged over ``--seeds`` seeds of each estimator (xai's and shap's alike), and the mean
time of a seed.
For each method the table prints the time, model rows evaluated, and, for xai's default, the ratio
of its time to the time of the cheapest Kernel budget reaching an error no larger than its own.

Replay: the game's full table (every coalition with every background sample, from the real model)
is evaluated once, and xai's estimator and KernelExplainer are replayed on it over
``--replay-seeds`` seeds (their error curves, precisely), their rows turned into seconds with the
seconds per model row measured in the real runs; printed with the time ratio at equal error.

Usage: .venv/bin/python benchmarks/shap_speed.py [--run RUN_DIR] [--samples 8] [--segments 8]
       [--kernel 24,32,48,64,96,128,254] [--permutation 2,4,8,16] [--pairs 100,1000] [--seeds 3]
       [--replay-seeds 20] [--replay-kernel 64,96,128,144,160,176,192,224]
Without --run, the hybrid is trained on GunPoint first (--epochs, seed 0) in a temporary directory.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import xaicore
from xaicore.data.loading import dataset_spec, load_dataset
from xaicore.models.checkpoints import load_checkpoint, load_run
from xaicore.models.devices import pass_rows
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

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        return self.per_background(Z).mean(1)

    @torch.no_grad()
    def per_background(self, Z: np.ndarray) -> np.ndarray:
        """``v_b(S)`` of every mask and background sample: ``[k, background]``."""
        keep = torch.from_numpy(np.asarray(Z) > 0.5).to(self.x.device)[:, self.steps]  # [k, time]
        rows = torch.where(keep[:, None, :, None], self.x[None, None], self.background[None])
        flat = rows.reshape(-1, *self.x.shape)
        out = torch.cat([self.module(flat[i:i + self.batch_size])[:, self.target]
                         for i in range(0, len(flat), self.batch_size)])
        self.rows += len(flat)
        return out.double().reshape(len(Z), len(self.background)).cpu().numpy()


class TableGame:
    """xai's segment game (``SegmentGame``'s call) answered from a table of ``v_b(S)``
    ``[sample, coalition code, background]`` instead of the model: the identical game, replayed
    with many seeds at no model cost."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = torch.from_numpy(table)
        self.n_players = int(np.log2(table.shape[1]))
        self.bits = 2 ** torch.arange(self.n_players)
        self.evaluations = 0

    def __call__(self, sample: torch.Tensor, coalitions: torch.Tensor,
                 base: torch.Tensor) -> torch.Tensor:
        self.evaluations += len(sample)
        return self.table[sample, (coalitions.long() * self.bits).sum(-1), base]


def replay_xai(table: np.ndarray, exact: np.ndarray, pairs_per_background: int,
               seeds: int) -> tuple[float, float]:
    """xai's sampled estimator on the table: mean over seeds of the median relative error, and
    model rows per sample."""
    from xai_shap.shapley import sampled_shapley

    codes = np.arange(table.shape[1])
    fx = torch.from_numpy(table[:, codes[-1], :].mean(1))
    fb = torch.from_numpy(table[:, 0, :])
    errors, rows = [], 0.0
    for seed in range(seeds):
        game = TableGame(table)
        phi, _ = sampled_shapley(game, fx, fb, pairs_per_background,
                                 torch.Generator().manual_seed(seed))
        errors.append(rel_error(phi.numpy(), exact))
        rows = game.evaluations / len(table)
    return float(np.mean(errors)), rows


class TableMeanGame:
    """``v(S)`` of one sample for 0/1 masks, read from its table ``[coalition code, background]``
    (the mean over the background), counting the model rows it stands for."""

    def __init__(self, table: np.ndarray) -> None:
        self.values, self.n_background = table.mean(1), table.shape[1]
        self.bits = 2 ** np.arange(int(np.log2(table.shape[0])))
        self.rows = 0

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        self.rows += len(Z) * self.n_background
        return self.values[(np.asarray(Z) > 0.5).astype(np.int64) @ self.bits]


def replay_kernel(table: np.ndarray, exact: np.ndarray, budget: int,
                  seeds: int) -> tuple[float, float]:
    """shap's KernelExplainer on the table's game (the mean over the background): mean over seeds
    of the median relative error, and model rows per sample (coalitions x background)."""
    m = int(np.log2(table.shape[1]))
    errors, rows = [], 0.0
    for seed in range(seeds):
        games = [TableMeanGame(t) for t in table]
        errors.append(rel_error(run_shap("kernel", budget, games, m, seed), exact))
        rows = sum(g.rows for g in games) / len(games)
    return float(np.mean(errors)), rows


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
    parser.add_argument("--replay-seeds", type=int, default=20, help="seeds per estimate "
                        "replayed on the game's table (0: no replay)")
    parser.add_argument("--replay-kernel", default="64,96,128,144,160,176,192,224",
                        help="KernelExplainer nsamples replayed on the table")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per estimate: errors and "
                        "times are their means (one seed's error varies by about 20%%)")
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
    seeds = range(args.seeds)
    # warm-up (lazy imports, thread pools, first passes) outside every timing
    xaicore.explain(model, X[:2], method="shap", target=target[:2], background=background,
                    n_segments=m)

    def xai_runs(**options) -> tuple[list, float]:
        """The explanations of every seed and their mean time."""
        runs, elapsed = [], 0.0
        for seed in seeds:
            start = time.perf_counter()
            runs.append(xaicore.explain(model, X, method="shap", target=target,
                                        background=background, n_segments=m, seed=seed,
                                        **options))
            elapsed += time.perf_counter() - start
        return runs, elapsed / len(runs)

    defaults, t_default = xai_runs()
    default = defaults[0]
    bounds = default.extras["segment_bounds"]
    exact_e, t_exact = default, t_default  # the default is exact when that is cheap (<= 5 players)
    if default.extras["algorithm"] != "exact":
        start = time.perf_counter()
        exact_e = xaicore.explain(model, X, method="shap", target=target, background=background,
                                  n_segments=m, algorithm="exact")
        t_exact = time.perf_counter() - start
    exact = per_player(exact_e)
    err_default = float(np.mean([rel_error(per_player(e), exact) for e in defaults]))
    se = default.extras["standard_error"].reshape(len(X), -1)
    rows.append((f"xai default ({default.extras['algorithm']})", err_default,
                 t_default, default.extras["n_model_evaluations"],
                 f"max rel. standard error {float(np.max(default.extras['relative_standard_error'])):.3f}"
                 f", sum se {se.sum():.2e}"))
    rows.append(("xai exact", 0.0, t_exact, exact_e.extras["n_model_evaluations"],
                 "reference" + (" (the default run)" if exact_e is default else "")))
    for pairs in [int(v) for v in args.pairs.split(",") if v]:
        runs, elapsed = xai_runs(algorithm="sampled", n_pairs=pairs)
        ratio = [np.linalg.norm(per_player_se(e), axis=1)
                 / np.linalg.norm(per_player(e) - exact, axis=1) for e in runs]
        rows.append((f"xai sampled n_pairs={pairs}",
                     float(np.mean([rel_error(per_player(e), exact) for e in runs])), elapsed,
                     runs[0].extras["n_model_evaluations"],
                     f"median ||se|| / ||error|| {np.median(np.concatenate(ratio)):.2f}"))

    kernel_points = []
    for kind, budgets in (("kernel", args.kernel), ("permutation", args.permutation)):
        for budget in [int(v) for v in budgets.split(",") if v]:
            errors, elapsed, evaluations = [], 0.0, 0
            for seed in seeds:
                games = [PlayerGame(model, X[i], background, int(target[i]), bounds)
                         for i in range(len(X))]
                start = time.perf_counter()
                phi = run_shap(kind, budget, games, m, seed=seed)
                elapsed += time.perf_counter() - start
                errors.append(rel_error(phi, exact))
                evaluations = sum(g.rows for g in games)
            error, elapsed = float(np.mean(errors)), elapsed / len(seeds)
            name = (f"shap Kernel nsamples={budget}" if kind == "kernel"
                    else f"shap Permutation {budget} perms")
            rows.append((name, error, elapsed, evaluations, ""))
            if kind == "kernel":
                kernel_points.append((error, elapsed))
                if budget >= 2 ** m - 2:
                    rows[-1] = rows[-1][:4] + (f"all coalitions: vs xai default "
                                               f"{rel_error(per_player(default), phi):.1e}",)

    print(f"{'method':<40} {'median rel err':>14} {'time s':>8} {'model rows':>11}  note")
    for name, error, elapsed, evaluations, note in rows:
        print(f"{name:<40} {error:14.4f} {elapsed:8.2f} {evaluations:11d}  {note}")
    matching = [t for e, t in kernel_points if e <= max(err_default, 1e-9) + 1e-6]
    if matching:
        print(f"xai default / cheapest Kernel with error <= {err_default:.4f}: "
              f"{t_default / min(matching):.2f}")
    at5 = [t for e, t in kernel_points if e <= 0.05]
    if at5 and err_default <= 0.05:
        print(f"xai default / cheapest Kernel with error <= 0.05: {t_default / min(at5):.2f}")
    if args.replay_seeds and kernel_points and default.extras["algorithm"] == "sampled":
        replay(model, X, background, target, bounds, exact, default, t_default,
               sum(t for _, t in kernel_points) / sum(r[3] for r in rows if "Kernel" in r[0]), args)


def replay(model, X, background, target, bounds, exact, default, t_default: float,
           kernel_seconds_per_row: float, args) -> None:
    """One seed's error varies a lot (shap's Kernel error is not even monotone in its budget over
    3 seeds); replaying both estimators on the game's full table (every coalition with every
    background sample, from the real model) over many seeds gives their error curves precisely,
    and the times per model row measured above turn rows into seconds."""
    m = len(bounds) - 1
    masks = (np.arange(2 ** m)[:, None] >> np.arange(m)) & 1
    table = np.stack([PlayerGame(model, X[i], background, int(target[i]), bounds)
                      .per_background(masks) for i in range(len(X))])  # [n, 2^m, background]
    weights = np.array([[math.factorial(k - 1) * math.factorial(m - k) if j else
                         -math.factorial(k) * math.factorial(m - k - 1) for j in row]
                        for row, k in zip(masks, masks.sum(1))], dtype=np.float64)
    from_table = np.einsum("nsb,sm->nm", table, weights / math.factorial(m)) / table.shape[2]
    print(f"\nreplayed on the game's table ({args.replay_seeds} seeds each; exact values from the "
          f"table vs xai exact: max difference {np.abs(from_table - exact).max():.1e})")
    nb = len(background)
    xai_seconds_per_row = t_default / default.extras["n_model_evaluations"]
    points = []
    print(f"{'method':<32} {'median rel err':>14} {'rows/sample':>12} {'est. time s':>11}")
    for budget in [int(v) for v in args.replay_kernel.split(",") if v]:
        error, rows = replay_kernel(table, exact, budget, args.replay_seeds)
        points.append((error, rows))
        print(f"{f'shap Kernel nsamples={budget}':<32} {error:14.4f} {rows:12.0f} "
              f"{rows * len(X) * kernel_seconds_per_row:11.2f}")
    n_pairs = int(default.options.get("n_pairs", 300))
    for pairs in sorted({n_pairs, *[int(v) for v in args.pairs.split(",") if v]}):
        per_background = max(2, -(-pairs // nb))
        error, rows = replay_xai(table, exact, per_background, args.replay_seeds)
        seconds = rows * len(X) * xai_seconds_per_row
        matching = [r for e, r in points if e <= error]
        ratio = (f"{seconds / (min(matching) * len(X) * kernel_seconds_per_row):.2f}"
                 if matching else "no Kernel budget as accurate")
        print(f"{f'xai sampled n_pairs={pairs}':<32} {error:14.4f} {rows:12.0f} {seconds:11.2f}  "
              f"time / cheapest Kernel at <= its error: {ratio}"
              + ("  (default)" if pairs == n_pairs else ""))


if __name__ == "__main__":
    main()
