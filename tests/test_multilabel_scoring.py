"""Multi-label submissions with probability columns, and `kagglekit score` for the track:
checked against sklearn's average precision on held-out labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from kagglekit.demo.doors import generate_doors
from kagglekit.submission.rle import SubmissionError
from kagglekit.tasks.multilabel import lifecycle as L
from kagglekit.tasks.multilabel.config import MultiLabelConfig
from kagglekit.tasks.multilabel.task import MultiLabelTask


@pytest.fixture(scope="module")
def doors(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("doors")
    generate_doors(root, n=40, seed=3)
    return root


def solution_and_probs(doors: Path, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    labels = pd.read_csv(doors / "labels.csv", dtype={"image": str})
    solution = labels.iloc[:30].astype(str).copy()
    solution.loc[solution.index[:3], "hood"] = ""  # missing labels are not scored
    rng = np.random.default_rng(seed)
    attrs = [c for c in labels.columns if c != "image"]
    noisy = np.clip(labels.iloc[:30][attrs].to_numpy(float) * 0.6 + rng.random((30, len(attrs))) * 0.5, 0, 1)
    return solution, pd.DataFrame({"image": solution["image"], **{a: noisy[:, k] for k, a in enumerate(attrs)}})


def test_probability_submission_scores_like_sklearn(doors, tmp_path):
    task = MultiLabelTask(MultiLabelConfig(data_dir=str(doors), submission_values="probs"))
    solution, probs = solution_and_probs(doors)
    solution.to_csv(tmp_path / "solution.csv", index=False)
    probs.sample(frac=1.0, random_state=0).to_csv(tmp_path / "sub.csv", index=False)  # row order does not matter
    scored = task.score_submission(tmp_path / "sub.csv", tmp_path / "solution.csv")
    aps = []
    for attr in task.labels:
        y = pd.to_numeric(solution[attr], errors="coerce")
        keep = y.notna().to_numpy()
        aps.append(average_precision_score(y[keep].astype(int), probs[attr].to_numpy()[keep]))
    assert scored["mAP"] == pytest.approx(np.mean(aps), abs=1e-9)


def test_probability_submission_problems_are_listed(doors, tmp_path):
    task = MultiLabelTask(MultiLabelConfig(data_dir=str(doors), submission_values="probs"))
    solution, probs = solution_and_probs(doors)
    solution.to_csv(tmp_path / "solution.csv", index=False)
    probs.loc[2, "hood"] = 1.7
    probs.loc[4, "front_left"] = np.nan
    probs.iloc[1:].to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SubmissionError) as err:
        task.score_submission(tmp_path / "bad.csv", tmp_path / "solution.csv")
    text = "\n".join(err.value.problems)
    assert "missing" in text and "outside [0, 1]" in text and "2 value(s)" in text


def test_label_columns_stay_the_default(doors):
    frame = L.decisions(np.array([[0.2, 0.9]]), ["a", "b"], "multilabel", [0.5, 0.5])
    assert frame.to_dict("records") == [{"a": 0, "b": 1}]
    probs = L.decisions(np.array([[0.2, 0.9]]), ["a", "b"], "softmax", [], values="probs")
    assert probs.to_dict("records") == [{"a": 0.2, "b": 0.9}]
    assert L.value_columns(["a", "b"], "softmax") == ["state"]
