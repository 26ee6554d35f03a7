"""`python -m reelsmith.training MODEL`: train one built-in model on storyworld data.

    python -m reelsmith.training MODEL [--preset NAME | --config FILE] [--set KEY=JSON ...]
        --out OUT [--data DATA] [--identity DIR] [--tokenizer DIR] [--init DIR]
        [--workers N] [--device cpu|cuda]

The config is the preset named after MODEL unless `--preset` names another of its presets or
`--config` gives a JSON file; `--set train.steps=100` then sets one value (repeatable). The
models, their presets and the commands that made the shipped weights: docs/training.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reelsmith.training import identity, keyframes, looks, motion, planner, segmenter
from reelsmith.training.common import RunOptions
from reelsmith.training.config import load_config
from reelsmith.training.motion_config import PRESETS as MOTION_PRESETS
from reelsmith.training.motion_config import MotionRunConfig


@dataclass(frozen=True)
class Trainer:
    """One model's trainer: its config class, named presets and entry point."""

    config: type  # the config dataclass a --config file loads into
    presets: Mapping[str, Any]  # named configs; the one named after the model is the default
    run: Callable[[Any, RunOptions], None]  # trains and writes the output folder


TRAINERS = {
    "identity": Trainer(identity.IdentityRunConfig, identity.PRESETS, identity.run),
    "looks": Trainer(looks.LooksRunConfig, looks.PRESETS, looks.run),
    "keyframes": Trainer(keyframes.KeyframesRunConfig, keyframes.PRESETS, keyframes.run),
    "planner": Trainer(planner.PlannerRunConfig, planner.PRESETS, planner.run),
    "motion": Trainer(MotionRunConfig, MOTION_PRESETS, motion.run),
    "segmenter": Trainer(segmenter.SegmenterRunConfig, segmenter.PRESETS, segmenter.run),
}


def parser() -> argparse.ArgumentParser:
    presets = "; ".join(f"{m}: {', '.join(t.presets)}" for m, t in TRAINERS.items())
    p = argparse.ArgumentParser(
        prog="python -m reelsmith.training",
        description="Train a built-in reelsmith model on storyworld data (docs/training.md).",
    )
    p.add_argument("model", choices=tuple(TRAINERS))
    which = p.add_mutually_exclusive_group()
    which.add_argument("--preset", help=f"a named config (default: the model's name). {presets}")
    which.add_argument("--config", type=Path, help="a JSON config file instead of a preset")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="set one config value, e.g. train.steps=100 (repeatable)",
    )
    p.add_argument("--out", type=Path, required=True, help="the trained model's folder")
    p.add_argument(
        "--data", type=Path, default=Path("/tmp/reelsmith-data"), help="datasets built here"
    )
    p.add_argument("--identity", type=Path, help="identity encoder (keyframes, motion, planner)")
    p.add_argument("--tokenizer", type=Path, help="planner: keyframe pipeline folder")
    p.add_argument(
        "--init",
        type=Path,
        help="keyframes, motion: start from this pipeline folder; segmenter: add it to this "
        "motion pipeline",
    )
    p.add_argument("--workers", type=int, default=8, help="processes building datasets")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def main(argv: list[str] | None = None) -> None:
    """Parse the command line into the model's config and `RunOptions`, and train.

    Raises:
        InputError: a bad preset, config file, `--set` or option, before any work is done.
    """
    args = parser().parse_args(argv)
    trainer = TRAINERS[args.model]
    config = load_config(
        trainer.config, trainer.presets, args.preset or args.model, args.config, args.set
    )
    options = RunOptions(
        out=args.out,
        data=args.data,
        identity=args.identity,
        tokenizer=args.tokenizer,
        init=args.init,
        workers=args.workers,
        device=args.device,
    )
    trainer.run(config, options)
