"""Semantic-segmentation metrics: a fast confusion matrix, IoU / mIoU, pixel and class accuracy.

Conventions
-----------
- Confusion matrices are ``(C, C)`` int64 with **rows = target, columns = prediction**
  (same as ``sklearn.metrics.confusion_matrix(y_true, y_pred)``).
- Pixels whose target equals ``ignore_index`` are dropped before counting. When
  ``0 <= ignore_index < num_classes`` the ignored class keeps its column: predicting it on a
  valid pixel is counted (as in torchmetrics, which filters on the target only).
- IoU of class ``c`` is ``TP / (TP + FP + FN)``; it is NaN when the class is absent from both the
  (non-ignored) target and the prediction, and mIoU is the mean over the non-NaN classes.
  Note: torchmetrics' ``average='macro'`` additionally drops the ``ignore_index`` class from the
  mean; the two agree whenever ``ignore_index`` is None or ``>= num_classes``.

Why the uint8 path is fast (measured in ``bench/bench_miou.py``)
----------------------------------------------------------------
A plain ``np.bincount(C * target.astype(int64) + pred)`` materialises int64 temporaries of
8 bytes per pixel that do not fit in any cache, then counts them. Here a compiled loop (numba,
``nogil``) reads the uint8 target and prediction once and increments one of four interleaved
256-bin sub-histograms (valid while ``rows * C <= 256``); work items run on a thread pool. A
pure-numpy version (uint8 keys, run-length / uint16-pair ``np.bincount``) peaked at ~5x;
``np.bincount``'s own counting loop was the ceiling. No torch/OpenMP here on purpose: thousands
of tiny OpenMP parallel regions stall badly on an oversubscribed CPU.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numba
import numpy as np

__all__ = [
    "ConfusionMatrix",
    "argmax_confusion_uint8",
    "confusion_matrix",
    "iou_from_confusion",
    "metrics_from_confusion",
    "miou",
]

_CHUNK = 1 << 18  # pixels per inner chunk: scratch buffers (~1.5 MiB) stay in cache
_WORK = 16 * _CHUNK  # pixels per thread-pool work item


def _default_threads(num_threads: int | None) -> int:
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        return num_threads
    return max(1, min(4, os.cpu_count() or 1))


def _map_chunks(fn: Callable[[int, int], Any], n: int, chunk: int, num_threads: int) -> list[Any]:
    """Run ``fn(start, stop)`` over ``[0, n)`` in chunks, on a thread pool when worthwhile."""
    bounds = [(s, min(n, s + chunk)) for s in range(0, n, chunk)]
    if num_threads == 1 or len(bounds) < 2:
        return [fn(s, e) for s, e in bounds]
    with ThreadPoolExecutor(max_workers=min(num_threads, len(bounds))) as pool:
        return list(pool.map(lambda b: fn(*b), bounds))


def _check_inputs(pred: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes/dtypes; return both as flat contiguous arrays (no copy when contiguous)."""
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}; pass label maps of equal shape")
    for name, arr in (("pred", pred), ("target", target)):
        if arr.dtype.kind not in "iu":
            raise ValueError(
                f"{name} must hold integer class ids, got dtype {arr.dtype}; "
                "take argmax of scores / cast labels to an integer dtype first"
            )
    return np.ascontiguousarray(pred).reshape(-1), np.ascontiguousarray(target).reshape(-1)


def _raise_bad_pred(value: int, num_classes: int) -> None:
    raise ValueError(f"pred contains class id {value} outside [0, {num_classes}); predictions must be in 0..{num_classes - 1}")


def _raise_bad_target(value: int, num_classes: int, ignore_index: int | None) -> None:
    hint = f" and is not ignore_index={ignore_index}" if ignore_index is not None else " (no ignore_index set)"
    raise ValueError(
        f"target contains value {value} outside [0, {num_classes}){hint}; "
        "fix num_classes or pass the void label as ignore_index"
    )


