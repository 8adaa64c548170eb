"""Keypoint side of the experiment lifecycle: the submission (one row per test image,
``image_id,PredictionString`` with ``score x1 y1 v1 … xK yK vK`` per instance, image_id = the
image file's stem), its validator, and the ensemble objective.

Blending (one choice, documented): instances are matched across members by box IoU (greedy,
``match_instances``, as flip TTA does); the anchor is the member with the largest weight. Each
anchor instance's keypoints, box and score become the weighted mean over the members that match
it (a member without a match contributes nothing; the score is scaled by the matched weight
share); instances no anchor instance matches are dropped. Scored with OKS-mAP on the real
validation set."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from kagglekit.io import save_csv
from kagglekit.store.arrays import OOFError
from kagglekit.store.records import read_records, records_path, require_image_ids
from kagglekit.submission.rle import SubmissionError
from kagglekit.submission.validate import id_coverage_problems
from kagglekit.tta.keypoints import match_instances

Results = list[dict[str, Any]]
COLUMNS = ("image_id", "PredictionString")


def image_key(image: dict[str, Any]) -> str:
    return Path(image["file_name"]).stem


def keypoints_frame(results: Results, images: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows: dict[int, list[str]] = {int(im["id"]): [] for im in images}
    for r in sorted(results, key=lambda r: -float(r["score"])):
        rows[int(r["image_id"])].append(" ".join([f"{float(r['score']):.5f}", *(f"{v:.2f}" for v in r["keypoints"])]))
    return pd.DataFrame({"image_id": [image_key(im) for im in images],
                         "PredictionString": [" ".join(rows[int(im["id"])]) for im in images]})


def keypoint_submission_problems(frame: pd.DataFrame, image_ids: Sequence[str], k: int) -> list[str]:
    """Every problem: columns, each test image once, ``1 + 3K`` finite numbers per instance."""
    if tuple(frame.columns) != COLUMNS:
        return [f"columns are {list(frame.columns)}; expected {list(COLUMNS)}"]
    problems = id_coverage_problems(frame["image_id"], image_ids, "image_id")
    per = 1 + 3 * k
    for i, text in enumerate(frame["PredictionString"].fillna("").astype(str), start=1):
        tokens = text.split()
        if len(tokens) % per:
            problems.append(f"row {i}: {len(tokens)} tokens, not a multiple of {per} (score + {k} × x y v)")
            continue
        try:
            values = np.array([float(t) for t in tokens])
        except ValueError:
            problems.append(f"row {i}: a token is not a number")
            continue
        if not np.isfinite(values).all():
            problems.append(f"row {i}: NaN/inf")
        elif len(values) and not ((values[::per] >= 0) & (values[::per] <= 1)).all():
            problems.append(f"row {i}: an instance score is outside [0, 1]")
    return problems


def write_keypoint_submission(results: Results, images: Sequence[dict[str, Any]], k: int, path: Path) -> Path:
    frame = keypoints_frame(results, images)
    problems = keypoint_submission_problems(frame, [image_key(im) for im in images], k)
    if problems:
        raise SubmissionError("\n".join([f"{path} would have {len(problems)} problem(s):", *problems]), problems)
    return save_csv(path, frame)


def fold_results_path(fold_dir: Path, split: str) -> Path:
    """The results file of a fold's ``split`` (val / test) keypoint records store
    ``fold_dir/evaluation/<split>/`` (``keypoint_results.json`` + ``manifest.json``)."""
    return records_path(Path(fold_dir) / "evaluation" / split, "keypoints")


def read_fold_results(fold_dir: Path, split: str, images: Sequence[dict[str, Any]] | None = None) -> Results:
    """A fold's keypoint results of ``split`` (the records store, or the bare list older outputs
    hold); with ``images``, ValueError when the store's manifest lists other images (images never
    predicted, another split)."""
    directory = fold_results_path(fold_dir, split).parent
    results, manifest = read_records(directory, "keypoints")
    if images is not None:
        require_image_ids(directory, manifest, [im["id"] for im in images])
    return results


def _arrays(rows: Results, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(boxes xyxy (N, 4), scores (N,), keypoints (N, K, 3)) of one image's results."""
    if not rows:
        return torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.float64), torch.zeros(0, k, 3, dtype=torch.float64)
    xywh = torch.tensor([r["bbox"] for r in rows], dtype=torch.float64)
    boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    return (boxes, torch.tensor([r["score"] for r in rows], dtype=torch.float64),
            torch.tensor([r["keypoints"] for r in rows], dtype=torch.float64).reshape(-1, k, 3))


