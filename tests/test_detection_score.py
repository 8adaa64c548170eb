"""``Task.score_submission`` of the COCO-style tracks (issue 13): a submission written from the
ground truth itself (score 1) scores the metric's maximum, a perturbed one exactly what the metric
modules give when called directly, and ``kagglekit score --exp`` prints it. Detection: the
experiment's box layout → COCO bbox AP (%) against a COCO JSON (categories matched by name when
the data numbers them differently) or a YOLO-labelled folder; keypoints: OKS-mAP (0..1)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import require_shared
from kagglekit.__main__ import main as kagglekit
from kagglekit.config import save_config
from kagglekit.io import save_json
from kagglekit.metrics.detection import coco_bbox_eval
from kagglekit.submission.boxes import write_box_submission
from kagglekit.submission.rle import SubmissionError
from kagglekit.tasks.detection.config import DetectionConfig
from kagglekit.tasks.detection.data import select_images
from kagglekit.tasks.detection.task import DetectionTask


@pytest.fixture(scope="module")
def coco128() -> tuple[Path, dict]:
    src = require_shared("coco128")
    return src, json.loads((src / "annotations" / "instances_train2017.json").read_text())


def _coco_data(root: Path, coco: dict) -> tuple[Path, dict]:
    """COCO-format data: 16 train images, the next 24 as the labelled test split (the solution)."""
    ids = sorted(im["id"] for im in coco["images"])
    save_json(root / "annotations" / "instances_train.json", select_images(coco, ids[:16]))
    test = select_images(coco, ids[16:40])
    return save_json(root / "annotations" / "instances_test.json", test), test


def _truth(gt: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in gt["annotations"] if not a.get("iscrowd", 0)]


def _perturbed(gt: dict, seed: int = 0) -> list[dict]:
    """Shifted / rescaled boxes (one decimal, inside the image), random scores (5 decimals), every
    fifth box dropped and one false positive per image: numbers the file holds exactly."""
    rng = np.random.default_rng(seed)
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    out = []
    for k, r in enumerate(_truth(gt)):
        if k % 5 == 4:
            continue
        x, y, w, h = r["bbox"]
        width, height = sizes[r["image_id"]]
        x1, y1 = max(0.0, round(x + rng.normal(0, 0.15) * w, 1)), max(0.0, round(y + rng.normal(0, 0.15) * h, 1))
        x2, y2 = min(width, round(x1 + w * rng.uniform(0.7, 1.3), 1) + 0.1), min(height, round(y1 + h * rng.uniform(0.7, 1.3), 1) + 0.1)
        out.append({**r, "bbox": [x1, y1, round(x2 - x1, 1), round(y2 - y1, 1)], "score": round(float(rng.uniform(0.05, 1)), 5)})
    for im in gt["images"]:
        out.append({"image_id": im["id"], "category_id": 1, "bbox": [0.0, 0.0, 20.0, 30.0], "score": 0.5})
    return out


@pytest.mark.parametrize("layout", [
    {},  # the default: {cls} {score} {x1} {y1} {x2} {y2}, COCO category ids, file stems
    {"submission_template": "{score} {cls} {cx} {cy} {w} {h}", "submission_coords": "normalized",
     "submission_class": "name", "submission_empty": "none", "submission_id_column": "ImageId",
     "submission_image_id": "id"},
])
def test_detection_truth_scores_100_and_perturbed_equals_the_metric(coco128, tmp_path, layout):
    src, coco = coco128
    solution, gt = _coco_data(tmp_path / "data", coco)
    cfg = DetectionConfig(name="sc", comp="sc", data_format="coco", data_dir=str(tmp_path / "data"),
                          image_dir=str(src / "train2017"), **layout)
    task = DetectionTask(cfg)
    fmt, tokens = task.box_format(), task.class_tokens()
    truth = write_box_submission(_truth(gt), gt["images"], tokens, tmp_path / "truth.csv", fmt)
    scored = task.score_submission(truth, solution)
    assert scored["bbox mAP (%)"] == pytest.approx(100.0, abs=1e-9) and scored["boxes"] == len(_truth(gt))
    if not layout:  # pixel coordinates at one decimal: the file holds the perturbed numbers exactly
        perturbed = _perturbed(gt)
        path = write_box_submission(perturbed, gt["images"], tokens, tmp_path / "perturbed.csv", fmt)
        expected = 100 * coco_bbox_eval(gt, perturbed)["AP"]
        assert 5 < expected < 95
        assert task.score_submission(path, solution)["bbox mAP (%)"] == pytest.approx(expected, abs=1e-9)
        assert task.score_submission(path, Path("test"))["bbox mAP (%)"] == pytest.approx(expected, abs=1e-9)
    bad = tmp_path / "bad.csv"
    bad.write_text(truth.read_text().replace("\n", "\nnot_an_image,\n", 1))
    with pytest.raises(SubmissionError, match="not_an_image"):
        task.score_submission(bad, solution)


def test_score_cli_and_yolo_family_data_against_the_original_coco_ids(coco128, tmp_path, monkeypatch, capsys):
    """A darknet experiment (classes 0..79 → categories 1..80) scores against COCO's own JSON (ids
    1..90 with gaps: matched by name) and against a YOLO-labelled image folder; ``kagglekit score``
    prints the metric."""
    monkeypatch.chdir(tmp_path)
    src, coco = coco128
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(cats)}
    ids = sorted(im["id"] for im in coco["images"])
    gt = select_images(coco, ids[:12])
    root = tmp_path / "dk"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for im in gt["images"]:
        os.symlink(src / "train2017" / im["file_name"], root / "images" / im["file_name"])
        lines = [f"{index[a['category_id']]} {(a['bbox'][0] + a['bbox'][2] / 2) / im['width']!r} "
                 f"{(a['bbox'][1] + a['bbox'][3] / 2) / im['height']!r} {a['bbox'][2] / im['width']!r} {a['bbox'][3] / im['height']!r}"
                 for a in gt["annotations"] if a["image_id"] == im["id"] and not a.get("iscrowd", 0)]
        (root / "labels" / f"{Path(im['file_name']).stem}.txt").write_text("\n".join(lines))
    (root / "obj.names").write_text("".join(c["name"] + "\n" for c in cats))
    cfg = DetectionConfig(name="dk_score", comp="dk_score", data_format="darknet", data_dir=str(root),
                          submission_class="source_id", output_dir="output")
    task = DetectionTask(cfg)
    own = task.coco("train")  # the experiment's numbering: categories 1..80
    sub = write_box_submission(_truth(own), own["images"], task.class_tokens(), tmp_path / "own.csv", task.box_format())
    first = sub.read_text().splitlines()[1].split(",")[1].split()[0]
    assert first in {str(i) for i in range(80)}  # 0-based YOLO class ids in the file
    solution = save_json(tmp_path / "solution.json", gt)  # COCO's ids
    assert task.score_submission(sub, solution)["bbox mAP (%)"] == pytest.approx(100.0, abs=1e-9)
    assert task.score_submission(sub, root / "images")["bbox mAP (%)"] == pytest.approx(100.0, abs=1e-9)
    save_config(cfg, tmp_path / "output" / "dk_score" / "fold0" / "config.json")
    capsys.readouterr()
    assert kagglekit(["score", str(sub), "--exp", "dk_score", "--solution", str(solution), "--output", "output"]) == 0
    assert "bbox mAP (%) = 100.000000" in capsys.readouterr().out


def test_keypoint_truth_scores_1_and_perturbed_equals_oks_map(tmp_path):
    from kagglekit.metrics.keypoints import COCO_SIGMAS, oks_map
    from kagglekit.tasks.keypoints.config import KeypointConfig
    from kagglekit.tasks.keypoints.lifecycle import write_keypoint_submission
    from kagglekit.tasks.keypoints.task import KeypointTask
    sample = require_shared("coco_keypoints_sample")
    solution = sample / "test_coco.json"
    gt = json.loads(solution.read_text())
    task = KeypointTask(KeypointConfig(name="kp", real_train_json=str(solution), real_val_json=str(solution),
                                       real_test_json=str(solution), real_image_dir=str(sample / "images")))
    people = [a for a in gt["annotations"] if not a.get("iscrowd", 0) and a.get("num_keypoints", 1) > 0]
    truth = [{"image_id": a["image_id"], "category_id": 1, "score": 1.0, "keypoints": a["keypoints"]} for a in people]
    path = write_keypoint_submission(truth, gt["images"], 17, tmp_path / "truth.csv")
    assert task.score_submission(path, solution)["OKS mAP"] == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(1)
    noisy = []
    for r in truth:
        kp = np.asarray(r["keypoints"], dtype=np.float64).reshape(17, 3)
        kp[:, :2] = np.round(kp[:, :2] + rng.normal(0, 6, (17, 2)), 2)
        noisy.append({**r, "score": round(float(rng.uniform(0.1, 1)), 5), "keypoints": kp.flatten().tolist()})
    path = write_keypoint_submission(noisy, gt["images"], 17, tmp_path / "noisy.csv")
    expected = oks_map(gt, noisy, COCO_SIGMAS)["AP"]
    assert 0.05 < expected < 0.95
    assert task.score_submission(path, solution)["OKS mAP"] == pytest.approx(expected, abs=1e-12)
    assert task.score_submission(path, Path("test"))["OKS mAP"] == pytest.approx(expected, abs=1e-12)
