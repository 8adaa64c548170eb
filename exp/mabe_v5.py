"""mabe_v5: Conv1D-BiLSTM over 100-frame windows of normalised coordinates only (seed 001 V5,
144 inputs for 4 mice × 18 keypoints; F1 macro 0.4332)."""
from dataclasses import replace
from pathlib import Path

from mabe_v6 import CFG as V6
from kagglekit.cli import main

CFG = replace(V6, name=Path(__file__).stem, motion=False)

if __name__ == "__main__":
    raise SystemExit(main(CFG))
