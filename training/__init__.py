"""Training of the built-in models on storyworld data: `python -m reelsmith.training MODEL`.

One module per model (identity, looks, keyframes, planner, motion, segmenter), each with its
typed config dataclasses and named presets; `common` and `data` hold what they share, `config`
loads presets, JSON files and `--set` overrides, and `cli` dispatches. The runtime never
imports this package. The commands that reproduce the shipped weights: docs/training.md.
"""
