"""DLC + Caltech importer: real rat files (videos 1: index starts at 1, 4: no S2, 8: annotation runs
past the track) and small hand-written files for the edge cases the real data does not exercise."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from kagglekit.tasks.behavior.importer import (
    RAT_STREAMS, import_dlc_caltech, infer_streams, read_caltech_annotation, read_dlc_csv,
)
from kagglekit.tasks.behavior.meta import (
    META_COLUMNS, BehaviorDataError, annotation_path, behavior_keys, frame_labels, load_metadata,
    read_annotation, read_tracking, tracking_path,
)

VIDEOS = (1, 4, 8)


def _rat_files(root: Path, videos=VIDEOS) -> tuple[list[Path], list[Path]]:
    dlc = [next((root / "dlc_csv").glob(f"{v}DLC_*.csv.gz")) for v in videos]
    return dlc, [root / "annotations" / f"{v}_annot.txt" for v in videos]


@pytest.fixture(scope="module")
def rat_root() -> Path:
    return require_shared("rat_behavior")


@pytest.fixture(scope="module")
def imported(rat_root: Path, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("rats")
    dlc, ann = _rat_files(rat_root)
    # overlap="keep": the raw conversion, compared with videos.csv's per-stream frame counts below
    # (the default trims S1 bouts under S2 ones: tests/test_behavior_simba.py)
    meta = import_dlc_caltech(dlc, ann, out, "RatLab", fps=30.0, pix_per_cm=10.0,
                              arena_cm=(60.0, 60.0), streams=RAT_STREAMS, overlap="keep")
    return out, meta


def test_metadata_written_in_mabe_layout(imported) -> None:
    out, meta = imported
    assert list(pd.read_csv(out / "train.csv").columns) == list(META_COLUMNS)
    loaded = load_metadata(out / "train.csv").set_index("video_id")
    assert sorted(loaded.index) == list(VIDEOS)
    assert loaded.loc[1, "body_parts"] == ["top", "body", "tail", "tail-m", "tail-e"]
    assert (loaded["n_mice"] == 2).all() and (loaded["tracking_method"] == "DeepLabCut").all()
    s1 = {("mouse1", "mouse2", a) for a, s in RAT_STREAMS.items() if s == "S1"}
    s2 = {("mouse1", "mouse2", a) for a, s in RAT_STREAMS.items() if s == "S2"}
    assert set(loaded.loc[4, "behaviors"]) == s1  # video 4 has no S2 -> no S2 claims
    assert set(loaded.loc[1, "behaviors"]) == s1 | s2
    assert loaded.loc[8, "video_duration_sec"] == pytest.approx(15249 / 30.0, abs=1e-3)


def test_dlc_index_quirk_and_nan_rows(rat_root: Path) -> None:
    dlc, _ = _rat_files(rat_root, (1,))
    long = read_dlc_csv(dlc[0])
    assert long[["x", "y"]].notna().all().all()
    with gzip.open(dlc[0], "rt") as fh:
        rows = [line.rstrip("\n").split(",") for line in fh][4:]
    # README: video 1 "starts at index 1"; the raw text starts at 0 with an all-empty row, which
    # pandas' 4-row-header reader mistakes for the index-name row. Our reader keeps frame numbering.
    assert rows[0][0] == "0" and set(rows[0][1:]) == {""}
    assert long.attrs["n_frames"] == int(rows[-1][0]) + 1 == 14734
    # the first row with individual1/top x present: our video_frame is its CSV index, not row number
    first = next(r for r in rows if r[1] != "")
    got = long[(long.mouse_id == 1) & (long.bodypart == "top")].iloc[0]
    assert got.video_frame == int(first[0])
    assert got.x == pytest.approx(float(first[1]), abs=1e-3)
    n_cells = sum(1 for r in rows for i in range(1, 31, 3) if r[i] != "" and r[i + 1] != "")
    assert len(long) == n_cells  # exactly the non-NaN (x, y) cells, NaN rows dropped


def test_frame_counts_match_videos_csv(imported, rat_root: Path) -> None:
    out, _ = imported
    table = pd.read_csv(rat_root / "videos.csv").set_index("video")
    for video in VIDEOS:
        ann = read_annotation(annotation_path(out, "RatLab", video))
        n_frames = int(table.loc[video, "csv_index_max"]) + 1
        assert ann["stop_frame"].max() <= n_frames and ann["start_frame"].min() >= 0
        frames = (ann["stop_frame"] - ann["start_frame"]).groupby(ann["action"]).sum()
        clipped = int(table.loc[video, "annot_last_frame"]) - n_frames  # 7 for video 8, else 0
        for action, stream in RAT_STREAMS.items():
            expected = int(table.loc[video, f"{stream}_{action}_frames"])
            assert 0 <= expected - int(frames.get(action, 0)) <= clipped, (video, action)


def test_frame_alignment_real(imported, rat_root: Path) -> None:
    out, _ = imported
    raw = read_caltech_annotation(rat_root / "annotations" / "1_annot.txt")["S1"]
    bout = raw[raw["type"] == "social"].iloc[0]  # 1-based inclusive [s, e]
    ann = read_annotation(annotation_path(out, "RatLab", 1))
    labels = frame_labels(ann, 14734, [(1, 2, "social")])[:, 0]
    s, e = int(bout["start"]), int(bout["end"])
    assert labels[s - 2] == 0 and labels[s - 1] == 1 and labels[e - 1] == 1 and labels[e] == 0
    track = read_tracking(tracking_path(out, "train", "RatLab", 1))
    assert list(track.columns) == ["video_frame", "mouse_id", "bodypart", "x", "y"]


# --- small hand-written files --------------------------------------------------------------------

def _write_dlc(path: Path, first_index: int, n_rows: int) -> None:
    parts = ["nose", "tail"]
    cols = [(ind, p, c) for ind in ("individual1", "individual2") for p in parts
            for c in ("x", "y", "likelihood")]
    lines = ["scorer," + ",".join(["net"] * len(cols))]
    lines += [f"{name}," + ",".join(c[i] for c in cols)
              for i, name in enumerate(["individuals", "bodyparts", "coords"])]
    for f in range(first_index, first_index + n_rows):
        vals = ["" if (f == first_index and k < 3) else f"{f + k / 10:.1f}" for k in range(len(cols))]
        lines.append(",".join([str(f)] + vals))
    path.write_text("\n".join(lines) + "\n")


HEADER = ("Caltech Behavior Annotator - Annotation File\r\n\r\nConfiguration file:\r\nbase\tz\r\n"
          "social\ts\r\nchase\tc\r\n\r\n")


def _write_annot(path: Path, s1: list[str], s2: list[str] | None) -> None:
    text = HEADER + "S1:\tstart\tend\ttype\r\n-----------------------------\r\n"
    text += "".join(f"   \t{b}\r\n" for b in s1)
    if s2 is not None:
        text += "\r\nS2:\tstart\tend\ttype\r\n-----------------------------\r\n"
        text += "".join(f"   \t{b}\r\n" for b in s2)
    path.write_text(text, newline="")


def test_small_files_alignment_clipping_and_missing_stream(tmp_path: Path) -> None:
    _write_dlc(tmp_path / "3DLC_a.csv", first_index=1, n_rows=10)   # frames 1..10 -> n_frames 11
    _write_annot(tmp_path / "3_annot.txt", ["1\t4\tsocial", "5\t9\tbase", "10\t14\tsocial"],
                 ["1\t2\tbase", "3\t3\tchase", "4\t14\tbase"])
    _write_dlc(tmp_path / "5DLC_a.csv", first_index=0, n_rows=8)
    _write_annot(tmp_path / "5_annot.txt", ["1\t8\tsocial"], None)
    files = sorted(tmp_path.glob("*DLC_a.csv")), sorted(tmp_path.glob("*_annot.txt"))
    meta = import_dlc_caltech(*files, tmp_path / "out", "Tiny", fps=10, pix_per_cm=5,
                              arena_cm=(40, 30))
    ann = read_annotation(annotation_path(tmp_path / "out", "Tiny", 3))
    # S2's chase (frame 2) overlaps S1's social [0, 4): the default overlap policy (later stream first)
    # cuts social around it; [10, 14] is clipped to 11
    assert ann[["action", "start_frame", "stop_frame"]].values.tolist() == [
        ["social", 0, 2], ["chase", 2, 3], ["social", 3, 4], ["social", 9, 11]]
    import_dlc_caltech(*files, tmp_path / "keep", "Tiny", fps=10, pix_per_cm=5, arena_cm=(40, 30), overlap="keep")
    ann = read_annotation(annotation_path(tmp_path / "keep", "Tiny", 3))
    assert ann[["action", "start_frame", "stop_frame"]].values.tolist() == [
        ["social", 0, 4], ["chase", 2, 3], ["social", 9, 11]]   # as written: 1 -> 0
    behaviors = {v: set(json.loads(b)) for v, b in zip(meta["video_id"], meta["behaviors_labeled"])}
    assert behaviors == {3: {"mouse1,mouse2,social", "mouse1,mouse2,chase"},
                         5: {"mouse1,mouse2,social"}}   # inferred vocab; video 5 has no S2
    assert infer_streams([read_caltech_annotation(tmp_path / "3_annot.txt")]) == {
        "social": "S1", "chase": "S2"}
    track = read_tracking(tracking_path(tmp_path / "out", "train", "Tiny", 3))
    assert track["video_frame"].min() == 1  # index quirk: first row is index 1 ...
    assert not ((track.video_frame == 1) & (track.mouse_id == 1) & (track.bodypart == "nose")).any()
    # re-import replaces rows instead of duplicating them
    import_dlc_caltech(*files, tmp_path / "out", "Tiny", fps=10, pix_per_cm=5, arena_cm=(40, 30))
    assert len(pd.read_csv(tmp_path / "out" / "train.csv")) == 2


def test_bad_annotation_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "7_annot.txt"
    _write_annot(path, ["1\t4\tsocial", "5\tnine\tbase"], None)
    with pytest.raises(BehaviorDataError, match=r"7_annot\.txt: line 11"):
        read_caltech_annotation(path)
    _write_annot(path, ["1\t4\tsocial", "3\t9\tbase"], None)
    with pytest.raises(BehaviorDataError, match=r"line 11.*inside the previous bout"):
        read_caltech_annotation(path)
    _write_annot(path, ["1\t4\tdancing"], None)
    with pytest.raises(BehaviorDataError, match=r"line 10.*not in the configuration"):
        read_caltech_annotation(path)


def test_bad_dlc_header_and_unpaired_files(tmp_path: Path) -> None:
    bad = tmp_path / "2DLC_bad.csv"
    bad.write_text("scorer,a,a\nbodyparts,nose,nose\ncoords,x,y\n0,1.0,2.0\n")
    with pytest.raises(BehaviorDataError, match=r"2DLC_bad\.csv"):
        read_dlc_csv(bad)
    _write_annot(tmp_path / "9_annot.txt", ["1\t4\tsocial"], None)
    with pytest.raises(BehaviorDataError, match="pair one to one"):
        import_dlc_caltech([bad], [tmp_path / "9_annot.txt"], tmp_path / "o", "L", fps=1,
                           pix_per_cm=1, arena_cm=(1, 1))


def test_streams_mismatch_is_named(tmp_path: Path) -> None:
    _write_dlc(tmp_path / "3DLC_a.csv", first_index=0, n_rows=5)
    _write_annot(tmp_path / "3_annot.txt", ["1\t5\tchase"], None)
    with pytest.raises(BehaviorDataError, match=r"3_annot\.txt: stream S1 has type 'chase'"):
        import_dlc_caltech([tmp_path / "3DLC_a.csv"], [tmp_path / "3_annot.txt"], tmp_path / "o",
                           "L", fps=1, pix_per_cm=1, arena_cm=(1, 1), streams={"chase": "S2"})
    assert behavior_keys([("mouse2", "self", "rear")]) == [(2, 2, "rear")]
    assert np.array_equal(frame_labels(pd.DataFrame(
        {"agent_id": [1], "target_id": [2], "action": ["x"], "start_frame": [1], "stop_frame": [3]}),
        4, [(1, 2, "x"), (2, 1, "x")]), np.array([[0, 0], [1, 0], [1, 0], [0, 0]], np.uint8))
