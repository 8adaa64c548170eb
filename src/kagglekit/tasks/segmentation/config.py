"""Configuration of the segmentation task (the exp093 family's knobs, seed 003 defaults).

Names shared with the other tasks (see :mod:`kagglekit.config`): ``backbone`` is the SMP encoder
(old name ``encoder``), ``pretrained`` its weights (old ``pretrained_path``): off (``""`` / ``false``), a
local file / folder, or a tag fetched and cached by timm for ``tu-`` encoders (``true`` = timm's
default, ``convnext_base.fb_in22k_ft_in1k``) or by SMP for its own (``imagenet``); see
:mod:`kagglekit.weights.resolve`,
``hflip_p`` the training flip probability. ``tta_scales`` are *relative* factors of the
inference size (detection's ``tta_sizes`` are absolute pixel sizes: another meaning, another name).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from kagglekit.config import ExperimentConfig, MonitorMode

SEED_TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5)
WIDE_TEMPERATURES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)  # includes the seed's 0.7..1.0


@dataclass(frozen=True)
class SegmentationConfig(ExperimentConfig):
    task: str = "segmentation"
    comp: str = "nyuv2"
    num_classes: int = 13
    arch: Literal["fpn", "deeplabv3plus", "unet"] = "fpn"
    backbone: str = "tu-convnext_base"  # SMP encoder name
    pretrained: str = ""  # encoder weights: "" / false = random init (logged), a file / folder, true or a timm tag
    use_depth_input: bool = False  # RGB + inverse depth as a 4th channel (exp093_5)
    depth_aux: bool = True  # depth head trained with depth_loss_weight · L1
    depth_loss_weight: float = 0.1
    boundary_weight: float = 1.0  # 2.0 = boundary-aware CE (exp093_4)
    class_weights: tuple[float, ...] = ()  # one per class, empty = uniform
    input_h: int = 720
    input_w: int = 960
    crop_h: int = 576
    crop_w: int = 768
    scale_min: float = -0.25
    scale_max: float = 0.25
    hflip_p: float = 0.5  # training horizontal-flip probability
    infer_h: int = 720
    infer_w: int = 960
    valid_batch_size: int = 4
    tta_scales: tuple[float, ...] = SEED_TTA_SCALES  # relative to (infer_h, infer_w)
    tta_flip: bool = True
    tta_average: Literal["prob", "logit"] = "prob"
    temperatures: tuple[float, ...] = WIDE_TEMPERATURES
    oof_scale: float = 0.5
    oof_dtype: Literal["uint8", "float16"] = "uint8"
    predict_test: bool = True
    demo_train: int = 60
    demo_test: int = 16
    # ---- data layout (tasks/segmentation/source.py); "nyuv2" = the seed's layout -------------------
    layout: Literal["nyuv2", "folders"] = "nyuv2"
    train_images: str = "train/images"  # folders: paths relative to the data root (or absolute)
    train_masks: str = "train/masks"  # single-channel masks, pixel = competition class id
    train_masks_csv: str = ""  # instead of train_masks: RLE rows in the rle_* format below
    train_depth: str = ""  # optional 16-bit depth (mm) folder; read only when configured
    train_ids_csv: str = ""  # optional: ids from this CSV's id_column (default: image file stems)
    test_images: str = "test/images"
    test_masks: str = ""  # optional test labels (kagglekit score, local evaluation)
    test_depth: str = ""
    test_ids_csv: str = ""
    id_column: str = "id"
    # ---- class table (tasks/segmentation/classes.py): competition ids <-> model indices ----------
    class_ids: tuple[int, ...] = ()  # competition id of index 0..C-1; empty = 1..num_classes
    class_names: tuple[str, ...] = ()
    ignore_ids: tuple[int, ...] = (0,)  # void / unlabelled ids: not trained on, not scored
    classes_csv: str = ""  # id,name rows (instead of class_ids/class_names)
    # ---- submission (submission/masks.py); "nyuv2" = the seed's format ---------------------------
    submission_format: Literal["nyuv2", "rle"] = "nyuv2"
    rle_layout: Literal["per_class", "binary"] = "per_class"
    rle_id_column: str = "ImageId"
    rle_class_column: str = "ClassId"  # '' with rle_combined_id
    rle_combined_id: str = ""  # e.g. "{image}_{class}"
    rle_column: str = "EncodedPixels"
    rle_order: Literal["F", "C"] = "F"  # column-major (most Kaggle comps) or row-major pixel numbering
    rle_start: int = 1
    rle_empty: Literal["omit", "blank"] = "omit"
    sample_submission: str = "sample_submission.csv"  # relative to the data root; optional for rle
    monitor: str = "valid_miou"
    monitor_mode: MonitorMode = "max"

    def demo(self) -> "SegmentationConfig":
        """A small ResNet-18 encoder (random init; BatchNorm nets learn fastest from scratch on CPU —
        ConvNeXt-Atto reached 0.16 vs 0.23 OOF mIoU in the same 20 epochs) on generated 96×128 rooms,
        14 epochs so `make demo` (10 fold trainings + ensemble) stays well under 10 minutes on 2 cores;
        everything else (loss, heads, EMA, TTA, temperature search, OOF) as configured."""
        return replace(
            self, data_dir="input/nyuv2_demo", output_dir="output/demo", submissions_dir="submissions/demo",
            backbone="tu-resnet18", pretrained="", input_h=96, input_w=128, crop_h=96, crop_w=128,
            scale_min=-0.1, scale_max=0.25, infer_h=96, infer_w=128, epochs=14, batch_size=8, lr=4e-3,
            warmup_epochs=1.0, ema_decay=0.9, valid_batch_size=8, num_workers=0,
            tta_scales=tuple(s for s in self.tta_scales if 0.75 <= s <= 1.25) or (1.0,),
        )
