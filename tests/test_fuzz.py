"""Fuzzing (hypothesis) of the parsers and validators: random and adversarial inputs either give a
valid result or raise the module's documented error type, never a raw pandas / numpy / KeyError.

Documented error types:
- RLE + submission validators (``submission/rle.py``, ``validate.py``, ``mabe.py``): ``SubmissionError``
  (a ``ValueError``; ``rle_encode`` raises ``ValueError`` for non-binary masks).
- Config overrides (``config.py``): ``ConfigError``.
- DLC / Caltech importer (``tasks/behavior/importer.py``): ``BehaviorDataError``.
- MABe interval post-processing (``tasks/behavior/intervals.py``): ``ValueError`` for bad arguments.
- YOLO labels (fuzzed in ``test_detection_convert.py``; only adversarial byte cases here): ``LabelError``.

``FUZZ_EXAMPLES`` holds every test's ``max_examples`` so that a reliability table can cite them.
Every crash found by fuzzing has an explicit regression example (``@example`` or a plain test).
Note: ``conftest.py`` flushes denormals (torch), so float strategies pass ``allow_subnormal=False``.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import re
import types
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kagglekit.config import ConfigError, apply_overrides, cast_value, field_types, parse_override, renamed_keys
from kagglekit.metrics.mabe import parse_behaviors_labeled
from kagglekit.submission.mabe import MABE_COLUMNS, validate_mabe
from kagglekit.submission.rle import SubmissionError, parse_rle, rle_decode, rle_encode
from kagglekit.submission.validate import validate
from kagglekit.tasks.behavior.importer import (
    bouts_to_annotation, import_dlc_caltech, infer_streams, read_caltech_annotation, read_dlc_csv,
)
from kagglekit.tasks.behavior.intervals import (
    intervals_to_submission, probs_to_intervals, smooth_probs, tune_thresholds,
)
from kagglekit.tasks.behavior.meta import BehaviorDataError, frame_labels
from kagglekit.tasks.detection.config import DetectionConfig
from kagglekit.tasks.detection.convert import LabelError, parse_yolo_label
from kagglekit.tasks.segmentation.config import SegmentationConfig

FUZZ_EXAMPLES = {
    "rle_round_trip": 300,
    "rle_decode_adversarial": 300,
    "rle_decode_any_object": 100,
    "validate_csv_text": 200,
    "validate_csv_bytes": 100,
    "validate_rle_csv": 150,
    "validate_dataframe": 150,
    "validate_mabe_csv": 200,
    "validate_mabe_dataframe": 150,
    "validate_mabe_dataframe_near_valid": 150,
    "config_overrides_segmentation": 300,
    "config_overrides_detection": 300,
    "config_cast_value_types": 200,
    "config_typed_values_apply": 200,
    "config_typo_suggestions": 200,
    "dlc_mutated": 150,
    "dlc_bytes": 100,
    "caltech_mutated": 200,
    "caltech_text": 100,
    "import_dlc_caltech": 30,
    "intervals_round_trip": 200,
    "intervals_random_probs": 200,
    "intervals_to_valid_submission": 100,
    "smooth_probs": 200,
    "tune_thresholds": 100,
}

FLOATS = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False)


def fuzz(name: str, **kw):
    """``@settings`` of one fuzz test: FUZZ_EXAMPLES[name] examples, no deadline."""
    return settings(max_examples=FUZZ_EXAMPLES[name], deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], **kw)


def write_text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))  # lone surrogates -> invalid UTF-8
    return path


# Adversarial tokens shared by the text strategies.
JUNK = ["", " ", "nan", "NaN", "inf", "-inf", "1e400", "-0", "+1", "1.0", "1.5", "1e3", "0x10", "1_0",
        "٣", "１", "99999999999999999999999", "-9223372036854775809", "None", "null", "true", "\x00",
        "\t", "é", "😀", '"', "'", ",", ";", "\\", "\r", "\ufeff", "\u2028"]
junk = st.one_of(st.sampled_from(JUNK), st.text(max_size=6), st.integers(-(2**70), 2**70).map(str),
                 FLOATS.map(repr))


# Mutations of a small valid file (lines of cells): set / delete / insert a cell, drop / duplicate /
# swap a line, truncate the text. Few ops (often none) keep most examples near-valid.
def _ops(tokens: list[str], max_size: int = 3) -> st.SearchStrategy[list]:
    op = st.tuples(st.sampled_from(["set", "set", "del", "add", "dropline", "dupline", "swap", "trunc"]),
                   st.integers(0, 20), st.integers(0, 20), st.one_of(junk, st.sampled_from(tokens)))
    return st.one_of(st.just([]), st.lists(op, max_size=1), st.lists(op, max_size=max_size))


def _mutate(lines: list[list[str]], ops, sep: str = ",") -> str:
    """Apply ``ops`` (from :func:`_ops`) to a valid file given as lines of cells; join with ``sep``."""
    lines = [list(line) for line in lines]
    trunc = None
    for op, i, j, token in ops:
        if not lines:
            break
        i %= len(lines)
        line = lines[i]
        if op == "set" and line:
            line[j % len(line)] = token
        elif op == "del" and line:
            del line[j % len(line)]
        elif op == "add":
            line.insert(j % (len(line) + 1), token)
        elif op == "dropline":
            del lines[i]
        elif op == "dupline":
            lines.insert(i, list(line))
        elif op == "swap":
            k = j % len(lines)
            lines[i], lines[k] = lines[k], lines[i]
        elif op == "trunc":
            trunc = j * 11
    text = "\n".join(sep.join(line) for line in lines) + "\n"
    return text if trunc is None else text[:trunc]


# ============================================================================================ RLE


def _reference_decode(runs: list[tuple[int, int]], shape: tuple[int, int]) -> np.ndarray:
    flat = np.zeros(shape[0] * shape[1], bool)
    for start, length in runs:
        flat[start - 1:start - 1 + length] = True
    return flat.reshape(shape, order="F")


_shapes = st.tuples(st.integers(0, 64), st.integers(0, 64))
_masks = st.one_of(
    arrays(bool, _shapes),
    _shapes.map(lambda s: np.zeros(s, bool)),
    _shapes.map(lambda s: np.ones(s, bool)),
    st.integers(1, 64).flatmap(lambda n: arrays(bool, st.sampled_from([(1, n), (n, 1)]))),
    arrays(np.uint8, _shapes, elements=st.integers(0, 1)),
)


@fuzz("rle_round_trip")
@given(mask=_masks)
@example(mask=np.zeros((0, 5), bool))
@example(mask=np.ones((64, 64), bool))
@example(mask=np.ones((1, 64), bool))
@example(mask=np.eye(1, 64, 63, dtype=bool).T)  # last pixel of a 64x1 column
def test_fuzz_rle_round_trip(mask):
    rle = rle_encode(mask)
    runs = parse_rle(rle, mask.size)  # canonical: increasing, non-overlapping, in bounds
    assert (runs[:, 1] >= 1).all() and int(runs[:, 1].sum()) == int(np.count_nonzero(mask))
    # canonical = maximal runs: never two touching runs
    assert not (runs[1:, 0] == runs[:-1, 0] + runs[:-1, 1]).any()
    back = rle_decode(rle, mask.shape)
    assert back.dtype == bool and back.shape == mask.shape
    np.testing.assert_array_equal(back, mask.astype(bool))
    assert (rle == "") == (not mask.any())


_rle_sep = st.sampled_from([" ", " ", " ", "  ", "\t", "\n", ",", " , "])


@st.composite
def _adversarial_rle(draw) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:  # near-valid pairs: small numbers incl. 0 / negatives / overlaps / past the end
        values = draw(st.lists(st.integers(-3, 160), max_size=12))
    elif kind == 1:  # huge numbers (int64 overflow, > 2**53)
        values = draw(st.lists(st.one_of(st.integers(-3, 160), st.integers(2**52, 2**70)), max_size=8))
    elif kind == 2:  # junk tokens
        values = draw(st.lists(st.one_of(st.integers(0, 160).map(str), junk), max_size=8))
    else:
        return draw(st.text(max_size=40))
    seps = draw(st.lists(_rle_sep, min_size=len(values), max_size=len(values)))
    text = "".join(f"{v}{s}" for v, s in zip(values, seps))
    return draw(st.sampled_from(["", " ", "\t"])) + text


@fuzz("rle_decode_adversarial")
@given(rle=_adversarial_rle(), shape=st.tuples(st.integers(1, 12), st.integers(1, 12)))
@example(rle="1 3 2 2", shape=(4, 4))  # overlap
@example(rle="3 2 1 1", shape=(4, 4))  # unordered
@example(rle="1 3 4", shape=(4, 4))  # odd count
@example(rle="0 1", shape=(4, 4))  # start < 1
@example(rle="1 0", shape=(4, 4))  # zero length
@example(rle="16 2", shape=(4, 4))  # past the end
@example(rle="1 99999999999999999999999", shape=(4, 4))  # > int64
@example(rle="1 -2", shape=(4, 4))
@example(rle="1 2 3 1", shape=(4, 4))  # touching runs are allowed
def test_fuzz_rle_decode_adversarial(rle, shape):
    try:
        mask = rle_decode(rle, shape)
    except SubmissionError as exc:
        assert str(exc) and exc.problems
        event("SubmissionError")
        return
    event("decoded")
    runs = [(int(a), int(b)) for a, b in parse_rle(rle, shape[0] * shape[1])]
    assert all(s >= 1 and n >= 1 for s, n in runs)
    assert mask.dtype == bool and mask.shape == shape
    np.testing.assert_array_equal(mask, _reference_decode(runs, shape))
    assert int(mask.sum()) == sum(n for _, n in runs)  # no overlaps
    np.testing.assert_array_equal(rle_decode(rle_encode(mask), shape), mask)


@fuzz("rle_decode_any_object")
@given(value=st.one_of(st.none(), FLOATS, st.integers(), st.binary(max_size=10), st.booleans(),
                       st.lists(st.integers(0, 5), max_size=4), st.text(max_size=10)))
def test_fuzz_rle_decode_any_object(value):
    try:
        mask = rle_decode(value, (3, 3))
    except SubmissionError:
        return
    assert mask.shape == (3, 3)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        assert not mask.any()


# =========================================================================== submission validator

SAMPLE_CLS = "id,target,label\n0001,0.5,cat\n0002,1,dog\n0003,0,cat\n"
SAMPLE_RLE = "ImageId,EncodedPixels\nimg_a,1 3\nimg_a,\nimg_b,5 2\n"  # ids repeat: set semantics
SAMPLE_NYU = "ImageId,ClassId,EncodedPixels\n0,1,1 2\n0,2,\n1,1,\n"
VALID_CLS = [["id", "target", "label"], ["0002", "1", "dog"], ["0001", "0.25", "cat"], ["0003", "0", "cat"]]
VALID_RLE = [["ImageId", "EncodedPixels"], ["img_a", "1 3 7 2"], ["img_b", ""]]
VALID_NYU = [["ImageId", "ClassId", "EncodedPixels"], ["0", "1", "1 2"], ["0", "2", "3 1"], ["1", "1", ""]]
_TOKENS = ["0001", "0002", "0003", "1", "0.5", "cat", "img_a", "img_b", "0", "2", "13", "14", "1 2", "2 2",
           "1 3 2 1", "EncodedPixels", "ImageId", "ClassId", "id", "target", "label"]


def _near_valid(lines: list[list[str]]) -> st.SearchStrategy[str]:
    return _ops(_TOKENS).map(lambda ops: _mutate(lines, ops))


_cls_cell = st.one_of(st.sampled_from(["0001", "0002", "0003", "1", "0.5", "cat", "dog"]), junk)
_rle_cell = st.one_of(st.sampled_from(["img_a", "img_b", "0", "1", "2", "13", "14"]),
                      _adversarial_rle(), junk)


@st.composite
def _csv_text(draw, columns: list[str], cell) -> str:
    """Header from (permuted / missing / extra / duplicated) sample columns, then rows of cells,
    written either raw (commas, quotes, newlines inside cells break the row structure) or via csv."""
    header = draw(st.one_of(
        st.just(columns),
        st.permutations(columns),
        st.lists(st.one_of(st.sampled_from(columns), junk), max_size=len(columns) + 2),
    ))
    n_cols = draw(st.one_of(st.just(len(header)), st.integers(0, len(header) + 2)))
    rows = draw(st.lists(st.lists(cell, min_size=n_cols, max_size=n_cols), max_size=8))
    if draw(st.booleans()):
        buf = io.StringIO()
        csv.writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows([header] + rows)
        return buf.getvalue()
    return "\n".join(",".join(map(str, r)) for r in [header] + rows) + draw(st.sampled_from(["", "\n"]))


def _check_validate(sub_path: Path, sample: str, tmp_path: Path, **kw) -> None:
    sample_path = write_text(tmp_path / "sample.csv", sample)
    try:
        out = validate(sub_path, sample_path, **kw)
    except SubmissionError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        event("SubmissionError")
        return
    event("valid")
    expected = pd.read_csv(sample_path, dtype=str, keep_default_na=False)
    assert list(out.columns) == list(expected.columns) and len(out) > 0
    assert set(out[expected.columns[0]]) == set(expected.iloc[:, 0].str.strip())


@fuzz("validate_csv_text")
@given(text=st.one_of(_near_valid(VALID_CLS), _csv_text(["id", "target", "label"], _cls_cell),
                      st.text(max_size=80)))
@example(text="id,target,label\n0001,inf,cat\n0002,1,dog\n0003,0,cat\n")  # was IntCastingNaNError
@example(text="id,target,label\n0001,1e400,cat\n0002,1,dog\n0003,0,cat\n")  # was IntCastingNaNError
@example(text="")
@example(text="id,target,label\n")
@example(text='id,target,label\n"0001,1,cat\n')
def test_fuzz_validate_csv_text(tmp_path, text):
    _check_validate(write_text(tmp_path / "sub.csv", text), SAMPLE_CLS, tmp_path)


@fuzz("validate_csv_bytes")
@given(data=st.one_of(st.binary(max_size=120),
                      _csv_text(["id", "target", "label"], _cls_cell).map(
                          lambda t: t.encode("utf-16", errors="surrogatepass")),
                      st.binary(max_size=20).map(lambda b: SAMPLE_CLS.encode() + b)))
@example(data=b"\xef\xbb\xbf" + SAMPLE_CLS.encode())  # UTF-8 BOM
@example(data=b"\x00" * 10)
def test_fuzz_validate_csv_bytes(tmp_path, data):
    path = tmp_path / "sub.csv"
    path.write_bytes(data)
    _check_validate(path, SAMPLE_CLS, tmp_path)


@fuzz("validate_rle_csv")
@given(case=st.one_of(
    st.tuples(st.just(False), st.one_of(_near_valid(VALID_RLE), _csv_text(VALID_RLE[0], _rle_cell))),
    st.tuples(st.just(True), st.one_of(_near_valid(VALID_NYU), _csv_text(VALID_NYU[0], _rle_cell)))),
    shape=st.sampled_from([None, (4, 4), (480, 640)]))
@example(case=(True, "ImageId,ClassId,EncodedPixels\n0,1,1 2\n0,1,1 3\n1,14,\n"), shape=None)
@example(case=(True, "ImageId,ClassId,EncodedPixels\n0,1,1 5\n0,2,3 1\n1,nan,\n"), shape=None)
@example(case=(True, "ImageId,ClassId,EncodedPixels\n0,inf,1 5\n0,1e30,3 1\n1,1,\n"), shape=None)  # int64 cast
@example(case=(False, "ImageId,EncodedPixels\nimg_a,1 20\nimg_b,\n"), shape=(4, 4))
def test_fuzz_validate_rle_csv(tmp_path, case, shape):
    nyu, text = case
    sample = SAMPLE_NYU if nyu else SAMPLE_RLE
    _check_validate(write_text(tmp_path / "sub.csv", text), sample, tmp_path,
                    **({} if shape is None else {"image_shape": shape}))


_py_cell = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.integers(-(2**70), 2**70), FLOATS,
                     st.sampled_from(["0001", "0002", "0003", "cat", "1", ""]), st.text(max_size=4))


@st.composite
def _frame(draw, columns: list[str], cell) -> pd.DataFrame:
    """A DataFrame with typed columns (float with NaN/inf, int, bool, object mixes)."""
    cols = draw(st.one_of(st.just(columns), st.lists(st.sampled_from(columns + ["x"]), max_size=4, unique=True)))
    n = draw(st.integers(0, 6))
    data = {}
    for c in cols:
        kind = draw(st.sampled_from(["object", "float", "int", "bool"]))
        if kind == "float":
            data[c] = pd.Series(draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype=np.float64)
        elif kind == "int":
            data[c] = pd.Series(draw(st.lists(st.integers(-3, 5), min_size=n, max_size=n)), dtype=np.int64)
        elif kind == "bool":
            data[c] = pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
        else:
            data[c] = pd.Series(draw(st.lists(cell, min_size=n, max_size=n)), dtype=object)
    return pd.DataFrame(data)


_near_valid_frame = st.tuples(
    st.permutations([1, 2]).flatmap(lambda ids: st.sampled_from(
        [ids, [float(i) for i in ids], [str(i) for i in ids], [f" {i} " for i in ids], ids + ids[:1]])),
    st.lists(st.one_of(st.integers(0, 1), FLOATS, st.sampled_from(["0", "1", "x", None])), min_size=2, max_size=3),
).map(lambda t: pd.DataFrame({"id": t[0], "target": (t[1] * 2)[:len(t[0])]}).infer_objects())


@fuzz("validate_dataframe")
@given(sub=st.one_of(_near_valid_frame, _frame(["id", "target", "label"], _py_cell)),
       sample=st.sampled_from([SAMPLE_CLS, "id,target\n1,0\n2,1\n"]))
# inf id: ids_as_str raised OverflowError (Int64 cast); inf target: _parsed raised IntCastingNaNError
@example(sub=pd.DataFrame({"id": [1.0, np.inf], "target": [0, 1]}), sample="id,target\n1,0\n2,1\n")
@example(sub=pd.DataFrame({"id": [1.0, 2.0], "target": [np.inf, 1.0]}), sample="id,target\n1,0\n2,1\n")
# NaN / None ids: sorted() of the id sets raised TypeError (str vs float)
@example(sub=pd.DataFrame({"id": [0.0, np.nan], "target": [None, None]}), sample="id,target\n1,0\n2,1\n")
@example(sub=pd.DataFrame({"id": ["1", None], "target": [0, 1]}, dtype=object), sample="id,target\n1,0\n2,1\n")
def test_fuzz_validate_dataframe(tmp_path, sub, sample):
    sample_path = write_text(tmp_path / "sample.csv", sample)
    try:
        out = validate(sub, sample_path)
    except SubmissionError as exc:
        assert exc.problems
        event("SubmissionError")
        return
    event("valid")
    assert list(out.columns) == list(pd.read_csv(sample_path).columns) and len(out) > 0


# --------------------------------------------------------------------------------------- MABe

VIDEOS = pd.DataFrame({
    "video_id": [101, 202],
    "behaviors_labeled": ['["mouse1,mouse2,attack", "mouse1,mouse2,sniff", "mouse1,self,rear"]',
                          '["\'mouse2\',\'mouse1\',\'chase\'"]'],
})
LABELLED = {(str(v), *key) for v, bl in zip(VIDEOS["video_id"], VIDEOS["behaviors_labeled"])
            for key in parse_behaviors_labeled(bl)}
_MABE_CELLS = {
    "row_id": st.one_of(st.integers(-2, 8).map(str), junk),
    "video_id": st.one_of(st.sampled_from(["101", "202", "101.0", " 101", "0101", "303"]), junk),
    "agent_id": st.one_of(st.sampled_from(["mouse1", "mouse2", "mouse10", "self", "Mouse1"]), junk),
    "target_id": st.one_of(st.sampled_from(["mouse1", "mouse2", "self", "mouse"]), junk),
    "action": st.one_of(st.sampled_from(["attack", "sniff", "rear", "chase", "dance"]), junk),
    "start_frame": st.one_of(st.integers(-2, 30).map(str), junk),
    "stop_frame": st.one_of(st.integers(-2, 30).map(str), junk),
}
_mabe_row = st.fixed_dictionaries(_MABE_CELLS)
VALID_MABE = [MABE_COLUMNS,
              ["0", "101", "mouse1", "mouse2", "attack", "0", "10"],
              ["1", "101", "mouse1", "mouse2", "sniff", "10", "20"],   # touches attack: fine
              ["2", "101", "mouse1", "self", "rear", "5", "15"],       # other target may overlap
              ["3", "101", "mouse1", "mouse2", "attack", "5", "8"],    # same action overlapping: harmless
              ["4", "202", "mouse2", "mouse1", "chase", "0", "3"]]
_MABE_TOKENS = ["101", "202", "mouse1", "mouse2", "self", "attack", "sniff", "rear", "chase", "0", "3", "5",
                "9", "12", "20", "-1", "1.0", "4"] + MABE_COLUMNS


@st.composite
def _mabe_csv(draw) -> str:
    header = draw(st.one_of(st.just(MABE_COLUMNS), st.just(MABE_COLUMNS), st.permutations(MABE_COLUMNS),
                            st.lists(st.one_of(st.sampled_from(MABE_COLUMNS), junk), max_size=8)))
    rows = draw(st.lists(_mabe_row, max_size=8))
    lines = [header] + [[r.get(c, "") for c in MABE_COLUMNS] for r in rows]
    if draw(st.booleans()):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(lines)
        return buf.getvalue()
    return "\n".join(",".join(line) for line in lines) + "\n"


def _check_mabe(sub, strict: bool) -> None:
    try:
        out = validate_mabe(sub, VIDEOS, strict_actions=strict)
    except SubmissionError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        event("SubmissionError")
        return
    event("valid")
    assert list(out.columns) == MABE_COLUMNS and len(out) > 0
    for col in ("row_id", "start_frame", "stop_frame"):
        assert out[col].dtype == np.int64
    assert out["row_id"].is_unique
    assert (out["start_frame"] >= 0).all() and (out["start_frame"] < out["stop_frame"]).all()
    # one action per (video, agent, target) and frame, among the labelled rows (the ones the metric counts)
    rows = [r for r in out.itertuples(index=False) if (str(r.video_id), r.agent_id, r.target_id, r.action) in LABELLED]
    for i, a in enumerate(rows):
        for b in rows[:i]:
            if (a.video_id, a.agent_id, a.target_id) == (b.video_id, b.agent_id, b.target_id) and a.action != b.action:
                assert a.stop_frame <= b.start_frame or b.stop_frame <= a.start_frame, (a, b)


@fuzz("validate_mabe_csv")
@given(text=st.one_of(_ops(_MABE_TOKENS).map(lambda ops: _mutate(VALID_MABE, ops)), _mabe_csv(),
                      st.text(max_size=60)), strict=st.booleans())
@example(text="row_id,video_id,agent_id,target_id,action,start_frame,stop_frame\n"
              "0,101,mouse1,mouse2,attack,1e300,1e301\n", strict=True)  # was int64 garbage frames
@example(text="row_id,video_id,agent_id,target_id,action,start_frame,stop_frame\n"
              "1e300,101,mouse1,mouse2,attack,0,5\n", strict=True)  # was garbage row_id
@example(text=_mutate(VALID_MABE, [("set", 1, 0, "+1")]), strict=False)  # "+1" and "1": duplicate ids passed
# " sniff" overlapping attack passed (not stripped, so "unlabelled") but was written as sniff: metric ValueError
@example(text=_mutate(VALID_MABE, [("set", 2, 4, " sniff"), ("set", 2, 5, "5")]), strict=False)
def test_fuzz_validate_mabe_csv(tmp_path, text, strict):
    _check_mabe(write_text(tmp_path / "sub.csv", text), strict)


def _typed_mabe_value(col: str):
    if col in ("row_id", "start_frame", "stop_frame"):
        return st.one_of(st.integers(-2, 30), st.integers(-(2**70), 2**70), FLOATS, st.none(), junk)
    if col == "video_id":
        return st.one_of(st.sampled_from([101, 202, 101.0, "101", 303]), FLOATS, st.none())
    return _MABE_CELLS[col]


@fuzz("validate_mabe_dataframe")
@given(rows=st.lists(st.fixed_dictionaries({c: _typed_mabe_value(c) for c in MABE_COLUMNS}), max_size=6),
       infer=st.booleans(), strict=st.booleans())
@example(rows=[{"row_id": 0, "video_id": 101, "agent_id": "mouse1", "target_id": "mouse2", "action": "attack",
                "start_frame": 0, "stop_frame": 1e19}], infer=True, strict=True)  # was int64 overflow
def test_fuzz_validate_mabe_dataframe(rows, infer, strict):
    df = pd.DataFrame(rows, columns=MABE_COLUMNS)
    _check_mabe(df.infer_objects() if infer else df, strict)


@fuzz("validate_mabe_dataframe_near_valid")
@given(changes=st.lists(st.tuples(st.integers(0, 4), st.sampled_from(MABE_COLUMNS)).flatmap(
    lambda rc: st.tuples(st.just(rc), _typed_mabe_value(rc[1]))), max_size=2), infer=st.booleans())
def test_fuzz_validate_mabe_dataframe_near_valid(changes, infer):
    df = pd.DataFrame(VALID_MABE[1:], columns=MABE_COLUMNS).astype(object)
    for (row, col), value in changes:
        df.at[row, col] = value
    _check_mabe(df.infer_objects() if infer else df, True)


# ================================================================================== config overrides


def _one_edit(key: str) -> st.SearchStrategy[str]:
    """Misspellings of a real key by one edit: drop / double / swap / replace a character."""
    n = len(key)
    return st.one_of(
        st.integers(0, n - 1).map(lambda i: key[:i] + key[i + 1:]),
        st.integers(0, n - 1).map(lambda i: key[:i] + key[i] + key[i:]),
        st.integers(0, max(n - 2, 0)).map(lambda i: key[:i] + key[i + 1:i + 2] + key[i:i + 1] + key[i + 2:]),
        st.tuples(st.integers(0, n - 1), st.sampled_from("_-x1 ")).map(lambda t: key[:t[0]] + t[1] + key[t[0] + 1:]),
    )


def _typos(key: str) -> st.SearchStrategy[str]:
    """Close misspellings of a real key: one edit, upper case, dashes, padding (which is stripped: valid)."""
    return st.one_of(_one_edit(key), st.just(key.upper()), st.just(key.replace("_", "-")), st.just(f" {key} "))


_values = st.one_of(
    st.integers(-(10**30), 10**30).map(str), st.integers(-3, 3000).map(str), FLOATS.map(repr), FLOATS.map(str),
    st.sampled_from(["2.5", "0.0", "1e3", "1e-3", "1_000", "0x10", "True", "false", "yes", "off", "None", "null",
                     "", "(1,2)", "(1, 2, 3)", "1,2", "()", "(", ")", ",", "a,b", "(0.5,)", "[1, 2]", "1" * 5000,
                     "٣", "１２", "½", "💥", "\x00", "'x'", "=", "a=b"]),
    st.lists(st.one_of(st.integers(-5, 3000).map(str), FLOATS.map(repr), st.text(max_size=3)), max_size=4).map(
        lambda xs: ("(" if len(xs) % 2 else "") + ",".join(xs) + (")" if len(xs) % 2 else "")),
    st.text(max_size=12),
)


def _typed_raw(tp) -> st.SearchStrategy[str]:
    """Strings that should cast to ``tp`` (plus the usual spellings: 1e3 for ints, yes/off for bools)."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        parts = (st.lists(_typed_raw(args[0]), max_size=4) if args[-1] is Ellipsis
                 else st.tuples(*map(_typed_raw, args)).map(list))
        return st.tuples(parts, st.booleans()).map(lambda t: ("({})" if t[1] else "{}").format(",".join(t[0])))
    if typing.get_origin(tp) is typing.Literal:
        return st.sampled_from(typing.get_args(tp))
    return {int: st.one_of(st.integers(-(10**20), 10**20).map(str), st.sampled_from(["1e3", "4.0", " 7 "])),
            float: st.one_of(FLOATS.map(repr), st.integers(-5, 5).map(str)),
            bool: st.sampled_from(["true", "False", "1", "0", "yes", "NO", "on", "off"]),
            str: st.text(alphabet=st.characters(blacklist_characters=",()"), max_size=8)}[tp]


