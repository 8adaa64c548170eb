"""Issue 13, detection data: the layouts competitors bring and the file Kaggle asks for.

Acceptance: COCO128 re-laid as a flat darknet dataset (``images/`` + ``labels/`` + ``obj.names``,
no split, an unlabelled ``test/`` folder): run0 + run1 + ensemble in fixed mode (a seeded
``val_fraction`` hold-out recorded in ``input/<comp>/holdout.csv``) and in k-fold mode (all
images are train), each with a configured ``PredictionString`` file that validates through the
task and ``kagglekit validate --exp`` (a broken copy is refused, naming the problem); the k-fold
ensemble's file is the WBF of the members' fold-fused test boxes with the searched weights.
Also: an Ultralytics ``data.yaml`` with list files and a ``names`` mapping, and the readers on tiny
synthetic files (obj.data relative paths, labels beside images vs ``labels/``, one-line errors)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from conftest import require_shared, sets
from kagglekit.__main__ import main as kagglekit
from kagglekit.cli import main as run_experiment
from kagglekit.ensemble.runner import EnsembleConfig, run_ensemble
from kagglekit.formats.images import FormatError
from kagglekit.formats.yolo import read_darknet, read_ultralytics
from kagglekit.store.records import read_records
from kagglekit.tasks.detection.config import RUN1_ANCHORS, DetectionConfig
from kagglekit.tasks.detection.convert import LabelError
from kagglekit.tasks.detection.task import DetectionTask

TINY = ["backbone=resnet18", "train_min_sizes=128,160", "test_min_size=160", "max_size=256", "roi_batch_per_image=64",
        "rpn_pre_nms_top_n=300,150", "rpn_post_nms_top_n=150,100", "batch_size=2", "warmup_iters=4", "lr=0.005",
        "grad_clip=10", "score_thresh=0.01", "max_iters=8", "eval_period=8", "keep_epoch_checkpoints=0", "num_workers=0"]
N_TRAIN, N_TEST = 24, 6


# ---------------------------------------------------------------------------------------- data
def _coco128() -> tuple[Path, dict]:
    src = require_shared("coco128")
    return src, json.loads((src / "annotations" / "instances_train2017.json").read_text())


def _yolo_lines(coco: dict, image: dict) -> list[str]:
    """The image's non-crowd boxes as YOLO lines (class = position of the category id in sorted order)."""
    index = {cid: i for i, cid in enumerate(sorted(c["id"] for c in coco["categories"]))}
    width, height, lines = image["width"], image["height"], []
    for a in coco["annotations"]:
        if a["image_id"] != image["id"] or a.get("iscrowd", 0):
            continue
        x, y, w, h = a["bbox"]
        x1, y1, x2, y2 = max(0.0, x), max(0.0, y), min(width, x + w), min(height, y + h)
        if x2 - x1 >= 1 and y2 - y1 >= 1:
            lines.append(f"{index[a['category_id']]} {(x1 + x2) / 2 / width!r} {(y1 + y2) / 2 / height!r} "
                         f"{(x2 - x1) / width!r} {(y2 - y1) / height!r}")
    return lines


@pytest.fixture(scope="module")
def darknet_flat(tmp_path_factory) -> Path:
    """COCO128's first 24 images (by id) as a flat darknet set with no split, the next 6 as an
    unlabelled ``test/`` folder (images symlinked, never copied)."""
    src, coco = _coco128()
    root = tmp_path_factory.mktemp("darknet") / "coco128_darknet"
    for folder in ("images", "labels", "test"):
        (root / folder).mkdir(parents=True)
    images = sorted(coco["images"], key=lambda im: im["id"])
    for image in images[:N_TRAIN]:
        os.symlink(src / "train2017" / image["file_name"], root / "images" / image["file_name"])
        (root / "labels" / f"{Path(image['file_name']).stem}.txt").write_text("".join(f"{ln}\n" for ln in _yolo_lines(coco, image)))
    for image in images[N_TRAIN:N_TRAIN + N_TEST]:
        os.symlink(src / "train2017" / image["file_name"], root / "test" / image["file_name"])
    (root / "obj.names").write_text("".join(c["name"] + "\n" for c in sorted(coco["categories"], key=lambda c: c["id"])))
    return root


