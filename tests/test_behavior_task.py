"""The behaviour track end to end through the common CLI/loop: generated mice (--demo) and the
real rat recordings imported into the MABe layout."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from kagglekit.cli import main
from kagglekit.store.arrays import read_predictions
from kagglekit.tasks.behavior.config import BehaviorConfig
from kagglekit.tasks.behavior.task import seed_metrics

TINY = ["epochs=2", "n_folds=2", "demo_videos=8", "demo_frames=300", "batch_size=16", "conv_channels=16,32",
        "lstm_hidden=32", "lstm_layers=1", "infer_stride=50"]


def sets(items):
    return [a for s in items for a in ("--set", s)]


def test_seed_metrics_match_sklearn():
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
    rng = np.random.default_rng(0)
    y = rng.choice(4, 500, p=[0.7, 0.2, 0.05, 0.05])
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, 4, 500))
    cm = np.zeros((4, 4), np.int64)
    np.add.at(cm, (y, p), 1)
    m = seed_metrics(cm)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert m["f1_macro"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert m["f1_weighted"] == pytest.approx(f1_score(y, p, average="weighted", zero_division=0))
    assert m["precision_macro"] == pytest.approx(precision_score(y, p, average="macro", zero_division=0))
    assert m["recall_macro"] == pytest.approx(recall_score(y, p, average="macro", zero_division=0))
    assert [c["support"] for c in m["per_class"]] == np.bincount(y, minlength=4).tolist()


def test_demo_all_folds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for exp, arch in (("v6", "conv_bilstm"), ("v7", "transformer")):
        cfg = BehaviorConfig(name=f"mabe_{exp}", arch=arch)
        assert main(cfg, ["--demo", "--fold", "all", *sets(TINY + ["d_model=32", "n_layers=1"])]) == 0
        exp_dir = tmp_path / "output/demo" / cfg.name
        summary = json.loads((exp_dir / "metrics.json").read_text())
        assert set(summary) >= {"accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "per_class"}
        report = (exp_dir / "report.md").read_text()
        assert "### Prediction Distribution vs Ground Truth" in report and "| Bias |" in report
        fold = exp_dir / "fold0"
        for name in ("config.json", "history.csv", "report.md", "history.png", "confusion.png", "oof/probs.npy", "test/probs.npy"):
            assert (fold / name).exists(), name
        oof = read_predictions(fold / "oof")
        assert oof.probs.shape[1] == 4 and oof.targets.shape == (oof.probs.shape[0],)
        np.testing.assert_allclose(np.asarray(oof.probs, np.float32).sum(1), 1.0, atol=2e-2)
    v5 = BehaviorConfig(name="mabe_v5", motion=False)
    assert main(v5, ["--demo", "--fold", "0", *sets(TINY + ["loss=focal"])]) == 0  # seed's next step: focal loss
    widths = {n: json.loads((tmp_path / f"output/demo/{n}/fold0/config.json").read_text())["motion"] for n in ("mabe_v5", "mabe_v6")}
    assert widths == {"mabe_v5": False, "mabe_v6": True}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("view", ["grouped", "pairs"])
def test_real_rat_recordings_train_and_predict(tmp_path, monkeypatch, view):
    from kagglekit.tasks.behavior.importer import import_dlc_caltech
    rat = require_shared("rat_behavior")
    videos = [1, 4, 8, 12]
    dlc = [next((rat / "dlc_csv").glob(f"{v}DLC_*.csv.gz")) for v in videos]
    annot = [rat / "annotations" / f"{v}_annot.txt" for v in videos]
    root = tmp_path / "input/rats"
    import_dlc_caltech(dlc, annot, root, "RatLab", fps=30.0, pix_per_cm=10.0, arena_cm=(100.0, 70.0))
    monkeypatch.chdir(tmp_path)
    cfg = BehaviorConfig(name="rats_v6", data_dir=str(root), view=view, pair_features=view == "pairs",
                         class_weights=(1.0, 5.0, 8.0, 8.0) if view == "grouped" else ())
    args = ["--fold", "all", *sets(["epochs=1", "n_folds=2", "batch_size=64", "conv_channels=16,32", "lstm_hidden=32",
                                    "lstm_layers=1", "stride=100", "infer_stride=100"])]
    assert main(cfg, args) == 0
    exp_dir = tmp_path / "output/rats_v6"
    oof_frames = sum(read_predictions(exp_dir / f"fold{k}" / "oof").probs.shape[0] for k in (0, 1))
    meta = pd.read_csv(root / "train.csv")
    assert oof_frames == int((meta["video_duration_sec"] * 30).round().sum())  # one agent→target pair per video
    summary = json.loads((exp_dir / "metrics.json").read_text())
    if view == "pairs":
        assert 0.0 <= summary["cv_mabe_score"] <= 1.0 and set(summary["per_lab"]) == {"RatLab"}
        assert {"social", "nonsocial"} <= {row["action"] for row in summary["breakdown"]}
        return
    social = next(c for c in summary["per_class"] if c["class"] == "social")
    assert social["support"] > 0 and summary["frames"] == oof_frames


def test_agent_first_reorders_mice():
    from kagglekit.tasks.behavior.pairs import agent_first
    pose = np.arange(3)[None, :, None, None] * np.ones((2, 3, 1, 2))
    reordered, pair = agent_first(pose, agent=3, target=1)
    assert reordered[0, :, 0, 0].tolist() == [2, 0, 1] and pair == (0, 1)
    reordered, pair = agent_first(pose, agent=2, target=2)
    assert reordered[0, :, 0, 0].tolist() == [1, 0, 2] and pair == (0, 0)


def test_pairs_view_scores_oof_and_writes_a_valid_submission(tmp_path, monkeypatch):
    from kagglekit.metrics.mabe import mabe_score
    from kagglekit.submission.mabe import validate_mabe
    from kagglekit.tasks.behavior.meta import load_metadata
    from kagglekit.tasks.behavior.pairs import PairBehaviorTask
    monkeypatch.chdir(tmp_path)
    cfg = BehaviorConfig(name="mabe_pairs", view="pairs", pair_features=True, class_weights=())
    assert main(cfg, ["--demo", "--fold", "all", *sets(TINY + ["epochs=3"])]) == 0
    exp_dir = tmp_path / "output/demo/mabe_pairs"
    summary = json.loads((exp_dir / "metrics.json").read_text())
    assert 0.0 < summary["cv_mabe_score"] <= 1.0 and set(summary["thresholds"]) >= {"chase", "mount"}
    sub = pd.read_csv(summary["submission"])
    test_meta = load_metadata(tmp_path / "input/mabe_demo/test.csv")
    validate_mabe(sub, test_meta)  # strict: only actions each video labels
    assert "CV MABe score" in (exp_dir / "report.md").read_text()
    # the CV score is the official metric on the OOF intervals: recompute it independently
    task = PairBehaviorTask(replace(cfg.demo(), n_folds=2, demo_videos=8, demo_frames=300))
    folds = task.folds()
    from kagglekit.cv import fold_ids
    valid = [fold_ids(folds, k, "id")[1] for k in (0, 1)]
    groups = [task.sequences(v) for v in valid]
    probs = [p for g in task._stored(exp_dir, "oof", groups) for p in g]
    seqs = [s for g in groups for s in g]
    oof_sub = task.submission(seqs, probs, summary["thresholds"])
    assert mabe_score(task.solution([i for v in valid for i in v]), oof_sub) == pytest.approx(summary["cv_mabe_score"])
    perfect = task.solution([i for v in valid for i in v])
    perfect = perfect.assign(row_id=range(len(perfect)))[["row_id", "video_id", "agent_id", "target_id", "action",
                                                            "start_frame", "stop_frame"]]
    assert mabe_score(task.solution([i for v in valid for i in v]), perfect) == pytest.approx(1.0)


def test_pairs_ensemble_blends_on_the_official_score(tmp_path, monkeypatch):
    from kagglekit.ensemble.runner import EnsembleConfig, run_ensemble
    from kagglekit.submission.mabe import validate_mabe
    from kagglekit.tasks.behavior.meta import load_metadata
    monkeypatch.chdir(tmp_path)
    for name, arch in (("pairs_lstm", "conv_bilstm"), ("pairs_tf", "transformer")):
        cfg = BehaviorConfig(name=name, view="pairs", arch=arch, pair_features=True, class_weights=())
        assert main(cfg, ["--demo", "--fold", "all", *sets(TINY + ["d_model=32", "n_layers=1"])]) == 0
    summary = run_ensemble(EnsembleConfig(name="mice", members=("pairs_lstm", "pairs_tf"), method="greedy").demo())
    assert summary["metric"] == "MABe score" and sum(summary["weights"]) == pytest.approx(1.0)
    assert summary["blend_oof_score"] >= max(summary["member_oof_score"].values()) - 1e-9
    validate_mabe(pd.read_csv(summary["submission"]), load_metadata(tmp_path / "input/mabe_demo/test.csv"))
    assert (tmp_path / "output/demo/ensemble/mice/report.md").exists()