def _items(cls) -> st.SearchStrategy[list[str]]:
    types_ = field_types(cls)
    keys = sorted(types_) + sorted(k for k in renamed_keys(cls) if k not in types_)  # + deprecated names
    typed = st.sampled_from(keys).flatmap(lambda k: st.tuples(st.just(k), st.just("="), _typed_raw(_key_type(cls, k))))
    key = st.one_of(st.sampled_from(keys), st.sampled_from(keys).flatmap(_typos), st.text(max_size=10))
    item = st.one_of(typed.map("".join), typed.map("".join),
                     st.tuples(key, st.sampled_from(["=", " = ", "=="]), _values).map("".join),
                     st.text(max_size=20))
    return st.lists(item, min_size=1, max_size=3)


def _key_type(cls, key: str):
    """The type ``--set key=`` is cast to (a deprecated name: its old type, else its new field's)."""
    types_ = field_types(cls)
    if key in types_:
        return types_[key]
    renamed = renamed_keys(cls)[key]
    return renamed.old_type or types_[renamed.new]


def _has_type(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return isinstance(value, tuple) and all(_has_type(v, args[0]) for v in value)
        return isinstance(value, tuple) and len(value) == len(args) and all(map(_has_type, value, args))
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if tp is int:
        return type(value) is int
    return type(value) is tp


def _check_overrides(cfg, items: list[str]) -> None:
    try:
        out = apply_overrides(cfg, items)
    except ConfigError as exc:
        assert str(exc)
        event("ConfigError")
        return
    event("applied")
    types_ = field_types(cfg)
    for name, tp in types_.items():
        assert _has_type(getattr(out, name), tp), (name, getattr(out, name), tp)
    key, raw = parse_override(items[-1])
    assert key in types_ or key in renamed_keys(cfg)  # every applied item named a real field or an old name of one


@fuzz("config_overrides_segmentation")
@given(items=_items(SegmentationConfig))
@example(items=["epochs=2.5"])  # fractions for ints are refused
@example(items=["epochs=" + "1" * 5000])  # > 4300 digits: int() refuses
@example(items=["tta_scales=(0.5,1.0"])
@example(items=["epoch=3"])  # close typo
@example(items=["class_weights="])
def test_fuzz_config_overrides_segmentation(items):
    _check_overrides(SegmentationConfig(), items)


@fuzz("config_overrides_detection")
@given(items=_items(DetectionConfig))
@example(items=["rpn_pre_nms_top_n=(1,2,3)"])
@example(items=["rpn_pre_nms_top_n=1e3, 2"])
@example(items=["splits=a,,b"])
@example(items=["hflip=maybe"])  # deprecated name (now hflip_p), still cast as a bool
@example(items=["hflip=yes"])
@example(items=["tta_merge=avg"])  # Literal: refused, naming nms / wbf
def test_fuzz_config_overrides_detection(items):
    _check_overrides(DetectionConfig(), items)


@fuzz("config_typed_values_apply")
@given(cls=st.sampled_from([SegmentationConfig, DetectionConfig]), data=st.data())
def test_fuzz_config_typed_values_apply(cls, data):
    """Well-typed values (ints as 1e3 / 4.0 too, bools as yes/off, tuples with or without parentheses)
    are always accepted and give the annotated type."""
    types_ = field_types(cls)
    key = data.draw(st.sampled_from(sorted(types_)), label="key")
    raw = data.draw(_typed_raw(types_[key]), label="raw")
    out = apply_overrides(cls(), [f"{key}={raw}"])
    assert _has_type(getattr(out, key), types_[key])


@fuzz("config_typo_suggestions")
@given(cls=st.sampled_from([SegmentationConfig, DetectionConfig]), data=st.data())
@example(cls=SegmentationConfig, data=None)
def test_fuzz_config_typo_suggestions(cls, data):
    """A one-edit misspelling of a real key is refused and the message suggests close keys."""
    keys = sorted(field_types(cls))
    if data is None:  # the explicit example
        key, typo = "epochs", "epoch"
    else:
        key = data.draw(st.sampled_from(keys), label="key")
        typo = data.draw(_one_edit(key).filter(lambda t: t.strip() not in keys and t.strip() not in renamed_keys(cls)),
                         label="typo")
    with pytest.raises(ConfigError, match=r"unknown config key .*; did you mean") as info:
        apply_overrides(cls(), [f"{typo}=1"])
    if data is None:
        assert "did you mean epochs" in str(info.value)


_TYPES = [int, float, str, bool, int | None, typing.Optional[float], tuple[int, ...], tuple[float, float],
          tuple[str, ...], typing.Literal["a", "b"], tuple[int, ...] | None, dict, list[int]]


@fuzz("config_cast_value_types")
@given(raw=_values, tp=st.sampled_from(_TYPES))
@example(raw="inf", tp=int)
@example(raw="nan", tp=int)
@example(raw="", tp=tuple[float, float])
def test_fuzz_config_cast_value_types(raw, tp):
    try:
        value = cast_value("k", raw, tp)
    except ConfigError as exc:
        assert "k" in str(exc)
        event("ConfigError")
        return
    event("cast")
    assert _has_type(value, tp), (raw, tp, value)


# ============================================================================ DLC / Caltech importer


def _dlc_lines(first: int = 0, n_rows: int = 4) -> list[list[str]]:
    """A tiny valid DLC multi-animal CSV (2 individuals x 2 parts x x/y/likelihood), as cells."""
    cols = [(ind, p, c) for ind in ("individual1", "individual2") for p in ("nose", "tail")
            for c in ("x", "y", "likelihood")]
    lines = [["scorer"] + ["net"] * len(cols)]
    lines += [[name] + [c[i] for c in cols] for i, name in enumerate(["individuals", "bodyparts", "coords"])]
    for f in range(first, first + n_rows):
        lines.append([str(f)] + ["" if (f == first and k < 3) else f"{f + k / 10:.1f}" for k in range(len(cols))])
    return lines


_DLC_TOKENS = ["x", "y", "likelihood", "individual3", "nose", "scorer", "coords", "-1", "0", "3"]


def _check_dlc(path: Path) -> None:
    try:
        long = read_dlc_csv(path)
    except BehaviorDataError as exc:
        assert path.name in str(exc)
        event("BehaviorDataError")
        return
    event("parsed")
    n = long.attrs["n_frames"]
    assert list(long.columns) == ["video_frame", "mouse_id", "bodypart", "x", "y", "likelihood"]
    assert long["video_frame"].dtype == np.int64 and long["mouse_id"].dtype.kind == "i"
    assert ((long["video_frame"] >= 0) & (long["video_frame"] < n)).all()
    assert (long["mouse_id"] >= 1).all() and long[["x", "y"]].notna().all().all()


@fuzz("dlc_mutated")
@given(ops=_ops(_DLC_TOKENS, 4), first=st.integers(0, 2), n_rows=st.integers(0, 5), gz=st.booleans())
@example(ops=[("set", 5, 0, "inf")], first=0, n_rows=3, gz=False)  # was IntCastingNaNError
@example(ops=[("set", 5, 0, "1e30")], first=0, n_rows=3, gz=False)  # was int64 garbage frame
@example(ops=[("set", 5, 0, "1.5")], first=0, n_rows=3, gz=False)  # was truncated to frame 1
@example(ops=[("set", 3, 3, "x")], first=0, n_rows=2, gz=False)  # duplicate x: was ValueError 1-dimensional
@example(ops=[("set", 2, 1, "head")], first=0, n_rows=2, gz=False)  # (individual1, head) has no y: was KeyError
@example(ops=[("trunc", 0, 7, "")], first=0, n_rows=3, gz=True)  # truncated gzip stream
def test_fuzz_dlc_mutated(tmp_path, ops, first, n_rows, gz):
    text = _mutate(_dlc_lines(first, n_rows), ops)
    if gz:
        path = tmp_path / "1DLC_fuzz.csv.gz"
        data = gzip.compress(_mutate(_dlc_lines(first, n_rows), [o for o in ops if o[0] != "trunc"]).encode(
            "utf-8", errors="surrogatepass"))
        trunc = [o[2] for o in ops if o[0] == "trunc"]
        path.write_bytes(data[:trunc[-1] * 5] if trunc else data)
    else:
        path = write_text(tmp_path / "1DLC_fuzz.csv", text)
    _check_dlc(path)


@fuzz("dlc_bytes")
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".csv", ".csv.gz"]))
@example(data=b"", suffix=".csv")
@example(data=b"\x1f\x8b\x08\x00garbage", suffix=".csv.gz")
@example(data=b"scorer,a\nindividuals,b\nbodyparts,c\ncoords,x\n", suffix=".csv")
def test_fuzz_dlc_bytes(tmp_path, data, suffix):
    path = tmp_path / f"1DLC_fuzz{suffix}"
    path.write_bytes(data)
    _check_dlc(path)


