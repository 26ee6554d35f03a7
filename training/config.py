"""Typed training configs: a preset, a JSON file and `--set KEY=JSON` overrides, loaded into the
frozen dataclasses beside each trainer.

Every trainer's config is a dataclass of three sections, `data` (`Datasets`), `model` and
`train`, each a dataclass with a reason on every field; its named presets live in a `PRESETS`
dict beside it, and the one named after the model is a run's default (the config class's own
defaults, but for keyframes, whose stage 1 stops at step 8,780). A JSON file (`--config`) is
loaded into the dataclasses, every key it leaves out taking its section's default (a model
section's defaults are its constructor's, a dataset's `DatasetSpec`'s: what a key left out of
the JSON configs always meant); each `--set a.b.c=JSON` then sets one value (or one whole
section). A key the dataclasses do not have, or a value of the wrong type, is one `InputError`
that names it. `as_dict` gives back the JSON that loads to the same config (what
`train_log.json` records).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from reelsmith.errors import InputError
from reelsmith.world.dataset import DatasetSpec

Config = TypeVar("Config")


@dataclasses.dataclass(frozen=True)
class Datasets:
    """The two storyworld datasets of a run (`reelsmith.world.dataset.DatasetSpec` each)."""

    train: DatasetSpec  # what the model learns from
    held_out: DatasetSpec  # other seeds: the held-out numbers in train_log.json


def from_dict(cls: type[Config], values: Any, where: str = "") -> Config:
    """A `cls` built from `values` (nested dicts, as JSON gives them): each key given sets its
    field (a nested dataclass is built the same way, from its own defaults), every other field
    keeps `cls`'s default.

    Raises:
        InputError: a key `cls` has no field for, a value of the wrong type, or a required
            field left out, named by its dotted path (`where` is the path of `cls`, e.g.
            "train.").
    """
    section = where.rstrip(".") or "the config"
    if not isinstance(values, Mapping):
        raise InputError(f"{section} must be a JSON object, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            raise InputError(f"no config key '{where}{key}' ({section} has {', '.join(fields)})")
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in values:
            raise InputError(f"{section} needs '{name}'")
    hints = typing.get_type_hints(cls)
    given = {key: checked(value, hints[key], where + key) for key, value in values.items()}
    return built(cls, given, section)


def with_value(config: Config, path: list[str], value: Any, where: str = "") -> Config:
    """`config` with the field at dotted `path` set to `value`; a section given as a JSON
    object is built anew from it (`from_dict`), as a whole."""
    key, rest = path[0], path[1:]
    names = [f.name for f in dataclasses.fields(config)]
    if key not in names:
        section = where.rstrip(".") or "the config"
        raise InputError(f"no config key '{where}{key}' ({section} has {', '.join(names)})")
    current = getattr(config, key)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise InputError(f"'{where}{key}' is a value, not a section")
        new = with_value(current, rest, value, f"{where}{key}.")
    else:
        new = checked(value, typing.get_type_hints(type(config))[key], where + key)
    return built(type(config), {**vars_of(config), key: new}, where.rstrip(".") or "config")


def built(cls: type[Config], values: dict, section: str) -> Config:
    """`cls(**values)`, its own checks' errors (DatasetSpec's) as InputErrors naming it."""
    try:
        return cls(**values)
    except (InputError, TypeError, ValueError) as exc:
        raise InputError(f"{section}: {exc}") from None


def vars_of(config: Any) -> dict:
    """A dataclass instance's fields as a dict, one level deep (nested sections kept as they
    are, unlike `dataclasses.asdict`)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def checked(value: Any, hint: Any, path: str) -> Any:
    """`value` as the field annotated `hint` holds it (an int for a float field becomes a
    float, a list for a tuple a tuple), or an InputError naming `path`."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    if value is None and type(None) in options:
        return None
    kind = next(o for o in options if o is not type(None))
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value, path + ".")
    origin = typing.get_origin(kind) or kind
    if origin is bool:
        ok = isinstance(value, bool)
    elif origin is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif origin is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif origin is str:
        ok = isinstance(value, str)
    elif origin is tuple:
        ok = isinstance(value, list | tuple)
        value = tuple(value) if ok else value
    else:
        ok = True
    if not ok:
        name = getattr(origin, "__name__", str(origin))
        raise InputError(f"{path} must be of type {name}, got {value!r}")
    return value


def overridden(config: Config, items: list[str]) -> Config:
    """`config` with each `KEY=JSON` of `items` (`--set`) written over it, in order."""
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key or "" in key.split("."):
            raise InputError(f"--set {item}: write KEY=JSON, e.g. train.steps=100")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"--set {item}: the value is not JSON ({err.msg})") from None
        try:
            config = with_value(config, key.split("."), value)
        except InputError as exc:
            raise InputError(f"--set {item}: {exc}") from None
    return config


def from_file(cls: type[Config], path: Path) -> Config:
    """A JSON config file loaded into `cls` (`from_dict`: what it leaves out, the defaults)."""
    try:
        values = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise InputError(f"--config {path}: cannot read it ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--config {path}: not a JSON file ({exc})") from None
    try:
        return from_dict(cls, values)
    except InputError as exc:
        raise InputError(f"--config {path}: {exc}") from None


def load_config(
    cls: type[Config],
    presets: Mapping[str, Config],
    preset: str,
    path: Path | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """The run's config: the file at `path` loaded into `cls`, or else the named preset; then
    `overrides` (`--set KEY=JSON`) over it.

    Raises:
        InputError: an unknown preset, an unreadable file, or a key or value that does not fit.
    """
    if path is not None:
        config = from_file(cls, path)
    elif preset in presets:
        config = presets[preset]
    else:
        raise InputError(f"no preset '{preset}' here; the presets are {', '.join(presets)}")
    return overridden(config, overrides or [])


def as_dict(config: Any) -> dict:
    """The config as JSON values (tuples as lists): what `from_dict` loads back to `config`."""
    return json.loads(json.dumps(dataclasses.asdict(config)))
