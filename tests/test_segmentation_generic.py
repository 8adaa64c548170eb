"""Generic segmentation data (issue 13): coco128 re-laid as image + mask folders with its own COCO
category ids (JPEG, varied sizes, one greyscale image, 0 = unlabelled): two experiments on all
folds, an ensemble, and a per-class RLE submission with COCO ids that validates and, decoded,
scores exactly the mIoU computed here from the stored test predictions and the true masks."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from kagglekit.__main__ import main as kagglekit_main
from kagglekit.cli import main
from kagglekit.ensemble.runner import EnsembleConfig, run_ensemble
from kagglekit.metrics.segmentation import ConfusionMatrix, iou_from_confusion
from kagglekit.store.arrays import iter_test_mean, read_predictions
from kagglekit.submission.masks import MaskFormat, mask_submission
from kagglekit.tasks.segmentation.classes import class_table
from kagglekit.tasks.segmentation.config import SegmentationConfig
from kagglekit.tasks.segmentation.task import SegmentationTask
from conftest import require_shared

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools + numpy 2 copy keyword
N_TRAIN, N_TEST = 36, 10
TINY = dict(layout="folders", comp="coco_seg", classes_csv="classes.csv", num_classes=80, submission_format="rle",
            test_masks="test/masks", backbone="tu-resnet18", input_h=64, input_w=64, crop_h=64, crop_w=64,
            scale_min=0.0, scale_max=0.0, infer_h=64, infer_w=64, epochs=1, batch_size=6, valid_batch_size=4,
            n_folds=2, tta_scales=(1.0,), temperatures=(1.0,), oof_scale=0.5, num_workers=0, lr=2e-3)


def rasterise(coco: dict, image: dict) -> np.ndarray:
    """Semantic mask (H, W) uint8 of COCO category ids, larger instances painted first."""
    from pycocotools import mask as mask_utils
    h, w = image["height"], image["width"]
    out = np.zeros((h, w), np.uint8)
    anns = sorted((a for a in coco["annotations"] if a["image_id"] == image["id"]), key=lambda a: -a["area"])
    for ann in anns:
        seg = ann["segmentation"]
        rles = mask_utils.frPyObjects(seg, h, w) if isinstance(seg, list) else (
            mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg)
        m = mask_utils.decode(mask_utils.merge(rles) if isinstance(rles, list) else rles)
        out[m > 0] = ann["category_id"]
    return out


@pytest.fixture(scope="module")
def coco_seg(tmp_path_factory) -> Path:
    src = require_shared("coco128")
    coco = json.loads((src / "annotations" / "instances_train2017.json").read_text())
    root = tmp_path_factory.mktemp("coco_seg") / "data"
    images = sorted(coco["images"], key=lambda im: im["file_name"])[: N_TRAIN + N_TEST]
    for k, image in enumerate(images):
        split = "train" if k < N_TRAIN else "test"
        stem = Path(image["file_name"]).stem
        for kind in ("images", "masks"):
            (root / split / kind).mkdir(parents=True, exist_ok=True)
        (root / split / "images" / image["file_name"]).symlink_to(src / "train2017" / image["file_name"])
        Image.fromarray(rasterise(coco, image)).save(root / split / "masks" / f"{stem}.png")
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    pd.DataFrame({"id": [c["id"] for c in cats], "name": [c["name"] for c in cats]}).to_csv(root / "classes.csv", index=False)
    return root


@pytest.fixture(scope="module")
def trained(coco_seg, tmp_path_factory):
    out = tmp_path_factory.mktemp("coco_seg_out")
    cfgs = [SegmentationConfig(name=name, data_dir=str(coco_seg), output_dir=str(out / "output"),
                               submissions_dir=str(out / "submissions"), **TINY, **extra)
            for name, extra in (("cocoseg_a", {}), ("cocoseg_b", {"boundary_weight": 2.0, "tta_flip": False}))]
    for cfg in cfgs:
        assert main(cfg, ["--fold", "all"]) == 0
    return cfgs, out


def test_the_relaid_data_is_what_the_issue_asks_for(coco_seg):
    sizes = {Image.open(p).size for p in (coco_seg / "train" / "images").iterdir()}
    modes = {Image.open(p).mode for p in (coco_seg / "train" / "images").iterdir()}
    assert len(sizes) > 3 and "L" in modes  # varied sizes, one greyscale JPEG
    values = set(np.unique(np.concatenate([np.unique(np.asarray(Image.open(p))) for p in (coco_seg / "train/masks").iterdir()])))
    assert 0 in values and max(values) > 80  # sparse COCO ids, 0 = unlabelled


def test_experiments_ensemble_and_rle_submission_scores_like_the_pipeline(trained, coco_seg):
    cfgs, out = trained
    task = SegmentationTask(cfgs[0])
    table = task.table()
    for cfg in cfgs:
        metrics = json.loads((out / "output" / cfg.name / "metrics.json").read_text())
        assert metrics["metric"] == "mIoU" and 0 <= metrics["cv"] <= 1 and len(metrics["per_fold"]) == 2
        manifest = json.loads((out / "output" / cfg.name / "fold0" / "oof" / "manifest.json").read_text())
        assert manifest["shape"][1:] == [80, 32, 32] and len(manifest["orig_sizes"]) == manifest["shape"][0]
        assert manifest["classes"][0] == "person"
    summary = run_ensemble(EnsembleConfig(name="cocoseg_blend", members=tuple(c.name for c in cfgs),
                                          output_dir=str(out / "output"), submissions_dir=str(out / "submissions")),
                           overwrite=True)
    blend_csv = Path(summary["submission"])
    assert task.validate_submission(blend_csv) == []
    frame = pd.read_csv(blend_csv, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert set(frame["ClassId"].astype(int)) <= set(table.ids) and set(frame["ImageId"]) == set(task.test_sizes())
    assert kagglekit_main(["validate", str(blend_csv), "--exp", cfgs[0].name, "--output", str(out / "output")]) == 0

    # experiment A's own submission, decoded and scored, equals the mIoU of its stored predictions
    own_csv = out / "submissions" / f"{cfgs[0].name}.csv"
    scored = task.score_submission(own_csv, coco_seg / "test" / "masks")
    store = read_predictions(out / "output" / cfgs[0].name / "fold0" / "test")
    sizes = store.manifest.sizes_by_id(store.ids)
    cm = ConfusionMatrix(80, ignore_index=255)
    for ids, probs in iter_test_mean(out / "output" / cfgs[0].name, 2):
        for i, frame_id in enumerate(ids):
            p = F.interpolate(torch.from_numpy(probs[i:i + 1]), size=sizes[frame_id], mode="bilinear", align_corners=False)
            truth = np.asarray(Image.open(coco_seg / "test" / "masks" / f"{frame_id}.png"))
            cm.update(p.argmax(1)[0].to(torch.uint8).numpy()[None], table.to_target(truth)[None])
    assert scored["mIoU"] == pytest.approx(iou_from_confusion(cm.matrix)[0], abs=1e-6)
    cvs = [json.loads((out / "output" / c.name / "metrics.json").read_text())["cv"] for c in cfgs]
    print(f"coco128 segmentation: OOF mIoU {cvs[0]:.4f} / {cvs[1]:.4f}, blend {summary.get('cv', float('nan')):.4f}, "
          f"test submission mIoU {scored['mIoU']:.6f} = pipeline {iou_from_confusion(cm.matrix)[0]:.6f}")
    assert kagglekit_main(["score", str(own_csv), "--exp", cfgs[0].name, "--solution", str(coco_seg / "test" / "masks"),
                           "--output", str(out / "output")]) == 0


def test_a_broken_rle_submission_is_refused_naming_the_problem(trained, capsys):
    cfgs, out = trained
    frame = pd.read_csv(out / "submissions" / f"{cfgs[0].name}.csv", dtype=str, keep_default_na=False)
    broken = frame.copy()
    broken.loc[0, "ClassId"] = "3000"  # not a COCO category
    path = out / "broken.csv"
    broken.to_csv(path, index=False)
    code = kagglekit_main(["validate", str(path), "--exp", cfgs[0].name, "--output", str(out / "output")])
    assert code != 0 and "3000" in capsys.readouterr().err


def test_rle_run_past_a_small_image_is_a_problem_without_image_shape(trained):
    cfgs, out = trained
    task = SegmentationTask(cfgs[0])
    sizes = task.test_sizes()
    smallest = min(sizes, key=lambda i: sizes[i][0] * sizes[i][1])
    h, w = sizes[smallest]
    frame = pd.read_csv(out / "submissions" / f"{cfgs[0].name}.csv", dtype=str, keep_default_na=False)
    rows = frame.index[frame["ImageId"] == smallest]
    frame.loc[rows[0], "EncodedPixels"] = f"1 {h * w + 5}"  # fits a larger image, not this one
    frame.to_csv(out / "toolong.csv", index=False)
    problems = task.validate_submission(out / "toolong.csv")
    assert any(smallest in p for p in problems), problems


def test_masks_from_an_rle_csv_equal_the_png_masks(coco_seg, tmp_path):
    """Train masks given as a Severstal-style ImageId_ClassId RLE CSV read back exactly."""
    fmt = MaskFormat(class_column="", combined_id="{image}_{class}", empty="omit", columns=("ImageId_ClassId", "EncodedPixels"))
    table = class_table(80, classes_csv=coco_seg / "classes.csv")
    stems = sorted(p.stem for p in (coco_seg / "train/masks").iterdir())[:6]
    masks = [np.asarray(Image.open(coco_seg / "train/masks" / f"{s}.png")).astype(np.int32) for s in stems]
    mask_submission(stems, masks, table.ids, fmt).to_csv(tmp_path / "train_rle.csv", index=False)
    cfg = SegmentationConfig(data_dir=str(coco_seg), **{**TINY, "train_masks_csv": str(tmp_path / "train_rle.csv"),
                                                         "train_ids_csv": str(tmp_path / "ids.csv"), "id_column": "ImageId"})
    pd.DataFrame({"ImageId": stems}).to_csv(tmp_path / "ids.csv", index=False)
    task = SegmentationTask(replace(cfg, rle_class_column="", rle_combined_id="{image}_{class}", rle_id_column="ImageId_ClassId"))
    dataset = task._dataset(stems, "train", False)
    for stem, mask in zip(stems, masks):
        np.testing.assert_array_equal(dataset._mask(stem)[0], mask)
    assert task.preflight(0) == [] or all("test" in p for p in task.preflight(0))


def test_nyuv2_layout_reads_labels_up_to_num_classes_and_depth_only_when_used(tmp_path):
    """The two NYUv2-preset bugs of the issue: `--set num_classes=20` ignored by the label reader
    (values above 13 refused), and depth PNGs required with depth_aux=false and RGB input."""
    from kagglekit.demo.nyuv2 import generate_nyuv2
    root = tmp_path / "nyu"
    generate_nyuv2(root, n_train=4, n_test=1, height=24, width=32, seed=0)
    label = np.asarray(Image.open(root / "train/label/0001.png")).copy()
    label[0, :5] = 17
    Image.fromarray(label).save(root / "train/label/0001.png")
    cfg = SegmentationConfig(data_dir=str(root), n_folds=2, predict_test=False)
    assert any("[17]" in p for p in SegmentationTask(cfg).preflight(0))  # 13 classes: 17 is named
    task = SegmentationTask(replace(cfg, num_classes=20))
    assert task.preflight(0) == []
    target = task._dataset(["0001"], "train", False)[0]["mask"]
    assert int(target.max()) == 16  # id 17 → index 16
    for p in (root / "train/depth").iterdir():
        p.unlink()
    assert any("depth" in p for p in task.preflight(0))  # depth_aux (default) still reads depth
    rgb_only = SegmentationTask(replace(cfg, num_classes=20, depth_aux=False))
    assert rgb_only.preflight(0) == [] and "depth" not in rgb_only._dataset(["0001"], "train", False)[0]
    assert rgb_only.build_model(initial_weights=False).depth_head is None
    assert task.build_model(initial_weights=False).depth_head is not None
