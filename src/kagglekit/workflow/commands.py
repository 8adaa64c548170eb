"""The ``python -m kagglekit`` subcommands. Each ``cmd_*`` takes the parsed argparse namespace
and an optional Kaggle API object (tests inject a fake; by default :func:`kaggle_api` imports the
``kaggle`` package lazily, which authenticates on import) and returns the exit code.

Exit codes: 0 ok, 2 refused (invalid submission, missing credentials, bad input).
Credentials are never printed: messages name where they are looked for, not their values.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import zipfile
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from kagglekit.paths import input_root, output_root
from kagglekit.report.markdown import markdown_table
from kagglekit.workflow import ledger as ledger_mod

CREDENTIALS_HELP = (
    "Kaggle credentials not found. Set the environment variables KAGGLE_USERNAME and KAGGLE_KEY "
    "(or KAGGLE_API_TOKEN), or put kaggle.json (from https://www.kaggle.com/settings -> API -> "
    "Create New Token) in ~/.kaggle/kaggle.json (or $KAGGLE_CONFIG_DIR/kaggle.json) with chmod 600."
)


class KaggleCredentialsError(RuntimeError):
    """No Kaggle credentials in the usual places (message never contains a secret)."""


def _config_dirs(env: Mapping[str, str]) -> list[Path]:
    home = Path(env.get("HOME") or Path.home())
    dirs = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return dirs + [home / ".kaggle", xdg / "kaggle"]


def credentials_available(env: Mapping[str, str] | None = None) -> bool:
    """True when the kaggle package can find credentials (env vars, kaggle.json, access_token)."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    return any((d / name).is_file() for d in _config_dirs(env) for name in ("kaggle.json", "access_token"))


def kaggle_api(api: Any = None) -> Any:
    """``api`` when given (tests), else the authenticated ``kaggle.api`` (lazy import)."""
    if api is not None:
        return api
    if not credentials_available():
        raise KaggleCredentialsError(CREDENTIALS_HELP)
    try:
        import kaggle  # noqa: PLC0415  (authenticates on import)
    except (Exception, SystemExit) as exc:  # the package exits on bad credentials
        raise KaggleCredentialsError(f"{CREDENTIALS_HELP} (kaggle import failed: {type(exc).__name__})") from None
    return kaggle.api


# --------------------------------------------------------------------------- download
def _safe_extract(archive: Path, dest: Path) -> list[str]:
    """Extract ``archive`` into ``dest``, refusing members that would land outside it."""
    root = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            target = (root / member).resolve()
            if target != root and root not in target.parents:
                raise ValueError(f"{archive}: member {member!r} would extract outside {dest}; refusing")
        zf.extractall(root)
        return zf.namelist()


def cmd_download(args: argparse.Namespace, api: Any = None) -> int:
    dest = Path(args.dest) if args.dest else input_root() / args.competition
    dest.mkdir(parents=True, exist_ok=True)
    client = kaggle_api(api)
    before = set(dest.glob("*.zip"))
    client.competition_download_files(args.competition, path=str(dest), quiet=False)
    archives = sorted(set(dest.glob("*.zip")) - before) or sorted(dest.glob("*.zip"))
    for archive in archives:
        names = _safe_extract(archive, dest)
        print(f"extracted {len(names)} file(s) from {archive.name} into {dest}")
        if not args.keep_zip:
            archive.unlink()
    if not archives:
        print(f"downloaded {args.competition} into {dest} (no zip archive to extract)")
    return 0


# --------------------------------------------------------------------------- folds
def cmd_folds(args: argparse.Namespace, api: Any = None) -> int:
    from kagglekit.cv import make_folds, write_folds  # noqa: PLC0415

    csv = Path(args.csv) if args.csv else input_root() / args.comp / "train.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"training CSV {csv} not found; pass --csv input/{args.comp}/train.csv")
    frame = pd.read_csv(csv, dtype={args.id: str})  # ids verbatim: "0001" must not become 1
    if args.id not in frame.columns:
        raise ValueError(f"{csv}: id column {args.id!r} not found; columns are {list(frame.columns)}")
    y = None if not args.y else (args.y[0] if len(args.y) == 1 and args.strategy != "multilabel_stratified" else args.y)
    folds = make_folds(frame, args.n_splits, args.strategy, y=y, groups=args.groups, seed=args.seed)
    out = Path(args.out) if args.out else input_root() / args.comp / "folds.csv"
    write_folds(folds, out, args.id)
    sizes = folds["fold"].value_counts().sort_index()
    print(f"wrote {out}: {len(folds)} rows, {args.strategy}, sizes " + ", ".join(f"{k}:{v}" for k, v in sizes.items()))
    return 0


