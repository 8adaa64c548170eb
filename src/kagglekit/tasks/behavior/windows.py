"""Fixed-length windows over per-frame sequences, their reassembly, and a torch dataset.

Windows are ``length`` frames (seed report 001: 100) every ``stride`` frames; the last window is
aligned to the sequence end so every frame is covered. A sequence shorter than one window gets a
single window starting at 0, padded at the end (features 0, labels -1, ``valid`` False).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

LABEL_PAD = -1  # "not labelled": ignored by every loss in kagglekit.losses


def window_starts(n_frames: int, length: int = 100, stride: int = 50) -> np.ndarray:
    """Start frames (N,) int64 covering ``[0, n_frames)``; the last start is ``n_frames - length``
    (so the last stride may be shorter); ``[0]`` when ``n_frames <= length``."""
    if length <= 0 or stride <= 0 or n_frames <= 0:
        raise ValueError(f"need positive n_frames/length/stride, got {n_frames}/{length}/{stride}")
    if n_frames <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_frames - length + 1, stride, dtype=np.int64)
    if starts[-1] != n_frames - length:
        starts = np.append(starts, n_frames - length)
    return starts


def _cut(array: np.ndarray, start: int, length: int, pad_value: float) -> np.ndarray:
    """``array[start:start+length]`` padded at the end with ``pad_value`` to ``length`` rows."""
    piece = array[start:start + length]
    if len(piece) == length:
        return piece
    pad = np.full((length - len(piece),) + array.shape[1:], pad_value, dtype=array.dtype)
    return np.concatenate([piece, pad], axis=0)


def make_windows(features: np.ndarray, labels: np.ndarray | None, length: int = 100, stride: int = 50,
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``features`` (T, F), ``labels`` (T, ...) or None → ``X (N, length, F)``, ``Y (N, length, ...)``
    (padded with -1) or None, ``valid (N, length)`` bool (False on padding)."""
    n = len(features)
    starts = window_starts(n, length, stride)
    x = np.stack([_cut(features, s, length, 0) for s in starts])
    valid = np.stack([_cut(np.ones(n, dtype=bool), s, length, False) for s in starts])
    y = None if labels is None else np.stack([_cut(labels, s, length, LABEL_PAD) for s in starts])
    return x, y, valid


def window_weights(length: int, weighting: str = "triangular") -> np.ndarray:
    """(length,) float64 overlap weights, all > 0. ``triangular``: ``min(i + 1, length - i)``, which
    down-weights the window edges where a sequence model lacks context; ``uniform``: ones."""
    if weighting == "uniform":
        return np.ones(length)
    if weighting == "triangular":
        i = np.arange(length)
        return np.minimum(i + 1, length - i).astype(np.float64)
    raise ValueError(f"weighting {weighting!r} unknown; use 'triangular' or 'uniform'")


def reassemble(window_outputs: np.ndarray, starts: np.ndarray, n_frames: int,
               weighting: str = "triangular") -> np.ndarray:
    """Weighted overlap average. ``window_outputs`` (N, L, C) at ``starts`` (N,) → (T, C) float32.

    Every frame is a convex combination of the windows covering it, so windows cut from one signal
    give the signal back for any stride; padded tail positions (beyond ``n_frames``) are dropped.
    """
    outputs = np.asarray(window_outputs, dtype=np.float64)
    n, length = outputs.shape[:2]
    if len(starts) != n:
        raise ValueError(f"{n} windows but {len(starts)} starts")
    w = window_weights(length, weighting)
    total = np.zeros((n_frames,) + outputs.shape[2:])
    norm = np.zeros(n_frames)
    for out, s in zip(outputs, starts):
        stop = min(int(s) + length, n_frames)
        wk = w[:stop - s]
        total[s:stop] += out[:stop - s] * wk.reshape((-1,) + (1,) * (outputs.ndim - 2))
        norm[s:stop] += wk
    if (norm <= 0).any():
        raise ValueError("some frames are covered by no window; use window_starts for the starts")
    return (total / norm.reshape((-1,) + (1,) * (outputs.ndim - 2))).astype(np.float32)


class WindowDataset(Dataset):
    """Windows over a list of videos, cut lazily.

    Each video is a dict with ``features`` (T, F) float, optional ``mask`` (T, F) bool (observed
    feature entries; all True when absent) and optional ``labels``: (T,) int (grouped classes) or
    (T, A) float (multi-label, -1 = not labelled). Items: ``x`` (L, F) float32, ``mask`` (L, F)
    float32, ``valid`` (L,) bool (False on padding), ``y`` (L,) int64 or (L, A) float32 padded with
    -1 (absent when the video has no labels), ``video_index`` and ``start`` ints.
    """

    def __init__(self, videos: Sequence[dict], length: int = 100, stride: int = 50) -> None:
        # convert once (not per item): features float32, mask bool
        self.videos = [{**v, "features": np.asarray(v["features"], dtype=np.float32),
                        "mask": None if v.get("mask") is None else np.asarray(v["mask"], dtype=bool)}
                       for v in videos]
        self.length = length
        self.index = [(v, int(s)) for v, video in enumerate(self.videos)
                      for s in window_starts(len(video["features"]), length, stride)]

    def __len__(self) -> int:
        return len(self.index)

    def starts_of(self, video_index: int) -> np.ndarray:
        """(N_v,) starts of one video's windows, in dataset order (for :func:`reassemble`)."""
        return np.array([s for v, s in self.index if v == video_index], dtype=np.int64)

    def __getitem__(self, i: int) -> dict:
        v, s = self.index[i]
        video, length = self.videos[v], self.length
        feats, mask = video["features"], video["mask"]
        mask = np.ones(feats.shape, dtype=bool) if mask is None else mask
        item = {
            "x": torch.from_numpy(_cut(feats, s, length, 0).copy()),
            "mask": torch.from_numpy(_cut(mask, s, length, False).astype(np.float32)),
            "valid": torch.from_numpy(_cut(np.ones(len(feats), dtype=bool), s, length, False).copy()),
            "video_index": v, "start": s,
        }
        labels = video.get("labels")
        if labels is not None:
            labels = np.asarray(labels)
            dtype = np.int64 if labels.ndim == 1 else np.float32
            item["y"] = torch.from_numpy(_cut(labels.astype(dtype), s, length, LABEL_PAD).copy())
        return item
