"""The competition's view of the behaviour track: per (video, agent, target) sequence, multi-label
per-frame action probabilities → per-action thresholds tuned on OOF → intervals (smoothing,
minimum duration, one action per pair per frame, only actions in ``behaviors_labeled``) → the
MABe submission, scored on OOF with the official metric (:mod:`kagglekit.metrics.mabe`).

Mice are reordered so the agent is slot 0 and the target slot 1: the model always knows who acts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from kagglekit.cv import fold_ids
from kagglekit.experiment.contract import MetricSpec
from kagglekit.metrics.mabe import mabe_breakdown, mabe_score
from kagglekit.store.arrays import Manifest, PredictionWriter, missing_stores, read_predictions
from kagglekit.tasks.behavior import meta as M
from kagglekit.tasks.behavior.intervals import intervals_to_submission, probs_to_intervals, smooth_probs, tune_thresholds
from kagglekit.tasks.behavior.labels import layout_solution, mouse_names, score_mabe_file
from kagglekit.tasks.behavior.model import LossSpec
from kagglekit.tasks.behavior.task import BehaviorTask, build_tagger, predict_frames
from kagglekit.tasks.behavior.windows import WindowDataset

log = logging.getLogger("kagglekit.behavior")
NOT_LABELLED = 255  # stored target for (frame, action) entries the video does not annotate


@dataclass
class PairSequence:
    video_id: str
    lab_id: str
    agent: int
    target: int
    features: np.ndarray  # (T, F)
    mask: np.ndarray  # (T, F)
    labels: np.ndarray | None  # (T, A) float: 1/0, -1 = not labelled
    allowed: np.ndarray  # (A,) bool: action in behaviors_labeled for this pair

    @property
    def key(self) -> str:
        return f"{self.video_id}:{self.agent}:{self.target}"


def window_items(seqs: Sequence[PairSequence]) -> list[dict[str, Any]]:
    return [{"features": s.features, "mask": s.mask, "labels": s.labels} for s in seqs]


mouse_name = mouse_names  # (1, 2) -> ("mouse1", "mouse2"); (2, 2) -> ("mouse2", "self")


def agent_first(pose: np.ndarray, agent: int, target: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reorder mice (axis 1, ids 1-based) as agent, target, others; returns the pair's new indices."""
    order = [agent - 1] + ([target - 1] if target != agent else [])
    order += [m for m in range(pose.shape[1]) if m not in order]
    return pose[:, order], (0, 0 if target == agent else 1)


