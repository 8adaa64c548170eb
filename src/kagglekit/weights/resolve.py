"""A ``pretrained`` / ``init_weights`` setting → weights, the way timm / torchvision / SMP users get them.

A setting is one of:

- off: ``""``, ``false``, ``none``, ``0`` (random initialisation, logged);
- a local file or folder (anything with a ``/``, a weights suffix, or an existing path): read by
  :func:`~kagglekit.weights.local.read_state_dict` (a folder, e.g. a Kaggle dataset: the
  ``model.safetensors`` / ``pytorch_model.bin`` / only ``.pth`` in it);
- ``true`` / ``default`` or a tag, fetched and cached by the library that publishes it — the caller
  names that library (``kind``) and the model:

  * ``"timm"``: a timm name (``convnext_base.fb_in22k_ft_in1k``), a tag of the model
    (``fb_in22k_ft_in1k``) or ``hf-hub:org/repo``; ``true`` = timm's default tag of the model.
    ``timm.create_model(name, pretrained=True)``: the Hugging Face hub cache (``HF_HOME`` /
    ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1`` respected) or, for the few URL weights, ``TORCH_HOME``.
  * ``"torchvision"``: a weights enum member of the model (``DEFAULT``, ``COCO_V1``,
    ``IMAGENET1K_V1``) or a full name (``FasterRCNN_ResNet50_FPN_Weights.COCO_V1``); ``true`` =
    ``DEFAULT``. ``weights.get_state_dict``: ``TORCH_HOME/hub/checkpoints/<file name of the URL>``.
  * ``"smp"``: an SMP encoder's weights name (``imagenet``); ``true`` = its first one. SMP's own
    Hugging Face hub download (same cache as timm).

Not cached and not downloadable (offline): :class:`PretrainedUnavailable`, one line naming the tag,
the cache folder it looked in and how to pass a file instead.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import urlparse

import torch
from torch import nn

from kagglekit.weights.local import (DEFAULT_MIN_MATCH, WEIGHT_SUFFIXES, LoadReport, StateDict, load_matching)

log = logging.getLogger("kagglekit.weights")

Kind = Literal["timm", "torchvision", "smp"]
Spec = str | bool | Path | None
OFF_VALUES = frozenset({"", "false", "none", "no", "off", "0"})
ON_VALUES = frozenset({"true", "yes", "on", "1", "default"})


class PretrainedUnavailable(FileNotFoundError):
    """Weights named by a tag are neither cached nor downloadable (one-line message)."""


def is_off(spec: Spec) -> bool:
    """True for a setting meaning random initialisation (``""``, ``false``, ``none``, ``0``, None)."""
    return spec is None or spec is False or str(spec).strip().lower() in OFF_VALUES


def any_pretrained(*specs: Spec) -> bool:
    """True when at least one of the settings loads weights (e.g. for frozen BatchNorm)."""
    return not all(is_off(s) for s in specs)


def is_path(spec: str) -> bool:
    """A setting that names a local file or folder rather than a tag."""
    if spec.startswith("hf-hub:"):
        return False
    return ("/" in spec or "\\" in spec or spec.startswith(("~", ".")) or spec.lower().endswith(WEIGHT_SUFFIXES)
            or Path(spec).exists())


def hf_cache() -> Path:
    """The Hugging Face hub cache folder (``HF_HUB_CACHE``, default ``HF_HOME/hub``)."""
    from huggingface_hub import constants
    return Path(constants.HF_HUB_CACHE)


def torch_cache() -> Path:
    """torch.hub's checkpoint folder (``TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_offline() -> bool:
    """Whether the Hugging Face hub is in offline mode (``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


def unavailable(what: str, tag: str, looked_in: Path | str, exc: BaseException, file_hint: str,
                hub: bool = False) -> PretrainedUnavailable:
    """The one-line error for weights that are neither cached nor downloadable (``hub``: a Hugging
    Face hub source, whose offline mode is named when set)."""
    why = f"{'HF_HUB_OFFLINE=1, ' if hub and hf_offline() else ''}{type(exc).__name__}"
    return PretrainedUnavailable(
        f"{what}={tag}: not in the local cache ({looked_in}) and not downloadable ({why}); run once with "
        f"internet to cache it, or pass a file: --set {what}=/path/to/{file_hint}")


# ---- timm ---------------------------------------------------------------------------------------
def timm_name(spec: str, model: str) -> str:
    """The full timm name (``arch.tag``) a setting means for the timm model ``model`` (which may carry a
    tag itself); ValueError listing the published tags when there is no such pretrained model."""
    from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg, is_model, split_model_name_tag
    if spec.startswith("hf-hub:"):
        return spec
    arch, tag = split_model_name_tag(model)
    if spec.lower() in ON_VALUES:
        name = model if tag else next(iter(get_arch_pretrained_cfgs(arch)), f"{arch}.<none>")
    elif "." in spec:
        name = spec
    else:
        name = next(iter(get_arch_pretrained_cfgs(spec)), spec) if is_model(spec) else f"{arch}.{spec}"
    try:
        found = get_pretrained_cfg(name, allow_unregistered=False) is not None
    except RuntimeError:  # a tag timm does not know for this architecture
        found = False
    if not found:
        base = split_model_name_tag(name)[0]
        tags = list(get_arch_pretrained_cfgs(base)) if is_model(base) else []
        raise ValueError(f"pretrained={spec}: timm has no pretrained weights {name!r}"
                         f"{f'; published for {base}: {tags[:8]}' if tags else ''} (or pass a local file)")
    if split_model_name_tag(name)[0] != arch:
        log.warning("pretrained=%s is a %s checkpoint; the model is %s (only the tensors that fit are loaded)",
                    spec, split_model_name_tag(name)[0], arch)
    return name


def timm_state_dict(spec: str, model: str, what: str = "pretrained") -> tuple[StateDict, str]:
    """(state dict, description) of timm's pretrained ``model`` for ``spec``, through
    ``timm.create_model(..., pretrained=True)`` and its caches; PretrainedUnavailable offline."""
    import timm
    from huggingface_hub.errors import EntryNotFoundError
    from timm.models import get_pretrained_cfg
    name = timm_name(spec, model)
    cfg = None if name.startswith("hf-hub:") else get_pretrained_cfg(name)
    repo = name[len("hf-hub:"):] if cfg is None else cfg.hf_hub_id
    looked_in = (f"{hf_cache()}/models--{repo.split('@')[0].replace('/', '--')}" if repo
                 else torch_cache() / os.path.basename(urlparse(cfg.url or "").path))
    try:
        net = timm.create_model(name, pretrained=True)
    except (OSError, EntryNotFoundError) as exc:
        raise unavailable(what, name, looked_in, exc, "model.safetensors" if repo else "model.pth", hub=bool(repo)) from None
    return net.state_dict(), f"timm {name} ({looked_in})"


# ---- torchvision --------------------------------------------------------------------------------
def torchvision_weights(spec: str, model: str | None, what: str = "pretrained") -> Any:
    """The torchvision weights enum member a setting means for builder ``model`` (e.g.
    ``fasterrcnn_resnet50_fpn``): ``DEFAULT`` / ``COCO_V1`` / a full ``Enum.MEMBER`` name."""
    from torchvision.models import get_model_weights, get_weight
    name = "DEFAULT" if spec.lower() in ON_VALUES else spec
    if "." in name:
        try:
            return get_weight(name)
        except (ValueError, KeyError, AttributeError):
            raise ValueError(f"{what}={spec}: not a torchvision weights name (e.g. ResNet50_Weights.IMAGENET1K_V1)") from None
    if model is None:
        raise ValueError(f"{what}={spec}: torchvision publishes no weights for this model's {what}; pass a local file")
    enum = get_model_weights(model)
    if name not in enum.__members__:
        raise ValueError(f"{what}={spec}: torchvision's {enum.__name__} has {list(enum.__members__)} (or pass a local file)")
    return enum[name]


def torchvision_state_dict(spec: str, model: str | None, what: str = "pretrained") -> tuple[StateDict, str]:
    """(state dict, description) of torchvision's weights for ``spec``, through ``get_state_dict``
    (``TORCH_HOME/hub/checkpoints``; a download is hash-checked as torchvision's builders do)."""
    weights = torchvision_weights(spec, model, what)
    file_name = os.path.basename(urlparse(weights.url).path)
    cached = torch_cache() / file_name
    try:
        state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except OSError as exc:
        raise unavailable(what, f"{spec} ({weights})", cached, exc, file_name) from None
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{what}={spec}: {cached} is not a readable torch file or failed the hash check "
                         f"({type(exc).__name__}); delete it to download it again") from None
    return state, f"torchvision {weights} ({cached})"


