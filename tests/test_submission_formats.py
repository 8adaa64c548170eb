"""The per-image submission formats added with the Task contract: box and keypoint
``image_id,PredictionString`` writers round-trip COCO results, and their validators name every
problem (token count, class, score range, box order, ids) on a file with several at once."""
from __future__ import annotations

import pandas as pd
import pytest

from kagglekit.submission.boxes import box_submission_problems, boxes_frame, write_box_submission
from kagglekit.submission.rle import SubmissionError
from kagglekit.tasks.keypoints.lifecycle import keypoint_submission_problems, keypoints_frame

IMAGES = [{"id": 1, "file_name": "a/img_01.jpg"}, {"id": 2, "file_name": "img_02.png"}, {"id": 3, "file_name": "img_03.jpg"}]
BOXES = [{"image_id": 1, "category_id": 7, "score": 0.25, "bbox": [10, 20, 30, 40]},
         {"image_id": 1, "category_id": 3, "score": 0.9, "bbox": [0.5, 1.5, 2, 3]},
         {"image_id": 2, "category_id": 7, "score": 0.5, "bbox": [5, 5, 1, 1]}]


def test_boxes_frame_orders_by_score_and_converts_to_corners():
    frame = boxes_frame(BOXES, IMAGES)
    assert frame["image_id"].tolist() == ["img_01", "img_02", "img_03"]
    assert frame["PredictionString"].tolist() == ["3 0.90000 0.5 1.5 2.5 4.5 7 0.25000 10.0 20.0 40.0 60.0",
                                                  "7 0.50000 5.0 5.0 6.0 6.0", ""]
    assert box_submission_problems(frame, ["img_01", "img_02", "img_03"], [3, 7]) == []


def test_box_validator_lists_every_problem(tmp_path):
    frame = pd.DataFrame({"image_id": ["img_01", "img_01", "zzz"],
                          "PredictionString": ["3 0.9 0 0 1", "9 0.5 0 0 1 1 3 1.5 0 0 1 1", "7 0.5 5 5 4 6"]})
    problems = box_submission_problems(frame, ["img_01", "img_02"], [3, 7])
    text = "\n".join(problems)
    for needle in ("1 duplicated image_id", "test image_id(s) missing, e.g. ['img_02']", "not in the test set, e.g. ['zzz']",
                   "row 1: 5 tokens", "row 2 box 1: class 9", "row 2 box 2: score 1.5", "row 3 box 1: x_max/y_max"):
        assert needle in text, needle
    with pytest.raises(SubmissionError):
        write_box_submission([{**BOXES[0], "category_id": 99}], IMAGES, [3, 7], tmp_path / "sub.csv")
    assert not (tmp_path / "sub.csv").exists()  # nothing is written when a problem is found


def test_keypoint_rows_and_validator():
    results = [{"image_id": 2, "score": 0.8, "keypoints": [1, 2, 1, 3, 4, 1]}]
    frame = keypoints_frame(results, IMAGES[:2])
    assert frame["PredictionString"].tolist() == ["", "0.80000 1.00 2.00 1.00 3.00 4.00 1.00"]
    assert keypoint_submission_problems(frame, ["img_01", "img_02"], k=2) == []
    bad = pd.DataFrame({"image_id": ["img_01", "img_02"], "PredictionString": ["0.5 1 2 1", "1.5 1 2 1 3 4 1"]})
    problems = "\n".join(keypoint_submission_problems(bad, ["img_01", "img_02"], k=2))
    assert "row 1: 4 tokens, not a multiple of 7" in problems and "row 2: an instance score is outside [0, 1]" in problems
