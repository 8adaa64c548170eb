"""exp093_6: exp093_2 with a DeepLabV3+ decoder (seed 003: LB 0.69195, OOF 0.7127 at T=0.7)."""
from dataclasses import replace
from pathlib import Path

from exp093_2 import CFG as PARENT
from kagglekit.cli import main

CFG = replace(PARENT, name=Path(__file__).stem, arch="deeplabv3plus")

if __name__ == "__main__":
    raise SystemExit(main(CFG))
