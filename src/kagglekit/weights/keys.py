"""Source state-dict keys → the target module's keys, for the layouts weights files come in.

One treatment is chosen for the whole file: a leading path stripped from the file's keys (``module.``,
``encoder.``, a kagglekit ``net.encoder.``, ``detector.``, ...) and one added (``model.`` of a
timm-universal encoder or ``TimmClassifier``, ``backbone.body.`` of a detector, ...), the one that
matches most target tensors by name and shape. Within it each key may also take the name timm's
feature-extraction wrapper gives it: ``timm.create_model(features_only=True)`` (SMP ``tu-``
encoders) flattens the children of top-level ``nn.Sequential`` modules, so ``stem.0.weight`` is
``stem_0.weight`` and ``stages.1.blocks.0...`` is ``stages_1.blocks.0...`` there; the reverse
(``stem_0`` → ``stem.0``) maps a ``tu-`` encoder's weights back onto a plain timm model.
"""
from __future__ import annotations

import logging
from typing import Iterable, Mapping, Sequence

import torch

KeyMap = dict[str, str]  # source key → target key
ORDER_TAIL = 4  # a classifier head (weight, bias) or a head conv + its norm, left unpaired by order
log = logging.getLogger("kagglekit.weights")


def feature_name(key: str) -> str | None:
    """timm FeatureListNet's name of a plain timm key: ``stem.0.weight`` → ``stem_0.weight`` (the
    first two path components joined by ``_``); None for a key with fewer than three components."""
    parts = key.split(".", 2)
    return f"{parts[0]}_{parts[1]}.{parts[2]}" if len(parts) == 3 else None


def plain_names(key: str) -> list[str]:
    """The plain timm keys a FeatureListNet key may come from: ``stem_0.weight`` → ``["stem.0.weight"]``
    (each ``_`` of the first path component tried as the split point, last first)."""
    head, sep, rest = key.partition(".")
    if not sep:
        return []
    cuts = [i for i, ch in enumerate(head) if ch == "_" and 0 < i < len(head) - 1]
    return [f"{head[:i]}.{head[i + 1:]}.{rest}" for i in reversed(cuts)]


def leading_paths(keys: Iterable[str], depth: int = 2) -> list[str]:
    """The distinct wrapper-like leading paths (``"net."``, ``"net.encoder."``) of up to ``depth``
    components that ``keys`` start with, in first-seen order. A key's last component is never a
    path, and a path ending in an index (``"stages.0."``) is no wrapper: treating it as one would
    move one block's weights onto another."""
    seen: dict[str, None] = {}
    for key in keys:
        parts = key.split(".")
        for d in range(1, min(depth, len(parts) - 1) + 1):
            if parts[d - 1].isdigit():
                break
            seen.setdefault(".".join(parts[:d]) + ".", None)
    return list(seen)


def _fit(rest: str, add: str, target: Mapping[str, torch.Tensor]) -> str | None:
    """``add + rest`` when the target has it, else its FeatureListNet / plain timm name with ``add``."""
    for name in (rest, feature_name(rest), *plain_names(rest)):
        if name is not None and add + name in target:
            return add + name
    return None


def treat(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], strip: str, add: str) -> KeyMap:
    """Source keys that start with ``strip`` → ``add`` + the rest (or its timm feature-name form)
    where the target has such a key; one source key per target key."""
    mapping: KeyMap = {}
    used: set[str] = set()
    for key in source:
        if not key.startswith(strip):
            continue
        new = _fit(key[len(strip):], add, target)
        if new is not None and new not in used:
            mapping[key] = new
            used.add(new)
    return mapping


def _score(mapping: KeyMap, source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(tensors matching by name and shape, tensors matching by name)."""
    same = sum(source[k].shape == target[v].shape for k, v in mapping.items())
    return same, len(mapping)


def _treatments(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                prefixes: Sequence[str]) -> list[tuple[str, str]]:
    """(strip, add) pairs to try, the plain ones first: unchanged, each prefix added then stripped,
    then every leading path (2 components) of the file stripped × of the target added."""
    plain = [("", "")] + [t for p in prefixes if p for t in (("", p), (p, ""))]
    strips = list(dict.fromkeys([""] + [p for p in prefixes if p] + leading_paths(source)))
    adds = list(dict.fromkeys([""] + [p for p in prefixes if p] + leading_paths(target)))
    return list(dict.fromkeys(plain + [(s, a) for s in strips for a in adds]))


def order_key_map(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> KeyMap:
    """Same network, other module names (torchvision ``mobilenet_v2`` ``features.N...`` ↔ timm
    ``mobilenetv2_100`` ``conv_stem`` / ``blocks.i.j...``): tensors paired in registration order
    (state-dict order) while their shapes agree; the first disagreement (a head of another class
    count, another layer) ends the run. Classifier heads at the end are left unpaired."""
    mapping: KeyMap = {}
    for (src_key, src), (key, own) in zip(source.items(), target.items()):
        if src.shape != own.shape:
            break
        mapping[src_key] = key
    return mapping


def best_key_map(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                 prefixes: Sequence[str]) -> KeyMap:
    """The treatment (see module docstring) that maps most source tensors onto target tensors of the
    same shape (then: of the same name); ties go to the earlier treatment, the unchanged keys first.
    When no name treatment reaches half of the target, :func:`order_key_map` is tried too; it is
    taken only when it pairs the whole target but a head of at most ``ORDER_TAIL`` tensors (the
    same network under other names), never for a partial run."""
    best = _best_by_name(source, target, prefixes)
    if _score(best, source, target)[0] < len(target) / 2:
        ordered = order_key_map(source, target)
        if len(ordered) >= len(target) - ORDER_TAIL and len(ordered) > _score(best, source, target)[0]:
            log.info("weights matched by tensor order (same shapes in the same order, other names): %d tensors, "
                     "first %s → %s", len(ordered), *next(iter(ordered.items())))
            return ordered
    return best


def _best_by_name(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                  prefixes: Sequence[str]) -> KeyMap:
    best: KeyMap = {}
    best_score = (0, 0)
    for strip, add in _treatments(source, target, prefixes):
        bound = min(sum(k.startswith(strip) for k in source), sum(k.startswith(add) for k in target))
        if bound <= best_score[0] and best_score[0] > 0:
            continue  # cannot beat the best so far
        mapping = treat(source, target, strip, add)
        score = _score(mapping, source, target)
        if score > best_score:
            best, best_score = mapping, score
    return best
