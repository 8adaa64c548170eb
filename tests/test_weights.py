"""kagglekit.weights: the one local-weights loader (file formats, wrappers, prefixes, heads of
another shape, RGB → N-channel first conv, errors that name the file)."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from kagglekit.engine.checkpoint import CheckpointError, save_checkpoint
from kagglekit.weights import LoadReport, load_matching, read_state_dict


def net(in_ch: int = 3, classes: int = 5, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(in_ch, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8, classes))


class Wrapped(nn.Module):
    """A module holding the network under ``model.`` (like TimmClassifier)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.model = inner


def randomised(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict of ``module``'s layout with every tensor random (so copies are detectable)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g).to(v.dtype) if v.is_floating_point() else v.clone() + 7
            for k, v in module.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_safetensors_and_torch_files_give_the_same_tensors(tmp_path):
    from safetensors.torch import save_file
    sd = randomised(net(), 1)
    torch.save(sd, tmp_path / "w.pt")
    save_file(sd, str(tmp_path / "w.safetensors"))
    assert_same(read_state_dict(tmp_path / "w.pt"), sd)
    assert_same(read_state_dict(str(tmp_path / "w.safetensors")), sd)


@pytest.mark.parametrize("wrap", [
    lambda sd: {"model": sd},
    lambda sd: {"state_dict": sd, "epoch": 3, "arch": "net"},
    lambda sd: {"model_state_dict": sd},
    lambda sd: {"ema": sd},
    lambda sd: {"model": sd, "ema": None, "optimizer": {"state": {}, "param_groups": []}},  # kagglekit resume
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},  # DDP under a wrapper
    lambda sd: {f"module.{k}": v for k, v in sd.items()},
], ids=["model", "state_dict", "model_state_dict", "ema", "kagglekit", "ddp-wrapped", "ddp"])
def test_wrappers_and_ddp_prefix_are_unwrapped(tmp_path, wrap):
    sd = randomised(net(), 2)
    torch.save(wrap(sd), tmp_path / "w.pt")
    assert_same(read_state_dict(tmp_path / "w.pt"), sd)


def test_model_is_preferred_to_ema_and_manifest_is_verified(tmp_path):
    sd, ema = randomised(net(), 3), randomised(net(), 4)
    save_checkpoint(tmp_path / "last.pt", {"model": sd, "ema": ema, "epoch": 1})
    assert_same(read_state_dict(tmp_path / "last.pt"), sd)
    raw = bytearray((tmp_path / "last.pt").read_bytes())
    raw[-200] ^= 0xFF  # a flipped byte torch would load silently
    (tmp_path / "last.pt").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="last.pt"):
        read_state_dict(tmp_path / "last.pt")


@pytest.mark.parametrize("saved_wrapped, target_wrapped", [(True, False), (False, True)])
def test_model_prefix_is_stripped_or_added(tmp_path, saved_wrapped, target_wrapped):
    src = Wrapped(net(seed=1)) if saved_wrapped else net(seed=1)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = Wrapped(net(seed=2)) if target_wrapped else net(seed=2)
    report = load_matching(dst, tmp_path / "w.pt")
    assert report == LoadReport(loaded=9, total=9)
    src_sd = src.state_dict()
    for k, v in dst.state_dict().items():
        other = src_sd.get(k.removeprefix("model.")) if not saved_wrapped else src_sd.get(f"model.{k}")
        assert torch.equal(v, other), k


def test_features_prefix_is_stripped_for_a_bare_body(tmp_path):
    body = net(seed=1)
    torch.save({f"features.{k}": v for k, v in randomised(body, 5).items()} | {"classifier.1.weight": torch.ones(2, 2)},
               tmp_path / "w.pth")
    report = load_matching(body, tmp_path / "w.pth")
    assert report.loaded == 9 and not report.reinitialised
    assert torch.equal(body[0].weight, randomised(body, 5)["0.weight"])


def test_head_of_another_shape_is_reinitialised_and_reported(tmp_path, caplog):
    src = net(classes=1000, seed=1)
    torch.save(src.state_dict(), tmp_path / "imagenet.pt")
    dst = net(classes=5, seed=2)
    head_before = {k: v.clone() for k, v in dst[4].state_dict().items()}
    with caplog.at_level(logging.INFO, logger="kagglekit.weights"):
        report = load_matching(dst, tmp_path / "imagenet.pt", what="pretrained")
    assert report.reinitialised == ("4.weight", "4.bias") and report.missing == ()
    assert report.loaded == 7 and report.loaded + len(report.reinitialised) + len(report.missing) == report.total
    assert torch.equal(dst[0].weight, src[0].weight) and torch.equal(dst[1].running_var, src[1].running_var)
    assert torch.equal(dst[4].weight, head_before["weight"]) and torch.equal(dst[4].bias, head_before["bias"])
    msg = caplog.records[-1].getMessage()
    assert "loaded 7/9 tensors from" in msg and "imagenet.pt" in msg and "4.weight" in msg


