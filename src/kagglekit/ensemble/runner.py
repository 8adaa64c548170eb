"""The ensemble edge: read members' OOF from the prediction store (optionally re-predicting them
from their checkpoints with the ensemble's own TTA), search blend weights on OOF mIoU, write
``output/ensemble/<name>/weights.json`` + report, and the validated blended submission.

The weight search itself lives in :mod:`kagglekit.ensemble.search` (arrays in, weights out).
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kagglekit import paths
from kagglekit.config import ConfigError
from kagglekit.ensemble.search import search_weights
from kagglekit.io import file_lock, save_json
from kagglekit.store.arrays import OOFError

log = logging.getLogger("kagglekit.ensemble")


@dataclass(frozen=True)
class EnsembleConfig:
    name: str = "ensemble"
    members: tuple[str, ...] = ()
    method: str = "slsqp"  # slsqp | greedy
    output_dir: str = ""  # experiments' root (default output/)
    submissions_dir: str = ""
    tta_scales: tuple[float, ...] = ()  # empty: use the members' stored OOF as they are
    tta_flip: bool = True
    infer_h: int = 0  # 0: each member's own inference size
    infer_w: int = 0
    max_pixels_per_image: int = 4096  # search on a fixed pixel subsample; final score on all pixels
    seed: int = 0
    wait_seconds: int = 0  # folds trained elsewhere: wait until every member's experiment summary exists

    def demo(self) -> "EnsembleConfig":
        return replace(self, output_dir="output/demo", submissions_dir="submissions/demo", infer_h=0, infer_w=0)


def member_config(root: Path, exp: str) -> Any:
    """The resolved config a member was trained with (``output/<exp>/fold0/config.json``)."""
    from kagglekit.experiment.lookup import saved_config
    return saved_config(root, exp)


def repredict_member(cfg: EnsembleConfig, member_cfg: Any, src: Path, dst: Path) -> Path:
    """Re-run each fold's best checkpoint with the ensemble's TTA into ``dst/fold<k>/{oof,test}``."""
    from kagglekit.engine.checkpoint import load_checkpoint
    from kagglekit.experiment.runner import build_task
    changes: dict[str, Any] = {"tta_scales": cfg.tta_scales, "tta_flip": cfg.tta_flip}
    if cfg.infer_h and cfg.infer_w:
        changes.update(infer_h=cfg.infer_h, infer_w=cfg.infer_w)
    task = build_task(replace(member_cfg, **changes))
    for fold in range(member_cfg.n_folds):
        out = dst / f"fold{fold}"
        if (out / "metrics.json").exists():
            continue
        model = task.build_model()
        model.load_state_dict(load_checkpoint(src / f"fold{fold}" / "checkpoints" / "best.pt")["model"])
        log.info("re-predicting %s fold %d with TTA %s", member_cfg.name, fold, cfg.tta_scales)
        save_json(out / "metrics.json", task.finalize(model, fold, out))
    return dst


def wait_for_members(root: Path, members: Sequence[str], seconds: int, poll: float = 5.0) -> None:
    """Folds may be training on other machines into a shared output/: poll until each member's
    experiment-level ``metrics.json`` (written after its last fold) exists, or give up with the
    list of members still missing. ``seconds=0`` checks once (the missing-fold errors come later)."""
    deadline = time.monotonic() + seconds
    while seconds > 0:
        missing = [m for m in members if not (root / m / "metrics.json").exists()]
        if not missing:
            for member in members:  # an epilogue still writing (merged OOF, submission) holds this lock
                with file_lock(root / member / ".finish.lock"):
                    pass
            return
        if time.monotonic() > deadline:
            raise OOFError(f"waited {seconds}s; experiments {missing} have not finished all folds in {root}")
        log.info("waiting for %s to finish all folds", missing)
        time.sleep(poll)


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite or choose another --name")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def member_tasks(cfg: EnsembleConfig, root: Path, out: Path) -> tuple[list[Any], list[Path]]:
    """Each member's task (built from its saved config) and where its predictions are: its own
    folder, or ``out/members/<exp>`` when re-predicted with the ensemble's TTA."""
    from kagglekit.experiment.runner import build_task
    configs = [member_config(root, m) for m in cfg.members]
    kinds = sorted({c.task for c in configs})
    if len(kinds) > 1:
        raise ConfigError(f"members mix tasks {kinds}; ensemble one task at a time")
    sources = [repredict_member(cfg, c, root / m, out / "members" / m) if cfg.tta_scales else root / m
               for m, c in zip(cfg.members, configs)]
    return [build_task(c) for c in configs], sources


