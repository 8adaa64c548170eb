"""The experiment epilogue, one for every task: once every fold has finished, score the merged
OOF with the task's metric, write the test submission and the report, and last of all the
experiment-level ``metrics.json`` (its presence means "experiment complete": ``ensemble --wait``
and the ledger rely on that). A missing fold is named in the log and nothing is written."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from kagglekit.experiment.metrics_file import load_metrics, save_metrics

log = logging.getLogger("kagglekit")


def missing_folds(exp_dir: Path, n_folds: int) -> list[int]:
    """Folds ``0..n_folds-1`` without a ``fold<k>/metrics.json`` (not finished, or still running)."""
    return [k for k in range(n_folds) if not (exp_dir / f"fold{k}" / "metrics.json").exists()]


def load_fold_metrics(exp_dir: Path, n_folds: int) -> list[dict[str, Any]]:
    """``fold<k>/metrics.json`` for k = 0..n_folds-1, in fold order (arrays kept beside the JSON
    loaded as ``np.ndarray``; files with the arrays inline read as before)."""
    return [load_metrics(exp_dir / f"fold{k}" / "metrics.json") for k in range(n_folds)]


def experiment_summary(task: Any, scored: dict[str, Any], fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The one ``metrics.json`` schema: metric, mode, cv, per_fold, then the task's extras."""
    spec = task.metric
    head = {"experiment": task.cfg.name, "task": task.cfg.task, "metric": spec.name, "mode": spec.mode,
            "cv": scored["cv"], "n_folds": len(fold_metrics),
            "per_fold": [f.get(spec.fold_key) for f in fold_metrics]}
    return {**head, **{k: v for k, v in scored.items() if k not in head}}


def submission_path(cfg: Any) -> Path:
    from kagglekit import paths
    return Path(cfg.submissions_dir or paths.submissions_root()) / f"{cfg.name}.csv"


def output_root_of(exp_dir: Path, name: str) -> Path:
    """The output root holding ``exp_dir`` (``exp_dir`` minus the experiment name's path parts)."""
    parts = Path(name).parts
    if parts and len(exp_dir.parts) > len(parts) and exp_dir.parts[-len(parts):] == parts:
        return exp_dir.parents[len(parts) - 1]
    return exp_dir.parent


def refresh_comparison(task: Any, exp_dir: Path) -> None:
    """Redraw ``<output>/compare.md``; a failure only logs a warning, never fails the experiment."""
    try:
        from kagglekit.workflow.compare import write_compare_page
        write_compare_page(output_root_of(Path(exp_dir), str(getattr(task.cfg, "name", ""))))
    except Exception as exc:  # noqa: BLE001 — the experiment is complete whatever the page does
        log.warning("experiment %s: comparison page not written (%s: %s)", getattr(task.cfg, "name", exp_dir),
                    type(exc).__name__, exc)


def finish_experiment(task: Any, exp_dir: Path) -> dict[str, Any] | None:
    """Run the epilogue when all ``task.cfg.n_folds`` folds are done; None (and nothing written)
    otherwise. Returns the summary written to ``exp_dir/metrics.json``."""
    missing = missing_folds(exp_dir, task.cfg.n_folds)
    if missing:
        log.info("experiment %s: folds %s not finished yet; the experiment summary is written after the last one",
                 task.cfg.name, missing)
        return None
    fold_metrics = load_fold_metrics(exp_dir, task.cfg.n_folds)
    summary = experiment_summary(task, task.score_experiment(exp_dir, fold_metrics), fold_metrics)
    submission = task.write_submission(exp_dir, summary, submission_path(task.cfg))
    summary["submission"] = str(submission) if submission else None
    summary["report"] = str(exp_dir / "report.md")
    task.report_experiment(exp_dir, summary, fold_metrics)
    save_metrics(exp_dir / "metrics.json", summary)  # large arrays beside it (.npy + .csv)
    log.info("experiment %s: CV %s = %.5f%s", task.cfg.name, summary["metric"], summary["cv"],
             f", submission {submission}" if submission else "")
    refresh_comparison(task, exp_dir)
    return summary