# --------------------------------------------------------------------------- status
def _mean_std(values: list[float]) -> str:
    if not values:
        return "N/A"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {std:.4f}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def status_rows(exp: ledger_mod.ExperimentInfo) -> list[dict[str, Any]]:
    """One row per fold (missing folds included) + one ``mean ± std`` row."""
    rows = []
    by_fold = {f.fold: f for f in exp.folds}
    for k in sorted(set(by_fold) | set(exp.missing_folds)):
        f = by_fold.get(k)
        rows.append({
            "experiment": exp.name, "fold": str(k), "monitor": f.monitor if f else None,
            "best": f.best if f else None, "oof_metric": f.oof_metric if f else None,
            "oof": f.oof_value if f else None, "oof_preds": _yes(bool(f and f.has_oof)),
            "test_preds": _yes(bool(f and f.has_test)), "state": f.state if f else "missing",
            "experiment_metric": None,
        })
    done = exp.done_folds
    exp_metric = f"{exp.exp_metric}={exp.exp_value:.4f}" if exp.exp_value is not None else "N/A"
    rows.append({
        "experiment": exp.name, "fold": "mean ± std", "monitor": None,
        "best": _mean_std([f.best for f in done if f.best is not None]), "oof_metric": None,
        "oof": _mean_std([f.oof_value for f in done if f.oof_value is not None]),
        "oof_preds": f"{sum(f.has_oof for f in done)}/{exp.n_folds or len(exp.folds)}",
        "test_preds": f"{sum(f.has_test for f in done)}/{exp.n_folds or len(exp.folds)}",
        "state": f"{len(done)}/{exp.n_folds or len(exp.folds)} folds",
        "experiment_metric": exp_metric,
    })
    return rows


def status_table(output: str | os.PathLike, name: str | None = None) -> str:
    exps = ledger_mod.scan_experiments(output, name)
    if not exps:
        which = f"named {name!r} " if name else ""
        raise FileNotFoundError(f"no experiment {which}found under {output} (expected <exp>/fold<k>/ folders)")
    return markdown_table([row for exp in exps for row in status_rows(exp)])


def cmd_status(args: argparse.Namespace, api: Any = None) -> int:
    print(status_table(args.output or output_root(), args.exp), end="")
    return 0


# --------------------------------------------------------------------------- validate / submit
def _check_submission(args: argparse.Namespace) -> int | None:
    """Row count when valid; prints every problem to stderr and returns None otherwise. With
    ``--exp`` the experiment's task validates (its format, test ids, image sizes); else the
    per-image formats against ``--sample``."""
    from kagglekit.submission import SubmissionError, validate  # noqa: PLC0415

    if args.exp:
        from kagglekit.experiment.lookup import experiment_task  # noqa: PLC0415
        task = experiment_task(Path(args.output) if args.output else output_root(), args.exp)
        problems = task.validate_submission(Path(args.submission), Path(args.sample) if args.sample else None)
        if problems:
            print(f"INVALID: {args.submission} has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems),
                  file=sys.stderr)
            return None
        return len(pd.read_csv(args.submission, dtype=str))
    if not args.sample:
        raise ValueError("say what to validate against: --exp <experiment> or --sample <sample_submission.csv>")
    try:
        parsed = validate(args.submission, args.sample, image_shape=tuple(args.image_shape) if args.image_shape else None)
    except (SubmissionError, FileNotFoundError) as exc:
        print(f"INVALID: {exc}", file=sys.stderr)
        return None
    return len(parsed)


def cmd_validate(args: argparse.Namespace, api: Any = None) -> int:
    rows = _check_submission(args)
    if rows is None:
        return 2
    against = f"experiment {args.exp}'s format" if args.exp else args.sample
    print(f"OK: {args.submission} is valid against {against} ({rows} rows)")
    return 0


