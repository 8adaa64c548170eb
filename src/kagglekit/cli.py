"""The shared command line of every ``exp/*.py`` script.

``python exp/exp093_5.py --fold 0|all [--set key=value ...] [--demo] [--resume] [--overwrite]``
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import torch

from kagglekit.config import ExperimentConfig, apply_overrides

log = logging.getLogger("kagglekit")


def build_parser(name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=name, description=f"Run experiment {name} (one fold or all).")
    p.add_argument("--fold", default="all", help="fold index or 'all' (default: all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (strict: unknown keys are errors); repeatable")
    p.add_argument("--demo", action="store_true", help="small CPU run on generated data")
    p.add_argument("--resume", action="store_true", help="continue from output/<exp>/fold<k>/checkpoints/last.pt")
    p.add_argument("--overwrite", action="store_true", help="delete an existing fold output and start again")
    return p


def parse_folds(value: str, n_folds: int) -> list[int]:
    from kagglekit.config import ConfigError
    if value == "all":
        return list(range(n_folds))
    try:
        folds = [int(v) for v in value.split(",")]
    except ValueError:
        raise ConfigError(f"--fold {value!r}: expected an integer, a comma list, or 'all'") from None
    bad = [f for f in folds if not 0 <= f < n_folds]
    if bad:
        raise ConfigError(f"--fold {value} but n_folds={n_folds} (valid: 0..{n_folds - 1} or all)")
    return folds


def resolve_config(cfg: ExperimentConfig, argv: Sequence[str] | None = None) -> tuple[ExperimentConfig, argparse.Namespace]:
    parser = build_parser(cfg.name)
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite conflict: --overwrite deletes the fold that --resume would continue")
    if args.demo:
        cfg = cfg.demo()
    return apply_overrides(cfg, args.overrides), args


def main(cfg: ExperimentConfig, argv: Sequence[str] | None = None) -> int:
    """Entry point of every experiment file: ``if __name__ == "__main__": raise SystemExit(main(CFG))``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    torch.set_flush_denormal(True)  # random-init nets run ~20x slower on CPU with denormals
    from kagglekit import runner
    from kagglekit.engine.checkpoint import CheckpointError
    from kagglekit.io import DiskFullError
    from kagglekit.engine.fit import NonFiniteLossError, OutOfMemory
    try:
        cfg, args = resolve_config(cfg, argv)
        folds = parse_folds(args.fold, cfg.n_folds)
        task = runner.build_task(cfg)
        if args.demo and hasattr(task, "prepare_demo"):
            runner.prepare_demo(task)
        for fold in folds:
            metrics = runner.run_fold(cfg, fold, resume=args.resume, overwrite=args.overwrite)
            log.info("fold %d done: %s", fold, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        summary = runner.finish_experiment(cfg)
        if summary:
            log.info("experiment %s: %s", cfg.name, summary)
    except (ValueError, FileExistsError, FileNotFoundError, KeyError, NonFiniteLossError, CheckpointError, OutOfMemory,
            DiskFullError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
