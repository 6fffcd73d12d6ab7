"""Start-up time of `vmr --help` and `vmr status` against `python -c "import click"`.

    python bench/startup.py [--runs 15] [--library DIR]

Runs the three commands interleaved, takes the median of each, prints the
ratios.  Target: both within 1.5x of importing click.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--library", default=None, help="library for vmr status (default: $VMR_LIBRARY)")
    args = parser.parse_args()
    lib = ["--library", args.library] if args.library else []
    commands = {
        "import click": [sys.executable, "-c", "import click"],
        "vmr --help": [sys.executable, "-m", "vmr_cli", "--help"],
        "vmr status": [sys.executable, "-m", "vmr_cli", *lib, "status"],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["import click"]
    print(json.dumps({"median_s": {k: round(v, 4) for k, v in med.items()},
                      "ratio": {k: round(v / base, 3) for k, v in med.items() if k != "import click"}},
                     indent=2))


if __name__ == "__main__":
    main()
