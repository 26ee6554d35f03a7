"""Where the renderer's shipped weights live (`renderer/weights/`, package data): paths only,
so that checking a choice of models needs no model code."""

from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"
IDENTITY = WEIGHTS / "identity"  # the identity encoder
LOOKS = WEIGHTS / "looks"  # the looks reader
KEYFRAMES = WEIGHTS / "keyframes"  # the keyframe pipeline (tokenizer + decoder)
MOTION = WEIGHTS / "motion"  # the built-in shot model's pipeline
SEGMENTER = MOTION / "segmenter"  # the character segmenter, a component of MOTION