# ---- segmentation-models-pytorch encoders ---------------------------------------------------------
def smp_state_dict(spec: str, encoder: str, what: str = "pretrained") -> tuple[StateDict, str]:
    """(state dict, description) of an SMP encoder's published weights (``imagenet``, ...) through
    SMP's own Hugging Face hub download."""
    import segmentation_models_pytorch as smp
    from huggingface_hub.errors import EntryNotFoundError
    settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {})
    name = next(iter(settings), spec) if spec.lower() in ON_VALUES else spec
    if name not in settings:
        raise ValueError(f"{what}={spec}: SMP encoder {encoder!r} has weights {list(settings)} "
                         "(or use a tu-<timm model> encoder / a local file)")
    repo = settings[name].get("repo_id", "")
    looked_in = f"{hf_cache()}/models--{repo.replace('/', '--')}"
    try:
        net = smp.encoders.get_encoder(encoder, weights=name)
    except (OSError, EntryNotFoundError) as exc:
        raise unavailable(what, f"{encoder}:{name}", looked_in, exc, "model.safetensors", hub=True) from None
    return net.state_dict(), f"smp {encoder} {name} ({looked_in})"


FETCHERS: dict[str, Callable[[str, Any, str], tuple[StateDict, str]]] = {
    "timm": timm_state_dict, "torchvision": torchvision_state_dict, "smp": smp_state_dict}


