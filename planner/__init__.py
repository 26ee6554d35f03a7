"""Screenplays: the schema, the script writers, Fountain and shot-list import/export."""

from reelsmith.planner.screenplay import (
    Action,
    Blocking,
    CameraMove,
    Character,
    DialogueLine,
    Scene,
    Screenplay,
    Setting,
    Shot,
    ShotSize,
    TimeOfDay,
    Transition,
)

__all__ = [
    "Action",
    "Blocking",
    "CameraMove",
    "Character",
    "DialogueLine",
    "Scene",
    "Screenplay",
    "Setting",
    "Shot",
    "ShotSize",
    "TimeOfDay",
    "Transition",
]
