"""Storyworld: the procedural world the built-in models are trained on and judged against."""
