"""Keypoint error analysis: per-instance OKS equal to the metric module's, the worst-instance choice
(a true argsort), per-keypoint similarity, and the fold report hook linking both pictures."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from kagglekit.metrics.keypoints import _compute_oks, _Gt
from kagglekit.tasks.keypoints.report import (
    keypoint_analysis_section,
    match_instances,
    per_keypoint_similarity,
    worst_instances,
)

K = 4
NAMES = ["nose", "left_eye", "right_eye", "tail"]
SIGMAS = np.array([0.26, 0.25, 0.25, 0.89]) / 10


def _truth(i: int, image: int, x: float, visible=(2, 2, 1, 2), **extra) -> dict:
    points = [[x + 10 * j, 40 + 5 * j, v] for j, v in enumerate(visible)]
    return {"id": i, "image_id": image, "category_id": 1, "bbox": [x - 5, 30, 50, 40], "area": 900.0 + 50 * i,
            "keypoints": [c for p in points for c in p], "num_keypoints": sum(v > 0 for v in visible),
            "iscrowd": 0, **extra}


def _prediction(truth: dict, noise: float, score: float, rng: np.random.Generator) -> dict:
    kp = np.asarray(truth["keypoints"], float).reshape(K, 3)
    kp[:, :2] += rng.normal(0, noise, (K, 2))
    kp[:, 2] = 1
    return {"image_id": truth["image_id"], "category_id": 1, "score": score, "bbox": list(truth["bbox"]),
            "keypoints": kp.ravel().tolist()}


def case() -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(0)
    anns = [_truth(1, 1, 10), _truth(2, 1, 120, visible=(2, 0, 2, 2)), _truth(3, 2, 10), _truth(4, 2, 120),
            _truth(5, 3, 10), _truth(6, 3, 120, visible=(0, 0, 0, 0)), _truth(7, 3, 200, iscrowd=1)]
    gt = {"images": [{"id": k, "file_name": f"{k}.png", "width": 300, "height": 120} for k in (1, 2, 3)],
          "categories": [{"id": 1, "name": "mouse", "keypoints": NAMES}], "annotations": anns}
    preds = [_prediction(anns[0], 1.0, 0.9, rng), _prediction(anns[1], 6.0, 0.8, rng), _prediction(anns[2], 3.0, 0.7, rng),
             _prediction(anns[4], 12.0, 0.6, rng), _prediction(anns[5], 1.0, 0.5, rng)]
    far = dict(preds[0], bbox=[250, 80, 20, 20], score=0.99)  # no box overlap with anyone: matches nothing
    return gt, [far, *preds]  # instance 4 has no prediction


def test_instance_oks_equals_the_metric_module():
    gt, preds = case()
    matches = match_instances(gt, preds, SIGMAS)
    assert [m.truth["id"] for m in matches] == [1, 2, 3, 4, 5]  # not the unlabelled (6) nor the crowd (7)
    assert [m.prediction is not None for m in matches] == [True, True, True, False, True]
    variances = (SIGMAS * 2) ** 2
    for m in matches:
        if m.prediction is None:
            assert np.isnan(m.oks) and np.isnan(m.similarity).all()
            continue
        reference = _compute_oks([_Gt(m.truth, K, "gt")], np.asarray(m.prediction["keypoints"]).reshape(1, K, 3), variances)
        assert m.oks == pytest.approx(float(reference[0, 0]), rel=1e-12, abs=1e-15)
        assert m.prediction["bbox"] == m.truth["bbox"]  # matched to its own prediction, not the far box
    assert np.isnan(matches[1].similarity[1]) and np.isfinite(matches[1].similarity[[0, 2, 3]]).all()


def test_worst_instances_is_the_argsort_of_oks():
    gt, preds = case()
    matches = match_instances(gt, preds, SIGMAS)
    oks = np.array([m.oks for m in matches])
    matched = np.flatnonzero(np.isfinite(oks))
    assert worst_instances(matches) == matched[np.argsort(oks[matched])].tolist()
    assert worst_instances(matches, 2) == matched[np.argsort(oks[matched])][:2].tolist()
    assert matches[worst_instances(matches)[0]].truth["id"] == 5  # the 12-pixel noise
    mean, counts = per_keypoint_similarity(matches, K)
    sims = np.array([m.similarity for m in matches if m.prediction is not None])
    assert counts.tolist() == [4, 3, 4, 4]
    np.testing.assert_allclose(mean, [np.nanmean(sims[:, j]) for j in range(K)])


def test_section_tables_pictures_and_missing_images(tmp_path):
    gt, preds = case()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a glyph missing from DejaVu Sans
        text = keypoint_analysis_section(tmp_path, "vk_x", 0, gt, preds, tmp_path / "nowhere", NAMES, SIGMAS)
    matches = match_instances(gt, preds, SIGMAS)
    assert "- **Scored truth instances**: 5\n- **Matched to a prediction**: 4\n" in text
    table = text.split("### Worst instances")[1].split("![")[0].strip().splitlines()[2:]
    assert [int(row.split("|")[3]) for row in table] == [matches[i].truth["id"] for i in worst_instances(matches)]
    assert "| tail | 4 |" in text and "![mean per-keypoint similarity](keypoint_similarity.png)" in text
    assert "![worst instances](worst_instances.png)" in text and "4 of 4 image(s) could not be read" in text
    assert (tmp_path / "worst_instances.png").stat().st_size > 10_000
    nothing = keypoint_analysis_section(tmp_path, "vk_x", 0, gt, [], tmp_path, NAMES, SIGMAS)
    assert "No truth instance has a matched prediction" in nothing and "No matched instance" in nothing


def test_fold_report_links_the_pictures(in_tmp):
    from kagglekit.store.records import RecordsManifest, write_records
    from kagglekit.tasks.keypoints import lifecycle as KL
    from kagglekit.tasks.keypoints.config import KeypointConfig
    from kagglekit.tasks.keypoints.task import KeypointTask
    task = KeypointTask(KeypointConfig(name="vk_e").demo())
    task.prepare_demo()
    val = task.dataset("real_val", False)
    rng = np.random.default_rng(1)
    k = len(task.names)
    preds = []
    for a in val.coco["annotations"]:
        kp = np.asarray(a["keypoints"], float).reshape(k, 3)
        kp[:, :2] += rng.normal(0, 4, (k, 2))
        preds.append({"image_id": a["image_id"], "category_id": 1, "score": 0.9, "bbox": a["bbox"],
                      "keypoints": np.column_stack([kp[:, :2], np.ones(k)]).ravel().tolist()})
    fold_dir = in_tmp / "output/demo/vk_e/fold0"
    write_records(KL.fold_results_path(fold_dir, "val").parent, preds,
                  RecordsManifest("vk_e", 0, "val", "keypoints", [im["id"] for im in val.images], [1]))
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "valid_oks_map": [0.1, 0.2]})
    metrics = {"fold": 0, "arm": "B (real only)", "val": {"oks_map": 0.2}}
    task.report_fold(fold_dir, history, metrics)
    report = (fold_dir / "report.md").read_text()
    scored = sum(1 for a in val.coco["annotations"] if not a.get("iscrowd") and a.get("num_keypoints", 1) > 0
                 and any(np.asarray(a["keypoints"]).reshape(k, 3)[:, 2] > 0))
    assert f"- **Scored truth instances**: {scored}\n- **Matched to a prediction**: {scored}\n" in report
    assert "(worst_instances.png)" in report and "(keypoint_similarity.png)" in report
    assert "could not be read" not in report
    (KL.fold_results_path(fold_dir, "val")).unlink()
    task.report_fold(fold_dir, history, metrics)
    assert "## Error analysis\nNot drawn:" in (fold_dir / "report.md").read_text()