def run_ensemble(cfg: EnsembleConfig, overwrite: bool = False) -> dict[str, Any]:
    """Weights searched on the task's blend objective (the task's metric of the blended OOF),
    ``weights.json`` + report, the validated blended submission, and its row in
    ``<output>/ledger.csv``. A failed search or write leaves no ``output/ensemble/<name>/`` behind."""
    if len(cfg.members) < 2:
        raise ConfigError("an ensemble needs at least two members (--exps A B ...)")
    if cfg.method not in ("slsqp", "greedy"):
        raise ConfigError(f"method {cfg.method!r} unknown; use slsqp or greedy")
    root = Path(cfg.output_dir or paths.output_root())
    wait_for_members(root, cfg.members, cfg.wait_seconds)
    out = root / "ensemble" / cfg.name
    prepare_out_dir(out, overwrite)
    try:
        summary = search_and_write(cfg, root, out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    record_in_ledger(root)
    from kagglekit.workflow.compare import write_compare_page
    write_compare_page(root)  # the comparison page with this ensemble; never raises (a warning)
    return summary


def record_in_ledger(root: Path) -> None:
    """Upsert every experiment and ensemble under ``root`` into ``root/ledger.csv`` (+ .md)."""
    from kagglekit.workflow import ledger
    with ledger.ledger_lock(root):
        ledger.save_ledger(ledger.refresh_ledger(root), root)


def objective_for(task: Any, tasks: Sequence[Any], sources: Sequence[Path], cfg: EnsembleConfig) -> Any:
    """The task's blend objective; the pixel subsample of array objectives when the task takes one."""
    import inspect
    params = inspect.signature(task.blend_objective).parameters
    extra = {"max_pixels_per_image": cfg.max_pixels_per_image or None, "seed": cfg.seed}
    return task.blend_objective(tasks, sources, **{k: v for k, v in extra.items() if k in params})


def blend_rule(objective: Any) -> str:
    """The objective's own one-line description (its class docstring's first sentence)."""
    doc = (type(objective).__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def store_resolution(src: Path) -> dict[str, Any] | None:
    """Where a member's stored OOF lives in pixels: ``{"store_hw", "oof_scale", "orig_hw",
    "varied"}`` from fold 0's array-store manifest (images: shape (N, C, h, w)); None for
    per-row stores (classification, frames) and record stores (boxes, keypoints)."""
    from kagglekit.store.arrays import read_manifest
    try:
        manifest = read_manifest(Path(src) / "fold0" / "oof")
    except (OSError, TypeError, ValueError):
        return None
    if len(manifest.shape) < 4:
        return None
    return {"store_hw": list(manifest.shape[2:4]), "oof_scale": float(manifest.scale),
            "orig_hw": list(manifest.orig_hw), "varied": bool(manifest.orig_sizes)}


def _experiment_cv(root: Path, member: str) -> float | None:
    """The member's own CV (``output/<exp>/metrics.json`` ``cv``), None when absent."""
    from kagglekit.io import load_json
    path = root / member / "metrics.json"
    try:
        cv = load_json(path).get("cv") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return float(cv) if isinstance(cv, (int, float)) and np.isfinite(cv) else None


def member_score(metric: str, score: float, own_cv: float | None, where: dict[str, Any] | None,
                 repredicted: bool) -> dict[str, Any]:
    """A member's blend-input OOF score with where it was computed, beside the experiment's own
    CV: ``note`` = e.g. "OOF mIoU 0.0123 at the store's 240×320 (oof_scale 0.5); the
    experiment's own CV 0.0127 at full resolution (480×640)"."""
    if where is None:
        scored_at, own_at = "the stored OOF predictions", "its own evaluation"
    else:
        h, w = where["store_hw"]
        scored_at = f"the store's {h}×{w} (oof_scale {where['oof_scale']:g})"
        own_at = ("full resolution (each image's own size)" if where["varied"]
                  else "full resolution ({}×{})".format(*where["orig_hw"]))
    if repredicted:
        scored_at += ", re-predicted with the ensemble's TTA"
    note = f"OOF {metric} {score:.4f} at {scored_at}"
    if own_cv is not None:
        note += f"; the experiment's own CV {own_cv:.4f} at {own_at}"
    return {"blend_oof": score, "scored_at": scored_at, "experiment_cv": own_cv,
            "experiment_cv_at": own_at if own_cv is not None else None, "note": note}


def member_scores(cfg: EnsembleConfig, root: Path, sources: Sequence[Path], metric: str,
                  scores: Sequence[float]) -> dict[str, dict[str, Any]]:
    """:func:`member_score` of every member, by name."""
    return {m: member_score(metric, float(v), _experiment_cv(root, m), store_resolution(src),
                            Path(src) != root / m)
            for m, src, v in zip(cfg.members, sources, scores)}


def search_and_write(cfg: EnsembleConfig, root: Path, out: Path) -> dict[str, Any]:
    tasks, sources = member_tasks(cfg, root, out)
    spec = tasks[0].metric
    objective = objective_for(tasks[0], tasks, sources, cfg)
    result = search_weights(lambda w: spec.sign * objective(w), len(tasks), cfg.method,
                            final_score_fn=lambda w: spec.sign * objective.full_score(w))
    weights = np.asarray(result.weights, dtype=np.float64)
    sub = objective.write_submission(weights, Path(cfg.submissions_dir or paths.submissions_root()) / f"{cfg.name}.csv")
    if sub is not None:
        problems = tasks[0].validate_submission(sub)
        if problems:
            raise OOFError(f"blended submission {sub} is invalid: " + "; ".join(problems[:5]))
    summary = {"name": cfg.name, "task": tasks[0].cfg.task, "members": list(cfg.members), "method": cfg.method,
               "metric": spec.name, "mode": spec.mode, "weights": [float(w) for w in weights],
               "cv": spec.sign * float(result.score), "blend_oof_score": spec.sign * float(result.score),
               "member_oof_score": dict(zip(cfg.members, (spec.sign * float(v) for v in result.member_scores))),
               "member_scores": member_scores(cfg, root, sources, spec.name,
                                              [spec.sign * float(v) for v in result.member_scores]),
               "objective_evaluations": int(objective.n_evals), "search_history": [spec.sign * float(h) for h in result.history],
               "tta_scales": list(cfg.tta_scales), "blend_rule": blend_rule(objective), **objective.extras(weights, out),
               "submission": str(sub) if sub else None, "config": dataclasses.asdict(cfg),
               "reports": [str(root / m / "report.md") for m in cfg.members] + [str(out / "report.md")]}
    for detail in summary["member_scores"].values():
        log.info("member %s", detail["note"])
    write_ensemble_report(out, summary)
    save_json(out / "weights.json", summary)  # last: its presence means the ensemble is complete
    return summary


def write_ensemble_report(out: Path, summary: dict[str, Any]) -> Path:
    from kagglekit.io import write_text
    from kagglekit.report.markdown import markdown_kv, markdown_table
    metric = f"OOF {summary['metric']}"
    details = summary.get("member_scores", {})
    rows = [{"Member": m, "Weight": w, metric: summary["member_oof_score"][m],
             "Scored at": details.get(m, {}).get("scored_at", ""),
             "Experiment CV": details.get(m, {}).get("experiment_cv"),
             "Experiment CV at": details.get(m, {}).get("experiment_cv_at") or ""}
            for m, w in zip(summary["members"], summary["weights"])]
    rows.append({"Member": "blend", "Weight": sum(summary["weights"]), metric: summary["blend_oof_score"],
                 "Scored at": "the members' stores (as above)", "Experiment CV": None, "Experiment CV at": ""})
    notes = "".join(f"\n- {m}: {d['note']}." for m, d in details.items())
    text = "\n\n".join([
        f"# {summary['name']} Ensemble Report",
        "## Ensemble Configuration\n" + markdown_kv({
            "Models": ", ".join(summary["members"]),
            "Optimization": f"{metric} {'maximisation' if summary.get('mode', 'max') == 'max' else 'minimisation'} "
                            f"over the blend weights, method {summary['method']}, "
                            f"{summary['objective_evaluations']} objective evaluations",
            "TTA": (f"re-predicted with scales {summary['tta_scales']} × flip" if summary.get("tta_scales")
                    else "members' stored OOF/test TTA"),
            "Submission": f"`{summary.get('submission', 'not written')}`"}),
        "## Results Summary\n" + markdown_table(rows, bold_row=len(rows) - 1),
        "## Notes\n" + f"- Blend: {summary.get('blend_rule') or 'weighted average of the members OOF predictions'}."
        "\n- The blend is never worse than uniform weights or the best single member on OOF (both are evaluated)."
        "\n- Member scores are computed on the stored OOF predictions the blend reads, which may be smaller than "
        "the images; each experiment's own CV is shown beside them:" + notes,
    ])
    return write_text(out / "report.md", text + "\n")
