"""The README's main job, timed: `reelsmith make` on the built-in models, wall time and peak memory.

    python benchmarks/main_job.py [--out DIR] [--json PATH]

Runs the README's command (the same prompt, `--shots 6`) as a subprocess in a fresh run
directory and reports its wall-clock seconds, the peak resident memory of the process tree
(`getrusage(RUSAGE_CHILDREN).ru_maxrss`: the largest single process, which is the one running
the models) and what it made: the number of shots and the movie's duration, read back from
`movie.mp4` with PyAV. The targets: at least 6 shots and 15 seconds, at most 120 s and 4 GB.
On a shared machine the wall time depends on what else runs; run it on an idle one.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
from reporting import print_report

PROMPT = (
    "Mira, a small yellow mouse with a scarf, and Bo, a tall blue robot, cross the desert at dusk"
)
TARGETS = {"shots": 6, "seconds_of_movie": 15.0, "wall_seconds": 120.0, "peak_gb": 4.0}


def movie_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames / float(stream.average_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="run directory (default: a temporary one)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.out or Path(tmp) / "movie"
        command = [sys.executable, "-m", "reelsmith", "make", PROMPT, "--shots", "6"]
        started = time.perf_counter()
        done = subprocess.run([*command, "-o", str(run_dir)], capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"reelsmith make failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        report = {
            "command": "reelsmith make PROMPT --shots 6 -o movie",
            "wall_seconds": round(wall, 1),
            "peak_gb": round(peak_kb / 2**20, 3),
            "shots": len(list((run_dir / "shots").glob("*.mp4"))),
            "seconds_of_movie": round(movie_seconds(run_dir / "movie.mp4"), 2),
        }
    report["meets"] = {
        "shots": report["shots"] >= TARGETS["shots"],
        "seconds_of_movie": report["seconds_of_movie"] >= TARGETS["seconds_of_movie"],
        "wall_seconds": report["wall_seconds"] <= TARGETS["wall_seconds"],
        "peak_gb": report["peak_gb"] <= TARGETS["peak_gb"],
    }
    print_report(report, args.json)


if __name__ == "__main__":
    main()