def _first_bad_target(target: np.ndarray, num_classes: int, ignore_index: int | None) -> int | None:
    """First target value outside ``[0, C)`` that is not ``ignore_index`` (chunked scan), else None."""
    for s in range(0, target.size, 1 << 22):
        t = target[s : s + (1 << 22)]
        bad = (t >= num_classes) | (t < 0) if t.dtype.kind == "i" else t >= num_classes
        if ignore_index is not None:
            bad &= t != ignore_index
        if bad.any():
            return int(t[bad][0])
    return None


def _check_ranges(tmin: int, tmax: int, pmin: int, pmax: int, target: np.ndarray,
                  num_classes: int, ignore_index: int | None) -> None:
    """Raise a ValueError naming the offending value when pred/target hold out-of-range ids."""
    if pmin < 0 or pmax >= num_classes:
        _raise_bad_pred(pmin if pmin < 0 else pmax, num_classes)
    if tmin >= 0 and tmax < num_classes:
        return
    bad = _first_bad_target(target, num_classes, ignore_index)
    if bad is not None:
        _raise_bad_target(bad, num_classes, ignore_index)


def _uint8_rows(num_classes: int, ignore_index: int | None) -> tuple[int, int | None] | None:
    """Rows of the uint8 key table and the clip value mapping an out-of-range ignore to row C.

    Returns None when ``rows * C > 256`` (keys would not fit in uint8).
    """
    clip = num_classes if ignore_index is not None and num_classes <= ignore_index <= 255 else None
    rows = num_classes + (clip is not None)
    return (rows, clip) if rows * num_classes <= 256 else None


@numba.njit(cache=True, nogil=True)
def _hist_uint8_kernel(pred: np.ndarray, target: np.ndarray, num_classes: int, clip: int) -> tuple[np.ndarray, int, int]:
    """256-bin histogram of ``min(target, clip) * C + pred`` over flat uint8 arrays, plus the max
    of target and pred (for range checks). Four interleaved sub-histograms break the
    store-to-load dependency when neighbouring pixels hit the same bin (they usually do). Keys
    are masked to 8 bits so invalid ids can never write out of bounds; they are rejected by the
    caller's range check before the histogram is used."""
    hist = np.zeros((4, 256), np.int64)
    tmax = 0
    pmax = 0
    n = pred.size
    for i in range(n):
        t = target[i]
        p = pred[i]
        tmax = max(tmax, t)
        pmax = max(pmax, p)
        row = min(t, clip)
        hist[i & 3, (row * num_classes + p) & 255] += 1
    return hist.sum(0), tmax, pmax


