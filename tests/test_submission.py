"""Kaggle RLE, submission validation and the NYUv2 submission format."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from kagglekit.submission import (
    SubmissionError,
    decode_nyuv2_submission,
    nyuv2_image_id,
    nyuv2_rows,
    nyuv2_sample_submission,
    nyuv2_submission,
    rle_decode,
    rle_encode,
    validate,
    write_submission,
)


def _rle_reference(mask: np.ndarray) -> str:
    """Independent pixel-by-pixel encoder (pure Python, column-major, 1-based)."""
    h, w = mask.shape
    out, run_start, number = [], None, 0
    for col in range(w):
        for row in range(h):
            number += 1
            if mask[row, col] and run_start is None:
                run_start = number
            elif not mask[row, col] and run_start is not None:
                out += [run_start, number - run_start]
                run_start = None
    if run_start is not None:
        out += [run_start, number + 1 - run_start]
    return " ".join(map(str, out))


# ----------------------------------------------------------------------------- RLE


def test_rle_hand_computed_3x4_column_major():
    mask = np.array([[1, 0, 0, 1],
                     [1, 1, 0, 0],
                     [0, 1, 0, 1]], bool)
    # columns top-to-bottom: col0 -> pixels 1,2; col1 -> 5,6; col2 -> none; col3 -> 10, 12
    assert rle_encode(mask) == "1 2 5 2 10 1 12 1"
    # transposed (4, 3): col0 (1,0,0,1) -> 1, 4; col1 (1,1,0,0) -> 5, 6; col2 (0,1,0,1) -> 10, 12
    assert rle_encode(mask.T) == "1 1 4 3 10 1 12 1"
    np.testing.assert_array_equal(rle_decode("1 2 5 2 10 1 12 1", (3, 4)), mask)
    assert rle_encode(np.zeros((3, 4), bool)) == ""
    assert rle_encode(np.ones((3, 4), bool)) == "1 12"
    assert not rle_decode("", (3, 4)).any()
    assert not rle_decode(float("nan"), (3, 4)).any()


@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (17, 1), (37, 53), (480, 640)])
def test_rle_round_trip_random_asymmetric(shape):
    rng = np.random.default_rng(sum(shape))
    for density in (0.05, 0.5, 0.95):
        mask = rng.random(shape) < density
        if mask.size <= 40 * 60:
            assert rle_encode(mask) == _rle_reference(mask)
        np.testing.assert_array_equal(rle_decode(rle_encode(mask), shape), mask)


@settings(max_examples=50, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_rle_round_trip_property(mask):
    rle = rle_encode(mask)
    assert rle == _rle_reference(mask)
    np.testing.assert_array_equal(rle_decode(rle, mask.shape), mask)


@pytest.mark.parametrize(
    ("rle", "match"),
    [
        ("1 2 3", "odd number"),
        ("1 2 x 3", "'x'"),
        ("1 2 3.5 1", "'3.5'"),
        ("1 -2", "'-2'"),
        ("0 2", "start 0 < 1"),
        ("3 0", "length 0"),
        ("5 2 3 1", "not strictly increasing"),
        ("1 5 4 2", "overlap"),
        ("1 5 5 2", "overlap"),  # shares exactly one pixel (5)
        ("11 3", "ends at pixel 13 past the image"),
        ("99999999999999999999 1", "too large"),
    ],
)
def test_rle_decode_malformed(rle, match):
    with pytest.raises(SubmissionError, match=match):
        rle_decode(rle, (3, 4))


def test_rle_adjacent_runs_are_valid():
    np.testing.assert_array_equal(rle_decode("1 5 6 2", (3, 4)), rle_decode("1 7", (3, 4)))


def test_rle_encode_rejects_non_binary():
    with pytest.raises(ValueError, match="boolean"):
        rle_encode(np.array([[0, 2]]))
    with pytest.raises(ValueError, match="2-D"):
        rle_encode(np.zeros(4, bool))


# ----------------------------------------------------------------------------- generic validation


@pytest.fixture
def cls_sample() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a01", "a02", "a03", "a04"], "target": [0.5, 0.5, 0.5, 0.5], "label": ["x"] * 4})


def _good(sample: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"id": ["a03", "a01", "a02", "a04"], "target": [0.1, 0.9, 0.3, 0.0], "label": list("pqrs")})


def _problems(sub, sample, **kw) -> str:
    with pytest.raises(SubmissionError) as info:
        validate(sub, sample, **kw)
    return str(info.value)


def test_valid_classification_csv_round_trip(cls_sample, tmp_path):
    sample_path = tmp_path / "sample.csv"
    cls_sample.to_csv(sample_path, index=False)
    path = write_submission(_good(cls_sample), tmp_path / "sub.csv", sample_path)
    parsed = validate(path, sample_path)
    assert list(parsed["id"]) == ["a03", "a01", "a02", "a04"]
    assert parsed["target"].dtype.kind == "f"


def test_missing_extra_duplicated_ids_and_row_count(cls_sample):
    sub = _good(cls_sample)
    sub.loc[0, "id"] = "zzz"  # a03 missing, zzz extra
    sub = pd.concat([sub, sub.iloc[[1]]], ignore_index=True)  # a01 twice
    msg = _problems(sub, cls_sample)
    assert "missing in 'id': a03" in msg
    assert "not in the sample: zzz" in msg
    assert "duplicated: a01 (2x)" in msg
    assert "expected 4 rows (one per sample id), got 5" in msg
    assert "4 problem(s)" in msg


def test_columns_missing_extra_misordered(cls_sample):
    sub = _good(cls_sample)
    assert "missing column(s): label" in _problems(sub.drop(columns="label"), cls_sample)
    assert "unexpected column(s): extra" in _problems(sub.assign(extra=1), cls_sample)
    msg = _problems(sub[["id", "label", "target"]], cls_sample)
    assert "wrong order" in msg and "['id', 'target', 'label']" in msg


def test_nan_and_wrong_dtype_named(cls_sample, tmp_path):
    sub = _good(cls_sample).astype({"target": object})
    sub.loc[1, "target"] = "abc"
    sub.loc[2, "label"] = None
    msg = _problems(sub, cls_sample)
    assert "column 'target' must be numeric like the sample" in msg and "row 2 (id=a01) has 'abc'" in msg
    assert "column 'label' is empty/NaN in 1 row(s): row 3 (id=a02)" in msg
    path = tmp_path / "sub.csv"  # same through a CSV file
    sub.to_csv(path, index=False)
    msg_csv = _problems(path, cls_sample)
    assert "row 2 (id=a01) has 'abc'" in msg_csv and "column 'label' is empty/NaN" in msg_csv


def test_ids_keep_leading_zeros(tmp_path):
    sample = pd.DataFrame({"id": ["001", "002"], "y": [0, 0]})
    sample.to_csv(tmp_path / "s.csv", index=False)
    pd.DataFrame({"id": ["1", "2"], "y": [1, 0]}).to_csv(tmp_path / "bad.csv", index=False)
    msg = _problems(tmp_path / "bad.csv", tmp_path / "s.csv")
    assert "missing in 'id': 001, 002" in msg
    pd.DataFrame({"id": ["002", "001"], "y": [1, 0]}).to_csv(tmp_path / "ok.csv", index=False)
    assert list(validate(tmp_path / "ok.csv", tmp_path / "s.csv")["id"]) == ["002", "001"]


def test_write_submission_never_touches_existing_file(cls_sample, tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("old content\n")
    bad = _good(cls_sample).iloc[:3]
    with pytest.raises(SubmissionError):
        write_submission(bad, path, cls_sample, overwrite=True)
    assert path.read_text() == "old content\n"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_submission(_good(cls_sample), path, cls_sample)
    assert path.read_text() == "old content\n"
    write_submission(_good(cls_sample), path, cls_sample, overwrite=True)
    assert pd.read_csv(path, dtype=str)["id"].tolist() == ["a03", "a01", "a02", "a04"]
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]  # no temp files left behind


def test_missing_file_and_garbage_csv(cls_sample, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        validate(tmp_path / "nope.csv", cls_sample)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SubmissionError, match="not a readable CSV"):
        validate(tmp_path / "empty.csv", cls_sample)


# ----------------------------------------------------------------------------- NYUv2 format


@pytest.fixture
def nyu_maps(nyuv2_labels13) -> dict[str, np.ndarray]:
    files = sorted((nyuv2_labels13 / "labels").glob("new_nyu_class13_*.png"))[:6]
    return {nyuv2_image_id(f): np.asarray(Image.open(f)) for f in files}


def test_nyuv2_real_maps_validate_and_decode_back(nyu_maps, tmp_path):
    ids = list(nyu_maps)
    sub = nyuv2_submission(ids, nyu_maps.values())
    sample = nyuv2_sample_submission(ids)
    assert sample.iloc[0].tolist() == [ids[0], 12, "1 307200"]
    assert ids[0] == "0001" and sorted(sub.loc[sub.ImageId == "0001", "ClassId"]) == [3, 4, 5, 6, 7, 10, 12]
    sample.to_csv(tmp_path / "sample_submission.csv", index=False)
    path = write_submission(sub, tmp_path / "sub.csv", tmp_path / "sample_submission.csv")
    parsed = validate(path, tmp_path / "sample_submission.csv")
    for image_id, label in nyu_maps.items():
        np.testing.assert_array_equal(decode_nyuv2_submission(parsed, image_id), label)
    row = nyuv2_rows("0001", nyu_maps["0001"])[0]  # one class's RLE == generic encoder on its mask
    assert row["EncodedPixels"] == rle_encode(nyu_maps["0001"] == row["ClassId"])
    validate(sample, sample)  # the sample itself is valid


def test_nyuv2_validator_catches_each_problem(nyu_maps):
    ids = list(nyu_maps)
    sample = nyuv2_sample_submission(ids)
    good = nyuv2_submission(ids, nyu_maps.values())
    bad = good[good.ImageId != ids[1]].reset_index(drop=True)  # image ids[1] missing entirely
    bad.loc[0, "EncodedPixels"] = bad.loc[0, "EncodedPixels"] + " 7"  # odd count
    bad.loc[1, "ClassId"] = 14  # out of range
    bad.loc[2, "EncodedPixels"] = "307000 500"  # past 480*640
    bad = pd.concat([bad, bad.iloc[[3]], pd.DataFrame([{"ImageId": "9999", "ClassId": 1, "EncodedPixels": ""}])],
                    ignore_index=True)  # duplicated (ImageId, ClassId) + unknown image
    last = bad.index[bad.ImageId == ids[-1]]
    bad.loc[last[0], "EncodedPixels"] = bad.loc[last[1], "EncodedPixels"]  # two classes overlap
    msg = _problems(bad, sample)
    assert f"have no row: {ids[1]}" in msg
    assert "not in the sample: 9999" in msg
    assert "row 1 (ImageId=0001, ClassId=3): EncodedPixels RLE has an odd number of values" in msg
    assert "ClassId must be an integer in 1..13" in msg and "ClassId=14" in msg
    assert "past the image (307200 pixels)" in msg
    assert "(ImageId, ClassId) pairs must be unique" in msg
    assert f"ImageId={ids[-1]}: masks of ClassId" in msg and "overlap" in msg


def test_nyuv2_overlap_by_one_pixel_vs_touching():
    sample = nyuv2_sample_submission(["0001"])
    touching = pd.DataFrame({"ImageId": ["0001", "0001"], "ClassId": [3, 5], "EncodedPixels": ["1 5", "6 2"]})
    validate(touching, sample)
    overlap = touching.assign(EncodedPixels=["1 5", "5 2"])
    assert "ImageId=0001: masks of ClassId 3 and 5 overlap (from pixel 5)" in _problems(overlap, sample)
    with pytest.raises(SubmissionError, match="overlap"):
        decode_nyuv2_submission(overlap, "0001")


def test_nyuv2_image_shape_and_label_checks(nyu_maps):
    ids = list(nyu_maps)[:1]
    small = nyuv2_submission(ids, [nyu_maps[ids[0]][::2, ::2]], shape=None)
    validate(small, nyuv2_sample_submission(ids, shape=(240, 320)), image_shape=(240, 320))
    assert "past the image (20000 pixels)" in _problems(small, nyuv2_sample_submission(ids), image_shape=(100, 200))
    with pytest.raises(ValueError, match="resize predictions"):
        nyuv2_submission(ids, [nyu_maps[ids[0]][::2, ::2]])
    with pytest.raises(ValueError, match="0..13"):
        nyuv2_rows("0001", np.full((480, 640), 14, np.uint8))
    with pytest.raises(ValueError, match="only 0 label maps"):
        nyuv2_submission(ids, [])
    with pytest.raises(SubmissionError, match="no rows with ImageId='1'"):
        decode_nyuv2_submission(nyuv2_submission(ids, [nyu_maps[ids[0]]]), "1")
