"""Benchmark: behaviour pose features (``frame_features``) vs a wide-pandas baseline, same run.

Run: ``.venv/bin/python bench/bench_features.py [--frames 100000] [--repeats 5] [--pair]``.

Data: a synthetic video of 4 mice x 18 keypoints x ``--frames`` frames (random-walk mice, parts
at fixed offsets plus jitter, pixels) with about 5 % of the keypoints missing (NaN) in runs of
frames: per-keypoint dropouts (mean 15 frames) and whole-mouse tracking losses (mean 40 frames),
including gaps that touch the first and the last frame (edge-hold path).

Library: ``frame_features`` in the seed experiment ``mabe_v6``'s configuration
(``BehaviorConfig``: motion=True, pair_features=False, max_mice=4, a body-part vocabulary and the
arena size, as ``BehaviorTask.features`` calls it); ``--pair`` adds ``pair=(0, 1)`` (``mabe_v6_pairs``).

Baseline (same outputs, checked equal before timing is reported):
1. px -> cm and arena normalisation with numpy (the same arithmetic the library does);
2. a wide ``pd.DataFrame`` (frames, mice*kp*2) of the normalised coordinates:
   ``interpolate(limit_direction="both")`` + ``fillna(0)``, mask = ``notna()``;
3. a wide frame of the cm coordinates: ``diff() * fps`` (velocity), ``diff() * fps`` again
   (acceleration), magnitudes ``sqrt(dx^2 + dy^2)`` in numpy, first frame(s) repeated, NaN -> 0 and
   mask = finite;
4. with ``--pair``: the agent->target part distances by numpy broadcasting, centroid distance,
   heading cos/sin and approach speed (the numpy formulas of the library's ``pair_features``);
5. one ``np.concatenate`` of the blocks to (T, F) float32 and (T, F) bool.
Prints frames/s of both (best of ``--repeats``) and the ratio library/baseline time (goal <= 1.0).
Timings are indicative on a shared machine; both run in the same process, interleaved.
"""
from __future__ import annotations

import argparse
import time
import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd

from kagglekit.tasks.behavior.features import frame_features

PIX_PER_CM, FPS, ARENA_CM = 12.5, 30.0, (40.0, 40.0)
PARTS = [f"part{i:02d}" for i in range(18)]


def seconds(fn: Callable[[], Any]) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _gap_mask(rng: np.random.Generator, shape: tuple[int, int], fraction: float, mean_len: float) -> np.ndarray:
    """(T, N) bool: runs of True (geometric lengths) covering about ``fraction`` of each column."""
    t_len, n = shape
    n_runs = max(1, int(fraction * t_len / mean_len))
    mark = np.zeros((t_len + 1, n), np.int32)
    starts = rng.integers(0, t_len, (n_runs, n))
    stops = np.minimum(starts + rng.geometric(1 / mean_len, (n_runs, n)), t_len)
    cols = np.broadcast_to(np.arange(n), starts.shape)
    np.add.at(mark, (starts, cols), 1)
    np.add.at(mark, (stops, cols), -1)
    return np.cumsum(mark[:-1], axis=0) > 0


def synthetic_pose(n_frames: int, n_mice: int = 4, n_parts: int = 18, seed: int = 0) -> np.ndarray:
    """(T, M, K, 2) float32 pixels with ~5 % NaN keypoints in runs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    size = np.array(ARENA_CM) * PIX_PER_CM
    centre = size / 2 + np.cumsum(rng.normal(0, 2.0, (n_frames, n_mice, 2)), axis=0)
    centre = np.abs((centre % (2 * size)) - size)  # reflect the random walk into the arena
    offsets = rng.normal(0, 25.0, (n_mice, n_parts, 2))
    pose = (centre[:, :, None] + offsets + rng.normal(0, 1.5, (n_frames, n_mice, n_parts, 2))).astype(np.float32)
    part_gap = _gap_mask(rng, (n_frames, n_mice * n_parts), 0.035, 15).reshape(n_frames, n_mice, n_parts)
    mouse_gap = _gap_mask(rng, (n_frames, n_mice), 0.015, 40)
    gaps = part_gap | mouse_gap[:, :, None]
    gaps[:7, 0, -1] = gaps[-9:, -1, 0] = True  # gaps at both edges: first/last observation is held
    pose[gaps] = np.nan
    return pose


def library(pose: np.ndarray, pair: bool) -> tuple[np.ndarray, np.ndarray]:
    """The seed's mabe_v6 call (``BehaviorTask.features``); mabe_v6_pairs with ``pair``."""
    return frame_features(pose, PIX_PER_CM, FPS, motion=True, pair=(0, 1) if pair else None, max_mice=4,
                          body_parts=PARTS, vocabulary=PARTS, arena_cm=ARENA_CM)


