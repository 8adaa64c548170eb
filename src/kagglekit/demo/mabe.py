"""Synthetic mice in the MABe-2025 layout (see ``kagglekit.tasks.behavior.meta``), with behaviours
that are learnable from the poses.

Each video is a script of episodes played by a per-frame controller (positions in cm, then pixels):
- idle: every mouse wanders slowly (<= 3 cm/s) inside the arena;
- approach (a -> b): a walks toward b at 15 cm/s until the centres are < 7 cm apart (label ``approach``),
  then one of: ``sniff`` (a holds 5 cm from b, facing it), ``chase`` (b runs at 25 cm/s, a follows
  6 cm behind), ``mount`` (a's centre on b's centre, < MOUNT_CM; the label starts once that holds);
- ``rear`` (a, self): a stands still and its forward keypoints fold toward the centre (scale 0.55);
- ``selfgroom`` (a, self): a stands still, nose pulled in and oscillating sideways at 4 Hz.
Labels are written only for actions in that video's ``behaviors_labeled`` (some videos lack some
actions: absence = not annotated, as in MABe). Labs differ in body parts, fps and pix_per_cm. Some
keypoints are missing (absent rows) or NaN. Test videos get tracking only; sample_submission has one
row per test video.

CLI: ``python -m kagglekit.demo.mabe --out input/mabe [--n-videos 12 --n-frames 600]``.
"""
from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit.io import save_csv, write_bytes
from kagglekit.paths import input_root
from kagglekit.tasks.behavior.meta import META_COLUMNS, annotation_path, tracking_path

MOUNT_CM = 2.0      # centre distance during mount
SNIFF_CM = 5.0      # centre distance held while sniffing
APPROACH_STOP_CM = 7.0
# body-frame offsets (forward, left) in cm; forward > 0 parts fold during rear
PART_OFFSETS: dict[str, tuple[float, float]] = {
    "nose": (5.0, 0.0), "ear_left": (3.5, 1.2), "ear_right": (3.5, -1.2), "neck": (3.0, 0.0),
    "headpiece": (3.2, 0.0), "body_center": (0.0, 0.0), "lateral_left": (0.0, 1.8),
    "lateral_right": (0.0, -1.8), "hip_left": (-2.5, 1.5), "hip_right": (-2.5, -1.5),
    "tail_base": (-4.5, 0.0), "tail_midpoint": (-8.5, 0.0), "tail_tip": (-12.5, 0.0),
}
LABS = [  # name, fps, pix_per_cm, arena (w, h) cm, body parts, actions
    ("SyntheticOtter", 30.0, 10.0, (50.0, 40.0),
     ["body_center", "ear_left", "ear_right", "nose", "tail_base", "neck"],
     ["approach", "sniff", "chase", "mount", "rear", "selfgroom"]),
    ("SyntheticHeron", 25.0, 14.0, (60.0, 60.0),
     ["body_center", "hip_left", "hip_right", "lateral_left", "lateral_right", "nose",
      "tail_base", "tail_midpoint", "tail_tip", "headpiece"],
     ["approach", "sniff", "chase", "mount", "rear", "selfgroom"]),
    ("SyntheticLynx", 20.0, 8.0, (45.0, 45.0),
     ["body_center", "nose", "tail_base", "ear_left", "ear_right"],
     ["approach", "sniff", "mount", "selfgroom"]),
]
SOCIAL = ("sniff", "chase", "mount")
SOLO = ("rear", "selfgroom")


@dataclass
class _State:
    """Per-frame pose parameters of all mice, filled frame by frame: shapes (T, M, 2) / (T, M)."""
    c: np.ndarray
    th: np.ndarray
    scale: np.ndarray
    groom: np.ndarray


