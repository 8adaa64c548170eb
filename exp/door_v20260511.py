"""door_v20260511: the earlier 4-class softmax over door states (MobileNetV3-L 224 px), reported
with accuracy and macro F1 with and without zero-support classes (seed 000's footnote)."""
from dataclasses import replace
from pathlib import Path

from door_v20260515 import CFG as V15
from kagglekit.cli import main

CFG = replace(V15, name=Path(__file__).stem, kind="softmax", image_size=224, swa_n=0, keep_epoch_checkpoints=0,
              drop_states=(), monitor="valid_macro_f1", compare_to=())

if __name__ == "__main__":
    raise SystemExit(main(CFG))
