"""Ensembling behaviour experiments (competition view) on their OOF: weights searched (SLSQP /
greedy from :mod:`kagglekit.ensemble.search`) on the official MABe score of the blended per-frame
probabilities (thresholds re-tuned on each blend), then the blended test probabilities →
validated submission. Members must share the data folder and its folds.csv (checked: same
sequences, same shapes)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kagglekit.metrics.mabe import mabe_score
from kagglekit.store.arrays import OOFError
from kagglekit.tasks.behavior.intervals import tune_thresholds


def blend(probs: Sequence[Sequence[np.ndarray]], weights: np.ndarray) -> list[np.ndarray]:
    """Σ wᵢ pᵢ per sequence; ``probs[i][j]`` = member i, sequence j, (T_j, A)."""
    return [sum(w * member[j] for w, member in zip(weights, probs)) for j in range(len(probs[0]))]


class PairBlendObjective:
    """weights → MABe score of the blend on OOF (thresholds tuned on the blend itself)."""

    def __init__(self, tasks: Sequence[Any], member_dirs: Sequence[Path], seqs, probs, solution) -> None:
        self.tasks, self.member_dirs = list(tasks), list(member_dirs)
        self.task, self.seqs, self.probs, self.solution = tasks[0], seqs, probs, solution
        self.labels = [s.labels for s in seqs]
        self.n_evals = 0

    @classmethod
    def from_members(cls, tasks: Sequence[Any], member_dirs: Sequence[Path]) -> "PairBlendObjective":
        task = tasks[0]
        if any(t.cfg.n_folds != task.cfg.n_folds or t.root != task.root for t in tasks):
            raise OOFError("ensemble members must use the same data folder and number of folds")
        valid, groups = task.oof_sequences()
        seqs = [s for g in groups for s in g]
        probs = [[p for g in t._stored(d, "oof", groups) for p in g] for t, d in zip(tasks, member_dirs)]
        for d, member in zip(member_dirs[1:], probs[1:]):
            if any(a.shape != b.shape for a, b in zip(member, probs[0])):
                raise OOFError(f"{d}: OOF shapes differ from {member_dirs[0]} (different actions or sequences)")
        return cls(tasks, member_dirs, seqs, probs, task.solution([i for v in valid for i in v]))

    def thresholds(self, weights: np.ndarray) -> dict[str, float]:
        return tune_thresholds(blend(self.probs, weights), self.labels, self.task.actions)

    def __call__(self, weights: np.ndarray) -> float:
        self.n_evals += 1
        mixed = blend(self.probs, np.asarray(weights, dtype=np.float64))
        thresholds = tune_thresholds(mixed, self.labels, self.task.actions)
        return mabe_score(self.solution, self.task.submission(self.seqs, mixed, thresholds))

    def full_score(self, weights: np.ndarray) -> float:
        return self(weights)

    def extras(self, weights: np.ndarray, out: Path | None = None) -> dict[str, Any]:
        return {"thresholds": self.thresholds(weights)}

    def write_submission(self, weights: np.ndarray, path: Path) -> Path | None:
        """Each member's fold-averaged test probabilities, blended, at the blend's OOF thresholds."""
        return self.task.write_blend_submission(self.tasks, self.member_dirs, weights, self.extras(weights), path)