class _Sim:
    """Controller: one call of a ``_frame_*`` method advances every mouse by one frame."""

    def __init__(self, rng: np.random.Generator, n_frames: int, n_mice: int, fps: float,
                 arena: tuple[float, float]) -> None:
        self.rng, self.T, self.M, self.fps = rng, n_frames, n_mice, fps
        self.arena = np.asarray(arena)
        self.t = 0
        self.c = rng.uniform(8, self.arena - 8, size=(n_mice, 2))
        self.th = rng.uniform(-np.pi, np.pi, n_mice)
        self.s = _State(np.zeros((n_frames, n_mice, 2)), np.zeros((n_frames, n_mice)),
                        np.ones((n_frames, n_mice)), np.zeros((n_frames, n_mice), bool))

    def _move_to(self, m: int, goal: np.ndarray, speed_cm_s: float) -> None:
        v = goal - self.c[m]
        d = float(np.hypot(*v))
        step = min(speed_cm_s / self.fps, d)
        if step > 1e-6:
            self.c[m] = self.c[m] + v / d * step
            self.th[m] = np.arctan2(v[1], v[0])

    def _wander(self, m: int, speed_cm_s: float) -> None:
        self.th[m] += self.rng.normal(0, 0.2)
        ahead = self.c[m] + 4 * np.array([np.cos(self.th[m]), np.sin(self.th[m])])
        if np.any(ahead < 5) or np.any(ahead > self.arena - 5):  # turn back toward the middle
            mid = self.arena / 2 - self.c[m]
            self.th[m] = np.arctan2(mid[1], mid[0]) + self.rng.normal(0, 0.4)
        step = speed_cm_s / self.fps
        self.c[m] = np.clip(self.c[m] + step * np.array([np.cos(self.th[m]), np.sin(self.th[m])]),
                            3, self.arena - 3)

    def _commit(self, busy: tuple[int, ...] = (), scale: dict[int, float] | None = None,
                groom: tuple[int, ...] = ()) -> None:
        for m in range(self.M):
            if m not in busy:
                self._wander(m, self.rng.uniform(0.5, 3.0))
        t = self.t
        self.s.c[t], self.s.th[t] = self.c, self.th
        for m, value in (scale or {}).items():
            self.s.scale[t, m] = value
        for m in groom:
            self.s.groom[t, m] = True
        self.t += 1

    def dist(self, a: int, b: int) -> float:
        return float(np.hypot(*(self.c[a] - self.c[b])))


def _play_social(sim: _Sim, a: int, b: int, action: str, n_main: int) -> list[tuple[str, int, int]]:
    """Approach then the social action; returns [(action, start, stop)] (stop exclusive)."""
    bouts, start = [], sim.t
    while sim.t < sim.T and sim.dist(a, b) > APPROACH_STOP_CM and sim.t - start < 4 * sim.fps:
        sim._move_to(a, sim.c[b], 15.0)
        sim._wander(b, 1.0)
        sim._commit(busy=(a, b))
    if sim.t - start >= 3:
        bouts.append(("approach", start, sim.t))
    start, end = sim.t, min(sim.T, sim.t + n_main)
    label_from = None
    while sim.t < end:
        if action == "sniff":
            sim._wander(b, 1.0)
            away = (sim.c[a] - sim.c[b]) / max(sim.dist(a, b), 1e-6)
            sim._move_to(a, sim.c[b] + SNIFF_CM * away, 15.0)
            sim.th[a] = np.arctan2(*(sim.c[b] - sim.c[a])[::-1])
        elif action == "chase":
            sim._wander(b, 25.0)
            heading = np.array([np.cos(sim.th[b]), np.sin(sim.th[b])])
            sim._move_to(a, sim.c[b] - 6.0 * heading, 32.0)
        else:  # mount: b still, a climbs onto b and stays (small jitter)
            sim._move_to(a, sim.c[b] + sim.rng.normal(0, 0.2, 2), 12.0)
            sim.th[a] = sim.th[b]
            if label_from is None and sim.dist(a, b) < MOUNT_CM:
                label_from = sim.t
        sim._commit(busy=(a, b))
    first = start if action != "mount" else label_from
    if first is not None and end - first >= 2:
        bouts.append((action, first, end))
    return bouts


def _play_solo(sim: _Sim, a: int, action: str, n_main: int) -> list[tuple[str, int, int]]:
    start, end = sim.t, min(sim.T, sim.t + n_main)
    while sim.t < end:
        ramp = min(1.0, (sim.t - start + 1) / 5)
        if action == "rear":
            sim._commit(busy=(a,), scale={a: 1.0 - 0.45 * ramp})
        else:
            sim._commit(busy=(a,), groom=(a,))
    return [(action, start, end)] if end - start >= 2 else []