ANNOT_HEADER = ["Caltech Behavior Annotator - Annotation File", "", "Configuration file:", "base\tz",
                "social\ts", "chase\tc", ""]


def _annot_lines() -> list[list[str]]:
    """A tiny valid Caltech annotation as lines of tab-separated fields."""
    lines = [[h] for h in ANNOT_HEADER]
    lines += [["S1:", "start", "end", "type"], ["-" * 20], ["   ", "1", "4", "social"], ["   ", "5", "9", "base"],
              ["   ", "10", "14", "social"], [""], ["S2:", "start", "end", "type"], ["-" * 20],
              ["   ", "1", "2", "base"], ["   ", "3", "3", "chase"], ["   ", "4", "14", "base"]]
    return lines


_ANNOT_TOKENS = ["S1:", "S3:", "base", "social", "chase", "dance", "0", "-1", "15", "3", "Configuration file:",
                 "start", "end", "type"]


def _check_caltech(path: Path, n_frames: int) -> None:
    try:
        streams = read_caltech_annotation(path)
        vocab = infer_streams([streams])
    except BehaviorDataError as exc:
        assert path.name in str(exc) or "streams" in str(exc)
        event("BehaviorDataError")
        return
    event("parsed")
    assert streams and all(name.startswith("S") for name in streams)
    assert set(vocab.values()) <= set(streams)
    for bouts in streams.values():
        assert list(bouts.columns) == ["start", "end", "type"]
        assert bouts["start"].dtype == np.int64 and bouts["end"].dtype == np.int64
        assert (bouts["start"] >= 1).all() and (bouts["end"] >= bouts["start"]).all()
        assert (bouts["start"].to_numpy()[1:] > bouts["end"].to_numpy()[:-1]).all()  # in order, no overlap
    ann = bouts_to_annotation(streams, n_frames)
    assert (ann["start_frame"] >= 0).all() and (ann["stop_frame"] <= n_frames).all()
    assert (ann["start_frame"] < ann["stop_frame"]).all() and (ann["action"] != "base").all()


