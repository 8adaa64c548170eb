"""Per-frame pose features for MABe-style behaviour tagging (numpy only, no I/O).

Input convention: ``pose`` is a dense ``(T, M, K, 2)`` float array (frames × mice × keypoints ×
xy, pixels) with NaN for a missing keypoint or an absent mouse. NaN is the only "missing" marker
inside this module; :func:`frame_features` turns it into ``0`` plus an explicit ``False`` in the
returned mask, so a zero is never silently ambiguous.

Feature layout of :func:`frame_features` (seed report 001, MABe V5/V6):
``[coords (max_mice·V·2) | speed (max_mice·V) | accel (max_mice·V) | pair (V·V + 4)]`` with
``V = len(vocabulary)``; 4 mice × 18 parts gives 144 (V5) and 288 (V6).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np


def normalise_pose(pose: np.ndarray, pix_per_cm: float,
                   arena_cm: tuple[float, float] | None = None) -> np.ndarray:
    """Pixels → cm. ``pose`` (T, M, K, 2) → (T, M, K, 2) float32, NaN kept.

    With ``arena_cm = (width, height)`` the result is additionally centred on the arena centre and
    divided by half the larger side (one isotropic scale, so angles are preserved): values then lie
    in about [-1, 1] and are unitless. Assumes the arena's top-left corner is the pixel origin.
    """
    if pix_per_cm <= 0 or not np.isfinite(pix_per_cm):
        raise ValueError(f"pix_per_cm must be a positive number, got {pix_per_cm}")
    out = np.asarray(pose, dtype=np.float32) / np.float32(pix_per_cm)
    if arena_cm is not None:
        centre = np.asarray(arena_cm, dtype=np.float32) / 2
        out = (out - centre) / np.float32(max(arena_cm) / 2)
    return out


def interpolate_missing(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN keypoints by linear interpolation in time, per (mouse, keypoint) track.

    ``pose`` (T, M, K, 2) → ``(filled (T, M, K, 2) float32, observed (T, M, K) bool)``.
    A keypoint counts as observed only when both x and y are finite. Before the first / after the
    last observation the nearest observed value is held (``np.interp`` edge behaviour). A track
    never observed becomes 0 with ``observed`` False on every frame.
    """
    pose = np.asarray(pose, dtype=np.float32)
    t_len, m, k, _ = pose.shape
    observed = np.isfinite(pose).all(axis=-1)
    flat = pose.reshape(t_len, m * k, 2).copy()
    obs_flat = observed.reshape(t_len, m * k)
    frames = np.arange(t_len, dtype=np.float64)
    for j in range(m * k):
        seen = obs_flat[:, j]
        if seen.all():
            continue
        if not seen.any():
            flat[:, j] = 0.0
            continue
        for c in range(2):
            flat[:, j, c] = np.interp(frames, frames[seen], flat[seen, j, c])
    return flat.reshape(pose.shape), observed


def _time_derivative(x: np.ndarray, fps: float, order_pad: int) -> np.ndarray:
    """Backward difference ``(x[t] - x[t-1]) · fps`` along axis 0; the first ``order_pad`` frames
    repeat the first defined value (frame ``order_pad``). Needs ``T > order_pad``."""
    d = np.empty_like(x)
    d[1:] = (x[1:] - x[:-1]) * np.float32(fps)
    d[:order_pad] = d[order_pad]
    return d


