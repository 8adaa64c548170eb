"""exp093_ensemble: exp093_5 (RGB-D) + exp093_4 (boundary), SLSQP weights on OOF mIoU, members
re-predicted with TTA scales 0.75/1.0 × flip at 576x768 (seed 003: LB 0.69654)."""
from pathlib import Path

from kagglekit.ensemble.runner import EnsembleConfig
from kagglekit.ensemble.cli import main

CFG = EnsembleConfig(name=Path(__file__).stem, members=("exp093_5", "exp093_4"), method="slsqp",
                     tta_scales=(0.75, 1.0), tta_flip=True, infer_h=576, infer_w=768)

if __name__ == "__main__":
    raise SystemExit(main(CFG))
