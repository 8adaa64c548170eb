"""Multi-label / state-classification side of the experiment lifecycle: the merged OOF scored
(mAP for sigmoid heads, macro F1 for the softmax over states), thresholds tuned on OOF, the test
submission (one row per test image: 0/1 per attribute at the OOF thresholds, or the state), its
validator, and the ensemble objective (probability blend, thresholds re-tuned on the blend)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from kagglekit.io import save_csv
from kagglekit.store.arrays import OOFError, iter_test_mean, missing_stores, read_predictions, require_same_ids
from kagglekit.submission.rle import SubmissionError
from kagglekit.submission.validate import id_coverage_problems


def merged_oof(exp_dir: Path, n_folds: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, probs (N, K) float32, targets (N, K) or (N,) int with -1 = missing), folds in order."""
    stores = [read_predictions(exp_dir / f"fold{k}" / "oof") for k in range(n_folds)]
    ids = [i for s in stores for i in s.ids]
    probs = np.concatenate([np.asarray(s.probs, np.float32) for s in stores])
    targets = np.concatenate([np.asarray(s.targets).astype(np.int64) for s in stores])
    return ids, probs, np.where(targets == 255, -1, targets)


def thresholds_of(report: dict[str, Any], labels: Sequence[str]) -> list[float]:
    """The per-attribute thresholds a multilabel report chose (empty for the softmax kind)."""
    return [float(report["per_attr"][a]["thr"]) for a in labels] if "per_attr" in report else []


def score(report: dict[str, Any], kind: str) -> float:
    return float(report["mAP"] if kind == "multilabel" else report["macro_f1"])


def value_columns(labels: Sequence[str], kind: str, values: str = "labels") -> list[str]:
    """The submission's columns after the id: one per attribute / state, or ``state``."""
    return list(labels) if kind == "multilabel" or values == "probs" else ["state"]


def decisions(probs: np.ndarray, labels: Sequence[str], kind: str, thresholds: Sequence[float],
              values: str = "labels") -> pd.DataFrame:
    """(N, K) probabilities → the submission's value columns: 0/1 per attribute at ``thresholds``
    (multilabel) or the argmax state (softmax); ``values="probs"``: the probabilities themselves,
    one column per attribute / state (competitions scored by AP / log loss / AUC)."""
    if values == "probs":
        return pd.DataFrame(np.round(probs.astype(np.float64), 6), columns=list(labels))
    if kind == "multilabel":
        return pd.DataFrame((probs >= np.asarray(thresholds)[None]).astype(int), columns=list(labels))
    return pd.DataFrame({"state": [labels[int(i)] for i in probs.argmax(1)]})


def test_mean(exp_dir: Path, n_folds: int) -> tuple[list[str], np.ndarray] | None:
    """Fold-averaged test probabilities, or None when a fold has no test predictions."""
    if missing_stores(exp_dir, n_folds, "test"):
        return None
    ids, chunks = [], []
    for chunk_ids, probs in iter_test_mean(exp_dir, n_folds):
        ids += chunk_ids
        chunks.append(probs)
    return ids, np.concatenate(chunks)


def _probability_problems(frame: pd.DataFrame, labels: Sequence[str]) -> list[str]:
    numbers = frame[list(labels)].apply(pd.to_numeric, errors="coerce")
    bad = (numbers.isna() | (numbers < 0) | (numbers > 1)).to_numpy()
    if not bad.any():
        return []
    row, col = np.argwhere(bad)[0]
    return [f"{int(bad.sum())} value(s) empty, not a number or outside [0, 1], e.g. row {row + 1} column {labels[col]}"]


def submission_problems(frame: pd.DataFrame, test_ids: Sequence[str], labels: Sequence[str], kind: str,
                        id_column: str, values: str = "labels") -> list[str]:
    """Every problem of a submission frame: columns, each test id exactly once, values."""
    expected = [id_column, *value_columns(labels, kind, values)]
    if list(frame.columns) != expected:
        return [f"columns are {list(frame.columns)}; expected {expected}"]
    problems = id_coverage_problems(frame[id_column], test_ids, id_column)
    if values == "probs":
        problems += _probability_problems(frame, labels)
    elif kind == "multilabel":
        values = frame[list(labels)]
        bad = ~values.isin([0, 1]) & ~values.isin(["0", "1"])
        if bad.to_numpy().any():
            row, col = np.argwhere(bad.to_numpy())[0]
            problems.append(f"{int(bad.to_numpy().sum())} value(s) not 0/1, e.g. row {row + 1} column {labels[col]}")
    else:
        unknown = sorted(set(frame["state"].astype(str)) - set(labels))
        if unknown:
            problems.append(f"unknown state(s) {unknown[:5]}; use one of {list(labels)}")
    return problems


