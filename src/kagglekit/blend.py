"""The ensemble edge: read members' OOF from the prediction store (optionally re-predicting them
from their checkpoints with the ensemble's own TTA), search blend weights on OOF mIoU, write
``output/ensemble/<name>/weights.json`` + report, and the validated blended submission.

The weight search itself lives in :mod:`kagglekit.ensemble` (arrays in, weights out).
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from kagglekit import paths
from kagglekit.config import ConfigError, from_dict
from kagglekit.ensemble import SegmentationBlendObjective, search_weights
from kagglekit.io import file_lock, load_json, save_json
from kagglekit.oof import OOFError, StoredPredictions, iter_test_mean, merged_oof

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
    from kagglekit.tasks import CONFIGS
    path = root / exp / "fold0" / "config.json"
    if not path.exists():
        raise OOFError(f"{path} not found: train the member first (python exp/{exp}.py --fold all)")
    data = load_json(path)
    if data.get("task") not in CONFIGS:
        raise ConfigError(f"{path}: task {data.get('task')!r} unknown; use one of {sorted(CONFIGS)}")
    return from_dict(CONFIGS[data["task"]](), data)


def repredict_member(cfg: EnsembleConfig, member_cfg: Any, src: Path, dst: Path) -> Path:
    """Re-run each fold's best checkpoint with the ensemble's TTA into ``dst/fold<k>/{oof,test}``."""
    from kagglekit.engine.checkpoint import load_checkpoint
    from kagglekit.runner import build_task
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


def check_aligned(names: Sequence[str], stores: Sequence[StoredPredictions]) -> None:
    first = stores[0]
    for name, store in zip(names[1:], stores[1:]):
        if store.ids != first.ids:
            raise OOFError(f"OOF ids of {name} differ from {names[0]} (different folds.csv or missing rows); "
                           "members must be trained on the same input/<comp>/folds.csv")
        if store.probs.shape != first.probs.shape:
            raise OOFError(f"OOF shape of {name} {store.probs.shape} differs from {names[0]} {first.probs.shape}; "
                           "use the same oof_scale and classes")


def blended_test_chunks(sources: Sequence[Path], weights: np.ndarray, n_folds: int) -> Iterator[tuple[list[str], np.ndarray]]:
    """Σ wᵢ · (fold-mean test probabilities of member i), chunk by chunk."""
    iterators = [iter_test_mean(src, n_folds) for src in sources]
    for chunks in zip(*iterators):
        ids = chunks[0][0]
        if any(c[0] != ids for c in chunks[1:]):
            raise OOFError("members' test predictions list different ids; re-run their test predictions")
        yield ids, sum(w * c[1] for w, c in zip(weights, chunks))


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite or choose another --name")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run_ensemble(cfg: EnsembleConfig, overwrite: bool = False) -> dict[str, Any]:
    from kagglekit.runner import build_task
    from kagglekit.tasks.segmentation.finish import write_segmentation_submission
    from kagglekit.tasks.segmentation.task import majority_class_miou
    if len(cfg.members) < 2:
        raise ConfigError("an ensemble needs at least two members (--exps A B ...)")
    if cfg.method not in ("slsqp", "greedy"):
        raise ConfigError(f"method {cfg.method!r} unknown; use slsqp or greedy")
    root = Path(cfg.output_dir or paths.output_root())
    wait_for_members(root, cfg.members, cfg.wait_seconds)
    out = root / "ensemble" / cfg.name
    prepare_out_dir(out, overwrite)
    configs = [member_config(root, m) for m in cfg.members]
    if {c.task for c in configs} == {"behavior"}:
        return run_behavior_ensemble(cfg, configs, root, out)
    if {c.task for c in configs} == {"detection"}:
        return run_detection_ensemble(cfg, configs, root, out)
    if len({c.task for c in configs}) > 1:
        raise ConfigError(f"members mix tasks {sorted({c.task for c in configs})}; ensemble one task at a time")
    sources = [repredict_member(cfg, c, root / m, out / "members" / m) if cfg.tta_scales else root / m
               for m, c in zip(cfg.members, configs)]
    task = build_task(configs[0])
    order = task.folds()["id"].astype(str).tolist()
    stores = [merged_oof(src, order, c.n_folds) for src, c in zip(sources, configs)]
    check_aligned(cfg.members, stores)
    if stores[0].targets is None:
        raise OOFError(f"{sources[0]}: OOF targets missing; re-run the member's folds")
    objective = SegmentationBlendObjective([s.probs for s in stores], stores[0].targets, configs[0].num_classes,
                                           ignore_index=255, max_pixels_per_image=cfg.max_pixels_per_image or None,
                                           seed=cfg.seed)
    result = search_weights(objective, len(stores), cfg.method, final_score_fn=objective.full_score)
    summary = {"name": cfg.name, "members": list(cfg.members), "weights": [float(w) for w in result.weights],
               "member_oof_miou": dict(zip(cfg.members, map(float, result.member_scores))),
               "blend_oof_miou": float(result.score), "method": cfg.method, "metric": "mIoU",
               "member_oof_score": dict(zip(cfg.members, map(float, result.member_scores))),
               "blend_oof_score": float(result.score),
               "chance_miou": majority_class_miou(objective.confusion(result.weights)),
               "objective_evaluations": int(objective.n_evals), "search_history": [float(h) for h in result.history],
               "tta_scales": list(cfg.tta_scales), "config": dataclasses.asdict(cfg)}
    if all(c.predict_test for c in configs):
        sub = Path(cfg.submissions_dir or paths.submissions_root()) / f"{cfg.name}.csv"
        write_segmentation_submission(blended_test_chunks(sources, result.weights, configs[0].n_folds),
                                      tuple(stores[0].manifest.orig_hw), task.root / "sample_submission.csv", sub)
        summary["submission"] = str(sub)
    summary["reports"] = [str(root / m / "report.md") for m in cfg.members] + [str(out / "report.md")]
    save_json(out / "weights.json", summary)
    write_ensemble_report(out, summary)
    return summary


def save_summary(cfg: EnsembleConfig, root: Path, out: Path, result: dict[str, Any], metric: str) -> dict[str, Any]:
    """``weights.json`` + report of a task-specific blend (``result`` holds weights and scores)."""
    summary = {"name": cfg.name, "members": list(cfg.members), "method": cfg.method, **result,
               "metric": metric, "member_oof_score": dict(zip(cfg.members, result["member_oof_score"])),
               "reports": [str(root / m / "report.md") for m in cfg.members] + [str(out / "report.md")]}
    save_json(out / "weights.json", summary)
    write_ensemble_report(out, summary)
    return summary


def run_behavior_ensemble(cfg: EnsembleConfig, configs: list[Any], root: Path, out: Path) -> dict[str, Any]:
    """MABe pairs-view members: weights on the official score of the blended OOF (see
    :mod:`kagglekit.tasks.behavior.blend`)."""
    from kagglekit.runner import build_task
    from kagglekit.tasks.behavior.blend import blend_pairs
    if any(c.view != "pairs" for c in configs):
        raise ConfigError("behaviour ensembles blend competition-view (view=pairs) experiments")
    tasks = [build_task(c) for c in configs]
    sub = Path(cfg.submissions_dir or paths.submissions_root()) / f"{cfg.name}.csv"
    result = blend_pairs(tasks, [root / m for m in cfg.members], cfg.method, sub)
    return save_summary(cfg, root, out, result, "MABe score")


def run_detection_ensemble(cfg: EnsembleConfig, configs: list[Any], root: Path, out: Path) -> dict[str, Any]:
    """Detection members: WBF weights searched on COCO mAP of the fused OOF detections (see
    :mod:`kagglekit.tasks.detection.blend`); fused val/test ``coco_instances_results.json``."""
    from kagglekit.runner import build_task
    from kagglekit.tasks.detection.blend import blend_detections
    tasks = [build_task(c) for c in configs]
    result = blend_detections(tasks, [root / m for m in cfg.members], cfg.method)
    for split, dets, gt in (("val", result.pop("oof_detections"), result.pop("gt")),
                            ("test", result.pop("test_detections", None), result.pop("test_gt", None))):
        if dets is not None:
            result[f"{split}_metrics"] = tasks[0].evaluate_split(dets, gt, out / "evaluation" / split)
    return save_summary(cfg, root, out, result, "bbox mAP (%) after WBF")


def write_ensemble_report(out: Path, summary: dict[str, Any]) -> Path:
    from kagglekit.io import write_text
    from kagglekit.report.markdown import markdown_kv, markdown_table
    metric = f"OOF {summary['metric']}"
    rows = [{"Member": m, "Weight": w, metric: summary["member_oof_score"][m]}
            for m, w in zip(summary["members"], summary["weights"])]
    rows.append({"Member": "blend", "Weight": sum(summary["weights"]), metric: summary["blend_oof_score"]})
    text = "\n\n".join([
        f"# {summary['name']} Ensemble Report",
        "## Ensemble Configuration\n" + markdown_kv({
            "Models": ", ".join(summary["members"]),
            "Optimization": f"{metric} maximisation of the blend Σ wᵢ pᵢ, method {summary['method']}, "
                            f"{summary['objective_evaluations']} objective evaluations",
            "TTA": (f"re-predicted with scales {summary['tta_scales']} × flip" if summary.get("tta_scales")
                    else "members' stored OOF/test TTA"),
            "Submission": f"`{summary.get('submission', 'not written')}`"}),
        "## Results Summary\n" + markdown_table(rows, bold_row=len(rows) - 1),
        "## Notes\n- Segmentation: the search is scored on a fixed pixel subsample; reported scores use all OOF pixels."
        "\n- Behaviour: each evaluation re-tunes the per-action thresholds on the blend and scores OOF intervals with the official metric."
        "\n- Detection: members' boxes are fused per image by weighted boxes fusion with the weights; a member's own score is its WBF-fused boxes."
        "\n- The blend is never worse than uniform weights or the best single member on OOF (both are evaluated).",
    ])
    return write_text(out / "report.md", text + "\n")
