"""The kill-switch experiment (seed 002): train arm A (synthetic + real ×8) and arm B (real only,
the control) from the same checkpoint, evaluate both on the real test set, and grade arm A with
:mod:`kagglekit.gate` against the baseline (PASS ≥ baseline + margin, MARGINAL in [baseline,
baseline + margin), FAIL below). The process exits with the gate's code (0 / 10 / 20; 2 = error).

    python exp/vk_phase0_v4.py [--demo] [--set key=value ...] [--arms A,B] [--resume|--overwrite]
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from kagglekit.config import apply_overrides
from kagglekit.gate import EXIT_CODES, gate, render_report
from kagglekit.io import load_json, save_json, write_text
from kagglekit.tasks.keypoints.config import KeypointConfig

log = logging.getLogger("kagglekit.gate")


def arm_configs(cfg: KeypointConfig) -> dict[str, KeypointConfig]:
    """Arm A (candidate) and arm B (control): same everything except the synthetic source."""
    return {"A": replace(cfg, name=f"{cfg.name}_A", use_synthetic=True),
            "B": replace(cfg, name=f"{cfg.name}_B", use_synthetic=False)}


def run_arm(cfg: KeypointConfig, demo: bool, resume: bool, overwrite: bool) -> Path:
    """Train + evaluate one arm unless its summary exists (then it is reused, as the seed reused arm B)."""
    from kagglekit.experiment import runner
    exp_dir = runner.exp_dir(cfg)
    if (exp_dir / "metrics.json").exists() and not overwrite:
        log.info("arm %s: reusing %s", cfg.name, exp_dir / "metrics.json")
        return exp_dir / "metrics.json"
    task = runner.build_task(cfg)
    if demo:
        runner.prepare_demo(task)
    runner.run_fold(cfg, 0, resume=resume, overwrite=overwrite)
    runner.finish_experiment(cfg)
    return exp_dir / "metrics.json"


def grade(cfg: KeypointConfig, metrics_paths: dict[str, Path], out_dir: Path) -> int:
    """Gate arm A vs the baseline on ``cfg.gate_metric``; writes the report and a verdict JSON."""
    from kagglekit.gate import lookup
    data = {name: load_json(p) for name, p in metrics_paths.items()}
    values = {name: lookup(d, cfg.gate_metric, str(metrics_paths[name])) for name, d in data.items()}
    result = gate(values, cfg.baseline, cfg.margin, "A", "B" if "B" in values else None)
    report = render_report(result, cfg.gate_metric, data, {k: str(v) for k, v in metrics_paths.items()})
    write_text(out_dir / "kill_switch_report.md", report)
    save_json(out_dir / "verdict.json", {"verdict": result.verdict, "value": result.value, "baseline": cfg.baseline,
                                         "margin": cfg.margin, "contribution": result.contribution,
                                         "metric": cfg.gate_metric, "arms": {k: str(v) for k, v in metrics_paths.items()}})
    print(result.line(cfg.gate_metric))
    return EXIT_CODES[result.verdict]


def main(cfg: KeypointConfig, argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    torch.set_flush_denormal(True)
    p = argparse.ArgumentParser(prog=cfg.name, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--demo", action="store_true")
    p.add_argument("--arms", default="A,B", help="arms to (re)run; an arm not listed reuses its metrics.json")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    from kagglekit.engine.checkpoint import CheckpointError
    from kagglekit.engine.fit import NonFiniteLossError, OutOfMemory
    from kagglekit.io import DiskFullError
    try:
        cfg = apply_overrides(cfg.demo() if args.demo else cfg, args.overrides)
        arms = arm_configs(cfg)
        chosen = [a.strip() for a in args.arms.split(",") if a.strip()]
        unknown = [a for a in chosen if a not in arms]
        if unknown:
            raise ValueError(f"--arms {args.arms}: unknown arm(s) {unknown}; use A and/or B")
        paths = {name: run_arm(c, args.demo, args.resume, args.overwrite and name in chosen)
                 if name in chosen else _existing(c) for name, c in arms.items()}
        from kagglekit.experiment import runner
        return grade(cfg, paths, runner.exp_dir(cfg))
    except (ValueError, FileExistsError, FileNotFoundError, KeyError, NonFiniteLossError, CheckpointError,
            OutOfMemory, DiskFullError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # SIGINT / SIGTERM: one line, exit 130 / 143 (kagglekit.cli)
        from kagglekit.cli import interrupted_line, resume_command
        line, code = interrupted_line(exc, resume_command(cfg.name, argv))
        print(line, file=sys.stderr)
        return code


def _existing(cfg: KeypointConfig) -> Path:
    from kagglekit.experiment import runner
    path = runner.exp_dir(cfg) / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: arm {cfg.name} has not run; include it in --arms")
    return path
