"""exp093_5: exp093_2 with 4-channel RGB + inverse-depth input (seed 003: LB 0.69343, OOF 0.7160
at T=0.7, the best single model)."""
from dataclasses import replace
from pathlib import Path

from exp093_2 import CFG as PARENT
from kagglekit.cli import main

CFG = replace(PARENT, name=Path(__file__).stem, use_depth_input=True)

if __name__ == "__main__":
    raise SystemExit(main(CFG))
