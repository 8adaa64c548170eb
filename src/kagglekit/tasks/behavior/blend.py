"""Ensembling behaviour experiments on their OOF: weights searched (SLSQP / greedy from
:mod:`kagglekit.ensemble`) on the official MABe score of the blended per-frame probabilities
(thresholds re-tuned on each blend), then the blended test probabilities → validated submission.
Members must share the data folder and its folds.csv (checked: same sequences, same shapes)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kagglekit.cv import fold_ids
from kagglekit.ensemble import search_weights
from kagglekit.metrics.mabe import mabe_score
from kagglekit.oof import OOFError
from kagglekit.tasks.behavior.intervals import tune_thresholds
from kagglekit.tasks.behavior.pairs import PairBehaviorTask


def blend(probs: Sequence[Sequence[np.ndarray]], weights: np.ndarray) -> list[np.ndarray]:
    """Σ wᵢ pᵢ per sequence; ``probs[i][j]`` = member i, sequence j, (T_j, A)."""
    return [sum(w * member[j] for w, member in zip(weights, probs)) for j in range(len(probs[0]))]


class PairBlendObjective:
    """weights → MABe score of the blend on OOF (thresholds tuned on the blend itself)."""

    def __init__(self, task: PairBehaviorTask, seqs, probs, solution) -> None:
        self.task, self.seqs, self.probs, self.solution = task, seqs, probs, solution
        self.labels = [s.labels for s in seqs]
        self.n_evals = 0

    def thresholds(self, weights: np.ndarray) -> dict[str, float]:
        return tune_thresholds(blend(self.probs, weights), self.labels, self.task.actions)

    def __call__(self, weights: np.ndarray) -> float:
        self.n_evals += 1
        w = np.asarray(weights, dtype=np.float64)
        mixed = blend(self.probs, w)
        thresholds = tune_thresholds(mixed, self.labels, self.task.actions)
        return mabe_score(self.solution, self.task.submission(self.seqs, mixed, thresholds))


def blend_pairs(tasks: Sequence[PairBehaviorTask], exp_dirs: Sequence[Path], method: str,
                submission_path: Path) -> dict[str, Any]:
    task = tasks[0]
    n_folds = task.cfg.n_folds
    if any(t.cfg.n_folds != n_folds or t.root != task.root for t in tasks):
        raise OOFError("ensemble members must use the same data folder and number of folds")
    folds = task.folds()
    valid = [fold_ids(folds, k, "id")[1] for k in range(n_folds)]
    groups = [task.sequences(v) for v in valid]
    seqs = [s for g in groups for s in g]
    probs = [[p for g in t._stored(d, "oof", groups) for p in g] for t, d in zip(tasks, exp_dirs)]
    for d, member in zip(exp_dirs[1:], probs[1:]):
        if any(a.shape != b.shape for a, b in zip(member, probs[0])):
            raise OOFError(f"{d}: OOF shapes differ from {exp_dirs[0]} (different actions or sequences)")
    objective = PairBlendObjective(task, seqs, probs, task.solution([i for v in valid for i in v]))
    result = search_weights(objective, len(tasks), method)
    thresholds = objective.thresholds(result.weights)
    summary = {"weights": [float(w) for w in result.weights], "blend_oof_score": float(result.score),
               "member_oof_score": [float(s) for s in result.member_scores], "objective_evaluations": objective.n_evals,
               "thresholds": thresholds, "metric": "mabe_score"}
    if all((d / f"fold{k}" / "test" / "manifest.json").exists() for d in exp_dirs for k in range(n_folds)):
        summary["submission"] = str(write_blended_test(tasks, exp_dirs, result.weights, thresholds, submission_path))
    return summary


def write_blended_test(tasks, exp_dirs, weights: np.ndarray, thresholds: dict[str, float], out: Path) -> Path:
    from kagglekit.submission.mabe import write_mabe_submission
    task = tasks[0]
    test_meta = task.metadata("test")
    seqs = task.sequences(test_meta["video_id"].astype(str).tolist(), "test")
    n = task.cfg.n_folds
    means = [[np.mean([fold[j] for fold in t._stored(d, "test", [seqs] * n)], axis=0) for j in range(len(seqs))]
             for t, d in zip(tasks, exp_dirs)]
    return write_mabe_submission(task.submission(seqs, blend(means, weights), thresholds), out, test_meta, overwrite=True)
