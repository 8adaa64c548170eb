"""Per-frame pose features for MABe-style behaviour tagging (numpy only, no I/O).

Input convention: ``pose`` is a dense ``(T, M, K, 2)`` float array (frames × mice × keypoints ×
xy, pixels) with NaN for a missing keypoint or an absent mouse. NaN is the only "missing" marker
inside this module; :func:`frame_features` turns it into ``0`` plus an explicit ``False`` in the
returned mask, so a zero is never silently ambiguous.

Feature layout of :func:`frame_features` (seed report 001, MABe V5/V6):
``[coords (max_mice·V·2) | speed (max_mice·V) | accel (max_mice·V) | pair (V·V + 4)]`` with
``V = len(vocabulary)``; 4 mice × 18 parts gives 144 (V5) and 288 (V6).

Speed: :func:`frame_features` allocates its (T, F) outputs once and fills them in blocks of
:data:`_CHUNK` frames (every temporary stays in cache and below glibc's 32 MiB mmap threshold, so
no page faults per temporary), then fills coordinate gaps in one vectorised pass over the missing
entries only. All arithmetic is the float32 (interpolation: float64) arithmetic of the simple
per-function versions, so results are bit-identical to them (``tests/test_behavior_features.py``
keeps a frozen copy); ``bench/bench_features.py`` compares it with a wide-pandas baseline.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

# Frames per block in frame_features (>= 3: the first block must hold the frames the edge padding
# copies). ~3 kB of temporaries per frame in V6, so 2048 frames ≈ 6 MB: L3-resident and far below
# glibc's mmap threshold (mallopt(3) M_MMAP_THRESHOLD, dynamic up to 32 MiB on 64-bit), so blocks
# reuse heap memory instead of page-faulting fresh mmaps. 512…2048 measured alike, 4096+ slower
# (bench/bench_features.py); the per-block Python overhead (~30 numpy calls) is < 5 %.
_CHUNK = 2048


def _check_pix(pix_per_cm: float) -> np.float32:
    """``pix_per_cm`` as float32 (the dtype every division by it uses); ValueError unless positive and finite."""
    if pix_per_cm <= 0 or not np.isfinite(pix_per_cm):
        raise ValueError(f"pix_per_cm must be a positive number, got {pix_per_cm}")
    return np.float32(pix_per_cm)


def _arena(arena_cm: tuple[float, float]) -> tuple[np.ndarray, np.float32]:
    """(centre (2,) float32, scale float32) of the arena normalisation ``(x - centre) / scale``."""
    return np.asarray(arena_cm, dtype=np.float32) / 2, np.float32(max(arena_cm) / 2)


def normalise_pose(pose: np.ndarray, pix_per_cm: float,
                   arena_cm: tuple[float, float] | None = None) -> np.ndarray:
    """Pixels → cm. ``pose`` (T, M, K, 2) → (T, M, K, 2) float32, NaN kept.

    With ``arena_cm = (width, height)`` the result is additionally centred on the arena centre and
    divided by half the larger side (one isotropic scale, so angles are preserved): values then lie
    in about [-1, 1] and are unitless. Assumes the arena's top-left corner is the pixel origin.
    """
    out = np.asarray(pose, dtype=np.float32) / _check_pix(pix_per_cm)
    if arena_cm is not None:
        centre, scale = _arena(arena_cm)
        out = (out - centre) / scale
    return out


def _interp_gaps(table: np.ndarray, observed: np.ndarray) -> None:
    """Fill unobserved keypoints in place, exactly as ``np.interp`` on each track would.

    ``table`` (T, W) float32, C-contiguous, track j's x/y in columns 2j, 2j+1 (j < P, 2P <= W);
    ``observed`` (T, P) bool. A gap between observed frames ``lo`` and ``hi`` gets
    ``(v[hi] - v[lo]) / (hi - lo) · (t - lo) + v[lo]`` in float64, the formula of numpy's
    ``arr_interp`` (numpy/_core/src/multiarray/compiled_base.c), so the result is bit-identical to a
    per-track ``np.interp`` loop. Before the first / after the last observation the nearest observed
    value is held (there ``lo`` and ``hi`` index the same frame: slope 0, the formula returns it
    exactly, up to the sign of a zero); a track never observed becomes 0.
    Only the missing entries are gathered (1-D indices into ``table``), all tracks at once.
    """
    t_len, width = table.shape
    n_tracks = observed.shape[1]
    seen = observed.any(axis=0)
    table[:, :2 * n_tracks].reshape(t_len, n_tracks, 2, copy=False)[:, ~seen] = 0.0
    missing = ~observed.T  # (P, T): in C order a gap is a run of consecutive flat indices
    missing[~seen] = False
    flat = np.flatnonzero(missing)
    if flat.size == 0:
        return
    track, t = np.divmod(flat, t_len)
    head = np.ones(flat.size, dtype=bool)
    head[1:] = (np.diff(flat) != 1) | (t[1:] == 0)  # a run starts at a jump or at a new track
    run = np.cumsum(head) - 1
    lo = (t[head] - 1)[run]                 # last observed frame before the gap (-1: none)
    hi = lo + np.bincount(run)[run] + 1     # first observed frame after it (t_len: none)
    values = table.reshape(-1, copy=False)
    col = 2 * track
    at_lo = np.where(lo < 0, hi, lo) * width + col
    at_hi = np.where(hi >= t_len, lo, hi) * width + col
    at = t * width + col
    span, offset = (hi - lo).astype(np.float64), (t - lo).astype(np.float64)  # exact: small integers
    for c in (0, 1):  # x, y
        v_lo, v_hi = values[at_lo + c].astype(np.float64), values[at_hi + c].astype(np.float64)
        values[at + c] = (v_hi - v_lo) / span * offset + v_lo


def interpolate_missing(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN keypoints by linear interpolation in time, per (mouse, keypoint) track.

    ``pose`` (T, M, K, 2) → ``(filled (T, M, K, 2) float32, observed (T, M, K) bool)``.
    A keypoint counts as observed only when both x and y are finite. Before the first / after the
    last observation the nearest observed value is held (``np.interp`` edge behaviour). A track
    never observed becomes 0 with ``observed`` False on every frame.
    """
    filled = np.array(pose, dtype=np.float32)  # always a copy
    t_len, m, k, _ = filled.shape
    observed = np.isfinite(filled).all(axis=-1)
    _interp_gaps(filled.reshape(t_len, m * k * 2), observed.reshape(t_len, m * k))
    return filled, observed


