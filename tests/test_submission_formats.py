"""The per-image submission formats added with the Task contract: box and keypoint
``image_id,PredictionString`` writers round-trip COCO results, and their validators name every
problem (token count, class, score range, box order, ids) on a file with several at once. Box
layouts are configurable (:class:`BoxFormat`: template, normalised coordinates, class tokens,
empty token, id column and id form): each round-trips, and its validator lists every problem."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from kagglekit.submission.boxes import (BoxFormat, box_submission_problems, boxes_frame, parse_box_submission,
                                        write_box_submission)
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


SIZED = [{"id": 1, "file_name": "a/img_01.jpg", "width": 100, "height": 80},
         {"id": 2, "file_name": "img_02.png", "width": 50, "height": 50},
         {"id": 3, "file_name": "img_03.jpg", "width": 64, "height": 64}]


@pytest.mark.parametrize("fmt", [
    BoxFormat(),
    BoxFormat("{score} {x} {y} {w} {h}"),  # Global Wheat: one class, no class token
    BoxFormat("{cls} {score:.3f} {cx} {cy} {w} {h}", coords="normalized", empty="none", image_id="file_name"),
    BoxFormat("{x2:.2f} {y2:.2f} {cls} {x1:.2f} {y1:.2f}", id_column="ImageId", pred_column="boxes", image_id="id"),
])
def test_box_templates_round_trip(fmt):
    """Each layout writes and parses back the same boxes (to its printed precision)."""
    boxes = [b for b in BOXES if fmt.has("cls") or b["category_id"] == 7]
    classes = {3: "cat", 7: "traffic_light"} if fmt.has("cls") else {7: "wheat"}
    frame = boxes_frame(boxes, SIZED, fmt, classes)
    assert list(frame.columns) == [fmt.id_column, fmt.pred_column]
    assert frame[fmt.id_column].tolist() == [fmt.key(im) for im in SIZED]
    assert frame[fmt.pred_column].iloc[2] == fmt.empty
    assert box_submission_problems(frame, [fmt.key(im) for im in SIZED], classes, fmt,
                                   {fmt.key(im): (im["width"], im["height"]) for im in SIZED}) == []
    back = sorted(parse_box_submission(frame, SIZED, classes, fmt), key=lambda r: (r["image_id"], r["bbox"][0]))
    want = sorted(boxes, key=lambda r: (r["image_id"], r["bbox"][0]))
    assert [(r["image_id"], r["category_id"]) for r in back] == [(r["image_id"], r["category_id"]) for r in want]
    tol = 1e-3 * 100 if fmt.coords == "normalized" else 0.06
    for got, ref in zip(back, want):
        assert got["bbox"] == pytest.approx(ref["bbox"], abs=tol)
        assert got["score"] == (pytest.approx(ref["score"], abs=1e-3) if fmt.has("score") else 1.0)


def test_box_validator_of_a_configured_layout_lists_every_problem():
    fmt = BoxFormat("{cls} {score} {x} {y} {w} {h}", id_column="ImageId", empty="none", image_id="file_name")
    classes = {1: "person", 2: "car"}
    frame = pd.DataFrame({"ImageId": ["img_01.jpg", "", "zzz.jpg", "img_03.jpg", "img_03.jpg"],
                          "PredictionString": ["person 0.9 10 10 20 20 bus 0.5 1 1 2 2", "none",
                                               "car 0.5 nan 1 2 2", "", "car 0.5 40 40 30 30 car 0.1 1 1"]})
    sizes = {"img_01.jpg": (100, 80), "img_02.png": (50, 50), "img_03.jpg": (64, 64)}
    text = "\n".join(box_submission_problems(frame, list(sizes), classes, fmt, sizes))
    for needle in ("row 2: empty ImageId", "1 duplicated ImageId", "missing, e.g. ['img_02.png']",
                   "not in the test set, e.g. ['zzz.jpg']", "row 1 box 2: class bus", "row 3 box 1: x1 'nan'",
                   "row 4: empty PredictionString", "row 5: 10 tokens, not a multiple of 6"):
        assert needle in text, needle
    frame.loc[4, "PredictionString"] = "car 0.5 40 40 30 30"
    assert "row 5 box 1: box [40, 40, 70, 70] outside the 64x64 image" in "\n".join(
        box_submission_problems(frame, list(sizes), classes, fmt, sizes))
    wrong = frame.rename(columns={"ImageId": "image_id"})
    assert "missing ['ImageId']" in box_submission_problems(wrong, list(sizes), classes, fmt)[0]


@pytest.mark.parametrize("template, needle", [("{cls} {score} {x} {y} {w}", "does not place boxes in y"),
                                              ("{cls} {x} {x1} {y} {w} {h}", "x1 twice"),
                                              ("{cls} {conf} {x} {y} {w} {h}", "'{conf}' is not a {field}"),
                                              ("cls score x y w h", "'cls' is not a {field}")])
def test_bad_box_templates_are_refused(template, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        BoxFormat(template)
    with pytest.raises(ValueError, match="no {cls}"):
        boxes_frame(BOXES, SIZED, BoxFormat("{score} {x} {y} {w} {h}"), {3: "a", 7: "b"})
