"""Synthetic MABe generator: valid layout (read back with our own readers), determinism, and labels
that follow the motion rules the module docstring promises."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kagglekit.demo.mabe import APPROACH_STOP_CM, MOUNT_CM, SNIFF_CM, generate_mabe
from kagglekit.tasks.behavior.meta import (
    META_COLUMNS, annotation_path, behavior_keys, frame_labels, load_metadata, read_annotation,
    read_tracking, tracking_array, tracking_path,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    start = time.perf_counter()
    root = generate_mabe(tmp_path_factory.mktemp("mabe"), n_videos=8, n_frames=500, labs=2, seed=3)
    assert time.perf_counter() - start < 5.0
    return root


def _video(root: Path, row: pd.Series) -> tuple[np.ndarray, pd.DataFrame]:
    track = read_tracking(tracking_path(root, "train", row.lab_id, row.video_id))
    arr = tracking_array(track, list(range(1, row.n_mice + 1)), row.body_parts, 500)
    arr = arr / row.pix_per_cm_approx                                   # -> cm
    return arr, read_annotation(annotation_path(root, row.lab_id, row.video_id))


def _centre(arr: np.ndarray, parts: list[str], m: int) -> np.ndarray:
    c = arr[:, m - 1, parts.index("body_center")]
    return pd.DataFrame(c).interpolate(limit_direction="both").to_numpy()  # fill missing keypoints


def test_layout_valid(demo: Path) -> None:
    train, test = load_metadata(demo / "train.csv"), load_metadata(demo / "test.csv")
    assert list(pd.read_csv(demo / "train.csv").columns) == list(META_COLUMNS)
    assert len(train) == 8 and len(test) == 2 and train["lab_id"].nunique() == 2
    assert train.groupby("lab_id")["body_parts"].apply(lambda s: len(s.iloc[0])).nunique() == 2
    assert set(train["n_mice"]) <= {2, 3} and train["frames_per_second"].nunique() == 2
    sub = pd.read_csv(demo / "sample_submission.csv")
    assert list(sub.columns) == ["row_id", "video_id", "agent_id", "target_id", "action",
                                 "start_frame", "stop_frame"]
    assert set(sub["video_id"]) == set(test["video_id"])
    assert not (demo / "test_annotation").exists()
    missing = []
    for row in train.itertuples():
        arr, ann = _video(demo, row)
        missing.append(np.isnan(arr).any(axis=-1).mean())
        keys = set(behavior_keys(row.behaviors))   # every bout is a labelled key of its video
        assert set(zip(ann.agent_id, ann.target_id, ann.action)) <= keys
        assert (ann["stop_frame"] <= 500).all()
    assert 0.02 < float(np.mean(missing)) < 0.15
    assert any(len(r) < max(len(x) for x in train["behaviors"]) for r in train["behaviors"])


def test_deterministic(tmp_path: Path) -> None:
    a = generate_mabe(tmp_path / "a", n_videos=3, n_frames=200, seed=7)
    b = generate_mabe(tmp_path / "b", n_videos=3, n_frames=200, seed=7)
    c = generate_mabe(tmp_path / "c", n_videos=3, n_frames=200, seed=8)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        if rel.suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(a / rel), pd.read_parquet(b / rel))
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert (a / "train.csv").read_bytes() != (c / "train.csv").read_bytes()


def test_labels_follow_motion_rules(demo: Path) -> None:
    checked: dict[str, int] = {}
    for row in load_metadata(demo / "train.csv").itertuples():
        arr, ann = _video(demo, row)
        fps, parts = row.frames_per_second, row.body_parts
        for b in ann.itertuples():
            ca, ct = _centre(arr, parts, b.agent_id), _centre(arr, parts, b.target_id)
            sl = slice(b.start_frame, b.stop_frame)
            dist = np.hypot(*(ca - ct).T)[sl]
            speed = lambda c: np.hypot(*np.diff(c[sl], axis=0).T) * fps   # cm/s
            if b.action == "mount":
                assert np.max(dist) < MOUNT_CM + 0.5  # every labelled frame, not just most
            elif b.action == "sniff":
                assert abs(np.median(dist) - SNIFF_CM) < 2.0
            elif b.action == "approach":
                assert dist[-1] < dist[0] and dist[-1] < APPROACH_STOP_CM + 2.0
            elif b.action == "chase":
                assert np.median(speed(ca)) > 12 and np.median(speed(ct)) > 12
                assert np.median(dist) < 12
            elif b.action in ("rear", "selfgroom"):
                assert b.target_id == b.agent_id and np.median(speed(ca)) < 3
            checked[b.action] = checked.get(b.action, 0) + 1
    assert set(checked) >= {"approach", "sniff", "mount", "selfgroom"}, checked


def test_solo_actions_leave_keypoint_signature(demo: Path) -> None:
    """rear folds the nose toward the centre; selfgroom makes the nose swing sideways."""
    for row in load_metadata(demo / "train.csv").itertuples():
        arr, ann = _video(demo, row)
        nose_len = np.hypot(*(arr[:, :, row.body_parts.index("nose")]
                              - arr[:, :, row.body_parts.index("body_center")]).transpose(2, 0, 1))
        keys = [(m, m, a) for m in range(1, row.n_mice + 1) for a in ("rear", "selfgroom")]
        labels = frame_labels(ann, 500, keys)
        for j, (m, _, action) in enumerate(keys):
            on = labels[:, j].astype(bool)
            quiet = ~labels[:, 2 * (m - 1)].astype(bool) & ~labels[:, 2 * (m - 1) + 1].astype(bool)
            if on.sum() > 10:
                assert np.nanmedian(nose_len[on, m - 1]) < 0.7 * np.nanmedian(nose_len[quiet, m - 1])
