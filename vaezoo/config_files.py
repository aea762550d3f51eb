"""`vaezoo train --config FILE`: a TOML, YAML or JSON file holding what the command line can say.

Keys are the keyword arguments of `vaezoo.train` (variant, hparams, dataset, seed, precision,
trackers...); a run's own config.json is a valid file, its recorded-only keys (versions, input
shape, world size) accepted and not applied. A config file is untrusted input: it is read by
parsers that cannot execute anything (tomllib, yaml.safe_load, json), and every key is checked
for its name, type and range before anything runs. Torch-free. See docs/config.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaezoo.errors import UnknownNameError, UsageError
from vaezoo.registry import Registry

#: Larger files are refused unread: a config is a few hundred bytes.
MAX_BYTES = 1 << 20
SUFFIXES = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".json": "JSON"}


def _string(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _whole(low: int | None = None) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and (low is None or value >= low)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(_string(item) for item in value)


def _table(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


def _shape(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(_whole(1)(item) for item in value)


@dataclass(frozen=True)
class Key:
    """One key a config file may hold: what its value must be, and whether training uses it."""

    check: Callable[[Any], bool]
    expected: str
    applied: bool = True  # False: recorded in config.json for information, accepted and not used


KEYS: dict[str, Key] = {
    "variant": Key(_string, "a variant name"),
    "hparams": Key(_table, "a table of hyperparameters"),
    "parts": Key(lambda v: _table(v) and all(_string(n) for n in v.values()), "a table of part kind = name"),
    "parent": Key(lambda v: _string(v) or _table(v), "the finished run a second stage trains on"),
    "dataset": Key(_string, "a dataset name"),
    "data_dir": Key(_string, "a folder"),
    "out": Key(_string, "a folder"),
    "overwrite": Key(_flag, "true or false"),
    "seed": Key(_whole(), "a whole number"),
    "max_steps": Key(_optional(_whole(1)), "a whole number of at least 1, or null"),
    "device": Key(_string, "auto, cpu, cuda or cuda:N"),
    "precision": Key(_string, "32, bf16 or 16"),
    "trackers": Key(_names, "a list of tracker names"),
    "checkpoint_every": Key(_optional(_whole(1)), "a whole number of at least 1, or null"),
    "skip_nonfinite": Key(_flag, "true or false"),
    "dist_timeout": Key(_seconds, "a number of seconds above 0"),
    "keep_checkpoints": Key(_optional(_whole(1)), "a whole number of at least 1, or null"),
    # what config.json records about how a run went; not settings
    "input_shape": Key(_shape, "three positive whole numbers", applied=False),
    "vaezoo_version": Key(_string, "a version", applied=False),
    "torch_version": Key(_string, "a version", applied=False),
    "python_version": Key(_string, "a version", applied=False),
    "world_size": Key(_whole(1), "a whole number of at least 1", applied=False),
    "global_batch_size": Key(_whole(1), "a whole number of at least 1", applied=False),
    "plugin": Key(_string, "a plugin name", applied=False),
    "plugin_distribution": Key(_string, "a distribution name", applied=False),
    "plugin_version": Key(_string, "a version", applied=False),
}


def parse(path: Path) -> dict[str, Any]:
    """The file's top-level table, read by a parser that cannot execute anything."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"--config {path}: the name must end in {', '.join(SUFFIXES)}")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise UsageError(f"--config {path} is larger than {MAX_BYTES // 1024} KiB; a config file is a few lines")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path} cannot be read: {exc}") from None
    try:
        data = _load(kind, text)
    except (ValueError, RecursionError) as exc:  # tomllib/json errors are ValueErrors; YAML's are turned into one
        raise UsageError(f"--config {path} is not valid {kind}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path} must hold a table of settings (key = value), not {type(data).__name__}")
    return data


def _load(kind: str, text: str) -> Any:
    if kind == "JSON":
        return json.loads(text)
    if kind == "TOML":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        return tomllib.loads(text)
    import yaml

    try:
        return yaml.safe_load(text)  # plain data only: no tags that build Python objects
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def read_train_config(path: Path, registry: Registry) -> dict[str, Any]:
    """The settings of a config file, as keyword arguments of `vaezoo.train` (recorded-only keys dropped).

    An unknown key is one error with a suggestion; a value of the wrong type or range names the key;
    the hyperparameters are checked against the file's variant.
    """
    path = Path(path)
    data = parse(path)
    settings: dict[str, Any] = {}
    for key, value in data.items():
        spec = KEYS.get(key)
        if spec is None:
            raise UnknownNameError("key", str(key), KEYS, where=str(path))
        if key == "precision" and value in (32, 16) and not isinstance(value, bool):
            value = str(value)  # `precision = 16` in TOML or YAML is a number
        if not spec.check(value):
            raise UsageError(f"--config {path}: '{key}' must be {spec.expected}, got {value!r}")
        if spec.applied and not (key == "parent" and isinstance(value, dict)):  # config.json records the
            settings[key] = value  # parent's metadata, not where it is: name the run with --parent
    variant = settings.get("variant")
    if variant is not None and variant not in registry.names("variant"):
        raise UnknownNameError("variant", variant, registry.names("variant"), where=str(path))
    if variant is not None and "hparams" in settings:
        from vaezoo.variant import Recipe

        schema = Recipe.of(registry.variant(variant), registry, settings.get("parts")).schema
        for name in settings["hparams"]:
            if name not in schema:
                raise UnknownNameError("option", name, [p.name for p in schema], where=f"{path} [hparams]")
        try:
            schema.resolve(settings["hparams"])
        except UsageError as exc:
            raise UsageError(f"--config {path}: {exc}") from None
    return settings


def merged_settings(settings: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The file's settings with `overrides` (the command line's) winning; hyperparameters merge by name."""
    merged = dict(settings)
    for key, value in overrides.items():
        merged[key] = {**merged.get("hparams", {}), **value} if key == "hparams" else value
    return merged
