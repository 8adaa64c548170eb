"""The Task contract: everything the generic layers (runner, experiment epilogue, ensemble,
ledger, workflow CLI) ask of a task. Every task in ``kagglekit.tasks`` implements all of it; a
method gets what it needs as arguments (no state set by an earlier call is read later).

Lifecycle of one experiment (``output/<exp>/``)::

    folds() ─► per fold k: preflight(k) → fold_datasets(k) → build_model() → engine.fit(…,
               make_evaluator(valid_ds)) → finalize(model, k, fold_dir) → report_fold(…)
    all folds present ─► score_experiment(exp_dir, fold_metrics) → write_submission(exp_dir, summary, path)
               → report_experiment(exp_dir, summary, fold_metrics) → metrics.json (written last)
    ensemble ─► blend_objective(tasks, member_dirs): weights → metric of the blended OOF,
               then .write_submission(weights, path); validate_submission(path) before any write

One code path for test predictions and submissions: ``finalize`` calls ``predict_test`` (one fold
model → the fold's test store); ``write_submission`` is ``write_blend_submission([self], [exp_dir],
[1.0], summary, path)`` and a blend objective's ``write_submission(weights, path)`` is
``tasks[0].write_blend_submission(tasks, member_dirs, weights, decisions, path)``. The offline
bundle (:mod:`kagglekit.workflow.bundle`) replays exactly that: ``build_model(initial_weights=False)``
+ the fold's ``final_checkpoint`` weights → ``predict_test`` per fold → ``write_blend_submission``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd
from torch import nn
from torch.utils.data import Dataset

from kagglekit.engine.fit import Evaluator


@dataclass(frozen=True)
class MetricSpec:
    """The competition metric of a task: its display ``name``, whether higher or lower is better,
    and the per-fold key in ``fold<k>/metrics.json`` that holds each fold's score."""

    name: str
    mode: Literal["max", "min"] = "max"
    fold_key: str = "score"

    @property
    def sign(self) -> float:
        """+1 when higher is better: the weight search maximises ``sign * score``."""
        return 1.0 if self.mode == "max" else -1.0

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b


class BlendObjective(Protocol):
    """What the ensemble weight search optimises for one task: members' OOF predictions combined
    with ``weights`` (M,) and scored with the task's metric (in the metric's own direction)."""

    n_evals: int

    def __call__(self, weights: np.ndarray) -> float: ...
    def full_score(self, weights: np.ndarray) -> float: ...
    def extras(self, weights: np.ndarray, out: Path | None = None) -> dict[str, Any]: ...
    def write_submission(self, weights: np.ndarray, path: Path) -> Path | None: ...


