"""Experiment discovery and the run ledger.

:func:`scan_experiments` finds every ``<output>/**/<exp>/fold<k>/`` tree and summarises it (per-fold
best monitored score, task OOF metric, OOF/test prediction presence, experiment-level metric).
The ledger (``output/ledger.csv`` + ``output/ledger.md``) holds one row per experiment run, keyed
by (experiment, config_hash): rows are upserted, never duplicated.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from kagglekit.io import file_lock, load_json, save_csv, write_text
from kagglekit.paths import project_root
from kagglekit.report.markdown import markdown_table

FOLD_DIR = re.compile(r"^fold(\d+)$")
SKIP_DIRS = {"checkpoints", "oof", "test", "oof_merged", "members", ".git", "__pycache__"}
MAX_DEPTH = 5
# Task metrics, first match wins: segmentation, MABe pairs, behaviour grouped, multilabel.
FOLD_METRIC_KEYS = ("oof_miou", "fold_mabe_score_in_fold_thresholds", "f1_macro", "mAP")
EXP_METRIC_KEYS = ("oof_miou", "cv_mabe_score", "f1_macro", "mAP")
LEDGER_COLUMNS = [
    "experiment", "config_hash", "folds_done", "n_folds", "git_commit", "git_dirty",
    "cv_metric", "cv_folds", "cv_mean", "cv_oof", "public_lb", "oof_path", "submission",
    "submitted_at", "message", "updated_at",
]
LEDGER_MD_COLUMNS = [
    "experiment", "config_hash", "folds_done", "git_commit", "git_dirty", "cv_metric",
    "cv_mean", "cv_oof", "public_lb", "submission", "submitted_at", "message",
]


@dataclass
class FoldInfo:
    fold: int
    done: bool
    monitor: str | None = None
    best: float | None = None
    oof_metric: str | None = None
    oof_value: float | None = None
    has_oof: bool = False
    has_test: bool = False
    config_hash: str | None = None
    started: bool = False  # config.json written: training (or stopped before its metrics)

    @property
    def state(self) -> str:
        return "done" if self.done else ("running" if self.started else "missing")


@dataclass
class ExperimentInfo:
    name: str
    path: Path
    n_folds: int | None
    folds: list[FoldInfo] = field(default_factory=list)
    exp_metric: str | None = None
    exp_value: float | None = None
    submission: str | None = None
    oof_path: str | None = None

    @property
    def done_folds(self) -> list[FoldInfo]:
        return [f for f in self.folds if f.done]

    @property
    def missing_folds(self) -> list[int]:
        present = {f.fold for f in self.done_folds}
        expected = range(self.n_folds) if self.n_folds else sorted(f.fold for f in self.folds)
        return [k for k in expected if k not in present]

    @property
    def config_hash(self) -> str:
        hashes = sorted({f.config_hash for f in self.folds if f.config_hash})
        return "+".join(hashes)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(float(value)) else float(value)


def _task_metric(metrics: dict, keys: tuple[str, ...]) -> tuple[str | None, float | None]:
    """The task's own metric: ``metric`` + ``cv`` (experiment) / ``score`` (fold) as the Task
    contract writes them; outputs written before it: the first known key, then multilabel
    ``versions[final].mAP``."""
    if isinstance(metrics.get("metric"), str):
        for key in ("cv", "score"):
            if _number(metrics.get(key)) is not None:
                return metrics["metric"], _number(metrics[key])
    for key in keys:
        if _number(metrics.get(key)) is not None:
            return key, _number(metrics[key])
    versions = metrics.get("versions")
    if isinstance(versions, dict) and versions:
        final = metrics.get("final") if metrics.get("final") in versions else next(iter(versions))
        value = _number((versions.get(final) or {}).get("mAP"))
        if value is not None:
            return f"mAP({final})", value
    return None, None


def _best_score(metrics: dict, monitor: str | None) -> tuple[str | None, float | None]:
    if monitor and _number(metrics.get(f"best_{monitor}")) is not None:
        return monitor, _number(metrics[f"best_{monitor}"])
    for key, value in metrics.items():
        if key.startswith("best_") and key not in ("best_epoch", "best_temperature") and _number(value) is not None:
            return key[len("best_"):], _number(value)
    return monitor, None


def read_fold(fold_dir: Path, fold: int) -> tuple[FoldInfo, int | None]:
    """Summary of one ``fold<k>/`` directory and the ``n_folds`` its config declares."""
    config = load_json(fold_dir / "config.json") if (fold_dir / "config.json").is_file() else {}
    info = FoldInfo(fold=fold, done=(fold_dir / "metrics.json").is_file(), started=bool(config),
                    monitor=config.get("monitor"), config_hash=config.get("config_hash"),
                    has_oof=(fold_dir / "oof" / "manifest.json").is_file(),
                    has_test=(fold_dir / "test" / "manifest.json").is_file())
    if info.done:
        metrics = load_json(fold_dir / "metrics.json")
        info.monitor, info.best = _best_score(metrics, info.monitor)
        info.oof_metric, info.oof_value = _task_metric(metrics, FOLD_METRIC_KEYS)
    n_folds = config.get("n_folds")
    return info, (int(n_folds) if isinstance(n_folds, int) else None)


def read_experiment(exp_dir: Path, name: str) -> ExperimentInfo:
    folds, declared = [], []
    for child in sorted(exp_dir.iterdir()):
        match = FOLD_DIR.match(child.name)
        if child.is_dir() and match:
            info, n_folds = read_fold(child, int(match.group(1)))
            folds.append(info)
            declared += [n_folds] if n_folds else []
    exp = ExperimentInfo(name=name, path=exp_dir, n_folds=max(declared) if declared else None,
                         folds=sorted(folds, key=lambda f: f.fold))
    if (exp_dir / "metrics.json").is_file():
        metrics = load_json(exp_dir / "metrics.json")
        exp.exp_metric, exp.exp_value = _task_metric(metrics, EXP_METRIC_KEYS)
        exp.submission = metrics.get("submission")
        exp.oof_path = metrics.get("oof_path")
    if exp.oof_path is None and (exp_dir / "oof_merged").is_dir():
        exp.oof_path = str(exp_dir / "oof_merged")
    return exp


def _experiment_dirs(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        if any(FOLD_DIR.match(d) for d in dirnames):
            found.append(here)
        dirnames[:] = [] if depth >= MAX_DEPTH else sorted(
            d for d in dirnames if d not in SKIP_DIRS and not FOLD_DIR.match(d))
    return found


def scan_experiments(output: str | os.PathLike, name: str | None = None) -> list[ExperimentInfo]:
    """Every experiment under ``output`` (name = path relative to it, e.g. ``demo/exp093_5``).

    ``name`` keeps experiments whose relative path or last component equals it.
    """
    root = Path(output)
    if not root.is_dir():
        raise FileNotFoundError(f"output folder {root} not found; pass --output <folder with experiments>")
    exps = [read_experiment(d, d.relative_to(root).as_posix()) for d in _experiment_dirs(root)]
    if name is not None:
        exps = [e for e in exps if name in (e.name, e.path.name)]
    return exps


# --------------------------------------------------------------------------- git
def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(cwd: str | os.PathLike | None = None) -> tuple[str, str]:
    """(commit, dirty) where dirty is ``yes``/``no``; ``("unknown", "unknown")`` without git."""
    where = Path(cwd) if cwd is not None else project_root()
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return "unknown", "unknown"
    status = _git(["status", "--porcelain"], where)
    dirty = "unknown" if status is None else ("yes" if status.strip() else "no")
    return commit.strip(), dirty


# --------------------------------------------------------------------------- ledger rows
def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def experiment_row(exp: ExperimentInfo, git: tuple[str, str]) -> dict[str, str]:
    """Ledger row of one experiment; CV per fold is the task OOF metric (else the best monitor)."""
    scores = {f.fold: (f.oof_value if f.oof_value is not None else f.best) for f in exp.done_folds}
    scores = {k: v for k, v in scores.items() if v is not None}
    metric = next((f.oof_metric or f.monitor for f in exp.done_folds if f.oof_metric or f.monitor), "")
    mean = sum(scores.values()) / len(scores) if scores else None
    return {
        "experiment": exp.name, "config_hash": exp.config_hash,
        "folds_done": str(len(exp.done_folds)), "n_folds": str(exp.n_folds or ""),
        "git_commit": git[0], "git_dirty": git[1], "cv_metric": metric or "",
        "cv_folds": ";".join(f"{k}:{v:.4f}" for k, v in sorted(scores.items())),
        "cv_mean": "" if mean is None else f"{mean:.4f}",
        "cv_oof": "" if exp.exp_value is None else f"{exp.exp_value:.4f}",
        "oof_path": exp.oof_path or "", "submission": exp.submission or "", "updated_at": now(),
    }


def ensemble_rows(output: Path, git: tuple[str, str]) -> list[dict[str, str]]:
    """One ledger row per finished ensemble (``<output>/**/ensemble/<name>/weights.json``)."""
    rows = []
    for path in sorted(output.rglob("ensemble/*/weights.json")):
        summary = load_json(path)
        cv = _number(summary.get("cv", summary.get("blend_oof_score")))
        rows.append({"experiment": path.parent.relative_to(output).as_posix(), "config_hash": "",
                     "folds_done": "", "n_folds": "", "git_commit": git[0], "git_dirty": git[1],
                     "cv_metric": str(summary.get("metric", "")), "cv_folds": "",
                     "cv_mean": "", "cv_oof": "" if cv is None else f"{cv:.4f}", "oof_path": "",
                     "submission": display_path(summary["submission"]) if summary.get("submission") else "",
                     "updated_at": now()})
    return rows


def load_ledger(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=LEDGER_COLUMNS)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path} is not a readable ledger CSV ({exc}); fix or delete it") from None
    for col in LEDGER_COLUMNS:
        if col not in frame.columns:
            frame[col] = ""
    return frame


def upsert(ledger: pd.DataFrame, row: dict[str, str]) -> pd.DataFrame:
    """Insert ``row`` or update the row with the same (experiment, config_hash).

    Empty values never overwrite filled ones (a rescan keeps the recorded submission / LB).
    """
    key = (ledger["experiment"] == row["experiment"]) & (ledger["config_hash"] == row.get("config_hash", ""))
    if not key.any():
        new = {col: row.get(col, "") for col in ledger.columns}
        return pd.concat([ledger, pd.DataFrame([new], dtype=str)], ignore_index=True)
    idx = ledger.index[key][0]
    for col, value in row.items():
        if value not in ("", None):
            ledger.loc[idx, col] = str(value)
    return ledger


def same_file(a: str, b: str) -> bool:
    """Paths equal after resolving relative ones against the project root."""
    if not a or not b:
        return False
    root = project_root()
    resolve = lambda p: (Path(p) if Path(p).is_absolute() else root / p).resolve()  # noqa: E731
    return resolve(a) == resolve(b)


def save_ledger(ledger: pd.DataFrame, output: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<output>/ledger.csv`` and the rendered ``<output>/ledger.md``."""
    output = Path(output)
    csv_path = save_csv(output / "ledger.csv", ledger[LEDGER_COLUMNS + [c for c in ledger.columns if c not in LEDGER_COLUMNS]])
    shown = ledger[LEDGER_MD_COLUMNS].copy()
    shown["git_commit"] = shown["git_commit"].str.slice(0, 10)
    body = markdown_table(shown) if len(shown) else "(no experiments yet)\n"
    md = "# Ledger: CV vs public LB\n\n" + body
    return csv_path, write_text(output / "ledger.md", md)


