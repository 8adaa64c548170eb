"""One-file, hot-swappable predictor: weights + everything needed to turn images into decisions.

Seed door_state v20260515: the checkpoint carries the attribute names, per-attribute
validation-best F1 thresholds, image size, normalisation and a state map (has_open, has_close) →
open/closed/mixed/unknown, so a serving handler loads one file and predicts states. Layout::

    {"model": state_dict, "predictor": PredictorMeta.to_dict()}

Only tensors, str, int, float, bool, None, list and dict are stored, so the file is read with
``torch.load(weights_only=True)`` (``engine.checkpoint.load_checkpoint``); a pickle that tries to
run code is refused. Decision rule: ``prob >= threshold`` — the rule under which
``calibrate.search_thresholds`` picked the thresholds.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

from kagglekit.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from kagglekit.tasks.multilabel.data import StateMap
from kagglekit.tasks.multilabel.model_wrap import TimmClassifier
from kagglekit.tta.classification import View, tta_probs_classification

FORMAT_VERSION = 1
NO_THRESHOLDS = "checkpoint has no thresholds; re-export it with thresholds from validation"


@dataclass
class PredictorMeta:
    """What a served model needs besides its weights.

    kind='multilabel': ``attributes`` (K names), ``thresholds`` (K floats in (0, 1)), optional
    ``state_map`` {"1,0": "open", ...} keyed by the 0/1 decision vector in attribute order.
    kind='softmax': ``classes`` (K names); thresholds/state_map unused.
    ``mean``/``std``: per-channel RGB normalisation on the 0–1 scale (ImageNet by default).
    ``flip_permutation``: attribute column swap under a horizontal flip (used by flip TTA only).
    """

    backbone: str
    kind: str = "multilabel"
    attributes: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    image_size: int = 224
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    state_map: dict[str, str] = field(default_factory=dict)
    flip_permutation: list[int] = field(default_factory=list)
    version: str = ""
    notes: str = ""

    @property
    def labels(self) -> list[str]:
        """Output column names: attributes (multilabel) or classes (softmax); length K."""
        return list(self.attributes if self.kind == "multilabel" else self.classes)

    def validate(self, strict_thresholds: bool = True) -> None:
        """Raise ``ValueError`` with a fix-it message on inconsistent metadata."""
        if self.kind not in ("multilabel", "softmax"):
            raise ValueError(f"predictor kind {self.kind!r}: use 'multilabel' or 'softmax'")
        if not self.labels:
            raise ValueError(f"{self.kind} predictor needs {'attributes' if self.kind == 'multilabel' else 'classes'}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must be 3 values with std > 0, got {self.mean} / {self.std}")
        if int(self.image_size) < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.kind == "multilabel":
            self._validate_thresholds(strict_thresholds)
            if self.state_map:
                StateMap.from_dict({"attributes": self.attributes, "states": self.state_map})  # key check

    def _validate_thresholds(self, strict: bool) -> None:
        if not self.thresholds:
            raise ValueError(NO_THRESHOLDS)
        if len(self.thresholds) != len(self.attributes):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.attributes)} attributes "
                             f"{self.attributes}")
        for name, t in zip(self.attributes, self.thresholds):
            t = _as_float(t)
            if not (math.isfinite(t) and 0.0 <= t <= 1.0):
                raise ValueError(f"threshold of {name!r} is {t!r}; thresholds must be finite, in [0, 1]")
            if t in (0.0, 1.0):
                # Seed v20260515: val threshold 1.0 for has_open (searched on saturated fp16
                # probabilities) → 'open' never fired on float32 outputs, every open door 'unknown'.
                msg = (f"threshold of {name!r} is {t}: with 'prob >= threshold' it fires "
                       f"{'always' if t == 0.0 else 'only on saturated probabilities'}; search "
                       "thresholds on float32 probabilities or on a grid inside (0, 1)")
                if strict:
                    raise ValueError(msg)
                warnings.warn(msg, stacklevel=3)

    def to_dict(self) -> dict[str, Any]:
        """weights_only-safe plain dict (str/int/float/list/dict), with a format version."""
        with warnings.catch_warnings():  # degenerate thresholds are judged by save/load (strict flag)
            warnings.simplefilter("ignore")
            self.validate(strict_thresholds=False)
        d = asdict(self)
        d["thresholds"] = [float(t) for t in self.thresholds]
        d["mean"], d["std"] = [float(v) for v in self.mean], [float(v) for v in self.std]
        d["image_size"] = int(self.image_size)
        d["format"] = FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], strict_thresholds: bool = True) -> PredictorMeta:
        """Inverse of :meth:`to_dict`; ``CheckpointError`` on missing or inconsistent entries."""
        if int(data.get("format", FORMAT_VERSION)) > FORMAT_VERSION:
            raise CheckpointError(f"predictor format {data['format']} is newer than this kagglekit "
                                  f"({FORMAT_VERSION}); upgrade kagglekit")
        known = {f.name for f in fields(cls)}
        try:
            meta = cls(**{k: v for k, v in data.items() if k in known})
            meta.validate(strict_thresholds)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"invalid predictor metadata: {exc}") from None
        return meta


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def save_predictor(path: str | Path, model_state: Mapping[str, torch.Tensor], meta: PredictorMeta,
                   strict_thresholds: bool = True) -> Path:
    """Write ``{"model": state (on CPU), "predictor": meta.to_dict()}`` atomically.

    ``ValueError`` on invalid metadata (e.g. no thresholds, or a 0/1 threshold when strict).
    """
    meta.validate(strict_thresholds)
    state = {k: v.detach().cpu() for k, v in model_state.items()}
    return save_checkpoint(path, {"model": state, "predictor": meta.to_dict()})


def default_build_model(meta: PredictorMeta) -> nn.Module:
    """``TimmClassifier(meta.backbone, K, meta.kind)`` with random init (weights come from the file)."""
    return TimmClassifier(meta.backbone, num_classes=len(meta.labels), kind=meta.kind)


class Predictor:
    """Images (list of (H, W, 3) uint8 RGB) → probabilities, 0/1 decisions and states."""

    def __init__(self, model: nn.Module, meta: PredictorMeta, device: str | torch.device = "cpu") -> None:
        self.meta = meta
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.state_map = (StateMap.from_dict({"attributes": meta.attributes, "states": meta.state_map})
                          if meta.kind == "multilabel" and meta.state_map else None)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu",
                        build_model: Callable[[PredictorMeta], nn.Module] | None = None,
                        strict_thresholds: bool = True) -> Predictor:
        """Load a :func:`save_predictor` file (weights_only); the model must match the state-dict layout."""
        ckpt = load_checkpoint(path)
        if not isinstance(ckpt, dict) or "predictor" not in ckpt or "model" not in ckpt:
            raise CheckpointError(f"{path}: not a predictor checkpoint (needs 'model' and 'predictor' "
                                  "entries; export it with save_predictor)")
        try:
            meta = PredictorMeta.from_dict(ckpt["predictor"], strict_thresholds)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        model = (build_model or default_build_model)(meta)
        try:
            model.load_state_dict(ckpt["model"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit the model built for backbone "
                                  f"{meta.backbone!r} ({str(exc)[:300]})") from None
        return cls(model, meta, device)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """List of (H, W, 3) uint8 RGB → (N, 3, S, S) float32, S = meta.image_size.

        Same as the training/validation pipeline (tasks.multilabel.data): squash-resize with
        cv2 INTER_AREA, /255, (x - mean) / std.
        """
        s = int(self.meta.image_size)
        mean = np.asarray(self.meta.mean, np.float32)
        std = np.asarray(self.meta.std, np.float32)
        out = []
        for i, img in enumerate(images):
            img = np.asarray(img)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"image {i}: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
            if img.shape[:2] != (s, s):
                img = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
            out.append(((img.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))
        return torch.from_numpy(np.ascontiguousarray(np.stack(out)))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model({"image": x})["logits"]

    @torch.no_grad()
    def predict_proba(self, images: Sequence[np.ndarray], batch_size: int = 32,
                      views: Sequence[View] | None = None) -> np.ndarray:
        """(N, K) float32: sigmoid (multilabel) or softmax (softmax kind) probabilities.

        ``views``: optional scale × flip TTA (``tta.classification``); flipped views use the
        stored ``flip_permutation`` when there is one.
        """
        act = "sigmoid" if self.meta.kind == "multilabel" else "softmax"
        views = list(views) if views else [View(1.0, False)]
        perm = self.meta.flip_permutation or None
        chunks = []
        for start in range(0, len(images), batch_size):
            x = self.preprocess(images[start:start + batch_size]).to(self.device)
            chunks.append(tta_probs_classification(self._logits, x, views, act, perm).cpu())
        if not chunks:
            return np.zeros((0, len(self.meta.labels)), np.float32)
        return torch.cat(chunks).numpy().astype(np.float32)

    def decide(self, probs: np.ndarray) -> pd.DataFrame:
        """(N, K) probabilities → table: ``<label>_prob`` columns, then decisions.

        multilabel: ``<attr>`` = int(prob >= threshold) and ``state`` (state map; "?" unmapped,
        only when a state map is stored). softmax: ``class`` = argmax class name.
        """
        probs = np.asarray(probs, np.float32)
        labels = self.meta.labels
        frame = pd.DataFrame({f"{n}_prob": probs[:, j] for j, n in enumerate(labels)})
        if self.meta.kind == "softmax":
            frame["class"] = [labels[j] for j in probs.argmax(1)] if len(probs) else []
            return frame
        decisions = (probs >= np.asarray(self.meta.thresholds, np.float32)).astype(np.int64)
        for j, name in enumerate(labels):
            frame[name] = decisions[:, j]
        if self.state_map is not None:
            frame["state"] = [self.state_map.state_of(v) for v in decisions]
        return frame

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 32,
                views: Sequence[View] | None = None) -> pd.DataFrame:
        """Images → :meth:`decide` table (one row per image, input order)."""
        return self.decide(self.predict_proba(images, batch_size, views))
