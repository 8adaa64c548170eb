"""Issue 12 acceptance: one experiment lifecycle for every task, through the Task contract only.

For each of the five tasks, on its demo data with tiny settings: two experiments on all folds,
an ensemble of them (``run_ensemble``, what ``ensemble.py`` calls), ``kagglekit validate <blend>
--exp A`` exits 0 while a copy with one id broken exits 2 naming it, and ``kagglekit ledger``
lists both experiments and the ensemble with the task's metric and CV. Plus: the epilogue runs
only when every fold is present (detection: folds 0 and 2 of 3 leave no experiment-level
metrics.json; fold 1 completes it with the right ground truth), one metrics.json schema, and no
module outside ``tasks/`` names a task in a conditional."""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from conftest import sets
from kagglekit.__main__ import main as kagglekit
from kagglekit.ensemble.runner import EnsembleConfig, run_ensemble
from kagglekit.cli import main as run_experiment

SRC = Path(__file__).resolve().parents[1] / "src" / "kagglekit"
TASK_NAMES = ("segmentation", "behavior", "behaviour", "multilabel", "detection", "keypoints")


@dataclass
class Case:
    config: str  # "module:Class"
    a: dict
    b: dict
    settings: list[str]
    id_column: str
    metric: str
    extra: list[str] = field(default_factory=list)


DET_TINY = ["backbone=resnet18", "train_min_sizes=128,160", "test_min_size=160", "max_size=256", "roi_batch_per_image=64",
            "rpn_pre_nms_top_n=300,150", "rpn_post_nms_top_n=150,100", "batch_size=2", "warmup_iters=4", "lr=0.005",
            "grad_clip=10", "score_thresh=0.01", "max_iters=8", "eval_period=8", "keep_epoch_checkpoints=0", "num_workers=0"]
CASES = {
    "segmentation": Case("kagglekit.tasks.segmentation.config:SegmentationConfig", {}, {"boundary_weight": 2.0},
                         ["n_folds=2", "epochs=1", "demo_train=8", "demo_test=2", "input_h=64", "input_w=96", "crop_h=64",
                          "crop_w=96", "infer_h=64", "infer_w=96", "tta_scales=1.0", "tta_flip=false",
                          "temperatures=1.0", "batch_size=4", "valid_batch_size=2"], "ImageId", "mIoU"),
    "behavior": Case("kagglekit.tasks.behavior.config:BehaviorConfig",
                     {"view": "pairs", "pair_features": True, "class_weights": ()},
                     {"view": "pairs", "pair_features": True, "class_weights": (), "arch": "transformer"},
                     ["epochs=1", "n_folds=2", "demo_videos=8", "demo_frames=300", "batch_size=16", "conv_channels=16,32",
                      "lstm_hidden=32", "lstm_layers=1", "infer_stride=50", "d_model=32", "n_layers=1"],
                     "video_id", "MABe score"),
    "multilabel": Case("kagglekit.tasks.multilabel.config:MultiLabelConfig", {}, {"loss": "focal"},
                       ["n_folds=2", "epochs=1", "image_size=64", "batch_size=32", "swa_n=0"], "image", "mAP"),
    "detection": Case("kagglekit.tasks.detection.config:DetectionConfig", {}, {"roi_loss": "focal"}, DET_TINY,
                      "image_id", "bbox mAP (%)"),
    "keypoints": Case("kagglekit.tasks.keypoints.config:KeypointConfig", {"use_synthetic": True},
                      {"use_synthetic": False}, ["epochs=1", "image_size=96", "max_size=160", "batch_size=4"],
                      "image_id", "OKS mAP"),
}


def _config(spec: str, name: str, fields: dict):
    import importlib
    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)(name=name, **fields)


def _break(path: Path, id_column: str, out: Path) -> Path:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[0, id_column] = "not_an_id"
    frame.to_csv(out, index=False)
    return out


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("task", sorted(CASES))
def test_two_experiments_ensemble_validate_ledger(task, in_tmp, monkeypatch, capsys):
    if task == "detection":  # the generated shapes set (fast); COCO128 is the detection demo's other source
        monkeypatch.setenv("KAGGLEKIT_SHARED", str(in_tmp / "no_shared"))
    case = CASES[task]
    names = [f"{task[:4]}_a", f"{task[:4]}_b"]
    for name, fields in zip(names, (case.a, case.b)):
        assert run_experiment(_config(case.config, name, fields), ["--demo", "--fold", "all", *sets(case.settings)]) == 0
        summary = json.loads((in_tmp / "output/demo" / name / "metrics.json").read_text())
        assert summary["metric"] == case.metric and summary["mode"] == "max"
        assert summary["cv"] == pytest.approx(summary["cv"]) and len(summary["per_fold"]) == summary["n_folds"]
        assert None not in summary["per_fold"] and summary["submission"]
    blend = run_ensemble(EnsembleConfig(name=f"{task[:4]}_blend", members=tuple(names), method="greedy").demo())
    assert f"ensemble/{blend['name']}" in (in_tmp / "output/demo/ledger.csv").read_text()  # the run records its row
    assert blend["metric"] == case.metric and blend["cv"] >= max(blend["member_oof_score"].values()) - 1e-9
    sub = Path(blend["submission"])
    capsys.readouterr()
    assert kagglekit(["validate", str(sub), "--exp", names[0], "--output", "output/demo"]) == 0
    assert kagglekit(["validate", str(sub), "--exp", blend["name"], "--output", "output/demo"]) == 0
    broken = _break(sub, case.id_column, in_tmp / "broken.csv")
    assert kagglekit(["validate", str(broken), "--exp", names[0], "--output", "output/demo"]) == 2
    assert "not_an_id" in capsys.readouterr().err
    assert kagglekit(["ledger", "--output", "output/demo"]) == 0
    ledger = pd.read_csv(in_tmp / "output/demo/ledger.csv", dtype=str, keep_default_na=False).set_index("experiment")
    for row in (*names, f"ensemble/{blend['name']}"):
        assert ledger.loc[row, "cv_metric"] == case.metric and ledger.loc[row, "cv_oof"] != "", row
    assert float(ledger.loc[f"ensemble/{blend['name']}", "cv_oof"]) == pytest.approx(blend["cv"], abs=1e-4)
    assert ledger.loc[f"ensemble/{blend['name']}", "submission"].endswith(sub.name)
    assert kagglekit(["ledger", "--output", "output/demo", "--lb", "0.5", "--submission", str(sub)]) == 0
    ledger = pd.read_csv(in_tmp / "output/demo/ledger.csv", dtype=str, keep_default_na=False).set_index("experiment")
    assert ledger.loc[f"ensemble/{blend['name']}", "public_lb"] == "0.50000"  # the blend's LB lands on its row
    if task == "segmentation":  # the cheapest task checks `kagglekit finish` and `status` for every task
        _finish_and_status(in_tmp, names[0], capsys)


