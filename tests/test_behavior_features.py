from __future__ import annotations

import warnings

import numpy as np
import pytest

from kagglekit.tasks.behavior.features import (_centroid, frame_features, interpolate_missing, map_to_vocabulary,
                                               motion_features, normalise_pose, pair_features)
from kagglekit.tasks.behavior.groups import ACTION_GROUP, group_frames

MABE_ACTIONS = ("sniff attack sniffgenital mount approach rear escape chase selfgroom sniffbody sniffface intromit "
                "dominancemount dig defend attemptmount allogroom follow dominancegroom reciprocalsniff climb "
                "disengage submit chaseattack avoid genitalgroom rest run exploreobject tussle biteobject flinch "
                "huddle freeze shepherd dominance ejaculate").split()
RAT_ACTIONS = "social nonsocial aggression lateralthreat keepdown clinch uprightposture freezing bite chase".split()


def random_pose(t=30, m=4, k=18, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 500, size=(t, m, k, 2)).astype(np.float32)


def test_normalise_pose_cm_and_arena():
    pose = np.array([[[[100.0, 50.0]]]], dtype=np.float32)
    assert np.allclose(normalise_pose(pose, 10.0), [[[[10.0, 5.0]]]])
    # arena 40 × 20 cm: centre (20, 10), scale 20 → (10-20)/20, (5-10)/20
    assert np.allclose(normalise_pose(pose, 10.0, (40.0, 20.0)), [[[[-0.5, -0.25]]]])
    with pytest.raises(ValueError):
        normalise_pose(pose, 0.0)


def test_interpolate_linear_edges_and_all_missing():
    pose = np.full((6, 1, 2, 2), np.nan, dtype=np.float32)
    pose[1, 0, 0] = [1.0, 10.0]
    pose[4, 0, 0] = [4.0, 40.0]
    pose[2, 0, 0, 0] = 99.0  # only x observed → the keypoint counts as missing
    filled, observed = interpolate_missing(pose)
    assert np.allclose(filled[:, 0, 0, 0], [1, 1, 2, 3, 4, 4])  # edge-hold, then linear
    assert np.allclose(filled[:, 0, 0, 1], [10, 10, 20, 30, 40, 40])
    assert observed[:, 0, 0].tolist() == [False, True, False, False, True, False]
    assert np.all(filled[:, 0, 1] == 0) and not observed[:, 0, 1].any()


def test_motion_speed_accel_known_trajectory():
    fps = 30.0
    t = np.arange(8, dtype=np.float32) / fps
    pose = np.zeros((8, 1, 1, 2), dtype=np.float32)
    pose[:, 0, 0, 0] = 3.0 * t ** 2  # x = 3 t² → v = 6 t, a = 6 cm/s²
    pose[:, 0, 0, 1] = 4.0 * t       # y = 4 t → constant 4 cm/s
    speed, accel = motion_features(pose, fps)
    vx = (pose[1:, 0, 0, 0] - pose[:-1, 0, 0, 0]) * fps
    assert np.allclose(speed[1:, 0, 0], np.hypot(vx, 4.0), rtol=1e-5)
    assert speed[0, 0, 0] == speed[1, 0, 0]
    assert np.allclose(accel[2:, 0, 0], 6.0, rtol=1e-3)
    assert np.allclose(accel[:2, 0, 0], accel[2, 0, 0])


def test_motion_masked_where_a_frame_is_missing():
    pose = random_pose(t=10, m=1, k=2)
    pose[5, 0, 0] = np.nan
    speed, accel = motion_features(pose, 30.0)
    assert np.isnan(speed[[5, 6], 0, 0]).all() and np.isfinite(np.delete(speed[:, 0, 0], [5, 6])).all()
    assert np.isnan(accel[[5, 6, 7], 0, 0]).all() and np.isfinite(accel[:, 0, 1]).all()


def test_pair_features_geometry():
    pose = np.zeros((3, 2, 2, 2), dtype=np.float32)
    pose[:, 0, 0] = [1.0, 0.0]  # agent nose at (1,0), tail at (0,0): axis points +x
    pose[:, 1, 0] = [0.0, 5.0]  # target straight "left" of the agent's heading (+y)
    pose[:, 1, 1] = [0.0, 7.0]
    pose[1:, 1] += [0.0, 3.0]   # target moves away by 3 cm between frames 0 and 1
    feats = pair_features(pose, 0, 1, fps=10.0)
    assert feats.shape == (3, 2 * 2 + 4)
    assert np.isclose(feats[0, 0], np.hypot(1.0, 5.0))       # |agent0 - target0|
    assert np.isclose(feats[0, 3], 7.0)                       # |agent1 - target1|
    cd = np.hypot(0.5, 6.0)
    assert np.isclose(feats[0, 4], cd, rtol=1e-5)
    angle = np.arctan2(6.0, -0.5)                             # heading is +x, so angle = atan2 of to-target
    assert np.allclose(feats[0, 5:7], [np.cos(angle), np.sin(angle)], atol=1e-5)
    assert np.isclose(feats[1, 7], (np.hypot(0.5, 9.0) - cd) * 10.0, rtol=1e-4)
    assert feats[0, 7] == feats[1, 7] and np.isclose(feats[2, 7], 0.0, atol=1e-4)


