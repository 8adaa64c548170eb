"""The door-state track end to end on the real car_doors images: training beats the label prior,
best + SWA predictor files reproduce the OOF, the softmax variant reports the zero-support footnote."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from kagglekit.cli import main
from kagglekit.store.arrays import read_predictions
from kagglekit.tasks.multilabel.config import MultiLabelConfig
from kagglekit.tasks.multilabel.predictor import Predictor
from kagglekit.tasks.multilabel.task import MultiLabelTask, parse_states

FAST = ["image_size=96", "epochs=8", "batch_size=32", "lr=2e-3", "n_folds=4", "cam_erase_p=0.2"]


def sets(items):
    return [a for s in items for a in ("--set", s)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    real = require_shared("car_doors")
    root = tmp_path_factory.mktemp("doors")
    import os
    old = os.getcwd()
    os.chdir(root)
    try:
        cfg = MultiLabelConfig(name="door_v20260515", swa_n=3, keep_epoch_checkpoints=3)
        assert main(cfg, ["--demo", "--fold", "0", *sets(FAST + [f"data_dir={real}"])]) == 0
        yield root / "output/demo/door_v20260515/fold0", real
    finally:
        os.chdir(old)


def test_map_clearly_beats_label_prior(trained):
    fold, _ = trained
    oof = read_predictions(fold / "oof")
    targets = np.where(np.asarray(oof.targets) == 255, -1, np.asarray(oof.targets)).astype(int)
    prior = MultiLabelTask.prior_map(targets)
    metrics = json.loads((fold / "metrics.json").read_text())
    best = metrics["versions"]["best"]["mAP"]
    assert best > prior + 0.08, (best, prior)
    assert set(metrics["versions"]) == {"best", "swa"} and len(metrics["swa_sources"]) == 3


def test_predictor_reproduces_oof_exactly(trained):
    fold, real = trained
    oof = read_predictions(fold / "oof")
    predictor = Predictor.from_checkpoint(fold / "swa_predictor.pt", strict_thresholds=False)
    images = [np.asarray(Image.open(real / i).convert("RGB")) for i in oof.ids[:24]]
    probs = predictor.predict_proba(images)
    np.testing.assert_allclose(probs.astype(np.float16), np.asarray(oof.probs[:24]), atol=1e-3)
    table = predictor.predict(images)
    assert "state" in table and set(table["state"]) <= {"open", "closed", "mixed", "?"}
    assert len(predictor.meta.thresholds) == 5


def test_report_and_artefacts(trained):
    fold, _ = trained
    report = (fold / "report.md").read_text()
    for section in ("## Version comparison", "SWA-3", "## Per-attribute metrics", "## Training history",
                    "## Sample inference", "## FP audit"):
        assert section in report, section
    assert (fold / "fp_audit.png").exists() and (fold / "best_predictor.pt").exists()
    config = json.loads((fold / "run_config.json").read_text())
    assert {"backbone_name", "attrs", "img_size", "swa_n", "swa_source_ckpts", "hyperparams"} <= set(config)


def test_softmax_variant_and_three_version_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = ["epochs=2", "data_dir=input/synthetic_doors"]
    old = MultiLabelConfig(name="door_v20260511", kind="softmax", drop_states=(), monitor="valid_macro_f1")
    assert main(old, ["--demo", "--fold", "0", *sets(FAST + data)]) == 0
    metrics = json.loads((tmp_path / "output/demo/door_v20260511/fold0/metrics.json").read_text())
    assert {"accuracy", "macro_f1", "macro_f1_active"} <= set(metrics["versions"]["best"])
    assert "incl. zero-support" in (tmp_path / "output/demo/door_v20260511/fold0/report.md").read_text()
    new = MultiLabelConfig(name="door_v20260515", swa_n=2, keep_epoch_checkpoints=2, compare_to=("door_v20260511",))
    assert main(new, ["--demo", "--fold", "0", *sets(FAST + data)]) == 0
    table = (tmp_path / "output/demo/door_v20260515/fold0/report.md").read_text().split("## Per-attribute")[0]
    assert "door_v20260511" in table and "door_v20260515 best.pt" in table and "door_v20260515 SWA-2" in table


def test_state_rules():
    default = parse_states((), ["a", "b", "c"])
    assert default.state_of([1, 1, 1]) == "open" and default.state_of([0, 0, 0]) == "closed"
    assert default.state_of([1, 0, 1]) == "mixed"
    door = parse_states(("1,0=open", "0,1=closed", "1,1=mixed", "0,0=unknown"), ["has_open", "has_close"])
    assert door.state_of([0, 0]) == "unknown"
    with pytest.raises(ValueError, match="expected 2"):
        parse_states(("1=open",), ["has_open", "has_close"])


def test_backbone_weights_load_from_a_local_file_only(tmp_path):
    import torch
    from kagglekit.tasks.multilabel.model_wrap import TimmClassifier, load_backbone_weights
    torch.manual_seed(0)
    source = TimmClassifier("resnet10t", num_classes=1000)
    torch.save(source.model.state_dict(), tmp_path / "resnet10t.pth")
    target = TimmClassifier("resnet10t", num_classes=5, loss="focal")
    n = load_backbone_weights(target, str(tmp_path / "resnet10t.pth"))
    assert n > 10
    torch.testing.assert_close(target.model.conv1[0].weight, source.model.conv1[0].weight)
    assert target.model.fc.weight.shape == (5, 512)  # the head keeps its own shape
    torch.save({"nothing.weight": torch.zeros(2)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="no tensor matches"):
        load_backbone_weights(target, str(tmp_path / "bad.pth"))
    out = target({"image": torch.randn(2, 3, 64, 64), "target": torch.tensor([[1, 0, -1, 1, 0], [0, -1, -1, 1, 1]]).float()})
    assert torch.isfinite(out["loss"])
