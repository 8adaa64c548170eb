"""Shared entry for ``ensemble.py`` and ensemble experiment files (``exp/exp093_ensemble.py``)."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import torch

from kagglekit.ensemble.runner import EnsembleConfig, run_ensemble
from kagglekit.config import apply_overrides


def print_summary(summary: dict) -> None:
    print(f"\nensemble {summary['name']} ({summary['method']}, {summary['objective_evaluations']} objective evaluations)")
    metric = summary["metric"]
    details = summary.get("member_scores", {})
    for member, score in summary["member_oof_score"].items():
        print(f"  member {member:<20s} OOF {metric} {score:.4f}  weight {summary['weights'][summary['members'].index(member)]:.3f}")
        if member in details:  # where that score was computed, beside the experiment's own CV
            print(f"         {'':<20s} ({details[member]['note']})")
    print(f"  blend  {'':<20s} OOF {metric} {summary['blend_oof_score']:.4f}")
    if "chance_miou" in summary:
        print(f"  chance {'(majority class)':<20s} OOF {metric} {summary['chance_miou']:.4f}")
    if "submission" in summary:
        print(f"  submission (validated): {summary['submission']}")
    print("  reports:")
    for path in summary.get("reports", []):
        print(f"    {path}")


def run(cfg: EnsembleConfig, *, demo: bool = False, overwrite: bool = False) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    torch.set_flush_denormal(True)
    try:
        summary = run_ensemble(cfg.demo() if demo else cfg, overwrite=overwrite)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0


def main(cfg: EnsembleConfig, argv: Sequence[str] | None = None) -> int:
    """Entry of ensemble experiment files: ``--demo``, ``--overwrite``, ``--set key=value``."""
    p = argparse.ArgumentParser(prog=cfg.name)
    p.add_argument("--demo", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    return run(apply_overrides(cfg, args.overrides), demo=args.demo, overwrite=args.overwrite)