@runtime_checkable
class Task(Protocol):
    """The whole contract. ``cfg`` is the task's frozen config; ``metric`` its :class:`MetricSpec`."""

    cfg: Any
    metric: MetricSpec

    def prepare_demo(self) -> None:
        """Generated or embedded data in the task's on-disk layout (``--demo``)."""

    def folds(self) -> pd.DataFrame:
        """``[id, fold]`` for every training unit, from ``folds.csv`` (made once when missing)."""

    def preflight(self, fold: int) -> list[str]:
        """Every problem with the files fold ``fold`` will read (empty: all readable)."""

    def fold_datasets(self, fold: int) -> tuple[Dataset, Dataset]: ...

    def build_model(self, initial_weights: bool = True) -> nn.Module:
        """The network. ``initial_weights=False``: the architecture only, without loading the
        config's ``pretrained`` / ``init_weights`` files (the caller loads trained weights over it,
        so those files need not exist)."""

    def make_evaluator(self, valid_ds: Dataset) -> Evaluator:
        """Streaming ``update(outputs, batch)`` / ``compute() -> dict`` over ``valid_ds``."""

    def finalize(self, model: nn.Module, fold: int, fold_dir: Path) -> dict[str, Any]:
        """OOF predictions into ``fold_dir``'s store, then the test split through
        :meth:`predict_test`; returns the fold's metrics, with the fold's score under ``metric.fold_key``."""

    def predict_test(self, model: nn.Module, fold: int, fold_dir: Path, fold_metrics: dict[str, Any]) -> bool:
        """One fold model's test predictions into ``fold_dir`` (the layout ``write_blend_submission``
        reads): segmentation and behaviour (both views) a ``fold_dir/test`` prediction store
        (segmentation: probabilities (N, C, h, w) at the fold's ``fold_metrics["best_temperature"]``;
        behaviour: per-frame (N_frames, 4) group or (N_frames, A) action probabilities), multilabel a
        ``fold_dir/test`` store (N_images, K), detection and keypoints a ``fold_dir/evaluation/test``
        records store (:mod:`kagglekit.store.records`: ``coco_instances_results.json`` /
        ``keypoint_results.json`` COCO results + ``manifest.json`` listing every predicted image).
        ``fold_metrics``: what ``finalize`` returned for the fold (the decisions it made on OOF).
        False (nothing written, the reason logged) when the data has no test split."""

    def final_checkpoint(self, fold_dir: Path, fold_metrics: dict[str, Any]) -> Path:
        """The file (``{"model": state_dict}``, read with ``weights_only``) holding the weights of the
        model ``finalize`` predicted the fold with: ``checkpoints/best.pt``, or e.g. multilabel's
        SWA predictor when SWA was the fold's final version."""

    def report_fold(self, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any]) -> None: ...

    def score_experiment(self, exp_dir: Path, fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The merged OOF scored with the metric: ``{"cv": float, **extras}``."""

    def write_submission(self, exp_dir: Path, summary: dict[str, Any], path: Path) -> Path | None:
        """Fold-averaged test predictions → the competition's file at ``path`` (validated first),
        using the decisions ``score_experiment`` made on OOF (``summary``: thresholds, temperature);
        None when the experiment has no test predictions. Always
        ``self.write_blend_submission([self], [exp_dir], [1.0], summary, path)``."""

    def write_blend_submission(self, tasks: Sequence["Task"], member_dirs: Sequence[Path], weights: Sequence[float] | np.ndarray,
                               decisions: dict[str, Any], path: Path) -> Path | None:
        """Member i's test predictions under ``member_dirs[i]`` (as :meth:`predict_test` wrote them:
        fold-averaged; detection k-fold: WBF-fused across folds, fixed split: fold 0), combined with
        ``weights`` (M,) → the competition's file at ``path``, validated before it is written.
        ``decisions``: what was chosen on OOF (an experiment's summary, or the ensemble objective's
        ``extras``): ``thresholds`` for behaviour pairs and multilabel, ``iou_thr`` of a detection
        ensemble's WBF; segmentation and keypoints read none. None when a member has no test predictions."""

    def validate_submission(self, path: Path, reference: Path | None = None) -> list[str]:
        """Every problem of submission ``path`` against the sample submission / test ids
        (``reference`` overrides the task's own sample file); empty list: valid."""

    def score_submission(self, path: Path, solution: Path) -> dict[str, Any]:
        """Submission ``path`` (the competition's format, validated first: a problem raises
        ``SubmissionError`` listing them) scored against held-out labels ``solution`` with the
        task's metric, as the competition would: ``{self.metric.name: float, **extras}``.
        ``solution`` per task: segmentation a mask folder or an RLE solution CSV; behaviour pairs
        the MABe solution CSV or a data folder (``train.csv`` + annotations); behaviour grouped a
        ``video_id,frame,group`` CSV; multilabel a labels CSV; detection / keypoints a COCO JSON."""

    def report_experiment(self, exp_dir: Path, summary: dict[str, Any], fold_metrics: Sequence[dict[str, Any]]) -> None: ...

    def blend_objective(self, tasks: Sequence["Task"], member_dirs: Sequence[Path]) -> BlendObjective:
        """The weight-search objective over members (``tasks[i]`` built from member i's config,
        its predictions under ``member_dirs[i]``)."""
