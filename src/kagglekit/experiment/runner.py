"""The edge between configs and the library: builds the task, guards the output folder, maps the
config to :class:`FitSettings`, and writes the per-fold artefacts (config snapshot, history,
checkpoints, metrics, report)."""
from __future__ import annotations

import dataclasses
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from kagglekit import paths
from kagglekit.config import ConfigError, ExperimentConfig, config_differences, save_config
from kagglekit.engine import distributed as dist_utils
from kagglekit.engine.fit import FitSettings, fit
from kagglekit.engine.seed import seed_everything
from kagglekit.experiment import finish
from kagglekit.experiment.contract import Task
from kagglekit.io import file_lock, load_json, remove_stale_temps, write_text
from kagglekit.experiment.metrics_file import save_metrics

log = logging.getLogger("kagglekit")


def build_task(cfg: ExperimentConfig) -> Task:
    from kagglekit.tasks import TASKS  # late import: tasks import heavy libraries
    if cfg.task not in TASKS:
        raise ConfigError(f"task {cfg.task!r} unknown; use one of {sorted(TASKS)}")
    return TASKS[cfg.task](cfg)


def prepare_demo(task: Task) -> None:
    """The task's demo data, made once: by rank 0 under torchrun (the other ranks wait, then find
    it) and by one of several processes sharing ``input/`` (a file lock)."""
    dist_utils.init_from_env()
    with dist_utils.main_first(), file_lock(paths.input_root() / ".demo.lock"):
        task.prepare_demo()


def exp_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.output_dir or paths.output_root()) / cfg.name


def fit_settings(cfg: ExperimentConfig) -> FitSettings:
    names = {f.name for f in dataclasses.fields(FitSettings)}
    return FitSettings(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in names})


def guard_fold_dir(fold_dir: Path, cfg: ExperimentConfig, resume: bool, overwrite: bool) -> str:
    """Collective (every rank calls it): rank 0 alone decides what happens to ``fold_dir`` and
    claims it by writing ``config.json``; the decision ('fresh', 'resume' or 'overwrite') or the
    refusal reaches every rank. Deciding on each rank raced with rank 0's write: a slower rank saw
    the folder it was about to train into as a finished run (issue 17)."""
    return dist_utils.run_on_main(lambda: claim_fold_dir(fold_dir, cfg, resume, overwrite))


# Where training starts from: a resumed fold continues from its own checkpoint, so a changed
# ``pretrained`` / ``init_weights`` (e.g. an experiment's default becoming a hub tag) never blocks
# ``--resume`` and is not even resolved (no download, no cache needed) when a checkpoint exists.
INITIAL_WEIGHTS = ("pretrained", "init_weights")
# How a run executes, not what it computes (items are seeded per (seed, epoch, index), so the worker
# count never changes a batch): a resumed fold may use another machine's settings.
RUNTIME_SETTINGS = ("num_workers", "persistent_workers", "prefetch_factor", "log_every", "torch_compile",
                    "compile_mode", "grad_checkpointing", "cudnn_benchmark")