def _configs(root: Path, comp: str, **fields) -> tuple[DetectionConfig, DetectionConfig]:
    base = DetectionConfig(name=f"{comp}_run0", comp=comp, data_format="darknet", data_dir=str(root), test_images="test",
                           output_dir="output", submissions_dir="submissions", **fields)
    return base, replace(base, name=f"{comp}_run1", anchor_sizes=RUN1_ANCHORS, tta_sizes=(160,), tta_flip=True)


def _run_members_and_blend(configs, name: str) -> dict:
    for cfg in configs:
        assert run_experiment(cfg, ["--fold", "all", *sets(TINY)]) == 0
    return run_ensemble(EnsembleConfig(name=name, members=tuple(c.name for c in configs), method="greedy",
                                       output_dir="output", submissions_dir="submissions"))


def _validate_cli(sub: Path, exps: list[str], broken_text: str, needle: str, in_tmp: Path, capsys) -> None:
    """``kagglekit validate FILE --exp NAME`` exits 0 for ``sub`` and 2 for a copy with
    ``broken_text`` as the first row's predictions, naming ``needle``."""
    capsys.readouterr()
    for exp in exps:
        assert kagglekit(["validate", str(sub), "--exp", exp, "--output", "output"]) == 0
    frame = pd.read_csv(sub, dtype=str, keep_default_na=False)
    frame.iloc[0, 1] = broken_text
    frame.to_csv(in_tmp / "broken.csv", index=False)
    assert kagglekit(["validate", str(in_tmp / "broken.csv"), "--exp", exps[0], "--output", "output"]) == 2
    assert needle in capsys.readouterr().err


def _report(mode: str, summary: dict, seconds: float) -> None:
    scores = ", ".join(f"{k} {v:.3f}" for k, v in summary["member_oof_score"].items())
    print(f"\n[{mode}] OOF bbox AP: {scores}, ensemble {summary['cv']:.3f} (weights {summary['weights']}); {seconds:.0f}s")


