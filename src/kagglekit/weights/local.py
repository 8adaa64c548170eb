"""Local weights files → a module: the one loader behind every task's ``pretrained`` / ``init_weights``.

A file is read with :func:`read_state_dict` (safetensors, or a torch file loaded ``weights_only``, its
kagglekit manifest checked when present; a folder: the weights file in it, e.g. a Kaggle dataset
holding ``model.safetensors``), and :func:`load_matching` copies the tensors whose name and shape
match the target module (names mapped by :mod:`kagglekit.weights.keys`: wrapper prefixes such as
``module.`` / ``model.`` / ``encoder.`` / ``net.encoder.`` stripped or added, timm ↔ SMP ``tu-``
feature names): a head built for another class / anchor / keypoint count keeps its fresh
initialisation, an RGB first conv can be adapted to the target's input channels (timm
``adapt_input_conv``), and a file matching less than ``min_match`` of the target is an error, never a
silent random init. Tags fetched through timm / torchvision / SMP: :mod:`kagglekit.weights.resolve`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from kagglekit.engine.checkpoint import load_checkpoint
from kagglekit.weights.keys import best_key_map

log = logging.getLogger("kagglekit.weights")

StateDict = dict[str, torch.Tensor]
Rename = Callable[[StateDict], StateDict]

# Checkpoint layouts that hold the state dict one level down (timm / Lightning / kagglekit / EMA).
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "ema", "state_dict_ema", "model_ema")
DEFAULT_PREFIXES = ("", "model.", "encoder.", "features.", "backbone.")
DEFAULT_MIN_MATCH = 0.5  # a file matching less of the target's tensors is an error (wrong architecture)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")
PREFERRED_FILES = ("model.safetensors", "pytorch_model.bin")  # Hugging Face hub / timm / SMP layouts


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_matching` did: ``loaded`` of the target's ``total`` tensors came from the
    file (matched); ``reinitialised`` are target keys present in the file with another shape
    (reshaped: kept as initialised); ``missing`` are target keys the file lacks (also kept as
    initialised), so ``loaded + len(reinitialised) + len(missing) == total``; ``unexpected`` are file
    keys with no place in the target (e.g. a classifier head for a features-only encoder);
    ``adapted`` are the loaded convs whose RGB kernel was adapted to the target's input channels."""

    loaded: int
    total: int
    reinitialised: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    adapted: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()

    @property
    def fraction(self) -> float:
        """Share of the target's tensors loaded from the file."""
        return self.loaded / self.total if self.total else 0.0

    def summary(self, limit: int = 8) -> str:
        """One line: matched / reshaped / missing / unexpected / adapted, long lists shortened."""
        def names(keys: Sequence[str]) -> str:
            shown = ", ".join(keys[:limit])
            return f"{len(keys)} [{shown}{f', … +{len(keys) - limit} more' if len(keys) > limit else ''}]" if keys else "0"
        return (f"matched {self.loaded}/{self.total} ({self.fraction:.0%}); reshaped (re-initialised for a different "
                f"shape): {names(self.reinitialised)}; missing: {names(self.missing)}; unexpected: "
                f"{names(self.unexpected)}" + (f"; RGB kernels adapted: {names(self.adapted)}" if self.adapted else ""))


