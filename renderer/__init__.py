"""Diffusion pipelines (keyframes, shots) and movie assembly."""