def write_decisions(ids: Sequence[str], probs: np.ndarray, labels: Sequence[str], kind: str,
                    thresholds: Sequence[float], id_column: str, path: Path, values: str = "labels") -> Path:
    """Validate, then write atomically (nothing is written when a problem is found)."""
    frame = pd.concat([pd.DataFrame({id_column: list(ids)}), decisions(probs, labels, kind, thresholds, values)], axis=1)
    problems = submission_problems(frame, ids, labels, kind, id_column, values)
    if problems:
        raise SubmissionError("\n".join([f"{path} would have {len(problems)} problem(s):", *problems]), problems)
    return save_csv(path, frame)


class MultiLabelBlend:
    """Weights → the metric (mAP of sigmoid heads, or macro F1 of states) of Σ wᵢ pᵢ over every
    OOF image; thresholds re-tuned on the blend for its submission."""

    def __init__(self, tasks: Sequence[Any], member_dirs: Sequence[Path]) -> None:
        self.tasks, self.member_dirs, self.n_evals = list(tasks), list(member_dirs), 0
        task = tasks[0]
        members = [merged_oof(d, t.cfg.n_folds) for t, d in zip(tasks, member_dirs)]
        require_same_ids([t.cfg.name for t in tasks], [m[0] for m in members], "OOF ids",
                         "train them on the same folds.csv and labels")
        if any(m[1].shape != members[0][1].shape for m in members[1:]):
            raise OOFError("members' OOF rows differ in shape " + str([m[1].shape for m in members])
                           + "; train them on the same folds.csv and labels")
        self.probs = [m[1] for m in members]
        self.targets = members[0][2]
        self.kind, self.labels = task.cfg.kind, task.labels

    def mixed(self, weights: np.ndarray) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)
        return sum(wi * p for wi, p in zip(w / max(w.sum(), 1e-12), self.probs))

    def __call__(self, weights: np.ndarray) -> float:
        self.n_evals += 1
        return score(self.tasks[0].report(self.mixed(weights), self.targets), self.kind)

    def full_score(self, weights: np.ndarray) -> float:
        return self(weights)

    def extras(self, weights: np.ndarray, out: Path | None = None) -> dict[str, Any]:
        report = self.tasks[0].report(self.mixed(weights), self.targets)
        return {"thresholds": thresholds_of(report, self.labels), "oof": report}

    def write_submission(self, weights: np.ndarray, path: Path) -> Path | None:
        decisions = {"thresholds": self.extras(weights)["thresholds"]}
        return self.tasks[0].write_blend_submission(self.tasks, self.member_dirs, weights, decisions, path)


def write_blended_decisions(task: Any, tasks: Sequence[Any], member_dirs: Sequence[Path], weights: Any,
                            thresholds: Sequence[float], path: Path) -> Path | None:
    """Members' fold-averaged test probabilities blended with the normalised ``weights`` →
    :func:`write_decisions` (None when a member has no test predictions)."""
    means = [test_mean(d, t.cfg.n_folds) for t, d in zip(tasks, member_dirs)]
    if any(m is None for m in means):
        return None
    require_same_ids([t.cfg.name for t in tasks], [m[0] for m in means], "test ids",
                     "re-run their test predictions on the same test images")
    w = np.asarray(weights, dtype=np.float64)
    probs = sum(wi * m[1] for wi, m in zip(w / max(w.sum(), 1e-12), means))
    return write_decisions(means[0][0], probs, task.labels, task.cfg.kind, thresholds, task.submission_id_column, path,
                           task.cfg.submission_values)


def submission_scores(frame: pd.DataFrame, id_column: str, labels: Sequence[str], kind: str, values: str) -> np.ndarray:
    """A valid submission's value columns → (N, K) scores: probabilities, 0/1 decisions, or a
    one-hot of the ``state`` column."""
    if values == "probs" or kind == "multilabel":
        return frame[list(labels)].apply(pd.to_numeric).to_numpy(np.float64)
    index = {name: k for k, name in enumerate(labels)}
    return np.eye(len(labels))[[index[s] for s in frame["state"].astype(str)]]


def solution_targets(solution: Path, id_column: str, labels: Sequence[str], kind: str) -> tuple[list[str], np.ndarray]:
    """Held-out labels: the id column + one 1/0/empty column per attribute (multilabel) or a
    ``state`` column (softmax) → (ids, targets (N, K) with -1 = missing, or (N,) state indices)."""
    frame = pd.read_csv(solution, dtype=str, keep_default_na=False)
    wanted = [id_column, *(labels if kind == "multilabel" else ["state"])]
    if missing := [c for c in wanted if c not in frame.columns]:
        raise ValueError(f"{solution}: columns {missing} missing; expected {wanted}")
    ids = frame[id_column].astype(str).tolist()
    if kind == "multilabel":
        cells = frame[list(labels)].replace({"": "-1"}).astype(float).to_numpy()
        return ids, np.where(np.isin(cells, (0, 1)), cells, -1).astype(np.int64)
    index = {name: k for k, name in enumerate(labels)}
    if unknown := sorted(set(frame["state"]) - set(index)):
        raise ValueError(f"{solution}: unknown state(s) {unknown[:5]}; expected one of {list(labels)}")
    return ids, np.array([index[s] for s in frame["state"]], np.int64)
