"""Keypoint data: COCO keypoints <-> YOLO-pose converters, convention mapping tables, flip pairs,
and the synthetic keypoint generator (kagglekit.tasks.keypoints.convert, kagglekit.demo.keypoints)."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from conftest import require_shared
from kagglekit.demo.keypoints import (
    SYNTH_NAMES, TEMPLATES, keypoint_colours, make_synthetic_keypoints, prepare_keypoint_demo, render_figure,
    synthetic_cars, synthetic_person_like)
from kagglekit.tasks.keypoints.convert import (
    CARFUSION14_NAMES, COCO_KEYPOINT_NAMES, COCO_SKELETON, MAPPINGS, SYNTH24_TO_REAL14, SYNTH24_TO_REAL14_TYRE_BOTTOM,
    SYNTH_CAR24_NAMES, KeypointMapping, LabelError, coco_kpts_to_yolo_pose, flip_idx_from_names,
    flip_pairs_from_names, format_yolo_pose_line, parse_yolo_pose_label, parse_yolo_pose_line,
    yolo_pose_to_coco)
from kagglekit.tta.keypoints import hflip_keypoints

COCO_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]


def _sample():
    root = require_shared("coco_keypoints_sample")
    return root, json.loads((root / "test_coco.json").read_text())


def _by_file(coco: dict) -> list[tuple[str, dict]]:
    """(file_name, annotation) in file-name order, annotation order kept within an image."""
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    anns = [(names[a["image_id"]], i, a) for i, a in enumerate(coco["annotations"])]
    return [(f, a) for f, _, a in sorted(anns, key=lambda t: (t[0], t[1]))]


def _kps(ann: dict) -> np.ndarray:
    return np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)


def _tiny(tmp: Path, labels: dict[str, str | None], size: tuple[int, int] = (40, 30)) -> tuple[Path, Path]:
    from test_detection_convert import _tiny_dataset  # the same images/ + labels/ tree
    return _tiny_dataset(tmp, labels, size)


# ----------------------------------------------------------------------------------- real sample
def test_coco_sample_round_trip_bbox(tmp_path):
    root, coco = _sample()
    stats = coco_kpts_to_yolo_pose(coco, tmp_path / "labels", box_source="bbox")
    assert stats["images"] == 4 and stats["instances"] == 14
    assert stats["no_keypoints_skipped"] == stats["degenerate_skipped"] == stats["crowd_skipped"] == 0
    assert stats["kpt_shape"] == [17, 3] and stats["keypoint_names"] == list(COCO_KEYPOINT_NAMES)
    assert stats["flip_idx"] == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert sorted(p.name for p in (tmp_path / "labels").glob("*.txt")) == \
        sorted(Path(im["file_name"]).with_suffix(".txt").name for im in coco["images"])

    cat = coco["categories"][0]
    back = yolo_pose_to_coco(root / "images", tmp_path / "labels", ["person"], cat["keypoints"],
                             skeleton=cat["skeleton"])
    assert back["categories"][0]["keypoints"] == cat["keypoints"]
    assert back["categories"][0]["skeleton"] == cat["skeleton"] == [list(e) for e in COCO_SKELETON]
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in coco["images"]}
    assert {im["file_name"]: (im["width"], im["height"]) for im in back["images"]} == sizes
    orig, new = _by_file(coco), _by_file(back)
    assert [f for f, _ in orig] == [f for f, _ in new] and len(new) == 14
    n_zero = 0
    for (_, a), (_, b) in zip(orig, new):
        np.testing.assert_allclose(b["bbox"], a["bbox"], rtol=0, atol=1e-6)
        ka, kb = _kps(a), _kps(b)
        assert (kb[:, 2] == ka[:, 2]).all()
        lab = ka[:, 2] > 0
        np.testing.assert_allclose(kb[lab, :2], ka[lab, :2], rtol=0, atol=1e-6)
        assert (kb[~lab] == 0).all()  # unlabelled: 0 0 0
        assert b["num_keypoints"] == a["num_keypoints"] == int(lab.sum())
        assert b["area"] == pytest.approx(b["bbox"][2] * b["bbox"][3]) and b["iscrowd"] == 0
        n_zero += a["num_keypoints"] == 0
    assert n_zero == 2  # the two people without labelled keypoints are kept with box_source=bbox

    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = back
        c.createIndex()
    assert len(c.getAnnIds()) == 14


def test_coco_sample_box_from_keypoints(tmp_path):
    """Seed lesson: the keypoint box is NOT the object box -- the source must be chosen explicitly."""
    root, coco = _sample()
    stats = coco_kpts_to_yolo_pose(coco, tmp_path / "labels", box_source="keypoints")
    assert stats["instances"] == 12 and stats["no_keypoints_skipped"] == 2
    back = yolo_pose_to_coco(root / "images", tmp_path / "labels", ["person"], COCO_KEYPOINT_NAMES)
    # person 442619 (image 785, all 17 points labelled): x in [309, 466], y in [73, 362] by hand
    ann = next(a for f, a in _by_file(back) if f == "000000000785.jpg")
    np.testing.assert_allclose(ann["bbox"], [309, 73, 157, 289], atol=1e-6)
    given_box = next(a for a in coco["annotations"] if a["id"] == 442619)["bbox"]
    assert given_box == [280.79, 44.73, 218.7, 346.68]
    assert np.abs(np.subtract(ann["bbox"], given_box)).max() > 25  # a different box, not a rounding
    # every exported box is the tight box of its labelled points, inside the given bbox here
    orig = [a for _, a in _by_file(coco) if a["num_keypoints"] > 0]
    for a, b in zip(orig, [a for _, a in _by_file(back)]):
        k = _kps(a)[_kps(a)[:, 2] > 0]
        x0, y0 = k[:, :2].min(0)
        x1, y1 = k[:, :2].max(0)
        np.testing.assert_allclose(b["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1e-6)
        np.testing.assert_allclose(_kps(b)[:, :2][_kps(a)[:, 2] > 0], k[:, :2], atol=1e-6)
        assert b["bbox"] != pytest.approx(a["bbox"], abs=1.0)

    # pad: person 543117 (image 197388): x in [2, 78], y in [69, 245]; 10 % pad, clipped at x = 0
    coco_kpts_to_yolo_pose(coco, tmp_path / "padded", box_source="keypoints", pad=0.1)
    back = yolo_pose_to_coco(root / "images", tmp_path / "padded", ["person"], COCO_KEYPOINT_NAMES)
    boxes = [a["bbox"] for f, a in _by_file(back) if f == "000000197388.jpg"]
    np.testing.assert_allclose(boxes[-1], [0.0, 69 - 17.6, 78 + 7.6, 176 * 1.2], atol=1e-6)


def test_coco_to_yolo_pose_skips_and_errors(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 50}],
            "categories": [{"id": 3, "name": "thing", "keypoints": ["left_x", "right_x", "tip"]},
                           {"id": 4, "name": "plain"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20],
                 "keypoints": [15, 15, 2, 0, 0, 0, 0, 0, 0]},
                {"id": 2, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "iscrowd": 1,
                 "keypoints": [15, 15, 2, 20, 20, 1, 0, 0, 0]},
                {"id": 3, "image_id": 1, "category_id": 4, "bbox": [1, 1, 5, 5]},
                {"id": 4, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20],
                 "keypoints": [12, 14, 2, 28, 16, 1, 20, 30, 2]},
            ]}
    stats = coco_kpts_to_yolo_pose(coco, tmp_path / "k", box_source="keypoints")
    assert (stats["instances"], stats["degenerate_skipped"], stats["crowd_skipped"], stats["other_category_skipped"]) \
        == (1, 1, 1, 1)
    assert stats["flip_idx"] == [1, 0, 2] and stats["category_ids"] == [3]
    line = (tmp_path / "k" / "a.txt").read_text().split()
    assert line[:5] == ["0", repr(0.2), repr(0.44), repr(0.16), repr(0.32)]
    stats = coco_kpts_to_yolo_pose(coco, tmp_path / "b", box_source="bbox")
    assert stats["instances"] == 2 and stats["degenerate_skipped"] == 0
    assert (tmp_path / "b" / "a.txt").read_text().splitlines()[0].endswith(f"{0.15!r} {0.3!r} 2 0 0 0 0 0 0")

    with pytest.raises(ValueError, match="box_source"):
        coco_kpts_to_yolo_pose(coco, tmp_path / "x", box_source="tight")
    with pytest.raises(ValueError, match="pad"):
        coco_kpts_to_yolo_pose(coco, tmp_path / "x", box_source="keypoints", pad=-0.1)
    bad = copy.deepcopy(coco)
    bad["annotations"][0]["keypoints"][2] = 3
    with pytest.raises(LabelError, match=r"annotation id 1 .*visibility \[3\.0\]"):
        coco_kpts_to_yolo_pose(bad, tmp_path / "x")
    bad = copy.deepcopy(coco)
    bad["annotations"][3]["keypoints"][6] = 101
    with pytest.raises(LabelError, match=r"annotation id 4 .*keypoint 2 .*outside the 100x50 image"):
        coco_kpts_to_yolo_pose(bad, tmp_path / "x")
    bad = copy.deepcopy(coco)
    bad["annotations"][0]["keypoints"] = [1, 2, 2]
    with pytest.raises(LabelError, match=r"annotation id 1 .*9 numbers"):
        coco_kpts_to_yolo_pose(bad, tmp_path / "x")
    bad = copy.deepcopy(coco)
    bad["annotations"][0]["bbox"] = [90, 10, 20, 20]
    with pytest.raises(LabelError, match=r"annotation id 1 .*not clipped"):
        coco_kpts_to_yolo_pose(bad, tmp_path / "x")
    assert not (tmp_path / "x").exists()  # validated before anything is written


# ----------------------------------------------------------------------------------- YOLO-pose lines
NAMES3 = ["left_x", "right_x", "tip"]
GOOD = "0 0.5 0.5 0.5 0.5 0.25 0.25 2 0.75 0.5 1 0 0 0"


def test_yolo_pose_to_coco_values(tmp_path):
    images, labels = _tiny(tmp_path, {"a": GOOD + "\n\n1 0.5 0.5 1 1 " + "0 0 0 " * 3 + "\n", "b": None})
    coco = yolo_pose_to_coco(images, labels, ["p", "q"], NAMES3, skeleton=[[1, 3], [2, 3]], category_ids=[5, 7])
    assert [c["id"] for c in coco["categories"]] == [5, 7]
    assert coco["categories"][0]["keypoints"] == NAMES3 and coco["categories"][0]["skeleton"] == [[1, 3], [2, 3]]
    a, b = coco["annotations"]
    assert a["bbox"] == [10.0, 7.5, 20.0, 15.0] and a["area"] == 300.0 and a["category_id"] == 5
    assert a["keypoints"] == [10.0, 7.5, 2, 30.0, 15.0, 1, 0.0, 0.0, 0] and a["num_keypoints"] == 2
    assert b["num_keypoints"] == 0 and b["category_id"] == 7
    assert [im["file_name"] for im in coco["images"]] == ["a.png", "b.png"]
    with pytest.raises(ValueError, match="skeleton"):
        yolo_pose_to_coco(images, labels, ["p", "q"], NAMES3, skeleton=[[0, 1]])
    with pytest.raises(ValueError, match="duplicate"):
        yolo_pose_to_coco(images, labels, ["p", "q"], ["a", "a", "b"])


BAD_LINES = [
    ("0 0.5 0.5 0.5 0.5 0.25 0.25 2 0.75 0.5 1 0", r"12 fields, expected 5 \+ 3 x 3 = 14"),
    ("0 0.5 0.5 0.5 0.5 0.25 0.25 2 0.75 0.5 1 0 0 0 0 0 0", r"17 fields.*that is 4 keypoints, expected 3"),
    ("0 0.5 0.5 0.5 0.5", r"5 fields.*detection line without keypoints"),
    ("0 0.5 0.5 0.5 0.5 0.25 0.25 0.75 0.5 0.5 0.5", r"11 fields = 5 \+ 2 x 3: the keypoints have no visibility flag.*"
                                                     r"'x y 2' for each labelled point and '0 0 0'"),
    ("0 0.5 0.5 0.5 0.5 0.25 0.25 3 0.75 0.5 1 0 0 0", r"v1 = '3'; visibility must be 0 .*1 .*or 2"),
    ("0 0.5 0.5 0.5 0.5 0.25 0.25 2 0.75 0.5 -1 0 0 0", r"v2 = '-1'"),
    ("0 0.5 0.5 0.5 0.5 0.25 0.25 2.5 0.75 0.5 1 0 0 0", r"v1 = '2.5'"),
    ("0 0.5 0.5 0.5 0.5 1.25 0.25 2 0.75 0.5 1 0 0 0", r"x1 = 1.25 is outside \[0, 1\]"),
    ("0 0.5 0.5 0.5 0.5 0.25 0.25 2 0.75 -0.01 1 0 0 0", r"y2 = -0.01 is outside \[0, 1\]"),
    ("0 0.5 0.5 0.5 0.5 0.25 0.25 2 0.75 0.5 1 0 1.5 0", r"y3 = 1.5 is outside"),
    ("2 0.5 0.5 0.5 0.5 0.25 0.25 2 0.75 0.5 1 0 0 0", r"class id '2' is not an integer in \[0, 2\)"),
    ("0.5 0.5 0.5 0.5 0.5 0.25 0.25 2 0.75 0.5 1 0 0 0", r"class id '0.5'"),
    ("0 0.9 0.5 0.5 0.5 0.25 0.25 2 0.75 0.5 1 0 0 0", r"box spans x"),
    ("0 0.5 0.5 0.5 0.5 nan 0.25 2 0.75 0.5 1 0 0 0", r"x1 'nan' is not a finite number"),
    ("0 0.5 0.5 0.5 0.5 abc 0.25 2 0.75 0.5 1 0 0 0", r"x1 'abc' is not a number"),
    ("0 0.5 0.5 0.5 0.5 1e999 0.25 2 0.75 0.5 1 0 0 0", r"x1 '1e999' is not a finite number"),
]


@pytest.mark.parametrize("line,message", BAD_LINES)
def test_bad_yolo_pose_line_names_file_and_line(tmp_path, line, message):
    images, labels = _tiny(tmp_path, {"img": GOOD + "\n" + line + "\n"})
    path = labels / "img.txt"
    with pytest.raises(LabelError, match=re.escape(f"{path}:2: ") + message):
        parse_yolo_pose_label(path, 2, 3)
    with pytest.raises(LabelError, match=re.escape(f"{path}:2: ") + message):
        yolo_pose_to_coco(images, labels, ["p", "q"], NAMES3)


def test_tolerance_and_unlabelled_coordinates():
    # 1e-7 outside [0, 1] is exporter rounding and accepted; v=0 points read back as 0 0 0
    cls, box, kps = parse_yolo_pose_line("1 0.5 0.5 1 1 1.0000001 -1e-7 2 0.3 0.4 0 0 0 0", 2, 3)
    assert cls == 1 and box.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert kps[1].tolist() == [0.0, 0.0, 0.0] and kps[0, 2] == 2


def test_empty_label_file(tmp_path):
    images, labels = _tiny(tmp_path, {"a": ""})
    boxes, kpts = parse_yolo_pose_label(labels / "a.txt", 1, 4)
    assert boxes.shape == (0, 5) and kpts.shape == (0, 4, 3)
    assert yolo_pose_to_coco(images, labels, ["p"], ["a", "b", "c", "d"])["annotations"] == []


_token = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False).map(repr),
    st.floats(-0.2, 1.2, allow_subnormal=False).map(repr),
    st.integers(-3, 5).map(str),
    st.sampled_from(["nan", "-inf", "1e400", "0x10", "1_0", "\u00b2", "\u0661", "2.0", "+1", ".5", "1.", "e5", ""]),
    st.text(max_size=4),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(_token, max_size=18).map(" ".join), st.text(max_size=60)),
       st.integers(1, 3), st.integers(1, 4))
def test_fuzz_pose_line_parser_only_raises_label_error(line, n_classes, k):
    try:
        cls, box, kps = parse_yolo_pose_line(line, n_classes, k, "f.txt:1")
    except LabelError as exc:
        assert str(exc).startswith("f.txt:1: ")
        return
    assert 0 <= cls < n_classes and box.shape == (4,) and kps.shape == (k, 3)
    assert np.isin(kps[:, 2], [0, 1, 2]).all() and np.isfinite(kps).all()


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4).flatmap(lambda k: st.tuples(
    st.integers(0, 2),
    st.tuples(st.floats(0.2, 0.8), st.floats(0.2, 0.8), st.floats(0.01, 0.4), st.floats(0.01, 0.4)),
    st.lists(st.tuples(st.floats(0, 1, allow_subnormal=False), st.floats(0, 1, allow_subnormal=False),
                       st.sampled_from([0, 1, 2])), min_size=k, max_size=k))))
def test_format_parse_round_trip(item):
    cls, box, kps = item
    arr = np.asarray(kps, dtype=np.float64).reshape(-1, 3)
    line = format_yolo_pose_line(cls, box, arr)
    c, b, k = parse_yolo_pose_line(line, 3, len(kps))
    assert c == cls and b.tolist() == list(box)
    expect = arr.copy()
    expect[expect[:, 2] == 0] = 0
    assert k.tolist() == expect.tolist()  # exact: repr round-trips float64


# ----------------------------------------------------------------------------------- flip pairs
def test_flip_pairs_from_names():
    assert flip_pairs_from_names(COCO_KEYPOINT_NAMES) == COCO_PAIRS
    assert flip_idx_from_names(COCO_KEYPOINT_NAMES)[:5] == [0, 2, 1, 4, 3]
    car = flip_pairs_from_names(SYNTH_CAR24_NAMES)
    assert len(car) == 10 and all(SYNTH_CAR24_NAMES[i].replace("left", "right") == SYNTH_CAR24_NAMES[j] for i, j in car)
    assert len(flip_pairs_from_names(CARFUSION14_NAMES)) == 6  # all but logo and plate
    assert flip_pairs_from_names(["LeftEye", "RightEye", "eye-left", "eye-right", "LEFT_HAND", "RIGHT_HAND"]) == \
        [(0, 1), (2, 3), (4, 5)]
    assert flip_pairs_from_names(["leftover", "rightover", "l_eye", "r_eye", "left", "nose"]) == []
    with pytest.raises(ValueError, match="duplicate"):
        flip_pairs_from_names(["a", "a"])


# ----------------------------------------------------------------------------------- mapping tables
def _car_instance() -> np.ndarray:
    """One hand-made 24-point car: point i at (100 + i, 200 + 10 i), v = 2 except rear_logo (1)."""
    k = np.stack([100.0 + np.arange(24), 200.0 + 10 * np.arange(24), np.full(24, 2.0)], axis=1)
    k[SYNTH_CAR24_NAMES.index("rear_logo"), 2] = 1
    return k[None]


def test_synth24_to_real14_slots():
    src = _car_instance()
    out = SYNTH24_TO_REAL14.apply(src)
    assert out.shape == (1, 14, 3)
    slot = {n: out[0, i].tolist() for i, n in enumerate(CARFUSION14_NAMES)}
    # by hand: front_right_wheel_centre is synthetic index 1 -> (101, 210); left_headlight index 8; front_logo 16
    assert slot["front_right_wheel"] == [101.0, 210.0, 2.0]
    assert slot["left_headlight"] == [108.0, 280.0, 2.0]
    assert slot["front_auto_logo"] == [116.0, 360.0, 2.0]
    assert slot["right_taillight"] == [113.0, 330.0, 2.0]
    for t, s in SYNTH24_TO_REAL14.pairs.items():
        assert slot[t] == src[0, SYNTH_CAR24_NAMES.index(s)].tolist()
    # the tyre-bottom table differs exactly in the four wheel slots
    tb = SYNTH24_TO_REAL14_TYRE_BOTTOM.apply(src)
    diff = [CARFUSION14_NAMES[i] for i in np.flatnonzero((tb != out).any(axis=2)[0])]
    assert sorted(diff) == sorted(n for n in CARFUSION14_NAMES if n.endswith("_wheel"))
    assert tb[0, CARFUSION14_NAMES.index("rear_left_wheel")].tolist() == [106.0, 260.0, 2.0]
    assert SYNTH24_TO_REAL14.flip_problems() == [] and SYNTH24_TO_REAL14_TYRE_BOTTOM.flip_problems() == []
    # torch in, torch out
    t = SYNTH24_TO_REAL14.apply(torch.as_tensor(src, dtype=torch.float32))
    assert isinstance(t, torch.Tensor) and torch.equal(t, torch.as_tensor(out, dtype=torch.float32))


def test_mapping_unmapped_targets_and_errors():
    m = KeypointMapping(["a", "b", "c"], ["x", "y", "z"], {"x": "c", "z": "a"})
    out = m.apply(np.array([[[1, 2, 2], [3, 4, 1], [5, 6, 2]]], dtype=float))
    assert out.tolist() == [[[5, 6, 2], [0, 0, 0], [1, 2, 2]]]
    assert m.unmapped_targets == ["y"]
    with pytest.raises(ValueError, match=r"unknown target name\(s\) \['w'\]"):
        KeypointMapping(["a"], ["x"], {"w": "a"})
    with pytest.raises(ValueError, match=r"unknown source name\(s\) \['q', 'r'\]"):
        KeypointMapping(["a"], ["x", "y"], {"x": "q", "y": "r"})
    with pytest.raises(ValueError, match="duplicate"):
        KeypointMapping(["a", "a"], ["x"], {})
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        m.apply(np.zeros((1, 4, 3)))
    swapped = KeypointMapping(["left_a", "right_a"], ["left_x", "right_x"], {"left_x": "right_a", "right_x": "right_a"})
    assert len(swapped.flip_problems()) == 2


def test_mapping_apply_coco_on_sample():
    _, coco = _sample()
    face = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "chin"]
    m = KeypointMapping(COCO_KEYPOINT_NAMES, face, {n: n for n in face[:5]})
    out = m.apply_coco(coco)
    assert coco["categories"][0]["keypoints"] == list(COCO_KEYPOINT_NAMES)  # input untouched
    cat = out["categories"][0]
    assert cat["keypoints"] == face
    assert cat["skeleton"] == [[2, 3], [1, 2], [1, 3], [2, 4], [3, 5]]  # the head edges of COCO's skeleton
    for a, b in zip(coco["annotations"], out["annotations"]):
        ka, kb = _kps(a), _kps(b)
        assert kb.shape == (6, 3) and (kb[:5] == ka[:5]).all() and (kb[5] == 0).all()
        assert b["num_keypoints"] == int((ka[:5, 2] > 0).sum())
        assert b["bbox"] == a["bbox"]
    with pytest.raises(ValueError, match="no category has the source keypoint names"):
        SYNTH24_TO_REAL14.apply_coco(coco)


# ----------------------------------------------------------------------------------- generator
def test_generator_deterministic_and_write_once(tmp_path):
    a = synthetic_person_like(tmp_path / "a", n_images=6, seed=3)
    b = synthetic_person_like(tmp_path / "b", n_images=6, seed=3)
    c = synthetic_person_like(tmp_path / "c", n_images=6, seed=4)
    ja, jb, jc = (json.loads((r / "annotations.json").read_text()) for r in (a, b, c))
    assert ja == jb and ja["annotations"] != jc["annotations"]
    for im in ja["images"]:
        assert (a / "images" / im["file_name"]).read_bytes() == (b / "images" / im["file_name"]).read_bytes()
    stamp = (a / "annotations.json").stat().st_mtime_ns
    assert synthetic_person_like(a, n_images=6, seed=3) == a
    assert (a / "annotations.json").stat().st_mtime_ns == stamp  # complete: not rewritten
    with pytest.raises(ValueError, match="other parameters"):
        synthetic_person_like(a, n_images=7, seed=3)
    (a / "images" / ja["images"][0]["file_name"]).unlink()  # incomplete -> regenerated
    synthetic_person_like(a, n_images=6, seed=3)
    assert (a / "images" / ja["images"][0]["file_name"]).read_bytes() == \
        (b / "images" / ja["images"][0]["file_name"]).read_bytes()


@pytest.mark.parametrize("kind", ["person", "car"])
def test_generator_annotations(tmp_path, kind):
    make = synthetic_person_like if kind == "person" else synthetic_cars
    root = make(tmp_path, n_images=24, seed=0, max_objects=2)
    coco = json.loads((root / "annotations.json").read_text())
    t = TEMPLATES[kind]
    cat = coco["categories"][0]
    assert cat["keypoints"] == list(t.names) and cat["skeleton"] == [list(e) for e in t.skeleton]
    assert len(coco["images"]) == 24 and len(coco["annotations"]) >= 24
    colours = np.array(keypoint_colours(t.names), dtype=np.float64)
    vis_counts = np.zeros(3, int)
    on_colour = n_drawn = 0
    images = {im["id"]: im for im in coco["images"]}
    pixels = {im["id"]: np.asarray(Image.open(root / "images" / im["file_name"]), dtype=np.float64)
              for im in coco["images"]}
    for ann in coco["annotations"]:
        im = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= im["width"] and y + h <= im["height"] and w > 0 and h > 0
        assert ann["area"] == w * h and ann["iscrowd"] == 0 and ann["category_id"] == 1
        k = _kps(ann)
        assert k.shape == (len(t.names), 3) and set(np.unique(k[:, 2])) <= {0, 1, 2}
        assert ann["num_keypoints"] == int((k[:, 2] > 0).sum()) > 0
        lab = k[:, 2] > 0
        assert (k[lab, 0] >= x).all() and (k[lab, 0] <= x + w).all()
        assert (k[lab, 1] >= y).all() and (k[lab, 1] <= y + h).all()
        assert (k[~lab] == 0).all()
        vis_counts += np.bincount(k[:, 2].astype(int), minlength=3)
        for i in np.flatnonzero(k[:, 2] == 2):  # a drawn marker has its keypoint's colour
            n_drawn += 1
            px = pixels[ann["image_id"]][int(k[i, 1]), int(k[i, 0])]
            on_colour += np.abs(px - colours[i]).max() < 25
        if kind == "car":  # wheel centre and tyre bottom are different points (the seed lesson)
            for end in ("front", "rear"):
                for side in ("left", "right"):
                    c = k[t.names.index(f"{end}_{side}_wheel_centre")]
                    b = k[t.names.index(f"{end}_{side}_tyre_bottom")]
                    if c[2] and b[2]:
                        assert b[1] - c[1] > 3 and abs(b[0] - c[0]) < 0.2 * (b[1] - c[1])  # below, up to the shear
            assert (k[[t.names.index("rear_logo"), t.names.index("rear_plate")], 2] != 2).all()
    assert vis_counts[2] > 0.8 * vis_counts.sum() and vis_counts[1] > 0  # mostly visible, some occluded
    assert vis_counts[0] > 0  # some points out of frame
    assert _left_of_right(coco, t.names)  # figures face the camera: their left is on the image's right
    assert on_colour >= 0.95 * n_drawn

    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO(str(root / "annotations.json"))
    assert len(c.getImgIds()) == 24 and c.loadCats(1)[0]["keypoints"] == list(t.names)


def test_person_like_matches_real_sample_category(tmp_path):
    _, coco = _sample()
    root = synthetic_person_like(tmp_path, n_images=2)
    cat = json.loads((root / "annotations.json").read_text())["categories"][0]
    real = coco["categories"][0]
    assert (cat["name"], cat["supercategory"], cat["keypoints"], cat["skeleton"]) == \
        (real["name"], real["supercategory"], real["keypoints"], real["skeleton"])


def test_generator_names_subset_and_errors(tmp_path):
    names = ["right_headlight", "left_headlight", "front_logo"]
    root = make_synthetic_keypoints(tmp_path / "sub", n_images=3, names=names)
    coco = json.loads((root / "annotations.json").read_text())
    assert coco["categories"][0]["keypoints"] == names and coco["categories"][0]["name"] == "car"
    assert coco["categories"][0]["skeleton"] == [[2, 3], [1, 3]]
    assert coco["info"]["flip_pairs"] == [[0, 1]]
    assert all(len(a["keypoints"]) == 9 for a in coco["annotations"])
    assert list(SYNTH_NAMES) == list(SYNTH_CAR24_NAMES)
    with pytest.raises(ValueError, match="not a subset"):
        make_synthetic_keypoints(tmp_path / "x", names=["nose", "left_headlight"])


@pytest.mark.parametrize("kind", ["person", "car"])
def test_render_is_mirror_consistent(kind):
    """Mirroring the keypoints (x' = W - x, left/right swapped) draws the mirrored image: a flipped
    training image is a valid image with swapped names, so flip TTA / augmentation is sound."""
    from kagglekit.demo.keypoints import _sample_instance
    t = TEMPLATES[kind]
    pairs = flip_pairs_from_names(t.names)
    perm = list(range(len(t.names)))
    for i, j in pairs:
        perm[i], perm[j] = j, i
    h, w = 120, 160
    for seed in range(4):
        rng = np.random.default_rng(seed)
        pts, scale, _ = _sample_instance(rng, t, h, w)
        hidden = rng.random(len(t.names)) < 0.2
        a = np.zeros((h, w, 3))
        mask_a = render_figure(a, kind, pts, hidden, (90, 90, 90), scale)
        flipped = hflip_keypoints(torch.as_tensor(pts)[None], w, pairs)[0].numpy()
        b = np.zeros((h, w, 3))
        mask_b = render_figure(b, kind, flipped, hidden[perm], (90, 90, 90), scale)
        assert mask_a.sum() > 200
        assert (mask_b == mask_a[:, ::-1]).mean() > 0.999
        assert (np.abs(b - a[:, ::-1]).max(axis=2) > 0).sum() <= 3  # exact up to float ties on edges
        # the generator's rule "a left point lies to the image-right of its right twin" holds for the
        # mirrored + swapped points too, and would break without the swap
        for i, j in pairs:  # i is the left_* name in both templates
            assert "left" in t.names[i] and pts[i, 0] > pts[j, 0] and flipped[i, 0] > flipped[j, 0]
            assert w - pts[i, 0] < w - pts[j, 0]


def _left_of_right(coco: dict, names) -> bool:
    pairs = flip_pairs_from_names(names)
    for ann in coco["annotations"]:
        k = _kps(ann)
        for i, j in pairs:
            if k[i, 2] and k[j, 2] and not k[i, 0] > k[j, 0]:
                return False
    return True


def test_prepare_keypoint_demo_splits_the_real_sample(tmp_path):
    _, coco = _sample()
    paths = prepare_keypoint_demo(tmp_path, n_synthetic=3)
    train, test = (json.loads(paths[k].read_text()) for k in ("real_train", "real_test"))
    assert [im["id"] for im in train["images"]] == [785, 196141] and len(train["annotations"]) == 6
    assert [im["id"] for im in test["images"]] == [40083, 197388] and len(test["annotations"]) == 8
    assert train["categories"] == test["categories"] == coco["categories"]
    syn = json.loads(paths["synthetic"].read_text())
    assert len(syn["images"]) == 3 and syn["categories"][0]["keypoints"] == coco["categories"][0]["keypoints"]
    assert (tmp_path / "synthetic" / "images" / syn["images"][0]["file_name"]).is_file()
    assert prepare_keypoint_demo(tmp_path, n_synthetic=3) == paths  # written once


def test_named_mappings_apply_to_the_synthetic_cars(tmp_path):
    coco = json.loads((synthetic_cars(tmp_path, n_images=3) / "annotations.json").read_text())
    for name, m in MAPPINGS.items():
        out = m.apply_coco(coco)
        assert out["categories"][0]["keypoints"] == list(CARFUSION14_NAMES), name
        for a, b in zip(coco["annotations"], out["annotations"]):
            ka, kb = _kps(a), _kps(b)
            for t, src in m.pairs.items():
                assert kb[CARFUSION14_NAMES.index(t)].tolist() == ka[SYNTH_CAR24_NAMES.index(src)].tolist()
