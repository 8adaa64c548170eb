"""Frozen dataclass configs, strict ``key=value`` overrides and the saved snapshot.

An experiment is ``CFG = replace(PARENT, name=..., <changed fields>)`` (see ``exp/``). Overrides
from the command line go through :func:`apply_overrides`, which refuses unknown keys (suggesting
close matches) and casts each value to the field's annotated type, so a typo can never silently
fall back to a default.

Field names mean one thing in every task (issue 12): ``backbone`` (the network trunk, a timm /
torchvision / SMP encoder name), ``pretrained`` (a local file of backbone/encoder weights),
``init_weights`` (a local file of whole-model weights to fine-tune from), ``hflip_p`` (training
horizontal-flip probability), ``tta_flip`` (flip views at test time), ``compare_to`` (a tuple of
earlier experiments). Old names still work through one table, :data:`RENAMED_KEYS`: ``--set``
accepts them with one deprecation line naming the new key, :func:`from_dict` loads snapshots
written with them, and :func:`config_differences` compares such a snapshot under the new names
(so an old ``output/`` still resumes). Choice fields are ``Literal[...]``: ``--set`` refuses other
values and lists the allowed ones.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import math
import types
import typing
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, TypeVar

from kagglekit.engine.settings import Amp, FitSettings, MonitorMode, Optimizer, Scheduler  # noqa: F401 (task configs)
from kagglekit.io import save_json

C = TypeVar("C")
log = logging.getLogger("kagglekit.config")

FoldStrategy = Literal["kfold", "stratified", "group", "stratified_group", "multilabel_stratified"]  # cv.STRATEGIES


class ConfigError(ValueError):
    """A config key or value is wrong; the message says which and how to fix it."""


# --------------------------------------------------------------------------- renamed keys
def flip_probability(flag: Any) -> float:
    """Old boolean ``hflip`` → ``hflip_p``: True flipped half of the training images (p = 0.5),
    False none (p = 0.0). A probability is the one type that fits every task (segmentation always
    had ``hflip_p``), and 0.5 keeps the old runs' random draws and flips exactly."""
    if not isinstance(flag, bool):
        raise ConfigError(f"hflip (deprecated, now hflip_p): expected true/false, got {flag!r}; set hflip_p=<probability>")
    return 0.5 if flag else 0.0


def str_tuple(value: Any) -> tuple[str, ...]:
    """``compare_to`` was a single name in detection: ``""`` → ``()``, ``"x"`` → ``("x",)``; a
    list/tuple of names is kept."""
    if isinstance(value, str):
        return (value,) if value else ()
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class Renamed:
    """How an old key is read. ``new``: the current field; ``convert``: old value → new type
    (applied explicitly where the type changed); ``old_type``: how ``--set old=...`` is cast
    before ``convert`` (default: the new field's type)."""

    new: str
    convert: Callable[[Any], Any] | None = None
    old_type: Any = None

    def describe(self, old: str) -> str:
        return old if old == self.new else f"{old} → {self.new}"


RENAMED_KEYS: dict[str, Renamed] = {
    # old name: new name (where the old one was used)
    "flip_tta": Renamed("tta_flip"),  # keypoints
    "hflip": Renamed("hflip_p", flip_probability, bool),  # detection, keypoints, multilabel (bool)
    "encoder": Renamed("backbone"),  # segmentation
    "pretrained_path": Renamed("pretrained"),  # segmentation, multilabel: backbone/encoder weights file
    "backbone_weights": Renamed("pretrained"),  # detection, keypoints: the same meaning
    "detector_weights": Renamed("init_weights"),  # detection: whole-detector weights (as keypoints' init_weights)
    "compare_to": Renamed("compare_to", str_tuple),  # same name; detection's was one str, now a tuple
}
"""Old key → how it is read now; applies to a config class when ``new`` is one of its fields.
Entries whose ``old == new`` only convert the value (a type change); they are not deprecated."""


def renamed_keys(cfg_or_cls: Any) -> dict[str, Renamed]:
    """The entries of :data:`RENAMED_KEYS` that apply to this config class."""
    names = {f.name for f in dataclasses.fields(cfg_or_cls)}
    return {old: r for old, r in RENAMED_KEYS.items() if r.new in names and (old == r.new or old not in names)}