def _count_uint8(pred: np.ndarray, target: np.ndarray, num_classes: int, clip: int | None,
                 num_threads: int) -> tuple[np.ndarray, int, int]:
    """256-bin histogram of ``min(target, clip) * C + pred`` (uint8) plus the max of target and pred.

    A compiled loop (numba, GIL released) over thread-pool work items: one pass, no temporaries.
    """
    clip_value = 255 if clip is None else int(clip)

    def work(s: int, e: int) -> tuple[np.ndarray, int, int]:
        return _hist_uint8_kernel(pred[s:e], target[s:e], num_classes, clip_value)

    parts = _map_chunks(work, target.size, max(_WORK, -(-target.size // num_threads)), num_threads)
    hist = np.sum([p[0] for p in parts], axis=0)
    return hist, int(max(p[1] for p in parts)), int(max(p[2] for p in parts))


def _confusion_uint8(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None,
                     rows: int, clip: int | None, num_threads: int) -> np.ndarray:
    """uint8 fast path; ``pred``/``target`` flat uint8. Returns (C, C) int64."""
    if target.size == 0:
        return np.zeros((num_classes, num_classes), np.int64)
    hist, tmax, pmax = _count_uint8(pred, target, num_classes, clip, num_threads)
    _check_ranges(0, tmax, 0, pmax, target, num_classes, ignore_index)
    cm = hist[: rows * num_classes].reshape(rows, num_classes)[:num_classes].copy()
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        cm[ignore_index] = 0
    return cm


def _confusion_generic(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None,
                       num_threads: int) -> np.ndarray:
    """Any integer dtypes / any C: validated int64 keys per chunk. Returns (C, C) int64."""
    if target.size == 0:
        return np.zeros((num_classes, num_classes), np.int64)
    _check_ranges(int(target.min()), int(target.max()), int(pred.min()), int(pred.max()),
                  target, num_classes, ignore_index)

    def work(s: int, e: int) -> np.ndarray:
        t, p = target[s:e].astype(np.int64), pred[s:e].astype(np.int64)
        if ignore_index is not None:
            keep = t != ignore_index
            t, p = t[keep], p[keep]
        return np.bincount(t * num_classes + p, minlength=num_classes * num_classes)

    parts = _map_chunks(work, target.size, _CHUNK, num_threads)
    return np.sum(parts, axis=0, dtype=np.int64).reshape(num_classes, num_classes)


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int | None = None, *, num_threads: int | None = None) -> np.ndarray:
    """Confusion matrix of integer label maps.

    Args:
        pred: predicted class ids, any shape, e.g. (N, H, W) or (H, W); integer dtype.
        target: ground-truth ids, same shape as ``pred``; values in ``[0, C)`` or ``ignore_index``.
        num_classes: C.
        ignore_index: target value whose pixels are dropped (e.g. 0 = void, or 255).
        num_threads: worker threads (default ``min(4, cpu_count)``).

    Returns:
        (C, C) int64, ``cm[t, p]`` = number of non-ignored pixels with target t predicted as p.

    Raises:
        ValueError: shape mismatch, non-integer dtype, a pred id outside ``[0, C)`` or a target
        value outside ``[0, C)`` that is not ``ignore_index``.
    """
    pred, target = _check_inputs(pred, target, num_classes)
    threads = _default_threads(num_threads)
    if pred.dtype == np.uint8 and target.dtype == np.uint8:
        fit = _uint8_rows(int(num_classes), ignore_index)
        if fit is not None:
            return _confusion_uint8(pred, target, int(num_classes), ignore_index, *fit, threads)
    return _confusion_generic(pred, target, int(num_classes), ignore_index, threads)


def iou_from_confusion(cm: np.ndarray) -> tuple[float, np.ndarray]:
    """(mIoU, per-class IoU (C,) float64) from a (C, C) confusion matrix (rows = target).

    IoU is NaN for classes with TP + FP + FN == 0; mIoU averages the others (NaN if none).
    """
    cm = _as_square(cm)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1) - tp
    iou = np.full(tp.shape, np.nan)
    np.divide(tp, denom, out=iou, where=denom > 0)
    present = ~np.isnan(iou)
    return (float(iou[present].mean()) if present.any() else float("nan")), iou


def _as_square(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got shape {cm.shape}")
    return cm


def metrics_from_confusion(cm: np.ndarray) -> dict[str, Any]:
    """Metrics of a (C, C) confusion matrix (rows = target).

    Returns dict with ``miou`` (float), ``iou`` ((C,) float64, NaN for absent classes),
    ``pixel_acc`` (trace / total), ``class_acc`` (mean recall over classes present in the target),
    ``class_recall`` ((C,), NaN for classes absent from the target). NaN when there are no pixels.
    """
    cm = _as_square(cm)
    mean_iou, iou = iou_from_confusion(cm)
    total = cm.sum()
    support = cm.sum(1)
    recall = np.full(support.shape, np.nan)
    np.divide(np.diag(cm).astype(np.float64), support, out=recall, where=support > 0)
    return {
        "miou": mean_iou,
        "iou": iou,
        "pixel_acc": float(np.trace(cm) / total) if total > 0 else float("nan"),
        "class_acc": float(np.nanmean(recall)) if (support > 0).any() else float("nan"),
        "class_recall": recall,
    }


def miou(pred: np.ndarray, target: np.ndarray, num_classes: int,
         ignore_index: int | None = None) -> tuple[float, np.ndarray]:
    """Mean IoU over classes present in target or prediction (after removing ignored pixels).

    Args: see :func:`confusion_matrix` (pred/target any equal shape, integer dtypes).
    Returns: (mIoU, per-class IoU (C,) float64 with NaN for classes absent from both).
    """
    return iou_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))


