"""Keypoint error analysis for the fold report: every scored truth instance matched to a prediction
the way the task's PCK matches them (:func:`kagglekit.tasks.keypoints.task.match_pck`: the
highest-scoring unmatched prediction with box IoU >= 0.5), its OKS and per-keypoint similarities
computed as :mod:`kagglekit.metrics.keypoints` does, then

- ``worst_instances.png``: the matched instances of lowest OKS, truth (circles) and prediction
  (crosses) drawn in one colour per keypoint, a line from each predicted point to its truth;
- ``keypoint_similarity.png``: the mean similarity of each keypoint over the matched instances
  that label it (which keypoints cost OKS), bars in the same keypoint colours.

Scored instances are those COCOeval scores: not crowd, ``num_keypoints`` > 0 (and at least one
labelled point, so there is something to draw).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np

from kagglekit.report.gallery import (LegendEntry, Points, Tile, box_xyxy, padded_view, plot_gallery, plot_titled_bars,
                                      read_image_or_none)
from kagglekit.report.markdown import markdown_kv, markdown_table
from kagglekit.report.plots import class_color, figure_title

WORST_INSTANCES = 6
TRUTH_MARKER, PRED_MARKER = "o", "x"


def keypoint_similarity(pred_xy: np.ndarray, truth: np.ndarray, area: float, sigmas: np.ndarray) -> np.ndarray:
    """(K,) per-keypoint similarity ``exp(-d^2 / (2 area (2 sigma)^2))`` of predicted points
    ``pred_xy`` (K, 2) to ``truth`` (K, 3) (x, y, v), NaN where the truth does not label the point
    (v == 0); same operations as COCOeval's computeOks, whose OKS is the mean of the labelled ones."""
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 3)
    pred = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    e = ((pred[:, 0] - truth[:, 0]) ** 2 + (pred[:, 1] - truth[:, 1]) ** 2) / variances / (area + np.spacing(1)) / 2
    return np.where(truth[:, 2] > 0, np.exp(-e), np.nan)


def is_scored(ann: dict[str, Any], k: int) -> bool:
    """COCOeval scores the instance (not crowd, ``num_keypoints`` > 0) and it labels a point."""
    v = np.asarray(ann["keypoints"], dtype=np.float64).reshape(k, 3)[:, 2]
    labelled = int(ann["num_keypoints"]) if "num_keypoints" in ann else int(np.count_nonzero(v > 0))
    return not ann.get("iscrowd", 0) and labelled > 0 and bool((v > 0).any())


@dataclass
class InstanceMatch:
    """One scored truth instance and its matched prediction (None: no prediction matched it);
    ``similarity`` (K,) per keypoint, NaN where unlabelled or unmatched."""
    truth: dict[str, Any]
    prediction: dict[str, Any] | None
    similarity: np.ndarray

    @property
    def oks(self) -> float:
        """Mean similarity over the labelled keypoints (NaN without a prediction)."""
        return float(np.nanmean(self.similarity)) if self.prediction is not None else float("nan")


