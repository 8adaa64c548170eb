"""frcnn_run1 (seed 004, best): run 0 + multi-scale anchors per FPN level
[[8,12,16],[24,32,40],[48,64,80],[96,128,160],[192,224,256]], 13 training scales 512..896,
test min size 704, and TTA (multi-scale test + horizontal flip, boxes merged by WBF)."""
from dataclasses import replace
from pathlib import Path

from frcnn_run0 import CFG as PARENT

from kagglekit.cli import main
from kagglekit.tasks.detection.config import RUN1_ANCHORS

CFG = replace(PARENT, name=Path(__file__).stem, anchor_sizes=RUN1_ANCHORS,
              train_min_sizes=tuple(range(512, 897, 32)), test_min_size=704,
              tta_sizes=(608, 704, 800), tta_flip=True, tta_merge="wbf", compare_to=("frcnn_run0",))

if __name__ == "__main__":
    raise SystemExit(main(CFG))
