"""mabe_v6: Conv1D-BiLSTM (conv 64/128/256, BiLSTM 256 × 2, dropout 0.3) on coordinates + speed +
acceleration (seed 001 V6: 288 inputs, F1 macro 0.6164). AdamW 4e-4 / wd 1e-4, batch 384, clip 1.0,
2 warmup epochs then ReduceLROnPlateau (5, 0.5, min 1e-5), class weights [1, 5, 8, 8], early stopping 15."""
from pathlib import Path

from kagglekit.cli import main
from kagglekit.tasks.behavior.config import BehaviorConfig

CFG = BehaviorConfig(name=Path(__file__).stem)

if __name__ == "__main__":
    raise SystemExit(main(CFG))
