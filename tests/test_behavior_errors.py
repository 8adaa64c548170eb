"""Behaviour (competition view) error analysis: per-video official scores and the worst-video
choice (a true argsort), the frame-level action confusion against sklearn, the ethograms, and the
fold report hook that links them."""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from kagglekit.metrics.mabe import mabe_score
from kagglekit.tasks.behavior.report import (
    PairTrack,
    action_confusion,
    frame_classes,
    pairs_analysis_section,
    per_video_scores,
    prediction_mask,
    worst_videos,
)

ACTIONS = ["approach", "chase", "sniff"]
LABELED = '["mouse1,mouse2,approach", "mouse1,mouse2,chase", "mouse1,mouse2,sniff"]'


def _rows(video: int, spans: list[tuple[str, int, int]], lab: str = "LabA") -> list[dict]:
    return [{"video_id": video, "agent_id": "mouse1", "target_id": "mouse2", "action": a, "start_frame": s,
             "stop_frame": e, "lab_id": lab, "behaviors_labeled": LABELED} for a, s, e in spans]


def solution_and_submission() -> tuple[pd.DataFrame, pd.DataFrame]:
    solution = pd.DataFrame(_rows(1, [("chase", 0, 10), ("sniff", 20, 30)]) + _rows(2, [("approach", 5, 15)])
                            + _rows(3, [("sniff", 0, 40)], lab="LabB") + _rows(4, [("chase", 0, 10)]))
    submission = pd.DataFrame(_rows(1, [("chase", 2, 10), ("sniff", 25, 35)]) + _rows(2, [("approach", 5, 15)])
                              + _rows(3, [("sniff", 30, 60), ("chase", 0, 5)]))  # video 4: nothing submitted
    return solution, submission.drop(columns=["lab_id", "behaviors_labeled"])


def test_per_video_scores_are_the_official_metric_of_each_video_and_worst_is_the_argsort():
    solution, submission = solution_and_submission()
    scores = per_video_scores(solution, submission)
    assert list(scores) == ["1", "2", "3", "4"]
    for video in ("1", "2", "3"):
        mine = solution["video_id"].astype(str) == video
        assert scores[video] == pytest.approx(mabe_score(solution[mine], submission[submission["video_id"].astype(str) == video]))
    assert scores["2"] == pytest.approx(1.0) and scores["4"] == 0.0
    values = np.array(list(scores.values()))
    assert worst_videos(scores) == [list(scores)[i] for i in np.argsort(values, kind="stable")]
    assert worst_videos(scores, 2) == ["4", "3"]
    assert worst_videos({"a": 0.5, "b": float("nan"), "c": 0.5, "d": 0.1}) == ["d", "a", "c"]  # ties: stable, NaN out


