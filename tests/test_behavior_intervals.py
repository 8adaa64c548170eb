"""Frame probabilities -> intervals -> submission rows (MABe post-processing)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kagglekit.metrics.mabe import mabe_score
from kagglekit.tasks.behavior.intervals import (
    SUBMISSION_COLUMNS,
    intervals_to_submission,
    probs_to_intervals,
    smooth_probs,
    tune_thresholds,
)

ACTIONS = ["attack", "mount", "rear"]


def test_smooth_probs_window_one_is_identity_and_centred_average():
    rng = np.random.default_rng(0)
    p = rng.random((50, 3))
    np.testing.assert_array_equal(smooth_probs(p, 1), p)
    out = smooth_probs(p, 5)
    assert out.shape == p.shape
    np.testing.assert_allclose(out[10], p[8:13].mean(axis=0))  # centred: t-2..t+2
    np.testing.assert_allclose(out[0], p[0:3].mean(axis=0))  # shrinking window at the start
    np.testing.assert_allclose(out[-1], p[-3:].mean(axis=0))
    np.testing.assert_allclose(smooth_probs(np.full((7, 2), 0.3), 4), 0.3)  # constants stay constant
    spike = np.zeros((9, 1))
    spike[4] = 1.0
    np.testing.assert_allclose(smooth_probs(spike, 3)[:, 0], [0, 0, 0, 1 / 3, 1 / 3, 1 / 3, 0, 0, 0])


def test_smooth_probs_bad_window():
    with pytest.raises(ValueError, match="window"):
        smooth_probs(np.zeros((3, 2)), 0)
    with pytest.raises(ValueError, match=r"\(T, A\)"):
        smooth_probs(np.zeros(3), 3)


def test_probs_to_intervals_best_action_per_frame():
    p = np.zeros((10, 3))
    p[0:4, 0] = 0.9     # attack 0..3
    p[3:7, 1] = 0.95    # mount 3..6 wins frame 3 (higher prob)
    p[8:10, 2] = 0.4    # rear below its threshold 0.5
    out = probs_to_intervals(p, ACTIONS, {"attack": 0.5, "mount": 0.5, "rear": 0.5})
    assert out == [("attack", 0, 3), ("mount", 3, 7)]
    assert probs_to_intervals(p, ACTIONS, {"attack": 0.5, "mount": 0.5, "rear": 0.3})[-1] == ("rear", 8, 10)


def test_probs_to_intervals_threshold_beats_argmax():
    # mount has the highest probability but is under its threshold: attack (over its own) is chosen.
    p = np.array([[0.4, 0.6, 0.0]] * 3)
    assert probs_to_intervals(p, ACTIONS, np.array([0.3, 0.7, 0.5])) == [("attack", 0, 3)]


def test_probs_to_intervals_allowed_and_min_duration():
    p = np.zeros((12, 3))
    p[0:5, 1] = 0.9
    p[0:5, 0] = 0.6
    p[6:8, 2] = 0.9      # short run of 2 frames
    p[9:12, 2] = 0.9
    out = probs_to_intervals(p, ACTIONS, 0.5, allowed=[True, False, True], min_duration=3)
    assert out == [("attack", 0, 5), ("rear", 9, 12)]
    assert probs_to_intervals(p, ACTIONS, 0.5, allowed=[True, False, True]) == [
        ("attack", 0, 5), ("rear", 6, 8), ("rear", 9, 12)]


def test_probs_to_intervals_bad_input():
    p = np.zeros((4, 3))
    with pytest.raises(ValueError, match="mount"):
        probs_to_intervals(p, ACTIONS, {"attack": 0.5, "rear": 0.5})
    with pytest.raises(ValueError, match="3 columns but 2 actions"):
        probs_to_intervals(p, ACTIONS[:2], 0.5)
    with pytest.raises(ValueError, match="allowed"):
        probs_to_intervals(p, ACTIONS, 0.5, allowed=[True])
    assert probs_to_intervals(np.zeros((0, 3)), ACTIONS, 0.5) == []


def test_tune_thresholds_separable_and_missing_labels():
    rng = np.random.default_rng(1)
    probs_list, labels_list = [], []
    for _ in range(3):
        y = (rng.random((200, 3)) < 0.3).astype(int)
        p = np.where(y == 1, 0.6 + 0.3 * rng.random(y.shape), 0.5 * rng.random(y.shape))
        y[:, 2] = -1  # rear never labelled
        probs_list.append(p)
        labels_list.append(y)
    grid = np.linspace(0.05, 0.95, 19)
    th = tune_thresholds(probs_list, labels_list, ACTIONS, grid, default=0.42)
    assert set(th) == set(ACTIONS)
    assert 0.49 < th["attack"] <= 0.6 and 0.49 < th["mount"] <= 0.6  # only ~(0.5, 0.6] separates
    assert th["rear"] == 0.42
    with pytest.raises(ValueError, match="sequence 0"):
        tune_thresholds([np.zeros((4, 3))], [np.zeros((5, 3))], ACTIONS)


def test_intervals_to_submission_and_roundtrip_metric():
    rows = [{"video_id": 7, "agent_id": "mouse1", "target_id": "mouse2", "action": a, "start_frame": s,
             "stop_frame": e} for a, s, e in [("attack", 0, 3), ("mount", 3, 7)]]
    sub = intervals_to_submission(rows)
    assert list(sub.columns) == SUBMISSION_COLUMNS
    assert sub["row_id"].tolist() == [0, 1]
    sol = pd.DataFrame(rows).assign(lab_id="L", behaviors_labeled='["mouse1,mouse2,attack", "mouse1,mouse2,mount"]')
    assert mabe_score(sol, sub) == 1.0
    empty = intervals_to_submission([])
    assert list(empty.columns) == SUBMISSION_COLUMNS and len(empty) == 0
    with pytest.raises(ValueError, match="row 0 lacks"):
        intervals_to_submission([{"video_id": 1}])


def test_pipeline_recovers_intervals_from_noisy_probs():
    rng = np.random.default_rng(3)
    truth = np.full(300, -1)
    truth[20:80], truth[120:200], truth[230:260] = 0, 1, 0
    p = 0.25 * rng.random((300, 3))
    for j in range(2):
        p[truth == j, j] = 0.55 + 0.4 * rng.random((truth == j).sum())
    p += 0.2 * (rng.random(p.shape) < 0.05)  # isolated spikes
    out = probs_to_intervals(smooth_probs(p, 5), ACTIONS, 0.45, min_duration=5)
    expected = [("attack", 20, 80), ("mount", 120, 200), ("attack", 230, 260)]
    assert [a for a, _, _ in out] == [a for a, _, _ in expected]  # spikes removed, no gaps
    got = np.array([(s, e) for _, s, e in out])
    assert np.abs(got - np.array([(s, e) for _, s, e in expected])).max() <= 2  # edges blur by <= window/2
