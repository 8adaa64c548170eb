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
8 bytes per pixel that do not fit in any cache. Here the joint key
``target * C + pred`` is formed in **uint8** arithmetic on cache-sized chunks (valid while
``rows * C <= 256``) and counted in one of two ways, chosen per chunk:

- run-length path (label maps are piecewise constant): find where the key changes
  (``np.not_equal`` on shifted views + ``np.flatnonzero``) and add each run's length with one
  weighted ``np.bincount`` -- a few percent of the pixels are touched individually;
- pair path (noisy chunks, >= 10% changes): view two uint8 keys as one uint16, so a 65536-bin
  ``np.bincount`` does half as many increments; the 256-bin histogram is recovered by summing the
  2-D pair histogram over each axis.

Chunks run on a thread pool (numpy releases the GIL in ufunc loops and in bincount's counting
loop). No torch/OpenMP is used here on purpose: thousands of tiny OpenMP parallel regions stall
badly on an oversubscribed CPU.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

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
_RLE_MAX_CHANGE = 0.1  # run-length path below 10% key changes (measured break-even ~10-15%)
_PROBE = _CHUNK // 8  # prefix length used to estimate the change rate of a chunk


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


def _count_keys(key: np.ndarray, hist: np.ndarray, pair_hist: np.ndarray, neq: np.ndarray,
                wide: np.ndarray) -> None:
    """Add the histogram of a uint8 key chunk (m,) to ``hist`` (256,) or ``pair_hist`` (65536,).

    ``neq`` (>= m-1 bool) and ``wide`` (>= m/2 intp) are scratch buffers.
    """
    m = key.size
    probe = min(m, _PROBE)  # estimate the change rate on a prefix; only picks the path
    if np.count_nonzero(np.not_equal(key[1:probe], key[: probe - 1], out=neq[: max(probe - 1, 0)])) \
            < _RLE_MAX_CHANGE * probe:
        # Run-length path: one weighted count per run of equal keys (label maps are piecewise
        # constant, so runs are long; float weights are exact below 2**53).
        changes = np.not_equal(key[1:], key[:-1], out=neq[: m - 1])
        starts = np.concatenate(([0], np.flatnonzero(changes) + 1))
        lengths = np.diff(starts, append=m)
        hist += np.bincount(key[starts], weights=lengths, minlength=256).astype(np.int64)
        return
    if m % 2:
        hist[key[-1]] += 1
        m -= 1
    # Pair path: view two uint8 keys as one uint16 -> half as many increments; cast to intp
    # ourselves into a reused buffer (np.bincount's internal cast allocates and is slower).
    w = wide[: m // 2]
    np.copyto(w, key[:m].view(np.uint16))
    counts = np.bincount(w)
    pair_hist[: counts.size] += counts


def _count_uint8(pred: np.ndarray, target: np.ndarray, num_classes: int, clip: int | None,
                 num_threads: int) -> tuple[np.ndarray, int, int]:
    """256-bin histogram of ``min(target, clip) * C + pred`` (uint8) plus the max of target and pred."""
    c8 = np.uint8(num_classes)

    def work(s: int, e: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        key, neq = np.empty(_CHUNK, np.uint8), np.empty(_CHUNK, bool)
        wide = np.empty(_CHUNK // 2, np.intp)
        hist, pair_hist = np.zeros(256, np.int64), np.zeros(1 << 16, np.int64)
        tmax = pmax = 0
        for a in range(s, e, _CHUNK):
            b = min(a + _CHUNK, e)
            t, p, k = target[a:b], pred[a:b], key[: b - a]
            tmax, pmax = max(tmax, int(t.max())), max(pmax, int(p.max()))
            if clip is None:
                np.multiply(t, c8, out=k)
            else:
                np.multiply(np.minimum(t, np.uint8(clip), out=k), c8, out=k)
            np.add(k, p, out=k)  # uint8 wrap-around only for invalid ids, caught by the max check
            _count_keys(k, hist, pair_hist, neq, wide)
        return hist, pair_hist, tmax, pmax

    parts = _map_chunks(work, target.size, _WORK, num_threads)
    pairs = np.sum([p[1] for p in parts], axis=0).reshape(256, 256)
    hist = np.sum([p[0] for p in parts], axis=0) + pairs.sum(0) + pairs.sum(1)  # both bytes of each pair
    return hist, max(p[2] for p in parts), max(p[3] for p in parts)


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