# ---------------------------------------------------------------------------------------- acceptance
@pytest.mark.timeout(1800)
def test_darknet_flat_fixed_mode_holdout_ensemble_and_submission(darknet_flat, in_tmp, capsys):
    """No split in the data: a seeded 25 % hold-out, made once and used by both runs; the file in
    a non-default layout (ids = file names, class names, x y w h, 'none' for no boxes)."""
    start = time.monotonic()
    fmt = dict(val_fraction=0.25, submission_template="{cls} {score:.4f} {x} {y} {w} {h}", submission_class="name",
               submission_empty="none", submission_id_column="ImageId", submission_image_id="file_name")
    configs = _configs(darknet_flat, "dkfix", **fmt)
    summary = _run_members_and_blend(configs, "dkfix_blend")
    holdout = pd.read_csv(in_tmp / "input/dkfix/holdout.csv")
    assert len(holdout) == N_TRAIN and (holdout["split"] == "val").sum() == 6
    val_ids = sorted(holdout.loc[holdout["split"] == "val", "id"])
    for cfg in configs:  # both runs validated on exactly the recorded hold-out
        _, manifest = read_records(in_tmp / "output" / cfg.name / "fold0" / "oof", "bbox", require_manifest=True)
        assert sorted(manifest.image_ids) == val_ids
        assert json.loads((in_tmp / "output" / cfg.name / "metrics.json").read_text())["submission"]
    task = DetectionTask(configs[0])
    assert task.coco("val")["images"] and not {im["id"] for im in task.coco("train")["images"]} & set(val_ids)
    sub = Path(summary["submission"])
    frame = pd.read_csv(sub, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["ImageId", "PredictionString"]
    assert sorted(frame["ImageId"]) == sorted(p.name for p in (darknet_flat / "test").iterdir())
    tokens = " ".join(frame["PredictionString"]).split()
    assert tokens and all(t in set(task.class_tokens().values()) for t in tokens[::6])  # class names, spaces → _
    assert task.validate_submission(sub) == []
    _validate_cli(sub, [configs[0].name, "dkfix_blend"], "unicorn 0.5 1 1 5 5", "class unicorn", in_tmp, capsys)
    _report("fixed val_fraction=0.25", summary, time.monotonic() - start)


@pytest.mark.timeout(1800)
def test_darknet_flat_kfold_ensemble_blends_test_boxes(darknet_flat, in_tmp, capsys):
    """k-fold on data without a train split (all 24 images are train, 2 folds): every image gets
    one OOF prediction; the ensemble's submission is the WBF of the members' fold-fused test boxes
    with the searched weights, written in a YOLO-like normalised layout with the 0-based class ids."""
    start = time.monotonic()
    fmt = dict(split_mode="kfold", n_folds=2, submission_template="{cls} {score} {cx} {cy} {w} {h}",
               submission_coords="normalized", submission_class="source_id")
    configs = _configs(darknet_flat, "dkfold", **fmt)
    summary = _run_members_and_blend(configs, "dkfold_blend")
    folds = pd.read_csv(in_tmp / "input/dkfold/folds.csv")
    assert len(folds) == N_TRAIN and set(folds["fold"]) == {0, 1}
    tasks = [DetectionTask(c) for c in configs]
    member_dirs = [in_tmp / "output" / c.name for c in configs]
    for d in member_dirs:
        assert json.loads((d / "metrics.json").read_text())["submission"]
    from kagglekit.submission.boxes import boxes_frame
    from kagglekit.tasks.detection.blend import by_image, fuse
    test = tasks[0].coco("test")
    fused = fuse([by_image(t.test_detections(d), t.cat_ids) for t, d in zip(tasks, member_dirs)], test["images"],
                 summary["weights"], tasks[0].cat_ids, summary["iou_thr"], configs[0].detections_per_image)
    expected = boxes_frame(fused, test["images"], tasks[0].box_format(), tasks[0].class_tokens())
    sub = Path(summary["submission"])
    written = pd.read_csv(sub, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(written, expected.astype(str))
    assert written["PredictionString"].str.len().sum() > 0
    blend_test, _ = read_records(in_tmp / "output/ensemble/dkfold_blend/evaluation/test", "bbox", require_manifest=True)
    assert len(blend_test) == len(fused)
    assert tasks[0].validate_submission(sub) == []
    _validate_cli(sub, [configs[0].name, "dkfold_blend"], "0 0.9 0.5 0.5 1.5 0.2", "outside", in_tmp, capsys)
    _report("k-fold n_folds=2", summary, time.monotonic() - start)


def test_ultralytics_yaml_with_list_files_and_names_mapping(in_tmp):
    """``data.yaml`` with ``path``, ``train:``/``val:`` list files (``./images/...`` lines) and
    ``names`` as ``{id: name}``: the splits and boxes equal the original COCO annotations."""
    src, coco = _coco128()
    root = in_tmp / "ultra"
    (root / "images" / "all").mkdir(parents=True)
    (root / "labels" / "all").mkdir(parents=True)
    images = sorted(coco["images"], key=lambda im: im["id"])[:10]
    for image in images:
        os.symlink(src / "train2017" / image["file_name"], root / "images/all" / image["file_name"])
        (root / "labels/all" / f"{Path(image['file_name']).stem}.txt").write_text("\n".join(_yolo_lines(coco, image)))
    (root / "train.txt").write_text("".join(f"./images/all/{im['file_name']}\n" for im in images[:7]))
    (root / "val.txt").write_text("".join(f"./images/all/{im['file_name']}\n" for im in images[7:]))
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    names = "\n".join(f"  {i}: {c['name']}" for i, c in enumerate(cats))
    (root / "data.yaml").write_text(f"path: .\ntrain: train.txt\nval: [val.txt]\nnc: {len(cats)}\nnames:\n{names}\n")
    task = DetectionTask(DetectionConfig(name="u", comp="ultra", data_format="ultralytics", data_dir=str(root)))
    train, val = task.coco("train"), task.coco("val")
    assert [len(train["images"]), len(val["images"])] == [7, 3] and task.coco("test") is None
    assert [c["name"] for c in task.categories] == [c["name"] for c in cats]
    first = next(im for im in images if _yolo_lines(coco, im))
    got = sorted((round(a["bbox"][0], 3), task.class_names[a["category_id"]]) for a in train["annotations"]
                 if a["image_id"] == next(i["id"] for i in train["images"] if i["file_name"].endswith(first["file_name"])))
    by_name = {c["id"]: c["name"] for c in cats}
    want = sorted((round(max(0.0, a["bbox"][0]), 3), by_name[a["category_id"]]) for a in coco["annotations"]
                  if a["image_id"] == first["id"] and not a.get("iscrowd", 0) and a["bbox"][2] >= 1 and a["bbox"][3] >= 1)
    assert got == want
    train_ds, valid_ds = task.fold_datasets(0)
    assert len(valid_ds) == 3 and valid_ds[0]["image"].shape[0] == 3


# ---------------------------------------------------------------------------------------- readers
def _image(path: Path, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 200)).save(path)
    return path


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and len(text) < 400, text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def test_obj_data_paths_relative_to_its_folder_the_darknet_folder_or_by_tail(tmp_path):
    """Darknet users write paths relative to the darknet folder (``data/obj/a.jpg``), to the
    obj.data folder (``valid.txt``), or absolute from another machine: all are found. Labels
    beside the images (darknet ``obj/``)."""
    darknet = tmp_path / "darknet"
    data = darknet / "data"
    for stem in ("a", "b", "c"):
        _image(data / "obj" / f"{stem}.jpg")
        (data / "obj" / f"{stem}.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (data / "obj.names").write_text("cat\ndog\n")
    (data / "train.txt").write_text("data/obj/a.jpg\n/content/darknet/data/obj/b.jpg\n")
    (data / "valid.txt").write_text("obj/c.jpg\n")
    (data / "obj.data").write_text("classes = 2\ntrain = data/train.txt\nvalid=valid.txt  # held out\n"
                                   "names = data/obj.names\nbackup = backup/\n")
    ds = read_darknet(data)
    assert ds.names == ["cat", "dog"] and ds.splits == ["train", "val"]
    train = ds.images("train")
    assert [im.file_name for im in train] == ["obj/a.jpg", "obj/b.jpg"]
    assert [im.label for im in train] == [data / "obj/a.txt", data / "obj/b.txt"]
    assert [im.file_name for im in ds.images("val")] == ["obj/c.jpg"]
    task = DetectionTask(DetectionConfig(name="d", comp="dk_small", data_format="darknet", data_dir=str(data),
                                         data_file="obj.data"))
    ann = task.coco("train")["annotations"][0]
    assert ann["bbox"] == [15.0, 7.5, 10.0, 15.0] and ann["category_id"] == 1 and task.class_tokens() == {1: "1", 2: "2"}


def test_flat_layout_labels_folder_preferred_and_missing_labels_are_empty(tmp_path):
    """``images/`` + parallel ``labels/`` + ``obj.names`` (no obj.data): every image is train; an
    image without a label file has no objects; a ``labels/`` file wins over one beside the image."""
    root = tmp_path / "flat"
    for stem in ("x", "y"):
        _image(root / "images" / f"{stem}.png")
    (root / "labels").mkdir()
    (root / "labels" / "x.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / "images" / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # beside: not used when labels/ has one
    (root / "obj.names").write_text("a\nb\n")
    ds = read_darknet(root)
    assert ds.splits == ["train"]
    assert [(im.file_name, im.label) for im in ds.images("train")] == [("images/x.png", root / "labels/x.txt"),
                                                                        ("images/y.png", None)]


def test_reader_errors_are_one_line_naming_the_file(tmp_path):
    root = tmp_path / "bad"
    _image(root / "images" / "a.jpg")
    (root / "obj.names").write_text("a\nb\n")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 oops 0.2 0.2\n")
    task = DetectionTask(DetectionConfig(name="b", comp="bad", data_format="darknet", data_dir=str(root)))
    with pytest.raises(LabelError) as exc:
        task.coco("train")
    _one_line(exc, f"{root / 'labels' / 'a.txt'}:2", "class cx cy w h")
    assert any("a.txt:2" in p for p in task.preflight(0))  # the pre-flight lists it too
    (root / "obj.data").write_text("classes = 3\nnames = obj.names\n")
    with pytest.raises(FormatError) as exc:
        read_darknet(root)
    _one_line(exc, "obj.data:1", "classes=3", "2 names")
    (root / "obj.data").write_text("classes = 2\ntrain data/train.txt\n")
    with pytest.raises(FormatError) as exc:
        read_darknet(root)
    _one_line(exc, "obj.data:2", "key = value")
    (root / "obj.data").write_text("train = train.txt\n")
    (root / "train.txt").write_text("images/a.jpg\n\nimages/missing.jpg\n")
    with pytest.raises(FormatError) as exc:
        read_darknet(root).images("train")
    _one_line(exc, "train.txt:3", "missing.jpg", "not found")
    for text, needles in (("names: {0: a, 2: b}\ntrain: images\n", ("data.yaml", "0..1")),
                          ("names: [a, b]\nnc: 3\ntrain: images\n", ("data.yaml", "nc: 3")),
                          ("names: [a, b\ntrain: images\n", ("data.yaml:", "not valid YAML")),
                          ("names: [a, b]\ntrain: nowhere\n", ("data.yaml", "'nowhere' not found"))):
        (root / "data.yaml").write_text(text)
        with pytest.raises(FormatError) as exc:
            read_ultralytics(root / "data.yaml")
        _one_line(exc, *needles)


def test_kfold_without_a_train_split_says_so_instead_of_a_type_error(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    task = DetectionTask(DetectionConfig(name="e", comp="empty", data_dir=str(root), split_mode="kfold", n_folds=2))
    with pytest.raises(FileNotFoundError, match="no train split"):
        task.folds()
    with pytest.raises(ValueError, match="val_fraction"):
        DetectionTask(DetectionConfig(name="e", comp="empty", data_dir=str(root), split_mode="kfold", n_folds=2,
                                      val_fraction=0.2))
    with pytest.raises(ValueError, match="submission template"):
        DetectionTask(DetectionConfig(name="e", comp="empty", data_dir=str(root), submission_template="{score} {x} {q}"))


def test_holdout_is_seeded_recorded_and_checked(tmp_path):
    from kagglekit.tasks.detection.layouts import holdout_ids
    train = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(1, 21)], "annotations": [], "categories": []}
    a = holdout_ids(train, 0.25, 7, tmp_path / "h.csv")
    assert len(a[1]) == 5 and sorted(a[0] + a[1]) == list(range(1, 21))
    assert holdout_ids(train, 0.25, 7, tmp_path / "h.csv") == a  # read back, same split
    assert holdout_ids(train, 0.25, 7, tmp_path / "other.csv") == a  # same seed → same split
    assert holdout_ids(train, 0.25, 8, tmp_path / "seed8.csv")[1] != a[1]
    with pytest.raises(ValueError, match="delete it"):
        holdout_ids(train, 0.5, 7, tmp_path / "h.csv")