def _pred_box(det: dict[str, Any], k: int) -> list[float]:
    """The prediction's ``bbox``, else the extent of its points (x, y, w, h)."""
    if len(det.get("bbox") or ()) == 4:
        return list(det["bbox"])
    xy = np.asarray(det["keypoints"], dtype=np.float64).reshape(k, 3)[:, :2]
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def match_instances(gt: dict[str, Any], results: Sequence[dict[str, Any]], sigmas: np.ndarray) -> list[InstanceMatch]:
    """Per image, in annotation order, each non-crowd truth takes the highest-scoring unmatched
    prediction with box IoU >= 0.5 (the task's PCK matching, :func:`match_pck`); one
    :class:`InstanceMatch` per scored truth instance (:func:`is_scored`), in annotation order."""
    from kagglekit.tasks.keypoints.task import _best_match
    k = len(sigmas)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in sorted(results, key=lambda r: -float(r["score"])):
        by_image.setdefault(int(r["image_id"]), []).append({**r, "bbox": _pred_box(r, k)})
    used: dict[int, set[int]] = {}
    out = []
    for ann in gt["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        dets = by_image.get(int(ann["image_id"]), [])
        best = _best_match(ann["bbox"], dets, used.setdefault(int(ann["image_id"]), set()))
        if not is_scored(ann, k):  # matched like PCK (it takes its prediction), not analysed
            continue
        truth = np.asarray(ann["keypoints"], dtype=np.float64).reshape(k, 3)
        det = dets[best] if best is not None else None
        sim = (keypoint_similarity(np.asarray(det["keypoints"]).reshape(k, 3)[:, :2], truth, float(ann["area"]), sigmas)
               if det is not None else np.full(k, np.nan))
        out.append(InstanceMatch(ann, det, sim))
    return out


def worst_instances(matches: Sequence[InstanceMatch], n: int = WORST_INSTANCES) -> list[int]:
    """Indices into ``matches`` of the ``n`` matched instances of lowest OKS, lowest first (a
    stable argsort: ties keep annotation order); unmatched instances are left out."""
    oks = np.array([m.oks for m in matches], dtype=np.float64)
    matched = np.flatnonzero(np.isfinite(oks))
    return matched[np.argsort(oks[matched], kind="stable")][:n].tolist()


def per_keypoint_similarity(matches: Sequence[InstanceMatch], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(K,) mean similarity of each keypoint over the matched instances that label it (NaN when
    none does) and (K,) how many such instances."""
    sims = np.array([m.similarity for m in matches if m.prediction is not None], dtype=np.float64).reshape(-1, k)
    counts = np.isfinite(sims).sum(0)
    total = np.where(np.isfinite(sims), sims, 0.0).sum(0)
    return np.divide(total, counts, out=np.full(k, np.nan), where=counts > 0), counts


def instance_tile(match: InstanceMatch, image: dict[str, Any], image_dir: Path, names: Sequence[str]) -> Tile:
    """The instance's crop: its labelled keypoints, truth circles and predicted crosses coloured by
    keypoint, a line from each predicted point to its truth (unlabelled keypoints are not scored and
    not drawn); caption with ids, OKS and the worst keypoint."""
    k = len(names)
    truth = np.asarray(match.truth["keypoints"], dtype=np.float64).reshape(k, 3)
    labelled = truth[:, 2] > 0
    pred = np.asarray(match.prediction["keypoints"], dtype=np.float64).reshape(k, 3)[labelled, :2]
    colours = [class_color(i) for i in range(k) if labelled[i]]
    size = (int(image["width"]), int(image["height"]))
    x0, y0, x1, y1 = box_xyxy(match.truth["bbox"])
    view = padded_view(np.vstack([truth[labelled, :2], pred, [[x0, y0], [x1, y1]]]), size, pad=0.1)
    worst = int(np.nanargmin(match.similarity))
    caption = (f"image {image['id']}, instance {match.truth['id']}: OKS {match.oks:.3f}\n"
               f"worst: {names[worst]} ({match.similarity[worst]:.2f}), score {float(match.prediction['score']):.2f}")
    return Tile(read_image_or_none(Path(image_dir) / image["file_name"]), size, caption,
                points=[Points(truth[labelled, :2], colours, TRUTH_MARKER), Points(pred, colours, PRED_MARKER)],
                links=np.stack([pred, truth[labelled, :2]], axis=1), link_colours=colours, view=view)


def _worst_part(matches: Sequence[InstanceMatch], worst: list[int], gt: dict[str, Any], image_dir: Path,
                names: Sequence[str], fold_dir: Path, title: Callable[[str], str]) -> str:
    """Table of the worst instances + ``worst_instances.png`` (markdown)."""
    if not worst:
        return "### Worst instances\nNo truth instance has a matched prediction: nothing to draw.\n"
    images = {int(im["id"]): im for im in gt["images"]}
    rows = [{"Rank": r + 1, "Image id": matches[i].truth["image_id"], "Instance id": matches[i].truth["id"],
             "OKS": matches[i].oks, "Score": float(matches[i].prediction["score"]),
             "Worst keypoint": names[int(np.nanargmin(matches[i].similarity))]} for r, i in enumerate(worst)]
    tiles = [instance_tile(matches[i], images[int(matches[i].truth["image_id"])], image_dir, names) for i in worst]
    legend = [LegendEntry("truth", marker=TRUTH_MARKER, linestyle=""), LegendEntry("prediction", marker=PRED_MARKER,
              linestyle=""), LegendEntry("prediction to truth")]
    plot_gallery(tiles, fold_dir / "worst_instances.png", title("lowest-OKS instances (colour = keypoint)"), legend)
    blank = sum(t.image is None for t in tiles)
    note = (f"\n{blank} of {len(tiles)} image(s) could not be read under `{image_dir}`: their points are drawn on a "
            "blank canvas.\n" if blank else "")
    return f"### Worst instances\n{markdown_table(rows)}\n![worst instances](worst_instances.png)\n{note}"


def _per_keypoint_part(matches: Sequence[InstanceMatch], names: Sequence[str], fold_dir: Path,
                       title: Callable[[str], str]) -> str:
    """Table of the mean similarity per keypoint + ``keypoint_similarity.png`` (markdown)."""
    mean, counts = per_keypoint_similarity(matches, len(names))
    if not counts.any():
        return "### Mean similarity per keypoint\nNo matched instance: nothing to average.\n"
    rows = [{"Keypoint": n, "Labelled instances": int(c), "Mean similarity": m} for n, c, m in zip(names, counts, mean)]
    plot_titled_bars(names, mean, fold_dir / "keypoint_similarity.png", title("mean per-keypoint similarity"),
                     "keypoint", "mean similarity (1 = exact)")
    return (f"### Mean similarity per keypoint\n{markdown_table(rows)}\n"
            "![mean per-keypoint similarity](keypoint_similarity.png)\n")


def keypoint_analysis_section(fold_dir: Path, experiment: str, fold: int, gt: dict[str, Any],
                              results: Sequence[dict[str, Any]], image_dir: Path, names: Sequence[str],
                              sigmas: np.ndarray) -> str:
    """The fold report's error analysis (markdown) of the validation predictions ``results`` vs
    ``gt``: match counts, the per-keypoint similarity chart and the worst-instance gallery."""
    head = "## Error analysis (validation, OKS per instance)"
    matches = match_instances(gt, results, np.asarray(sigmas, dtype=np.float64))
    if not matches:
        return f"{head}\nNo scored truth instance (non-crowd, with labelled keypoints) in the validation images.\n"
    matched = [m for m in matches if m.prediction is not None]
    totals = {"Scored truth instances": len(matches), "Matched to a prediction": len(matched),
              "Without a prediction (box IoU >= 0.5)": len(matches) - len(matched),
              "Mean OKS of the matched": float(np.mean([m.oks for m in matched])) if matched else float("nan")}
    how = ("Each non-crowd truth takes the highest-scoring unmatched prediction with box IoU >= 0.5 (as PCK matches "
           "them); similarity of a keypoint = exp(-d^2 / (2 area (2 sigma)^2)), OKS = its mean over the labelled "
           "keypoints (COCOeval's). In the picture: truth circles, predicted crosses, colour = keypoint.")
    title = partial(figure_title, experiment, fold)  # what → "<experiment> fold <k>: <what>"
    return "\n".join([head, markdown_kv(totals), how, "", _per_keypoint_part(matches, names, fold_dir, title),
                      _worst_part(matches, worst_instances(matches), gt, image_dir, names, fold_dir, title)])