def test_missing_keys_are_reported_and_a_state_dict_can_be_given(tmp_path):
    dst = net(seed=2)
    sd = {k: v for k, v in randomised(dst, 6).items() if k.startswith("0.")}
    report = load_matching(dst, sd, min_match=0.0)
    assert report.loaded == 2 and "4.weight" in report.missing and "1.running_mean" in report.missing
    assert torch.equal(dst[0].weight, sd["0.weight"])


def test_a_partial_match_below_min_match_is_an_error_naming_the_file_and_the_fraction(tmp_path):
    dst = net(seed=2)
    before = dst[0].weight.clone()
    torch.save({k: v for k, v in randomised(dst, 6).items() if k.startswith("0.")}, tmp_path / "part.pt")
    with pytest.raises(ValueError, match=r"pretrained .*part\.pt: only 2/9 \(22%\) .*min_match 50%"):
        load_matching(dst, tmp_path / "part.pt", what="pretrained")
    assert torch.equal(dst[0].weight, before)  # nothing loaded
    assert load_matching(dst, tmp_path / "part.pt", min_match=0.2).loaded == 2


def test_unexpected_keys_are_reported_and_the_report_line_is_logged(tmp_path, caplog):
    dst = net(seed=2)
    sd = randomised(dst, 8) | {"head.fc.weight": torch.ones(3, 3), "head.fc.bias": torch.ones(3)}
    with caplog.at_level(logging.INFO, logger="kagglekit.weights"):
        report = load_matching(dst, sd, name="a timm file")
    assert report.loaded == 9 and report.unexpected == ("head.fc.weight", "head.fc.bias") and report.fraction == 1.0
    msg = caplog.records[-1].getMessage()
    assert "loaded 9/9 tensors from a timm file" in msg and "unexpected: 2 [head.fc.weight, head.fc.bias]" in msg