def test_frame_features_widths_v5_v6():
    pose = random_pose()
    v5, m5 = frame_features(pose, 10.0, 30.0, motion=False)
    v6, m6 = frame_features(pose, 10.0, 30.0, motion=True)
    assert v5.shape == m5.shape == (30, 144) and v6.shape == m6.shape == (30, 288)
    assert v5.dtype == np.float32 and m6.all()
    assert np.allclose(v6[:, :144], v5) and np.allclose(v5[0, :2], pose[0, 0, 0] / 10.0)
    vp, _ = frame_features(pose, 10.0, 30.0, motion=True, pair=(0, 1))
    assert vp.shape == (30, 288 + 18 * 18 + 4)


def test_frame_features_pads_mice_and_vocabulary_with_mask():
    vocab = ["nose", "ear_left", "ear_right", "tail_base"]
    pose = random_pose(t=12, m=2, k=3)
    pose[4, 1, 0] = np.nan
    feats, mask = frame_features(pose, 10.0, 30.0, motion=True, max_mice=3,
                                 body_parts=["tail_base", "nose", "paw"], vocabulary=vocab)
    assert feats.shape == (12, 3 * 4 * 2 + 2 * 3 * 4)
    coords, cmask = feats[:, :24].reshape(12, 3, 4, 2), mask[:, :24].reshape(12, 3, 4, 2)
    assert np.allclose(coords[:, 0, 0], pose[:, 0, 1] / 10) and np.allclose(coords[:, 0, 3], pose[:, 0, 0] / 10)
    assert not cmask[:, :, 1:3].any() and np.all(coords[:, :, 1:3] == 0)  # ears absent
    assert not cmask[:, 2].any() and np.all(coords[:, 2] == 0)            # third mouse absent
    assert not cmask[4, 1, 3].any() and cmask[3, 1, 3].all()              # missing tail_base of mouse 1
    assert np.allclose(coords[4, 1, 3], (pose[3, 1, 0] + pose[5, 1, 0]) / 20)  # interpolated
    speed_mask = mask[:, 24:36].reshape(12, 3, 4)
    assert not speed_mask[[4, 5], 1, 3].any() and speed_mask[6, 1, 3]
    # interpolated coordinates are the only masked entries allowed to be non-zero
    assert np.all(feats[:, 24:][~mask[:, 24:]] == 0) and np.isfinite(feats).all()


def test_map_to_vocabulary_rejects_too_many_mice():
    with pytest.raises(ValueError):
        map_to_vocabulary(random_pose(t=2, m=5, k=2), None, None, max_mice=4)


def test_every_action_has_a_group():
    for name in MABE_ACTIONS + RAT_ACTIONS:
        assert name in ACTION_GROUP, name
    assert len(MABE_ACTIONS) == 37
    assert {ACTION_GROUP[a] for a in ("mount", "intromit", "ejaculate", "attemptmount")} == {2}
    assert {ACTION_GROUP[a] for a in ("attack", "chase", "bite", "tussle")} == {3}
    assert ACTION_GROUP["sniff"] == 1 and ACTION_GROUP["rear"] == 0


def test_group_frames_priority():
    keys = ["sniff", "mount", "attack", "rear"]
    labels = np.array([[0, 0, 0, 0], [1, 0, 0, 1], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]], dtype=np.uint8)
    assert group_frames(labels, keys).tolist() == [0, 1, 2, 3, 0]
    assert group_frames(labels, keys).dtype == np.int64
    with pytest.raises(KeyError):
        group_frames(labels[:, :1], ["moonwalk"])


# --- frozen copy of the pre-speed-up implementation (features.py before bench/bench_features.py) ---
# The library now fills preallocated (T, F) outputs block by block and interpolates all tracks at
# once; these are the straightforward per-function versions it must keep matching.

def old_interpolate_missing(pose):
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


def old_time_derivative(x, fps, order_pad):
    d = np.empty_like(x)
    d[1:] = (x[1:] - x[:-1]) * np.float32(fps)
    d[:order_pad] = d[order_pad]
    return d


