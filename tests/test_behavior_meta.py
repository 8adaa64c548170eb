"""MABe metadata parsing on the real train.csv + the tracking/annotation readers on tiny tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from kagglekit.tasks.behavior.meta import (
    BehaviorDataError, frame_labels, load_metadata, parse_behaviors, parse_body_parts,
    read_annotation, read_tracking, tracking_array,
)


def test_real_train_csv_facts() -> None:
    meta = load_metadata(require_shared("mabe2025_meta") / "train.csv")
    assert len(meta) == 862 and meta["lab_id"].nunique() == 19
    assert meta["video_id"].dtype == np.int64 and meta["video_id"].is_unique
    actions = {b[2] for bs in meta["behaviors"] for b in bs}
    assert len(actions) == 37 and not any("'" in a for a in actions)
    empty = meta[meta["behaviors"].str.len() == 0]
    assert len(empty) == 15 and set(empty["lab_id"]) == {"SparklingTapir"}
    n_parts = meta["body_parts"].str.len()
    assert (n_parts.min(), n_parts.max()) == (4, 18)
    assert len({p for ps in meta["body_parts"] for p in ps}) == 25
    assert meta["frames_per_second"].min() == 10 and meta["frames_per_second"].max() == 120.02
    assert set(meta["n_mice"]) <= {2, 3, 4} and (meta["n_mice"] >= 2).all()
    sniff_videos = sum(any(b[2] == "sniff" for b in bs) for bs in meta["behaviors"])
    assert sniff_videos == 617  # README count; quotes stripped + duplicates merged


def test_parse_quirks() -> None:
    raw = '["\'mouse1\',\'mouse2\',\'sniff\'", "mouse1\',\'mouse2\',\'attack\'", "mouse1,mouse2,attack"]'
    assert parse_behaviors(raw) == [("mouse1", "mouse2", "sniff"), ("mouse1", "mouse2", "attack")]
    assert parse_behaviors(float("nan")) == [] and parse_behaviors("[]") == []
    assert parse_behaviors('["mouse2,self,rear"]') == [("mouse2", "self", "rear")]
    assert parse_body_parts('["nose", "neck"]') == ["nose", "neck"]
    with pytest.raises(BehaviorDataError, match="agent,target,action"):
        parse_behaviors('["mouse1,sniff"]')
    with pytest.raises(BehaviorDataError, match="JSON list"):
        parse_body_parts("[nose, neck")


def test_bad_metadata_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    pd.DataFrame({"lab_id": ["A", "A"], "video_id": [1, 2], "frames_per_second": [30, 30],
                  "body_parts_tracked": ['["nose"]', '["nose"]'],
                  "behaviors_labeled": ['["mouse1,mouse2,x"]', '["bad"]']}).to_csv(path, index=False)
    with pytest.raises(BehaviorDataError, match=r"train\.csv: line 3, column behaviors_labeled"):
        load_metadata(path)
    pd.DataFrame({"lab_id": ["A"], "video_id": [1]}).to_csv(path, index=False)
    with pytest.raises(BehaviorDataError, match="missing column"):
        load_metadata(path)


def test_tracking_array_and_labels(tmp_path: Path) -> None:
    track = pd.DataFrame({"video_frame": [0, 0, 2, 2], "mouse_id": [1, 2, 1, 3],
                          "bodypart": ["nose", "nose", "tail", "nose"],
                          "x": [1.0, 2.0, 3.0, 9.0], "y": [4.0, 5.0, np.nan, 9.0]})
    path = tmp_path / "t.parquet"
    track.to_parquet(path)
    arr = tracking_array(read_tracking(path), [1, 2], ["nose", "tail"])
    assert arr.shape == (3, 2, 2, 2) and arr.dtype == np.float32
    assert arr[0, 1, 0].tolist() == [2.0, 5.0] and arr[2, 0, 1, 0] == 3.0
    assert np.isnan(arr[1]).all() and np.isnan(arr[2, 0, 1, 1])
    with pytest.raises(BehaviorDataError, match="outside"):
        tracking_array(track, [1], ["nose", "tail"], n_frames=2)
    with pytest.raises(BehaviorDataError, match="duplicated"):
        tracking_array(pd.concat([track, track]), [1], ["nose"])
    ann = pd.DataFrame({"agent_id": [1, 1], "target_id": [1, 2], "action": ["rear", "sniff"],
                        "start_frame": [0, 2], "stop_frame": [2, 9]})
    labels = frame_labels(ann, 4, [(1, 2, "sniff"), (1, 1, "rear")])
    assert labels.dtype == np.uint8 and labels.T.tolist() == [[0, 0, 1, 1], [1, 1, 0, 0]]


def test_reader_schema_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pd.DataFrame({"agent_id": [1], "target_id": [2], "action": ["x"], "start_frame": [5],
                  "stop_frame": [5]}).to_parquet(path)
    with pytest.raises(BehaviorDataError, match=r"a\.parquet: row 0: stop_frame 5 <= start_frame 5"):
        read_annotation(path)
    pd.DataFrame({"video_frame": [0], "mouse_id": [1], "x": [1.0], "y": [1.0]}).to_parquet(path)
    with pytest.raises(BehaviorDataError, match=r"missing column\(s\) \['bodypart'\]"):
        read_tracking(path)
    pd.DataFrame({"video_frame": [-1], "mouse_id": [1], "bodypart": ["n"], "x": [1.0],
                  "y": [1.0]}).to_parquet(path)
    with pytest.raises(BehaviorDataError, match="column video_frame"):
        read_tracking(path)