def _simulate(rng: np.random.Generator, n_frames: int, n_mice: int, fps: float,
              arena: tuple[float, float], actions: list[str]) -> tuple[_State, list[tuple]]:
    """Episodes until the video is full. Returns the pose state and bouts (agent, target, action,
    start, stop) with 1-based mouse ids (target == agent for solo actions)."""
    sim, bouts = _Sim(rng, n_frames, n_mice, fps, arena), []
    choices = [a for a in actions if a in SOCIAL + SOLO]
    while sim.t < sim.T:
        for _ in range(int(rng.integers(int(0.5 * fps), int(2 * fps)))):  # idle gap
            if sim.t < sim.T:
                sim._commit()
        if sim.t >= sim.T:
            break
        action = choices[int(rng.integers(len(choices)))]
        n_main = int(rng.integers(int(1.0 * fps), int(3.0 * fps)))
        a, b = (int(x) for x in rng.permutation(n_mice)[:2])
        played = (_play_social(sim, a, b, action, n_main) if action in SOCIAL
                  else _play_solo(sim, a, action, n_main))
        tgt = b if action in SOCIAL else a
        bouts += [(a + 1, (tgt if name != "approach" else b) + 1, name, s, e)
                  for name, s, e in played]
    return sim.s, bouts


def keypoints_cm(state: _State, parts: list[str], fps: float) -> np.ndarray:
    """(T, M, K, 2) keypoints in cm from centre, heading, fold scale and groom flag."""
    off = np.array([PART_OFFSETS[p] for p in parts])                     # (K, 2)
    T = state.c.shape[0]
    fwd = np.where(off[None, None, :, 0] > 0, off[None, None, :, 0] * state.scale[..., None],
                   off[None, None, :, 0])                                 # (T, M, K)
    lat = np.broadcast_to(off[None, None, :, 1], fwd.shape).copy()
    nose = [k for k, p in enumerate(parts) if p == "nose"]
    phase = np.sin(2 * np.pi * 4.0 * np.arange(T) / fps)[:, None]         # 4 Hz grooming stroke
    for k in nose:
        fwd[..., k] = np.where(state.groom, 1.5, fwd[..., k])
        lat[..., k] = np.where(state.groom, 1.5 * phase, lat[..., k])
    cos, sin = np.cos(state.th)[..., None], np.sin(state.th)[..., None]
    x = state.c[..., 0:1] + fwd * cos - lat * sin
    y = state.c[..., 1:2] + fwd * sin + lat * cos
    return np.stack([x, y], axis=-1)


