"""SimBA importer, overlap policy, sample submission and oracle check of every importer, and
``score_submission`` of both behaviour views.

Real data: rat videos 1, 4 (no S2 stream) and 8 (annotation runs past the track) written out as
SimBA project CSVs by :func:`write_simba_like` from the existing DLC + Caltech readers, then imported
back with :func:`import_simba` and compared with :func:`import_dlc_caltech` of the same videos.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from kagglekit.metrics.mabe import mabe_score
from kagglekit.submission import SubmissionError
from kagglekit.submission.mabe import MABE_COLUMNS, validate_mabe
from kagglekit.tasks.behavior.importer import (
    RAT_STREAMS, action_priority, bouts_to_annotation, import_dlc_caltech, read_caltech_annotation, read_dlc_csv,
)
from kagglekit.tasks.behavior.labels import labels_as_submission, layout_solution, oracle_check, resolve_overlaps
from kagglekit.tasks.behavior.meta import (
    BehaviorDataError, annotation_path, features_path, frame_labels, load_metadata, read_annotation, read_tracking,
    tracking_path,
)
from kagglekit.tasks.behavior.simba import behavior_name, import_simba, labels_to_annotation, read_simba_csv

VIDEOS = (1, 4, 8)
RAT_PARTS = ("top", "body", "tail", "tail-m", "tail-e")  # DLC header order (rat_behavior/README.md)
ARGS = dict(fps=30.0, pix_per_cm=10.0, arena_cm=(60.0, 60.0))
SUFFIXED = {"social": "social_prediction", "keepdown": "Prediction_keepdown", "clinch": "clinch_pred"}
FEATURES = ["Movement_mouse_1_body", "Animal_distance", "Mouse_1_velocity_x", "Low_prob_detections_0.1"]


# ---- helpers --------------------------------------------------------------------------------------
def _rat_files(root: Path, videos=VIDEOS) -> tuple[list[Path], list[Path]]:
    dlc = [next((root / "dlc_csv").glob(f"{v}DLC_*.csv.gz")) for v in videos]
    return dlc, [root / "annotations" / f"{v}_annot.txt" for v in videos]


def simba_part(part: str) -> str:
    """Rat part names with an underscore in SimBA's file (``tail-m`` -> ``tail_m``): the importer must
    split ``tail_m_1_x`` into part ``tail_m`` and animal ``1``."""
    return part.replace("-", "_")


def write_simba_like(path: Path, dlc: Path, annot: Path) -> Path:
    """One rat video as a SimBA ``targets_inserted``/``machine_results`` CSV: unnamed frame-index
    column, ``<part>_<animal>_{x,y,p}`` pose (missing = 0, SimBA's fill), a few engineered features,
    one 0/1 column per behaviour of the streams the annotation file has (some with a prefix /
    suffix), and a float ``Probability_social`` score. Labels: the raw Caltech bouts (overlaps kept)."""
    long = read_dlc_csv(dlc)
    n = long.attrs["n_frames"]
    cols: dict[str, np.ndarray] = {}
    for mouse in (1, 2):
        for part in RAT_PARTS:
            sub = long[(long["mouse_id"] == mouse) & (long["bodypart"] == part)]
            for coord, src in (("x", "x"), ("y", "y"), ("p", "likelihood")):
                values = np.zeros(n, np.float64)
                values[sub["video_frame"].to_numpy()] = sub[src].fillna(0).to_numpy(np.float64)
                cols[f"{simba_part(part)}_{mouse}_{coord}"] = values
    rng = np.random.default_rng(n)
    cols[FEATURES[0]] = rng.random(n)
    cols[FEATURES[1]] = rng.random(n) * 100
    cols[FEATURES[2]] = rng.normal(size=n)
    cols[FEATURES[3]] = rng.integers(0, 7, n)
    streams = read_caltech_annotation(annot)
    actions = [a for a, s in RAT_STREAMS.items() if s in streams]
    labels = frame_labels(bouts_to_annotation(streams, n), n, [(1, 2, a) for a in actions])
    for j, action in enumerate(actions):
        cols[SUFFIXED.get(action, action)] = labels[:, j].astype(np.int64)
    if "social" in actions:
        cols["Probability_social"] = np.clip(labels[:, actions.index("social")] * 0.8 + rng.random(n) * 0.2, 0, 1)
    pd.DataFrame(cols).to_csv(path)  # SimBA: index written as the first, unnamed column
    return path


def frames_per_action(root: Path, lab: str, videos=VIDEOS) -> dict[tuple[int, str], int]:
    out = {}
    for v in videos:
        ann = read_annotation(annotation_path(root, lab, v))
        for action, frames in (ann["stop_frame"] - ann["start_frame"]).groupby(ann["action"]).sum().items():
            out[(v, action)] = int(frames)
    return out


def overlap_frames(ann: pd.DataFrame, n_frames: int) -> int:
    """Frames with two or more actions, counted densely (independent of labels.resolve_overlaps)."""
    actions = sorted(set(ann["action"]))
    return int((frame_labels(ann, n_frames, [(1, 2, a) for a in actions]).sum(1) >= 2).sum())


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rat_root() -> Path:
    return require_shared("rat_behavior")


@pytest.fixture(scope="module")
def simba_csvs(rat_root: Path, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("simba") / "project_folder" / "csv" / "targets_inserted"
    folder.mkdir(parents=True)
    dlc, ann = _rat_files(rat_root)
    return [write_simba_like(folder / f"Rat_{v}.csv", d, a) for v, d, a in zip(VIDEOS, dlc, ann)]


@pytest.fixture(scope="module")
def imports(rat_root: Path, simba_csvs: list[Path], tmp_path_factory) -> dict[str, Path]:
    """The same 3 videos imported 4 ways: DLC / SimBA x overlap priority / keep."""
    out = {k: tmp_path_factory.mktemp(k) for k in ("dlc", "dlc_keep", "simba", "simba_keep")}
    dlc, ann = _rat_files(rat_root)
    import_dlc_caltech(dlc, ann, out["dlc"], "RatLab", streams=RAT_STREAMS, **ARGS)
    import_dlc_caltech(dlc, ann, out["dlc_keep"], "RatLab", streams=RAT_STREAMS, overlap="keep", **ARGS)
    priority = action_priority(RAT_STREAMS)  # the DLC default: S2 actions before S1 actions
    import_simba(simba_csvs, out["simba"], "RatLab", priority=priority, **ARGS)
    import_simba(simba_csvs, out["simba_keep"], "RatLab", overlap="keep", **ARGS)
    return out


# ---- SimBA round trip on real rats ----------------------------------------------------------------
@pytest.mark.parametrize("dlc_key, simba_key", [("dlc", "simba"), ("dlc_keep", "simba_keep")])
def test_simba_round_trip_matches_dlc_import(imports, dlc_key, simba_key) -> None:
    dlc, simba = frames_per_action(imports[dlc_key], "RatLab"), frames_per_action(imports[simba_key], "RatLab")
    assert simba == dlc  # identical frames per (video, action), suffixed / prefixed columns included
    assert {a for _, a in dlc} >= {"social", "keepdown", "clinch", "aggression"}
    for v in VIDEOS:
        a = read_tracking(tracking_path(imports[dlc_key], "train", "RatLab", v))
        b = read_tracking(tracking_path(imports[simba_key], "train", "RatLab", v))
        a["bodypart"] = a["bodypart"].map(simba_part)
        assert len(a) > 40_000
        keys = ["video_frame", "mouse_id", "bodypart"]  # the same rows (row order within a frame is free)
        pd.testing.assert_frame_equal(a.sort_values(keys).reset_index(drop=True), b.sort_values(keys).reset_index(drop=True))
    meta_a = load_metadata(imports[dlc_key] / "train.csv").set_index("video_id")
    meta_b = load_metadata(imports[simba_key] / "train.csv").set_index("video_id")
    for v in VIDEOS:
        assert set(meta_a.loc[v, "behaviors"]) == set(meta_b.loc[v, "behaviors"])  # video 4: S1 actions only
        assert meta_a.loc[v, "video_duration_sec"] == meta_b.loc[v, "video_duration_sec"]
    assert meta_b.loc[1, "body_parts"] == ["top", "body", "tail", "tail_m", "tail_e"]
    assert (meta_b["tracking_method"] == "SimBA").all()


def test_simba_features_parquet(imports) -> None:
    feats = pd.read_parquet(features_path(imports["simba"], "train", "RatLab", 1))
    # the float Probability_ score and the behaviour columns are not features; a lone *_x is not pose
    assert list(feats.columns) == ["video_frame", *FEATURES]
    assert (feats.dtypes[FEATURES] == np.float32).all()
    n = read_dlc_csv(next((require_shared("rat_behavior") / "dlc_csv").glob("1DLC_*.csv.gz"))).attrs["n_frames"]
    assert feats["video_frame"].tolist() == list(range(n))


# ---- overlap policy and oracle ----------------------------------------------------------------------
def test_overlap_warning_counts_frames_and_policy_makes_oracle_one(rat_root: Path, tmp_path: Path, caplog) -> None:
    dlc, ann = _rat_files(rat_root)
    expected = {}
    for v, d, a in zip(VIDEOS, dlc, ann):
        n = read_dlc_csv(d).attrs["n_frames"]
        expected[v] = overlap_frames(bouts_to_annotation(read_caltech_annotation(a), n), n)
    assert expected[1] > 0 and expected[8] > 0 and expected[4] == 0  # video 4 has no S2 stream
    with caplog.at_level(logging.WARNING, logger="kagglekit.behavior"):
        import_dlc_caltech(dlc, ann, tmp_path, "RatLab", streams=RAT_STREAMS, **ARGS)
    lines = {int(m[1]): m[2] for r in caplog.records
             if (m := re.search(r"video (\d+)\): ([\d,]+) frame\(s\) with two or more actions", r.getMessage()))}
    assert {v: int(c.replace(",", "")) for v, c in lines.items()} == {1: expected[1], 8: expected[8]}
    assert all("mouse1->mouse2" in r.getMessage() for r in caplog.records if "two or more" in r.getMessage())
    assert oracle_check(tmp_path) == 1.0
    for v in VIDEOS:  # one action per frame left, and S2 (higher priority) kept every frame
        written = read_annotation(annotation_path(tmp_path, "RatLab", v))
        assert overlap_frames(written, 20_000) == 0


def test_without_overlap_policy_the_answer_key_is_refused(imports) -> None:
    """The bug being fixed: imported labels with overlaps cannot be reproduced by any valid submission."""
    for key in ("dlc_keep", "simba_keep"):
        key_rows = layout_solution(imports[key])
        with pytest.raises(ValueError, match=r"two actions predicted on frame"):
            mabe_score(key_rows, labels_as_submission(key_rows))  # the metric itself refuses the answer key
        with pytest.raises(SubmissionError, match=r"overlap\(s\) of two actions"):
            oracle_check(imports[key])
    for key in ("dlc", "simba"):
        assert oracle_check(imports[key]) == 1.0
    keep, prio = frames_per_action(imports["dlc_keep"], "RatLab"), frames_per_action(imports["dlc"], "RatLab")
    s2 = {a for a, s in RAT_STREAMS.items() if s == "S2"}
    assert all(prio[k] == keep[k] for k in keep if k[1] in s2)  # S2 first: untouched
    assert sum(keep.values()) - sum(prio.values()) > 0  # S1 bouts trimmed


def test_overlap_policy_small_cases(caplog) -> None:
    ann = pd.DataFrame({"agent_id": [1, 1, 1, 1], "target_id": [2, 2, 2, 1], "action": ["a", "b", "c", "rear"],
                        "start_frame": [0, 5, 8, 0], "stop_frame": [10, 7, 20, 30]})
    with caplog.at_level(logging.WARNING, logger="kagglekit.behavior"):
        out, counts = resolve_overlaps(ann, ["b", "c", "a"], where="video 9")
    assert counts == {(1, 2): 4}  # frames 5, 6 (a+b), 8, 9 (a+c); the self pair does not overlap
    assert "video 9: 4 frame(s)" in caplog.text and "mouse1->mouse2: 4 frame(s)" in caplog.text
    got = sorted(map(tuple, out[["action", "start_frame", "stop_frame"]].values.tolist()))
    assert got == [("a", 0, 5), ("a", 7, 8), ("b", 5, 7), ("c", 8, 20), ("rear", 0, 30)]
    kept, _ = resolve_overlaps(ann, [], "keep")
    assert len(kept) == 4
    with pytest.raises(ValueError, match="overlap="):
        resolve_overlaps(ann, [], "drop")  # type: ignore[arg-type]


# ---- sample submission --------------------------------------------------------------------------------
def test_sample_submission_written_by_every_importer(imports, rat_root: Path, simba_csvs, tmp_path: Path) -> None:
    expected = list(MABE_COLUMNS)
    meta_sample = require_shared("mabe2025_meta") / "sample_submission.csv"
    assert list(pd.read_csv(meta_sample, nrows=0).columns) == expected  # the competition's header
    for key in ("dlc", "simba"):
        sample = pd.read_csv(imports[key] / "sample_submission.csv")
        assert list(sample.columns) == expected and sorted(sample["video_id"]) == list(VIDEOS)
        validate_mabe(sample, pd.read_csv(imports[key] / "train.csv"))  # strict: labelled actions only
    dlc, ann = _rat_files(rat_root)
    import_dlc_caltech(dlc[:2], ann[:2], tmp_path, "RatLab", streams=RAT_STREAMS, **ARGS)
    import_simba(simba_csvs[2:], tmp_path, "RatLab", split="test", **ARGS)  # a test split: the sample covers it
    sample = pd.read_csv(tmp_path / "sample_submission.csv")
    assert sample["video_id"].tolist() == [8] and list(sample.columns) == expected
    assert oracle_check(tmp_path, "test") == 1.0  # test_annotation/ written for the held-out split


# ---- foreign / broken files: one short line naming the file and the expected format --------------------
def _short_error(exc: BaseException, name: str, fmt: str) -> None:
    text = str(exc)
    assert "\n" not in text and len(text) < 300, text
    assert name in text and fmt in text, text


def test_wrong_format_errors_are_one_short_line(rat_root: Path, simba_csvs, tmp_path: Path) -> None:
    dlc, _ = _rat_files(rat_root, (1,))
    with pytest.raises(BehaviorDataError) as info:  # a DLC file given to the SimBA importer
        import_simba(dlc, tmp_path / "o1", "L", **ARGS)
    _short_error(info.value, dlc[0].name, "SimBA CSV")
    assert "import_dlc_caltech" in str(info.value)
    annot = tmp_path / "1_annot.txt"
    annot.write_bytes((rat_root / "annotations" / "1_annot.txt").read_bytes())
    simba_copy = tmp_path / "1_simba.csv"
    simba_copy.write_bytes(simba_csvs[0].read_bytes())
    with pytest.raises(BehaviorDataError) as info:  # a SimBA file given to the DLC importer (was ~300 numbers)
        import_dlc_caltech([simba_copy], [annot], tmp_path / "o2", "L", **ARGS)
    _short_error(info.value, simba_copy.name, "DeepLabCut multi-animal CSV")
    lines = simba_csvs[0].read_text().splitlines()
    no_header = tmp_path / "Rat_7.csv"
    no_header.write_text("\n".join(lines[1:50]) + "\n")  # header line lost
    mangled = tmp_path / "Rat_9.csv"
    mangled.write_text("\n".join([",".join(f"col{i}" for i in range(len(lines[0].split(","))))] + lines[1:50]) + "\n")
    for bad, reason in ((no_header, "not a frame index"), (mangled, "not a frame index")):
        with pytest.raises(BehaviorDataError, match=reason) as info:
            import_simba([bad], tmp_path / "o3", "L", **ARGS)
        _short_error(info.value, bad.name, "SimBA CSV")
    mangled.write_text("frame," + ",".join(f"col{i}" for i in range(len(lines[0].split(",")) - 1)) + "\n"
                       + "\n".join(lines[1:50]) + "\n")
    with pytest.raises(BehaviorDataError, match="no pose column") as info:
        read_simba_csv(mangled)
    _short_error(info.value, mangled.name, "SimBA CSV")


# ---- SimBA conventions on small hand-written files ------------------------------------------------------
def _small(path: Path, **extra) -> Path:
    frames = [0, 1, 2, 3, 5, 6]  # frame 4 absent: a gap ends a bout
    data = {"Ear_left_1_x": [1, 2, 3, 4, 5, 6], "Ear_left_1_y": [1, 1, 1, 1, 1, 1], "Ear_left_1_p": [1] * 6,
            "Nose_2_x": [0, 7, 7, 7, 7, 7], "Nose_2_y": [0, 8, 8, 8, 8, 8], "Nose_2_p": [0, 1, 1, 1, 1, 1],
            "Attack_prediction": [0, 1, 1, 1, 1, 0], "Probability_Attack": [0.1, 0.9, 0.8, 0.9, 0.7, 0.2],
            "Sniff": [1, 1, 0, 0, 0, 0], "roi_speed": [0.5] * 6, **extra}
    pd.DataFrame(data, index=frames).to_csv(path)
    return path


def test_simba_conventions_small(tmp_path: Path) -> None:
    assert behavior_name("Attack_prediction") == "Attack" and behavior_name("Probability_Attack") == "Attack"
    assert behavior_name("Prediction_keepdown") == "keepdown" and behavior_name("clinch_PRED") == "clinch"
    assert behavior_name("_prediction") == "_prediction"
    video = read_simba_csv(_small(tmp_path / "Together_3.csv"))
    assert video.parts == ["Ear_left", "Nose"] and video.n_animals == 2 and video.n_frames == 7
    t = video.tracking
    assert not ((t["mouse_id"] == 2) & (t["video_frame"] == 0)).any()  # (0, 0) = missing (SimBA fill)
    assert sorted(video.labels) == ["Attack", "Sniff"]
    assert list(video.features.columns) == ["video_frame", "roi_speed"]  # Probability_Attack is not a feature
    ann = labels_to_annotation(video.frames, video.labels, 1, 2)
    assert ann[["action", "start_frame", "stop_frame"]].values.tolist() == [
        ["Sniff", 0, 2], ["Attack", 1, 4], ["Attack", 5, 6]]
    meta = import_simba([tmp_path / "Together_3.csv"], tmp_path / "out", "Small", fps=10, pix_per_cm=2,
                        arena_cm=(10, 10), behaviors=["Attack"], priority=["Attack"])
    assert json.loads(meta["behaviors_labeled"].iloc[0]) == ["mouse1,mouse2,Attack"]
    assert int(meta["video_id"].iloc[0]) == 3 and oracle_check(tmp_path / "out") == 1.0
    _small(tmp_path / "Together_4.csv", Sniff=[1, 2, 0, 0, 0, 0])
    with pytest.raises(BehaviorDataError, match=r"'Sniff' row 1 is '?2'?, not 0 or 1"):
        read_simba_csv(tmp_path / "Together_4.csv", behaviors=["Sniff"])
    with pytest.raises(BehaviorDataError, match="no column for behaviour 'Chase'"):
        read_simba_csv(tmp_path / "Together_3.csv", behaviors=["Chase"])
    with pytest.raises(BehaviorDataError, match="both map to video_id 3"):
        import_simba([tmp_path / "Together_3.csv", tmp_path / "3.csv"], tmp_path / "o", "S", **ARGS)


# ---- score_submission: pairs (official MABe metric) and grouped views -----------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from kagglekit.demo.mabe import generate_mabe
    return generate_mabe(tmp_path_factory.mktemp("demo") / "mabe", n_videos=6, n_frames=300, labs=2)


def _task(root: Path, view: str, **overrides):
    from kagglekit.tasks.behavior.config import BehaviorConfig
    from kagglekit.tasks.behavior.pairs import PairBehaviorTask
    from kagglekit.tasks.behavior.task import GroupedBehaviorTask
    cfg = replace(BehaviorConfig(name=f"mabe_{view}"), data_dir=str(root), view=view, device="cpu", **overrides)
    return PairBehaviorTask(cfg) if view == "pairs" else GroupedBehaviorTask(cfg)


def test_extra_features_flag_appends_simba_features(tmp_path: Path) -> None:
    for v in (3, 5):  # lower-case behaviour names: the grouped view maps actions to its 4 groups
        table = pd.read_csv(_small(tmp_path / f"raw{v}.csv"), index_col=0)
        table.columns = [c.lower() for c in table.columns]
        table.to_csv(tmp_path / f"Rats_{v}.csv")
    root = tmp_path / "layout"
    import_simba([tmp_path / "Rats_3.csv", tmp_path / "Rats_5.csv"], root, "Small", fps=10, pix_per_cm=2,
                 arena_cm=(10, 10))
    off, on = _task(root, "grouped"), _task(root, "grouped", extra_features=True)
    assert off.extra_vocabulary == [] and on.extra_vocabulary == ["roi_speed"]
    a, b = off._videos(["3"])[0], on._videos(["3"])[0]
    assert a.features.shape[1] == off.in_features() and b.features.shape[1] == on.in_features() == off.in_features() + 1
    np.testing.assert_array_equal(b.features[:, :-1], a.features)
    assert b.features[0, -1] == pytest.approx(np.log1p(0.5)) and b.mask[:, -1].tolist() == [1, 1, 1, 1, 0, 1, 1]
    pairs_off, pairs_on = _task(root, "pairs"), _task(root, "pairs", extra_features=True)
    assert pairs_on.sequences(["5"])[0].features.shape[1] == pairs_off.sequences(["5"])[0].features.shape[1] + 1


def test_pairs_score_submission(demo: Path, tmp_path: Path) -> None:
    task = _task(demo, "pairs")
    key = layout_solution(demo)
    key.to_csv(tmp_path / "solution.csv", index=False)
    perfect = labels_as_submission(key)
    perfect.to_csv(tmp_path / "perfect.csv", index=False)
    for solution in (tmp_path / "solution.csv", demo):
        result = task.score_submission(tmp_path / "perfect.csv", solution)
        assert result["MABe score"] == 1.0 and set(result["per_lab"].values()) == {1.0}
    drop = perfect.drop(index=2).reset_index(drop=True)
    drop.to_csv(tmp_path / "drop.csv", index=False)
    expected = mabe_score(key, drop)
    assert 0 < expected < 1
    assert task.score_submission(tmp_path / "drop.csv", tmp_path / "solution.csv")["MABe score"] == pytest.approx(expected)
    one = perfect[perfect["video_id"] == perfect["video_id"].iloc[0]]
    one.to_csv(tmp_path / "one.csv", index=False)  # a folder solution scores the videos the file names
    assert task.score_submission(tmp_path / "one.csv", demo)["MABe score"] == 1.0
    assert task.score_submission(tmp_path / "one.csv", tmp_path / "solution.csv")["MABe score"] < 1.0
    bad = perfect.copy()
    bad.loc[0, "start_frame"] = -3
    bad.loc[1, "video_id"] = 123
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SubmissionError) as info:
        task.score_submission(tmp_path / "bad.csv", tmp_path / "solution.csv")
    assert any("start_frame must be an integer >= 0" in p for p in info.value.problems)
    assert any("video_id not in the test videos (123)" in p for p in info.value.problems)


def test_score_cli_pairs(demo: Path, tmp_path: Path, capsys) -> None:
    from kagglekit.__main__ import main
    from kagglekit.config import save_config
    task = _task(demo, "pairs")
    save_config(task.cfg, tmp_path / "out" / task.cfg.name / "fold0" / "config.json")
    labels_as_submission(layout_solution(demo)).to_csv(tmp_path / "perfect.csv", index=False)
    argv = ["score", str(tmp_path / "perfect.csv"), "--exp", task.cfg.name, "--solution", str(demo),
            "--output", str(tmp_path / "out")]
    assert main(argv) == 0
    assert "MABe score = 1.000000" in capsys.readouterr().out


def test_grouped_score_submission(demo: Path, tmp_path: Path) -> None:
    from kagglekit.tasks.behavior.task import GROUP_NAMES, frame_group_truth, seed_metrics
    task = _task(demo, "grouped")
    truth = frame_group_truth(demo)
    assert set(truth["group"]) >= {"background", "social"}
    truth.to_csv(tmp_path / "truth.csv", index=False)
    for solution in (tmp_path / "truth.csv", demo):
        result = task.score_submission(tmp_path / "truth.csv", solution)
        assert result[task.metric.name] == 1.0 and result["frames"] == len(truth)
    worse = truth.copy()
    worse.loc[worse.index[::7], "group"] = "aggressive"
    worse.to_csv(tmp_path / "worse.csv", index=False)
    cm = np.zeros((4, 4), np.int64)
    index = {g: i for i, g in enumerate(GROUP_NAMES)}
    np.add.at(cm, (truth["group"].map(index), worse["group"].map(index)), 1)
    got = task.score_submission(tmp_path / "worse.csv", tmp_path / "truth.csv")[task.metric.name]
    assert got == pytest.approx(seed_metrics(cm)["f1_macro"]) and got < 1
    worse.drop(index=[0]).assign(group=lambda f: f["group"].replace("social", "dancing")).to_csv(
        tmp_path / "bad.csv", index=False)
    with pytest.raises(SubmissionError) as info:
        task.score_submission(tmp_path / "bad.csv", tmp_path / "truth.csv")
    assert any("dancing" in p for p in info.value.problems) and any("missing" in p for p in info.value.problems)
    assert not math.isnan(got)
