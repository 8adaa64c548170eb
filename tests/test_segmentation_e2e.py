"""End to end on generated rooms: train all folds of two experiments through the CLI, check every
artefact, ensemble them, and check the clear errors for bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kagglekit.ensemble.runner import EnsembleConfig, run_ensemble
from kagglekit.cli import main
from kagglekit.store.arrays import OOFError
from kagglekit.submission import validate
from kagglekit.tasks.segmentation.config import SegmentationConfig

TINY = ["n_folds=2", "epochs=2", "demo_train=12", "demo_test=3", "input_h=64", "input_w=96", "crop_h=64", "crop_w=96",
        "infer_h=64", "infer_w=96", "tta_scales=0.75,1.0", "temperatures=0.7,1.0", "batch_size=4", "valid_batch_size=3"]
BASE = SegmentationConfig(name="seg_a", use_depth_input=True)
OTHER = SegmentationConfig(name="seg_b", boundary_weight=2.0, class_weights=tuple(1.5 if c in (1, 9, 10) else 1.0 for c in range(13)))


def run(cfg, *extra: str) -> int:
    args = ["--demo", *[a for s in TINY for a in ("--set", s)], *extra]
    return main(cfg, args)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    old = Path.cwd()
    import os
    os.chdir(root)
    try:
        assert run(BASE, "--fold", "all") == 0
        assert run(OTHER, "--fold", "all") == 0
        yield root
    finally:
        os.chdir(old)


@pytest.fixture
def in_workdir(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    return workdir


def test_fold_artefacts(in_workdir):
    fold = in_workdir / "output/demo/seg_a/fold1"
    for name in ("config.json", "history.csv", "metrics.json", "report.md", "history.png", "per_class_iou.png",
                 "confusion.png", "worst_images.png", "oof_image_scores.csv",
                 "checkpoints/best.pt", "checkpoints/last.pt", "oof/probs.npy", "oof/targets.npy", "oof/manifest.json",
                 "test/probs.npy", "test/manifest.json"):
        assert (fold / name).exists(), name
    config = json.loads((fold / "config.json").read_text())
    assert config["epochs"] == 2 and config["use_depth_input"] is True and config["backbone"] == "tu-resnet18"
    hist = pd.read_csv(fold / "history.csv")
    assert list(hist.columns[:5]) == ["epoch", "train_loss", "valid_loss", "valid_miou", "valid_pixel_acc"]
    manifest = json.loads((fold / "oof/manifest.json").read_text())
    assert manifest["scale"] == 0.5 and manifest["dtype"] == "uint8" and len(manifest["tta_views"]) == 4
    metrics = json.loads((fold / "metrics.json").read_text())
    search = metrics["temperature_search"]  # the grid 0.7, 1.0 is widened while its best T is at an edge
    assert manifest["temperature"] == metrics["best_temperature"] == search["best_temperature"]
    assert manifest["temperature"] in [row["temperature"] for row in metrics["temperature_table"]]
    assert search["initial_range"] == [0.7, 1.0] and manifest["metric_name"] == "miou"
    assert search["status"] in ("interior", "flat", "bound") and search["sentence"].startswith("Best T = ")
    probs = np.load(fold / "oof/probs.npy", mmap_mode="r")
    assert probs.dtype == np.uint8 and probs.shape[1:] == (13, 60, 80)  # generated rooms are 120x160
    report = (fold / "report.md").read_text()
    for section in ("## Experiment Configuration", "## Results Summary", "### TTA Performance (OOF)",
                    "| Temperature | mIoU |", "## Training Progression", "## Notes", "(RGB + Inverse Depth)"):
        assert section in report, section
    assert Image.open(fold / "history.png").size[0] > 100
    assert "![confusion](confusion.png)" in report and "![worst OOF images](worst_images.png)" in report
    ref = metrics["confusion_by_temperature"][f"{metrics['best_temperature']:g}"]  # a file name, not 13x13 numbers
    assert np.load(fold / ref["$array"]).shape == (13, 13) and (fold / ref["csv"]).exists()


def test_folds_are_shared_and_metrics_consistent(in_workdir):
    folds = pd.read_csv(in_workdir / "input/nyuv2_demo/folds.csv", dtype={"id": str})
    assert sorted(folds["fold"].unique()) == [0, 1] and folds["id"].is_unique and len(folds) == 12
    from kagglekit.experiment.metrics_file import load_metrics  # confusions are .npy files beside the JSON
    exp = load_metrics(in_workdir / "output/demo/seg_a/metrics.json")
    f0, f1 = (load_metrics(in_workdir / f"output/demo/seg_a/fold{k}/metrics.json") for k in (0, 1))
    t = f"{exp['best_temperature']:g}"
    summed = np.asarray(f0["confusion_by_temperature"][t]) + np.asarray(f1["confusion_by_temperature"][t])
    from kagglekit.metrics.segmentation import iou_from_confusion
    assert exp["oof_miou"] == pytest.approx(iou_from_confusion(summed)[0])
    assert (in_workdir / "output/demo/seg_a/report.md").exists()


def test_experiment_submission_is_valid(in_workdir):
    sub = in_workdir / "submissions/demo/seg_a.csv"
    frame = validate(sub, in_workdir / "input/nyuv2_demo/sample_submission.csv", image_shape=(120, 160))
    assert set(frame["ImageId"].astype(str)) == set(pd.read_csv(in_workdir / "input/nyuv2_demo/test.csv", dtype=str)["id"])


def test_ensemble_blends_members(in_workdir):
    cfg = EnsembleConfig(name="blend", members=("seg_a", "seg_b"), max_pixels_per_image=500).demo()
    summary = run_ensemble(cfg, overwrite=True)
    weights = json.loads((in_workdir / "output/demo/ensemble/blend/weights.json").read_text())
    assert weights["members"] == ["seg_a", "seg_b"] and sum(weights["weights"]) == pytest.approx(1.0)
    assert weights["blend_oof_score"] >= max(weights["member_oof_score"].values()) - 1e-9 and weights["metric"] == "mIoU"
    assert weights["objective_evaluations"] > 2 and weights["method"] == "slsqp"
    validate(summary["submission"], in_workdir / "input/nyuv2_demo/sample_submission.csv", image_shape=(120, 160))
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_ensemble(cfg, overwrite=False)


def test_ensemble_with_repredicted_tta(in_workdir):
    cfg = EnsembleConfig(name="blend_tta", members=("seg_a", "seg_b"), tta_scales=(1.0,), tta_flip=True,
                         method="greedy", max_pixels_per_image=500).demo()
    summary = run_ensemble(cfg, overwrite=True)
    member = json.loads((in_workdir / "output/demo/ensemble/blend_tta/members/seg_a/fold0/oof/manifest.json").read_text())
    assert member["tta_views"] == ["s1", "s1-flip"]
    assert summary["method"] == "greedy" and Path(summary["submission"]).exists()


def test_ensemble_refuses_misaligned_members(in_workdir):
    shutil.copytree(in_workdir / "output/demo/seg_b", in_workdir / "output/demo/seg_c", dirs_exist_ok=True)
    ids_path = in_workdir / "output/demo/seg_c/fold0/oof/ids.json"
    ids = json.loads(ids_path.read_text())
    ids[0] = "9999"
    ids_path.write_text(json.dumps(ids))
    shutil.rmtree(in_workdir / "output/demo/seg_c/oof_merged", ignore_errors=True)
    with pytest.raises(OOFError, match="no OOF row|differ"):
        run_ensemble(EnsembleConfig(name="bad", members=("seg_a", "seg_c")).demo(), overwrite=True)
    assert not (in_workdir / "output/demo/ensemble/bad").exists()  # a failed ensemble leaves no folder behind


def test_existing_fold_output_is_refused(in_workdir, capsys):
    before = (in_workdir / "output/demo/seg_a/fold0/checkpoints/best.pt").read_bytes()
    assert run(BASE, "--fold", "0") == 2
    assert "already exists; pass --resume" in capsys.readouterr().err
    assert (in_workdir / "output/demo/seg_a/fold0/checkpoints/best.pt").read_bytes() == before


def test_fold_out_of_range(in_workdir, capsys):
    assert run(BASE, "--fold", "7") == 2
    assert "--fold 7 but n_folds=2" in capsys.readouterr().err


def test_nan_loss_is_a_clear_error(in_workdir, capsys):
    from dataclasses import replace
    code = run(replace(OTHER, name="seg_nan"), "--fold", "0", "--set", "lr=1e30")
    err = capsys.readouterr().err
    assert code == 2 and "non-finite loss" in err and "at step" in err


def test_corrupt_label_is_a_clear_error(in_workdir, capsys):
    data = in_workdir / "input/nyuv2_demo"
    bad = in_workdir / "bad_data"
    shutil.copytree(data, bad)
    first = pd.read_csv(bad / "train.csv", dtype=str)["id"].iloc[0]
    (bad / "train/label" / f"{first}.png").write_bytes(b"not a png")
    code = run(SegmentationConfig(name="seg_bad"), "--fold", "0", "--set", f"data_dir={bad}",
               "--set", "output_dir=output/bad")
    assert code == 2
    assert f"{first}.png" in capsys.readouterr().err