def _magnitude_into(d: np.ndarray, out: np.ndarray) -> None:
    """``out = |d|`` over the last axis: ``d`` (..., 2) float32 (squared in place), ``out`` (...) float32.

    ``sqrt(x² + y²)`` in float32: the same operations as ``np.linalg.norm(d, axis=-1)`` (square,
    add.reduce, sqrt), written into ``out`` without temporaries.
    """
    np.square(d, out=d)
    np.add(d[..., 0], d[..., 1], out=out)
    np.sqrt(out, out=out)


def _pad_start(block: np.ndarray, pad: int) -> None:
    """Rows ``:pad`` of ``block`` (T, ...) repeat row ``pad``, the first defined difference; NaN if none."""
    block[:pad] = block[pad] if len(block) > pad else np.nan


def _motion_into(raw: np.ndarray, fps: float, speed: np.ndarray, accel: np.ndarray, history: int) -> None:
    """Speed and accel of the frames after ``history`` (0 or 2) leading frames of ``raw``.

    ``raw`` (history + n, M, K, 2) float32 cm → ``speed``, ``accel`` (n, M, K) float32 (may be views
    into a larger output). With ``history == 0`` speed row 0 and accel rows 0-1 have no difference
    and are left to :func:`_pad_start`.
    """
    f = np.float32(fps)
    vel = np.subtract(raw[1:], raw[:-1])
    vel *= f  # vel[i] = velocity at raw frame i + 1
    acc = np.subtract(vel[1:], vel[:-1])
    acc *= f  # acc[i] = acceleration at raw frame i + 2
    if history:
        _magnitude_into(vel[history - 1:], speed)
        _magnitude_into(acc[history - 2:], accel)
    else:
        _magnitude_into(vel, speed[1:])
        _magnitude_into(acc, accel[2:])


