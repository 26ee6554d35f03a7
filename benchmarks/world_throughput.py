"""How fast storyworld makes training data: frames per second building a clips dataset.

    python benchmarks/world_throughput.py --frames 100000 --workers 2

Prints one line per setting with frames, seconds and frames per second (wall clock,
including writing the shards). The target is 100,000 64x64 frames in 5 minutes on a 2-core
machine, i.e. at least 333 frames/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from reelsmith.world.dataset import DatasetSpec, build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--clip-frames", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    count = args.frames // args.clip_frames
    spec = DatasetSpec(
        "clips",
        count,
        seed=0,
        resolution=args.resolution,
        clip_frames=args.clip_frames,
        shard_size=500,
    )
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        manifest = build(spec, out, workers=args.workers)
        seconds = time.perf_counter() - start
    frames = manifest["frames"]
    print(
        f"clips {args.resolution}x{args.resolution}, {args.workers} workers: "
        f"{frames} frames in {seconds:.1f} s = {frames / seconds:.0f} frames/s "
        f"(100k frames in {100_000 / (frames / seconds) / 60:.1f} min)"
    )


if __name__ == "__main__":
    main()
