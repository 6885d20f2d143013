"""Streaming at dataset scale: peak memory per N, and throughput against plain passes.

For each N, a synthetic ``[N, 150, 3]`` ``.npy`` is explained by ``xai explain --input`` in a
child process (``--engine local``, one torch thread), and the child's peak RSS is read from
``resource.getrusage(RUSAGE_CHILDREN)``; flat memory means the peak does not grow with N. The
rate is the slope of the run's own progress from a quarter of its rows to the end, so start-up
(imports, loading the model, starting Ray and its actors, the first batch's warm-up, a Ray task's
first results arriving together) is left out without subtracting a separately timed start-up
(which varied by seconds between runs). Each method's rate is compared, in the same run, with plain
forward+backward passes of the same batches (the gradient of the summed target logits with
respect to the input), measured before and after it: ``ratio_to_plain`` divides by their mean,
``ratio_to_faster_plain`` by the faster of the two (load on the machine cannot inflate that one).
Plain passes alone vary by 10-20% between measurements minutes apart on this machine.

The engines are compared on one input (``--ray-n`` rows, gradcam): ``local`` and ``ray`` with 1
and 2 workers, each worker one torch thread.

Usage: .venv/bin/python benchmarks/dataset_scale.py [--sizes 10000 50000 200000]
[--ig-sizes 10000 50000 200000] [--ray-n 20000] [--batch 256] [--repeats 1]
[--workdir /tmp/xai-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

IG_STEPS = 32


def make_run(workdir: Path) -> Path:
    """A hybrid trained for one epoch on a small synthetic [n, 150, 3] set (speed does not
    depend on training)."""
    from xaicore.runs.training import train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 150, 3)).astype(np.float32)
    np.savez(workdir / "train.npz", X=X, y=np.arange(64) % 2)
    run = workdir / "run"
    if not (run / "checkpoint.pt").is_file():
        from xaicore.data.loading import dataset_spec

        train(dataset_spec(workdir / "train.npz"), "cnn-lstm-attention", run, epochs=1,
              progress=False, force=True)
    return run


def make_input(workdir: Path, n: int) -> Path:
    """``[n, 150, 3]`` float32 written in blocks (never whole in memory)."""
    path = workdir / f"input-{n}.npy"
    if not path.is_file():
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 150, 3))
        rng = np.random.default_rng(n)
        for start in range(0, n, 10_000):
            stop = min(start + 10_000, n)
            out[start:stop] = rng.normal(size=(stop - start, 150, 3))
        out.flush()
        del out
    return path


def explain_child(run: Path, data: Path, method: str, batch: int, out: Path,
                  engine: tuple[str, ...] = ()) -> dict:
    """Run ``xai explain --input`` in a child: its wall time, peak RSS (of the child itself: Ray's
    worker processes are not counted) and rate.

    The rate is the slope of the child's progress from its first update at a quarter of the rows
    to its last, timed by the child's own clock: each progress line gives ``done`` and the rate
    since the first batch, so ``(done - first batch) / rate`` is its time since that batch.
    Start-up, warm-up and a Ray task's first results (4 batches arriving at once) stay out of it,
    and so does the final table export."""
    option = ["--option", f"integrated-gradients.n_steps={IG_STEPS}"] \
        if method == "integrated-gradients" else []
    option += list(engine)
    command = [sys.executable, "-m", "xaicore.cli", "explain", "--run", str(run), "--input",
               str(data), "--method", method, "--batch-size", str(batch), "--out", str(out),
               "--force", "--device", "cpu", *option]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "r = subprocess.run(sys.argv[1:], stderr=subprocess.PIPE, text=True); "
            "sys.stderr.write(r.stderr); "
            "print(r.returncode, time.perf_counter() - t, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code, *command], env=env, check=True,
                          capture_output=True, text=True)
    line = done.stdout.split()
    points = [(int(rows), float(rate.replace(",", ""))) for rows, rate in
              re.findall(r"explained (\d+)/\d+ rows\s+([\d,]+) rows/s", done.stderr)]
    points = [(rows, (rows - min(batch, rows)) / rate) for rows, rate in points if rate > 0]
    if line[0] != "0" or len(points) < 2:
        raise SystemExit(f"xai explain failed for {method} on {data}:\n{done.stderr[-2000:]}")
    rows0, t0 = next(p for p in points if p[0] >= points[-1][0] / 4)
    rows1, t1 = points[-1]
    return {"seconds": round(float(line[1]), 1), "peak_rss_mb": int(line[2]) / 1024,
            "rows_per_s": round((rows1 - rows0) / (t1 - t0), 1)}


def plain_rows_per_second(run: Path, batch: int, n_batches: int = 40) -> float:
    """Rows per second of plain forward+backward passes of the same model and batch size."""
    import torch

    from xaicore.models.checkpoints import load_run
    from xaicore.models.devices import backward_safe

    torch.set_num_threads(1)
    model = load_run(run, "cpu")
    x = torch.randn(batch, 150, 3)
    start = time.perf_counter()
    for _ in range(n_batches):
        with torch.enable_grad(), backward_safe(model):
            points = x.detach().requires_grad_(True)
            logits = model.module(points)
            torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), points)
    return n_batches * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 50_000, 200_000],
                        help="N for gradcam")
    parser.add_argument("--ig-sizes", type=int, nargs="*", default=[10_000, 50_000, 200_000],
                        help="N for integrated-gradients (32 steps: about 42 rows/s here, so "
                             "200,000 take 80 minutes)")
    parser.add_argument("--ray-n", type=int, default=20_000, help="N for local against ray (0: "
                        "skip)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="measure every ratio this many "
                        "times (the engines side by side in each) and print their medians")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/xai-scale"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    run = make_run(args.workdir)
    jobs = [(n, "gradcam") for n in args.sizes] + \
        [(n, "integrated-gradients") for n in args.ig_sizes]
    ratios: dict[str, list[float]] = {}
    for n, method in jobs:
        data = make_input(args.workdir, n)
        for _ in range(args.repeats):
            before = plain_rows_per_second(run, args.batch)
            result = explain_child(run, data, method, args.batch, args.workdir / f"out-{n}")
            after = plain_rows_per_second(run, args.batch)
            passes = IG_STEPS if method == "integrated-gradients" else 1
            rate = result["rows_per_s"] * passes
            ratio = rate / ((before + after) / 2)
            ratios.setdefault(f"{method} {n}", []).append(ratio)
            print(json.dumps({"n": n, "method": method, **result,
                              "plain_rows_per_s": [round(before, 1), round(after, 1)],
                              "ratio_to_plain": round(ratio, 3),
                              "ratio_to_faster_plain": round(rate / max(before, after), 3)}),
                  flush=True)
    if args.ray_n:
        data = make_input(args.workdir, args.ray_n)
        for _ in range(args.repeats):  # the three engines side by side in each repeat
            rates = {}
            for label, engine in (("local", ("--engine", "local")),
                                  ("ray-1", ("--engine", "ray", "--workers", "1")),
                                  ("ray-2", ("--engine", "ray", "--workers", "2"))):
                result = explain_child(run, data, "gradcam", args.batch,
                                       args.workdir / "out-ray", engine)
                rates[label] = result["rows_per_s"]
                print(json.dumps({"n": args.ray_n, "engine": label, **result}), flush=True)
            pair = {"ray_1_worker_to_local": rates["ray-1"] / rates["local"],
                    "ray_2_workers_to_1": rates["ray-2"] / rates["ray-1"]}
            for key, value in pair.items():
                ratios.setdefault(key, []).append(value)
            print(json.dumps({k: round(v, 3) for k, v in pair.items()}), flush=True)
    if args.repeats > 1:
        print(json.dumps({key: {"median": round(float(np.median(v)), 3),
                                "all": [round(x, 3) for x in v]} for key, v in ratios.items()}))
    print(f"peak RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          f" MB")


if __name__ == "__main__":
    main()
