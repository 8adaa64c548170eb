"""The ensemble runner's member scores say where they were computed (issue 16): the blend scores
the members' stored OOF (segmentation: at ``oof_scale``), the experiments' own CV is at full
resolution; both numbers side by side in weights.json, the report and the printed summary."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kagglekit.ensemble.cli import print_summary
from kagglekit.ensemble.runner import EnsembleConfig, member_scores, store_resolution, write_ensemble_report
from kagglekit.store.arrays import Manifest, PredictionWriter


def _member(root: Path, name: str, shape: list[int], scale: float, orig_hw: list[int], cv: float | None) -> None:
    manifest = Manifest(name, 0, "oof", ["a", "b"], scale, "uint8", shape, orig_hw)
    with PredictionWriter(root / name / "fold0" / "oof", manifest, with_targets=False) as writer:
        writer.write([f"{i:04d}" for i in range(shape[0])], np.full(shape, 0.5, np.float32))
    if cv is not None:
        (root / name / "metrics.json").write_text(json.dumps({"metric": "mIoU", "cv": cv}))


def test_member_scores_name_the_store_resolution_beside_the_experiment_cv(tmp_path, capsys):
    _member(tmp_path, "seg_a", [2, 2, 240, 320], 0.5, [480, 640], 0.0127)
    _member(tmp_path, "cls_b", [2, 2], 1.0, [], 0.91)  # per-row store: no pixels to speak of
    _member(tmp_path, "seg_c", [2, 2, 8, 8], 0.5, [16, 16], None)  # no experiment summary (yet)
    assert store_resolution(tmp_path / "seg_a") == {"store_hw": [240, 320], "oof_scale": 0.5, "orig_hw": [480, 640],
                                                    "varied": False}
    assert store_resolution(tmp_path / "cls_b") is None and store_resolution(tmp_path / "nothing") is None
    cfg = EnsembleConfig(members=("seg_a", "cls_b", "seg_c"))
    scores = member_scores(cfg, tmp_path, [tmp_path / m for m in cfg.members], "mIoU", [0.0123, 0.9, 0.3])
    assert scores["seg_a"]["note"] == ("OOF mIoU 0.0123 at the store's 240×320 (oof_scale 0.5); "
                                       "the experiment's own CV 0.0127 at full resolution (480×640)")
    assert (scores["seg_a"]["blend_oof"], scores["seg_a"]["experiment_cv"]) == (0.0123, 0.0127)
    assert scores["cls_b"]["note"] == ("OOF mIoU 0.9000 at the stored OOF predictions; "
                                       "the experiment's own CV 0.9100 at its own evaluation")
    assert scores["seg_c"]["note"] == "OOF mIoU 0.3000 at the store's 8×8 (oof_scale 0.5)"
    repredicted = member_scores(EnsembleConfig(members=("seg_a",)), tmp_path / "elsewhere", [tmp_path / "seg_a"], "mIoU", [0.5])
    assert "re-predicted with the ensemble's TTA" in repredicted["seg_a"]["scored_at"]

    summary = {"name": "blend", "members": list(cfg.members), "weights": [0.5, 0.3, 0.2], "metric": "mIoU",
               "mode": "max", "method": "slsqp", "objective_evaluations": 7, "tta_scales": [],
               "member_oof_score": {m: s["blend_oof"] for m, s in scores.items()}, "blend_oof_score": 0.31,
               "member_scores": scores, "submission": None}
    text = write_ensemble_report(tmp_path / "out", summary).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| seg_a"))
    assert "0.0123" in row and "the store's 240×320 (oof_scale 0.5)" in row and "0.0127" in row and "480×640" in row
    assert f"- seg_a: {scores['seg_a']['note']}." in text
    print_summary({**summary, "reports": []})
    printed = capsys.readouterr().out
    assert "member seg_a" in printed and f"({scores['seg_a']['note']})" in printed


def test_old_weights_json_without_member_scores_still_reports(tmp_path):
    summary = {"name": "old", "members": ["a", "b"], "weights": [0.6, 0.4], "metric": "mIoU", "mode": "max",
               "method": "greedy", "objective_evaluations": 3, "tta_scales": [], "blend_oof_score": 0.5,
               "member_oof_score": {"a": 0.4, "b": 0.45}}
    text = write_ensemble_report(tmp_path, summary).read_text()
    assert "| a |" in text.replace("  ", " ") or "| a " in text