def resolve_source(spec: Spec, *, kind: Kind, model: str | None, what: str = "pretrained"
                   ) -> tuple[StateDict | Path | None, str]:
    """(:func:`resolve_pretrained`'s answer, a description of where it came from)."""
    if is_off(spec):
        return None, "random initialisation"
    text = str(spec).strip()
    if isinstance(spec, Path) or is_path(text):
        return Path(text).expanduser(), text
    if kind not in FETCHERS:
        raise ValueError(f"kind {kind!r} unknown; use one of {sorted(FETCHERS)}")
    return FETCHERS[kind](text, model, what)


def resolve_pretrained(spec: Spec, *, kind: Kind, model: str | None, what: str = "pretrained") -> StateDict | Path | None:
    """None (off), the Path of a local file / folder, or the state dict of a tag fetched the way
    ``kind``'s library does (see the module docstring); ``model`` is the library's model name the
    tag belongs to (timm model, torchvision builder, SMP encoder), ``what`` the setting's name."""
    return resolve_source(spec, kind=kind, model=model, what=what)[0]


def load_pretrained(target: nn.Module, spec: Spec, *, kind: Kind, model: str | None, what: str = "pretrained",
                    min_match: float = DEFAULT_MIN_MATCH, **load_kwargs: Any) -> LoadReport | None:
    """Resolve ``spec`` and load what matches into ``target`` (:func:`load_matching`, its report
    logged); None and a log line when ``spec`` is off."""
    source, where = resolve_source(spec, kind=kind, model=model, what=what)
    if source is None:
        log.info("%s=%s: %s randomly initialised", what, spec if spec not in ("", None) else "false", model or type(target).__name__)
        return None
    return load_matching(target, source, what=what, min_match=min_match,
                         name=None if isinstance(source, Path) else where, **load_kwargs)