def _join_annot(lines: list[list[str]], newline: str) -> str:
    return newline.join("\t".join(line) for line in lines) + newline


@fuzz("caltech_mutated")
@given(ops=_ops(_ANNOT_TOKENS, 4), newline=st.sampled_from(["\r\n", "\n", "\r"]), n_frames=st.integers(0, 20))
@example(ops=[("set", 9, 2, "99999999999999999999999")], newline="\r\n", n_frames=11)  # was OverflowError
@example(ops=[("set", 9, 1, "1e3")], newline="\r\n", n_frames=11)
@example(ops=[("dropline", 7, 0, "")], newline="\r\n", n_frames=11)  # data line before any stream header
def test_fuzz_caltech_mutated(tmp_path, ops, newline, n_frames):
    lines = [list(line) for line in _annot_lines()]
    text = _mutate(lines, ops, sep="\t").replace("\n", newline)
    _check_caltech(write_text(tmp_path / "3_annot.txt", text), n_frames)


@fuzz("caltech_text")
@given(data=st.one_of(st.binary(max_size=150).map(lambda b: b.decode("latin-1")), st.text(max_size=150),
                      st.text(max_size=60).map(lambda t: _join_annot(_annot_lines(), "\r\n") + t)),
       n_frames=st.integers(0, 20))
