"""frcnn_run0 (seed 004 baseline): Faster R-CNN R50-FPN, one anchor size per FPN level
[[32],[64],[128],[256],[512]], SGD lr 0.001 (warmup 1000 from 0.001x, steps 15000/20000 x0.1),
25000 iterations of batch 4, train min size 640..800 / test 800 (max 1333), hflip, RoI batch 512,
score threshold 0.5, 100 detections per image, evaluation + checkpoint every 2500 iterations.
Data: a YOLO dataset (images/ + labels/ per split, classes.txt) in ``--set data_dir=...``;
Starts from a COCO-detection model: ``init_weights=COCO_V1`` (torchvision's COCO Faster R-CNN R50-FPN,
cached under ``TORCH_HOME``; the seed used detectron2's R_50_FPN_3x; box predictor and RPN head of
another shape re-initialised) — or ``--set init_weights=<local .pth>`` / ``false``."""
from pathlib import Path

from kagglekit.cli import main
from kagglekit.tasks.detection.config import RUN0_ANCHORS, DetectionConfig

CFG = DetectionConfig(name=Path(__file__).stem, anchor_sizes=RUN0_ANCHORS, score_thresh=0.5, init_weights="COCO_V1")

if __name__ == "__main__":
    raise SystemExit(main(CFG))
