"""Streaming on a shared machine: torch's default threads against ``--threads auto``, as load comes and goes.

``xai explain --input`` streams gradcam over a synthetic ``[N, 150, 3]`` input (the hybrid of
``dataset_scale.py``) in a child process, in three cases (``--cases``):

- ``start``: with ``--threads 0`` (torch's default: one thread per core), ``--threads auto``
  (``xaicore.models.devices.choose_threads``) and ``--threads 1``, first on the machine as it is
  ("idle": nothing of this script's runs beside it), then beside ``--competitors`` CPU-bound
  processes (a Python busy loop each) started before it; each setting's idle and loaded runs
  follow each other, so the load the machine carries from elsewhere is alike in both.
- ``after-busy``: ``--threads 0`` and ``auto`` each right after the competitors have run for
  ``--busy-seconds`` and stopped: the machine is idle, but its 1-minute load average still says
  busy (the rule ``auto`` followed before it measured ``/proc/stat``; what that rule would choose
  is printed beside what ``auto`` chooses).
- ``halfway``: ``--threads 0`` and ``auto`` each started on the idle machine, the competitors
  starting once half the rows are explained; ``auto`` revisits its choice between batches
  (``devices.revisit_threads``) and its progress line says when it changes (printed as
  ``thread_changes``: rows explained, threads before, after). Rated before and after the load
  began.

The rate is the slope of the child's own progress from a quarter of its rows to its last update
(start-up and warm-up left out); a child still running ``--max-seconds`` after its first progress
line is killed and rated on the rows it explained by then. ``share`` is the rows/s a fair share of
the machine gives: a setting's idle rows/s x the CPUs available / the processes competing (this
one and the competitors). ``rows_per_cpu_s`` divides the rows of the rated stretch by the CPU time
the child used meanwhile (``/proc/PID/stat``): it says how well the CPU time a process gets is
used, whatever share of the machine it gets; threads that wait for a busy CPU burn CPU time
spinning, and it falls. The load the machine carried from elsewhere (``/proc/loadavg``) is printed
beside every run: on a machine shared with other work "idle" is only as idle as that.

Usage (from the repository root; the figures mean something only on a machine nothing else uses):
    .venv/bin/python benchmarks/threads_shared.py [--n 20000] [--competitors 1] [--repeats 2]
        [--cases start after-busy halfway] [--busy-seconds 60] [--max-seconds 90]
        [--workdir /tmp/xai-threads]
A quick check that it runs (figures meaningless):
    .venv/bin/python benchmarks/threads_shared.py --n 3000 --repeats 1 --busy-seconds 3
        --max-seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dataset_scale import make_input, make_run

SETTINGS = ("0", "auto", "1")
COMPARED = ("0", "auto")  # the settings of the after-busy and halfway cases
CASES = ("start", "after-busy", "halfway")
BUSY_LOOP = "while True: pass"
POLL_SECONDS = 0.25


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:4])


def chosen_auto() -> dict:
    """What ``--threads auto`` chooses now, and what the 1-minute load average rule would,
    asked in a child as the explain child would."""
    code = ("import json; from xaicore.models import devices as d; "
            "print(json.dumps({'auto_chose': d.choose_threads(), "
            "'load_rule_would_choose': d.threads_for(d.available_cpus() - d.busy_cpus())}))")
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     check=True).stdout)


def competitors(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
        process.wait()


def explain_rate(run: Path, data: Path, threads: str, batch: int, out: Path, max_seconds: float,
                 n: int, halfway: Callable[[], None] | None = None) -> dict:
    """``xai explain --input`` with ``--threads threads``: its rows/s from its own progress;
    ``halfway`` is called once half of the ``n`` rows are explained, and the rate is then also
    given before and after."""
    command = [sys.executable, "-m", "xaicore.cli", "explain", "--run", str(run), "--input",
               str(data), "--method", "gradcam", "--batch-size", str(batch), "--out", str(out),
               "--force", "--device", "cpu", "--threads", threads]
    log = out.parent / f"{out.name}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    samples: list[tuple[int, float]] = []  # (rows explained, CPU seconds used) while it runs
    half_rows = None  # rows explained when halfway() was called
    with open(log, "w") as stderr:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        deadline = None  # max_seconds from its first progress line (start-up is not rated)
        while child.poll() is None and (deadline is None or time.monotonic() < deadline):
            time.sleep(POLL_SECONDS)
            done = re.findall(r"explained (\d+)/", log.read_text())
            cpu = cpu_seconds(child.pid)
            if done and cpu is not None:
                samples.append((int(done[-1]), cpu))
                deadline = deadline or time.monotonic() + max_seconds
                if halfway is not None and half_rows is None and int(done[-1]) >= n / 2:
                    halfway()
                    half_rows = int(done[-1])
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
    (r0, c0), (r1, c1) = samples[0], samples[-1]
    result = {"rows_per_s": slope(points, points[-1][0] / 4, points[-1][0]), "rows": points[-1][0],
              "rows_per_cpu_s": round((r1 - r0) / (c1 - c0), 1) if c1 > c0 else None,
              "stopped_after_s": max_seconds if stopped else None,
              "thread_changes": [[int(r), int(a), int(b)] for r, a, b in re.findall(
                  r"explained (\d+)/\d+ rows[^\r\n]*?threads (\d+) -> (\d+)", text)]}
    if half_rows is not None:
        result["rows_per_s_before_halfway"] = slope(points, points[-1][0] / 4, half_rows)
        result["rows_per_s_after_halfway"] = slope(points, half_rows, points[-1][0])
    return result


def slope(points: list[tuple[int, float]], first: float, last: float) -> float | None:
    """Rows/s between the first progress point at ``first`` rows or more and the last at
    ``last`` or fewer (None when they are not two points apart)."""
    inside = [p for p in points if first <= p[0] <= last]
    if len(inside) < 2 or inside[-1][1] <= inside[0][1]:
        return None
    (rows0, t0), (rows1, t1) = inside[0], inside[-1]
    return round((rows1 - rows0) / (t1 - t0), 1)


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of process ``pid`` so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values: list) -> float:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="rows streamed")
    parser.add_argument("--competitors", type=int, default=1, help="CPU-bound processes beside it")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--busy-seconds", type=float, default=60.0,
                        help="after-busy: how long the competitors run before the command")
    parser.add_argument("--max-seconds", type=float, default=90.0,
                        help="stop a child after this long and rate the rows it explained")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/xai-threads"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    run = make_run(args.workdir)
    data = make_input(args.workdir, args.n)
    from xaicore.models.devices import available_cpus

    cpus = available_cpus()
    processes = 1 + args.competitors
    results: dict[str, list[dict]] = {}

    def measure(case: str, threads: str, halfway: Callable[[], None] | None = None) -> None:
        chosen = chosen_auto() if threads == "auto" else {}
        before = load()
        result = explain_rate(run, data, threads, args.batch, args.workdir / f"out-{case}-{threads}",
                              args.max_seconds, args.n, halfway)
        results.setdefault(f"{case} {threads}", []).append({**result, **chosen})
        print(json.dumps({"case": case, "threads": threads, **chosen, **result,
                          "loadavg_before": before}), flush=True)

    for _ in range(args.repeats):
        if "start" in args.cases:
            for threads in SETTINGS:
                for condition in ("idle", "loaded"):  # back to back: the same background for both
                    busy = competitors(args.competitors if condition == "loaded" else 0)
                    try:
                        time.sleep(2.0 if busy else 0.0)  # the competitors run before xai starts
                        measure(condition, threads)
                    finally:
                        stop(busy)
        if "after-busy" in args.cases:
            for threads in COMPARED:
                busy = competitors(args.competitors)
                try:
                    time.sleep(args.busy_seconds)
                finally:
                    stop(busy)  # a busy command has just finished: the machine is idle
                measure("after-busy", threads)
        if "halfway" in args.cases:
            for threads in COMPARED:
                started: list[subprocess.Popen] = []

                def start_load(started: list[subprocess.Popen] = started) -> None:
                    started.extend(competitors(args.competitors))

                try:
                    measure("halfway", threads, start_load)
                finally:
                    stop(started)

    rates = {key: median([r["rows_per_s"] for r in runs]) for key, runs in results.items()}
    summary: dict = {"cpus": cpus, "processes_competing_when_loaded": processes,
                     "median_rows_per_s": {k: round(v, 1) for k, v in rates.items()}}
    if "start" in args.cases:
        for threads in SETTINGS:
            share = rates[f"idle {threads}"] * cpus / processes
            summary[f"threads {threads}: loaded / idle share"] = ratio(rates[f"loaded {threads}"],
                                                                       share)
        for threads in SETTINGS:
            summary[f"threads {threads}: rows per CPU-second idle, loaded"] = [
                round(median([r["rows_per_cpu_s"] for r in results[f"{c} {threads}"]]), 1)
                for c in ("idle", "loaded")]
        summary["loaded: auto / default"] = ratio(rates["loaded auto"], rates["loaded 0"])
        summary["idle: auto / default"] = ratio(rates["idle auto"], rates["idle 0"])
    if "after-busy" in args.cases:
        summary["after busy: auto / default"] = ratio(rates["after-busy auto"],
                                                      rates["after-busy 0"])
        summary["after busy: auto chose, the load average rule would choose"] = [
            [r["auto_chose"], r["load_rule_would_choose"]] for r in results["after-busy auto"]]
    if "halfway" in args.cases:
        after = {t: median([r.get("rows_per_s_after_halfway") for r in results[f"halfway {t}"]])
                 for t in COMPARED}
        before = {t: median([r.get("rows_per_s_before_halfway") for r in results[f"halfway {t}"]])
                  for t in COMPARED}
        summary["halfway: rows/s before, after the load began"] = {
            t: [round(before[t], 1), round(after[t], 1)] for t in COMPARED}
        summary["halfway: after the load began, auto / default"] = ratio(after["auto"], after["0"])
        for t in COMPARED:
            summary[f"halfway threads {t}: after / fair share of before"] = ratio(
                after[t], before[t] * cpus / processes)
        summary["halfway auto: thread changes (rows, before, after)"] = [
            r["thread_changes"] for r in results["halfway auto"]]
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