def motion_features(pose_cm: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Speed and acceleration magnitudes per keypoint (seed V6 motion features).

    ``pose_cm`` (T, M, K, 2) cm, NaN = missing → ``speed (T, M, K)`` cm/s and ``accel (T, M, K)``
    cm/s². velocity v[t] = (x[t] - x[t-1])·fps, speed = |v|; a[t] = (v[t] - v[t-1])·fps,
    accel = |a|. Frame 0 repeats frame 1 (speed), frames 0-1 repeat frame 2 (accel). A value is
    NaN wherever any frame it uses was missing (NaN propagates), so callers can mask it.
    Sequences too short for a difference (T < 2 for speed, T < 3 for accel) give all-NaN.
    """
    pose_cm = np.asarray(pose_cm, dtype=np.float32)
    t_len = pose_cm.shape[0]
    nan = np.full(pose_cm.shape[:-1], np.nan, dtype=np.float32)
    if t_len < 2:
        return nan, nan.copy()
    vel = _time_derivative(pose_cm, fps, 1)
    speed = np.linalg.norm(vel, axis=-1)
    if t_len < 3:
        return speed, nan
    acc = np.empty_like(vel)
    acc[2:] = (vel[2:] - vel[1:-1]) * np.float32(fps)  # vel[1] is the first true difference
    acc[:2] = acc[2]
    return speed, np.linalg.norm(acc, axis=-1)


def _centroid(points: np.ndarray) -> np.ndarray:
    """Mean over keypoints ignoring NaN. ``points`` (T, K, 2) → (T, 2); NaN when none observed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN frames → NaN, on purpose
        return np.nanmean(points, axis=1)


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
    a, b = pose_cm[:, agent], pose_cm[:, target]  # (T, K, 2)
    t_len, k = a.shape[:2]
    dists = np.linalg.norm(a[:, :, None, :] - b[:, None, :, :], axis=-1).reshape(t_len, k * k)
    ca, cb = _centroid(a), _centroid(b)
    to_target = cb - ca
    centroid_dist = np.linalg.norm(to_target, axis=-1)
    body = a[:, axis[0]] - a[:, axis[1]]
    angle = np.arctan2(to_target[:, 1], to_target[:, 0]) - np.arctan2(body[:, 1], body[:, 0])
    degenerate = (np.linalg.norm(body, axis=-1) == 0) | (centroid_dist == 0)
    cos, sin = np.where(degenerate, np.nan, np.cos(angle)), np.where(degenerate, np.nan, np.sin(angle))
    approach = _time_derivative(centroid_dist, fps, 1) if t_len >= 2 else np.full(t_len, np.nan, np.float32)
    extra = np.stack([centroid_dist, cos, sin, approach], axis=1)
    return np.concatenate([dists, extra], axis=1).astype(np.float32)


def map_to_vocabulary(pose: np.ndarray, body_parts: Sequence[str] | None, vocabulary: Sequence[str] | None,
                      max_mice: int) -> np.ndarray:
    """Place keypoints into a fixed layout. (T, M, K, 2) → (T, max_mice, V, 2), NaN where absent.

    Parts of ``body_parts`` not in ``vocabulary`` are dropped; vocabulary parts the video lacks
    stay NaN. Without a vocabulary the video's own K keypoints are kept in order (V = K).
    """
    t_len, m, k, _ = pose.shape
    if m > max_mice:
        raise ValueError(f"video has {m} mice but max_mice={max_mice}")
    if vocabulary is None:
        out = np.full((t_len, max_mice, k, 2), np.nan, dtype=np.float32)
        out[:, :m] = pose
        return out
    if body_parts is None or len(body_parts) != k:
        raise ValueError(f"a vocabulary needs body_parts naming the video's {k} keypoints, got {body_parts}")
    out = np.full((t_len, max_mice, len(vocabulary), 2), np.nan, dtype=np.float32)
    slot = {name: i for i, name in enumerate(vocabulary)}
    for j, name in enumerate(body_parts):
        if name in slot:
            out[:, :m, slot[name]] = pose[:, :, j]
    return out


def _finite_block(values: np.ndarray, t_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, ...) with NaN → ``(values (T, F) with NaN→0, mask (T, F) bool finite)``."""
    flat = values.reshape(t_len, -1)
    ok = np.isfinite(flat)
    return np.where(ok, flat, 0.0).astype(np.float32), ok


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
    t_len = pose.shape[0]
    raw = map_to_vocabulary(normalise_pose(pose, pix_per_cm), body_parts, vocabulary, max_mice)
    coords = raw if arena_cm is None else normalise_pose(raw, 1.0, arena_cm)
    if interpolate:
        filled, observed = interpolate_missing(coords)
        blocks = [(filled.reshape(t_len, -1), np.repeat(observed.reshape(t_len, -1), 2, axis=1))]
    else:
        blocks = [_finite_block(coords, t_len)]
    if motion:
        speed, accel = motion_features(raw, fps)
        blocks += [_finite_block(speed, t_len), _finite_block(accel, t_len)]
    if pair is not None:
        blocks.append(_finite_block(pair_features(raw, pair[0], pair[1], fps), t_len))
    features = np.concatenate([b[0] for b in blocks], axis=1).astype(np.float32)
    mask = np.concatenate([b[1] for b in blocks], axis=1)
    return features, mask