@example(data="S1:\tstart\tend\ttype\n", n_frames=0)  # a stream without bouts
def test_fuzz_caltech_text(tmp_path, data, n_frames):
    _check_caltech(write_text(tmp_path / "3_annot.txt", data), n_frames)


@fuzz("import_dlc_caltech")
@given(dlc_ops=_ops(_DLC_TOKENS, 1), annot_ops=_ops(_ANNOT_TOKENS, 1), n_rows=st.integers(1, 5),
       streams=st.sampled_from([None, {"social": "S1", "chase": "S2"}, {"social": "S2"}]))
def test_fuzz_import_dlc_caltech(tmp_path_factory, dlc_ops, annot_ops, n_rows, streams):
    tmp = tmp_path_factory.mktemp("imp")
    dlc = write_text(tmp / "3DLC_a.csv", _mutate(_dlc_lines(0, n_rows), dlc_ops[:1]))
    ann = write_text(tmp / "3_annot.txt", _mutate(_annot_lines(), annot_ops[:1], sep="\t"))
    try:
        meta = import_dlc_caltech([dlc], [ann], tmp / "out", "Fuzz", fps=10, pix_per_cm=5, arena_cm=(4, 3),
                                  streams=streams)
    except BehaviorDataError as exc:
        assert str(exc)
        event("BehaviorDataError")
        return
    event("imported")
    assert len(meta) == 1 and int(meta["video_id"].iloc[0]) == 3


