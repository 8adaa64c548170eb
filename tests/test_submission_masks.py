"""Configurable mask submission formats (kagglekit.submission.masks): hand-computed RLEs for each
pixel order / first pixel number, exact round trips for images of different sizes with sparse
competition ids in every layout, NYUv2 compatibility, and a validator naming every problem."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from kagglekit.submission.masks import (
    PRESETS,
    MaskFormat,
    decode_mask_submission,
    encode_mask_rows,
    mask_submission,
    mask_submission_problems,
    sample_mask_submission,
)
from kagglekit.submission.nyuv2 import nyuv2_submission
from kagglekit.submission.rle import SubmissionError

COCO_IDS = [1, 18, 44, 90]  # sparse competition ids, 0 = background
SIZES = {"0001": (5, 7), "0002": (9, 4), "0003": (1, 1), "0004": (3, 3), "img_5": (6, 6)}


def _maps(rng: np.random.Generator, values: list[int]) -> list[np.ndarray]:
    """Random label maps of SIZES: noisy, blocky, single pixel, all background, one full class."""
    h, w = SIZES["0001"]
    blocky = np.repeat(np.repeat(rng.choice(values, (3, 2)), 3, 0), 2, 1)[:9, :4]
    return [rng.choice(values, (h, w)), blocky, np.full((1, 1), values[-1]), np.zeros((3, 3), np.int64),
            np.full((6, 6), values[1])]


# ------------------------------------------------------------------------- hand-computed RLEs

@pytest.mark.parametrize(("order", "start", "expected"), [
    ("F", 1, "2 2 5 1"), ("F", 0, "1 2 4 1"), ("C", 1, "2 3"), ("C", 0, "1 3")])
def test_binary_rle_by_hand(order, start, expected):
    # [[0 1 1]    column-major: 0 1 | 1 0 | 1 0 -> pixels 2,3 and 5 (1-based)
    #  [1 0 0]]   row-major:    0 1 1 | 1 0 0   -> pixels 2..4
    mask = np.array([[0, 1, 1], [1, 0, 0]])
    fmt = MaskFormat(layout="binary", order=order, start=start)
    assert encode_mask_rows("x", mask, [1], fmt) == [{"ImageId": "x", "EncodedPixels": expected}]
    frame = pd.DataFrame({"ImageId": ["x"], "EncodedPixels": [expected]})
    np.testing.assert_array_equal(decode_mask_submission(frame, {"x": (2, 3)}, fmt)["x"], mask)


@pytest.mark.parametrize(("order", "start", "rle5", "rle7"), [
    ("F", 1, "1 1 3 1", "4 1 6 1"), ("F", 0, "0 1 2 1", "3 1 5 1"), ("C", 1, "1 2", "5 2"), ("C", 0, "0 2", "4 2")])
def test_per_class_rle_by_hand(order, start, rle5, rle7):
    # [[5 5 0]    column-major: 5 0 | 5 7 | 0 7 -> 5: pixels 1, 3; 7: pixels 4, 6
    #  [0 7 7]]   row-major:    5 5 0 | 0 7 7   -> 5: pixels 1..2; 7: pixels 5..6
    label = np.array([[5, 5, 0], [0, 7, 7]])
    fmt = MaskFormat(order=order, start=start)
    rows = encode_mask_rows("x", label, [7, 5], fmt)  # class-table order, not numeric order
    assert rows == [{"ImageId": "x", "ClassId": 7, "EncodedPixels": rle7},
                    {"ImageId": "x", "ClassId": 5, "EncodedPixels": rle5}]
    np.testing.assert_array_equal(decode_mask_submission(pd.DataFrame(rows), {"x": (2, 3)}, fmt)["x"], label)


def test_pixel_orders_differ_on_an_asymmetric_mask():
    label = np.array([[5, 5, 0], [0, 7, 7]])
    f_rows = encode_mask_rows("x", label, [5, 7], MaskFormat(order="F"))
    c_rows = encode_mask_rows("x", label, [5, 7], MaskFormat(order="C"))
    assert [r["EncodedPixels"] for r in f_rows] != [r["EncodedPixels"] for r in c_rows]
    # Decoding with the wrong order does not give the map back.
    wrong = decode_mask_submission(pd.DataFrame(f_rows), {"x": (2, 3)}, MaskFormat(order="C"))["x"]
    assert not np.array_equal(wrong, label)


# ------------------------------------------------------------------------------- round trips

VARIANTS = {
    "omit": {},
    "blank": {"empty": "blank"},
    "combined": {"class_column": "", "combined_id": "{image}_{class}", "empty": "blank",
                 "columns": ("ImageId_ClassId", "EncodedPixels")},
    "combined_omit": {"class_column": "", "combined_id": "c{class}-{image}"},
    "binary": {"layout": "binary", "id_column": "id", "rle_column": "rle_mask"},
}


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("start", [0, 1])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_round_trip_is_exact(tmp_path, order, start, variant):
    fmt = MaskFormat(order=order, start=start, **VARIANTS[variant])
    rng = np.random.default_rng(len(variant) * 4 + start * 2 + (order == "C"))
    maps = _maps(rng, [0] + COCO_IDS)
    frame = mask_submission(list(SIZES), maps, COCO_IDS, fmt)
    assert tuple(frame.columns) == fmt.column_names()
    assert mask_submission_problems(frame, fmt, SIZES, COCO_IDS) == []
    # Through a CSV as Kaggle reads it (ids keep leading zeros, empty RLE cells).
    frame.to_csv(tmp_path / "sub.csv", index=False)
    read = pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)
    assert mask_submission_problems(read, fmt, SIZES, COCO_IDS) == []
    for source in (frame, read):
        decoded = decode_mask_submission(source, SIZES, fmt, class_ids=COCO_IDS)
        assert list(decoded) == list(SIZES)
        for image_id, label in zip(SIZES, maps):
            expected = (label != 0).astype(np.int32) if fmt.layout == "binary" else label
            assert decoded[image_id].shape == SIZES[image_id]
            np.testing.assert_array_equal(decoded[image_id], expected, err_msg=image_id)


def test_row_policies():
    label = np.array([[0, 18], [18, 0]])
    empty = np.zeros((2, 2), np.int64)
    omit, blank = MaskFormat(), MaskFormat(empty="blank")
    assert [r["ClassId"] for r in encode_mask_rows("a", label, COCO_IDS, omit)] == [18]
    assert encode_mask_rows("a", empty, COCO_IDS, omit) == [{"ImageId": "a", "ClassId": 1, "EncodedPixels": ""}]
    assert [(r["ClassId"], r["EncodedPixels"]) for r in encode_mask_rows("a", label, COCO_IDS, blank)] == \
        [(1, ""), (18, "2 2"), (44, ""), (90, "")]
    assert encode_mask_rows("a", empty, [1], PRESETS["binary"]) == [{"id": "a", "rle_mask": ""}]
    assert PRESETS["severstal"].column_names() == ("ImageId_ClassId", "EncodedPixels")
    assert encode_mask_rows("0000f269f.jpg", label, [1, 18], PRESETS["severstal"])[1] == \
        {"ImageId_ClassId": "0000f269f.jpg_18", "EncodedPixels": "2 2"}
    # background None: every pixel is a class; a background value among the classes is refused
    assert [r["ClassId"] for r in encode_mask_rows("a", label, [0, 18], omit, background=None)] == [0, 18]
    with pytest.raises(ValueError, match="background 0 is also a class id"):
        encode_mask_rows("a", label, [0, 18], omit)


def test_sample_submission_is_valid_and_decodes_to_background():
    for name, fmt in PRESETS.items():
        sample = sample_mask_submission(SIZES, COCO_IDS, fmt)
        assert mask_submission_problems(sample, fmt, SIZES, COCO_IDS) == [], name
        decoded = decode_mask_submission(sample, SIZES, fmt, background=0)
        assert all(not m.any() and m.shape == SIZES[i] for i, m in decoded.items()), name
    assert len(sample_mask_submission(SIZES, COCO_IDS, PRESETS["severstal"])) == len(SIZES) * len(COCO_IDS)
    assert len(sample_mask_submission(SIZES, COCO_IDS, PRESETS["nyuv2"])) == len(SIZES)


def test_writer_refuses_model_indices_and_bad_ids():
    with pytest.raises(ValueError, match=r"holds 2, 3.*competition ids"):
        encode_mask_rows("a", np.array([[0, 1], [2, 3]]), COCO_IDS, MaskFormat())
    with pytest.raises(ValueError, match="unique"):
        mask_submission(["a", "a"], [np.zeros((1, 1), int)] * 2, COCO_IDS, MaskFormat())
    with pytest.raises(ValueError, match="more label maps"):
        mask_submission(["a"], [np.zeros((1, 1), int)] * 2, COCO_IDS, MaskFormat())
    with pytest.raises(ValueError, match="fewer label maps"):
        mask_submission(["a", "b"], [np.zeros((1, 1), int)], COCO_IDS, MaskFormat())
    with pytest.raises(ValueError, match="class_column"):
        MaskFormat(combined_id="{image}_{class}")  # class folded into the id AND a class column
    with pytest.raises(ValueError, match="ordering of"):
        MaskFormat(columns=("ImageId", "EncodedPixels"))


def test_encoding_1000x1000_with_80_classes_is_fast():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 81, (1000, 1000))  # worst case: ~1e6 runs
    start = time.perf_counter()
    rows = encode_mask_rows("a", label, list(range(1, 81)), MaskFormat())
    elapsed = time.perf_counter() - start
    assert len(rows) == 80
    assert elapsed < 2.0, f"{elapsed:.2f}s"


# --------------------------------------------------------------------------------- NYUv2

def test_nyuv2_preset_matches_the_nyuv2_writer():
    rng = np.random.default_rng(3)
    ids = ["0001", "0002", "0003", "0004"]
    maps = [rng.integers(0, 14, (12, 16)), rng.choice([0, 3, 12], (7, 5)),
            np.repeat(rng.integers(0, 14, (4, 1)), 9, 1), np.full((3, 4), 13)]
    ours = mask_submission(ids, maps, list(range(1, 14)), PRESETS["nyuv2"])
    theirs = nyuv2_submission(ids, maps, shape=None)
    pd.testing.assert_frame_equal(ours, theirs)
    # The one difference: an all-void image gets one (first class, empty RLE) row under "omit".
    void = np.zeros((3, 4), np.int64)
    assert nyuv2_submission(["0009"], [void], shape=None).empty
    assert mask_submission(["0009"], [void], list(range(1, 14)), MaskFormat()).to_dict("records") == \
        [{"ImageId": "0009", "ClassId": 1, "EncodedPixels": ""}]


# ------------------------------------------------------------------------------- validator

SMALL = {"a": (2, 3), "b": (4, 5)}  # 6 and 20 pixels


def _frame(rows: list[tuple], columns=("ImageId", "ClassId", "EncodedPixels")) -> pd.DataFrame:
    return pd.DataFrame([[str(v) for v in r] for r in rows], columns=list(columns))


VALID = [("a", 1, "1 2"), ("a", 18, "3 2"), ("b", 44, "1 20")]


def test_valid_file_has_no_problems():
    assert mask_submission_problems(_frame(VALID), MaskFormat(), SMALL, COCO_IDS) == []
    assert mask_submission_problems(_frame(VALID), MaskFormat(), None, None) == []


@pytest.mark.parametrize(("rows", "needle"), [
    ([("", 1, "1 2"), *VALID], "column 'ImageId' is empty: 1 row(s): row 1 (ImageId=, ClassId=1)"),
    ([("a", "", "5 1"), *VALID], "ClassId is empty: 1 row(s): row 1 (ImageId=a, ClassId=)"),
    ([("a", "x", "5 1"), *VALID], "ClassId must be an integer: 1 row(s): row 1"),
    ([("a", 2, "5 1"), *VALID], "ClassId not in the class table 1, 18, 44, 90: 1 row(s): row 1 (ImageId=a, ClassId=2)"),
    ([*VALID, ("a", 18, "")], "(image, class) pairs must be unique; duplicated: 2 row(s): row 2 (ImageId=a, ClassId=18), row 4"),
    (VALID[:2], "1 test image(s) missing, e.g. ['b']"),
    ([*VALID, ("zzz", 1, "1 1")], "1 image(s) not in the test set, e.g. ['zzz']"),
    # "5 4" fits b (20 pixels) but not a (6 pixels)
    ([*VALID, ("a", 44, "5 4")], "1 EncodedPixels value(s) run past their image: row 4 (ImageId=a, ClassId=44): "
                                 "run 1 ends at pixel 8, image a is 2x3 = 6 pixels"),
    ([("a", 1, "1 3"), ("a", 18, "3 2"), VALID[2]], "1 image(s) have overlapping class masks: a: classes 1 and 18 from pixel 3"),
    ([*VALID, ("a", 90, "1 2 3")], "malformed EncodedPixels value(s): row 4 (ImageId=a, ClassId=90): EncodedPixels has an odd number"),
    ([*VALID, ("a", 90, "5 1 2 1")], "runs not ascending / overlapping: run 2 starts at 2"),
    ([*VALID, ("a", 90, "5 0")], "run 1 (start 5) has length 0"),
    ([*VALID, ("a", 90, "0 1")], "has start 0 < 1"),
    ([*VALID, ("a", 90, "5 x")], "holds 'x'"),
    ([*VALID, ("a", 90, "")], "empty EncodedPixels although the format omits absent classes"),
])
def test_each_problem_kind_is_named(rows, needle):
    problems = mask_submission_problems(_frame(rows), MaskFormat(), SMALL, COCO_IDS)
    assert any(needle in p for p in problems), problems
    with pytest.raises(SubmissionError) as err:
        decode_mask_submission(_frame(rows), SMALL, MaskFormat(), class_ids=COCO_IDS)
    assert err.value.problems == problems


@pytest.mark.parametrize(("columns", "needle"), [
    (("ImageId", "EncodedPixels"), "missing column(s): ClassId"),
    (("ImageId", "ClassId", "EncodedPixels", "Extra"), "unexpected column(s): Extra"),
    (("ClassId", "ImageId", "EncodedPixels"), "columns are in the wrong order"),
])
def test_column_problems(columns, needle):
    frame = _frame(VALID).assign(Extra="1")[[c for c in columns]]
    assert any(needle in p for p in mask_submission_problems(frame, MaskFormat(), SMALL, COCO_IDS))


def test_combined_blank_and_binary_problems():
    sev = PRESETS["severstal"]
    cols = sev.column_names()
    rows = [(f"a_{c}", "") for c in COCO_IDS] + [("b_1", "1 1"), ("b_44", ""), ("b", ""), ("b_x", ""), ("b_01", "")]
    problems = "\n".join(mask_submission_problems(_frame(rows, cols), sev, SMALL, COCO_IDS))
    for needle in ("ImageId_ClassId does not match '{image}_{class}': 1 row(s): row 7 (ImageId_ClassId=b)",
                   "class part of ImageId_ClassId must be an integer: 2 row(s): row 8 (ImageId_ClassId=b_x), row 9",
                   "needs a row for every (image, class); 2 missing: (b, 18), (b, 90)"):
        assert needle in problems, problems
    binary = PRESETS["binary"]
    frame = _frame([("a", "1 1"), ("a", "3 1"), ("b", "1 21")], binary.column_names())
    problems = "\n".join(mask_submission_problems(frame, binary, SMALL, None))
    assert "one row per image; several rows for the same image: 2 row(s): row 1 (id=a), row 2 (id=a)" in problems
    assert "row 3 (id=b): run 1 ends at pixel 21, image b is 4x5 = 20 pixels" in problems
    # sizes None: no bound check, the form is still checked
    assert mask_submission_problems(frame.iloc[[0, 2]], binary, None, None) == []
    assert mask_submission_problems(_frame([("b", "2 1 1 1")], binary.column_names()), binary, None, None)


def test_zero_based_starts():
    fmt = MaskFormat(start=0)
    assert mask_submission_problems(_frame([("a", 1, "0 6")]), fmt, {"a": (2, 3)}, COCO_IDS) == []
    problems = mask_submission_problems(_frame([("a", 1, "1 6")]), fmt, {"a": (2, 3)}, COCO_IDS)
    assert any("ends at pixel 6, image a is 2x3 = 6 pixels" in p for p in problems), problems


def test_all_problems_of_a_file_are_listed_at_once():
    rows = [("a", 1, "1 3"), ("a", 18, "3 2"), ("", 44, "1 1"), ("a", 2, "1 1"), ("zzz", 1, "1 2 3"),
            ("a", 18, ""), ("a", 44, "5 4")]
    frame = _frame(rows)[["ClassId", "ImageId", "EncodedPixels"]]  # misordered columns too
    problems = mask_submission_problems(frame, MaskFormat(), SMALL, COCO_IDS)
    text = "\n".join(problems)
    for needle in ("columns are in the wrong order", "column 'ImageId' is empty", "ClassId not in the class table",
                   "(image, class) pairs must be unique", "test image(s) missing, e.g. ['b']",
                   "not in the test set, e.g. ['zzz']", "malformed EncodedPixels", "run past their image",
                   "empty EncodedPixels although", "overlapping class masks"):
        assert needle in text, needle
    assert len(problems) == 10
    with pytest.raises(SubmissionError, match="10 problem"):
        decode_mask_submission(frame, SMALL, MaskFormat(), class_ids=COCO_IDS)


def test_examples_are_capped_per_kind():
    rows = [(f"i{k}", 7, "1 1") for k in range(25)]
    problems = mask_submission_problems(_frame(rows), MaskFormat(), None, COCO_IDS)
    assert len(problems) == 1 and "25 row(s)" in problems[0] and "(+5 more)" in problems[0]
    assert problems[0].count("(ImageId=") == 20 and "row 20 (" in problems[0] and "row 21 (" not in problems[0]


def test_decode_refuses_background_as_class_and_dtype_overflow():
    frame = _frame([("a", 0, "1 1")])
    with pytest.raises(SubmissionError, match="equals the background"):
        decode_mask_submission(frame, {"a": (2, 3)}, MaskFormat())
    with pytest.raises(SubmissionError, match="do not fit uint8"):
        decode_mask_submission(_frame([("a", 300, "1 1")]), {"a": (2, 3)}, MaskFormat(), dtype=np.uint8)
