"""Frozen dataclass configs, strict ``key=value`` overrides and the saved snapshot.

An experiment is ``CFG = replace(PARENT, name=..., <changed fields>)`` (see ``exp/``). Overrides
from the command line go through :func:`apply_overrides`, which refuses unknown keys (suggesting
close matches) and casts each value to the field's annotated type, so a typo can never silently
fall back to a default.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, TypeVar

from kagglekit.engine.settings import FitSettings
from kagglekit.io import save_json

C = TypeVar("C")


class ConfigError(ValueError):
    """A config key or value is wrong; the message says which and how to fix it."""


def _cast_scalar(key: str, raw: str, tp: Any) -> Any:
    if tp is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--set {key}={raw}: expected a boolean (true/false)")
    if tp is int:
        return _cast_int(key, raw)
    if tp in (float, str):
        try:
            return tp(raw)
        except ValueError:
            raise ConfigError(f"--set {key}={raw}: expected {tp.__name__}") from None
    raise ConfigError(f"--set {key}: fields of type {tp!r} cannot be set from the command line")


def _cast_int(key: str, raw: str) -> int:
    """``4`` and ``1e3`` are ints; ``2.5`` is refused rather than truncated."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"--set {key}={raw}: expected int") from None
    if not math.isfinite(value):  # inf / nan / more than 4300 digits: not "a fraction"
        raise ConfigError(f"--set {key}={raw}: expected int, got a non-finite or too large number")
    if not value.is_integer():
        raise ConfigError(f"--set {key}={raw}: expected int, got a fraction")
    return int(value)


def cast_value(key: str, raw: str, tp: Any) -> Any:
    """Cast the string ``raw`` to type ``tp`` (int, float, str, bool, Optional[X], tuple[X, ...])."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if raw.strip().lower() in ("none", "null", ""):
            return None
        return cast_value(key, raw, args[0])
    if origin is tuple:
        args = typing.get_args(tp)
        items = [s for s in raw.replace("(", "").replace(")", "").split(",") if s.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(cast_value(key, s.strip(), args[0]) for s in items)
        if len(items) != len(args):
            raise ConfigError(f"--set {key}={raw}: expected {len(args)} comma-separated values")
        return tuple(cast_value(key, s.strip(), a) for s, a in zip(items, args))
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if raw not in choices:
            raise ConfigError(f"--set {key}={raw}: expected one of {list(choices)}")
        return raw
    return _cast_scalar(key, raw, tp)


def field_types(cfg_or_cls: Any) -> dict[str, Any]:
    cls = cfg_or_cls if isinstance(cfg_or_cls, type) else type(cfg_or_cls)
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_override(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    return key.strip(), raw.strip()


def apply_overrides(cfg: C, items: Iterable[str]) -> C:
    """Return ``cfg`` with each ``key=value`` applied; unknown keys raise with close matches."""
    types_ = field_types(cfg)
    changes: dict[str, Any] = {}
    for item in items:
        key, raw = parse_override(item)
        if key not in types_:
            close = difflib.get_close_matches(key, list(types_), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see config.json of a run for valid keys"
            raise ConfigError(f"unknown config key {key!r} for {type(cfg).__name__}{hint}")
        changes[key] = cast_value(key, raw, types_[key])
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def config_hash(cfg: Any) -> str:
    blob = json.dumps(to_dict(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def config_differences(cfg: Any, saved: Mapping[str, Any]) -> list[str]:
    """Keys where ``cfg`` differs from a saved snapshot. A field the snapshot lacks (added to the
    library after that run) only counts when it is not at its default, so new options never stop
    an old run from resuming (new behaviour always defaults to the old one)."""
    current = json.loads(json.dumps(to_dict(cfg), default=str))
    defaults = {f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING}
    defaults = json.loads(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}, default=str))
    diffs = []
    for key, value in current.items():
        if key in saved:
            if saved[key] != value:
                diffs.append(key)
        elif key not in defaults or defaults[key] != value:
            diffs.append(key)
    return diffs


def save_config(cfg: Any, path: str | Path, exclusive: bool = False) -> Path:
    """Snapshot: every field plus the config class and hash (``output/<exp>/fold<k>/config.json``).
    ``exclusive``: FileExistsError when ``path`` exists (another process claimed the fold)."""
    payload = {"config_class": type(cfg).__name__, "config_hash": config_hash(cfg), **to_dict(cfg)}
    return save_json(path, payload, exclusive)


def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild a config from a snapshot (tuples restored); unknown keys are refused."""
    types_ = field_types(cls)
    values = {k: v for k, v in data.items() if k not in ("config_class", "config_hash")}
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise ConfigError(f"config snapshot has unknown keys {unknown} for {cls.__name__}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**fixed)


@dataclass(frozen=True)
class ExperimentConfig(FitSettings):
    """Fields every task shares: where data and outputs live, folds, and the training loop's
    settings (inherited from :class:`FitSettings`, defaults here follow the seeds). Task configs
    subclass this."""

    name: str = "experiment"
    task: str = ""
    comp: str = ""
    data_dir: str = ""  # default: input/<comp>
    output_dir: str = ""  # default: output/
    submissions_dir: str = ""  # default: submissions/
    n_folds: int = 5
    fold_strategy: str = "kfold"
    fold_seed: int = 42
    deterministic: bool = False
    seed: int = 42
    epochs: int = 50
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-4
    num_workers: int = 2

    def demo(self) -> "ExperimentConfig":
        """The small CPU configuration used by ``--demo`` (tasks override)."""
        return self