def cmd_score(args: argparse.Namespace, api: Any = None) -> int:
    """The experiment's task validates ``SUBMISSION`` and scores it against ``--solution``, as the
    competition would; prints the metric (and its extras) as JSON."""
    from kagglekit.experiment.lookup import experiment_task  # noqa: PLC0415
    from kagglekit.submission import SubmissionError  # noqa: PLC0415
    task = experiment_task(Path(args.output) if args.output else output_root(), args.exp)
    for path, what in ((args.submission, "submission"), (args.solution, "--solution")):
        if not Path(path).exists():
            raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        result = task.score_submission(Path(args.submission), Path(args.solution))
    except SubmissionError as exc:
        print(f"INVALID: {exc}", file=sys.stderr)
        return 2
    name = task.metric.name
    print(f"{args.submission}: {name} = {result[name]:.6f}")
    extras = {k: v for k, v in result.items() if k != name and isinstance(v, (int, float, str))}
    if extras:
        print(json.dumps(extras, indent=1, default=float))
    return 0


def cmd_finish(args: argparse.Namespace, api: Any = None) -> int:
    """The experiment epilogue alone (after folds trained elsewhere, or to redo the submission)."""
    from dataclasses import replace  # noqa: PLC0415

    from kagglekit.experiment import runner  # noqa: PLC0415
    from kagglekit.experiment.finish import missing_folds  # noqa: PLC0415
    from kagglekit.experiment.lookup import saved_config  # noqa: PLC0415
    root = Path(args.output) if args.output else output_root()
    cfg = replace(saved_config(root, args.experiment), output_dir=str(root))
    if missing := missing_folds(runner.exp_dir(cfg), cfg.n_folds):
        raise FileNotFoundError(f"{runner.exp_dir(cfg)}: folds {missing} have no metrics.json yet; finish them first")
    summary = runner.finish_experiment(cfg)
    print(f"{cfg.name}: CV {summary['metric']} = {summary['cv']:.5f}; report {summary['report']}"
          + (f"; submission {summary['submission']}" if summary.get("submission") else ""))
    return 0


def submit_command_line(competition: str, submission: str, message: str) -> str:
    return shlex.join(["kaggle", "competitions", "submit", "-c", competition, "-f", submission, "-m", message])


def cmd_submit(args: argparse.Namespace, api: Any = None) -> int:
    rows = _check_submission(args)
    if rows is None:
        print("refused: nothing was submitted", file=sys.stderr)
        return 2
    line = submit_command_line(args.competition, args.submission, args.message)
    if args.dry_run:
        print(f"dry run ({rows} valid rows), would run:\n{line}")
        return 0
    client = kaggle_api(api)
    client.competition_submit(file_name=str(args.submission), message=args.message, competition=args.competition)
    output = Path(args.output) if args.output else output_root()
    with ledger_mod.ledger_lock(output):  # read-modify-write: concurrent ledger commands take turns
        ledger = ledger_mod.record_submission(ledger_mod.refresh_ledger(output), args.submission, args.message)
        csv_path, _ = ledger_mod.save_ledger(ledger, output)
    print(f"submitted {args.submission} ({rows} rows) to {args.competition}; recorded in {csv_path}")
    return 0


# --------------------------------------------------------------------------- ledger
def cmd_ledger(args: argparse.Namespace, api: Any = None) -> int:
    if (args.lb is None) != (args.submission is None):
        raise ValueError("--lb and --submission go together: --lb 0.6951 --submission submissions/<file>.csv")
    output = Path(args.output) if args.output else output_root()
    with ledger_mod.ledger_lock(output):  # read-modify-write: concurrent ledger commands take turns
        ledger = ledger_mod.refresh_ledger(output)
        if args.lb is not None:
            n = ledger_mod.set_public_lb(ledger, args.submission, args.lb)
            print(f"public LB {args.lb} recorded on {n} row(s) with submission {args.submission}")
        csv_path, md_path = ledger_mod.save_ledger(ledger, output)
    print(f"{len(ledger)} row(s) -> {csv_path}, {md_path}")
    return 0
