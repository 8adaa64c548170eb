"""The keypoint track and its gate experiment: mixed sources with exact oversampling, Keypoint
R-CNN in the common loop with flip TTA, PCK matching, and the two-arm kill switch end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import sets

from kagglekit.gate import EXIT_CODES, gate
from kagglekit.tasks.keypoints.config import KeypointConfig
from kagglekit.tasks.keypoints.phase0 import main as phase0_main
from kagglekit.tasks.keypoints.task import KeypointTask, match_pck

TINY = ["epochs=1", "image_size=96", "max_size=160", "batch_size=4"]




def test_gate_experiment_runs_both_arms_and_grades_arm_a(in_tmp):
    """vk_phase0_v4 --demo: arm A (synthetic + real ×8) and arm B (real only) train, evaluate on the
    real test images, and the exit code / report / verdict.json agree with the gate on their values."""
    cfg = KeypointConfig(name="vk_t")
    code = phase0_main(cfg, ["--demo", *sets(TINY)])
    out = in_tmp / "output/demo"
    verdict = json.loads((out / "vk_t" / "verdict.json").read_text())
    a = json.loads((out / "vk_t_A" / "metrics.json").read_text())
    b = json.loads((out / "vk_t_B" / "metrics.json").read_text())
    assert {"oks_map", "oks_map50", "pck0.05"} <= set(a["test"]) and a["arm"].startswith("A") and b["arm"].startswith("B")
    expected = gate({"A": a["test"]["oks_map"], "B": b["test"]["oks_map"]}, 0.2199, 0.02, "A", "B")
    assert verdict["verdict"] == expected.verdict and code == EXIT_CODES[expected.verdict]
    assert verdict["contribution"] == pytest.approx(a["test"]["oks_map"] - b["test"]["oks_map"])
    report = (out / "vk_t" / "kill_switch_report.md").read_text()
    assert expected.line("test.oks_map") in report and "Contribution (A - B)" in report
    # arms not listed in --arms are reused (the seed reused its control run): re-grading trains nothing
    mtimes = [(out / f"vk_t_{arm}" / "metrics.json").stat().st_mtime for arm in "AB"]
    assert phase0_main(cfg, ["--demo", "--arms", "", "--set", "margin=0.0", *sets(TINY)]) == \
        EXIT_CODES[gate({"A": a["test"]["oks_map"]}, 0.2199, 0.0, "A").verdict]
    assert [(out / f"vk_t_{arm}" / "metrics.json").stat().st_mtime for arm in "AB"] == mtimes


def test_mixed_sources_oversample_real_exactly_and_validate_on_real(in_tmp):
    task = KeypointTask(KeypointConfig(name="vk_m").demo())
    task.prepare_demo()
    train, valid = task.fold_datasets(0)
    n_real = len(train.sources[0])
    from kagglekit.engine.data import make_loader
    seen = [i for _, i in make_loader(train, 4, train=True, seed=0, epoch=0).sampler]
    counts = np.bincount(seen, minlength=len(train))
    assert (counts[:n_real] == 8).all() and (counts[n_real:] == 1).all()
    assert valid.coco["images"] and all(im["id"] in {i["id"] for i in task.coco("real_val")["images"]} for im in valid.coco["images"])
    b_task = KeypointTask(KeypointConfig(name="vk_b", use_synthetic=False).demo())
    assert len(b_task.fold_datasets(0)[0].sources) == 1


def test_flip_tta_prediction_with_a_real_keypoint_rcnn(in_tmp):
    task = KeypointTask(KeypointConfig(name="vk_p").demo())
    task.prepare_demo()
    torch.manual_seed(0)
    model = task.build_model().eval()
    model.detector.roi_heads.score_thresh = 0.0
    image = torch.rand(3, 120, 160)
    for tta in (False, True):
        det = model.predict(image, tta_flip=tta)
        k = det["keypoints"]
        assert k.ndim == 3 and k.shape[1:] == (17, 3) and len(k) == len(det["boxes"]) > 0


def test_pck_matching_hand_case():
    gt = {"images": [{"id": 1}], "annotations": [
        {"image_id": 1, "bbox": [0, 0, 100, 50], "keypoints": [10, 10, 2, 50, 20, 2, 0, 0, 0], "iscrowd": 0}]}
    good = {"image_id": 1, "score": 0.9, "bbox": [0, 0, 100, 50], "keypoints": [12, 10, 1, 60, 20, 1, 5, 5, 1]}
    far = {"image_id": 1, "score": 0.95, "bbox": [200, 200, 50, 50], "keypoints": [10, 10, 1, 50, 20, 1, 0, 0, 1]}
    # alpha 0.05 × max(100, 50) = 5 px: point 1 (2 px off) hits, point 2 (10 px off) misses; v=0 not counted
    assert match_pck(gt, [good], 3, 0.05) == pytest.approx(0.5)
    assert match_pck(gt, [far, good], 3, 0.05) == pytest.approx(0.5)  # the far box (IoU 0) is not matched
    assert match_pck(gt, [far], 3, 0.05) == 0.0


def test_sigmas_must_match_the_keypoint_count(in_tmp):
    task = KeypointTask(KeypointConfig(name="vk_s", sigmas=(0.1, 0.1)).demo())
    task.prepare_demo()
    with pytest.raises(ValueError, match="sigmas has 2 values but the data has 17"):
        task.sigmas


def test_fine_tune_from_a_saved_keypoint_checkpoint(in_tmp, tmp_path):
    from kagglekit.tasks.keypoints.model import build_keypoint_rcnn, load_keypoint_weights
    src = build_keypoint_rcnn(17, backbone="resnet18", min_size=96, max_size=160)
    torch.save({"model": {f"detector.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "best.pt")
    dst = build_keypoint_rcnn(14, backbone="resnet18", min_size=96, max_size=160)
    load_keypoint_weights(dst, init_weights=str(tmp_path / "best.pt"))
    a, b = src.state_dict(), dst.state_dict()
    assert torch.equal(a["backbone.body.conv1.weight"], b["backbone.body.conv1.weight"])
    assert b["roi_heads.keypoint_predictor.kps_score_lowres.weight"].shape[1] == 14  # new K: re-initialised
