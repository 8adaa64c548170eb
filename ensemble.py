"""Blend experiments on their OOF predictions and write the blended submission.

    python ensemble.py --exps exp093_5 exp093_4 [--method slsqp|greedy] [--name NAME]
                       [--tta-scales 0.75 1.0] [--wait SECONDS] [--demo] [--overwrite]
"""
from __future__ import annotations

import argparse
import sys

from kagglekit.ensemble.runner import EnsembleConfig
from kagglekit.ensemble.cli import run


def parse(argv: list[str] | None = None) -> tuple[EnsembleConfig, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exps", nargs="+", required=True, help="member experiment names (output/<exp>)")
    p.add_argument("--method", default="slsqp", choices=["slsqp", "greedy"])
    p.add_argument("--name", default=None, help="ensemble name (default: members joined by '+')")
    p.add_argument("--tta-scales", nargs="*", type=float, default=[], help="re-predict members with these TTA scales")
    p.add_argument("--wait", type=int, default=0, metavar="SECONDS",
                   help="wait up to SECONDS for members whose folds are still training elsewhere")
    p.add_argument("--demo", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    cfg = EnsembleConfig(name=args.name or "+".join(args.exps), members=tuple(args.exps), method=args.method,
                         tta_scales=tuple(args.tta_scales), wait_seconds=args.wait)
    return cfg, args


if __name__ == "__main__":
    cfg, args = parse()
    sys.exit(run(cfg, demo=args.demo, overwrite=args.overwrite))