# ===================================================================== MABe interval post-processing

ACTIONS = ["attack", "mount", "rear"]


def _check_intervals(out, n_frames: int, min_duration: int, allowed=None) -> None:
    prev_action, prev_stop = None, 0
    for action, start, stop in out:
        assert type(start) is int and type(stop) is int and action in ACTIONS
        assert 0 <= start < stop <= n_frames and stop - start >= min_duration
        assert start >= prev_stop  # sorted, non-overlapping: one action per frame
        assert not (start == prev_stop and action == prev_action)  # maximal runs
        if allowed is not None:
            assert allowed[ACTIONS.index(action)]
        prev_action, prev_stop = action, stop


@fuzz("intervals_round_trip")
@given(labels=st.lists(st.integers(-1, 2), max_size=200).map(lambda xs: np.array(xs, np.int64)),
       noise=st.floats(0, 0.49, allow_subnormal=False),
       min_duration=st.integers(1, 6))
@example(labels=np.array([], int), noise=0.0, min_duration=1)
@example(labels=np.array([0]), noise=0.0, min_duration=1)
@example(labels=np.array([-1]), noise=0.0, min_duration=1)
def test_fuzz_intervals_round_trip(labels, noise, min_duration):
    """frames -> one-hot probs -> intervals -> annotation rows -> frames (meta.frame_labels)."""
    n = labels.size
    probs = np.full((n, len(ACTIONS)), noise)
    probs[np.flatnonzero(labels >= 0), labels[labels >= 0]] = 1.0
    out = probs_to_intervals(probs, ACTIONS, 0.5, min_duration=min_duration)
    _check_intervals(out, n, min_duration)
    ann = pd.DataFrame([(1, 2, a, s, e) for a, s, e in out],
                       columns=["agent_id", "target_id", "action", "start_frame", "stop_frame"])
    back = frame_labels(ann, n, [(1, 2, a) for a in ACTIONS])
    assert back.shape == (n, len(ACTIONS)) and (back.sum(axis=1) <= 1).all()
    rebuilt = np.where(back.any(axis=1), back.argmax(axis=1), -1) if n else np.zeros(0, int)
    # lossless for runs >= min_duration; shorter runs become background
    expected = labels.copy()
    i = 0
    while i < n:
        j = i
        while j < n and labels[j] == labels[i]:
            j += 1
        if j - i < min_duration:
            expected[i:j] = -1
        i = j
    np.testing.assert_array_equal(rebuilt, expected)


