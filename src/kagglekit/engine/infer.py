"""One inference set-up for every task: the training loop's validation, each task's finalize
(OOF), test prediction and TTA all run a model through the same :class:`Inference`.

It holds the three decisions that must match between training and prediction — the device, the
autocast dtype (AMP belongs to CUDA: fp16 / bf16 there, fp32 on CPU where bf16 is emulated and
~5× slower) and channels_last (CUDA only) — so a task never re-derives them and never branches
on CPU vs GPU: on CPU ``autocast()`` is a ``nullcontext`` and nothing is converted.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """AMP belongs to CUDA: fp16 (with GradScaler) or bf16; on CPU always None (bf16 is emulated
    there and ~5x slower)."""
    if device.type != "cuda" or amp == "none":
        return None
    return {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16}[amp]


def to_device(batch: Any, device: torch.device, channels_last: bool) -> Any:
    """Tensors moved (4-D float ones to channels_last on request), also inside lists and dicts
    (detection batches: a list of images and a list of target dicts)."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, dict):
        return {key: to_device(value, device, channels_last) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device, channels_last) for value in batch)
    return batch


@dataclass(frozen=True)
class Inference:
    """How a model predicts: ``device``, autocast ``dtype`` (None: fp32) and ``channels_last``."""

    device: torch.device
    dtype: torch.dtype | None = None
    channels_last: bool = False

    @classmethod
    def for_device(cls, device: torch.device | str, amp: str = "auto", channels_last: bool = True) -> "Inference":
        """The engine's rules applied to ``device``: no autocast and no channels_last off CUDA."""
        device = torch.device(device)
        return cls(device, amp_dtype(amp, device), bool(channels_last) and device.type == "cuda")

    def autocast(self) -> ContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare(self, model: nn.Module) -> nn.Module:
        """``model`` on the device, in eval mode (channels_last weights on CUDA when asked)."""
        model = model.to(self.device).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def to_device(self, batch: Any) -> Any:
        return to_device(batch, self.device, self.channels_last)

    def forward(self, model: nn.Module, output: str = "logits", key: str = "image") -> Callable[[torch.Tensor], torch.Tensor]:
        """``f(x)``: x (B, C, H, W) or (B, T, F) → ``model({key: x})[output]`` as float32, under
        autocast, x moved to the device (channels_last when 4-D on CUDA). The model is prepared
        once here; TTA calls ``f`` once per view."""
        model = self.prepare(model)

        def forward(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad(), self.autocast():
                return model({key: self.to_device(x)})[output].float()
        return forward

    def batches(self, loader: Iterable[Any], desc: str = "predict") -> Iterator[Any]:
        """Each batch of ``loader`` moved to the device, with a progress bar."""
        for batch in tqdm(loader, desc=desc, leave=False):
            yield self.to_device(batch)
