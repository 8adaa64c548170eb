"""mabe_v7: the seed's V7 plan — a Transformer encoder instead of the BiLSTM, same V6 features."""
from dataclasses import replace
from pathlib import Path

from mabe_v6 import CFG as V6
from kagglekit.cli import main

CFG = replace(V6, name=Path(__file__).stem, arch="transformer", dropout=0.1)

if __name__ == "__main__":
    raise SystemExit(main(CFG))