def find_weights_file(folder: Path, what: str = "weights", depth: int = 4) -> Path:
    """The weights file in ``folder`` (a Kaggle dataset / model folder, a Hugging Face snapshot):
    ``model.safetensors`` or ``pytorch_model.bin`` (the shallowest), else the only ``.safetensors``
    / ``.bin`` / ``.pth`` / ``.pt`` / ``.ckpt`` file up to ``depth`` levels down. FileNotFoundError
    when there is none, ValueError listing them when several could be meant."""
    found: list[Path] = []
    level = [folder]
    for _ in range(depth):
        files = sorted(p for d in level for p in d.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        preferred = [p for name in PREFERRED_FILES for p in files if p.name == name]
        if preferred and not found and len({p.parent for p in preferred}) == 1:
            return preferred[0]  # model.safetensors before pytorch_model.bin in the same folder
        found += files
        level = sorted(p for d in level for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not level:
            break
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(f"{what}: folder {folder} holds no weights file ({'/'.join(WEIGHT_SUFFIXES)}); "
                                "give the path of the file")
    shown = ", ".join(str(p.relative_to(folder)) for p in found[:6])
    raise ValueError(f"{what}: folder {folder} holds several weights files ({shown}{', …' if len(found) > 6 else ''}); "
                     "give the path of one of them")


def read_state_dict(path: str | Path, *, what: str = "weights") -> StateDict:
    """The tensors of a local ``.safetensors`` file or torch file (``weights_only=True``, CPU); a
    folder stands for the weights file in it (:func:`find_weights_file`).

    Nested ``state_dict`` / ``model`` / ``model_state_dict`` / ``ema`` (timm: ``state_dict_ema``) dicts are unwrapped and a DDP
    ``module.`` prefix is stripped. ``what`` names the setting in error messages. Raises
    FileNotFoundError for a missing file, ValueError for a file that holds no state dict, and
    :class:`~kagglekit.engine.checkpoint.CheckpointError` for one torch refuses to load safely."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = find_weights_file(path, what)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} not found; give the path of a local weights file (nothing is downloaded "
                                "for a path; a tag such as convnext_base.fb_in22k_ft_in1k or DEFAULT is fetched)")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            obj: Any = load_file(str(path))
        except SafetensorError as exc:
            raise ValueError(f"{what} {path}: not a readable safetensors file ({exc})") from None
    else:
        obj = load_checkpoint(path)
    return as_state_dict(obj, f"{what} {path}")


def as_state_dict(obj: Any, name: str = "weights") -> StateDict:
    """``obj`` (a loaded checkpoint) as a flat ``{key: tensor}``: wrapper dicts unwrapped, non-tensor
    entries dropped, a DDP ``module.`` prefix on every key stripped. ValueError (naming ``name``)
    when no tensor is left."""
    for _ in range(len(WRAPPER_KEYS) + 1):
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = inner
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, Mapping) else {}
    if not state:
        raise ValueError(f"{name}: not a state dict (no tensors at the top level or under "
                         f"{'/'.join(WRAPPER_KEYS)}); give a weights file of the model")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _adapt_input_conv(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor | None:
    """An RGB conv kernel (O, 3, kh, kw) repeated and rescaled to ``like``'s input channels (timm
    ``adapt_input_conv``, so an extra channel starts at the RGB filters' response scale); None when
    ``value`` is not such a kernel for ``like``."""
    if value.ndim != 4 or like.ndim != 4 or value.shape[1] != 3 or like.shape[1] == 3:
        return None
    if value.shape[0] != like.shape[0] or value.shape[2:] != like.shape[2:]:
        return None
    from timm.models import adapt_input_conv
    return adapt_input_conv(like.shape[1], value)




def _copy_plan(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], mapping: Mapping[str, str],
               adapt_input_conv: bool) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """(target key → tensor to load, reshaped target keys, adapted target keys)."""
    keep: dict[str, torch.Tensor] = {}
    reinit: list[str] = []
    adapted: list[str] = []
    for src_key, key in mapping.items():
        value = state[src_key]
        if value.shape != own[key].shape and adapt_input_conv:
            conv = _adapt_input_conv(value, own[key])
            if conv is not None:
                value = conv
                adapted.append(key)
        if value.shape == own[key].shape:
            keep[key] = value
        else:
            reinit.append(key)
    return keep, reinit, adapted


def load_matching(target: nn.Module, source: str | Path | Mapping[str, torch.Tensor], *,
                  renames: Sequence[Rename] = (), prefixes: Sequence[str] = DEFAULT_PREFIXES,
                  adapt_input_conv: bool = False, what: str = "weights", min_match: float = DEFAULT_MIN_MATCH,
                  name: str | None = None) -> LoadReport:
    """Load the tensors of ``source`` (a local file / folder or a state dict, ``name`` describing
    the latter in messages) that match ``target`` by name and shape; the others keep their
    initialisation.

    ``renames`` map the state dict first; then the key treatment of :func:`~kagglekit.weights.keys.best_key_map`
    (``prefixes`` and the file's / target's leading paths stripped or added, timm ↔ SMP ``tu-``
    feature names). With ``adapt_input_conv`` an RGB conv kernel is adapted to a target conv with
    other input channels. Logs ``loaded N/M tensors from FILE (...)`` with the :class:`LoadReport`;
    raises ValueError naming the file when nothing matches or less than ``min_match`` of the
    target's tensors would be loaded (another architecture), FileNotFoundError for a missing file."""
    from_file = isinstance(source, (str, Path))
    where = str(source) if from_file else (name or "a state dict")
    state = read_state_dict(source, what=what) if from_file else as_state_dict(source, f"{what} ({where})")
    for rename in renames:
        state = rename(state)
    own = target.state_dict()
    mapping = best_key_map(state, own, prefixes)
    keep, reinit, adapted = _copy_plan(own, state, mapping, adapt_input_conv)
    mapped = set(mapping.values())
    report = LoadReport(len(keep), len(own), tuple(reinit), tuple(k for k in own if k not in mapped), tuple(adapted),
                        tuple(k for k in state if k not in mapping))
    kind = type(target).__name__
    if not keep:
        raise ValueError(f"{what} {where}: no tensor matches the {kind}'s keys; is it the right architecture?")
    if report.fraction < min_match:
        raise ValueError(f"{what} {where}: only {report.loaded}/{report.total} ({report.fraction:.0%}) of the {kind}'s "
                         f"tensors match (min_match {min_match:.0%}); is it the right architecture? first missing: "
                         f"{list(report.missing[:3])}, first unexpected: {list(report.unexpected[:3])}")
    target.load_state_dict(keep, strict=False)
    log.info("%s: loaded %d/%d tensors from %s (%s)", what, report.loaded, report.total, where, report.summary())
    return report
