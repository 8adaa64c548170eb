"""Multi-scale × horizontal-flip TTA for dense prediction, with streaming accumulation.

Each view: resize the input (bilinear), pad to a multiple of the network stride, run, crop the
padding, undo the flip, resize the logits to ``out_hw`` and fold them into running sums — one sum
per temperature. Peak memory is one view's activations plus the accumulators, whatever the number
of views. ``average='prob'`` averages softmax(logits / T) (default); ``'logit'`` averages logits
and applies softmax(mean / T) at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]  # (B, Cin, H, W) -> logits (B, C, H, W)


@dataclass(frozen=True)
class View:
    scale: float
    flip: bool

    @property
    def name(self) -> str:
        return f"s{self.scale:g}{'-flip' if self.flip else ''}"


def make_views(scales: Sequence[float], flip: bool) -> list[View]:
    """Seed: scales (0.5, 0.75, 1.0, 1.25, 1.5) × flip = 10 views."""
    return [View(float(s), f) for s in scales for f in ((False, True) if flip else (False,))]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad bottom/right so H and W divide ``multiple``; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return (F.pad(x, (0, pw, 0, ph)) if ph or pw else x), (h, w)


def view_logits(forward: Forward, image: torch.Tensor, view: View, out_hw: tuple[int, int],
                multiple: int = 32) -> torch.Tensor:
    """Logits of one view mapped back to ``out_hw``. image (B, Cin, H, W) → (B, C, *out_hw) float32."""
    x = image.flip(-1) if view.flip else image
    if view.scale != 1.0:
        size = (max(1, round(x.shape[-2] * view.scale)), max(1, round(x.shape[-1] * view.scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    x, (h, w) = pad_to_multiple(x, multiple)
    logits = forward(x)[..., :h, :w].float()
    if view.flip:
        logits = logits.flip(-1)
    if tuple(logits.shape[-2:]) != tuple(out_hw):
        logits = F.interpolate(logits, size=out_hw, mode="bilinear", align_corners=False)
    return logits


@torch.no_grad()
def tta_probs(forward: Forward, image: torch.Tensor, views: Sequence[View], out_hw: tuple[int, int],
              temperatures: Sequence[float] = (1.0,), average: str = "prob",
              multiple: int = 32) -> dict[float, torch.Tensor]:
    """Averaged class probabilities per temperature: {T: (B, C, *out_hw) float32}."""
    if average not in ("prob", "logit"):
        raise ValueError(f"tta average {average!r}: use 'prob' or 'logit'")
    if not views:
        raise ValueError("TTA needs at least one view (check tta_scales)")
    n = float(len(views))
    if average == "logit":
        total = sum_view_logits(forward, image, views, out_hw, multiple)
        return {t: torch.softmax(total / (n * t), dim=1) for t in temperatures}
    sums: dict[float, torch.Tensor] = {}
    for view in views:
        logits = view_logits(forward, image, view, out_hw, multiple)
        for t in temperatures:
            probs = torch.softmax(logits / t, dim=1)
            sums[t] = probs if t not in sums else sums[t].add_(probs)
        del logits
    return {t: s.div_(n) for t, s in sums.items()}


def sum_view_logits(forward: Forward, image: torch.Tensor, views: Sequence[View], out_hw: tuple[int, int],
                    multiple: int = 32) -> torch.Tensor:
    total: torch.Tensor | None = None
    for view in views:
        logits = view_logits(forward, image, view, out_hw, multiple)
        total = logits if total is None else total.add_(logits)
    assert total is not None
    return total
