"""mabe_v6_pairs: the competition's view — V6 features with the agent first, plus agent→target
pair features (distances, relative heading, approach speed); per-frame multi-label actions per
(agent, target) → OOF-tuned thresholds → intervals → validated Kaggle submission, CV-scored with
the official MABe metric."""
from dataclasses import replace
from pathlib import Path

from mabe_v6 import CFG as V6
from kagglekit.cli import main

CFG = replace(V6, name=Path(__file__).stem, view="pairs", pair_features=True, class_weights=())

if __name__ == "__main__":
    raise SystemExit(main(CFG))
