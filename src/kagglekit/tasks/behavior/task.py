"""The behaviour Task (seed 001's grouped view): pose windows → 4 grouped classes per frame.

Per video: dense pose (T, M, K, 2) → frame features (V5 coordinates, V6 + speed/acceleration)
→ windows of ``window`` frames; per-frame group labels from the annotation intervals. OOF rows are
frames (ids ``<video_id>:<frame>``), probabilities (N_frames, 4) in the common prediction store.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from kagglekit.engine.infer import Inference
from kagglekit.experiment.setup import workspace_for
from kagglekit.cv import fold_ids, get_or_make_folds
from kagglekit.submission.validate import id_coverage_problems
from kagglekit.experiment.contract import MetricSpec
from kagglekit.store.arrays import Manifest, PredictionWriter
from kagglekit.tasks.behavior import meta as M
from kagglekit.tasks.behavior.config import BehaviorConfig
from kagglekit.tasks.behavior.features import frame_features
from kagglekit.tasks.behavior.groups import GROUP_NAMES, group_frames
from kagglekit.tasks.behavior.model import Conv1DBiLSTM, LossSpec, TransformerTagger
from kagglekit.tasks.behavior.windows import WindowDataset, reassemble

log = logging.getLogger("kagglekit.behavior")


@dataclass
class VideoData:
    video_id: str
    features: np.ndarray  # (T, F) float32
    mask: np.ndarray  # (T, F) bool
    labels: np.ndarray | None  # (T,) int64 group ids


class FrameEvaluator:
    """Streaming per-frame accuracy and macro F1 over non-padded frames."""

    def __init__(self, num_classes: int) -> None:
        self.cm = np.zeros((num_classes, num_classes), np.int64)

    def update(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        valid = batch["valid"].bool() & (batch["y"] >= 0)
        pred = outputs["logits"].argmax(-1)[valid].cpu().numpy()
        true = batch["y"][valid].cpu().numpy()
        np.add.at(self.cm, (true, pred), 1)

    def compute(self) -> dict[str, float]:
        m = seed_metrics(self.cm)
        return {"valid_accuracy": m["accuracy"], "valid_f1_macro": m["f1_macro"], "valid_f1_weighted": m["f1_weighted"]}


class BehaviorTask:
    """Shared data plumbing of both views (metadata, folds, per-video features, inference)."""

    def __init__(self, cfg: BehaviorConfig) -> None:
        self.cfg = cfg
        self.workspace = workspace_for(cfg)
        self.root, self.device, self.inference = self.workspace.root, self.workspace.device, self.workspace.inference
        self._cache: dict[tuple[str, str], VideoData] = {}
        self._meta: dict[str, pd.DataFrame] = {}
        self._extra: list[str] | None = None

    # ---- data -------------------------------------------------------------------------------
    def prepare_demo(self) -> None:
        if not (self.root / "train.csv").exists():
            from kagglekit.demo.mabe import generate_mabe
            log.info("demo: generating synthetic mice into %s", self.root)
            generate_mabe(self.root, n_videos=self.cfg.demo_videos, n_frames=self.cfg.demo_frames, seed=0)

    def metadata(self, split: str) -> pd.DataFrame:
        """Parsed ``<split>.csv``, read once per task: vocabulary, actions and interval building ask
        for it per sequence (treat the returned frame as read-only)."""
        if split not in self._meta:
            path = self.root / f"{split}.csv"
            if not path.exists():
                raise FileNotFoundError(f"{path} not found; put the competition files in {self.root} or run with --demo")
            self._meta[split] = M.load_metadata(path)
        return self._meta[split]

    def preflight(self, fold: int) -> list[str]:
        """Every problem with the files fold ``fold`` reads (both views): train.csv, every training
        video's tracking parquet and annotation parquet, and the test videos' tracking when the
        fold predicts them (test.csv and test_tracking/ present)."""
        problems: list[str] = []
        for split in ("train", "test"):
            if split == "test" and not ((self.root / "test.csv").exists() and (self.root / "test_tracking").exists()):
                continue
            try:
                meta = self.metadata(split)
            except (FileNotFoundError, M.BehaviorDataError) as exc:
                problems.append(str(exc))
                continue
            problems += M.preflight_videos(self.root, meta, split)
        return problems

    @property
    def vocabulary(self) -> list[str]:
        """Every body part tracked in any training video (fixed feature layout across labs)."""
        return sorted({p for parts in self.metadata("train")["body_parts"] for p in parts})

    def folds(self) -> pd.DataFrame:
        meta = self.metadata("train")
        frame = pd.DataFrame({"id": meta["video_id"].astype(str), "lab_id": meta["lab_id"]})
        return get_or_make_folds(self.workspace.folds_csv, frame, "id", self.cfg.n_folds, self.cfg.fold_strategy,
                                 y="lab_id", groups="id", seed=self.cfg.fold_seed)

    def load_video(self, row: Any, split: str, vocabulary: Sequence[str]) -> VideoData:
        key = (split, str(row.video_id))
        if key not in self._cache:
            self._cache[key] = self._read_video(row, split, vocabulary)
        return self._cache[key]

    def read_pose(self, row: Any, split: str) -> np.ndarray:
        """(T, M, K, 2) pixels, NaN where missing; M = the video's mice (1..n_mice)."""
        track = M.read_tracking(M.tracking_path(self.root, split, row.lab_id, row.video_id))
        return M.tracking_array(track, list(range(1, int(row.n_mice) + 1)), row.body_parts,
                                int(track["video_frame"].max()) + 1)

    def features(self, row: Any, pose: np.ndarray, vocabulary: Sequence[str],
                 pair: tuple[int, int] | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Per-frame (T, F) features and mask of one video: pose features (:func:`frame_features`),
        then with ``cfg.extra_features`` the video's extra columns (:meth:`extra_block`)."""
        arena = (row.arena_width_cm, row.arena_height_cm)
        feats, mask = frame_features(pose, float(row.pix_per_cm_approx), float(row.frames_per_second),
                                     motion=self.cfg.motion, pair=pair, max_mice=self.cfg.max_mice, body_parts=row.body_parts,
                                     vocabulary=list(vocabulary), arena_cm=arena if np.isfinite(arena).all() else None)
        if not self.cfg.extra_features:
            return feats, mask
        extra, known = self.extra_block(row, split, len(pose))
        return np.concatenate([feats, extra], axis=1), np.concatenate([mask, known], axis=1)

    @property
    def extra_vocabulary(self) -> list[str]:
        """With ``cfg.extra_features``: every column of the training videos' features parquets
        (``<root>/train_features/<lab>/<video>.parquet``, e.g. SimBA's engineered features), sorted: a
        fixed layout across videos, like :attr:`vocabulary`. Empty without the flag."""
        if not self.cfg.extra_features:
            return []
        if self._extra is None:
            import pyarrow.parquet as pq
            names: set[str] = set()
            for r in self.metadata("train").itertuples():
                path = M.features_path(self.root, "train", r.lab_id, r.video_id)
                if path.is_file():
                    names |= set(pq.read_schema(path).names) - {"video_frame"}
            self._extra = sorted(names)
        return self._extra

    def extra_block(self, row: Any, split: str, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(T, E) extra features of one video in :attr:`extra_vocabulary` order and their (T, E) mask.
        Values are squashed with sign(x)·log1p(|x|) (engineered columns come in any unit and scale;
        no statistics to fit); a column the video lacks, a missing frame or NaN -> 0 and mask False."""
        names = self.extra_vocabulary
        values = np.full((n_frames, len(names)), np.nan, np.float32)
        path = M.features_path(self.root, split, row.lab_id, row.video_id)
        if path.is_file() and names:
            table = pd.read_parquet(path)
            frames = table["video_frame"].to_numpy(np.int64)
            keep = (frames >= 0) & (frames < n_frames)
            for j, name in enumerate(names):
                if name in table.columns:
                    values[frames[keep], j] = table[name].to_numpy(np.float32)[keep]
        known = np.isfinite(values)
        return np.where(known, np.sign(values) * np.log1p(np.abs(values)), 0).astype(np.float32), known

    def _read_video(self, row: Any, split: str, vocabulary: Sequence[str]) -> VideoData:
        pose = self.read_pose(row, split)
        n_frames = len(pose)
        feats, mask = self.features(row, pose, vocabulary, split=split)
        labels = None
        if split == "train":
            keys = M.behavior_keys(row.behaviors)
            annotation = M.read_annotation(M.annotation_path(self.root, row.lab_id, row.video_id))
            labels = group_frames(M.frame_labels(annotation, n_frames, keys), [k[2] for k in keys]) if keys else \
                np.zeros(n_frames, np.int64)
        return VideoData(str(row.video_id), feats, mask, labels)

    def _videos(self, ids: Sequence[str], split: str = "train") -> list[VideoData]:
        meta = self.metadata(split)
        meta = meta.set_index(meta["video_id"].astype(str))
        vocab = self.vocabulary
        return [self.load_video(meta.loc[i], split, vocab) for i in ids]

    @staticmethod
    def _window_set(videos: Sequence[VideoData], length: int, stride: int) -> WindowDataset:
        return WindowDataset([{"features": v.features, "mask": v.mask, "labels": v.labels} for v in videos], length, stride)

    def has_test_split(self) -> bool:
        """``test.csv`` and ``test_tracking/`` present (logged when not)."""
        present = (self.root / "test.csv").exists() and (self.root / "test_tracking").exists()
        if not present:
            log.info("%s or %s not found: no test split to predict", self.root / "test.csv", self.root / "test_tracking")
        return present

    def final_checkpoint(self, fold_dir: Path, fold_metrics: dict[str, Any]) -> Path:
        return fold_dir / "checkpoints" / "best.pt"



class GroupedBehaviorTask(BehaviorTask):
    """Seed 001's view: 4 grouped classes per frame (softmax), OOF rows = frames."""

    metric = MetricSpec("frame macro F1 (4 groups)", "max", fold_key="f1_macro")

    def fold_datasets(self, fold: int):
        train_ids, valid_ids = fold_ids(self.folds(), fold, "id")
        c = self.cfg
        return (self._window_set(self._videos(train_ids), c.window, c.stride),
                self._window_set(self._videos(valid_ids), c.window, c.window))

    # ---- model ------------------------------------------------------------------------------
    def in_features(self) -> int:
        per_point = 2 + (2 if self.cfg.motion else 0)
        return self.cfg.max_mice * len(self.vocabulary) * per_point + len(self.extra_vocabulary)

    def build_model(self, initial_weights: bool = True) -> torch.nn.Module:
        c = self.cfg  # no initial weights files in this task
        loss = LossSpec(kind=c.loss, class_weights=tuple(c.class_weights) or None, focal_gamma=c.focal_gamma)
        return build_tagger(c, self.in_features(), len(GROUP_NAMES), loss)

    def make_evaluator(self, valid_ds: Any = None) -> FrameEvaluator:
        return FrameEvaluator(len(GROUP_NAMES))

    # ---- fold epilogue: per-frame OOF and test probabilities -----------------------------------
    def predict_video(self, model: torch.nn.Module, video: VideoData) -> np.ndarray:
        return predict_frames(model, video.features, video.mask, self.cfg.window, self.cfg.infer_stride,
                              self.cfg.batch_size, self.inference, softmax=True)

    def _write_store(self, directory: Path, fold: int, kind: str, videos: list[VideoData], probs: list[np.ndarray],
                     metric: float | None = None) -> None:
        n = sum(len(p) for p in probs)
        manifest = Manifest(self.cfg.name, fold, kind, list(GROUP_NAMES), 1.0, "float16", [n, len(GROUP_NAMES)], [],
                            [f"window{self.cfg.window}-stride{self.cfg.infer_stride}"], 1.0, "f1_macro", metric)
        with PredictionWriter(directory, manifest, with_targets=kind == "oof") as writer:
            for video, p in zip(videos, probs):
                ids = [f"{video.video_id}:{t}" for t in range(len(p))]
                writer.write(ids, p, None if kind != "oof" else video.labels.astype(np.uint8))

    def finalize(self, model: torch.nn.Module, fold: int, fold_dir: Path) -> dict[str, Any]:
        _, valid_ids = fold_ids(self.folds(), fold, "id")
        videos = self._videos(valid_ids)
        probs = [self.predict_video(model, v) for v in videos]
        cm = np.zeros((len(GROUP_NAMES),) * 2, np.int64)
        for v, p in zip(videos, probs):
            np.add.at(cm, (v.labels, p.argmax(1)), 1)
        metrics = seed_metrics(cm)
        self._write_store(fold_dir / "oof", fold, "oof", videos, probs, metrics["f1_macro"])
        self.predict_test(model, fold, fold_dir, metrics)
        return metrics

    def predict_test(self, model: torch.nn.Module, fold: int, fold_dir: Path, fold_metrics: dict[str, Any]) -> bool:
        """Per-frame group probabilities of every test video → ``fold_dir/test``."""
        if not self.has_test_split():
            return False
        test_ids = self.metadata("test")["video_id"].astype(str).tolist()
        test_videos = self._videos(test_ids, "test")
        self._write_store(fold_dir / "test", fold, "test", test_videos, [self.predict_video(model, v) for v in test_videos])
        return True

    def report_fold(self, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any]) -> None:
        from kagglekit.tasks.behavior.report import write_report
        write_report(self.cfg, fold_dir, metrics, history, title=f"{self.cfg.name} fold {metrics['fold']}")

    def score_experiment(self, exp_dir: Path, fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The folds' frame confusions summed → seed 001's metrics over every OOF frame."""
        cm = sum(np.asarray(f["confusion"], dtype=np.int64) for f in fold_metrics)
        summary = seed_metrics(cm)
        return {"cv": summary["f1_macro"], **summary, "fold_f1_macro": [f["f1_macro"] for f in fold_metrics]}

    def write_submission(self, exp_dir: Path, summary: dict[str, Any], path: Path) -> Path | None:
        return self.write_blend_submission([self], [exp_dir], [1.0], summary, path)

    def write_blend_submission(self, tasks: Sequence["GroupedBehaviorTask"], member_dirs: Sequence[Path], weights: Any,
                               decisions: dict[str, Any], path: Path) -> Path | None:
        """This view has no competition file: one row per test frame with the argmax group of
        Σ wᵢ · (member i's fold-averaged probabilities), validated against the test videos' frame
        counts; no decisions read."""
        from kagglekit.store.arrays import iter_blended_test_mean, missing_stores
        if any(missing_stores(d, t.cfg.n_folds, "test") for t, d in zip(tasks, member_dirs)):
            return None
        return self.write_frame_groups(iter_blended_test_mean(member_dirs, [t.cfg.n_folds for t in tasks], weights), path)

    def write_frame_groups(self, chunks: Any, path: Path) -> Path:
        from kagglekit.io import save_csv
        from kagglekit.submission.rle import SubmissionError
        rows = [(*i.rsplit(":", 1), GROUP_NAMES[int(k)]) for ids, probs in chunks for i, k in zip(ids, probs.argmax(1))]
        frame = pd.DataFrame(rows, columns=["video_id", "frame", "group"])
        problems = frame_group_problems(frame, self.test_frame_counts())
        if problems:
            raise SubmissionError("\n".join([f"{path} would have {len(problems)} problem(s):", *problems]), problems)
        return save_csv(path, frame)

    def test_frame_counts(self) -> dict[str, int]:
        meta = self.metadata("test")
        return {str(r.video_id): len(self.read_pose(r, "test")) for r in meta.itertuples()}

    def validate_submission(self, path: Path, reference: Path | None = None) -> list[str]:
        """``video_id,frame,group``: every test frame once, groups from the seed's four."""
        try:
            frame = pd.read_csv(path, dtype={"video_id": str})
        except (OSError, ValueError) as exc:
            return [f"{path}: cannot read the CSV ({exc})"]
        return frame_group_problems(frame, self.test_frame_counts())

    def score_submission(self, path: Path, solution: Path) -> dict[str, Any]:
        """A ``video_id,frame,group`` file scored with this view's metric (frame macro F1 over the
        4 groups, seed 001's numbers as extras) against ``solution``: a ``video_id,frame,group`` CSV
        (every frame in it must be in the file once), or a data folder in the layout (``train.csv`` +
        ``train_annotation/`` + ``train_tracking/``: the groups of the videos the file names, as
        training labels them). Problems -> ``SubmissionError`` listing them."""
        from kagglekit.submission.rle import SubmissionError
        try:
            sub = pd.read_csv(path, dtype={"video_id": str})
        except (OSError, ValueError) as exc:
            raise SubmissionError(f"{path}: cannot read the CSV ({exc})", [f"cannot read the CSV ({exc})"]) from None
        covered = set(sub["video_id"].astype(str)) if "video_id" in sub.columns else set()
        truth = frame_group_truth(Path(solution), covered)
        keys = truth["video_id"].astype(str) + ":" + truth["frame"].astype(str)
        if problems := group_table_problems(sub, keys):
            raise SubmissionError("\n".join([f"{path} has {len(problems)} problem(s):", *problems]), problems)
        pred = sub.set_index(sub["video_id"].astype(str) + ":" + sub["frame"].astype(str))["group"].reindex(keys)
        index = {name: i for i, name in enumerate(GROUP_NAMES)}
        cm = np.zeros((len(GROUP_NAMES),) * 2, np.int64)
        np.add.at(cm, (truth["group"].map(index).to_numpy(), pred.astype(str).map(index).to_numpy()), 1)
        summary = seed_metrics(cm)
        return {self.metric.name: summary["f1_macro"], **summary, "videos": int(truth["video_id"].nunique())}

    def report_experiment(self, exp_dir: Path, summary: dict[str, Any], fold_metrics: Sequence[dict[str, Any]]) -> None:
        from kagglekit.tasks.behavior.report import write_report
        write_report(self.cfg, exp_dir, summary, None, title=f"{self.cfg.name} (all folds, OOF)")

    def blend_objective(self, tasks: Sequence["GroupedBehaviorTask"], member_dirs: Sequence[Path]) -> Any:
        return GroupedBlend(tasks, member_dirs)


def frame_group_problems(frame: pd.DataFrame, frame_counts: dict[str, int]) -> list[str]:
    """Every problem of a ``video_id,frame,group`` table against the test videos' frame counts."""
    return group_table_problems(frame, (f"{v}:{t}" for v, n in frame_counts.items() for t in range(n)))


def group_table_problems(frame: pd.DataFrame, expected: Iterable[str]) -> list[str]:
    """Every problem of a ``video_id,frame,group`` table: columns, group names, and each
    ``expected`` ``"<video_id>:<frame>"`` key exactly once (no other key)."""
    missing_cols = [c for c in ("video_id", "frame", "group") if c not in frame.columns]
    if missing_cols:
        return [f"missing column(s) {missing_cols}; expected video_id,frame,group"]
    problems = []
    bad = sorted(set(frame["group"].astype(str)) - set(GROUP_NAMES))
    if bad:
        problems.append(f"unknown group(s) {bad[:10]}; use one of {list(GROUP_NAMES)}")
    keys = frame["video_id"].astype(str) + ":" + frame["frame"].astype(str)
    return problems + id_coverage_problems(keys, expected, "video_id:frame")


def frame_group_truth(solution: Path, covered: set[str] | None = None) -> pd.DataFrame:
    """Held-out frame groups: ``video_id`` (str), ``frame``, ``group`` (a GROUP_NAMES name).

    ``solution``: a ``video_id,frame,group`` CSV, or a layout folder whose ``train.csv`` videos
    (those in ``covered``, all when None) get their training labels (annotation -> groups, frames
    0..max tracked video_frame, as :meth:`BehaviorTask._read_video` builds them)."""
    if not solution.is_dir():
        truth = pd.read_csv(solution, dtype={"video_id": str})
        if missing := [c for c in ("video_id", "frame", "group") if c not in truth.columns]:
            raise ValueError(f"{solution}: missing column(s) {missing}; a grouped solution CSV has video_id,frame,group"
                             " (or pass a data folder with train.csv + train_annotation/ + train_tracking/)")
        return truth
    meta = M.load_metadata(solution / "train.csv")
    parts = []
    for row in meta.itertuples():
        if covered is not None and str(row.video_id) not in covered:
            continue
        track = pd.read_parquet(M.tracking_path(solution, "train", row.lab_id, row.video_id), columns=["video_frame"])
        n_frames = int(track["video_frame"].max()) + 1 if len(track) else 0
        keys = M.behavior_keys(row.behaviors)
        labels = np.zeros(n_frames, np.int64)
        if keys:
            annotation = M.read_annotation(M.annotation_path(solution, row.lab_id, row.video_id))
            labels = group_frames(M.frame_labels(annotation, n_frames, keys), [k[2] for k in keys])
        parts.append(pd.DataFrame({"video_id": str(row.video_id), "frame": np.arange(n_frames),
                                   "group": np.asarray(GROUP_NAMES)[labels]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["video_id", "frame", "group"])


class GroupedBlend:
    """weights → frame macro F1 of argmax Σ wᵢ pᵢ over every OOF frame (members aligned row for row)."""

    def __init__(self, tasks: Sequence[GroupedBehaviorTask], member_dirs: Sequence[Path]) -> None:
        from kagglekit.store.arrays import read_predictions, require_same_ids
        self.tasks, self.member_dirs, self.n_evals = list(tasks), list(member_dirs), 0
        n_folds = tasks[0].cfg.n_folds
        stores = [[read_predictions(d / f"fold{k}" / "oof") for k in range(n_folds)] for d in member_dirs]
        ids = [[i for s in member for i in s.ids] for member in stores]
        require_same_ids([t.cfg.name for t in tasks], ids, "OOF frames",
                         "different folds.csv or windows; train them on the same folds")
        self.probs = [np.concatenate([np.asarray(s.probs, np.float32) for s in member]) for member in stores]
        self.targets = np.concatenate([np.asarray(s.targets).astype(np.int64) for s in stores[0]])

    def __call__(self, weights: np.ndarray) -> float:
        self.n_evals += 1
        pred = sum(w * p for w, p in zip(weights, self.probs)).argmax(1)
        cm = np.zeros((len(GROUP_NAMES),) * 2, np.int64)
        np.add.at(cm, (self.targets, pred), 1)
        return seed_metrics(cm)["f1_macro"]

    def full_score(self, weights: np.ndarray) -> float:
        return self(weights)

    def extras(self, weights: np.ndarray, out: Path | None = None) -> dict[str, Any]:
        return {}

    def write_submission(self, weights: np.ndarray, path: Path) -> Path | None:
        return self.tasks[0].write_blend_submission(self.tasks, self.member_dirs, weights, {}, path)


def build_tagger(c: BehaviorConfig, in_features: int, num_outputs: int, loss: LossSpec) -> torch.nn.Module:
    if c.arch == "conv_bilstm":
        return Conv1DBiLSTM(in_features, num_outputs, c.conv_channels, c.lstm_hidden, c.lstm_layers, c.dropout, loss=loss)
    if c.arch == "transformer":
        return TransformerTagger(in_features, num_outputs, c.d_model, c.n_heads, c.n_layers, c.dropout,
                                 max_len=max(c.window, 512), loss=loss)
    raise ValueError(f"arch {c.arch!r} unknown; use conv_bilstm or transformer")


@torch.no_grad()
def predict_frames(model: torch.nn.Module, features: np.ndarray, mask: np.ndarray, window: int, stride: int,
                   batch_size: int, inference: Inference, softmax: bool) -> np.ndarray:
    """features (T, F), mask (T, F) → (T, C) per-frame probabilities (softmax or sigmoid per
    window), overlap-averaged; run with the shared :class:`Inference` set-up."""
    dataset = WindowDataset([{"features": features, "mask": mask}], window, stride)
    outputs = []
    model = inference.prepare(model)
    for batch in DataLoader(dataset, batch_size=max(1, batch_size), shuffle=False):
        with inference.autocast():
            logits = model(inference.to_device(batch))["logits"].float()
        outputs.append((torch.softmax(logits, -1) if softmax else torch.sigmoid(logits)).cpu().numpy())
    return reassemble(np.concatenate(outputs), dataset.starts_of(0), len(features))


def seed_metrics(cm: np.ndarray) -> dict[str, Any]:
    """Seed 001's report numbers from a (C, C) confusion (rows = truth): accuracy, F1 macro /
    weighted, precision / recall macro, per-class P/R/F1/support/% of data, predicted vs truth share."""
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1).astype(float), cm.sum(0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    present = (support + predicted) > 0
    total = max(1.0, cm.sum())
    per_class = [{"class": name, "precision": precision[i], "recall": recall[i], "f1": f1[i], "support": int(support[i]),
                  "share": support[i] / total, "predicted_share": predicted[i] / total}
                 for i, name in enumerate(GROUP_NAMES)]
    return {"accuracy": float(tp.sum() / total), "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
            "f1_weighted": float((f1 * support).sum() / max(1.0, support.sum())),
            "precision_macro": float(precision[present].mean()) if present.any() else 0.0,
            "recall_macro": float(recall[present].mean()) if present.any() else 0.0,
            "per_class": per_class, "confusion": cm.tolist(), "frames": int(total)}