class ConfusionMatrix:
    """Streaming confusion matrix: ``update`` per batch, ``merge`` across workers/folds, ``compute``."""

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> "ConfusionMatrix":
        """Accumulate one batch; pred/target any equal shape (e.g. (B, H, W))."""
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another accumulator with the same ``num_classes`` and ``ignore_index``."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge ConfusionMatrix(num_classes={other.num_classes}, ignore_index={other.ignore_index}) "
                f"into ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index})"
            )
        self.matrix += other.matrix
        return self

    def reset(self) -> None:
        self.matrix[:] = 0

    def compute(self) -> dict[str, Any]:
        """See :func:`metrics_from_confusion` (keys miou, iou, pixel_acc, class_acc, class_recall)."""
        return metrics_from_confusion(self.matrix)


def _argmax_classes_uint8(block: np.ndarray) -> np.ndarray:
    """Argmax over axis 1 of a uint8 (n, C, H, W) block, C <= 256 -> (n, H, W) uint8.

    Packs each plane into uint16 ``(prob << 8) | (255 - c)`` and keeps a running ``np.maximum``:
    the high byte compares probabilities, and on ties the larger low byte (= smaller c) wins, so
    ties resolve to the lowest class id exactly like ``np.argmax`` / ``torch.argmax``. All three
    ops per class are plain SIMD ufunc loops (a masked ``np.putmask`` update is ~5x slower).
    """
    best = np.empty((block.shape[0],) + block.shape[2:], np.uint16)
    plane = np.empty_like(best)
    np.left_shift(block[:, 0], 8, out=best, dtype=np.uint16)
    best |= np.uint16(255)
    for c in range(1, block.shape[1]):
        np.left_shift(block[:, c], 8, out=plane, dtype=np.uint16)
        plane |= np.uint16(255 - c)
        np.maximum(best, plane, out=best)
    best &= np.uint16(255)
    return (np.uint16(255) - best).astype(np.uint8)


def argmax_confusion_uint8(probs: np.ndarray, target: np.ndarray, num_classes: int,
                           ignore_index: int | None = None, chunk: int = 8, *,
                           num_threads: int | None = None) -> np.ndarray:
    """Confusion matrix of ``argmax(probs, axis=1)`` against ``target`` without float copies.

    Args:
        probs: quantised probabilities (N, C, H, W) uint8; may be an ``np.load(mmap_mode='r')`` memmap.
        target: (N, H, W) integer label maps (values in ``[0, C)`` or ``ignore_index``).
        num_classes: C (must equal ``probs.shape[1]``).
        ignore_index: target value to drop.
        chunk: images per work item (bounds memory to ~``chunk * (C + 3) * H * W`` bytes per thread).
    Returns:
        (C, C) int64 confusion matrix (rows = target).
    """
    probs, target = np.asarray(probs), np.asarray(target)
    if probs.ndim != 4 or probs.dtype != np.uint8:
        raise ValueError(f"probs must be uint8 (N, C, H, W), got {probs.dtype} {probs.shape}; quantise with np.round(p * 255)")
    if probs.shape[1] != num_classes:
        raise ValueError(f"probs has {probs.shape[1]} classes on axis 1 but num_classes={num_classes}")
    if not 1 <= num_classes <= 256:
        raise ValueError(f"argmax_confusion_uint8 supports 1..256 classes, got {num_classes}")
    if target.shape != probs.shape[:1] + probs.shape[2:]:
        raise ValueError(f"target shape {target.shape} != probs (N, H, W) {probs.shape[:1] + probs.shape[2:]}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")

    def work(s: int, e: int) -> np.ndarray:
        pred = _argmax_classes_uint8(probs[s:e])
        return confusion_matrix(pred, target[s:e], num_classes, ignore_index, num_threads=1)

    cm = np.zeros((num_classes, num_classes), np.int64)
    for part in _map_chunks(work, probs.shape[0], chunk, _default_threads(num_threads)):
        cm += part
    return cm