def fuse_keypoints(members: Sequence[Results], weights: np.ndarray, k: int, iou_thr: float = 0.5) -> Results:
    """Box-matched weighted average of the members' instances (see the module docstring)."""
    w = np.asarray(weights, dtype=np.float64)
    anchor = int(np.argmax(w))
    per_image = [defaultdict(list) for _ in members]
    for grouped, rows in zip(per_image, members):
        for r in rows:
            grouped[int(r["image_id"])].append(r)
    out: Results = []
    for image_id, anchor_rows in per_image[anchor].items():
        a_boxes, a_scores, a_kpts = _arrays(anchor_rows, k)
        acc = [w[anchor] * t for t in (a_boxes, a_scores, a_kpts)]
        total = torch.full_like(a_scores, w[anchor])
        for m, grouped in enumerate(per_image):
            if m == anchor or w[m] <= 0:
                continue
            boxes, scores, kpts = _arrays(grouped.get(image_id, []), k)
            match = match_instances(a_boxes, boxes, a_scores, iou_thr) if len(boxes) else torch.full_like(a_scores, -1).long()
            hit = match >= 0
            for a, src in zip(acc, (boxes, scores, kpts)):
                a[hit] += w[m] * src[match[hit]]
            total[hit] += w[m]
        boxes, scores, kpts = (a / total.reshape(-1, *([1] * (a.ndim - 1))) for a in acc)
        scores = scores * total / w.sum()
        out += [{"image_id": image_id, "category_id": 1, "score": float(s), "keypoints": [float(v) for v in kp.flatten()],
                 "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
                for b, s, kp in zip(boxes, scores, kpts)]
    return out


class KeypointBlend:
    """Weights → OKS-mAP on the real validation set of the members' box-matched, weighted-mean
    keypoints (anchor: the largest-weight member); the same fusion on test → the submission."""

    def __init__(self, tasks: Sequence[Any], member_dirs: Sequence[Path]) -> None:
        self.tasks, self.member_dirs, self.n_evals = list(tasks), list(member_dirs), 0
        task = tasks[0]
        if any(len(t.names) != len(task.names) for t in tasks):
            raise OOFError("keypoint ensemble members must predict the same keypoints")
        self.k = len(task.names)
        self.gt = task.dataset("real_val", False).coco
        self.val = [read_fold_results(Path(d) / "fold0", "val", self.gt["images"]) for d in member_dirs]

    @staticmethod
    def results_path(exp_dir: Path, split: str) -> Path:
        return fold_results_path(exp_dir / "fold0", split)

    def __call__(self, weights: np.ndarray) -> float:
        self.n_evals += 1
        return float(self.tasks[0].scores(self.gt, fuse_keypoints(self.val, weights, self.k))["oks_map"])

    def full_score(self, weights: np.ndarray) -> float:
        return self(weights)

    def extras(self, weights: np.ndarray, out: Path | None = None) -> dict[str, Any]:
        return {"val": self.tasks[0].scores(self.gt, fuse_keypoints(self.val, weights, self.k))}

    def write_submission(self, weights: np.ndarray, path: Path) -> Path | None:
        return self.tasks[0].write_blend_submission(self.tasks, self.member_dirs, weights, {}, path)
