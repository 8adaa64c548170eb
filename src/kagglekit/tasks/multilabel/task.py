"""The multi-label image Task (seed 000 door_state): N sigmoid heads with partial-label BCE (or a
softmax over states, v20260511), weighted sampling, cam_erase, SWA-N with BatchNorm
recalibration, validation-best thresholds saved with the model as a one-file predictor."""
from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from kagglekit.experiment.setup import workspace_for
from kagglekit.cv import fold_ids, get_or_make_folds
from kagglekit.experiment.metrics_file import load_metrics
from kagglekit.engine.swa import average_checkpoints, recompute_batchnorm
from kagglekit.metrics.classification import multiclass_report, multilabel_report
from kagglekit.experiment.contract import MetricSpec
from kagglekit.store.arrays import Manifest, PredictionWriter, read_predictions
from kagglekit.tasks.multilabel import data as D
from kagglekit.tasks.multilabel import lifecycle as L
from kagglekit.tasks.multilabel.config import MultiLabelConfig
from kagglekit.tasks.multilabel.model_wrap import TimmClassifier, load_backbone_weights
from kagglekit.tasks.multilabel.predictor import PredictorMeta, save_predictor
from kagglekit.tta.classification import make_views, tta_probs_classification

log = logging.getLogger("kagglekit.multilabel")


def parse_states(entries: Sequence[str], attributes: Sequence[str]) -> D.StateMap:
    """"1,0=open" entries → StateMap; no entries: all open → open, all closed → closed, else mixed."""
    if not entries:
        states = {v: ("open" if all(v) else "closed" if not any(v) else "mixed")
                  for v in itertools.product((0, 1), repeat=len(attributes))}
        return D.StateMap(tuple(attributes), states)
    states = {}
    for entry in entries:
        key, _, name = entry.partition("=")
        vector = tuple(int(x) for x in key.split(","))
        if len(vector) != len(attributes) or not name:
            raise ValueError(f"states entry {entry!r}: expected {len(attributes)} comma-separated 0/1 values '=' a name")
        states[vector] = name
    return D.StateMap(tuple(attributes), states)


class StateClassDataset(Dataset):
    """The softmax variant: the attribute vector of each item → its state's class index."""

    def __init__(self, base: D.MultiLabelDataset, state_map: D.StateMap, classes: Sequence[str]) -> None:
        self.base, self.state_map, self.classes = base, state_map, list(classes)
        self.transform = base.transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.base[i])
        item["target"] = torch.tensor(self.classes.index(self.state_map.state_of(item["target"].long().tolist())))
        return item


