"""The frame judge's detection threshold, read on ground truth alone.

    python benchmarks/judge_threshold.py [--count 2048] [--seed 7100] [--thresholds 0.2 0.25 0.3]

On held-out storyworld keyframes, for each threshold on the judge's centre heatmap, the share
of visible characters the judge finds with their identity, the share of its detections that
are nobody of the shot, how many characters it finds nowhere, and its errors (characters
missed or misread plus detections of nobody); each also on the same frames shifted one pixel
to the right (what should change nothing). No model of the product is run: this is a check of
the measuring instrument, and how its threshold is chosen (`FrameJudge.threshold`: the fewest
errors on the truth at seed 7100, the higher threshold on a tie).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from keyframes_quality import load_items, score_verdicts
from reporting import print_report

from reelsmith.evaluation.judges import judge_frames, load_judge
from reelsmith.world.dataset import DatasetSpec, build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=7100)
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.2, 0.25, 0.3, 0.35, 0.4, 0.45]
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    judge = load_judge("frame").to(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        build(DatasetSpec("keyframes", args.count, seed=args.seed, shard_size=512), tmp, 2)
        items = load_items(Path(tmp))
    truth = torch.from_numpy(np.stack([item["image"] for item in items]))
    report: dict = {"count": len(items), "seed": args.seed, "thresholds": {}}
    for threshold in args.thresholds:
        row = {}
        for name, frames in (("truth", truth), ("shifted", torch.roll(truth, 1, 2))):
            numbers = score_verdicts(judge_frames(judge, frames, threshold=threshold), items)
            row[name] = {
                "identity_accuracy": round(numbers["identity_accuracy"], 4),
                "false_detections": round(numbers["false_detections"], 4),
                "found_nowhere": numbers["misses"]["not_found"],
                "errors": round((1 - numbers["identity_accuracy"]) * numbers["identity_pairs"])
                + numbers["false_detection_count"],
            }
        report["thresholds"][str(threshold)] = row
    report["pairs"] = numbers["identity_pairs"]
    print_report(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
