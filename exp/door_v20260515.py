"""door_v20260515: MobileNetV3-L (384 px) with one sigmoid head per attribute, partial-label BCE,
weighted sampler, cam_erase; per-attribute validation-best F1 thresholds saved with the model;
SWA of the last 4 epoch checkpoints with BatchNorm recalibration (seed 000: AdamW 3e-4 / wd 0.01,
batch 64, 20 epochs). Data: a folder with labels.csv + images (``--set data_dir=...``).
Starts from the seed's ImageNet backbone, ``pretrained=mobilenetv3_large_100.ra_in1k`` (timm, Hugging
Face cache; offline: ``--set pretrained=<file or folder>``; ``--demo`` never downloads)."""
from pathlib import Path

from kagglekit.cli import main
from kagglekit.tasks.multilabel.config import MultiLabelConfig

CFG = MultiLabelConfig(name=Path(__file__).stem, backbone="mobilenetv3_large_100", image_size=384, epochs=20,
                       batch_size=64, lr=3e-4, weight_decay=0.01, swa_n=4, keep_epoch_checkpoints=4,
                       compare_to=("door_v20260511",), pretrained="mobilenetv3_large_100.ra_in1k")

if __name__ == "__main__":
    raise SystemExit(main(CFG))
