"""Issue 16: zero-padded ids (``0001``, ``007`` beside ``0007``, ``01`` beside ``1``) stay text end
to end — ``kagglekit folds`` → folds.csv → the task's folds → each fold's OOF / test store
(ids.json) → the merged OOF → the submission file — for the two tasks whose ids come from files
and CSVs (segmentation: image stems / an ids CSV; multi-label: the labels CSV's image column).
A random-init model predicts (no training): what is checked is where the ids go."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from kagglekit.__main__ import main as kagglekit_main
from kagglekit.cv import fold_ids
from kagglekit.store.arrays import merged_oof, read_predictions

TRAIN_IDS = ["0001", "0010", "007", "0007", "01", "1", "0100", "020"]  # equal as numbers: 007/0007, 01/1
TEST_IDS = ["0003", "003", "030"]


def _image(path: Path, seed: int, size: tuple[int, int] = (32, 64)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path, format="PNG")


def _folds_by_cli(ids_csv: Path, out: Path, id_column: str = "id") -> None:
    assert kagglekit_main(["folds", "--comp", "c", "--csv", str(ids_csv), "--id", id_column, "--strategy", "kfold",
                           "--n-splits", "2", "--out", str(out)]) == 0
    assert pd.read_csv(out, dtype=str)[id_column].tolist() == pd.read_csv(ids_csv, dtype=str)[id_column].tolist()


def _check_stores(exp_dir: Path, folds: pd.DataFrame) -> None:
    for k in (0, 1):
        _, valid = fold_ids(folds, k, "id")
        assert json.loads((exp_dir / f"fold{k}" / "oof" / "ids.json").read_text()) == valid
        assert read_predictions(exp_dir / f"fold{k}" / "oof").ids == valid
        assert json.loads((exp_dir / f"fold{k}" / "test" / "ids.json").read_text()) == TEST_IDS


@pytest.fixture
def seg_data(tmp_path) -> Path:
    root = tmp_path / "data"
    for k, i in enumerate(TRAIN_IDS):
        _image(root / "train" / "images" / f"{i}.png", k)
        mask = np.random.default_rng(k).integers(1, 4, (32, 64), dtype=np.uint8)
        (root / "train" / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "train" / "masks" / f"{i}.png")
    for k, i in enumerate(TEST_IDS):
        _image(root / "test" / "images" / f"{i}.png", 100 + k)
    pd.DataFrame({"id": TRAIN_IDS}).to_csv(root / "train_ids.csv", index=False)
    return root


def test_segmentation_zero_padded_ids_round_trip(seg_data, tmp_path):
    from kagglekit.tasks.segmentation.config import SegmentationConfig
    from kagglekit.tasks.segmentation.task import SegmentationTask
    _folds_by_cli(seg_data / "train_ids.csv", seg_data / "folds.csv")
    cfg = SegmentationConfig(name="zp_seg", layout="folders", data_dir=str(seg_data), output_dir=str(tmp_path / "out"),
                             submissions_dir=str(tmp_path / "subs"), num_classes=3, submission_format="rle",
                             train_ids_csv="train_ids.csv", backbone="tu-resnet18", pretrained="", input_h=32, input_w=64,
                             infer_h=32, infer_w=64, tta_scales=(1.0,), tta_flip=False, temperatures=(1.0,), n_folds=2,
                             valid_batch_size=4, num_workers=0, device="cpu")
    task = SegmentationTask(cfg)
    folds = task.folds()  # the CLI's folds.csv: no false mismatch
    assert folds["id"].tolist() == TRAIN_IDS
    torch.manual_seed(0)
    model = task.build_model(initial_weights=False).eval()
    exp_dir = tmp_path / "out" / cfg.name
    for k in (0, 1):
        task.finalize(model, k, exp_dir / f"fold{k}")
    _check_stores(exp_dir, folds)
    assert merged_oof(exp_dir, TRAIN_IDS, 2).ids == TRAIN_IDS
    sub = task.write_submission(exp_dir, {}, tmp_path / "subs" / "zp_seg.csv")
    frame = pd.read_csv(sub, dtype=str, keep_default_na=False)
    assert set(frame["ImageId"]) == set(TEST_IDS) and task.validate_submission(sub) == []
    assert {line.split(",")[0] for line in sub.read_text().splitlines()[1:]} == set(TEST_IDS)  # the raw text too
    _blend_names_the_members_ids(task, exp_dir)


def _blend_names_the_members_ids(task, exp_dir: Path) -> None:
    """A copy of the member blends with it; once the copy's ids.json lists "100" for "0100"
    (written by an old tool), the blend refuses naming both members and the first differing ids."""
    import shutil
    from dataclasses import replace
    from kagglekit.store.arrays import OOFError
    from kagglekit.tasks.segmentation.finish import SegmentationBlend
    from kagglekit.tasks.segmentation.task import SegmentationTask
    other = SegmentationTask(replace(task.cfg, name="zp_seg_b"))
    shutil.copytree(exp_dir, exp_dir.parent / "zp_seg_b")
    blend = SegmentationBlend([task, other], [exp_dir, exp_dir.parent / "zp_seg_b"])
    assert 0 <= blend(np.array([0.5, 0.5])) <= 1
    fold = next(k for k in (0, 1) if "0100" in read_predictions(exp_dir / f"fold{k}" / "oof").ids)
    ids_path = exp_dir.parent / "zp_seg_b" / f"fold{fold}" / "oof" / "ids.json"
    ids_path.write_text(json.dumps(["100" if i == "0100" else i for i in json.loads(ids_path.read_text())]))
    with pytest.raises(OOFError, match=r"members' OOF ids \(sorted\) differ: zp_seg has 8 ids, zp_seg_b 8: 1 only in "
                                       r"zp_seg \(first 1: \['0100'\]\), 1 only in zp_seg_b \(first 1: \['100'\]\)"):
        SegmentationBlend([task, other], [exp_dir, exp_dir.parent / "zp_seg_b"])


@pytest.fixture
def doors(tmp_path) -> Path:
    root = tmp_path / "doors"
    labels = {"open": [1, 0, 1, 0, 1, 0, 1, 1], "closed": [0, 1, 0, 1, 0, 1, 1, 0]}
    for k, i in enumerate(TRAIN_IDS + TEST_IDS):
        _image(root / i, k, (40, 40))  # files named by the bare id: a number-looking path
    pd.DataFrame({"image": TRAIN_IDS, **labels}).to_csv(root / "labels.csv", index=False)
    pd.DataFrame({"image": TEST_IDS}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": TRAIN_IDS}).to_csv(root / "ids.csv", index=False)
    return root


def test_multilabel_zero_padded_ids_round_trip(doors, tmp_path):
    from kagglekit.tasks.multilabel.config import MultiLabelConfig
    from kagglekit.tasks.multilabel.task import MultiLabelTask
    _folds_by_cli(doors / "ids.csv", doors / "folds.csv")
    cfg = MultiLabelConfig(name="zp_ml", data_dir=str(doors), output_dir=str(tmp_path / "out"), test_csv="test.csv",
                           submissions_dir=str(tmp_path / "subs"), backbone="resnet10t", pretrained="", image_size=32,
                           n_folds=2, fold_strategy="kfold", batch_size=4, num_workers=0, device="cpu", swa_n=0)
    task = MultiLabelTask(cfg)
    folds = task.folds()
    assert folds["id"].tolist() == TRAIN_IDS
    torch.manual_seed(0)
    model = task.build_model(initial_weights=False).eval()
    exp_dir = tmp_path / "out" / cfg.name
    for k in (0, 1):
        task.finalize(model, k, exp_dir / f"fold{k}")
    _check_stores(exp_dir, folds)
    from kagglekit.tasks.multilabel.lifecycle import merged_oof as merged_rows
    assert sorted(merged_rows(exp_dir, 2)[0]) == sorted(TRAIN_IDS)
    sub = task.write_submission(exp_dir, {"thresholds": [0.5, 0.5]}, tmp_path / "subs" / "zp_ml.csv")
    assert [line.split(",")[0] for line in sub.read_text().splitlines()] == ["image", *TEST_IDS]
    assert task.validate_submission(sub) == []
