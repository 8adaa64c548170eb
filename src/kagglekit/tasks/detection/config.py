"""Configuration of the detection task (seed 004: Faster R-CNN R50-FPN on AgroPest-12, runs 0/1/2).

Defaults follow the seed's run 0 (detectron2 ``faster_rcnn_R_50_FPN_3x`` fine-tune): SGD momentum
0.9, wd 1e-4, base lr 0.001, linear warmup 1000 iterations from 0.001·lr, steps 15000/20000 × 0.1,
25000 iterations of batch 4, evaluation + checkpoint every 2500, train min size from 640..800,
test 800, max 1333, RoI batch 512 per image, score threshold 0.5, 100 detections per image.

Shared names (see :mod:`kagglekit.config`): ``pretrained`` is a local backbone weights file (old
``backbone_weights``), ``init_weights`` a whole detector's weights to fine-tune from (old
``detector_weights``), ``hflip_p`` the training flip probability (old bool ``hflip``: true = 0.5),
``compare_to`` a tuple of experiments (was one name). ``tta_sizes`` stays its own name: they are
absolute test min sizes in pixels (the detector resizes each view itself), unlike segmentation's
and multilabel's ``tta_scales``, relative factors of the inference size.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from kagglekit.config import ExperimentConfig, FoldStrategy, MonitorMode, Optimizer, Scheduler

RUN0_ANCHORS = "32;64;128;256;512"  # one size per FPN level (P2..P6)
RUN1_ANCHORS = "8,12,16;24,32,40;48,64,80;96,128,160;192,224,256"


def scaled_sizes(sizes: tuple[int, ...], factor: float, multiple: int = 16) -> tuple[int, ...]:
    """Image sizes scaled by ``factor``, rounded to ``multiple``, duplicates dropped (order kept)."""
    return tuple(dict.fromkeys(max(multiple, int(s * factor / multiple + 0.5) * multiple) for s in sizes))


@dataclass(frozen=True)
class DetectionConfig(ExperimentConfig):
    task: str = "detection"
    comp: str = "agropest12"
    # yolo: data_dir/{images,labels}/<split> (or <split>.txt) + classes.txt/data.yaml | coco: annotations/instances_<split>.json
    # darknet: obj.data (classes/train/valid/names) or the flat images/ + labels/ + obj.names (no split: all train)
    # ultralytics: data.yaml (path, train/val/test folders or list files, names list or {id: name})
    data_format: Literal["yolo", "coco", "darknet", "ultralytics"] = "yolo"
    data_file: str = ""  # darknet: the obj.data (default data_dir/obj.data if present) | ultralytics: the YAML (default data.yaml)
    image_dir: str = ""  # coco format: images folder ('{split}' is replaced); default data_dir/images/<split>
    test_images: str = ""  # folder or list file of unlabelled test images (relative to data_dir): the test split
    splits: tuple[str, ...] = ("train", "val", "test")
    split_mode: Literal["fixed", "kfold"] = "fixed"  # fixed: validate on the val split (n_folds=1) | kfold: folds over train (OOF)
    val_fraction: float = 0.0  # fixed mode without a val split: seeded share of train held out (input/<comp>/holdout.csv)
    class_subset: tuple[str, ...] = ()  # keep only these class names (others dropped; e.g. COCO128 demo)
    architecture: Literal["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"] = "fasterrcnn_resnet50_fpn"
    backbone: str = "resnet50"  # resnet18/34/50/101 (FPN on C2..C5)
    trainable_backbone_layers: int = 3
    pretrained: str = ""  # local ImageNet state_dict of the backbone (torchvision resnet keys)
    init_weights: str = ""  # local full detector state_dict (e.g. torchvision COCO Faster R-CNN); head re-initialised if classes differ
    anchor_sizes: str = RUN0_ANCHORS  # ';' separates FPN levels, ',' sizes within a level
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    train_min_sizes: tuple[int, ...] = (640, 672, 704, 736, 768, 800)
    test_min_size: int = 800
    max_size: int = 1333
    hflip_p: float = 0.5  # training horizontal-flip probability
    roi_batch_per_image: int = 512
    score_thresh: float = 0.5
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000)  # (train, test), per FPN level
    rpn_post_nms_top_n: tuple[int, int] = (2000, 1000)  # (train, test), per image
    roi_loss: Literal["ce", "focal"] = "ce"  # focal: run 2
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    repeat_factor_threshold: float = 0.0  # > 0: LVIS repeat-factor sampling (run 2: 0.001)
    filter_empty: bool = True  # drop training images without boxes (detectron2 default)
    tta_sizes: tuple[int, ...] = ()  # empty: no TTA; else absolute test min sizes in pixels (× flip if tta_flip)
    tta_flip: bool = True
    tta_merge: Literal["nms", "wbf"] = "wbf"
    tta_iou: float = 0.55
    compare_to: tuple[str, ...] = ()  # earlier experiments whose results the report compares against
    # the Kaggle file (kagglekit.submission.boxes.BoxFormat): one row per test image
    submission_template: str = "{cls} {score} {x1} {y1} {x2} {y2}"  # one box; fields cls score x1 y1 x2 y2 x y w h cx cy
    submission_coords: Literal["pixels", "normalized"] = "pixels"
    submission_class: Literal["category_id", "source_id", "name"] = "category_id"  # source_id: the data's own (YOLO: 0-based)
    submission_empty: str = ""  # cell of an image without boxes ("" or a token such as none)
    submission_id_column: str = "image_id"
    submission_pred_column: str = "PredictionString"
    submission_image_id: Literal["stem", "file_name", "id"] = "stem"  # image file stem / file name / numeric image id
    n_folds: int = 1
    fold_strategy: FoldStrategy = "multilabel_stratified"  # kfold mode: stratified on per-image class presence
    optimizer: Optimizer = "sgd"
    momentum: float = 0.9
    lr: float = 0.001
    weight_decay: float = 1e-4
    scheduler: Scheduler = "step"
    max_iters: int = 25000
    eval_period: int = 2500
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    lr_milestones: tuple[int, ...] = (15000, 20000)
    lr_gamma: float = 0.1
    batch_size: int = 4
    monitor: str = "valid_bbox_AP"
    monitor_mode: MonitorMode = "max"
    keep_epoch_checkpoints: int = 10  # every eval_period checkpoint kept (seed: model_00XXXXX.pth)
    num_workers: int = -1  # from the machine
    cudnn_benchmark: bool = False  # images of varied sizes: autotuning every new shape costs more than it gains

    def demo(self) -> "DetectionConfig":
        """COCO128 (read in place from ../shared/data) when present, else generated shapes in YOLO
        format; a ResNet-18 FPN at small sizes on CPU, a few hundred iterations."""
        from kagglekit.paths import shared_data
        coco128 = shared_data("coco128")
        scale = 0.3  # 640..800 px → 192..240 px
        common = dict(output_dir="output/demo", submissions_dir="submissions/demo", backbone="resnet18",
                      pretrained="", init_weights="",  # demos never download (an experiment may default to COCO_V1)
                      trainable_backbone_layers=5, max_iters=150, eval_period=50, warmup_iters=20,
                      lr_milestones=(100, 130), lr=0.01, grad_clip=10.0, batch_size=2, num_workers=0, max_size=400,
                      roi_batch_per_image=128, score_thresh=0.05, keep_epoch_checkpoints=0,
                      rpn_pre_nms_top_n=(600, 300), rpn_post_nms_top_n=(300, 150),
                      train_min_sizes=scaled_sizes(self.train_min_sizes, scale),
                      test_min_size=scaled_sizes((self.test_min_size,), scale)[0],
                      tta_sizes=scaled_sizes(self.tta_sizes, scale),
                      anchor_sizes=self.anchor_sizes, compare_to=self.compare_to)
        if (coco128 / "annotations" / "instances_train2017.json").exists():
            return replace(self, comp="coco128_demo", data_format="coco", data_dir="input/coco128_demo",
                           image_dir=str(coco128 / "train2017"),
                           class_subset=("person", "car", "chair", "cup", "book", "bottle", "bowl"), **common)
        return replace(self, comp="shapes_demo", data_format="yolo", data_dir="input/shapes_demo", **common)
