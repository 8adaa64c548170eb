from __future__ import annotations

import numpy as np
import pytest

from kagglekit.tasks.behavior.features import (frame_features, interpolate_missing, map_to_vocabulary,
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