def motion_features(pose_cm: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Speed and acceleration magnitudes per keypoint (seed V6 motion features).

    ``pose_cm`` (T, M, K, 2) cm, NaN = missing → ``speed (T, M, K)`` cm/s and ``accel (T, M, K)``
    cm/s². velocity v[t] = (x[t] - x[t-1])·fps, speed = |v|; a[t] = (v[t] - v[t-1])·fps,
    accel = |a|. Frame 0 repeats frame 1 (speed), frames 0-1 repeat frame 2 (accel). A value is
    NaN wherever any frame it uses was missing (NaN propagates), so callers can mask it.
    Sequences too short for a difference (T < 2 for speed, T < 3 for accel) give all-NaN.
    """
    pose_cm = np.asarray(pose_cm, dtype=np.float32)
    speed = np.empty(pose_cm.shape[:-1], dtype=np.float32)
    accel = np.empty_like(speed)
    _motion_into(pose_cm, fps, speed, accel, history=0)
    _pad_start(speed, 1)
    _pad_start(accel, 2)
    return speed, accel


def _centroid(points: np.ndarray) -> np.ndarray:
    """Mean over keypoints ignoring NaN. ``points`` (T, K, 2) → (T, 2) float32; NaN when none observed.

    Bit-identical to ``np.nanmean(points, axis=1)`` (numpy/lib/_nanfunctions_impl.py: NaN → 0,
    float32 sums in keypoint order, then ``_divide_by_count``'s float64 division by the count) but
    on a (K, 2, T) copy, so every loop runs over frames instead of numpy's slow length-2 inner loop.
    """
    planar = np.ascontiguousarray(points.transpose(1, 2, 0))
    missing = np.isnan(planar)
    np.copyto(planar, 0.0, where=missing)
    total = planar.sum(axis=0)  # outer-axis reduction: sequential in k, like nanmean's
    count = planar.shape[0] - missing.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # no keypoint: 0 / 0 → NaN, on purpose
        return (total / count).astype(np.float32).T


def _pair_into(raw: np.ndarray, agent: int, target: int, fps: float, axis: tuple[int, int],
               out: np.ndarray, history: int) -> None:
    """Pair features (see :func:`pair_features`) of the frames after ``history`` (0 or 1) leading
    frames of ``raw`` (history + n, M, K, 2) float32 cm → ``out`` (n, K·K + 4) float32 (a view).
    With ``history == 0`` the approach speed of row 0 is left to :func:`_pad_start`."""
    a, b = raw[:, agent], raw[:, target]  # (history + n, K, 2)
    n, k = out.shape[0], a.shape[1]
    dists = out[:, :k * k].reshape(n, k, k, copy=False)  # x and y apart: no length-2 inner loops
    dy = np.subtract(a[history:, :, None, 1], b[history:, None, :, 1])
    np.subtract(a[history:, :, None, 0], b[history:, None, :, 0], out=dists)
    np.square(dists, out=dists)
    np.add(dists, np.square(dy, out=dy), out=dists)
    np.sqrt(dists, out=dists)  # sqrt(dx² + dy²) in float32, as np.linalg.norm
    to_target = _centroid(b) - _centroid(a)
    dist = np.linalg.norm(to_target, axis=-1)
    body = a[:, axis[0]] - a[:, axis[1]]
    angle = np.arctan2(to_target[:, 1], to_target[:, 0]) - np.arctan2(body[:, 1], body[:, 0])
    degenerate = (np.linalg.norm(body, axis=-1) == 0) | (dist == 0)
    extra = out[:, k * k:]
    extra[:, 0] = dist[history:]
    extra[:, 1] = np.where(degenerate, np.nan, np.cos(angle))[history:]
    extra[:, 2] = np.where(degenerate, np.nan, np.sin(angle))[history:]
    extra[1 - history:, 3] = (dist[1:] - dist[:-1]) * np.float32(fps)


def pair_features(pose_cm: np.ndarray, agent: int, target: int, fps: float,
                  axis: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Agent → target social features. ``pose_cm`` (T, M, K, 2) → (T, K·K + 4) float32, NaN = undefined.

    Columns: ``K·K`` distances ``|agent[i] - target[j]|`` (row-major in i, j; all body-part pairs);
    centroid distance; cos and sin of the relative heading (the signed angle from the agent's body
    axis ``pose[axis[1]] → pose[axis[0]]``, i.e. back part → front part, to the direction agent
    centroid → target centroid; cos/sin avoid the ±π wrap); approach speed = d/dt of the centroid
    distance in cm/s (negative while closing in; frame 0 repeats frame 1).
    """
    pose_cm = np.asarray(pose_cm, dtype=np.float32)
    t_len, _, k, _ = pose_cm.shape
    out = np.empty((t_len, k * k + 4), dtype=np.float32)
    _pair_into(pose_cm, agent, target, fps, axis, out, history=0)
    _pad_start(out[:, -1], 1)
    return out


def _vocabulary_slots(body_parts: Sequence[str] | None, vocabulary: Sequence[str] | None,
                      k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(src, dst, V)``: the video's keypoint ``src[i]`` goes to vocabulary slot ``dst[i]`` (int (n,))."""
    if vocabulary is None:
        return np.arange(k), np.arange(k), k
    if body_parts is None or len(body_parts) != k:
        raise ValueError(f"a vocabulary needs body_parts naming the video's {k} keypoints, got {body_parts}")
    slot = {name: i for i, name in enumerate(vocabulary)}
    kept = [j for j, name in enumerate(body_parts) if name in slot]
    return (np.array(kept, dtype=np.intp), np.array([slot[body_parts[j]] for j in kept], dtype=np.intp),
            len(vocabulary))


def _place(pose: np.ndarray, src: np.ndarray, dst: np.ndarray, max_mice: int, v: int,
           pix: np.float32 | None = None) -> np.ndarray:
    """(T, M, K, 2) → (T, max_mice, V, 2) float32 (divided by ``pix`` when given), NaN where absent."""
    t_len, m = pose.shape[:2]
    out = np.empty((t_len, max_mice, v, 2), dtype=np.float32)
    if m == max_mice and np.array_equal(src, np.arange(v)) and np.array_equal(dst, src):
        if pix is None:  # identity layout (all mice, vocabulary order): one pass, no gather
            np.copyto(out, pose)
        else:
            np.divide(pose, pix, out=out)
        return out
    out.fill(np.nan)
    parts = pose[:, :, src]  # gathered copy
    if pix is not None:
        parts /= pix  # float32 / float32: the same rounding as normalising before placing
    out[:, :m, dst] = parts
    return out


def map_to_vocabulary(pose: np.ndarray, body_parts: Sequence[str] | None, vocabulary: Sequence[str] | None,
                      max_mice: int) -> np.ndarray:
    """Place keypoints into a fixed layout. (T, M, K, 2) → (T, max_mice, V, 2), NaN where absent.

    Parts of ``body_parts`` not in ``vocabulary`` are dropped; vocabulary parts the video lacks
    stay NaN. Without a vocabulary the video's own K keypoints are kept in order (V = K).
    """
    m, k = pose.shape[1:3]
    if m > max_mice:
        raise ValueError(f"video has {m} mice but max_mice={max_mice}")
    src, dst, v = _vocabulary_slots(body_parts, vocabulary, k)
    return _place(pose, src, dst, max_mice, v)


class _Spec(NamedTuple):
    """Static settings of one :func:`frame_features` call."""
    pix: np.float32
    fps: float
    src: np.ndarray
    dst: np.ndarray
    max_mice: int
    v: int
    arena: tuple[np.ndarray, np.float32] | None
    motion: bool
    pair: tuple[int, int] | None
    interpolate: bool


def _coords_into(raw: np.ndarray, spec: _Spec, values: np.ndarray, mask: np.ndarray) -> None:
    """Coordinate block of n frames: ``raw`` (n, max_mice, V, 2) cm → ``values``, ``mask`` (n, max_mice·V·2)
    views. With interpolation the mask is per keypoint and gaps are filled later (:func:`_interp_gaps`)."""
    flat = raw.reshape(len(raw), values.shape[1])  # 2-D with a long inner loop: a trailing (…, 2) axis is slow
    if spec.arena is None:
        np.copyto(values, flat)
    else:
        np.subtract(flat, spec.arena[0], out=values)  # centre tiled to (max_mice·V·2,): x, y, x, y, …
        np.divide(values, spec.arena[1], out=values)
    if spec.interpolate:
        finite = np.isfinite(values)
        pairs = finite.view(np.uint16)  # one uint16 per keypoint: 0x0101 ⇔ x and y both finite
        np.multiply(pairs == 0x0101, np.uint16(0x0101), out=pairs)
        mask[:] = finite


def _fill_block(pose: np.ndarray, spec: _Spec, feats: np.ndarray, mask: np.ndarray, start: int) -> None:
    """Frames ``start : start + len(feats)`` of ``pose`` (T, M, K, 2) px → their ``feats``/``mask`` rows
    (n, F) views. Reads 2 earlier frames (the differences need them) unless ``start == 0``."""
    history = 2 if start else 0  # start >= _CHUNK >= 3 otherwise
    raw = _place(pose[start - history:start + len(feats)], spec.src, spec.dst, spec.max_mice, spec.v, spec.pix)
    n, mv = len(feats), spec.max_mice * spec.v
    _coords_into(raw[history:], spec, feats[:, :2 * mv], mask[:, :2 * mv])
    col = 2 * mv
    if spec.motion:
        speed = feats[:, col:col + mv].reshape(n, spec.max_mice, spec.v, copy=False)
        accel = feats[:, col + mv:col + 2 * mv].reshape(n, spec.max_mice, spec.v, copy=False)
        _motion_into(raw, spec.fps, speed, accel, history)
        if start == 0:
            _pad_start(speed, 1)
            _pad_start(accel, 2)
        col += 2 * mv
    if spec.pair is not None:
        h = min(history, 1)
        _pair_into(raw[history - h:], *spec.pair, spec.fps, (0, 1), feats[:, col:], h)
        if start == 0:
            _pad_start(feats[:, -1], 1)
    first = 2 * mv if spec.interpolate else 0  # NaN → 0 + mask for every block still holding NaN
    np.isfinite(feats[:, first:], out=mask[:, first:])
    np.copyto(feats[:, first:], 0.0, where=~mask[:, first:])


def frame_features(pose: np.ndarray, pix_per_cm: float, fps: float, *, motion: bool,
                   pair: tuple[int, int] | None = None, max_mice: int = 4,
                   body_parts: Sequence[str] | None = None, vocabulary: Sequence[str] | None = None,
                   arena_cm: tuple[float, float] | None = None,
                   interpolate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-width per-frame vector. ``pose`` (T, M, K, 2) px, NaN = missing →
    ``(features (T, F) float32, mask (T, F) bool)``; see the module docstring for the layout.

    Coordinates are in cm (arena-normalised when ``arena_cm`` is given) and, with ``interpolate``,
    gaps are filled by :func:`interpolate_missing` while the mask still marks them unobserved.
    Speed/accel (``motion``, seed V6) and ``pair`` features are computed in cm from the raw pose, so
    they are masked wherever a frame they use was missing. ``pair = (agent, target)`` mouse indices;
    the pair heading uses the vocabulary's first two parts as (front, back).
    """
    pose = np.asarray(pose, dtype=np.float32)
    t_len, m, k, _ = pose.shape
    if m > max_mice:
        raise ValueError(f"video has {m} mice but max_mice={max_mice}")
    src, dst, v = _vocabulary_slots(body_parts, vocabulary, k)
    arena = None
    if arena_cm is not None:
        centre, scale = _arena(arena_cm)
        arena = (np.tile(centre, max_mice * v), scale)
    spec = _Spec(_check_pix(pix_per_cm), fps, src, dst, max_mice, v, arena, motion, pair, interpolate)
    width = max_mice * v * (4 if motion else 2) + (v * v + 4 if pair is not None else 0)
    feats = np.empty((t_len, width), dtype=np.float32)  # written once, block by block: no concatenate
    mask = np.empty((t_len, width), dtype=bool)
    for start in range(0, t_len, _CHUNK):
        _fill_block(pose, spec, feats[start:start + _CHUNK], mask[start:start + _CHUNK], start)
    if interpolate:
        p = max_mice * v
        _interp_gaps(feats, mask[:, :2 * p:2])
    return feats, mask
