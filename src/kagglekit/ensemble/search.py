"""Ensemble weight search over out-of-fold (OOF) predictions.

Two layers:

* a fast segmentation objective: :func:`blend_argmax_confusion` computes the confusion matrix
  of ``argmax_c sum_i w_i p_i`` chunk by chunk over images (works on ``np.memmap`` OOF arrays
  with O(chunk) working memory; uint8 inputs go through one compiled pass per chunk, see
  :func:`_blend_confusion_kernel`), and :class:`SegmentationBlendObjective` wraps it as a
  ``weights -> mIoU`` callable with an optional fixed pixel subsample for fast search, read
  once and kept in RAM in the layout its kernel streams: per pixel only the classes that can
  win for some weights (:func:`_candidate_classes`; pixels all members agree on are counted
  once), in runs of equal target and candidates (:func:`_runs_confusion_kernel`);
* metric-agnostic weight searches that only see ``score_fn(weights) -> float`` (higher is
  better): :func:`slsqp_weights` (multi-start SLSQP on the simplex) and :func:`greedy_weights`
  (Caruana et al. 2004, "Ensemble selection from libraries of models", ICML), dispatched by
  :func:`search_weights`.  Detection mAP / F1 tasks reuse them with their own ``score_fn``.

OOF probabilities are stored quantised, ``q = round(255 p)`` as uint8 ``(N, C, h, w)``; labels
are uint8 ``(N, h, w)`` with ``ignore_index`` (255) for unlabelled pixels.  Members align row
for row.  Since ``argmax`` is invariant to a positive rescaling, the blend is computed directly
on ``q`` (no division by 255) with weights rescaled so that ``max(w) = 1``.

Exact arithmetic contract (kept by every path, tested bit for bit): per pixel and class,
``s_c = fl32(... fl32(fl32(q_1c w_1) + fl32(q_2c w_2)) ...)`` over the non-zero-weight members
in member order, with float32 weights ``w / max(w)``; the prediction is the lowest class index
among the maximal ``s_c`` (strict ``>`` scan, as ``np.argmax``).
"""
from __future__ import annotations

import mmap
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numba
import numpy as np
from scipy.optimize import minimize

from kagglekit.metrics.segmentation import iou_from_confusion

ScoreFn = Callable[[np.ndarray], float]

__all__ = [
    "SearchResult",
    "SegmentationBlendObjective",
    "blend_argmax_confusion",
    "greedy_weights",
    "normalize_weights",
    "search_weights",
    "slsqp_weights",
]