@fuzz("intervals_random_probs")
@given(probs=st.integers(0, 60).flatmap(lambda t: arrays(np.float64, (t, 3), elements=FLOATS)),
       thresholds=st.one_of(FLOATS, st.lists(FLOATS, min_size=3, max_size=3).map(np.array),
                            st.fixed_dictionaries({a: FLOATS for a in ACTIONS})),
       min_duration=st.integers(1, 5), allowed=st.none() | st.lists(st.booleans(), min_size=3, max_size=3))
def test_fuzz_intervals_random_probs(probs, thresholds, min_duration, allowed):
    with np.errstate(invalid="ignore"):
        out = probs_to_intervals(probs, ACTIONS, thresholds, min_duration=min_duration, allowed=allowed)
    _check_intervals(out, probs.shape[0], min_duration, allowed)


@fuzz("intervals_to_valid_submission")
@given(seqs=st.lists(st.integers(0, 40).flatmap(
    lambda t: arrays(np.float64, (t, 3), elements=st.floats(0, 1, allow_subnormal=False))), min_size=1, max_size=3),
    window=st.integers(1, 50), threshold=st.floats(0, 1, allow_subnormal=False), min_duration=st.integers(1, 4))
def test_fuzz_intervals_to_valid_submission(seqs, window, threshold, min_duration):
    """smooth -> intervals -> submission rows always pass the MABe validator (no overlaps)."""
    pairs = [(101, "mouse1", "mouse2"), (101, "mouse1", "self"), (202, "mouse2", "mouse1")]
    allowed = {101: {"mouse2": [True, False, False], "self": [False, False, True]},
               202: {"mouse1": [True, False, False]}}
    actions = ["attack", "sniff", "rear"]
    rows = []
    for (video, agent, target), probs in zip(pairs, seqs):
        out = probs_to_intervals(smooth_probs(probs, window), actions, threshold, min_duration=min_duration,
                                 allowed=allowed[video][target])
        if video == 202:
            out = [("chase", s, e) for _, s, e in out]
        rows += [dict(video_id=video, agent_id=agent, target_id=target, action=a, start_frame=s, stop_frame=e)
                 for a, s, e in out]
    sub = intervals_to_submission(rows)
    assert list(sub.columns) == MABE_COLUMNS and sub["row_id"].tolist() == list(range(len(rows)))
    if rows:
        validate_mabe(sub, VIDEOS)  # raises SubmissionError on any problem


@fuzz("smooth_probs")
@given(probs=st.integers(0, 40).flatmap(
    lambda t: arrays(np.float64, (t, 2), elements=st.floats(-1e6, 1e6, allow_subnormal=False))),
    window=st.one_of(st.integers(1, 100), st.integers(-3, 0), st.integers(10**18, 10**30), FLOATS,
                     st.sampled_from([2.0, 2.5, "3", None, True])))
@example(probs=np.zeros((3, 2)), window=float("inf"))  # was OverflowError
@example(probs=np.zeros((3, 2)), window=float("nan"))  # was bare ValueError "cannot convert float NaN"
@example(probs=np.ones((3, 2)), window=10**30)  # was OverflowError (Python int too large)
def test_fuzz_smooth_probs(probs, window):
    try:
        out = smooth_probs(probs, window)
    except ValueError as exc:
        assert "window" in str(exc)
        return
    assert out.shape == probs.shape and out.dtype == np.float64
    if probs.size:
        lo, hi = probs.min(axis=0), probs.max(axis=0)
        tol = 1e-9 * np.maximum(1.0, np.abs(probs).max())
        assert ((out >= lo - tol) & (out <= hi + tol)).all()  # a mean stays inside the range
    if probs.shape[0] and int(window) >= 2 * probs.shape[0]:
        np.testing.assert_allclose(out, np.broadcast_to(probs.mean(axis=0), probs.shape), atol=1e-6)


def test_regression_smooth_probs_bad_windows():
    """Regression: inf / NaN windows raised OverflowError / an unnamed ValueError; huge ones overflowed."""
    for window in (float("inf"), float("nan"), 2.5, 0, -1, "3", None):
        with pytest.raises(ValueError, match="window must be a positive integer"):
            smooth_probs(np.zeros((3, 2)), window)
    np.testing.assert_allclose(smooth_probs(np.arange(6.0).reshape(3, 2), 10**30), [[2, 3]] * 3)


@fuzz("tune_thresholds")
@given(seqs=st.lists(st.integers(0, 30).flatmap(lambda t: st.tuples(
    arrays(np.float64, (t, 3), elements=st.floats(0, 1, allow_subnormal=False)),
    arrays(np.int64, (t, 3), elements=st.integers(-1, 1)))), min_size=1, max_size=3),
    grid=st.none() | st.lists(st.floats(0, 1, allow_subnormal=False), min_size=1, max_size=5))
def test_fuzz_tune_thresholds(seqs, grid):
    try:
        th = tune_thresholds([p for p, _ in seqs], [y for _, y in seqs], ACTIONS, grid)
    except ValueError as exc:
        assert str(exc)
        return
    assert set(th) == set(ACTIONS) and all(isinstance(v, float) and math.isfinite(v) for v in th.values())


# ============================================================== YOLO labels: adversarial bytes only