def _finish_and_status(root: Path, name: str, capsys) -> None:
    """`kagglekit finish` re-runs the epilogue alone (same CV); a fold folder whose run has not
    written its metrics shows as running in `kagglekit status`, and `finish` refuses then."""
    exp = root / "output/demo" / name
    before = json.loads((exp / "metrics.json").read_text())
    (exp / "metrics.json").unlink()
    assert kagglekit(["finish", name, "--output", "output/demo"]) == 0
    after = json.loads((exp / "metrics.json").read_text())
    assert after["cv"] == pytest.approx(before["cv"]) and after["per_fold"] == before["per_fold"]
    (exp / "fold1" / "metrics.json").rename(exp / "fold1" / "metrics.moved")
    capsys.readouterr()
    assert kagglekit(["status", "--output", "output/demo", "--exp", name]) == 0
    table = capsys.readouterr().out
    assert "| running |" in table and "| done |" in table
    assert kagglekit(["finish", name, "--output", "output/demo"]) == 2
    assert "[1]" in capsys.readouterr().err


@pytest.mark.timeout(900)
def test_detection_epilogue_waits_for_every_fold(in_tmp, monkeypatch):
    """Folds 0 and 2 of 3: no experiment-level metrics.json (fold 2's boxes are not scored against
    fold 1's images); fold 1 completes it, scored on exactly the three folds' validation images."""
    monkeypatch.setenv("KAGGLEKIT_SHARED", str(in_tmp / "no_shared"))
    cfg = _config(CASES["detection"].config, "det_k3", {})
    args = ["--demo", *sets(DET_TINY + ["split_mode=kfold", "n_folds=3", "max_iters=2", "eval_period=2"])]
    exp = in_tmp / "output/demo/det_k3"
    assert run_experiment(cfg, [*args, "--fold", "0,2"]) == 0
    assert not (exp / "metrics.json").exists() and not (exp / "evaluation").exists()
    assert run_experiment(cfg, [*args, "--fold", "1"]) == 0
    summary = json.loads((exp / "metrics.json").read_text())
    from kagglekit.experiment.lookup import experiment_task
    from kagglekit.tasks.detection.data import select_images
    task = experiment_task(in_tmp / "output/demo", "det_k3")  # the config the folds ran with
    folds = [json.loads((exp / f"fold{k}/metrics.json").read_text()) for k in range(3)]
    ids = sorted(im["id"] for k in range(3) for im in task.fold_split(k)[2]["images"])
    assert sorted(im["id"] for im in task.coco("train")["images"]) == ids  # OOF covers every train image once
    from kagglekit.store.records import read_records
    oof = [r for k in range(3) for r in read_records(exp / f"fold{k}/oof", "bbox", require_manifest=True)[0]]
    from kagglekit.metrics.detection import coco_bbox_eval
    expected = 100 * coco_bbox_eval(select_images(task.coco("train"), ids), oof)["AP"]
    assert summary["cv"] == pytest.approx(expected, abs=1e-6)
    assert summary["per_fold"] == [f["score"] for f in folds]


def _task_name_tests(tree: ast.AST):
    """Comparisons in conditions that pick code by a task name: ``x == "detection"``,
    ``cfg.task != "segmentation"``, ``kind in {"behavior"}`` (a COCO key test such as
    ``"segmentation" in record`` is not one: the name is not compared with a value)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        right = [c for comp in node.comparators for c in ast.walk(comp)]
        named = [n.value for n in right if isinstance(n, ast.Constant) and n.value in TASK_NAMES]
        if isinstance(node.left, ast.Constant) and node.left.value in TASK_NAMES and \
                all(isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)) for op in node.ops):
            named.append(node.left.value)
        if named:
            yield node, named


def test_no_task_name_in_a_conditional_outside_tasks():
    """Generic layers ask the task through its contract; they never pick code by task name."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if "tasks" in path.relative_to(SRC).parts:
            continue
        for node, named in _task_name_tests(ast.parse(path.read_text())):
            offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {named}")
    assert offenders == []


def test_the_task_name_check_finds_a_branch():
    """The grep above can fail: it flags the kind of branch the issue removed from blend.py."""
    code = 'if {c.task for c in configs} == {"behavior"}:\n    pass\nif "segmentation" in record:\n    pass\n'
    assert [named for _, named in _task_name_tests(ast.parse(code))] == [["behavior"]]
