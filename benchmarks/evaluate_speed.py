"""Wall time of the default `xai evaluate` on a run, with each worker count, interleaved in one run.

    .venv/bin/python benchmarks/evaluate_speed.py --run runs/gunpoint [--workers 2 1] [--repeats 3]

The run is copied to a temporary folder (its own evaluation.csv stays untouched). Each repeat runs
the command once per worker count, so machine noise hits every count alike; medians and the
ratio of each count's time to the first count's are printed. The tables of one worker count are
checked to be identical across repeats, and the largest difference between counts is printed:
the workers run one torch thread each, one process (--workers 1) torch's default thread count,
whose float rounding differs (randomisation correlations move in the 5th decimal).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

XAI = Path(sys.executable).parent / "xai"


def timed(run: Path, workers: int) -> tuple[float, pd.DataFrame]:
    """Seconds of one default `xai evaluate --workers N` (a fresh process) and its table."""
    start = time.perf_counter()
    subprocess.run([str(XAI), "evaluate", "--run", str(run), "--force", "--workers", str(workers)],
                   check=True, capture_output=True)
    return time.perf_counter() - start, pd.read_csv(run / "evaluation.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/gunpoint"))
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[int, list[float]] = {w: [] for w in args.workers}
    tables: dict[int, list[pd.DataFrame]] = {w: [] for w in args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(args.run, run)
        for repeat in range(args.repeats):
            for workers in args.workers:
                seconds, table = timed(run, workers)
                times[workers].append(seconds)
                tables[workers].append(table.set_index("method"))
                print(f"repeat {repeat + 1}, {workers} workers: {seconds:.1f} s", flush=True)
    for same in tables.values():
        for table in same[1:]:
            pd.testing.assert_frame_equal(same[0], table, check_exact=True)
    first = statistics.median(times[args.workers[0]])
    print(f"\n{'workers':>8}{'median s':>10}{'min s':>8}{'max s':>8}{'x first':>9}")
    for workers, values in times.items():
        median = statistics.median(values)
        print(f"{workers:>8}{median:>10.1f}{min(values):>8.1f}{max(values):>8.1f}"
              f"{median / first:>9.2f}")
    reference = tables[args.workers[0]][0]
    numbers = reference.select_dtypes("number").columns
    for workers in args.workers[1:]:
        other = tables[workers][0].loc[reference.index, numbers]
        gap = (other - reference[numbers]).abs().max()
        print(f"largest difference, {workers} vs {args.workers[0]} workers: {gap.max():.2g} "
              f"({gap.idxmax()}); verdicts equal: "
              f"{(tables[workers][0].loc[reference.index, 'verdict'] == reference['verdict']).all()}")
    print(f"{len(reference)} methods; every repeat of a worker count gave the same table")


if __name__ == "__main__":
    main()
