"""Detection error analysis: FP / missed counting (hand-made case and pycocotools' own matching at
IoU 0.5), the worst-image choice, the galleries and the fold report hook that links them."""
from __future__ import annotations

import copy
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kagglekit.tasks.detection.report import (
    coco_box_iou,
    coco_greedy_match,
    count_errors,
    error_analysis_section,
    worst_images,
)

CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
NAMES = {1: "cat", 2: "dog"}


def _ann(i: int, image: int, cat: int, bbox: list[float], crowd: int = 0) -> dict:
    return {"id": i, "image_id": image, "category_id": cat, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": crowd}


def _det(image: int, cat: int, bbox: list[float], score: float) -> dict:
    return {"image_id": image, "category_id": cat, "bbox": bbox, "score": score}


def hand_made() -> tuple[dict, list[dict]]:
    """Image 1: A/B cats, C dog, D a crowd of cats; image 2: no truth; image 3: one cat, no prediction."""
    gt = {"images": [{"id": k, "file_name": f"im{k}.png", "width": 160, "height": 160} for k in (1, 2, 3)],
          "categories": CATS,
          "annotations": [_ann(1, 1, 1, [0, 0, 10, 10]), _ann(2, 1, 1, [20, 20, 10, 10]), _ann(3, 1, 2, [50, 50, 10, 10]),
                          _ann(4, 1, 1, [100, 100, 50, 50], crowd=1), _ann(5, 3, 1, [5, 5, 20, 20])]}
    results = [_det(1, 1, [0, 0, 10, 10], 0.9),  # TP (A)
               _det(1, 1, [1, 1, 10, 10], 0.8),  # A already taken: FP
               _det(1, 1, [20, 20, 10, 10], 0.4),  # below the score: B stays missed
               _det(1, 2, [20, 20, 10, 10], 0.95),  # a dog where a cat is, no dog near: FP
               _det(1, 1, [110, 110, 10, 10], 0.7),  # inside the crowd region: ignored
               _det(2, 1, [0, 0, 30, 30], 0.6)]  # no truth at all: FP
    return gt, results


def test_hand_made_case_counts_each_error_once():
    gt, results = hand_made()
    errors = count_errors(gt, results, score_thr=0.5)
    counts = {k: (e.tp, e.fp, e.fn) for k, e in errors.items()}
    assert counts == {1: (1, 2, 2), 2: (0, 1, 0), 3: (0, 0, 1)}
    one = errors[1]
    status = {(r["category_id"], tuple(r["bbox"])): s for r, s in zip(one.dets, one.det_status)}
    assert status == {(2, (20, 20, 10, 10)): "fp", (1, (0, 0, 10, 10)): "tp", (1, (1, 1, 10, 10)): "fp",
                      (1, (110, 110, 10, 10)): "ignored"}
    assert sorted(a["id"] for a, s in zip(one.gts, one.gt_status) if s == "fn") == [2, 3]
    # at a lower score the 0.4 box finds B
    assert (count_errors(gt, results, score_thr=0.3)[1].fn) == 1
    assert [e.image_id for e in worst_images(errors, "fp")] == [1, 2]
    assert [e.image_id for e in worst_images(errors, "fn")] == [1, 3]


def test_iou_and_greedy_matching_rules():
    iou = coco_box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 20], [5, 0, 10, 10], [0, 0, 100, 100]]),
                       np.array([False, False, True]))
    np.testing.assert_allclose(iou, [[0.5, 50 / 150, 1.0]])  # a crowd gt: intersection / detection area
    # exactly 0.5 matches; equal IoU: the later gt wins; the second detection takes what is left
    det_gt, ignored = coco_greedy_match(np.array([[0.5, 0.7, 0.7], [0.6, 0.7, 0.7]]), np.zeros(3, bool),
                                        np.zeros(3, bool), 0.5)
    assert det_gt.tolist() == [2, 1] and not ignored.any()
    det_gt, _ = coco_greedy_match(np.array([[0.49]]), np.zeros(1, bool), np.zeros(1, bool), 0.5)
    assert det_gt.tolist() == [-1]
    # a non-ignored gt is preferred to an ignored one with higher IoU
    det_gt, ignored = coco_greedy_match(np.array([[0.9, 0.6]]), np.array([True, False]), np.array([True, False]), 0.5)
    assert det_gt.tolist() == [1] and ignored.tolist() == [False]


def _random_case(seed: int) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for image in range(1, 13):
        images.append({"id": image, "file_name": f"{image}.png", "width": 200, "height": 200})
        for _ in range(rng.integers(0, 6)):
            xy, wh = rng.uniform(0, 150, 2), rng.uniform(8, 50, 2)
            anns.append(_ann(len(anns) + 1, image, int(rng.integers(1, 3)), [*xy, *wh], crowd=int(rng.random() < 0.1)))
        truth = [a for a in anns if a["image_id"] == image]
        for _ in range(rng.integers(0, 9)):
            if truth and rng.random() < 0.6:  # near a true box, jittered, sometimes the wrong class
                a = truth[rng.integers(len(truth))]
                box = list(np.asarray(a["bbox"]) + rng.normal(0, 4, 4) * [1, 1, 0.5, 0.5])
                box[2:] = [max(2.0, v) for v in box[2:]]
                cat = a["category_id"] if rng.random() < 0.8 else 3 - a["category_id"]
            else:
                box, cat = [*rng.uniform(0, 150, 2), *rng.uniform(8, 50, 2)], int(rng.integers(1, 3))
            dets.append(_det(image, cat, [float(v) for v in box], float(np.round(rng.random(), 2))))
    return {"images": images, "categories": CATS, "annotations": anns}, dets