def old_motion_features(pose_cm, fps):
    pose_cm = np.asarray(pose_cm, dtype=np.float32)
    nan = np.full(pose_cm.shape[:-1], np.nan, dtype=np.float32)
    if pose_cm.shape[0] < 2:
        return nan, nan.copy()
    vel = old_time_derivative(pose_cm, fps, 1)
    speed = np.linalg.norm(vel, axis=-1)
    if pose_cm.shape[0] < 3:
        return speed, nan
    acc = np.empty_like(vel)
    acc[2:] = (vel[2:] - vel[1:-1]) * np.float32(fps)
    acc[:2] = acc[2]
    return speed, np.linalg.norm(acc, axis=-1)


def old_pair_features(pose_cm, agent, target, fps, axis=(0, 1)):
    pose_cm = np.asarray(pose_cm, dtype=np.float32)
    a, b = pose_cm[:, agent], pose_cm[:, target]
    t_len, k = a.shape[:2]
    dists = np.linalg.norm(a[:, :, None, :] - b[:, None, :, :], axis=-1).reshape(t_len, k * k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        ca, cb = np.nanmean(a, axis=1), np.nanmean(b, axis=1)
    to_target = cb - ca
    centroid_dist = np.linalg.norm(to_target, axis=-1)
    body = a[:, axis[0]] - a[:, axis[1]]
    angle = np.arctan2(to_target[:, 1], to_target[:, 0]) - np.arctan2(body[:, 1], body[:, 0])
    degenerate = (np.linalg.norm(body, axis=-1) == 0) | (centroid_dist == 0)
    cos, sin = np.where(degenerate, np.nan, np.cos(angle)), np.where(degenerate, np.nan, np.sin(angle))
    approach = old_time_derivative(centroid_dist, fps, 1) if t_len >= 2 else np.full(t_len, np.nan, np.float32)
    extra = np.stack([centroid_dist, cos, sin, approach], axis=1)
    return np.concatenate([dists, extra], axis=1).astype(np.float32)


def old_map_to_vocabulary(pose, body_parts, vocabulary, max_mice):
    t_len, m, k, _ = pose.shape
    if vocabulary is None:
        out = np.full((t_len, max_mice, k, 2), np.nan, dtype=np.float32)
        out[:, :m] = pose
        return out
    out = np.full((t_len, max_mice, len(vocabulary), 2), np.nan, dtype=np.float32)
    slot = {name: i for i, name in enumerate(vocabulary)}
    for j, name in enumerate(body_parts):
        if name in slot:
            out[:, :m, slot[name]] = pose[:, :, j]
    return out


def old_finite_block(values, t_len):
    flat = values.reshape(t_len, -1)
    ok = np.isfinite(flat)
    return np.where(ok, flat, 0.0).astype(np.float32), ok


def old_frame_features(pose, pix_per_cm, fps, *, motion, pair=None, max_mice=4, body_parts=None,
                       vocabulary=None, arena_cm=None, interpolate=True):
    t_len = pose.shape[0]
    raw = old_map_to_vocabulary(np.asarray(pose, dtype=np.float32) / np.float32(pix_per_cm), body_parts, vocabulary,
                                max_mice)
    coords = raw
    if arena_cm is not None:
        coords = (raw - np.asarray(arena_cm, dtype=np.float32) / 2) / np.float32(max(arena_cm) / 2)
    if interpolate:
        filled, observed = old_interpolate_missing(coords)
        blocks = [(filled.reshape(t_len, -1), np.repeat(observed.reshape(t_len, -1), 2, axis=1))]
    else:
        blocks = [old_finite_block(coords, t_len)]
    if motion:
        speed, accel = old_motion_features(raw, fps)
        blocks += [old_finite_block(speed, t_len), old_finite_block(accel, t_len)]
    if pair is not None:
        blocks.append(old_finite_block(old_pair_features(raw, pair[0], pair[1], fps), t_len))
    return (np.concatenate([b[0] for b in blocks], axis=1).astype(np.float32),
            np.concatenate([b[1] for b in blocks], axis=1))


def gappy_pose(t, m, k, seed) -> np.ndarray:
    """Random-walk pose (pixels) with NaN runs, partial (x-only) keypoints and gaps at both edges."""
    rng = np.random.default_rng(seed)
    pose = (250 + np.cumsum(rng.normal(0, 3, (t, m, k, 2)), axis=0)).astype(np.float32)
    for _ in range(max(1, t * m * k // 40)):
        s = int(rng.integers(0, t))
        pose[s:s + int(rng.integers(1, 12)), rng.integers(0, m), rng.integers(0, k)] = np.nan
    pose[rng.random((t, m, k)) < 0.03] = np.nan
    pose[rng.random((t, m, k)) < 0.01, 0] = np.nan  # y observed, x missing: the keypoint is missing
    if t > 12:
        pose[:5, 0, 0] = pose[-4:, m - 1, k - 1] = np.nan  # first / last observation held
        pose[:, 0, 1 % k] = np.nan                           # a track never observed → 0
        pose[7:9, m - 1] = np.nan                            # a whole mouse lost for 2 frames
    return pose


FRAME_CONFIGS = [
    {"motion": False},
    {"motion": True},
    {"motion": True, "pair": (0, 1)},
    {"motion": True, "pair": (2, 1), "interpolate": False, "max_mice": 3},
    {"motion": True, "pair": (1, 0), "arena_cm": (40.0, 30.0), "max_mice": 4,
     "body_parts": ["nose", "ear", "tail", "paw", "neck"], "vocabulary": ["tail", "hip", "nose", "neck", "ear", "x"]},
    {"motion": True, "arena_cm": (42.0, 42.0), "max_mice": 3},
]


def assert_same_features(new, old, n_exact: int) -> None:
    """Masks equal; the first ``n_exact`` columns (coords, speed, accel: +, -, ×, /, sqrt only,
    correctly rounded) bit-identical; the pair block within float32 rounding (cos/sin/arctan2 may
    take a SIMD path on other CPUs). Today every column is bit-identical here."""
    assert new[0].shape == old[0].shape and new[0].dtype == np.float32
    np.testing.assert_array_equal(new[1], old[1])
    np.testing.assert_array_equal(new[0][:, :n_exact], old[0][:, :n_exact])
    np.testing.assert_allclose(new[0], old[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunk", [3, 7, 2048])
@pytest.mark.parametrize("t", [1, 2, 3, 4, 40, 301])
@pytest.mark.parametrize("cfg", range(len(FRAME_CONFIGS)))
def test_frame_features_matches_frozen_implementation(monkeypatch, chunk, t, cfg):
    import kagglekit.tasks.behavior.features as features_module
    monkeypatch.setattr(features_module, "_CHUNK", chunk)  # many block boundaries, through gaps too
    kw = FRAME_CONFIGS[cfg]
    m = 3 if kw.get("max_mice", 4) == 3 else 4 if "body_parts" not in kw else 2
    pose = gappy_pose(t, m, 5, seed=t + cfg)
    v = len(kw.get("vocabulary", range(5)))
    n_exact = kw.get("max_mice", 4) * v * (4 if kw["motion"] else 2)
    assert_same_features(frame_features(pose, 7.3, 30.0, **kw), old_frame_features(pose, 7.3, 30.0, **kw), n_exact)


def test_frame_features_matches_frozen_on_a_long_v6_video():
    pose = gappy_pose(5000, 4, 18, seed=11)  # > _CHUNK frames: several blocks at the default size
    names = [f"p{i}" for i in range(18)]
    kw = {"motion": True, "body_parts": names, "vocabulary": names, "arena_cm": (40.0, 40.0)}
    assert_same_features(frame_features(pose, 12.5, 30.0, **kw), old_frame_features(pose, 12.5, 30.0, **kw), 288)
    kw["pair"] = (1, 3)
    assert_same_features(frame_features(pose, 12.5, 30.0, **kw), old_frame_features(pose, 12.5, 30.0, **kw), 288)


def test_parts_match_frozen_and_nanmean():
    pose = gappy_pose(64, 3, 6, seed=5) / np.float32(9.0)
    filled, observed = interpolate_missing(pose)
    ref_filled, ref_observed = old_interpolate_missing(pose)
    assert np.array_equal(filled, ref_filled) and np.array_equal(observed, ref_observed)
    parts, vocab = ["a", "b", "c", "d", "e", "f"], ["c", "z", "a", "f"]
    for max_mice, names, v in [(3, None, None), (5, parts, vocab), (4, parts, parts)]:
        np.testing.assert_array_equal(map_to_vocabulary(pose, names, v, max_mice),
                                      old_map_to_vocabulary(pose, names, v, max_mice))
    for new, old in zip(motion_features(pose, 25.0), old_motion_features(pose, 25.0)):
        np.testing.assert_array_equal(new, old)
    np.testing.assert_allclose(pair_features(pose, 2, 0, 25.0), old_pair_features(pose, 2, 0, 25.0),
                               rtol=1e-6, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        np.testing.assert_array_equal(_centroid(pose[:, 1]), np.nanmean(pose[:, 1], axis=1))  # NaN rows too


def test_frame_features_empty_video():
    feats, mask = frame_features(np.zeros((0, 2, 3, 2), np.float32), 10.0, 30.0, motion=True, pair=(0, 1))
    assert feats.shape == mask.shape == (0, 4 * 3 * 4 + 3 * 3 + 4)
