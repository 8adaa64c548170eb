"""Detection ensembles: WBF of two members whose OOF detections are good on different classes
beats each member (and uniform weights are also tried); fused files and report are written."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kagglekit.ensemble.runner import EnsembleConfig, run_ensemble
from kagglekit.config import save_config
from kagglekit.io import save_json
from kagglekit.tasks.detection.config import DetectionConfig
from kagglekit.tasks.detection.task import DetectionTask


def _member_detections(gt, good_label: int, rng) -> list[dict]:
    """Accurate boxes for category ``good_label``, badly placed ones (IoU ~0.3) for the others."""
    out = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        shift = 0.02 if a["category_id"] == good_label else 0.45
        jitter = rng.normal(0, shift, 2) * [w, h]
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.uniform(0.5, 1)),
                    "bbox": [x + jitter[0], y + jitter[1], w, h]})
    return out


@pytest.fixture
def two_members(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KAGGLEKIT_SHARED", str(tmp_path / "no_shared"))  # shapes demo data
    rng = np.random.default_rng(0)
    names = []
    for good in (1, 2):
        cfg = DetectionConfig(name=f"det_m{good}").demo()
        task = DetectionTask(cfg)
        task.prepare_demo()
        fold = tmp_path / "output/demo" / cfg.name / "fold0"
        save_config(cfg, fold / "config.json")
        save_json(fold / "oof" / "detections.json", _member_detections(task.coco("val"), good, rng))
        save_json(fold / "evaluation" / "test" / "coco_instances_results.json",
                  _member_detections(task.coco("test"), good, rng))
        names.append(cfg.name)
    return names


def test_wbf_ensemble_beats_each_member(two_members):
    cfg = EnsembleConfig(name="det_blend", members=tuple(two_members), method="slsqp").demo()
    summary = run_ensemble(cfg)
    scores = summary["member_oof_score"]
    assert summary["blend_oof_score"] > max(scores.values()) + 1.0
    assert all(w > 0.05 for w in summary["weights"])  # both members contribute
    out = os.path.join("output/demo/ensemble/det_blend")
    val = json.load(open(os.path.join(out, "evaluation/val/results.json")))
    assert val["bbox"]["AP"] == pytest.approx(summary["blend_oof_score"], abs=1e-6)
    assert os.path.exists(os.path.join(out, "evaluation/test/coco_instances_results.json"))
    assert "weighted boxes fusion" in open(os.path.join(out, "report.md")).read()