class ClassificationEvaluator:
    def __init__(self, kind: str, names: Sequence[str]) -> None:
        self.kind, self.names, self.probs, self.targets = kind, list(names), [], []

    def update(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        logits = outputs["logits"].float()
        self.probs.append((torch.sigmoid(logits) if self.kind == "multilabel" else torch.softmax(logits, 1)).cpu().numpy())
        self.targets.append(batch["target"].cpu().numpy())

    def compute(self) -> dict[str, float]:
        probs, targets = np.concatenate(self.probs), np.concatenate(self.targets)
        if self.kind == "multilabel":
            r = multilabel_report(probs, targets.astype(np.int64), self.names)
            return {"valid_mAP": float(r["mAP"]), "valid_macro_f1": float(r["macro_f1"])}
        r = multiclass_report(probs, targets.astype(np.int64), self.names)
        return {"valid_accuracy": float(r["accuracy"]), "valid_macro_f1": float(r["macro_f1"]),
                "valid_macro_f1_active": float(r["macro_f1_active"])}


class MultiLabelTask:
    """The multi-label side of :class:`kagglekit.experiment.contract.Task`."""

    def __init__(self, cfg: MultiLabelConfig) -> None:
        self.cfg = cfg
        self.workspace = workspace_for(cfg)
        self.root, self.device, self.inference = self.workspace.root, self.workspace.device, self.workspace.inference
        self.folds_csv = self.workspace.folds_csv  # input/<comp>/folds.csv when data_dir is read-only
        self._frame: pd.DataFrame | None = None

    # ---- data -------------------------------------------------------------------------------
    def prepare_demo(self) -> None:
        if not (self.root / self.cfg.labels_csv).exists():
            from kagglekit.demo.doors import generate_doors
            log.info("demo: generating synthetic car-door images into %s", self.root)
            generate_doors(self.root)
        test_csv = Path(self.cfg.test_csv)
        if self.cfg.test_csv and test_csv.is_absolute() and not test_csv.exists():
            from kagglekit.demo.doors import generate_door_test
            log.info("demo: generating unlabelled test images for %s", test_csv)
            generate_door_test(test_csv)

    @property
    def metric(self) -> MetricSpec:
        """mAP over the sigmoid heads, or macro F1 over the states (softmax kind)."""
        return MetricSpec("mAP" if self.cfg.kind == "multilabel" else "macro F1", "max", fold_key="score")

    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            frame = D.load_labels(self.root / self.cfg.labels_csv, self.root, list(self.cfg.attributes) or None)
            self.image_column = frame.columns[0]
            self.attributes = [c for c in frame.columns if c != self.image_column]
            self.state_map = parse_states(self.cfg.states, self.attributes)
            self._frame = self.state_map.filter_rows(frame, tuple(self.cfg.drop_states))
        return self._frame

    @property
    def labels(self) -> list[str]:
        """Output names: attributes (multilabel) or state classes (softmax)."""
        self.frame()
        if self.cfg.kind == "multilabel":
            return list(self.attributes)
        return sorted({s for s in self.state_map.states.values() if s not in self.cfg.drop_states})

    def folds(self) -> pd.DataFrame:
        frame = self.frame()
        table = frame.rename(columns={self.image_column: "id"})
        return get_or_make_folds(self.folds_csv, table, "id", self.cfg.n_folds, self.cfg.fold_strategy,
                                 y=list(self.attributes), seed=self.cfg.fold_seed)

    def dataset(self, ids: Sequence[str], train: bool, augment: bool | None = None) -> Dataset:
        c, frame = self.cfg, self.frame()
        rows = frame.set_index(frame[self.image_column].astype(str)).loc[list(ids)].reset_index(drop=True)
        transform = D.build_transforms(c.image_size, train if augment is None else augment, c.cam_erase_p, c.hflip_p, seed=c.seed)
        base = D.MultiLabelDataset(rows, self.root, self.attributes, transform=transform)
        if train and c.weighted_sampler:
            base.sample_weights = D.sample_weights(base.targets.astype(np.int64))
        if c.kind == "softmax":
            wrapped = StateClassDataset(base, self.state_map, self.labels)
            wrapped.sample_weights = getattr(base, "sample_weights", None)
            return wrapped
        return base

    def preflight(self, fold: int) -> list[str]:
        """Every problem with the label CSV and the images it lists (the fold's training and
        validation images are among them): bad cells, duplicates, missing or undecodable files."""
        return D.preflight_labels(self.root / self.cfg.labels_csv, self.root, list(self.cfg.attributes) or None)

    def fold_datasets(self, fold: int):
        train_ids, valid_ids = fold_ids(self.folds(), fold, "id")
        return self.dataset(train_ids, True), self.dataset(valid_ids, False)

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, initial_weights: bool = True) -> torch.nn.Module:
        c = self.cfg
        model = TimmClassifier(c.backbone, len(self.labels), c.kind, c.loss, c.focal_gamma, drop_rate=c.drop_rate)
        if c.pretrained and initial_weights:
            load_backbone_weights(model, c.pretrained)
        else:
            log.info("pretrained=False: backbone %s randomly initialised (set pretrained=<local file>)", c.backbone)
        return model

    def make_evaluator(self, valid_ds: Any = None) -> ClassificationEvaluator:
        return ClassificationEvaluator(self.cfg.kind, self.labels)

    # ---- fold epilogue: best vs SWA-N, thresholds, predictor files, OOF -------------------------
    @torch.no_grad()
    def predict(self, model: torch.nn.Module, dataset: Dataset) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(probs (N, K), targets, ids) with the configured TTA views."""
        c = self.cfg
        views = make_views(c.tta_scales, c.tta_flip)
        perm = list(c.flip_permutation) or None
        forward = self.inference.forward(model, "logits")
        activation = "sigmoid" if c.kind == "multilabel" else "softmax"
        probs, targets, ids = [], [], []
        loader = DataLoader(dataset, batch_size=c.batch_size, shuffle=False, num_workers=self.workspace.num_workers,
                            pin_memory=self.device.type == "cuda")
        for batch in tqdm(loader, desc="predict", leave=False):
            probs.append(tta_probs_classification(forward, batch["image"].to(self.device), views, activation, perm).cpu().numpy())
            targets.append(batch["target"].numpy())
            ids += list(batch["id"])
        return np.concatenate(probs), np.concatenate(targets), ids

    def report(self, probs: np.ndarray, targets: np.ndarray, thresholds: Sequence[float] | None = None) -> dict[str, Any]:
        if self.cfg.kind == "multilabel":
            return multilabel_report(probs, targets.astype(np.int64), self.labels, thresholds)
        return multiclass_report(probs, targets.astype(np.int64), self.labels)

    def swa_model(self, fold_dir: Path, train_ids: Sequence[str]) -> tuple[torch.nn.Module | None, list[str]]:
        """Average of the last ``swa_n`` epoch checkpoints, BatchNorm statistics recomputed on the
        (un-augmented) training images — timm's checkpoint averager skips that step."""
        paths_ = sorted((fold_dir / "checkpoints").glob("epoch[0-9][0-9][0-9].pt"))[-self.cfg.swa_n:]
        if self.cfg.swa_n <= 0 or not paths_:
            return None, []
        model = self.build_model()
        model.load_state_dict(average_checkpoints(paths_))
        loader = DataLoader(self.dataset(train_ids, True, augment=False), batch_size=self.cfg.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(self.cfg.seed))
        recompute_batchnorm(model, loader, self.device)
        return model, [p.name for p in paths_]

    def export_predictor(self, model: torch.nn.Module, path: Path, thresholds: Sequence[float]) -> Path:
        c = self.cfg
        meta = PredictorMeta(backbone=c.backbone, kind=c.kind, image_size=c.image_size,
                             attributes=list(self.attributes) if c.kind == "multilabel" else [],
                             classes=self.labels if c.kind == "softmax" else [],
                             thresholds=[float(t) for t in thresholds] if c.kind == "multilabel" else [],
                             state_map=self.state_map.to_dict()["states"] if c.kind == "multilabel" else {},
                             flip_permutation=list(c.flip_permutation), version=c.name)
        return save_predictor(path, {k: v.cpu() for k, v in model.state_dict().items()}, meta, strict_thresholds=False)

    def finalize(self, model: torch.nn.Module, fold: int, fold_dir: Path) -> dict[str, Any]:
        """Best and SWA-N candidates scored on the fold's images; the last one is final: its OOF
        (and test) probabilities go to the store, its thresholds and predictor file to the fold."""
        train_ids, valid_ids = fold_ids(self.folds(), fold, "id")
        valid = self.dataset(valid_ids, False)
        versions: dict[str, dict[str, Any]] = {}
        swa, swa_sources = self.swa_model(fold_dir, train_ids)
        for name, candidate in (("best", model), ("swa", swa)):
            if candidate is None:
                continue
            probs, targets, ids = self.predict(candidate, valid)
            versions[name] = self.report(probs, targets)
            thresholds = L.thresholds_of(versions[name], self.labels)
            self.export_predictor(candidate, fold_dir / f"{name}_predictor.pt", thresholds)
            final = (name, candidate, probs, targets, ids)
        name, candidate, probs, targets, ids = final
        self._write_oof(fold_dir / "oof", fold, probs, targets, ids)
        metrics = {"versions": versions, "final": name, "swa_sources": swa_sources, "n_valid": len(ids),
                   "score": L.score(versions[name], self.cfg.kind), "thresholds": thresholds}
        self.predict_test(candidate, fold, fold_dir, metrics)
        return metrics

    def predict_test(self, model: torch.nn.Module, fold: int, fold_dir: Path, fold_metrics: dict[str, Any]) -> bool:
        """Probabilities (N_images, K) of the ``test_csv`` images → ``fold_dir/test`` (False: no test_csv)."""
        if not self.cfg.test_csv:
            log.info("test_csv is empty: no test split to predict")
            return False
        self._write_test(fold_dir / "test", fold, model)
        return True

    def final_checkpoint(self, fold_dir: Path, fold_metrics: dict[str, Any]) -> Path:
        """The final version's predictor file (``best`` or ``swa``): its ``model`` is what predicted."""
        return fold_dir / f"{fold_metrics['final']}_predictor.pt"

    def test_frame(self) -> pd.DataFrame:
        """The test images (``test_csv``'s first column), label columns filled as missing."""
        path = Path(self.cfg.test_csv)
        path = path if path.is_absolute() else self.root / path
        if not path.exists():
            raise FileNotFoundError(f"test_csv {path} not found; list the test images in its first column")
        frame = pd.read_csv(path, dtype=str).iloc[:, :1].rename(columns=lambda _: self.submission_id_column)
        return frame.assign(**{a: -1 for a in self.attributes})

    def _write_test(self, directory: Path, fold: int, model: torch.nn.Module) -> None:
        frame = self.test_frame()
        transform = D.build_transforms(self.cfg.image_size, False, self.cfg.cam_erase_p, self.cfg.hflip_p, seed=self.cfg.seed)
        probs, _, ids = self.predict(model, D.MultiLabelDataset(frame, self.root, self.attributes, transform=transform))
        manifest = Manifest(self.cfg.name, fold, "test", self.labels, 1.0, "float16", list(probs.shape), [])
        with PredictionWriter(directory, manifest, with_targets=False) as writer:
            writer.write(ids, probs)

    @property
    def submission_id_column(self) -> str:
        self.frame()
        return self.image_column

    def _write_oof(self, directory: Path, fold: int, probs: np.ndarray, targets: np.ndarray, ids: list[str]) -> None:
        manifest = Manifest(self.cfg.name, fold, "oof", self.labels, 1.0, "float16", list(probs.shape), [])
        t = np.where(targets < 0, 255, targets).astype(np.uint8)
        with PredictionWriter(directory, manifest, with_targets=True, target_shape=t.shape) as writer:
            writer.write(ids, probs, t)

    # ---- reports ------------------------------------------------------------------------------
    def _states(self, probs: np.ndarray, targets: np.ndarray, thresholds: Sequence[float]) -> tuple[list[str], list[str]]:
        if self.cfg.kind == "softmax":
            return [self.labels[int(t)] for t in targets], [self.labels[int(i)] for i in probs.argmax(1)]
        decided = (probs >= np.asarray(thresholds)[None]).astype(int)
        return ([self.state_map.state_of(t.astype(int).tolist()) for t in targets],
                [self.state_map.state_of(d.tolist()) for d in decided])

    def report_fold(self, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any]) -> None:
        from kagglekit.report.plots import plot_history
        from kagglekit.tasks.multilabel import report as R
        fold = int(metrics["fold"])
        plot_history(history, fold_dir / "history.png", loss_cols=("train_loss", "valid_loss"),
                     metric_cols=("valid_mAP", "valid_macro_f1", "valid_accuracy"), experiment=self.cfg.name, fold=fold)
        store = read_predictions(fold_dir / "oof")
        probs, ids, thresholds = np.asarray(store.probs, np.float32), store.ids, metrics.get("thresholds", [])
        targets = np.asarray(store.targets).astype(np.int64)
        targets = np.where(targets == 255, -1, targets)
        truth, pred = self._states(probs, targets, thresholds)
        shown_thr = thresholds if self.cfg.kind == "multilabel" else []
        samples = R.sample_lines(truth, pred, probs, self.labels if self.cfg.kind == "multilabel" else [], shown_thr)
        cells = R.audit_cells(probs, targets, thresholds if self.cfg.kind == "multilabel" else None, self.cfg.kind,
                              ids, (truth, pred), lambda i: self.root / i)
        (fold_dir / "fp_audit.png").unlink(missing_ok=True)  # a re-run without false positives keeps no old picture
        R.write_fp_audit(fold_dir / "fp_audit.png", cells, self.labels, self.cfg.name, fold)
        audit = R.audit_lines(cells, self.labels)
        params = sum(p.numel() for p in self.build_model().parameters()) / 1e6
        others = {}
        for name in self.cfg.compare_to:
            path = fold_dir.parent.parent / name / fold_dir.name / "metrics.json"
            if path.exists():
                others[name] = load_metrics(path)["versions"]["best"]
            else:
                log.info("compare_to %s: %s not found, left out of the version table", name, path)
        R.write_fold_report(self.cfg, fold_dir, history, metrics, samples, audit, params, others)

    def score_experiment(self, exp_dir: Path, fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Every fold's OOF concatenated; thresholds re-tuned on all of it (used by the submission)."""
        _, probs, targets = L.merged_oof(exp_dir, self.cfg.n_folds)
        report = self.report(probs, targets)
        prior = self.prior_map(targets) if self.cfg.kind == "multilabel" else None
        return {"cv": L.score(report, self.cfg.kind), "oof": report, "label_prior_mAP": prior,
                "thresholds": L.thresholds_of(report, self.labels)}

    def write_submission(self, exp_dir: Path, summary: dict[str, Any], path: Path) -> Path | None:
        return self.write_blend_submission([self], [exp_dir], [1.0], summary, path)

    def write_blend_submission(self, tasks: Sequence["MultiLabelTask"], member_dirs: Sequence[Path], weights: Any,
                               decisions: dict[str, Any], path: Path) -> Path | None:
        """Σ wᵢ pᵢ (weights normalised) of the members' fold-averaged test probabilities → 0/1 per
        attribute at ``decisions["thresholds"]`` (or the argmax state) → validated CSV."""
        return L.write_blended_decisions(self, tasks, member_dirs, weights, decisions["thresholds"], path)

    def validate_submission(self, path: Path, reference: Path | None = None) -> list[str]:
        """Columns id + one 0/1 per attribute (or ``state``); every test image (``test_csv``, or
        ``reference``'s first column) exactly once."""
        try:
            frame = pd.read_csv(path, dtype={self.submission_id_column: str})
        except (OSError, ValueError) as exc:
            return [f"{path}: cannot read the CSV ({exc})"]
        ids = (pd.read_csv(reference, dtype=str).iloc[:, 0] if reference else self.test_frame().iloc[:, 0]).tolist()
        return L.submission_problems(frame, ids, self.labels, self.cfg.kind, self.submission_id_column,
                                     self.cfg.submission_values)

    def score_submission(self, path: Path, solution: Path) -> dict[str, Any]:
        """The submission's rows for ``solution``'s images (an id column + one 1/0/empty column
        per attribute, or ``state``) scored like the OOF: mAP (multilabel, threshold-free; F1 at
        0.5 for probabilities, as written for 0/1) or macro F1 of the states."""
        from kagglekit.submission.rle import SubmissionError
        ids, targets = L.solution_targets(Path(solution), self.submission_id_column, self.labels, self.cfg.kind)
        frame = pd.read_csv(path, dtype={self.submission_id_column: str})
        if problems := L.submission_problems(frame, ids, self.labels, self.cfg.kind, self.submission_id_column,
                                             self.cfg.submission_values):
            raise SubmissionError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems[:5]), problems)
        scores = L.submission_scores(frame.set_index(frame[self.submission_id_column].astype(str)).loc[ids],
                                     self.submission_id_column, self.labels, self.cfg.kind, self.cfg.submission_values)
        thresholds = [0.5] * len(self.labels) if self.cfg.kind == "multilabel" else None
        report = (self.report(scores, targets, thresholds) if thresholds else self.report(scores, targets))
        return {self.metric.name: L.score(report, self.cfg.kind), "report": report}

    def report_experiment(self, exp_dir: Path, summary: dict[str, Any], fold_metrics: Sequence[dict[str, Any]]) -> None:
        from kagglekit.io import write_text
        from kagglekit.tasks.multilabel.report import per_attribute_table
        report, prior = summary["oof"], summary["label_prior_mAP"]
        head = (f"- **OOF mAP**: **{report['mAP']:.4f}** (label prior: {prior:.4f})\n- **OOF macro F1**: {report['macro_f1']:.4f}"
                if self.cfg.kind == "multilabel" else
                f"- **OOF accuracy**: {report['accuracy']:.4f}\n- **OOF macro F1**: {report['macro_f1']:.4f} "
                f"({report['macro_f1_active']:.4f} over classes with support)")
        sub = f"\n- **Submission**: `{summary['submission']}`" if summary.get("submission") else ""
        write_text(exp_dir / "report.md", f"# {self.cfg.name} (all folds, OOF)\n\n{head}{sub}\n\n"
                   + per_attribute_table({"versions": {"oof": report}}) + "\n")

    def blend_objective(self, tasks: Sequence["MultiLabelTask"], member_dirs: Sequence[Path]) -> L.MultiLabelBlend:
        return L.MultiLabelBlend(tasks, member_dirs)

    @staticmethod
    def prior_map(targets: np.ndarray) -> float:
        """mAP of a constant score (every image ranked equal): each head's AP = its positive rate."""
        rates = [(t[t >= 0] == 1).mean() for t in targets.T if (t >= 0).any() and 0 < (t[t >= 0] == 1).mean() < 1]
        return float(np.mean(rates)) if rates else float("nan")
