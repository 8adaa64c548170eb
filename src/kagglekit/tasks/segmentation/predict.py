"""Validation/test inference with TTA: per-temperature confusion at the original resolution, and
OOF/test probabilities written to the prediction store at ``oof_scale``.

Temperature only matters across averaged views (argmax of one view's softmax(z/T) ignores T), so
it is searched here, where each view's logits exist, not afterwards on stored probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kagglekit.metrics.segmentation import ConfusionMatrix
from kagglekit.store.arrays import Manifest, PredictionWriter
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


def batch_sizes(batch: dict) -> list[tuple[int, int]]:
    """Each image's original (H, W) in the batch."""
    return [(int(h), int(w)) for h, w in batch["orig_size"]]


def batch_probs(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tta: "TTASpec",
                sizes: Sequence[tuple[int, int]], temperatures: Sequence[float]) -> Iterator[dict[float, torch.Tensor]]:
    """Per image, {T: probabilities (1, C, H_i, W_i)} at the image's own original size.

    One size in the batch: the views' logits are upsampled straight to it (the seed's path).
    Several: TTA at the network's input size, then each image's averaged probabilities resized
    (bilinear) to its own size."""
    if len(set(sizes)) == 1:
        probs = tta_probs(forward, images, tta.views, sizes[0], temperatures, tta.average)
        for i in range(len(sizes)):
            yield {t: p[i:i + 1] for t, p in probs.items()}
        return
    probs = tta_probs(forward, images, tta.views, tuple(images.shape[-2:]), temperatures, tta.average)
    for i, hw in enumerate(sizes):
        yield {t: F.interpolate(p[i:i + 1], size=hw, mode="bilinear", align_corners=False) for t, p in probs.items()}


@torch.no_grad()
def predict_validation(forward: Callable[[torch.Tensor], torch.Tensor], loader: Iterable[dict],
                       load_target: Callable[[str], torch.Tensor], tta: TTASpec, num_classes: int,
                       store_hw: tuple[int, int], candidates: dict[float, PredictionWriter] | None,
                       device: torch.device) -> dict[float, ConfusionMatrix]:
    """Per-temperature confusion matrices at each image's original label resolution; when
    ``candidates`` is given, each temperature's probabilities are also streamed into its writer
    at ``store_hw`` (area-averaged; targets nearest)."""
    confusions = {t: ConfusionMatrix(num_classes, ignore_index=IGNORE) for t in tta.temperatures}
    for batch in tqdm(loader, desc="valid TTA", leave=False):
        sizes = batch_sizes(batch)
        per_image = batch_probs(forward, batch["image"].to(device), tta, sizes, tta.temperatures)
        for frame_id, probs in zip(batch["id"], per_image):
            target = load_target(frame_id)[None]  # (1, H, W)
            small_target = downsample_target(target, store_hw) if candidates is not None else None
            for t, p in probs.items():
                confusions[t].update(p.argmax(1).to(torch.uint8).cpu().numpy(), target.numpy())
                if candidates is not None:
                    candidates[t].write([frame_id], downsample_probs(p, store_hw), small_target)
            del probs
    return confusions


@torch.no_grad()
def predict_test(forward: Callable[[torch.Tensor], torch.Tensor], loader: Iterable[dict], tta: TTASpec,
                 temperature: float, store_hw: tuple[int, int], writer: PredictionWriter, device: torch.device) -> None:
    for batch in tqdm(loader, desc="test TTA", leave=False):
        sizes = batch_sizes(batch)
        if len(set(sizes)) == 1:  # the seed's path: probabilities straight at the store size
            probs = tta_probs(forward, batch["image"].to(device), tta.views, store_hw, (temperature,), tta.average)
            writer.write(batch["id"], probs[temperature].cpu().numpy())
            continue
        for frame_id, probs in zip(batch["id"], batch_probs(forward, batch["image"].to(device), tta, sizes, (temperature,))):
            writer.write([frame_id], downsample_probs(probs[temperature], store_hw))


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


class ValidationPasses:
    """The evaluator of a temperature search (:func:`kagglekit.calibrate.search_temperature`):
    each call is one validation TTA pass over a batch of temperatures — per T a confusion matrix
    at the original resolution and the OOF probabilities streamed into a candidate store — and
    only the best candidate so far is kept on disk. :meth:`commit` renames the chosen one into
    place; :meth:`abort` discards everything (call it when the search raises)."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], make_loader: Callable[[], Iterable[dict]],
                 load_target: Callable[[str], torch.Tensor], tta: TTASpec, manifest: Manifest, final_dir: Path,
                 device: torch.device) -> None:
        self.forward, self.make_loader, self.load_target = forward, make_loader, load_target
        self.tta, self.manifest, self.final_dir, self.device = tta, manifest, Path(final_dir), device
        self.confusions: dict[float, ConfusionMatrix] = {}
        self.kept: dict[float, PredictionWriter] = {}

    def __call__(self, temperatures: Sequence[float]) -> dict[float, float]:
        """{T: OOF mIoU} of ``temperatures`` (one pass)."""
        from kagglekit.calibrate import best_temperature, temperature_table
        candidates = open_candidates(self.final_dir, self.manifest, temperatures)
        self.kept.update(candidates)
        self.confusions.update(predict_validation(
            self.forward, self.make_loader(), self.load_target, replace(self.tta, temperatures=tuple(temperatures)),
            self.manifest.shape[1], tuple(self.manifest.shape[2:]), candidates, self.device))
        table = temperature_table({t: cm.matrix for t, cm in self.confusions.items()})
        best, _ = best_temperature(table)
        for t in [t for t in self.kept if t != best]:  # disk: one candidate store at a time
            self.kept.pop(t).abort()
        scores = dict(zip(table["temperature"], table["miou"]))
        return {float(t): float(scores[float(t)]) for t in temperatures}

    def commit(self, best_t: float, metric_name: str, metric: float) -> Path:
        return keep_best_candidate(self.kept, best_t, metric_name, metric)

    def abort(self) -> None:
        for writer in self.kept.values():
            writer.abort()
