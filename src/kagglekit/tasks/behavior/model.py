"""Per-frame behaviour taggers over windows of pose features.

``forward(batch) -> {"logits": (B, L, C), "loss": scalar?}`` with ``batch["x"]`` (B, L, F),
optional ``batch["valid"]`` (B, L) bool (False on padding) and optional ``batch["y"]``: (B, L)
int64 for the grouped ``softmax``/``focal`` losses or (B, L, C) float with -1 = not labelled for
``multilabel``.

- :class:`Conv1DBiLSTM`: seed report 001 (MABe V5/V6): conv 64/128/256 → BiLSTM 256 × 2 layers,
  dropout 0.3. The report states "~2.1 M parameters", but that architecture has ~2.93 M at
  288 inputs (the two BiLSTM layers alone hold 2.63 M); we keep the stated architecture.
- :class:`TransformerTagger`: the report's V7 plan (a Transformer encoder instead of the LSTM).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kagglekit.losses import focal_loss, masked_bce, weighted_ce

LOSS_KINDS = ("softmax", "focal", "multilabel")


@dataclass(frozen=True)
class LossSpec:
    """``softmax``: class-weighted CE (seed weights [1, 5, 8, 8]); ``focal``: focal loss with
    ``focal_gamma`` and per-class ``focal_alpha`` (seed plan: 2.0, [0.25, 0.75, 0.75, 0.75]);
    ``multilabel``: BCE over actions with -1 entries masked out."""
    kind: str = "softmax"
    class_weights: tuple[float, ...] | None = None
    focal_gamma: float = 2.0
    focal_alpha: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"loss kind {self.kind!r} unknown; use one of {LOSS_KINDS}")


def frame_loss(logits: torch.Tensor, batch: dict, spec: LossSpec, class_weights: torch.Tensor | None,
               alpha: torch.Tensor | None) -> torch.Tensor:
    """``logits`` (B, L, C) → scalar; padded frames (``valid`` False) never contribute."""
    valid = batch.get("valid")
    y = batch["y"]
    if spec.kind == "multilabel":
        return masked_bce(logits, y, valid)
    if valid is not None:
        y = y.masked_fill(~valid.bool(), -1)
    flat_logits, flat_y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1).long()
    if spec.kind == "focal":
        return focal_loss(flat_logits, flat_y, spec.focal_gamma, alpha)
    return weighted_ce(flat_logits, flat_y, class_weights)


class _Tagger(nn.Module):
    """Shared loss plumbing: subclasses implement ``encode(x, valid) -> (B, L, C)``."""

    def __init__(self, loss: LossSpec) -> None:
        super().__init__()
        self.loss_spec = loss
        self.register_buffer("class_weights", _tensor(loss.class_weights), persistent=False)
        self.register_buffer("focal_alpha", _tensor(loss.focal_alpha), persistent=False)

    def encode(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        valid = batch.get("valid")
        out = {"logits": self.encode(batch["x"].float(), None if valid is None else valid.bool())}
        if "y" in batch:
            out["loss"] = frame_loss(out["logits"], batch, self.loss_spec, self.class_weights, self.focal_alpha)
        return out


def _tensor(values: tuple[float, ...] | None) -> torch.Tensor | None:
    return None if values is None else torch.tensor(values, dtype=torch.float32)


def conv_block(c_in: int, c_out: int, kernel: int, dropout: float, activation: str) -> nn.Sequential:
    """Conv1d (same padding) → BatchNorm1d → ReLU/GELU → Dropout; (B, c_in, L) → (B, c_out, L)."""
    act = {"relu": nn.ReLU, "gelu": nn.GELU}[activation]
    return nn.Sequential(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.BatchNorm1d(c_out), act(),
                         nn.Dropout(dropout))


class Conv1DBiLSTM(_Tagger):
    """Seed V5/V6 tagger: (B, L, F) → conv stack over time → BiLSTM → linear → (B, L, C).

    Padded tails are handled with ``pack_padded_sequence`` (``valid`` must be a prefix mask, as
    :class:`~kagglekit.tasks.behavior.windows.WindowDataset` produces), so the backward LSTM starts
    at the last real frame; the convolutions still see zero padding.
    """

    def __init__(self, in_features: int, num_outputs: int, conv_channels: tuple[int, ...] = (64, 128, 256),
                 lstm_hidden: int = 256, lstm_layers: int = 2, dropout: float = 0.3, kernel_size: int = 5,
                 activation: str = "relu", loss: LossSpec = LossSpec()) -> None:
        super().__init__(loss)
        chans = (in_features, *conv_channels)
        self.conv = nn.Sequential(*[conv_block(a, b, kernel_size, dropout, activation)
                                    for a, b in zip(chans[:-1], chans[1:])])
        self.lstm = nn.LSTM(chans[-1], lstm_hidden, num_layers=lstm_layers, batch_first=True,
                            bidirectional=True, dropout=dropout if lstm_layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * lstm_hidden, num_outputs))

    def encode(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, L, C_conv)
        length = h.shape[1]
        if valid is not None and not bool(valid.all()):
            lengths = valid.sum(1).clamp_min(1).cpu()
            packed = pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=length)
        else:
            h = self.lstm(h)[0]
        return self.head(h)


class TransformerTagger(_Tagger):
    """Seed V7 plan: (B, L, F) → linear embed + learned positions → pre-norm Transformer encoder
    (key padding mask = ``~valid``) → linear → (B, L, C). ``max_len`` bounds the window length."""

    def __init__(self, in_features: int, num_outputs: int, d_model: int = 128, n_heads: int = 4, n_layers: int = 4,
                 dropout: float = 0.1, max_len: int = 512, loss: LossSpec = LossSpec()) -> None:
        super().__init__(loss)
        self.embed = nn.Linear(in_features, d_model)
        self.pos = nn.Parameter(torch.zeros(1, max_len, d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_outputs)

    def encode(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        length = x.shape[1]
        if length > self.pos.shape[1]:
            raise ValueError(f"window of {length} frames exceeds max_len={self.pos.shape[1]}")
        h = self.embed(x) + self.pos[:, :length]
        pad = None if valid is None else ~valid
        return self.head(self.encoder(h, src_key_padding_mask=pad))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