# ----------------------------------------------------------------------------------------------
# Fast blended-argmax confusion matrix
# ----------------------------------------------------------------------------------------------
def _kernel_weights(weights: np.ndarray, n_members: int) -> np.ndarray:
    """Validate ``weights`` (M,) and rescale to ``max = 1`` as float32 (argmax-invariant).

    The max-rescaling makes uniform weights exactly 1.0, so integer sums of uint8 inputs are
    exact in float32 and genuine ties are broken consistently (lowest class index wins).
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != n_members:
        raise ValueError(f"got {w.shape[0]} weights for {n_members} members")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and >= 0, got {w}")
    if w.max() <= 0:
        raise ValueError("at least one weight must be > 0")
    return (w / w.max()).astype(np.float32)


def _check_members(members: Sequence[np.ndarray], labels: np.ndarray, num_classes: int) -> None:
    """Members must all be (N, C, h, w) with C == num_classes and labels (N, h, w)."""
    if len(members) == 0:
        raise ValueError("need at least one member")
    shape = members[0].shape
    if len(shape) != 4 or shape[1] != num_classes:
        raise ValueError(f"members must be (N, {num_classes}, h, w), got {shape}")
    for i, m in enumerate(members):
        if m.shape != shape:
            raise ValueError(f"member {i} has shape {m.shape}, member 0 has {shape}")
    expected = (shape[0],) + tuple(shape[2:])
    if tuple(labels.shape) != expected:
        raise ValueError(f"labels must be {expected}, got {labels.shape}")


_BLOCK = 4096  # pixels per kernel block: three scratch rows (48 KiB) stay in L1/L2
# Dominated classes may be dropped only while float32 rounding cannot merge a gap of >= 1 (times
# max w = 1) between integer sums.  Recursive summation of k rounded products of size <= 255
# errs by at most gamma_k * 255 k, gamma_k = k u / (1 - k u), u = 2**-24 (Higham, "Accuracy and
# Stability of Numerical Algorithms", 2nd ed., 2002, sec. 4.2 and 3.1); two such errors stay
# below 1 up to k ~ 180 members.  Round-to-nearest is monotone (IEEE 754), so ``x_a >= x_c`` in
# every member gives computed ``s_a >= s_c``.
_PRUNE_MAX_MEMBERS = 64


@numba.njit(inline="always")
def _blend_argmax_rows(xs: tuple, act: np.ndarray, w: np.ndarray, i: int, s: int, nb: int,
                       acc: np.ndarray, best: np.ndarray, arg: np.ndarray) -> None:
    """``arg[:nb]`` = first row r maximising ``s_r = sum_m fl32(xs[m][i, r, s:s+nb] * w[m])``.

    ``xs``: M uint8 (n, K, L); ``act``: indices of the members with ``w > 0``, in order.  Each
    product and partial sum is rounded to float32 in member order (numba does not contract to
    FMA without fast-math), i.e. exactly numpy's ``np.multiply(x, w, out=t); acc += t``; the
    strict ``>`` running max keeps the first maximal row, like ``np.argmax``.  Rows are
    contiguous, so every loop over p is a SIMD loop; the last member's product is added inside
    the comparison loop (one pass less over ``acc``).
    """
    last = act[act.size - 1]
    for r in range(xs[0].shape[1]):
        for j in range(act.size - 1):
            row, wm = xs[act[j]][i, r, s:s + nb], w[act[j]]
            if j == 0:
                for p in range(nb):
                    acc[p] = np.float32(row[p]) * wm  # == fl32(0 + t): no zeroing pass
            else:
                for p in range(nb):
                    acc[p] += np.float32(row[p]) * wm
        row, wm = xs[last][i, r, s:s + nb], w[last]
        if act.size == 1:  # one member (rescoring singles): no partial sums at all
            for p in range(nb):
                v = np.float32(row[p]) * wm
                if r == 0 or v > best[p]:
                    best[p], arg[p] = v, r
        else:
            for p in range(nb):
                v = acc[p] + np.float32(row[p]) * wm
                if r == 0 or v > best[p]:
                    best[p], arg[p] = v, r


@numba.njit(cache=True, nogil=True)
def _blend_confusion_kernel(
    xs: tuple, w: np.ndarray, lab: np.ndarray, num_classes: int, has_ignore: bool,
    ignore: int, cm: np.ndarray,
) -> int:
    """Add the confusion counts of ``argmax_c sum_m w_m xs[m][:, c]`` into ``cm``; one pass.

    Args:
        xs: M uint8 arrays (n, C, L), C-contiguous (L pixels per image).
        w: (M,) float32 kernel weights (max 1); members with ``w == 0`` are skipped.
        lab: (n, L) integer targets.
        num_classes: C.
        has_ignore, ignore: skip pixels whose target equals ``ignore`` when ``has_ignore``.
        cm: (C, C) int64, rows = target, columns = prediction; updated in place.

    Returns:
        The number of non-ignored targets outside ``[0, C)`` (not counted).
    """
    n, L = xs[0].shape[0], xs[0].shape[2]
    act = np.array([m for m in range(len(xs)) if w[m] > 0], np.int64)
    acc, best = np.empty(_BLOCK, np.float32), np.empty(_BLOCK, np.float32)
    arg = np.empty(_BLOCK, np.int32)
    # 4 interleaved histograms: runs of equal (target, prediction) pairs would otherwise chain
    # every increment on the previous one's store (as in kagglekit.metrics.segmentation)
    hist = np.zeros((4, num_classes, num_classes), np.int64)
    bad = 0
    for i in range(n):
        for s in range(0, L, _BLOCK):
            nb = min(_BLOCK, L - s)
            _blend_argmax_rows(xs, act, w, i, s, nb, acc, best, arg)
            for p in range(nb):
                t = lab[i, s + p]
                if has_ignore and t == ignore:
                    continue
                if t < 0 or t >= num_classes:
                    bad += 1
                else:
                    hist[p & 3, t, arg[p]] += 1
    cm += hist.sum(axis=0)
    return bad


@numba.njit(inline="always")
def _count_segment(arg: np.ndarray, a: int, b: int, t: int, ids: np.ndarray, cm: np.ndarray) -> None:
    """``cm[t, ids[arg[p]]] += 1`` for p in ``a:b``: per row a SIMD count for long segments
    (one increment per row instead of per pixel), scattered increments for short ones."""
    k = ids.size
    if b - a >= 8 * k:
        for r in range(k):
            hits = 0
            for p in range(a, b):
                hits += arg[p] == r
            cm[t, ids[r]] += hits
    else:
        for p in range(a, b):
            cm[t, ids[arg[p]]] += 1


@numba.njit(cache=True, nogil=True)
def _runs_confusion_kernel(
    xs: tuple, w: np.ndarray, starts: np.ndarray, run_lab: np.ndarray, run_ids: np.ndarray,
    num_classes: int, has_ignore: bool, ignore: int, cm: np.ndarray,
) -> int:
    """:func:`_blend_confusion_kernel` for pixels stored in runs sharing target and classes.

    Args:
        xs: M uint8 arrays (1, k, T): values of each pixel's k candidate classes, pixels sorted
            so that run j (pixels ``starts[j]:starts[j+1]``) shares its target ``run_lab[j]``
            and its candidates ``run_ids[j]`` (k,), ascending class ids.
        w, num_classes, has_ignore, ignore, cm: as :func:`_blend_confusion_kernel`.

    Returns:
        The number of non-ignored pixels whose target is outside ``[0, C)``.

    The blend runs over fixed blocks regardless of runs; counting walks the runs that overlap
    the block (:func:`_count_segment`), so long runs avoid one scattered increment per pixel.
    """
    n_pix = xs[0].shape[2]
    act = np.array([m for m in range(len(xs)) if w[m] > 0], np.int64)
    acc, best = np.empty(_BLOCK, np.float32), np.empty(_BLOCK, np.float32)
    arg = np.empty(_BLOCK, np.int32)
    bad, j = 0, 0
    for s in range(0, n_pix, _BLOCK):
        nb = min(_BLOCK, n_pix - s)
        _blend_argmax_rows(xs, act, w, 0, s, nb, acc, best, arg)
        a = s
        while a < s + nb:
            while starts[j + 1] <= a:
                j += 1
            b, t = min(s + nb, starts[j + 1]), run_lab[j]
            if t < 0 or t >= num_classes:
                bad += 0 if has_ignore and t == ignore else b - a
            elif not (has_ignore and t == ignore):
                _count_segment(arg, a - s, b - s, t, run_ids[j], cm)
            a = b
    return bad


@numba.njit(inline="always")
def _dominated(x: np.ndarray, tops: np.ndarray, c: int) -> bool:
    """Whether one of the classes ``tops`` beats class c of pixel ``x`` (M, C) for any weights:
    ``x[m, a] >= x[m, c]`` in every member for ``a < c``, ``x[m, a] >= x[m, c] + 1`` for ``a > c``."""
    for a in tops:
        if a == c:
            continue
        beats = True
        for m in range(x.shape[0]):
            if int(x[m, a]) < int(x[m, c]) + (1 if a > c else 0):
                beats = False
                break
        if beats:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _member_tops(x: np.ndarray) -> np.ndarray:
    """(M, T) int32: each member's ``np.argmax`` (lowest index among maxima) of ``x`` (M, C, T)
    uint8, as a strict ``>`` running max over contiguous rows (SIMD over pixels)."""
    n_m, c_n, t_n = x.shape
    tops = np.zeros((n_m, t_n), np.int32)
    best = np.empty(t_n, np.uint8)
    for m in range(n_m):
        best[:] = x[m, 0]
        for c in range(1, c_n):
            row = x[m, c]
            for p in range(t_n):
                if row[p] > best[p]:
                    best[p], tops[m, p] = row[p], c
    return tops


@numba.njit(cache=True, nogil=True)
def _candidate_classes(v: np.ndarray, tops: np.ndarray, lab: np.ndarray, num_classes: int,
                       has_ignore: bool, ignore: int) -> np.ndarray:
    """(T, C) bool: the classes that can win pixel p's blended argmax for some weights.

    ``v``: (T, M, C) uint8 pixel-major values, ``tops``: (M, T) members' argmax classes
    (:func:`_member_tops`), ``lab``: (T,).  Class c cannot win if a member's argmax class a
    dominates it in every member: for ``a < c`` each ``x_a >= x_c`` (float32 rounding is
    monotone, so the computed ``s_a >= s_c`` and ties go to the lower a); for ``a > c`` each
    ``x_a >= x_c + 1``, an exact gap ``>= sum w >= max w = 1`` that rounding (``< 2 k^2 255
    2**-24`` for k <= ``_PRUNE_MAX_MEMBERS`` summed members) cannot close.  Members' argmax
    classes are never dominated, so when all members agree it is the only candidate.  Pixels
    with an invalid target keep every class (evaluation reports them).
    """
    t_n, n_m, c_n = v.shape
    cand = np.ones((t_n, c_n), np.bool_)
    for p in range(t_n):
        t = lab[p]
        if not (has_ignore and t == ignore) and (t < 0 or t >= num_classes):
            continue
        for c in range(c_n):
            cand[p, c] = not _dominated(v[p], tops[:, p], c)
    return cand


@numba.njit(cache=True, nogil=True)
def _gather_member(x: np.ndarray, idx: np.ndarray, count: np.ndarray, out: np.ndarray) -> None:
    """``out[c, q] = x[i, c, idx[i, j]]`` for images i, j < count[i], q running over (i, j).

    ``x``: (n, C, L) one member's chunk; ``idx`` (n, P) sorted pixel indices; ``out`` (C, T).
    Row by row: each class row is read in increasing order and written contiguously.
    """
    q0 = 0
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            row = x[i, c]
            for j in range(count[i]):
                out[c, q0 + j] = row[idx[i, j]]
        q0 += count[i]


def _raise_bad_labels(num_classes: int) -> None:
    raise ValueError(f"labels outside [0, {num_classes}) that are not ignore_index")


def _uint8_chunk_confusion(
    xs: Sequence[np.ndarray], w: np.ndarray, lab: np.ndarray, num_classes: int,
    ignore_index: int | None,
) -> np.ndarray:
    """(C*C,) int64 flat confusion of one chunk of uint8 members through the compiled kernel.

    ``xs``: M uint8 arrays (n, C, ...) (memmap slices fine; copied only if not C-contiguous);
    ``w``: (M,) float32 kernel weights; ``lab``: (n, ...) integer targets.
    """
    n = lab.shape[0]
    views = tuple(np.ascontiguousarray(x).reshape(n, num_classes, -1) for x in xs)
    lab2 = np.ascontiguousarray(lab).reshape(n, -1)
    cm = np.zeros((num_classes, num_classes), np.int64)
    has_ignore = ignore_index is not None
    bad = _blend_confusion_kernel(views, w, lab2, num_classes, has_ignore,
                                  int(ignore_index) if has_ignore else 0, cm)
    if bad:
        _raise_bad_labels(num_classes)
    return cm.reshape(-1)


def _blend_argmax_image(
    parts: list[tuple[np.ndarray, np.float32]], out: np.ndarray, bufs: tuple[np.ndarray, ...]
) -> None:
    """Write ``argmax_c sum_i w_i x_i[c]`` of one image into ``out`` (h, w); numpy path.

    Used for non-uint8 members (e.g. float probabilities), whose products numpy rounds through
    its own loops.  ``parts`` holds ``(x_i (C, h, w), w_i)`` for the non-zero-weight members.
    Class by class running max over (h, w) float32 planes; strict ``>`` keeps the first maximal
    class on ties, like ``np.argmax``.
    """
    v, t, best, gt = bufs
    out[...] = 0
    for c in range(parts[0][0].shape[0]):
        tgt = best if c == 0 else v
        np.multiply(parts[0][0][c], parts[0][1], out=tgt)
        for x, wi in parts[1:]:
            np.multiply(x[c], wi, out=t)
            tgt += t
        if c:
            np.greater(v, best, out=gt)
            np.maximum(best, v, out=best)
            np.putmask(out, gt, c)


def _numpy_chunk_confusion(
    xs: Sequence[np.ndarray], w: np.ndarray, lab: np.ndarray, num_classes: int,
    ignore_index: int | None,
) -> np.ndarray:
    """(C*C,) flat confusion of one chunk, members of any dtype: ``xs`` M arrays (n, C, h, w)."""
    n, _, h, wd = xs[0].shape
    active = [(np.asarray(x), wi) for x, wi in zip(xs, w) if wi > 0]
    bufs = (np.empty((h, wd), np.float32), np.empty((h, wd), np.float32),
            np.empty((h, wd), np.float32), np.empty((h, wd), bool))
    pred = np.empty((n, h, wd), np.uint8 if num_classes <= 256 else np.int32)
    for j in range(n):
        _blend_argmax_image([(x[j], wi) for x, wi in active], pred[j], bufs)
    return _chunk_confusion(pred, np.asarray(lab), num_classes, ignore_index)


def _release_pages(x: np.ndarray) -> None:
    """Best effort: unmap from this process the pages under ``x``, a slice of a read-only
    ``np.memmap`` (``np.load(mmap_mode='r')``), once a chunk is done.

    Pages stay in the OS page cache (a later access is a cheap minor fault), but they no longer
    count in this process's RSS, so RSS stays O(chunk) instead of growing to the file size.
    Only for mode 'r' (MADV_DONTNEED would drop private copy-on-write changes of mode 'c').
    A no-op for plain arrays and where madvise is unavailable.
    """
    mm = getattr(x, "_mmap", None)
    if mm is None or getattr(x, "mode", None) != "r" or not hasattr(mmap, "MADV_DONTNEED"):
        return
    if not x.flags.c_contiguous or x.nbytes == 0:
        return
    try:
        base = np.frombuffer(mm, np.uint8).__array_interface__["data"][0]
        start = x.__array_interface__["data"][0] - base
        # also cover 1 MiB before the slice: the kernel's fault-around maps neighbouring
        # pages (default 64 KiB window), including ones of the previous, released chunk
        aligned = max(0, start - (1 << 20))
        aligned -= aligned % mmap.PAGESIZE
        mm.madvise(mmap.MADV_DONTNEED, aligned, start + x.nbytes - aligned)
    except (AttributeError, OSError, TypeError, ValueError):
        pass


def _chunk_confusion(
    pred: np.ndarray, lab: np.ndarray, num_classes: int, ignore_index: int | None
) -> np.ndarray:
    """(C*C,) int64 flat confusion counts (row = target, column = prediction) of one chunk."""
    lab = lab.astype(np.int64, copy=False).reshape(-1)
    idx = lab * num_classes + pred.reshape(-1)
    drop = (lab == ignore_index) if ignore_index is not None else np.zeros(lab.shape, bool)
    bad = (~drop) & ((lab < 0) | (lab >= num_classes))
    if bad.any():
        raise ValueError(f"labels outside [0, {num_classes}) that are not ignore_index")
    idx[drop] = num_classes * num_classes  # overflow bin, cut below
    cc = num_classes * num_classes
    return np.bincount(idx, minlength=cc + 1)[:cc]


def blend_argmax_confusion(
    members: Sequence[np.ndarray],
    weights: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    ignore_index: int | None = 255,
    chunk: int = 16,
    release_pages: bool = True,
) -> np.ndarray:
    """Confusion matrix of the weighted-blend argmax, computed chunk by chunk over images.

    Args:
        members: M arrays (N, C, h, w) (uint8 quantised probabilities or floats; memmaps fine).
            All-uint8 members take the compiled one-pass kernel; other dtypes a numpy path.
        weights: (M,) non-negative weights (any positive scale; argmax is scale invariant).
        labels: (N, h, w) integer targets; ``ignore_index`` pixels are skipped.
        num_classes: C.
        ignore_index: label value to skip (None: none).
        chunk: images per chunk; working memory is O(chunk * h * w) (uint8: no temporaries).
        release_pages: unmap each finished chunk of read-only memmap inputs (see
            :func:`_release_pages`) so that RSS stays O(chunk) too.

    Returns:
        (C, C) int64 confusion matrix, rows = target class, columns = predicted class.
        Ties of the float32 blend go to the lowest class index (as ``np.argmax``); they are
        exact ties of the real blend for equal inputs and for uniform weights on uint8 codes
        (integer sums), while other rational weights (e.g. greedy counts 3:2) can leave real
        ties that float32 rounding decides.
    """
    _check_members(members, labels, num_classes)
    w = _kernel_weights(weights, len(members))
    fast = all(m.dtype == np.uint8 for m in members)
    chunk_confusion = _uint8_chunk_confusion if fast else _numpy_chunk_confusion
    n = members[0].shape[0]
    flat = np.zeros(num_classes * num_classes, np.int64)
    chunk = max(1, int(chunk))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        # slices of memmaps are views (no copy); the kernel never touches zero-weight members
        flat += chunk_confusion([m[s:e] for m in members], w, labels[s:e], num_classes, ignore_index)
        if release_pages:
            for m in [m for m, wi in zip(members, w) if wi > 0] + [labels]:
                _release_pages(m[s:e])
    return flat.reshape(num_classes, num_classes)


# ----------------------------------------------------------------------------------------------
# Objective: weights -> mIoU
# ----------------------------------------------------------------------------------------------
_RunGroup = tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _PixelView:
    """A fixed pixel subsample, gathered once into the layout the kernels stream.

    n_members: M.  groups: per number k of candidate classes (see :func:`_candidate_classes`)
    the pixels with k > 1 candidates, as :func:`_runs_confusion_kernel` takes them:
    ``(xs, starts, run_lab, run_ids)``.  base: (C, C) int64 confusion of the pixels with a
    single candidate (weight independent).  n_sampled: all sampled pixels.  dense: for inputs
    that are not pruned (non-uint8, or more than ``_PRUNE_MAX_MEMBERS`` members) all sampled
    pixels as M arrays (1, C, 1, T) and targets (1, 1, T), for :func:`blend_argmax_confusion`.
    """

    n_members: int
    groups: list[_RunGroup]
    base: np.ndarray
    n_sampled: int
    dense: tuple[list[np.ndarray], np.ndarray] | None = None

    @property
    def n_rows(self) -> int:
        """Pixel-class rows one evaluation blends (per member), over all groups."""
        if self.dense is not None:
            return int(self.dense[0][0].size)
        return sum(int(xs[0].size) for xs, *_ in self.groups)

    def confusion(self, weights: np.ndarray, num_classes: int, ignore_index: int | None) -> np.ndarray:
        """(C, C) int64 confusion of the blend on the sampled pixels."""
        if self.dense is not None:
            return blend_argmax_confusion(self.dense[0], weights, self.dense[1], num_classes,
                                          ignore_index, chunk=1, release_pages=False)
        w = _kernel_weights(weights, self.n_members)
        cm = self.base.copy()
        has_ignore = ignore_index is not None
        for xs, starts, run_lab, run_ids in self.groups:
            if _runs_confusion_kernel(xs, w, starts, run_lab, run_ids, num_classes, has_ignore,
                                      int(ignore_index) if has_ignore else 0, cm):
                _raise_bad_labels(num_classes)
        return cm


def _run_group(vals: np.ndarray, ids: np.ndarray, lab: np.ndarray) -> _RunGroup:
    """Sort pixels ``vals`` (M, k, T) / ``ids`` (k, T) / ``lab`` (T,) into runs of equal
    (target, candidate classes): ``(xs M x (1, k, T), starts (R+1,), run_lab (R,), run_ids (R, k))``."""
    order = np.lexsort(tuple(ids[::-1]) + (lab,))  # last key first: target, then ids[0], ...
    vals, ids, lab = vals[:, :, order], ids[:, order], lab[order]
    change = (lab[1:] != lab[:-1]) | (ids[:, 1:] != ids[:, :-1]).any(axis=0)
    starts = np.concatenate([[0], np.flatnonzero(change) + 1, [lab.size]]).astype(np.int64)
    first = starts[:-1]
    return (tuple(np.ascontiguousarray(xm)[None] for xm in vals), starts,
            lab[first].astype(np.int64), np.ascontiguousarray(ids[:, first].T))


def _sample_indices(
    labels: np.ndarray, max_pixels: int, ignore_index: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per image, up to ``max_pixels`` distinct labelled pixel indices, sorted.

    Returns ``idx (N, P) int64`` (P = min(max_pixels, h * w); row i valid up to ``count[i]``)
    and ``count (N,)``.  The same draws as before the kernel rewrite, so a seed picks the
    same pixels.
    """
    rng = np.random.default_rng(seed)
    n, hw = labels.shape[0], int(np.prod(labels.shape[1:]))
    max_pixels = min(max_pixels, hw)  # without ignore_index no image needs padding
    idx = np.zeros((n, max_pixels), np.int64)
    count = np.zeros(n, np.int64)
    for i in range(n):
        lab = np.asarray(labels[i]).reshape(-1)
        cand = np.flatnonzero(lab != ignore_index) if ignore_index is not None else np.arange(lab.size)
        if cand.size > max_pixels:
            cand = np.sort(rng.choice(cand, size=max_pixels, replace=False))
        idx[i, : cand.size], count[i] = cand, cand.size
    return idx, count