@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbf0 0.5 0.5 0.1 0.1\n",  # UTF-8 BOM before a valid line
    "0 0.5 0.5 0.1 0.1\n".encode("utf-16"),  # UTF-16 with BOM
    b"0 0.5 0.5 0.1 0.1\x00\n",  # NUL inside a line
    b"\x00" * 16,
    b"0 0.5 0.5 0.1 0.1\r\r\n\x0b\x0c\n",  # odd line breaks / vertical tab / form feed
    b"0 0.5 0.5 0.1 \xc2\xa00.1\n",  # NBSP separator
    b"\xff\xfe\xfd",  # invalid UTF-8
    b"0 0.5 0.5 0.1 0.1" * 1000,  # one huge line
])
def test_yolo_label_adversarial_bytes(tmp_path, data):
    path = tmp_path / "adv.txt"
    path.write_bytes(data)
    try:
        boxes = parse_yolo_label(path, 3)
    except LabelError as exc:
        assert path.name in str(exc)
        return
    assert boxes.shape[1] == 5 and np.isfinite(boxes).all()


# ==================================================== regressions: crashes found by these fuzzers


def test_regression_validate_non_finite_numbers(tmp_path):
    """inf / 1e400 in an integral numeric column raised IntCastingNaNError from _parsed."""
    sample = write_text(tmp_path / "sample.csv", "id,target\n1,0\n2,1\n")
    out = validate(write_text(tmp_path / "sub.csv", "id,target\n1,inf\n2,1e400\n"), sample)
    assert out["target"].tolist() == [np.inf, np.inf]  # kept as float, like inf next to fractions
    out = validate(write_text(tmp_path / "sub.csv", "id,target\n1,0\n2,1\n"), sample)
    assert out["target"].dtype == np.int64  # integral finite values still become int64


def test_regression_validate_dataframe_odd_ids(tmp_path):
    """Float ids with inf (OverflowError) or NaN (TypeError in sorted) are reported, not raised raw."""
    sample = write_text(tmp_path / "sample.csv", "id,target\n1,0\n2,1\n")
    with pytest.raises(SubmissionError, match=r"id\(s\) in .id. are not in the sample: inf$"):
        validate(pd.DataFrame({"id": [1.0, np.inf], "target": [0, 1]}), sample)
    with pytest.raises(SubmissionError, match=r"column 'id' is empty/NaN in 1 row\(s\): row 2"):
        validate(pd.DataFrame({"id": [1.0, np.nan], "target": [0, 1]}), sample)
    with pytest.raises(SubmissionError, match=r"column 'id' is empty/NaN"):
        validate(pd.DataFrame({"id": ["1", None], "target": [0, 1]}, dtype=object), sample)


@pytest.mark.parametrize("col, value", [("start_frame", "1e300"), ("stop_frame", "1e19"), ("row_id", "1e300")])
def test_regression_mabe_huge_numbers(col, value):
    """Frames / row ids past int64 were accepted and written as -9223372036854775808."""
    df = pd.DataFrame([VALID_MABE[1]], columns=MABE_COLUMNS)
    df.loc[0, col] = value
    with pytest.raises(SubmissionError, match=f"{col} must be an integer"):
        validate_mabe(df, VIDEOS)


@pytest.mark.parametrize("first", ["+1", "1.0", " 1"])
def test_regression_mabe_row_ids_compare_as_integers(first):
    """row_id "+1" next to "1" passed as unique (text comparison) and was typed to two rows with id 1."""
    df = pd.DataFrame(VALID_MABE[1:], columns=MABE_COLUMNS)
    df.loc[0, "row_id"] = first
    needle = r"row_id must be unique; duplicated in 2 row\(s\): row 1 \(row_id=" + re.escape(first) + r"\), row 2"
    with pytest.raises(SubmissionError, match=needle):
        validate_mabe(df, VIDEOS)


@pytest.mark.parametrize("strict", [False, True])
def test_regression_mabe_padded_action_overlap(strict):
    """" sniff" overlapping attack: the validator compared unstripped text (so the row was "not labelled"
    and skipped by the overlap check) but wrote "sniff", on which the metric raises ValueError."""
    df = pd.DataFrame(VALID_MABE[1:], columns=MABE_COLUMNS)
    df.loc[1, ["action", "start_frame"]] = [" sniff", "5"]
    with pytest.raises(SubmissionError, match=r"1 overlap\(s\) of two actions .* video 101 mouse1->mouse2 at frame 5"):
        validate_mabe(df, VIDEOS, strict_actions=strict)


@pytest.mark.parametrize("index, needle", [
    ("inf", "integer frame indices"),  # IntCastingNaNError
    ("1e30", "integer frame indices"),  # frame -9223372036854775808
    ("1.5", "integer frame indices"),  # silently truncated to frame 1 (a duplicate of frame 1 or not)
])
def test_regression_dlc_bad_index(tmp_path, index, needle):
    lines = _dlc_lines(0, 3)
    lines[5][0] = index
    path = write_text(tmp_path / "1DLC_x.csv", _mutate(lines, []))
    with pytest.raises(BehaviorDataError, match=needle):
        read_dlc_csv(path)


def test_regression_dlc_bad_columns_and_gzip(tmp_path):
    lines = _dlc_lines(0, 2)
    lines[3][3] = "x"  # (individual1, nose) has x twice: ValueError "Per-column arrays must each be 1-dimensional"
    with pytest.raises(BehaviorDataError, match=r"\('individual1', 'nose', 'x'\)\] appear more than once"):
        read_dlc_csv(write_text(tmp_path / "1DLC_x.csv", _mutate(lines, [])))
    lines = _dlc_lines(0, 2)
    lines[2][1] = "head"  # (individual1, head) has only x: KeyError 'y'
    with pytest.raises(BehaviorDataError, match=r"\('individual1', 'head'\).*lack an x or a y"):
        read_dlc_csv(write_text(tmp_path / "1DLC_x.csv", _mutate(lines, [])))
    path = tmp_path / "1DLC_x.csv.gz"
    path.write_bytes(gzip.compress(_mutate(_dlc_lines(0, 3), []).encode())[:40])  # EOFError
    with pytest.raises(BehaviorDataError, match=r"1DLC_x\.csv\.gz: not a DeepLabCut .*EOFError"):
        read_dlc_csv(path)
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")  # gzip.BadGzipFile / zlib.error
    with pytest.raises(BehaviorDataError, match=r"1DLC_x\.csv\.gz: not a DeepLabCut"):
        read_dlc_csv(path)


def test_regression_caltech_huge_frame(tmp_path):
    """A bout end past int64 raised OverflowError when the bouts became an int64 DataFrame."""
    lines = _annot_lines()
    lines[9][2] = "99999999999999999999999"
    path = write_text(tmp_path / "3_annot.txt", _mutate(lines, [], sep="\t"))
    with pytest.raises(BehaviorDataError, match=r"3_annot\.txt: line 10: bout 1\.\.9+ must have .*<= 2\*\*53"):
        read_caltech_annotation(path)


def test_regression_config_int_non_finite_message():
    """'inf' / 5000-digit ints for an int field were refused as 'a fraction'."""
    for raw in ("inf", "nan", "1" * 5000):
        with pytest.raises(ConfigError, match=r"--set epochs=.*non-finite or too large"):
            apply_overrides(SegmentationConfig(), [f"epochs={raw}"])
    assert apply_overrides(SegmentationConfig(), ["epochs=1e3"]).epochs == 1000

