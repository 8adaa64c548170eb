"""The keypoint Task (seed 002): train on real frames (oversampled) optionally mixed with synthetic
frames, select the model on the real val split, evaluate on the real test split with OKS-mAP,
OKS-mAP@50 and PCK@alpha (flip TTA with left/right swaps), write the metrics the gate reads."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torchvision.ops import box_iou
from tqdm.auto import tqdm

from kagglekit.experiment.setup import workspace_for
from kagglekit.experiment.contract import MetricSpec
from kagglekit.tasks.keypoints import lifecycle as KL
from kagglekit.io import write_text
from kagglekit.metrics.keypoints import COCO_SIGMAS, oks_map, pck
from kagglekit.report.markdown import markdown_kv, markdown_table
from kagglekit.report.plots import plot_history
from kagglekit.store.records import RecordsManifest, read_records, require_image_ids, write_records
from kagglekit.tasks.detection.convert import load_coco
from kagglekit.tasks.keypoints.config import KeypointConfig
from kagglekit.tasks.keypoints.convert import flip_pairs_from_names
from kagglekit.tasks.keypoints.data import KeypointDataset, MixedDataset, keypoint_names
from kagglekit.tasks.keypoints.model import KeypointModel, build_keypoint_rcnn, load_keypoint_weights
from kagglekit.weights import any_pretrained

log = logging.getLogger("kagglekit.keypoints")


def to_keypoint_results(det: dict[str, torch.Tensor], image_id: int) -> list[dict[str, Any]]:
    """torchvision detections → COCO keypoint results (category 1, box score as the score)."""
    kpts, boxes, scores = det["keypoints"].cpu().double(), det["boxes"].cpu().double(), det["scores"].cpu()
    return [{"image_id": int(image_id), "category_id": 1, "score": float(s),
             "keypoints": [float(v) for v in torch.cat([k[:, :2], torch.ones_like(k[:, 2:])], 1).flatten()],
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
            for k, b, s in zip(kpts, boxes, scores)]


def match_pck(gt: dict[str, Any], results: list[dict[str, Any]], k: int, alpha: float) -> float:
    """PCK@alpha over the labelled keypoints of non-crowd people: each person is matched to the
    highest-scoring unmatched prediction with box IoU >= 0.5 (unmatched people score 0);
    normalisation = max(w, h) of the ground-truth box."""
    preds, gts, vis, sizes = [], [], [], []
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in sorted(results, key=lambda r: -r["score"]):
        by_image.setdefault(r["image_id"], []).append(r)
    for im in gt["images"]:
        people = [a for a in gt["annotations"] if a["image_id"] == im["id"] and not a.get("iscrowd", 0)]
        dets, used = by_image.get(im["id"], []), set()
        for a in people:
            g = np.asarray(a["keypoints"], dtype=np.float64).reshape(k, 3)
            best = _best_match(a["bbox"], dets, used)
            p = np.asarray(dets[best]["keypoints"]).reshape(k, 3)[:, :2] if best is not None else np.full((k, 2), np.inf)
            preds.append(p), gts.append(g[:, :2]), vis.append(g[:, 2] > 0), sizes.append(max(a["bbox"][2], a["bbox"][3]))
    if not preds:
        return float("nan")
    return pck(np.stack(preds), np.stack(gts), np.stack(vis), np.asarray(sizes), alpha)


def _best_match(bbox: Sequence[float], dets: list[dict[str, Any]], used: set[int]) -> int | None:
    if not dets:
        return None
    g = torch.tensor([[bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]]], dtype=torch.float64)
    d = torch.tensor([[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]] for r in dets],
                     dtype=torch.float64)
    ious = box_iou(g, d)[0]
    for j in range(len(dets)):  # dets are sorted by score
        if j not in used and ious[j] >= 0.5:
            used.add(j)
            return j
    return None


def submission_keypoints(frame: pd.DataFrame, gt: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """A valid keypoint submission (``score x1 y1 v1 … xK yK vK`` per instance) → COCO keypoint
    results on ``gt``'s images (category: ``gt``'s keypoint category)."""
    by_key = {KL.image_key(im): im for im in gt["images"]}
    category = next((c["id"] for c in gt["categories"] if c.get("keypoints")), gt["categories"][0]["id"])
    per, results = 1 + 3 * k, []
    for key, text in zip(frame["image_id"].astype(str), frame["PredictionString"].fillna("").astype(str)):
        values = [float(t) for t in text.split()]
        for b in range(0, len(values), per):
            results.append({"image_id": int(by_key[key]["id"]), "category_id": category, "score": values[b],
                            "keypoints": values[b + 1:b + per]})
    return results


class KeypointEvaluator:
    def __init__(self, gt: dict[str, Any], sigmas: np.ndarray, alpha: float) -> None:
        self.gt, self.sigmas, self.alpha, self.results = gt, sigmas, alpha, []

    def update(self, outputs: dict[str, Any], batch: dict[str, Any]) -> None:
        for det, image_id in zip(outputs["detections"], batch["image_id"].tolist()):
            self.results += to_keypoint_results(det, image_id)

    def compute(self) -> dict[str, float]:
        m = oks_map(self.gt, self.results, self.sigmas)
        return {"valid_oks_map": m["AP"], "valid_oks_map50": m["AP50"],
                "valid_pck": match_pck(self.gt, self.results, len(self.sigmas), self.alpha)}


class KeypointTask:
    """The keypoint side of :class:`kagglekit.experiment.contract.Task` (one fold: the real val split)."""

    metric = MetricSpec("OKS mAP", "max", fold_key="score")

    def __init__(self, cfg: KeypointConfig) -> None:
        if cfg.n_folds != 1:
            raise ValueError(f"the keypoint task validates on the real val split: set n_folds=1 (got {cfg.n_folds})")
        self.cfg = cfg
        self.workspace = workspace_for(cfg)
        self.root, self.device, self.inference = self.workspace.root, self.workspace.device, self.workspace.inference

    def prepare_demo(self) -> None:
        from kagglekit.demo.keypoints import prepare_keypoint_demo
        prepare_keypoint_demo(self.root, n_synthetic=24)

    def _path(self, value: str) -> Path:
        return Path(value) if Path(value).is_absolute() else self.root / value

    def coco(self, which: str) -> dict[str, Any]:
        value = getattr(self.cfg, f"{which}_json")
        if not value:
            raise ValueError(f"{which}_json is not set; give the COCO keypoints JSON of that split (--set {which}_json=...)")
        return load_coco(self._path(value))

    @property
    def names(self) -> list[str]:
        return keypoint_names(self.coco("real_train"))

    @property
    def sigmas(self) -> np.ndarray:
        k = len(self.names)
        if self.cfg.sigmas:
            if len(self.cfg.sigmas) != k:
                raise ValueError(f"sigmas has {len(self.cfg.sigmas)} values but the data has {k} keypoints; give {k}")
            return np.asarray(self.cfg.sigmas)
        if k != len(COCO_SIGMAS):
            raise ValueError(f"the data has {k} keypoints: set sigmas=<{k} comma-separated OKS sigmas> "
                             "(COCO's 17 are only the default for 17 keypoints)")
        return COCO_SIGMAS

    def dataset(self, which: str, train: bool) -> KeypointDataset:
        c = self.cfg
        image_dir = self._path(c.synthetic_image_dir if which == "synthetic" else c.real_image_dir)
        coco = self.coco(which)
        if which == "synthetic" and c.synthetic_mapping:
            from kagglekit.tasks.keypoints.convert import MAPPINGS
            coco = MAPPINGS[c.synthetic_mapping].apply_coco(coco)
        if keypoint_names(coco) != self.names:
            raise ValueError(f"{which} keypoint names differ from the real ones; set synthetic_mapping to convert them")
        return KeypointDataset(coco, image_dir, train=train, hflip_p=c.hflip_p, seed=c.seed,
                               flip_pairs=flip_pairs_from_names(self.names))

    def preflight(self, fold: int) -> list[str]:
        """Every problem with the files the run reads: the real train / val / test JSONs (and the
        synthetic one when used), keypoint names that match, each listed image and keypoint row."""
        from kagglekit.tasks.keypoints.data import dataset_problems
        problems: list[str] = []
        for which in ("real_train", "real_val", "real_test") + (("synthetic",) if self.cfg.use_synthetic else ()):
            try:
                dataset = self.dataset(which, False)
            except (ValueError, OSError) as exc:  # unset / unreadable JSON (LabelError), names that differ
                problems.append(str(exc))
                continue
            problems += dataset_problems(dataset, str(self._path(getattr(self.cfg, f"{which}_json"))))
        return list(dict.fromkeys(problems))  # a bad real_train JSON fails every source the same way

    def fold_datasets(self, fold: int):
        c = self.cfg
        sources, factors = [self.dataset("real_train", True)], [c.real_oversample]
        if c.use_synthetic:
            sources.append(self.dataset("synthetic", True))
            factors.append(c.synthetic_oversample)
        return MixedDataset(sources, factors), self.dataset("real_val", False)

    def build_model(self, initial_weights: bool = True) -> KeypointModel:
        c = self.cfg
        detector = build_keypoint_rcnn(len(self.names), backbone=c.backbone, trainable_layers=c.trainable_backbone_layers,
                                       min_size=c.image_size, max_size=c.max_size, score_thresh=c.score_thresh,
                                       detections_per_image=c.detections_per_image,
                                       pretrained=any_pretrained(c.init_weights, c.pretrained),
                                       roi_batch_per_image=c.roi_batch_per_image, head_channels=c.keypoint_head_channels)
        if (c.init_weights or c.pretrained) and initial_weights:
            load_keypoint_weights(detector, c.init_weights, c.pretrained)
        elif initial_weights:
            log.info("pretrained=False: keypoint R-CNN randomly initialised (set init_weights=<local checkpoint>)")
        return KeypointModel(detector, flip_pairs_from_names(self.names))

    def make_evaluator(self, valid_ds: KeypointDataset) -> KeypointEvaluator:
        return KeypointEvaluator(valid_ds.coco, self.sigmas, self.cfg.pck_alpha)

    @torch.no_grad()
    def predict(self, model: KeypointModel, dataset: KeypointDataset, tta_flip: bool) -> list[dict[str, Any]]:
        model = self.inference.prepare(model)
        results = []
        for i in tqdm(range(len(dataset)), desc="predict" + (" (flip TTA)" if tta_flip else ""), leave=False):
            with self.inference.autocast():
                instances = model.predict(dataset.load_image(i).to(self.device), tta_flip)
            results += to_keypoint_results(instances, dataset.images[i]["id"])
        return results

    def scores(self, gt: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, float]:
        m = oks_map(gt, results, self.sigmas)
        return {"oks_map": m["AP"], "oks_map50": m["AP50"], "oks_map75": m["AP75"],
                f"pck{self.cfg.pck_alpha:g}": match_pck(gt, results, len(self.sigmas), self.cfg.pck_alpha)}

    def finalize(self, model: KeypointModel, fold: int, fold_dir: Path) -> dict[str, Any]:
        out: dict[str, Any] = {"arm": "A (synthetic + real)" if self.cfg.use_synthetic else "B (real only)"}
        val = self.dataset("real_val", False)
        self._write_results(fold_dir, fold, "val", val, self.predict(model, val, self.cfg.tta_flip))
        self._score_split(model, val, fold_dir, "val", out)
        if self.predict_test(model, fold, fold_dir, out):
            self._score_split(model, self.dataset("real_test", False), fold_dir, "test", out)
        out["score"] = out["val"]["oks_map"]
        return out

    def _write_results(self, fold_dir: Path, fold: int, split: str, ds: KeypointDataset,
                       results: list[dict[str, Any]], metric: float | None = None) -> None:
        """``results`` of every image of ``ds`` → the records store ``fold_dir/evaluation/<split>/``."""
        write_records(KL.fold_results_path(fold_dir, split).parent, results, RecordsManifest(
            self.cfg.name, fold, split, "keypoints", [im["id"] for im in ds.images], [1],  # to_keypoint_results: category 1
            tta_views=["original", "flipped"] if self.cfg.tta_flip else ["original"],
            metric_name=self.metric.name if metric is not None else "", metric=metric))

    def _score_split(self, model: KeypointModel, ds: KeypointDataset, fold_dir: Path, split: str, out: dict[str, Any]) -> None:
        """The split's saved results scored against its ground truth (+ without flip TTA when TTA is
        on); the score goes into the store's manifest."""
        directory = KL.fold_results_path(fold_dir, split).parent
        results, manifest = read_records(directory, "keypoints", require_manifest=True)
        require_image_ids(directory, manifest, [im["id"] for im in ds.images])
        out[split] = self.scores(ds.coco, results)
        self._write_results(fold_dir, manifest.fold, split, ds, results, float(out[split]["oks_map"]))
        if self.cfg.tta_flip:
            out[f"{split}_no_tta"] = self.scores(ds.coco, self.predict(model, ds, False))

    def predict_test(self, model: KeypointModel, fold: int, fold_dir: Path, fold_metrics: dict[str, Any]) -> bool:
        """COCO keypoint results of ``real_test_json``'s images (flip TTA when configured) →
        the records store ``fold_dir/evaluation/test/`` (``keypoint_results.json`` + ``manifest.json``;
        False: real_test_json not set)."""
        if not self.cfg.real_test_json:
            log.info("real_test_json is not set: no test split to predict")
            return False
        ds = self.dataset("real_test", False)
        self._write_results(fold_dir, fold, "test", ds, self.predict(model, ds, self.cfg.tta_flip))
        return True

    def final_checkpoint(self, fold_dir: Path, fold_metrics: dict[str, Any]) -> Path:
        return fold_dir / "checkpoints" / "best.pt"

    def report_fold(self, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any]) -> None:
        plot_history(history, fold_dir / "history.png", loss_cols=("train_loss",),
                     metric_cols=("valid_oks_map", "valid_oks_map50", "valid_pck"),
                     experiment=self.cfg.name, fold=metrics.get("fold"))
        rows = [{"split": k, **v} for k, v in metrics.items() if isinstance(v, dict)]
        c = self.cfg
        text = "\n\n".join([
            f"# {c.name} — keypoints, {metrics['arm']}",
            "## Configuration\n" + markdown_kv({
                "Sources": f"real ×{c.real_oversample}" + (f" + synthetic ×{c.synthetic_oversample}" if c.use_synthetic else ""),
                "Model": f"Keypoint R-CNN {c.backbone}-FPN, K={len(self.names)}", "Init": c.init_weights or "random",
                "Training": f"{c.epochs} epochs, image {c.image_size}, batch {c.batch_size}, lr {c.lr:g}",
                "Flip TTA": c.tta_flip, "PCK": f"alpha {c.pck_alpha:g} × max(w, h) of the ground-truth box"}),
            "## Real-domain results\n" + markdown_table(rows),
            "## Training history\n" + markdown_table(history.drop(columns=["seconds"], errors="ignore"))
            + "\n![history](history.png)", self.error_analysis(fold_dir, int(metrics.get("fold", 0))).rstrip()])
        write_text(fold_dir / "report.md", text + "\n")

    def error_analysis(self, fold_dir: Path, fold: int) -> str:
        """The fold report's error analysis of its validation keypoints
        (:func:`kagglekit.tasks.keypoints.report.keypoint_analysis_section`); when the inputs cannot
        be read, one section saying why (the report is written either way)."""
        from kagglekit.tasks.keypoints.report import keypoint_analysis_section
        try:
            val = self.dataset("real_val", False)
            results = KL.read_fold_results(fold_dir, "val", val.images)
            names, sigmas = self.names, self.sigmas
        except (OSError, ValueError) as exc:
            log.warning("error analysis of %s not drawn: %s", fold_dir, exc)
            return f"## Error analysis\nNot drawn: {exc}\n"
        return keypoint_analysis_section(fold_dir, self.cfg.name, fold, val.coco, results, val.base.image_dir,
                                         names, sigmas)

    def score_experiment(self, exp_dir: Path, fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
        fold = fold_metrics[0]
        return {"cv": fold["val"]["oks_map"], **{k: fold[k] for k in ("arm", "val", "test") if k in fold}}

    def write_submission(self, exp_dir: Path, summary: dict[str, Any], path: Path) -> Path | None:
        return self.write_blend_submission([self], [exp_dir], [1.0], summary, path)

    def write_blend_submission(self, tasks: Sequence["KeypointTask"], member_dirs: Sequence[Path], weights: Any,
                               decisions: dict[str, Any], path: Path) -> Path | None:
        """The members' fold-0 test keypoints; several members fused by :func:`fuse_keypoints`
        with ``weights``, one written as it is → validated ``image_id,PredictionString`` CSV."""
        files = [KL.KeypointBlend.results_path(d, "test") for d in member_dirs]
        if not all(f.exists() for f in files):
            return None
        images = self.dataset("real_test", False).coco["images"]
        members = [KL.read_fold_results(Path(d) / "fold0", "test", images) for d in member_dirs]
        k = len(self.names)
        results = members[0] if len(members) == 1 else KL.fuse_keypoints(members, weights, k)
        return KL.write_keypoint_submission(results, images, k, path)

    def validate_submission(self, path: Path, reference: Path | None = None) -> list[str]:
        """``image_id,PredictionString`` against the real test images (or ``reference``'s image_id column)."""
        try:
            frame = pd.read_csv(path, dtype={"image_id": str}, keep_default_na=False)
        except (OSError, ValueError) as exc:
            return [f"{path}: cannot read the CSV ({exc})"]
        ids = (pd.read_csv(reference, dtype=str)["image_id"].tolist() if reference else
               [KL.image_key(im) for im in self.dataset("real_test", False).coco["images"]])
        return KL.keypoint_submission_problems(frame, ids, len(self.names))

    def score_submission(self, path: Path, solution: Path) -> dict[str, Any]:
        """An ``image_id,PredictionString`` keypoint file (validated against the solution's images:
        problems → ``SubmissionError``) → COCO keypoint results → OKS-mAP (``oks_map``, this
        task's sigmas) against ``solution``: a COCO keypoints JSON, or ``val`` / ``test`` (the
        configured real_val / real_test JSON)."""
        from kagglekit.submission.rle import SubmissionError
        solution = Path(solution)
        named = {"val": "real_val", "test": "real_test"}
        gt = self.coco(named[str(solution)]) if not solution.exists() and str(solution) in named else load_coco(solution)
        k = len(self.names)
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise SubmissionError(f"{path}: cannot read the CSV ({exc})", [f"cannot read the CSV ({exc})"]) from None
        if problems := KL.keypoint_submission_problems(frame, [KL.image_key(im) for im in gt["images"]], k):
            raise SubmissionError("\n".join([f"{path} has {len(problems)} problem(s):", *problems]), problems)
        results = submission_keypoints(frame, gt, k)
        m = oks_map(gt, results, self.sigmas)
        return {self.metric.name: float(m["AP"]), "oks_map50": float(m["AP50"]), "oks_map75": float(m["AP75"]),
                "images": len(gt["images"]), "instances": len(results)}

    def report_experiment(self, exp_dir: Path, summary: dict[str, Any], fold_metrics: Sequence[dict[str, Any]]) -> None:
        sub = f"\n\nSubmission: `{summary['submission']}`\n" if summary.get("submission") else "\n"
        text = (exp_dir / "fold0" / "report.md").read_text().rstrip()
        text = re.sub(r"\]\((?![a-z]+:|/|fold\d)([^)]+\.png)\)", r"](fold0/\1)", text)  # the fold's pictures, from here
        write_text(exp_dir / "report.md", text + sub)

    def blend_objective(self, tasks: Sequence["KeypointTask"], member_dirs: Sequence[Path]) -> KL.KeypointBlend:
        return KL.KeypointBlend(tasks, member_dirs)