def _gather_chunk(
    members: Sequence[np.ndarray], labels: np.ndarray, idx: np.ndarray, count: np.ndarray,
    s: int, e: int,
) -> tuple[list[np.ndarray], np.ndarray]:
    """The sampled pixels of images ``s:e``: per member values (C, T), targets (T,).

    ``idx`` (N, P) / ``count`` (N,) as returned by :func:`_sample_indices`; padding dropped.
    """
    n, c = e - s, members[0].shape[1]
    t = int(count[s:e].sum())
    vals = []
    for m in members:
        vals.append(np.empty((c, t), m.dtype))
        _gather_member(np.ascontiguousarray(m[s:e]).reshape(n, c, -1), idx[s:e], count[s:e], vals[-1])
    filled = np.arange(idx.shape[1])[None, :] < count[s:e, None]  # (n, P)
    lab = np.take_along_axis(np.asarray(labels[s:e]).reshape(n, -1), idx[s:e], axis=1)[filled]
    return vals, lab


def _count_decided(
    x: np.ndarray, lab: np.ndarray, num_classes: int, ignore_index: int | None
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Split pixels ``x`` (M, C, T) uint8 / ``lab`` (T,) by whether their class is decided.

    Returns ``(flat, (v, cand, lab))``: (C*C,) int64 confusion counts of the pixels all members
    agree on (weight independent, see :func:`_candidate_classes`), and for the other pixels
    their values (T_o, M, C), candidate classes (T_o, C) bool and targets (T_o,).
    """
    tops = _member_tops(x)
    t = lab.astype(np.int64)
    ignored = (t == ignore_index) if ignore_index is not None else np.zeros(t.shape, bool)
    decided = (tops == tops[0]).all(axis=0) & (ignored | ((t >= 0) & (t < num_classes)))
    counted = decided & ~ignored  # bad targets stay undecided, so evaluation reports them
    flat = np.bincount(t[counted] * num_classes + tops[0][counted], minlength=num_classes * num_classes)
    keep = np.flatnonzero(~decided)
    v = np.ascontiguousarray(x[:, :, keep].transpose(2, 0, 1))
    has_ignore = ignore_index is not None
    cand = _candidate_classes(v, np.ascontiguousarray(tops[:, keep]), lab[keep], num_classes,
                              has_ignore, int(ignore_index) if has_ignore else 0)
    return flat, (v, cand, lab[keep])


def _run_groups(v: np.ndarray, cand: np.ndarray, lab: np.ndarray, num_classes: int) -> list[_RunGroup]:
    """Group pixels ``v`` (T, M, C) by their number k of candidate classes ``cand`` (T, C), each
    group in runs (:func:`_run_group`) holding only the k candidates' values (M, k, T_k)."""
    k = cand.sum(axis=1)
    groups = []
    for kk in np.unique(k):
        sel = np.flatnonzero(k == kk)
        ids = np.nonzero(cand[sel])[1].reshape(-1, kk)  # (T_k, k), ascending per pixel
        vals = v[sel[:, None], :, ids].transpose(2, 1, 0)  # (M, k, T_k)
        groups.append(_run_group(vals, ids.T.astype(np.uint8 if num_classes <= 256 else np.int32), lab[sel]))
    return groups


def _subsample_pixels(
    members: Sequence[np.ndarray],
    labels: np.ndarray,
    max_pixels: int,
    ignore_index: int | None,
    seed: int,
    chunk: int,
) -> _PixelView:
    """Fixed random subsample of up to ``max_pixels`` labelled pixels per image.

    Reads the members chunk by chunk (O(chunk) memory beyond the outputs).  uint8 members (up
    to ``_PRUNE_MAX_MEMBERS``) keep per pixel only the classes that can win
    (:func:`_candidate_classes`), grouped by their number; other inputs keep every class.
    """
    idx, count = _sample_indices(labels, max_pixels, ignore_index, seed)
    n, c = members[0].shape[:2]
    prune = all(m.dtype == np.uint8 for m in members) and len(members) <= _PRUNE_MAX_MEMBERS
    kept: list[tuple] = []
    base, total = np.zeros(c * c, np.int64), 0
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        vals, lab = _gather_chunk(members, labels, idx, count, s, e)
        for m in members:
            _release_pages(m[s:e])
        total += lab.size
        if prune:
            flat, undecided = _count_decided(np.stack(vals), lab, c, ignore_index)
            base += flat
            kept.append(undecided)
        else:
            kept.append((vals, lab))
    view = _PixelView(len(members), [], base.reshape(c, c), total)
    if not kept:  # no images
        return view
    if prune:
        v, cand, lab = (np.concatenate([kp[i] for kp in kept]) for i in range(3))
        view.groups = _run_groups(v, cand, lab, c)
    else:  # every class of every pixel: M arrays (1, C, 1, T) for the generic path
        xs = [np.concatenate([kp[0][i] for kp in kept], axis=1)[None, :, None, :]
              for i in range(len(members))]
        view.dense = (xs, np.concatenate([kp[1] for kp in kept])[None, None, :])
    return view


class SegmentationBlendObjective:
    """Callable ``weights (M,) -> mIoU`` of the blended argmax, for weight search.

    ``__call__`` scores on the search view: a fixed random subsample of at most
    ``max_pixels_per_image`` labelled pixels per image when set (drawn once, so the objective
    is deterministic), else the full data.  :meth:`full_score` always uses the full data; pass
    it as ``final_score_fn`` to :func:`search_weights` so the reported score is on full data.

    Cost: the subsample is read once at construction (about one full pass over the members)
    and kept in RAM with, per pixel, only the classes that can still win; an evaluation then
    blends ~0.6-0.9 rows per sampled pixel instead of C (NYUv2-like members, see
    ``bench/bench_ensemble.py``), a few hundred times cheaper than a full pass at 4096 px/image.
    Its confusion matrix equals, bit for bit, the full-class blend of the same sampled pixels.

    Results are cached (LRU) by the exact float32 kernel weights (``w / max(w)``) and the view,
    which fully determine the output, so a cache hit is always correct.  ``n_evals`` counts real
    evaluations (cache misses), ``n_calls`` all calls.
    """

    def __init__(
        self,
        members: Sequence[np.ndarray],
        labels: np.ndarray,
        num_classes: int,
        *,
        ignore_index: int | None = 255,
        max_pixels_per_image: int | None = None,
        seed: int = 0,
        chunk: int = 16,
        cache_size: int = 4096,
    ) -> None:
        _check_members(members, labels, num_classes)
        self.members = list(members)
        self.labels = labels
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.chunk = chunk
        self.cache_size = cache_size
        self.n_evals = 0
        self.n_calls = 0
        self._cache: OrderedDict[tuple[bool, bytes], float] = OrderedDict()
        self._sub: _PixelView | None = None
        if max_pixels_per_image is not None:
            self._sub = _subsample_pixels(
                self.members, labels, int(max_pixels_per_image), ignore_index, seed, chunk
            )

    @property
    def n_members(self) -> int:
        """Number of blended members M."""
        return len(self.members)

    @property
    def search_pixels(self) -> tuple[int, int]:
        """(pixel-class rows one search-view evaluation blends, pixels the search view scores).

        Without a subsample: (N * h * w * C, N * h * w).  With one, the first counts per sampled
        pixel only the classes that can still win (see :func:`_candidate_classes`); C times the
        second is the dense cost.
        """
        if self._sub is None:
            n = int(np.prod(self.labels.shape))
            return n * self.num_classes, n
        return self._sub.n_rows, self._sub.n_sampled

    def confusion(self, weights: np.ndarray, full: bool = True) -> np.ndarray:
        """(C, C) int64 confusion matrix of the blend on the full data or the search view."""
        if not full and self._sub is not None:
            return self._sub.confusion(weights, self.num_classes, self.ignore_index)
        return blend_argmax_confusion(
            self.members, weights, self.labels, self.num_classes, self.ignore_index, self.chunk
        )

    def _score(self, weights: np.ndarray, full: bool) -> float:
        """Cached mIoU; the key is the exact kernel input, so hits are exact."""
        self.n_calls += 1
        key = (full or self._sub is None, _kernel_weights(weights, self.n_members).tobytes())
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        self.n_evals += 1
        miou, _ = iou_from_confusion(self.confusion(weights, full=key[0]))
        score = float(miou)
        self._cache[key] = score
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return score

    def __call__(self, weights: np.ndarray) -> float:
        """mIoU on the search view (subsample if configured)."""
        return self._score(weights, full=False)

    def full_score(self, weights: np.ndarray) -> float:
        """mIoU on all pixels of all images."""
        return self._score(weights, full=True)


# ----------------------------------------------------------------------------------------------
# Generic weight search
# ----------------------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """Outcome of a weight search.

    weights: (M,) non-negative, sum 1.  score: score of ``weights`` (on the final/full
    objective when :func:`search_weights` got ``final_score_fn``).  n_evals: ``score_fn`` calls
    made by the search.  history: per-method progress (SLSQP: best score after each start;
    greedy: blend score after each added member).  member_scores: each member alone.
    search_score: score of ``weights`` on the search objective.
    """

    weights: np.ndarray
    score: float
    n_evals: int
    method: str
    history: list[float] = field(default_factory=list)
    member_scores: list[float] = field(default_factory=list)
    search_score: float = float("nan")


def normalize_weights(w: np.ndarray) -> np.ndarray:
    """Clip (M,) weights at 0 and rescale to sum 1 (uniform if all are 0)."""
    w = np.clip(np.asarray(w, dtype=np.float64).reshape(-1), 0.0, None)
    s = w.sum()
    return w / s if s > 0 else np.full(w.shape, 1.0 / w.size)


class _Tracker:
    """Wraps ``score_fn``: normalises weights, counts calls, remembers the best point seen."""

    def __init__(self, score_fn: ScoreFn, n_members: int) -> None:
        self.score_fn = score_fn
        self.n_members = n_members
        self.n_evals = 0
        self.best_w = np.full(n_members, 1.0 / n_members)
        self.best = -np.inf

    def __call__(self, w: np.ndarray) -> float:
        w = normalize_weights(w)
        self.n_evals += 1
        s = float(self.score_fn(w))
        if s > self.best:  # strict: earlier (simpler) points win ties
            self.best, self.best_w = s, w
        return s

    def member_scores(self) -> list[float]:
        """Score of each member alone (one-hot weights)."""
        return [self(np.eye(self.n_members)[i]) for i in range(self.n_members)]


def _slsqp_starts(n_members: int, x0: np.ndarray | None, n_starts: int, seed: int) -> list[np.ndarray]:
    """``n_starts`` start points: x0 (default uniform), one corner-leaning point per member
    (70% on it, the rest spread), then random Dirichlet(1) points."""
    m = n_members
    starts = [np.full(m, 1.0 / m) if x0 is None else normalize_weights(x0)]
    for i in range(m if m > 1 else 0):
        c = np.full(m, 0.3 / (m - 1))
        c[i] = 0.7
        starts.append(c)
    rng = np.random.default_rng(seed)
    while len(starts) < n_starts:
        starts.append(rng.dirichlet(np.ones(m)))
    return starts[: max(1, n_starts)]


def slsqp_weights(
    score_fn: ScoreFn,
    n_members: int,
    *,
    x0: np.ndarray | None = None,
    n_starts: int | None = None,
    seed: int = 0,
    eps: float = 0.05,
    maxiter: int = 50,
) -> SearchResult:
    """Maximise ``score_fn`` over the simplex (w >= 0, sum w = 1) with multi-start SLSQP.

    Why the large finite-difference step: a metric of an argmax (mIoU, accuracy, F1 at a
    threshold) is piecewise constant in the weights.  SLSQP's default forward-difference step
    (~1.5e-8) almost never crosses a decision boundary, so the estimated gradient is exactly 0
    and SLSQP stops at its start after one iteration.  (At degenerate points such as uniform
    weights on uint8-quantised inputs the opposite happens: exact ties between classes flip
    under any perturbation, giving a huge, meaningless gradient.)  ``eps`` (default 0.05,
    absolute; SLSQP keeps the difference points inside the bounds) makes the difference span
    many decision boundaries, i.e. a gradient of the locally averaged score.  The surface is
    still bumpy, so we restart from ``x0`` (default uniform), one corner-leaning point per
    member and random Dirichlet points, and return the best point *evaluated* anywhere (not
    just SLSQP's final iterate).  Uniform weights and every single member are always
    evaluated, so the result is never worse than them on ``score_fn``.

    Args:
        score_fn: (M,) weights summing to 1 -> score (higher is better).
        n_members: M.
        x0: first start (M,) (default uniform).
        n_starts: number of SLSQP runs (default M + 3: x0, M corners, 2 random).
        seed: seed of the Dirichlet starts.
        eps: absolute finite-difference step of SLSQP.
        maxiter: SLSQP iterations per start.
    """
    tr = _Tracker(score_fn, n_members)
    tr(np.full(n_members, 1.0 / n_members))
    member_scores = tr.member_scores()
    history: list[float] = []
    n_starts = n_members + 3 if n_starts is None else int(n_starts)
    cons = ({"type": "eq", "fun": lambda x: np.sum(x) - 1.0, "jac": lambda x: np.ones_like(x)},)
    for start in _slsqp_starts(n_members, x0, n_starts, seed):
        if n_members > 1:
            minimize(
                lambda x: -tr(x),
                start,
                method="SLSQP",
                bounds=[(0.0, 1.0)] * n_members,
                constraints=cons,
                options={"eps": eps, "maxiter": maxiter, "ftol": 1e-9},
            )
        history.append(tr.best)
    return SearchResult(
        weights=tr.best_w, score=tr.best, n_evals=tr.n_evals, method="slsqp",
        history=history, member_scores=member_scores, search_score=tr.best,
    )


def greedy_weights(
    score_fn: ScoreFn,
    n_members: int,
    *,
    n_iter: int = 50,
    with_replacement: bool = True,
    init_best_single: bool = True,
    patience: int = 5,
    tol: float = 0.0,
) -> SearchResult:
    """Greedy forward ensemble selection (Caruana et al. 2004, ICML).

    Repeatedly add (with replacement by default, Caruana's refinement against overfitting
    early) the member whose addition maximises the blend score; weights = counts / total.
    Returns the best blend seen along the path.  Stops after ``n_iter`` additions, when no
    member is left (without replacement), or after ``patience`` additions without an
    improvement larger than ``tol``.

    Args:
        score_fn: (M,) weights summing to 1 -> score (higher is better).
        n_members: M.
        n_iter: maximum number of additions.
        with_replacement: allow adding a member several times.
        init_best_single: start from the best single member (Caruana's sorted
            initialisation with one model); False starts from every member once (uniform).
        patience: additions without improvement before stopping.
        tol: minimum improvement that resets the patience counter.
    """
    tr = _Tracker(score_fn, n_members)
    member_scores = tr.member_scores()
    if init_best_single:
        counts = np.eye(n_members)[int(np.argmax(member_scores))]
        current = max(member_scores)
    else:
        counts = np.ones(n_members)
        current = tr(counts)
    best_counts, best, stall, history = counts.copy(), current, 0, [current]
    for _ in range(n_iter):
        cand = [j for j in range(n_members) if with_replacement or counts[j] == 0]
        if not cand:
            break
        scores = [tr(counts + np.eye(n_members)[j]) for j in cand]
        j = cand[int(np.argmax(scores))]  # ties -> lowest member index
        counts = counts + np.eye(n_members)[j]
        history.append(max(scores))
        if max(scores) > best + tol:
            best_counts, best, stall = counts.copy(), max(scores), 0
        else:
            stall += 1
            if stall >= patience:
                break
    return SearchResult(
        weights=normalize_weights(best_counts), score=best, n_evals=tr.n_evals,
        method="greedy", history=history, member_scores=member_scores, search_score=best,
    )


_METHODS: dict[str, Callable[..., SearchResult]] = {"slsqp": slsqp_weights, "greedy": greedy_weights}


def _rescore(
    result: SearchResult, score_fn: ScoreFn, final_score_fn: ScoreFn, n_members: int
) -> SearchResult:
    """Re-score the found weights, uniform and each single member with ``final_score_fn``.

    Keeps the best on the final objective (ties -> the searched weights), so a subsampled
    search can never report a blend worse than uniform / the best single on the full data.
    """
    eye = np.eye(n_members)
    cands = [result.weights, np.full(n_members, 1.0 / n_members)] + [eye[i] for i in range(n_members)]
    scores = [float(final_score_fn(w)) for w in cands]
    k = int(np.argmax(scores))
    search_score = result.search_score if k == 0 else float(score_fn(cands[k]))
    return SearchResult(
        weights=cands[k], score=scores[k], n_evals=result.n_evals + int(k != 0),
        method=result.method, history=result.history, member_scores=scores[2:],
        search_score=search_score,
    )


def search_weights(
    score_fn: ScoreFn,
    n_members: int,
    method: str = "slsqp",
    *,
    final_score_fn: ScoreFn | None = None,
    **kw: object,
) -> SearchResult:
    """Run weight search ``method`` ('slsqp' or 'greedy') on ``score_fn``.

    ``kw`` goes to :func:`slsqp_weights` / :func:`greedy_weights`.  With ``final_score_fn``
    (e.g. :meth:`SegmentationBlendObjective.full_score`) the result is re-scored on it and
    compared with uniform and single-member weights (see :func:`_rescore`); ``score`` and
    ``member_scores`` are then final-objective values.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown weight search method {method!r}; choose one of {sorted(_METHODS)}")
    if n_members < 1:
        raise ValueError("n_members must be >= 1")
    result = _METHODS[method](score_fn, n_members, **kw)
    if final_score_fn is None:
        return result
    return _rescore(result, score_fn, final_score_fn, n_members)