def _random_tracks(seed: int, n: int = 5, frames: int = 200) -> list[PairTrack]:
    rng = np.random.default_rng(seed)
    tracks = []
    for i in range(n):
        truth = rng.random((frames, len(ACTIONS))) < 0.15  # overlaps allowed: the first action counts
        intervals = []
        for _ in range(6):
            start = int(rng.integers(0, frames - 20))
            intervals.append((ACTIONS[int(rng.integers(len(ACTIONS)))], start, start + int(rng.integers(1, 20))))
        pred = prediction_mask(intervals, ACTIONS, frames)
        pred &= np.cumsum(pred, axis=1) == 1  # one action per frame, as the intervals are built
        tracks.append(PairTrack(str(i // 2), "LabA", f"mouse1 -> mouse{2 + i % 2}", truth, pred, np.ones(len(ACTIONS), bool)))
    return tracks


def test_action_confusion_equals_sklearn_on_the_same_frames():
    from sklearn.metrics import confusion_matrix
    tracks = _random_tracks(0)
    truth = np.concatenate([frame_classes(t.truth) for t in tracks])
    pred = np.concatenate([frame_classes(t.prediction) for t in tracks])
    expected = confusion_matrix(truth, pred, labels=list(range(len(ACTIONS) + 1)))
    np.testing.assert_array_equal(action_confusion(tracks, len(ACTIONS)), expected)
    assert frame_classes(np.array([[0, 0, 0], [0, 1, 1], [1, 0, 0]], bool)).tolist() == [0, 2, 1]
    mask = prediction_mask([("sniff", 2, 4), ("approach", 0, 1)], ACTIONS, 5)
    assert mask.astype(int).tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 0]]


def test_section_ranks_videos_and_draws_ethograms(tmp_path):
    solution, submission = solution_and_submission()
    frames = 60
    tracks = []
    for video in (1, 2, 3, 4):
        truth = prediction_mask([(r.action, r.start_frame, r.stop_frame) for r in solution[solution.video_id == video].itertuples()],
                                ACTIONS, frames)
        pred = prediction_mask([(r.action, r.start_frame, r.stop_frame) for r in submission[submission.video_id == video].itertuples()],
                               ACTIONS, frames)
        tracks.append(PairTrack(str(video), "LabB" if video == 3 else "LabA", "mouse1 -> mouse2", truth, pred,
                                np.ones(3, bool)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a glyph missing from DejaVu Sans
        text = pairs_analysis_section(tmp_path, "mabe_x", 1, tracks, ACTIONS, solution, submission)
    scores = per_video_scores(solution, submission)
    table = text.split("### Worst videos")[1].split("![")[0].strip().splitlines()[3:]
    assert [row.split("|")[2].strip() for row in table] == worst_videos(scores)
    assert [float(row.split("|")[4]) for row in table] == pytest.approx([round(scores[v], 4) for v in worst_videos(scores)])
    for rank, video in enumerate(worst_videos(scores), start=1):
        assert f"![ethogram of video {video}](ethogram_worst{rank}.png)" in text
        assert (tmp_path / f"ethogram_worst{rank}.png").stat().st_size > 5_000
    assert "![action confusion](action_confusion.png)" in text and (tmp_path / "action_confusion.png").exists()
    assert "0 frame(s) with several annotated actions" in text
    assert "nothing to analyse" in pairs_analysis_section(tmp_path, "x", 0, [], ACTIONS, solution, submission)


def test_fold_report_of_the_pairs_view_links_the_pictures(in_tmp):
    """The hook on the generated mice: fold 0's OOF store written from noisy labels (no training),
    report_fold → the worst videos are those of lowest official score, recomputed here."""
    from kagglekit.cv import fold_ids
    from kagglekit.tasks.behavior.config import BehaviorConfig
    from kagglekit.tasks.behavior.intervals import intervals_to_submission, tune_thresholds
    from kagglekit.tasks.behavior.pairs import PairBehaviorTask
    cfg = replace(BehaviorConfig(name="mabe_e", view="pairs", pair_features=True).demo(), n_folds=2, demo_videos=6,
                  demo_frames=240)
    task = PairBehaviorTask(cfg)
    task.prepare_demo()
    _, valid = fold_ids(task.folds(), 0, "id")
    seqs = task.sequences(valid)
    rng = np.random.default_rng(0)
    probs = [np.clip(np.where(s.labels > 0.5, 0.7, 0.2) + rng.normal(0, 0.25, s.labels.shape), 0, 1).astype(np.float32)
             for s in seqs]
    fold_dir = in_tmp / "output/demo/mabe_e/fold0"
    task._write_store(fold_dir / "oof", 0, "oof", seqs, probs)
    thresholds = tune_thresholds(probs, [s.labels for s in seqs], task.actions)
    history = pd.DataFrame({"epoch": [1], "train_loss": [1.0], "valid_loss": [1.0], "valid_f1_macro": [0.1]})
    metrics = {"fold": 0, "thresholds": thresholds, "fold_mabe_score_in_fold_thresholds": 0.3, "best_epoch": 1}
    task.report_fold(fold_dir, history, metrics)
    report = (fold_dir / "report.md").read_text()
    stored = task.stored_probs(fold_dir / "oof", seqs)  # float16 in the store: what the report read
    submission = intervals_to_submission([r for s, p in zip(seqs, stored) for r in task.intervals(s, p, thresholds)])
    scores = per_video_scores(task.solution(valid), submission)
    worst = worst_videos(scores)
    table = report.split("### Worst videos")[1].split("![")[0].strip().splitlines()[3:]
    assert [row.split("|")[2].strip() for row in table] == worst and len(worst) == min(4, len(scores))
    assert all(f"(ethogram_worst{k}.png)" in report for k in range(1, len(worst) + 1))
    assert "(action_confusion.png)" in report
    (fold_dir / "oof" / "manifest.json").unlink()
    task.report_fold(fold_dir, history, metrics)
    assert "## Error analysis\nNot drawn:" in (fold_dir / "report.md").read_text()
