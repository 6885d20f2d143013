"""Start-up time of `xai --help` and `xai list` beside bare Python and `import torch`, in one run.

Usage: .venv/bin/python benchmarks/startup.py [repeats]
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "xai --help": [str(BIN / "xai"), "--help"],
    "xai list": [str(BIN / "xai"), "list"],
    "xai list --json": [str(BIN / "xai"), "list", "--json"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def main(repeats: int = 7) -> None:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):  # interleaved, so machine noise hits every command alike
        for name, cmd in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    print(f"{'command':<28}{'median s':>10}{'x python':>10}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<28}{median:>10.3f}{median / base:>10.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
