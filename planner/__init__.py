"""Screenplays in and out: the script writers, Fountain and shot-list import/export, and the
autoregressive keyframe planner."""
