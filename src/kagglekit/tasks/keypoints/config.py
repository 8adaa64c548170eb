"""Configuration of the keypoint task and its kill-switch gate (seed 002: synthetic + real mixed
fine-tune (arm A) vs real only (arm B), graded with OKS-mAP against the v1 baseline 0.2199 + 2 pp).

Seed settings: fine-tune from the v1 checkpoint for 25 epochs at image size 480, batch 16, lr 2e-4,
real frames oversampled ×8 in the mix, validation on the real val split, evaluation on the real
test set with OKS-mAP, OKS-mAP@50 and PCK@0.05.

Shared names (see :mod:`kagglekit.config`): ``init_weights`` is a whole model to fine-tune from,
``pretrained`` the backbone's weights (old ``backbone_weights``); each off (``""`` / ``false``), a
local file / folder, or a torchvision weights enum fetched and cached under ``TORCH_HOME``
(``init_weights=COCO_V1``: torchvision's COCO Keypoint R-CNN R50-FPN; ``pretrained=IMAGENET1K_V1``), ``hflip_p`` the training
flip probability (old bool ``hflip``: true = 0.5), ``tta_flip`` the flip TTA (old ``flip_tta``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from kagglekit.config import ExperimentConfig, MonitorMode


@dataclass(frozen=True)
class KeypointConfig(ExperimentConfig):
    task: str = "keypoints"
    comp: str = "carfusion"
    real_train_json: str = ""  # COCO keypoints JSON (paths relative to data_dir unless absolute)
    real_val_json: str = ""  # model selection always on real frames
    real_test_json: str = ""
    real_image_dir: str = "images"
    synthetic_json: str = ""
    synthetic_image_dir: str = ""
    use_synthetic: bool = True  # arm A: synthetic + real; arm B (control): real only
    real_oversample: int = 8
    synthetic_oversample: int = 1
    synthetic_mapping: str = ""  # name of a KeypointMapping (synthetic convention → real), '' = same names
    sigmas: tuple[float, ...] = ()  # OKS sigmas per keypoint; empty = COCO's 17 (required for other K)
    pck_alpha: float = 0.05  # PCK threshold as a fraction of max(w, h) of the ground-truth box
    backbone: str = "resnet50"
    trainable_backbone_layers: int = 3
    init_weights: str = ""  # whole model: a checkpoint (e.g. the v1 model) or COCO_V1; head kept when K matches
    pretrained: str = ""  # ImageNet backbone weights: a file or a torchvision enum (IMAGENET1K_V1)
    image_size: int = 480  # min size at train and test time
    max_size: int = 800
    hflip_p: float = 0.5  # training flip probability (with left/right keypoint swap)
    tta_flip: bool = True
    roi_batch_per_image: int = 512
    keypoint_head_channels: tuple[int, ...] = (512,) * 8  # torchvision's KeypointRCNNHeads (8 convs of 512)
    score_thresh: float = 0.05
    detections_per_image: int = 20  # COCO keypoint evaluation uses maxDets 20
    baseline: float = 0.2199  # the gate: v1's OKS-mAP on the real test set
    margin: float = 0.02
    gate_metric: str = "test.oks_map"
    n_folds: int = 1
    epochs: int = 25
    batch_size: int = 16
    lr: float = 2e-4
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    monitor: str = "valid_oks_map"
    monitor_mode: MonitorMode = "max"
    num_workers: int = -1  # from the machine
    cudnn_benchmark: bool = False  # images of varied sizes: autotuning every new shape costs more than it gains

    def demo(self) -> "KeypointConfig":
        """Procedural person-like figures (17 COCO keypoints) as the synthetic source and the real
        COCO keypoint sample in ../shared/data (2 images train, 2 images val/test) as the real one;
        a ResNet-18 at 160 px with a narrow keypoint head on CPU for 4 epochs."""
        from kagglekit.paths import shared_data
        sample = shared_data("coco_keypoints_sample")
        real_images = str(sample / "images") if (sample / "test_coco.json").exists() else "real/images"
        return replace(self, comp="keypoints_demo", data_dir="input/keypoints_demo", output_dir="output/demo",
                       submissions_dir="submissions/demo", real_train_json="real_train.json",
                       real_val_json="real_test.json", real_test_json="real_test.json", real_image_dir=real_images,
                       synthetic_json="synthetic/annotations.json", synthetic_image_dir="synthetic/images",
                       backbone="resnet18", pretrained="", init_weights="", trainable_backbone_layers=5,
                       image_size=160, max_size=256, epochs=4,
                       roi_batch_per_image=64, keypoint_head_channels=(128,) * 4, detections_per_image=10,
                       batch_size=4, lr=1e-3, warmup_epochs=0.5, num_workers=0, grad_clip=10.0)
