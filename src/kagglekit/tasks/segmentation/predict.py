"""Validation/test inference with TTA: per-temperature confusion at the original resolution, and
OOF/test probabilities written to the prediction store at ``oof_scale``.

Temperature only matters across averaged views (argmax of one view's softmax(z/T) ignores T), so
it is searched here, where each view's logits exist, not afterwards on stored probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kagglekit.metrics.segmentation import ConfusionMatrix
from kagglekit.oof import Manifest, PredictionWriter
from kagglekit.tta.segmentation import View, tta_probs

IGNORE = 255


@dataclass(frozen=True)
class TTASpec:
    views: tuple[View, ...]
    temperatures: tuple[float, ...]
    average: str = "prob"


def scaled_hw(hw: Sequence[int], scale: float) -> tuple[int, int]:
    return max(1, round(int(hw[0]) * scale)), max(1, round(int(hw[1]) * scale))


def downsample_probs(probs: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
    """(B, C, H, W) → (B, C, *hw) float32 numpy (area averaging keeps probabilities summing to 1)."""
    if tuple(probs.shape[-2:]) != hw:
        probs = F.interpolate(probs, size=hw, mode="area")
    return probs.cpu().numpy()


def downsample_target(target: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
    """(B, H, W) int → (B, *hw) uint8 by nearest neighbour (labels are not averaged)."""
    t = target.float().unsqueeze(1)
    if tuple(t.shape[-2:]) != hw:
        t = F.interpolate(t, size=hw, mode="nearest")
    return t.squeeze(1).to(torch.uint8).cpu().numpy()


def _batch_orig_hw(batch: dict) -> tuple[int, int]:
    sizes = {tuple(int(v) for v in s) for s in batch["orig_size"]}
    if len(sizes) != 1:
        raise ValueError(f"images of different original sizes in one batch {sorted(sizes)}; use valid_batch_size=1")
    return next(iter(sizes))


@torch.no_grad()
def predict_validation(forward: Callable[[torch.Tensor], torch.Tensor], loader: Iterable[dict],
                       load_targets: Callable[[Sequence[str]], torch.Tensor], tta: TTASpec, num_classes: int,
                       oof_scale: float, candidates: dict[float, PredictionWriter] | None,
                       device: torch.device) -> dict[float, ConfusionMatrix]:
    """Per-temperature confusion matrices at the original label resolution; when ``candidates``
    is given, each temperature's probabilities are also streamed into its writer at ``oof_scale``."""
    confusions = {t: ConfusionMatrix(num_classes, ignore_index=IGNORE) for t in tta.temperatures}
    for batch in tqdm(loader, desc="valid TTA", leave=False):
        hw = _batch_orig_hw(batch)
        target = load_targets(batch["id"])
        small_target = downsample_target(target, scaled_hw(hw, oof_scale))
        probs = tta_probs(forward, batch["image"].to(device), tta.views, hw, tta.temperatures, tta.average)
        target_np = target.numpy()
        for t, p in probs.items():
            confusions[t].update(p.argmax(1).to(torch.uint8).cpu().numpy(), target_np)
            if candidates is not None:
                candidates[t].write(batch["id"], downsample_probs(p, scaled_hw(hw, oof_scale)), small_target)
        del probs
    return confusions


@torch.no_grad()
def predict_test(forward: Callable[[torch.Tensor], torch.Tensor], loader: Iterable[dict], tta: TTASpec,
                 temperature: float, oof_scale: float, writer: PredictionWriter, device: torch.device) -> None:
    for batch in tqdm(loader, desc="test TTA", leave=False):
        hw = scaled_hw(_batch_orig_hw(batch), oof_scale)
        probs = tta_probs(forward, batch["image"].to(device), tta.views, hw, (temperature,), tta.average)[temperature]
        writer.write(batch["id"], probs.cpu().numpy())


def open_candidates(final_dir: Path, manifest: Manifest, temperatures: Sequence[float]) -> dict[float, PredictionWriter]:
    """One writer per temperature, all aimed at ``final_dir`` (each streams into its own temp file
    there; only the chosen one is renamed into place)."""
    return {t: PredictionWriter(final_dir, replace(manifest, temperature=float(t)), with_targets=True)
            for t in temperatures}


def keep_best_candidate(candidates: dict[float, PredictionWriter], best_t: float, metric_name: str,
                        metric: float) -> Path:
    for t, writer in candidates.items():
        if t != best_t:
            writer.abort()
    best = candidates[best_t]
    best.manifest.metric_name, best.manifest.metric = metric_name, float(metric)
    return best.commit()