def claim_fold_dir(fold_dir: Path, cfg: ExperimentConfig, resume: bool, overwrite: bool) -> str:
    """Refuse to touch an existing fold output unless --resume (same config) or --overwrite; then
    write the config snapshot. One process only (rank 0); a fresh claim is exclusive, so two
    processes (machines sharing output/) starting the same fold cannot both train it."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite conflict: --overwrite deletes the fold that --resume would "
                          "continue; pass one of them")
    exists = (fold_dir / "config.json").exists() or (fold_dir / "checkpoints").exists()
    if exists and overwrite:
        log.warning("--overwrite: removing %s", fold_dir)
        shutil.rmtree(fold_dir)
    elif exists and not resume:
        raise FileExistsError(f"{fold_dir} already exists; pass --resume to continue it or --overwrite to start again")
    elif exists:
        _check_resumable(fold_dir, cfg)
        save_config(cfg, fold_dir / "config.json")
        return "resume"
    try:
        save_config(cfg, fold_dir / "config.json", exclusive=True)
    except FileExistsError:
        raise FileExistsError(f"{fold_dir} was just started by another process sharing this output/; "
                              "run a different --fold here") from None
    return "overwrite" if exists else "fresh"


def _check_resumable(fold_dir: Path, cfg: ExperimentConfig) -> None:
    for path in remove_stale_temps(fold_dir):
        log.warning("--resume: removed %s left by an interrupted write", path)
    if not (fold_dir / "config.json").exists():
        return
    diffs = [d for d in config_differences(cfg, load_json(fold_dir / "config.json")) if d not in INITIAL_WEIGHTS + RUNTIME_SETTINGS]
    if diffs:
        raise ConfigError(f"--resume: {fold_dir}/config.json differs from the current config in {diffs}; "
                          "resume with the same settings or use --overwrite")


def run_fold(cfg: ExperimentConfig, fold: int, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    if not 0 <= fold < cfg.n_folds:
        raise ConfigError(f"--fold {fold} but n_folds={cfg.n_folds} (valid: 0..{cfg.n_folds - 1} or all)")
    dist_utils.init_from_env()
    seed_everything(cfg.seed + fold, cfg.deterministic, cfg.cudnn_benchmark)
    task = build_task(cfg)
    fold_dir = exp_dir(cfg) / f"fold{fold}"
    dist_utils.run_on_main(lambda: preflight_fold(task, cfg, fold, fold_dir))  # before anything is written
    decision = guard_fold_dir(fold_dir, cfg, resume, overwrite)
    try:
        return _train_fold(task, cfg, fold, fold_dir, resume)
    except BaseException:  # also KeyboardInterrupt / Interrupted (SIGINT, SIGTERM)
        if decision in ("fresh", "overwrite") and dist_utils.is_main():  # a resumed fold is never removed
            discard_unstarted_fold(fold_dir)
        raise


def preflight_fold(task: Task, cfg: ExperimentConfig, fold: int, fold_dir: Path) -> None:
    """The task's pass over the files fold ``fold`` will read; every problem in one ValueError
    (count + one line per file: what is wrong, how to fix it). Rank 0 only, before the fold folder
    is claimed, so bad input leaves no trace in ``output/``."""
    problems = task.preflight(fold)
    if problems:
        from kagglekit.experiment.preflight import preflight_message
        raise ValueError(preflight_message(problems, f"{cfg.name} fold {fold}", fold_dir))


def discard_unstarted_fold(fold_dir: Path) -> None:
    """A fold claimed by this run ('fresh' / 'overwrite') that failed before its first checkpoint
    holds nothing to resume: remove it (only it), so the next plain run is not refused."""
    if any((fold_dir / "checkpoints").glob("*.pt")):
        return
    log.warning("removing %s: the run stopped before its first checkpoint", fold_dir)
    shutil.rmtree(fold_dir, ignore_errors=True)


def _train_fold(task: Task, cfg: ExperimentConfig, fold: int, fold_dir: Path, resume: bool) -> dict[str, Any]:
    with dist_utils.main_first():  # rank 0 makes folds.csv / converted annotations; the others read them
        train_ds, valid_ds = task.fold_datasets(fold)
    continuing = resume and any((fold_dir / "checkpoints" / n).exists() for n in ("last.pt", "last_prev.pt"))
    with captured_log("kagglekit") as weight_lines:  # the loaders' load reports / random-init notes
        model = task.build_model(initial_weights=not continuing)
    if continuing:
        weight_lines = ["continued from the fold's checkpoint (pretrained / init_weights not loaded again)"]
    result = fit(model, train_ds, valid_ds, lambda: task.make_evaluator(valid_ds), fit_settings(cfg),
                 fold_dir / "checkpoints", fold_dir / "history.csv", resume=resume)
    metrics: dict[str, Any] = {"experiment": cfg.name, "fold": fold, "best_epoch": result.best_epoch,
                               f"best_{cfg.monitor}": result.best_score, "stopped_early": result.stopped_early,
                               "initial_weights": weight_lines}
    if dist_utils.is_main():
        metrics.update(task.finalize(result.eval_model, fold, fold_dir))
        metrics.update(metric=task.metric.name, mode=task.metric.mode, score=metrics.get(task.metric.fold_key))
        save_metrics(fold_dir / "metrics.json", metrics)  # large arrays beside it (.npy + .csv)
        task.report_fold(fold_dir, result.history, metrics)
        append_report_section(fold_dir / "report.md", "Initial weights", weight_lines or ["(nothing logged)"])
    dist_utils.barrier()
    return metrics


@contextmanager
def captured_log(name: str, level: int = logging.INFO) -> Iterator[list[str]]:
    """The messages logger ``name`` (and its children) emit at ``level`` or above while inside."""
    lines: list[str] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    old_level = logger.level
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def append_report_section(path: Path, title: str, lines: list[str]) -> None:
    """``## title`` with one bullet per line at the end of a fold's report (written atomically)."""
    text = path.read_text() if path.exists() else ""
    write_text(path, text.rstrip("\n") + f"\n\n## {title}\n" + "".join(f"- {line}\n" for line in lines))


def finish_experiment(cfg: ExperimentConfig) -> dict[str, Any] | None:
    """After the last fold: experiment-level OOF metrics, submission and report (main rank only)."""
    if not dist_utils.is_main():
        return None
    with file_lock(exp_dir(cfg) / ".finish.lock"):  # machines finishing their last folds at once take turns
        return finish.finish_experiment(build_task(cfg), exp_dir(cfg))