def _pycocotools_counts(gt: dict, dets: list[dict], thr: float) -> dict[int, tuple[int, int]]:
    """Per image (FP, FN) at score ``thr`` from COCOeval.evaluateImg's matches at IoU 0.5."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
    score = {d["id"]: d["score"] for d in coco_dt.dataset["annotations"]}
    fp, fn = Counter(), Counter()
    for e in ev.evalImgs:
        if e is None:
            continue
        kept = np.asarray(e["dtScores"]) >= thr
        fp[e["image_id"]] += int((kept & (e["dtMatches"][0] == 0) & ~e["dtIgnore"][0].astype(bool)).sum())
        fn[e["image_id"]] += sum(1 for m, ig in zip(e["gtMatches"][0], e["gtIgnore"]) if not ig and (m == 0 or score[int(m)] < thr))
    return {im["id"]: (fp[im["id"]], fn[im["id"]]) for im in gt["images"]}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("thr", [0.3, 0.5])
def test_counts_equal_pycocotools_matching_at_iou_half(seed, thr):
    gt, dets = _random_case(seed)
    ours = {k: (e.fp, e.fn) for k, e in count_errors(gt, dets, score_thr=thr).items()}
    assert ours == _pycocotools_counts(gt, dets, thr)
    assert sum(v[0] for v in ours.values()) > 0 and sum(v[1] for v in ours.values()) > 0  # the case tests something


def test_section_tables_and_galleries(tmp_path):
    gt, results = hand_made()
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((160, 160, 3), 90, np.uint8)).save(images / "im1.png")  # im2 / im3 are missing
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "Glyph ... missing from font"
        text = error_analysis_section(tmp_path, "frcnn_x", 2, gt, results, images, [1, 2], NAMES)
    assert "score >= 0.50" in text
    assert "- **True positives**: 1\n- **False positives**: 3\n- **Missed ground-truth boxes**: 3" in text
    assert "| cat | 1 | 2 | 2 | 0.3333 | 0.3333 |" in text and "| dog | 0 | 1 | 1 | 0.0000 | 0.0000 |" in text
    fp_table = text.split("### Images with the most false positives")[1].split("![")[0]
    assert [line.split("|")[1].strip() for line in fp_table.strip().splitlines()[2:]] == ["1", "2"]
    assert "![Images with the most false positives](errors_fp.png)" in text
    assert "![Images with the most missed boxes](errors_fn.png)" in text
    assert "1 of 2 image(s) could not be read" in text  # im2 drawn blank, the report still written
    with Image.open(tmp_path / "errors_fp.png") as png:
        assert png.width >= 800 and png.height >= 400


def test_no_ground_truth_and_no_errors_say_so(tmp_path):
    gt, _ = hand_made()
    empty = {**gt, "annotations": []}
    assert "nothing to count" in error_analysis_section(tmp_path, "x", 0, empty, [], tmp_path, [1, 2], NAMES)
    perfect = [_det(a["image_id"], a["category_id"], a["bbox"], 0.9) for a in gt["annotations"] if not a["iscrowd"]]
    text = error_analysis_section(tmp_path, "x", 0, gt, perfect, tmp_path, [1, 2], NAMES)
    assert "### Images with the most false positives\nNone at this score." in text
    assert "### Images with the most missed boxes\nNone at this score." in text
    assert not (tmp_path / "errors_fp.png").exists()


def test_fold_report_links_the_galleries(in_tmp, monkeypatch):
    """The task hook: the shapes demo's fold 0 with hand-written OOF boxes (truth shifted + one
    spurious box per image) → report.md carries the error analysis and both pictures."""
    from kagglekit.store.records import RecordsManifest, write_records
    from kagglekit.tasks.detection.config import DetectionConfig
    from kagglekit.tasks.detection.task import DetectionTask
    monkeypatch.setenv("KAGGLEKIT_SHARED", str(in_tmp / "no_shared"))  # the generated shapes demo
    task = DetectionTask(DetectionConfig(name="frcnn_e").demo())
    task.prepare_demo()
    _, _, valid, _ = task.fold_split(0)
    oof = [_det(a["image_id"], a["category_id"], a["bbox"], 0.9) for a in valid["annotations"][1:]]
    oof += [_det(im["id"], task.cat_ids[0], [1, 1, 6, 6], 0.7) for im in valid["images"]]
    fold_dir = in_tmp / "output/demo/frcnn_e/fold0"
    write_records(fold_dir / "oof", oof, RecordsManifest("frcnn_e", 0, "oof", "bbox", [im["id"] for im in valid["images"]],
                                                         task.cat_ids))
    history = pd.DataFrame({"iter": [1, 2], "train_loss": [1.0, 0.5], "valid_bbox_AP": [1.0, 2.0]})
    task.report_fold(fold_dir, history, {"fold": 0, "val": {}})
    report = (fold_dir / "report.md").read_text()
    n_images = len(valid["images"])
    assert f"- **False positives**: {n_images}\n- **Missed ground-truth boxes**: 1" in report
    assert "(errors_fp.png)" in report and "(errors_fn.png)" in report and "could not be read" not in report
    assert report.index("## Error analysis") < report.index("## Output files")
    # without OOF records the report is still written and says why
    (fold_dir / "oof" / "coco_instances_results.json").unlink()
    task.report_fold(fold_dir, history, {"fold": 0, "val": {}})
    assert "## Error analysis\nNot drawn:" in (fold_dir / "report.md").read_text()
