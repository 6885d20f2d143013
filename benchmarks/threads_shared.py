"""Streaming on a shared machine: torch's default threads against ``--threads auto``, idle and loaded.

``xai explain --input`` streams gradcam over a synthetic ``[N, 150, 3]`` input (the hybrid of
``dataset_scale.py``) in a child process, with ``--threads 0`` (torch's default: one thread per
core), ``--threads auto`` (``xaicore.models.devices.choose_threads``) and ``--threads 1``, first on
the machine as it is ("idle": nothing of this script's runs beside it), then beside ``--competitors``
CPU-bound processes (a Python busy loop each) started before it; each setting's idle and loaded runs
follow each other, so the load the machine carries from elsewhere is alike in both. The rate is the
slope of the child's own progress from a quarter of its rows to its last update (start-up and
warm-up left out); a child still running ``--max-seconds`` after its first progress line is killed
and rated on the rows it explained by then.

``share`` is the rows/s a fair share of the machine gives: a setting's idle rows/s x the CPUs
available / the processes competing (this one and the competitors). ``rows_per_cpu_s`` divides the
rows of the rated stretch by the CPU time the child used meanwhile (``/proc/PID/stat``): it says
how well the CPU time a process gets is used, whatever share of the machine it gets; threads that
wait for a busy CPU burn CPU time spinning, and it falls. The load the machine carried
from elsewhere (``/proc/loadavg``) is printed beside every run: on a machine shared with other work
"idle" is only as idle as that.

Usage: .venv/bin/python benchmarks/threads_shared.py [--n 20000] [--competitors 1] [--repeats 2]
[--max-seconds 90] [--workdir /tmp/xai-threads]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dataset_scale import make_input, make_run

SETTINGS = ("0", "auto", "1")
BUSY_LOOP = "while True: pass"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:4])


def chosen_auto() -> int:
    """What ``--threads auto`` chooses now, asked in a child as the explain child would."""
    code = "from xaicore.models.devices import choose_threads; print(choose_threads())"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout)


def explain_rate(run: Path, data: Path, threads: str, batch: int, out: Path,
                 max_seconds: float) -> dict:
    """``xai explain --input`` with ``--threads threads``: its rows/s from its own progress."""
    command = [sys.executable, "-m", "xaicore.cli", "explain", "--run", str(run), "--input",
               str(data), "--method", "gradcam", "--batch-size", str(batch), "--out", str(out),
               "--force", "--device", "cpu", "--threads", threads]
    log = out.parent / f"{out.name}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    samples: list[tuple[int, float]] = []  # (rows explained, CPU seconds used) while it runs
    with open(log, "w") as stderr:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        deadline = None  # max_seconds from its first progress line (start-up is not rated)
        while child.poll() is None and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.5)
            done = re.findall(r"explained (\d+)/", log.read_text())
            cpu = cpu_seconds(child.pid)
            if done and cpu is not None:
                samples.append((int(done[-1]), cpu))
                deadline = deadline or time.monotonic() + max_seconds
        stopped = child.poll() is None
        if stopped:
            child.kill()  # its progress so far is all the rate needs
            child.wait()
    text = log.read_text()
    points = [(int(rows), float(rate.replace(",", ""))) for rows, rate in
              re.findall(r"explained (\d+)/\d+ rows\s+([\d,]+) rows/s", text)]
    points = [(rows, (rows - min(batch, rows)) / rate) for rows, rate in points if rate > 0]
    if len(points) < 2 or (not stopped and child.returncode != 0):
        raise SystemExit(f"xai explain --threads {threads} failed:\n{text[-2000:]}")
    rows0, t0 = next(p for p in points if p[0] >= points[-1][0] / 4)
    rows1, t1 = points[-1]
    if t1 <= t0:
        rows0, t0 = points[0]
    (r0, c0), (r1, c1) = samples[0], samples[-1]
    return {"rows_per_s": round((rows1 - rows0) / (t1 - t0), 1), "rows": rows1,
            "rows_per_cpu_s": round((r1 - r0) / (c1 - c0), 1) if c1 > c0 else None,
            "stopped_after_s": max_seconds if stopped else None}


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of process ``pid`` so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="rows streamed")
    parser.add_argument("--competitors", type=int, default=1, help="CPU-bound processes beside it")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--max-seconds", type=float, default=90.0,
                        help="stop a child after this long and rate the rows it explained")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/xai-threads"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    run = make_run(args.workdir)
    data = make_input(args.workdir, args.n)
    from xaicore.models.devices import available_cpus

    cpus = available_cpus()
    rates: dict[str, list[float]] = {}
    per_cpu: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for threads in SETTINGS:
            for condition in ("idle", "loaded"):  # back to back: the same background for both
                busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
                        for _ in range(args.competitors if condition == "loaded" else 0)]
                try:
                    time.sleep(2.0 if busy else 0.0)  # the competitors run before xai starts
                    auto = chosen_auto() if threads == "auto" else None
                    before = load()
                    result = explain_rate(run, data, threads, args.batch,
                                          args.workdir / f"out-{condition}-{threads}",
                                          args.max_seconds)
                finally:
                    for process in busy:
                        process.kill()
                        process.wait()
                rates.setdefault(f"{condition} {threads}", []).append(result["rows_per_s"])
                if result["rows_per_cpu_s"]:
                    per_cpu.setdefault(f"{condition} {threads}", []).append(
                        result["rows_per_cpu_s"])
                print(json.dumps({"condition": condition, "threads": threads, "auto_chose": auto,
                                  **result, "loadavg_before": before}), flush=True)
    median = {key: float(np.median(v)) for key, v in rates.items()}
    processes = 1 + args.competitors
    summary = {"cpus": cpus, "processes_competing_when_loaded": processes,
               "median_rows_per_s": {k: round(v, 1) for k, v in median.items()}}
    for threads in SETTINGS:
        share = median[f"idle {threads}"] * cpus / processes
        summary[f"threads {threads}: loaded / idle share"] = round(
            median[f"loaded {threads}"] / share, 3)
    for threads in SETTINGS:
        pair = [float(np.median(per_cpu.get(f"{c} {threads}", [np.nan]))) for c in ("idle", "loaded")]
        summary[f"threads {threads}: rows per CPU-second idle, loaded"] = [round(v, 1) for v in pair]
    summary["loaded: auto / default"] = round(median["loaded auto"] / median["loaded 0"], 2)
    summary["idle: auto / default"] = round(median["idle auto"] / median["idle 0"], 2)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
