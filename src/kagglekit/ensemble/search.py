"""Ensemble weight search over out-of-fold (OOF) predictions.

Two layers:

* a fast segmentation objective: :func:`blend_argmax_confusion` computes the confusion matrix
  of ``argmax_c sum_i w_i p_i`` chunk by chunk over images (works on ``np.memmap`` OOF arrays
  with O(chunk) working memory), and :class:`SegmentationBlendObjective` wraps it as a
  ``weights -> mIoU`` callable with an optional fixed pixel subsample for fast search;
* metric-agnostic weight searches that only see ``score_fn(weights) -> float`` (higher is
  better): :func:`slsqp_weights` (multi-start SLSQP on the simplex) and :func:`greedy_weights`
  (Caruana et al. 2004, "Ensemble selection from libraries of models", ICML), dispatched by
  :func:`search_weights`.  Detection mAP / F1 tasks reuse them with their own ``score_fn``.

OOF probabilities are stored quantised, ``q = round(255 p)`` as uint8 ``(N, C, h, w)``; labels
are uint8 ``(N, h, w)`` with ``ignore_index`` (255) for unlabelled pixels.  Members align row
for row.  Since ``argmax`` is invariant to a positive rescaling, the blend is computed directly
on ``q`` (no division by 255) with weights rescaled so that ``max(w) = 1``.
"""
from __future__ import annotations

import mmap
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

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


def _blend_argmax_image(
    parts: list[tuple[np.ndarray, np.float32]], out: np.ndarray, bufs: tuple[np.ndarray, ...]
) -> None:
    """Write ``argmax_c sum_i w_i x_i[c]`` of one image into ``out`` (h, w) uint8.

    ``parts`` holds ``(x_i (C, h, w), w_i)`` for the non-zero-weight members.  Class by class
    running max: every temporary is one (h, w) float32 plane, which stays in cache and is
    ~2x faster than materialising the (C, h, w) blend and calling ``argmax(0)``.  Strict ``>``
    keeps the first maximal class on ties, like ``np.argmax``.
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
        weights: (M,) non-negative weights (any positive scale; argmax is scale invariant).
        labels: (N, h, w) integer targets; ``ignore_index`` pixels are skipped.
        num_classes: C.
        ignore_index: label value to skip (None: none).
        chunk: images per chunk; working memory is O(chunk * h * w) plus one (h, w) plane set.
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
    active = [(m, wi) for m, wi in zip(members, w) if wi > 0]  # skip zero-weight members
    n, _, h, wd = members[0].shape
    bufs = (
        np.empty((h, wd), np.float32),
        np.empty((h, wd), np.float32),
        np.empty((h, wd), np.float32),
        np.empty((h, wd), bool),
    )
    flat = np.zeros(num_classes * num_classes, np.int64)
    chunk = max(1, int(chunk))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        views = [(np.asarray(m[s:e]), wi) for m, wi in active]  # views, no copy for memmaps
        pred = np.empty((e - s, h, wd), np.uint8 if num_classes <= 256 else np.int32)
        for j in range(e - s):
            _blend_argmax_image([(x[j], wi) for x, wi in views], pred[j], bufs)
        flat += _chunk_confusion(pred, np.asarray(labels[s:e]), num_classes, ignore_index)
        if release_pages:
            for m in [m for m, _ in active] + [labels]:
                _release_pages(m[s:e])
    return flat.reshape(num_classes, num_classes)


# ----------------------------------------------------------------------------------------------
# Objective: weights -> mIoU
# ----------------------------------------------------------------------------------------------
def _subsample_pixels(
    members: Sequence[np.ndarray],
    labels: np.ndarray,
    max_pixels: int,
    ignore_index: int | None,
    seed: int,
    chunk: int,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Fixed random subsample of up to ``max_pixels`` labelled pixels per image.

    Returns members as M in-RAM arrays (N, C, 1, P) and labels (N, 1, P), P = max_pixels.
    Images with fewer labelled pixels keep all of them and are padded with ignored pixels.
    Reads the memmaps chunk by chunk (O(chunk) memory beyond the small outputs).
    """
    rng = np.random.default_rng(seed)
    n, c, h, w = members[0].shape
    max_pixels = min(max_pixels, h * w)  # without ignore_index no image needs padding
    fill = ignore_index if ignore_index is not None else 0
    sub_lab = np.full((n, 1, max_pixels), fill, dtype=np.asarray(labels[:1]).dtype)
    idx = np.zeros((n, max_pixels), np.int64)
    for i in range(n):
        lab = np.asarray(labels[i]).reshape(-1)
        cand = np.flatnonzero(lab != ignore_index) if ignore_index is not None else np.arange(lab.size)
        if cand.size > max_pixels:
            cand = np.sort(rng.choice(cand, size=max_pixels, replace=False))
        idx[i, : cand.size] = cand
        sub_lab[i, 0, : cand.size] = lab[cand]
    subs = [np.empty((n, c, 1, max_pixels), m.dtype) for m in members]
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        ii = idx[s:e, None, :]
        for m, out in zip(members, subs):
            x = np.asarray(m[s:e]).reshape(e - s, c, -1)
            out[s:e, :, 0, :] = np.take_along_axis(x, ii, axis=2)
            _release_pages(m[s:e])
    return subs, sub_lab


class SegmentationBlendObjective:
    """Callable ``weights (M,) -> mIoU`` of the blended argmax, for weight search.

    ``__call__`` scores on the search view: a fixed random subsample of at most
    ``max_pixels_per_image`` labelled pixels per image when set (drawn once, so the objective
    is deterministic), else the full data.  :meth:`full_score` always uses the full data; pass
    it as ``final_score_fn`` to :func:`search_weights` so the reported score is on full data.

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
        self._sub: tuple[list[np.ndarray], np.ndarray] | None = None
        if max_pixels_per_image is not None:
            self._sub = _subsample_pixels(
                self.members, labels, int(max_pixels_per_image), ignore_index, seed, chunk
            )

    @property
    def n_members(self) -> int:
        """Number of blended members M."""
        return len(self.members)

    def confusion(self, weights: np.ndarray, full: bool = True) -> np.ndarray:
        """(C, C) int64 confusion matrix of the blend on the full data or the search view."""
        members, labels = (self.members, self.labels)
        if not full and self._sub is not None:
            members, labels = self._sub
        return blend_argmax_confusion(
            members, weights, labels, self.num_classes, self.ignore_index, self.chunk
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