class PairEvaluator:
    """Per-epoch frame-level F1 per action at threshold 0.5 over labelled entries; macro over
    actions with any positive frame."""

    def __init__(self, n_actions: int) -> None:
        self.tp, self.fp, self.fn = (np.zeros(n_actions, np.int64) for _ in range(3))

    def update(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        y = batch["y"]
        known = (y >= 0) & batch["valid"].bool().unsqueeze(-1)
        pred, truth = (outputs["logits"] > 0) & known, (y > 0.5) & known
        self.tp += (pred & truth).sum((0, 1)).cpu().numpy()
        self.fp += (pred & ~truth).sum((0, 1)).cpu().numpy()
        self.fn += (~pred & truth).sum((0, 1)).cpu().numpy()

    def compute(self) -> dict[str, float]:
        denom = 2 * self.tp + self.fp + self.fn
        f1 = np.divide(2 * self.tp, denom, out=np.zeros(len(self.tp)), where=denom > 0)
        active = (self.tp + self.fn) > 0
        return {"valid_f1_macro": float(f1[active].mean()) if active.any() else 0.0}


class PairBehaviorTask(BehaviorTask):
    """The competition view: per (agent, target) pair, multi-label action probabilities →
    intervals → the official MABe score and submission."""

    metric = MetricSpec("MABe score", "max", fold_key="fold_mabe_score_in_fold_thresholds")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self._pairs: dict[tuple[str, str], list[PairSequence]] = {}
        self._width: int | None = None

    @property
    def actions(self) -> list[str]:
        return sorted({act for b in self.metadata("train")["behaviors"] for _, _, act in b})

    def sequences(self, ids: Sequence[str], split: str = "train") -> list[PairSequence]:
        meta = self.metadata(split)
        meta = meta.set_index(meta["video_id"].astype(str))
        vocab, actions = self.vocabulary, self.actions
        out: list[PairSequence] = []
        for vid in ids:
            if (split, vid) not in self._pairs:
                self._pairs[(split, vid)] = self._read_pairs(meta.loc[vid], split, vocab, actions)
            out.extend(self._pairs[(split, vid)])
        return out

    def _read_pairs(self, row: Any, split: str, vocab: Sequence[str], actions: Sequence[str]) -> list[PairSequence]:
        pose = self.read_pose(row, split)
        keys = set(M.behavior_keys(row.behaviors))
        annotation = M.read_annotation(M.annotation_path(self.root, row.lab_id, row.video_id)) if split == "train" else None
        out = []
        for agent, target in sorted({(a, t) for a, t, _ in keys}):
            reordered, pair = agent_first(pose, agent, target)
            feats, mask = self.features(row, reordered, vocab, pair=pair if self.cfg.pair_features else None, split=split)
            allowed = np.array([(agent, target, act) in keys for act in actions])
            labels = None
            if annotation is not None:
                frames = M.frame_labels(annotation, len(pose), [(agent, target, act) for act in actions])
                labels = np.where(allowed, frames.astype(np.float32), np.float32(-1))
            out.append(PairSequence(str(row.video_id), str(row.lab_id), agent, target, feats, mask, labels, allowed))
        return out

    def fold_datasets(self, fold: int):
        train_ids, valid_ids = fold_ids(self.folds(), fold, "id")
        train, valid = self.sequences(train_ids), self.sequences(valid_ids)
        self._width = train[0].features.shape[1]
        c = self.cfg
        return WindowDataset(window_items(train), c.window, c.stride), WindowDataset(window_items(valid), c.window, c.window)

    def build_model(self, initial_weights: bool = True) -> torch.nn.Module:
        if self._width is None:  # the feature layout is fixed (vocabulary): any training video tells it
            self._width = self.sequences(self.metadata("train")["video_id"].astype(str).tolist()[:1])[0].features.shape[1]
        return build_tagger(self.cfg, self._width, len(self.actions), LossSpec(kind="multilabel"))

    def make_evaluator(self, valid_ds: Any = None) -> PairEvaluator:
        return PairEvaluator(len(self.actions))

    def predict(self, model: torch.nn.Module, seqs: Sequence[PairSequence]) -> list[np.ndarray]:
        c = self.cfg
        return [predict_frames(model, s.features, s.mask, c.window, c.infer_stride, c.batch_size, self.inference, softmax=False)
                for s in seqs]

    def _write_store(self, directory: Path, fold: int, kind: str, seqs: Sequence[PairSequence],
                     probs: Sequence[np.ndarray]) -> None:
        n, actions = sum(len(p) for p in probs), self.actions
        manifest = Manifest(self.cfg.name, fold, kind, actions, 1.0, "float16", [n, len(actions)], [],
                            [f"window{self.cfg.window}-stride{self.cfg.infer_stride}"])
        with PredictionWriter(directory, manifest, with_targets=kind == "oof",
                              target_shape=(n, len(actions)) if kind == "oof" else None) as writer:
            for s, p in zip(seqs, probs):
                targets = None if kind != "oof" else np.where(s.labels < 0, NOT_LABELLED, s.labels).astype(np.uint8)
                writer.write([f"{s.key}:{t}" for t in range(len(p))], p, targets)

    def finalize(self, model: torch.nn.Module, fold: int, fold_dir: Path) -> dict[str, Any]:
        _, valid_ids = fold_ids(self.folds(), fold, "id")
        seqs = self.sequences(valid_ids)
        probs = self.predict(model, seqs)
        self._write_store(fold_dir / "oof", fold, "oof", seqs, probs)
        thresholds = tune_thresholds(probs, [s.labels for s in seqs], self.actions)
        score = mabe_score(self.solution(valid_ids), self.submission(seqs, probs, thresholds))
        metrics = {"fold_mabe_score_in_fold_thresholds": score, "thresholds": thresholds}
        self.predict_test(model, fold, fold_dir, metrics)
        return metrics

    def predict_test(self, model: torch.nn.Module, fold: int, fold_dir: Path, fold_metrics: dict[str, Any]) -> bool:
        """Per-frame action probabilities of every test (agent, target) sequence → ``fold_dir/test``."""
        if not self.has_test_split():
            return False
        test = self.test_sequences()
        self._write_store(fold_dir / "test", fold, "test", test, self.predict(model, test))
        return True

    # ---- intervals, solution, submission --------------------------------------------------------
    def intervals(self, seq: PairSequence, probs: np.ndarray, thresholds: dict[str, float]) -> list[dict[str, Any]]:
        agent, target = mouse_name(seq.agent, seq.target)
        found = probs_to_intervals(smooth_probs(probs, self.cfg.smoothing_window), self.actions, thresholds,
                                   min_duration=self.cfg.min_duration, allowed=seq.allowed)
        return [{"video_id": int(seq.video_id), "agent_id": agent, "target_id": target, "action": act,
                 "start_frame": start, "stop_frame": stop} for act, start, stop in found]

    def submission(self, seqs: Sequence[PairSequence], probs: Sequence[np.ndarray], thresholds: dict[str, float]) -> pd.DataFrame:
        rows = [r for s, p in zip(seqs, probs) for r in self.intervals(s, p, thresholds)]
        return intervals_to_submission(rows)

    def solution(self, video_ids: Sequence[str]) -> pd.DataFrame:
        """The competition's solution rows for training videos (labelled actions only)."""
        return layout_solution(self.root, "train", video_ids)

    def score_submission(self, path: Path, solution: Path) -> dict[str, Any]:
        """Submission ``path`` validated (``SubmissionError`` listing every problem) against the videos
        of ``solution`` and scored with the official MABe metric, as Kaggle would.

        ``solution``: a MABe solution CSV (video_id, agent_id, target_id, action, start_frame,
        stop_frame, lab_id, behaviors_labeled; every video in it is scored, unsubmitted ones count as
        misses) or a data folder in the layout (``train.csv`` + ``train_annotation/``; scored on the
        videos the submission names). Returns ``{"MABe score": float, "per_lab": {lab: mean F1},
        "per_action": [{lab_id, action, tp, fp, fn, f1}], "videos": n}``."""
        return score_mabe_file(Path(path), Path(solution), self.metric.name)

    # ---- experiment epilogue: OOF thresholds, CV score, submission -------------------------------
    def _stored(self, exp_dir: Path, kind: str, seq_groups: Sequence[Sequence[PairSequence]]) -> list[list[np.ndarray]]:
        """Per fold, the stored probabilities split back into the sequences they were written from."""
        return [self.stored_probs(exp_dir / f"fold{k}" / kind, seqs) for k, seqs in enumerate(seq_groups)]

    @staticmethod
    def stored_probs(directory: Path, seqs: Sequence[PairSequence]) -> list[np.ndarray]:
        """The (T, A) probabilities of each of ``seqs`` from the prediction store ``directory``
        (written in that order); ValueError when a sequence does not start where expected."""
        store = read_predictions(directory)
        offsets = np.cumsum([0] + [len(s.features) for s in seqs])
        for s, o in zip(seqs, offsets[:-1]):
            if o >= len(store.ids) or store.ids[o] != f"{s.key}:0":
                found = store.ids[o] if o < len(store.ids) else "past the end"
                raise ValueError(f"{directory}: row {o} is {found}, expected {s.key}:0; re-run the fold")
        return [np.asarray(store.probs[a:b], dtype=np.float32) for a, b in zip(offsets[:-1], offsets[1:])]

    def oof_sequences(self) -> tuple[list[list[str]], list[list[PairSequence]]]:
        """Per fold, the validation video ids and their (agent, target) sequences, in store order."""
        folds = self.folds()
        valid = [fold_ids(folds, k, "id")[1] for k in range(self.cfg.n_folds)]
        return valid, [self.sequences(ids) for ids in valid]

    def score_experiment(self, exp_dir: Path, fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Thresholds tuned on all OOF frames, then the official MABe score of the OOF intervals."""
        valid, seq_groups = self.oof_sequences()
        seqs = [s for g in seq_groups for s in g]
        probs = [p for g in self._stored(exp_dir, "oof", seq_groups) for p in g]
        thresholds = tune_thresholds(probs, [s.labels for s in seqs], self.actions)
        solution = self.solution([i for ids in valid for i in ids])
        oof_sub = self.submission(seqs, probs, thresholds)
        breakdown = mabe_breakdown(solution, oof_sub)
        score = mabe_score(solution, oof_sub)
        return {"cv": score, "cv_mabe_score": score, "thresholds": thresholds,
                "per_lab": breakdown.groupby("lab_id")["f1"].mean().to_dict(), "breakdown": breakdown.to_dict(orient="records")}

    def has_test(self, exp_dir: Path) -> bool:
        return not missing_stores(exp_dir, self.cfg.n_folds, "test")

    def test_sequences(self) -> list[PairSequence]:
        return self.sequences(self.metadata("test")["video_id"].astype(str).tolist(), "test")

    def mean_test_probs(self, exp_dir: Path, seqs: Sequence[PairSequence]) -> list[np.ndarray]:
        """Per test sequence, the (T, A) probabilities averaged over the folds' models."""
        per_fold = self._stored(exp_dir, "test", [seqs] * self.cfg.n_folds)
        return [np.mean([fold[i] for fold in per_fold], axis=0) for i in range(len(seqs))]

    def write_submission(self, exp_dir: Path, summary: dict[str, Any], path: Path) -> Path | None:
        return self.write_blend_submission([self], [exp_dir], [1.0], summary, path)

    def write_blend_submission(self, tasks: Sequence["PairBehaviorTask"], member_dirs: Sequence[Path], weights: Any,
                               decisions: dict[str, Any], path: Path) -> Path | None:
        """Σ wᵢ · (member i's fold-averaged test probabilities) → intervals at the OOF thresholds
        (``decisions["thresholds"]``: action → threshold) → validated CSV."""
        from kagglekit.tasks.behavior.blend import blend
        if not all(t.has_test(d) for t, d in zip(tasks, member_dirs)):
            return None
        seqs = self.test_sequences()
        means = [t.mean_test_probs(d, seqs) for t, d in zip(tasks, member_dirs)]
        return self.write_intervals(self.submission(seqs, blend(means, weights), decisions["thresholds"]), path)

    def write_intervals(self, frame: pd.DataFrame, path: Path) -> Path:
        from kagglekit.submission.mabe import write_mabe_submission
        return write_mabe_submission(frame, path, self.metadata("test"), overwrite=True)

    def validate_submission(self, path: Path, reference: Path | None = None) -> list[str]:
        """Against the test videos (``test.csv``, or ``reference``: another metadata CSV)."""
        from kagglekit.submission.mabe import validate_mabe
        from kagglekit.submission.rle import SubmissionError
        videos = pd.read_csv(reference) if reference else self.metadata("test")
        try:
            validate_mabe(Path(path), videos)
        except SubmissionError as exc:
            return list(exc.problems) or [str(exc)]
        return []

    def report_experiment(self, exp_dir: Path, summary: dict[str, Any], fold_metrics: Sequence[dict[str, Any]]) -> None:
        write_pairs_report(self.cfg, exp_dir, summary)

    def blend_objective(self, tasks: Sequence["PairBehaviorTask"], member_dirs: Sequence[Path]) -> Any:
        from kagglekit.tasks.behavior.blend import PairBlendObjective
        return PairBlendObjective.from_members(tasks, member_dirs)

    def report_fold(self, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any]) -> None:
        from kagglekit.io import write_text
        from kagglekit.report.markdown import markdown_kv, markdown_table
        from kagglekit.report.plots import plot_history
        plot_history(history, fold_dir / "history.png", loss_cols=("train_loss", "valid_loss"), metric_cols=("valid_f1_macro",),
                     experiment=self.cfg.name, fold=metrics["fold"])
        text = "\n\n".join([f"# {self.cfg.name} fold {metrics['fold']} Report (competition view)",
                            "## Results\n" + markdown_kv({"MABe score (thresholds tuned in-fold, optimistic)":
                                                           metrics["fold_mabe_score_in_fold_thresholds"],
                                                           "Best epoch": metrics["best_epoch"]}),
                            "## Training History\n" + markdown_table(history) + "\n![history](history.png)",
                            self.error_analysis(fold_dir, metrics).rstrip()])
        write_text(fold_dir / "report.md", text + "\n")

    def error_analysis(self, fold_dir: Path, metrics: dict[str, Any]) -> str:
        """The fold report's error analysis of its OOF intervals at the in-fold thresholds
        (:func:`kagglekit.tasks.behavior.report.pairs_analysis_section`); when the inputs cannot be
        read, one section saying why (the report is written either way)."""
        from kagglekit.tasks.behavior.report import PairTrack, pairs_analysis_section, prediction_mask
        fold = int(metrics["fold"])
        try:
            _, valid_ids = fold_ids(self.folds(), fold, "id")
            seqs = self.sequences(valid_ids)
            probs = self.stored_probs(fold_dir / "oof", seqs)
            solution = self.solution(valid_ids)
            intervals = [self.intervals(s, p, metrics["thresholds"]) for s, p in zip(seqs, probs)]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("error analysis of %s not drawn: %s", fold_dir, exc)
            return f"## Error analysis\nNot drawn: {exc}\n"
        tracks = [PairTrack(s.video_id, s.lab_id, " -> ".join(mouse_name(s.agent, s.target)), s.labels > 0.5,
                            prediction_mask([(r["action"], r["start_frame"], r["stop_frame"]) for r in rows],
                                            self.actions, len(s.labels)), s.allowed)
                    for s, rows in zip(seqs, intervals)]
        submission = intervals_to_submission([r for rows in intervals for r in rows])
        return pairs_analysis_section(fold_dir, self.cfg.name, fold, tracks, self.actions, solution, submission)


def write_pairs_report(cfg, exp_dir: Path, summary: dict[str, Any]) -> Path:
    from kagglekit.io import write_text
    from kagglekit.report.markdown import markdown_kv, markdown_table
    labs = [{"Lab": k, "F1 (mean over actions)": v} for k, v in summary["per_lab"].items()]
    actions = pd.DataFrame(summary["breakdown"]).rename(columns={"lab_id": "Lab", "action": "Action", "tp": "TP",
                                                                 "fp": "FP", "fn": "FN", "f1": "F1"})
    thresholds = [{"Action": a, "Threshold": t} for a, t in summary["thresholds"].items()]
    text = "\n\n".join([
        f"# {cfg.name} Report (competition view)",
        "## Results Summary\n" + markdown_kv({"CV MABe score (OOF, official metric)": f"**{summary['cv_mabe_score']:.4f}**",
                                              "Submission": f"`{summary['submission']}`" if summary["submission"] else "no test tracking"}),
        "### Per lab\n" + markdown_table(labs), "### Per lab and action (frames)\n" + markdown_table(actions),
        "### Thresholds (validation-best F1 per action on all OOF frames)\n" + markdown_table(thresholds),
        f"## Notes\n- Intervals: probabilities smoothed over {cfg.smoothing_window} frames, one action per agent/target per "
        f"frame, only actions listed in the video's behaviors_labeled, intervals shorter than {cfg.min_duration} frames dropped.",
    ])
    return write_text(exp_dir / "report.md", text + "\n")
