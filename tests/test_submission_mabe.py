"""MABe submission validation: each rule caught, a valid one passes, the real sample passes."""
from __future__ import annotations

import pandas as pd
import pytest

from kagglekit.submission import SubmissionError
from kagglekit.submission.mabe import MABE_COLUMNS, validate_mabe, write_mabe_submission
from tests.conftest import require_shared

VIDEOS = pd.DataFrame({
    "video_id": [101, 202],
    "behaviors_labeled": ['["mouse1,mouse2,attack", "mouse1,mouse2,sniff", "mouse1,self,rear"]',
                          '["\'mouse2\',\'mouse1\',\'chase\'"]'],  # stray quotes, as in two labs
})


def valid() -> pd.DataFrame:
    return pd.DataFrame([
        [0, 101, "mouse1", "mouse2", "attack", 0, 10],
        [1, 101, "mouse1", "mouse2", "sniff", 10, 20],     # touches attack: fine
        [2, 101, "mouse1", "self", "rear", 5, 15],         # other target may overlap
        [3, 101, "mouse1", "mouse2", "attack", 5, 8],      # same action overlapping: harmless
        [4, 202, "mouse2", "mouse1", "chase", 0, 3],
    ], columns=MABE_COLUMNS)


def problems_of(df: pd.DataFrame, **kw) -> str:
    with pytest.raises(SubmissionError) as info:
        validate_mabe(df, VIDEOS, **kw)
    return str(info.value)


def test_valid_passes_and_is_typed():
    out = validate_mabe(valid(), VIDEOS)
    assert list(out.columns) == MABE_COLUMNS and len(out) == 5
    assert out["start_frame"].dtype == "int64" and out["video_id"].dtype == "int64"


def test_columns_must_match():
    msg = problems_of(valid().drop(columns="action"))
    assert "missing column(s): action" in msg
    assert "wrong order" in problems_of(valid()[MABE_COLUMNS[::-1]])


def test_row_id_unique_ints():
    df = valid()
    df.loc[1, "row_id"] = 0
    assert "row_id must be unique" in problems_of(df)
    df = valid().astype({"row_id": object})
    df.loc[2, "row_id"] = "x"
    assert "row_id must be an integer: 1 row(s): row 3 (row_id=x)" in problems_of(df)


def test_unknown_video():
    df = valid()
    df.loc[4, "video_id"] = 999
    assert "video_id not in the test videos (999)" in problems_of(df)


def test_agent_target_form():
    df = valid()
    df.loc[0, "agent_id"] = "1"
    df.loc[1, "target_id"] = "mouse_2"
    msg = problems_of(df)
    assert "agent_id must look like mouseK" in msg and "target_id must look like mouseK or self" in msg


def test_frames_ints_non_negative_and_ordered():
    df = valid().astype({"start_frame": object})
    df.loc[0, "start_frame"] = -1
    df.loc[1, "start_frame"] = 2.5
    df.loc[2, "stop_frame"] = 5  # start 5 == stop 5
    msg = problems_of(df)
    assert "start_frame must be an integer >= 0" in msg and "2 row(s): row 1 (row_id=0), row 2" in msg
    assert "start_frame must be < stop_frame" in msg and "row 3 (row_id=2)" in msg


def test_action_must_be_labelled_for_the_video():
    df = valid()
    df.loc[4, "action"] = "attack"  # video 202 only labels mouse2->mouse1 chase
    msg = problems_of(df)
    assert "not in the video's behaviors_labeled" in msg and "row 5 (row_id=4)" in msg
    assert len(validate_mabe(df, VIDEOS, strict_actions=False)) == 5


def test_two_actions_overlapping_caught():
    df = pd.concat([valid(), pd.DataFrame([[5, 101, "mouse1", "mouse2", "sniff", 9, 12]], columns=MABE_COLUMNS)])
    assert "video 101 mouse1->mouse2 at frame 9" in problems_of(df)


def test_every_problem_listed_at_once_and_empty_rejected():
    df = valid()
    df.loc[0, "agent_id"] = "m1"
    df.loc[1, "video_id"] = 5
    with pytest.raises(SubmissionError) as info:
        validate_mabe(df, VIDEOS)
    assert len(info.value.problems) >= 3  # agent form, unknown video, unlabelled action
    assert "no rows" in problems_of(valid().iloc[:0])


def test_write_atomic_and_no_overwrite(tmp_path):
    path = tmp_path / "sub.csv"
    write_mabe_submission(valid(), path, VIDEOS)
    assert pd.read_csv(path).equals(validate_mabe(valid(), VIDEOS))
    with pytest.raises(FileExistsError):
        write_mabe_submission(valid(), path, VIDEOS)
    bad = valid()
    bad.loc[0, "stop_frame"] = 0
    with pytest.raises(SubmissionError):
        write_mabe_submission(bad, tmp_path / "bad.csv", VIDEOS)
    assert not (tmp_path / "bad.csv").exists()
    write_mabe_submission(valid().iloc[:2], path, VIDEOS, overwrite=True)
    assert len(pd.read_csv(path)) == 2


def test_real_sample_submission_with_real_test_csv():
    root = require_shared("mabe2025_meta")
    test = pd.read_csv(root / "test.csv")
    sample = root / "sample_submission.csv"
    # The public placeholder predicts mouse1->mouse2 "sniff", which test.csv's video does not label:
    # well-formed, ignored by the metric, so it passes unless actions are checked strictly.
    out = validate_mabe(sample, test, strict_actions=False)
    assert out.iloc[0].tolist() == [0, 438887472, "mouse1", "mouse2", "sniff", 0, 1]
    assert "sniff" not in test["behaviors_labeled"].iloc[0]
    with pytest.raises(SubmissionError, match="behaviors_labeled"):
        validate_mabe(sample, test)
    relabelled = pd.read_csv(sample).assign(action="attack")  # a labelled action: strict passes too
    assert len(validate_mabe(relabelled, test)) == 1
