"""frcnn_run2 (seed 004, failed: -9.7 mAP vs run 1): run 1 + focal loss in the RoI classification
head (alpha 0.25, gamma 2) + LVIS repeat-factor sampling (threshold 0.001). Kept to reproduce the
negative result; compare against frcnn_run1."""
from dataclasses import replace
from pathlib import Path

from frcnn_run1 import CFG as PARENT

from kagglekit.cli import main

CFG = replace(PARENT, name=Path(__file__).stem, roi_loss="focal", focal_alpha=0.25, focal_gamma=2.0,
              repeat_factor_threshold=0.001, compare_to=("frcnn_run1",))

if __name__ == "__main__":
    raise SystemExit(main(CFG))