# --------------------------------------------------------------------------- ledger operations
def ledger_lock(output: str | os.PathLike) -> Any:
    """Hold this around load → change → save of ``<output>/ledger.csv``: two commands (say a
    `submit` on one machine and a `ledger --lb` on another) would otherwise each save their own
    copy and the slower one would drop the other's row."""
    return file_lock(Path(output) / ".ledger.lock")


def refresh_ledger(output: str | os.PathLike, git: tuple[str, str] | None = None) -> pd.DataFrame:
    """The ledger at ``<output>/ledger.csv`` with every experiment found under ``output`` upserted."""
    ledger = load_ledger(Path(output) / "ledger.csv")
    git = git or git_state()
    if Path(output).is_dir():
        for exp in scan_experiments(output):
            ledger = upsert(ledger, experiment_row(exp, git))
        for row in ensemble_rows(Path(output), git):
            ledger = upsert(ledger, row)
    return ledger


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the project root when it lies inside it (how metrics.json stores it)."""
    full = Path(path).resolve()
    try:
        return full.relative_to(project_root()).as_posix()
    except ValueError:
        return str(full)


def set_public_lb(ledger: pd.DataFrame, submission: str, score: float) -> int:
    """Fill ``public_lb`` of the rows whose submission is ``submission``; returns how many.

    Raises ValueError naming the known submissions when none matches.
    """
    hits = [i for i, s in ledger["submission"].items() if same_file(s, submission)]
    if not hits:
        known = sorted({s for s in ledger["submission"] if s}) or ["(none)"]
        raise ValueError(f"no ledger row has submission {submission}; known submissions: "
                         f"{', '.join(known)}. Pass one of them to --submission, or submit the file "
                         "with `kagglekit submit` first")
    for i in hits:
        ledger.loc[i, ["public_lb", "updated_at"]] = [f"{float(score):.5f}", now()]
    return len(hits)


def record_submission(ledger: pd.DataFrame, submission: str, message: str,
                      git: tuple[str, str] | None = None) -> pd.DataFrame:
    """Mark rows whose submission matches as sent (time + message); a new row when none does."""
    when = now()
    hits = [i for i, s in ledger["submission"].items() if same_file(s, submission)]
    for i in hits:
        ledger.loc[i, ["submitted_at", "message", "updated_at"]] = [when, message, when]
    if hits:
        return ledger
    git = git or git_state()
    row = {"experiment": Path(submission).stem, "config_hash": "", "submission": display_path(submission),
           "submitted_at": when, "message": message, "git_commit": git[0], "git_dirty": git[1],
           "updated_at": when}
    return upsert(ledger, row)