class Stages(nn.Module):
    """A timm-like model: ``stem.0`` / ``stages.1`` (top-level Sequentials) + a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.stages = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Sequential(nn.Conv2d(4, 4, 1)))
        self.head = nn.Linear(4, 10)


def test_timm_and_tu_encoder_feature_names_map_both_ways():
    from kagglekit.weights import feature_name, plain_names
    assert feature_name("stem.0.weight") == "stem_0.weight" and feature_name("conv1.weight") is None
    assert plain_names("stages_1.0.weight") == ["stages.1.0.weight"]
    assert plain_names("conv_stem_0.weight") == ["conv_stem.0.weight", "conv.stem_0.weight"]
    timm_model = Stages()
    features = Wrapped(nn.ModuleDict({f"{n}_{c}": m for n in ("stem", "stages")
                                      for c, m in getattr(Stages(), n).named_children()}))
    src = randomised(timm_model, 9)
    report = load_matching(features, src)
    assert report.loaded == report.total == 11 and set(report.unexpected) == {"head.weight", "head.bias"}
    assert torch.equal(features.model["stages_1"][0].weight, src["stages.1.0.weight"])
    back = Stages()
    report = load_matching(back, features.state_dict(), min_match=0.5)  # tu- encoder → plain timm: head missing
    assert report.loaded == 11 and set(report.missing) == {"head.weight", "head.bias"}
    assert torch.equal(back.stem[1].running_var, src["stem.1.running_var"])


def test_a_kagglekit_checkpoint_of_a_whole_model_loads_into_its_part(tmp_path):
    body = net(seed=1)
    whole = nn.Module()
    whole.net = nn.Module()
    whole.net.encoder = Wrapped(body)
    whole.net.head = nn.Linear(2, 2)
    save_checkpoint(tmp_path / "best.pt", {"model": whole.state_dict(), "epoch": 1})
    dst = Wrapped(net(seed=2))
    assert load_matching(dst, tmp_path / "best.pt").loaded == 9
    assert torch.equal(dst.model[0].weight, body[0].weight)


def test_a_folder_stands_for_the_weights_file_in_it(tmp_path):
    from safetensors.torch import save_file
    from kagglekit.weights import find_weights_file
    sd = randomised(net(), 10)
    kaggle = tmp_path / "convnext-weights" / "pytorch" / "default" / "1"
    kaggle.mkdir(parents=True)
    save_file(sd, str(kaggle / "model.safetensors"))
    (kaggle / "config.json").write_text("{}")
    assert find_weights_file(tmp_path / "convnext-weights") == kaggle / "model.safetensors"
    assert_same(read_state_dict(tmp_path / "convnext-weights"), sd)
    torch.save(sd, kaggle / "pytorch_model.bin")
    assert find_weights_file(kaggle) == kaggle / "model.safetensors"  # safetensors first
    (tmp_path / "two").mkdir()
    for name in ("a.pth", "b.pth"):
        torch.save(sd, tmp_path / "two" / name)
    with pytest.raises(ValueError, match=r"several weights files \(a\.pth, b\.pth\)"):
        read_state_dict(tmp_path / "two", what="pretrained")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no weights file"):
        read_state_dict(tmp_path / "empty")


def test_renames_run_before_matching(tmp_path):
    dst = net(seed=2)
    sd = {f"old_{k}": v for k, v in reversed(randomised(dst, 7).items())}  # other names AND order
    with pytest.raises(ValueError, match="no tensor matches"):
        load_matching(dst, sd)
    report = load_matching(dst, sd, renames=[lambda s: {k.removeprefix("old_"): v for k, v in s.items()}])
    assert report.loaded == 9


def test_rgb_first_conv_adapted_to_4_channels_equals_timm(tmp_path):
    from timm.models import adapt_input_conv
    src = net(in_ch=3, seed=1)
    torch.save(src.state_dict(), tmp_path / "rgb.pt")
    dst = net(in_ch=4, seed=2)
    report = load_matching(dst, tmp_path / "rgb.pt", adapt_input_conv=True)
    assert report.adapted == ("0.weight",) and report.loaded == 9
    torch.testing.assert_close(dst[0].weight, adapt_input_conv(4, src[0].weight.detach()), rtol=0, atol=0)
    assert dst[0].weight.shape == (8, 4, 3, 3)
    assert not torch.equal(dst[0].weight[:, :3], src[0].weight)  # rescaled by 3/4, not copied
    plain = net(in_ch=4, seed=2)
    before = plain[0].weight.clone()
    report = load_matching(plain, tmp_path / "rgb.pt")  # not asked: the conv is re-initialised
    assert report.reinitialised == ("0.weight",) and torch.equal(plain[0].weight, before)


def test_nothing_matching_is_an_error_naming_the_file(tmp_path):
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "other_arch.pt")
    with pytest.raises(ValueError, match=r"pretrained .*other_arch\.pt: no tensor matches the Sequential's keys"):
        load_matching(net(), tmp_path / "other_arch.pt", what="pretrained")
    torch.save({"0.weight": torch.zeros(1, 1)}, tmp_path / "same_names.pt")  # names match, shapes do not
    with pytest.raises(ValueError, match="same_names.pt: no tensor matches"):
        load_matching(net(), tmp_path / "same_names.pt")


def test_missing_file_and_non_state_dict_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"init_weights: .*nope\.pt not found; .*nothing is downloaded"):
        load_matching(net(), tmp_path / "nope.pt", what="init_weights")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"epoch": 3, "model": {"lr": 0.1}}, tmp_path / "meta.pt")
    for name in ("list.pt", "meta.pt"):
        with pytest.raises(ValueError, match=f"{name}: not a state dict"):
            read_state_dict(tmp_path / name)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="junk.safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")


def test_saved_detection_model_fine_tunes_a_detector_with_another_class_count(tmp_path):
    from kagglekit.tasks.detection.model import DetectionModel, DetectorSpec, build_detector, load_local_weights
    spec = dict(backbone="mobilenet_v2", train_min_sizes=(64,), test_min_size=64, max_size=96)
    src = DetectionModel(build_detector(DetectorSpec(num_classes=4, **spec)), (64,), 64)
    save_checkpoint(tmp_path / "best.pt", {"model": src.state_dict(), "epoch": 2})
    dst = build_detector(DetectorSpec(num_classes=2, **spec))
    load_local_weights(dst, init_weights=str(tmp_path / "best.pt"))
    a, b = src.detector.state_dict(), dst.state_dict()
    assert torch.equal(a["backbone.body.0.0.weight"], b["backbone.body.0.0.weight"])
    assert torch.equal(a["rpn.head.conv.0.0.weight"], b["rpn.head.conv.0.0.weight"])
    assert torch.equal(a["roi_heads.box_head.fc6.weight"], b["roi_heads.box_head.fc6.weight"])
    assert b["roi_heads.box_predictor.cls_score.weight"].shape[0] == 3


def test_same_network_under_other_names_loads_by_order_only_when_complete():
    """torchvision ↔ timm style renames: the whole target paired in order (but a short head);
    a partial run of equal shapes is not enough."""
    dst = net(seed=2)
    sd = {f"other_{i}": v for i, v in enumerate(randomised(dst, 7).values())}
    report = load_matching(dst, sd)
    assert report.loaded == report.total == 9
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in zip(dst.state_dict(), sd.values()))
    bigger = nn.Sequential(*net(seed=3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3))
    with pytest.raises(ValueError, match="no tensor matches"):
        load_matching(bigger, sd)  # 9 of 15 in order: not the same network
