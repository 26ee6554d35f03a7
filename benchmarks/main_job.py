"""The README's main job, timed: `reelsmith make` on the built-in models, wall time and peak memory.

    python benchmarks/main_job.py [--out DIR] [--json PATH]
    python benchmarks/main_job.py --against OTHER/bin/python [--rounds 3]


Runs the README's command (the same prompt, `--shots 6`) as a subprocess in a fresh run
directory and reports its wall-clock seconds, the peak resident memory of the process tree
(`getrusage(RUSAGE_CHILDREN).ru_maxrss`: the largest single process, which is the one running
the models) and what it made: the number of shots and the movie's duration, read back from
`movie.mp4` with PyAV. The targets: at least 6 shots and 15 seconds, at most 120 s and 4 GB.
On a shared machine the wall time depends on what else runs; run it on an idle one.

`--against PYTHON` times another installation side by side (e.g. a virtual environment with an
older checkout installed): the two run in turn, `--rounds` times each, and the report gives each
one's median wall time, their ratio (this one over the other), and whether both made the same
movie.mp4, byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
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


def timed_make(python: str, run_dir: Path) -> tuple[float, str]:
    """One main job with `python`'s reelsmith: (wall seconds, sha256 of movie.mp4)."""
    command = [python, "-m", "reelsmith", "make", PROMPT, "--shots", "6", "-o", str(run_dir)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{python}: reelsmith make failed: {done.stderr.strip()[-500:]}")
    return wall, hashlib.sha256((run_dir / "movie.mp4").read_bytes()).hexdigest()


def side_by_side(other: str, rounds: int, json_path: Path | None) -> None:
    walls: dict[str, list[float]] = {"this": [], "other": []}
    movies: dict[str, set[str]] = {"this": set(), "other": set()}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(rounds):
            for name, python in (("other", other), ("this", sys.executable)):
                wall, movie = timed_make(python, Path(tmp) / f"{name}-{k}")
                walls[name].append(wall)
                movies[name].add(movie)
    this, that = (statistics.median(walls[n]) for n in ("this", "other"))
    report = {
        "rounds": rounds,
        "this_wall_seconds": [round(w, 1) for w in walls["this"]],
        "other_wall_seconds": [round(w, 1) for w in walls["other"]],
        "median_this_over_other": round(this / that, 3),
        "same_movie_bytes": len(movies["this"] | movies["other"]) == 1,
    }
    print_report(report, json_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="run directory (default: a temporary one)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--against", help="another Python whose reelsmith to time beside")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.against:
        side_by_side(args.against, args.rounds, args.json)
        return
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
