"""The shared command line of every ``exp/*.py`` script.

``python exp/exp093_5.py --fold 0|all [--set key=value ...] [--demo] [--resume] [--overwrite]``
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
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


def resume_command(name: str, argv: Sequence[str] | None, folds: Sequence[int] | None = None, n_folds: int = 0) -> str:
    """The command that continues this run: the same script and options (``--demo``, every
    ``--set``: ``--resume`` refuses a changed config), the folds not finished yet (``folds``; None:
    the script has no ``--fold``), ``--resume``."""
    script = sys.argv[0] if argv is None and sys.argv[0].endswith(".py") else f"exp/{name}.py"
    if os.path.isabs(script) and Path(script).resolve().is_relative_to(Path.cwd()):
        script = os.path.relpath(script)
    rest, it = [], iter(sys.argv[1:] if argv is None else argv)
    for arg in it:
        if arg == "--fold":
            next(it, None)
        elif not (arg.startswith("--fold=") or arg in ("--resume", "--overwrite")):
            rest.append(arg)
    if folds is not None:
        rest += ["--fold", "all" if list(folds) == list(range(n_folds)) else ",".join(str(f) for f in folds)]
    return shlex.join(["python", script, *rest, "--resume"])


def interrupted_line(exc: KeyboardInterrupt, resume_hint: str) -> tuple[str, int]:
    """(the one stderr line, the exit code) of a run stopped by SIGINT / SIGTERM."""
    from kagglekit.engine.stop import Interrupted
    where = exc.where() if isinstance(exc, Interrupted) else "interrupted (SIGINT) outside the training loop"
    return f"{where}; continue with {resume_hint}", exc.exit_code if isinstance(exc, Interrupted) else 130


def main(cfg: ExperimentConfig, argv: Sequence[str] | None = None) -> int:
    """Entry point of every experiment file: ``if __name__ == "__main__": raise SystemExit(main(CFG))``.

    Errors end as one ``error: ...`` line (exit 2); SIGINT / SIGTERM as one ``interrupted at epoch E
    step S; continue with <command> --resume`` line (exit 130 / 143), the last checkpoint intact."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    torch.set_flush_denormal(True)  # random-init nets run ~20x slower on CPU with denormals
    from kagglekit.experiment import runner
    from kagglekit.engine.checkpoint import CheckpointError
    from kagglekit.engine.stop import sigterm_as_interrupt
    from kagglekit.io import DiskFullError
    from kagglekit.engine.fit import NonFiniteLossError, OutOfMemory
    pending: list[int] = []  # folds not finished yet (the resume hint names them)
    try:
        with sigterm_as_interrupt():
            cfg, args = resolve_config(cfg, argv)
            folds = parse_folds(args.fold, cfg.n_folds)
            pending = list(folds)
            task = runner.build_task(cfg)
            if args.demo and hasattr(task, "prepare_demo"):
                runner.prepare_demo(task)
            for fold in folds:
                metrics = runner.run_fold(cfg, fold, resume=args.resume, overwrite=args.overwrite)
                pending = pending[1:] or [fold]  # after the last fold: it re-runs the epilogue
                log.info("fold %d done: %s", fold, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
            summary = runner.finish_experiment(cfg)
            if summary:
                log.info("experiment %s: %s", cfg.name, summary)
    except (ValueError, FileExistsError, FileNotFoundError, KeyError, NonFiniteLossError, CheckpointError, OutOfMemory,
            DiskFullError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM (Interrupted): one line, no traceback
        line, code = interrupted_line(exc, resume_command(cfg.name, argv, pending or range(cfg.n_folds), cfg.n_folds))
        print(line, file=sys.stderr)
        return code
    return 0