def upgrade_keys(cfg_or_cls: Any, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``data`` (a snapshot) with old keys renamed and their values converted, plus one note per
    key that was renamed. An old and a new key giving different values is an error."""
    table = renamed_keys(cfg_or_cls)
    out: dict[str, Any] = {}
    sources: dict[str, str] = {}
    notes = []
    for key, value in data.items():
        r = table.get(key)
        if r is None:
            new, converted = key, value
        else:
            new, converted = r.new, (r.convert(value) if r.convert and value is not None else value)
            if key != r.new:
                notes.append(r.describe(key))
        if new in out and _plain(out[new]) != _plain(converted):
            raise ConfigError(f"config snapshot gives {new} twice with different values: {sources[new]}={out[new]!r} "
                              f"and {key}={value!r}")
        out[new], sources[new] = converted, key
    return out, notes


def _plain(value: Any) -> Any:
    """JSON form of a value (tuples as lists), for comparisons with a snapshot."""
    return json.loads(json.dumps(value, default=str))


class _BadElement(ValueError):
    """One value (a whole scalar, or one element of a list) that does not cast; the message says
    what it is not, e.g. ``'x' is not a float``. :func:`cast_value` adds the ``--set`` context."""


def _type_name(tp: Any) -> str:
    """How a field type reads in an error: float, int, str, boolean (true/false), one of [...]."""
    if tp is bool:
        return "boolean (true/false)"
    if typing.get_origin(tp) is typing.Literal:
        return f"one of {list(typing.get_args(tp))}"
    return getattr(tp, "__name__", repr(tp))


def _cast_scalar(raw: str, tp: Any) -> Any:
    """``raw`` → bool / int / float / str / a Literal choice; :class:`_BadElement` otherwise."""
    if typing.get_origin(tp) is typing.Literal:
        if raw not in typing.get_args(tp):
            raise _BadElement(f"{raw!r} is not {_type_name(tp)}")
        return raw
    if tp is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise _BadElement(f"{raw!r} is not a {_type_name(tp)}")
    if tp is int:
        return _cast_int(raw)
    if tp in (float, str):
        try:
            return tp(raw)
        except ValueError:
            raise _BadElement(f"{raw!r} is not a {tp.__name__}") from None
    raise _BadElement(f"fields of type {tp!r} cannot be set from the command line")


def _cast_int(raw: str) -> int:
    """``4`` and ``1e3`` are ints; ``2.5`` is refused rather than truncated."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        raise _BadElement(f"{raw!r} is not an int") from None
    if not math.isfinite(value):  # inf / nan / more than 4300 digits: not "a fraction"
        raise _BadElement(f"{raw!r} is not an int: a non-finite or too large number")
    if not value.is_integer():
        raise _BadElement(f"{raw!r} is not an int: it is a fraction")
    return int(value)


def _cast_tuple(raw: str, tp: Any) -> tuple:
    """``"0.75, 1.0"`` (brackets optional) → a tuple of the element type(s); the failing element
    is named and the list form said: ``'x' is not a float (expected a comma-separated list of float)``."""
    args = typing.get_args(tp)
    items = [s.strip() for s in raw.replace("(", "").replace(")", "").split(",") if s.strip()]
    if len(args) == 2 and args[1] is Ellipsis:
        element_types, form = [args[0]] * len(items), f"a comma-separated list of {_type_name(args[0])}"
    else:
        element_types, form = list(args), f"{len(args)} comma-separated values ({', '.join(map(_type_name, args))})"
        if len(items) != len(args):
            raise _BadElement(f"{len(items)} value(s) given, expected {form}")
    try:
        return tuple(_cast_one(s, t) for s, t in zip(items, element_types))
    except _BadElement as exc:
        raise _BadElement(f"{exc} (expected {form})") from None


def _cast_one(raw: str, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if raw.strip().lower() in ("none", "null", ""):
            return None
        return _cast_one(raw, args[0])
    if origin is tuple:
        return _cast_tuple(raw, tp)
    return _cast_scalar(raw, tp)


def cast_value(key: str, raw: str, tp: Any) -> Any:
    """Cast the string ``raw`` to type ``tp`` (int, float, str, bool, Optional[X], tuple[X, ...],
    Literal[...]). A bad value → one :class:`ConfigError` quoting the whole value typed and the
    element that failed: ``--set tta_scales=0.75,x: 'x' is not a float (expected a
    comma-separated list of float)``."""
    try:
        return _cast_one(raw, tp)
    except _BadElement as exc:
        raise ConfigError(f"--set {key}={raw}: {exc}") from None


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
    """Return ``cfg`` with each ``key=value`` applied; unknown keys raise with close matches. An
    old key name (:data:`RENAMED_KEYS`) is applied to its new field, with one warning line."""
    types_ = field_types(cfg)
    renamed = renamed_keys(cfg)
    changes: dict[str, Any] = {}
    for item in items:
        key, raw = parse_override(item)
        if key not in types_ and key in renamed:
            r = renamed[key]
            value = cast_value(key, raw, r.old_type or types_[r.new])
            value = r.convert(value) if r.convert and value is not None else value
            log.warning("--set %s=%s: %r is deprecated, use %s (applied as %s=%r)", key, raw, key, r.new, r.new, value)
            changes[r.new] = value
            continue
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
    an old run from resuming (new behaviour always defaults to the old one). Old key names in the
snapshot are read as their new ones (:func:`upgrade_keys`)."""
    current = _plain(to_dict(cfg))
    defaults = {f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING}
    defaults = _plain(defaults)
    saved, notes = upgrade_keys(cfg, {k: v for k, v in saved.items() if k not in ("config_class", "config_hash")})
    if notes:
        log.info("config snapshot written with old key names, compared as: %s", ", ".join(notes))
    saved = _plain(saved)
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
    """Rebuild a config from a snapshot (tuples restored); old key names are read as their new
    ones (:data:`RENAMED_KEYS`, values converted); unknown keys are refused."""
    types_ = field_types(cls)
    values = {k: v for k, v in data.items() if k not in ("config_class", "config_hash")}
    values, notes = upgrade_keys(cls, values)
    if notes:
        log.info("config snapshot written with old key names, read as: %s", ", ".join(notes))
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
    fold_strategy: FoldStrategy = "kfold"
    fold_seed: int = 42
    deterministic: bool = False
    seed: int = 42
    epochs: int = 50
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-4
    num_workers: int = -1  # from the machine (engine.data.resolve_num_workers)

    def __post_init__(self) -> None:
        """Value conversions of :data:`RENAMED_KEYS` whose name did not change (e.g. a plain
        ``compare_to="exp"`` in an experiment file means ``("exp",)``, never its characters)."""
        for key, r in renamed_keys(self).items():
            if key == r.new and r.convert is not None:
                object.__setattr__(self, key, r.convert(getattr(self, key)))

    def demo(self) -> "ExperimentConfig":
        """The small CPU configuration used by ``--demo`` (tasks override)."""
        return self