def _magnitude(d: np.ndarray, pad: int) -> np.ndarray:
    """(T, 2N) interleaved x/y differences -> (T, N) |d|, first ``pad`` rows repeat row ``pad``."""
    out = np.sqrt(d[:, 0::2] ** 2 + d[:, 1::2] ** 2)
    out[:pad] = out[pad]
    return out


def _pair_block(cm: np.ndarray, agent: int, target: int) -> np.ndarray:
    """(T, K*K + 4): part distances, centroid distance, heading cos/sin, approach speed (NaN kept)."""
    a, b = cm[:, agent], cm[:, target]
    dists = np.sqrt(((a[:, :, None] - b[:, None]) ** 2).sum(-1)).reshape(len(cm), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        to_target = np.nanmean(b, axis=1) - np.nanmean(a, axis=1)
    dist = np.sqrt((to_target ** 2).sum(-1))
    body = a[:, 0] - a[:, 1]
    angle = np.arctan2(to_target[:, 1], to_target[:, 0]) - np.arctan2(body[:, 1], body[:, 0])
    bad = (np.hypot(body[:, 0], body[:, 1]) == 0) | (dist == 0)
    approach = np.empty_like(dist)
    approach[1:] = np.diff(dist) * FPS
    approach[0] = approach[1]
    extra = np.stack([dist, np.where(bad, np.nan, np.cos(angle)), np.where(bad, np.nan, np.sin(angle)), approach], 1)
    return np.concatenate([dists, extra], axis=1)


def baseline(pose: np.ndarray, pair: bool) -> tuple[np.ndarray, np.ndarray]:
    """Wide-pandas version of the same features (see the module docstring)."""
    t_len = len(pose)
    cm = pose / np.float32(PIX_PER_CM)
    coords = (cm - np.asarray(ARENA_CM, np.float32) / 2) / np.float32(max(ARENA_CM) / 2)
    wide = pd.DataFrame(coords.reshape(t_len, -1))
    blocks = [wide.interpolate(limit_direction="both").fillna(0.0).to_numpy(np.float32)]
    masks = [wide.notna().to_numpy()]
    vel = pd.DataFrame(cm.reshape(t_len, -1)).diff() * FPS
    acc = vel.diff() * FPS
    rest = [_magnitude(vel.to_numpy(), 1), _magnitude(acc.to_numpy(), 2)]
    if pair:
        rest.append(_pair_block(cm, 0, 1))
    for block in rest:
        ok = np.isfinite(block)
        blocks.append(np.where(ok, block, 0))
        masks.append(ok)
    return np.concatenate(blocks, axis=1).astype(np.float32), np.concatenate(masks, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pair", action="store_true", help="add agent->target pair features (mabe_v6_pairs)")
    args = parser.parse_args()
    pose = synthetic_pose(args.frames)
    ref_feat, ref_mask = baseline(pose, args.pair)
    feat, mask = library(pose, args.pair)
    assert feat.shape == ref_feat.shape and np.array_equal(mask, ref_mask), "masks differ from the baseline"
    err = float(np.max(np.abs(feat - ref_feat) / np.maximum(np.abs(ref_feat), 1.0)))
    assert err < 1e-4, f"features differ from the baseline: max scaled error {err:.2e}"
    times = {"library": [], "pandas": []}
    for _ in range(args.repeats):  # interleaved, so load spikes hit both alike
        times["library"].append(seconds(lambda: library(pose, args.pair)))
        times["pandas"].append(seconds(lambda: baseline(pose, args.pair)))
    t_lib, t_pd = min(times["library"]), min(times["pandas"])
    print(f"pose={pose.shape} missing={np.isnan(pose[..., 0]).mean():.1%} features={feat.shape} "
          f"pair={args.pair} max_scaled_diff_vs_baseline={err:.1e}")
    print(f"library={t_lib:.3f}s ({args.frames / t_lib:,.0f} frames/s)  "
          f"pandas={t_pd:.3f}s ({args.frames / t_pd:,.0f} frames/s)  best of {args.repeats}")
    print(f"features_vs_pandas: ratio={t_lib / t_pd:.2f} (library time / baseline time, goal <= 1.0)")


if __name__ == "__main__":
    main()