def _tracking_frame(kp_px: np.ndarray, parts: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Long tracking table; ~3% rows absent, ~1% NaN, plus one 10-frame dropout per mouse."""
    T, M, K, _ = kp_px.shape
    f, m, k = (a.ravel() for a in np.meshgrid(np.arange(T), np.arange(M), np.arange(K), indexing="ij"))
    xy = kp_px.reshape(-1, 2).astype(np.float32).copy()
    nan = rng.random(len(f)) < 0.01
    xy[nan] = np.nan
    keep = rng.random(len(f)) >= 0.03
    for mouse in range(M):
        t0 = int(rng.integers(0, max(T - 10, 1)))
        keep &= ~((m == mouse) & (f >= t0) & (f < t0 + 10))
    return pd.DataFrame({"video_frame": f[keep].astype(np.int64), "mouse_id": (m[keep] + 1).astype(np.int64),
                         "bodypart": np.asarray(parts)[k[keep]], "x": xy[keep, 0], "y": xy[keep, 1]})


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _meta_row(lab: tuple, video_id: int, n_mice: int, n_frames: int, labeled: list[str]) -> dict:
    name, fps, ppc, arena, parts, _ = lab
    row: dict = {c: np.nan for c in META_COLUMNS}
    for k in range(1, n_mice + 1):
        row.update({f"mouse{k}_strain": "C57Bl/6J", f"mouse{k}_color": "black",
                    f"mouse{k}_sex": "male", f"mouse{k}_id": float(k)})
    row.update(lab_id=name, video_id=video_id, frames_per_second=fps,
               video_duration_sec=round(n_frames / fps, 3), pix_per_cm_approx=ppc,
               video_width_pix=int(arena[0] * ppc), video_height_pix=int(arena[1] * ppc),
               arena_width_cm=arena[0], arena_height_cm=arena[1], arena_shape="rectangular",
               arena_type="neutral", body_parts_tracked=json.dumps(sorted(parts)),
               behaviors_labeled=json.dumps(labeled), tracking_method="synthetic")
    return row


def _labeled(actions: list[str], n_mice: int, rng: np.random.Generator) -> list[str]:
    """behaviors_labeled for one video: each lab action kept with p = 0.75 (at least 2 kept)."""
    kept = [a for a in actions if rng.random() < 0.75]
    kept = kept if len(kept) >= 2 else actions[:2]
    out = []
    for a in range(1, n_mice + 1):
        for act in kept:
            targets = ["self"] if act in SOLO else [f"mouse{b}" for b in range(1, n_mice + 1) if b != a]
            out += [f"mouse{a},{t},{act}" for t in targets]
    return sorted(out)


def _one_video(root: Path, split: str, lab: tuple, video_id: int, n_frames: int,
               rng: np.random.Generator) -> dict:
    name, fps, ppc, arena, parts, actions = lab
    n_mice = int(rng.integers(2, 4))
    state, bouts = _simulate(rng, n_frames, n_mice, fps, arena, actions)
    kp = keypoints_cm(state, parts, fps) * ppc + rng.normal(0, 0.5, (n_frames, n_mice, len(parts), 2))
    write_bytes(tracking_path(root, split, name, video_id), _parquet(_tracking_frame(kp, parts, rng)))
    labeled = _labeled(actions, n_mice, rng)
    if split == "train":
        keys = set(labeled)
        rows = [(a, t, act, s, e) for a, t, act, s, e in bouts
                if f"mouse{a},{'self' if act in SOLO else f'mouse{t}'},{act}" in keys]
        ann = pd.DataFrame(rows, columns=["agent_id", "target_id", "action", "start_frame", "stop_frame"])
        write_bytes(annotation_path(root, name, video_id), _parquet(ann.astype(
            {"agent_id": "int64", "target_id": "int64", "start_frame": "int64", "stop_frame": "int64"})))
    return _meta_row(lab, video_id, n_mice, n_frames, labeled)


def generate_mabe(root: Path, n_videos: int = 12, n_frames: int = 600, labs: int = 2,
                  seed: int = 0) -> Path:
    """Write ``n_videos`` train videos + ``max(1, n_videos // 4)`` test videos (round-robin over
    ``labs`` <= 3 labs) in the MABe layout under ``root``; returns ``root``. Deterministic per seed."""
    if not 1 <= labs <= len(LABS):
        raise ValueError(f"labs must be in 1..{len(LABS)}, got {labs}")
    root, rng = Path(root), np.random.default_rng(seed)
    metas: dict[str, list[dict]] = {"train": [], "test": []}
    n_test = max(1, n_videos // 4)
    ids = rng.choice(90_000_000, size=n_videos + n_test, replace=False) + 10_000_000  # unique
    for i in range(n_videos + n_test):
        split = "train" if i < n_videos else "test"
        video_id = int(ids[i])
        metas[split].append(_one_video(root, split, LABS[i % labs], video_id, n_frames, rng))
    for split, rows in metas.items():
        save_csv(root / f"{split}.csv", pd.DataFrame(rows, columns=list(META_COLUMNS)))
    sub = [{"row_id": j, "video_id": r["video_id"], "agent_id": "mouse1", "target_id": "mouse2",
            "action": "sniff", "start_frame": 0, "stop_frame": 1} for j, r in enumerate(metas["test"])]
    save_csv(root / "sample_submission.csv", pd.DataFrame(sub))
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=input_root() / "mabe")
    parser.add_argument("--n-videos", type=int, default=12)
    parser.add_argument("--n-frames", type=int, default=600)
    parser.add_argument("--labs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(generate_mabe(args.out, args.n_videos, args.n_frames, args.labs, args.seed))


if __name__ == "__main__":
    main()
