"""Benchmark: MABe-2025 F-beta on ~10^6 labelled frames, ``kagglekit.metrics.mabe`` vs the official.

Run: ``.venv/bin/python bench/bench_mabe_metric.py [--frames 1000000] [--repeats 3]
[--official PATH/TO/mabe_metric.py]``.

Data (seeded): labs with 3-8 social and 1-3 self actions each; videos of 2-4 mice and 10k-60k
frames whose ``behaviors_labeled`` lists every (agent, target, lab action); per key, bouts of
log-normal length (median 25 frames, clipped to 3..3000) separated by exponential gaps, until the
solution holds ``--frames`` labelled frames in all (actions of one pair may overlap, as in the real
annotations). The submission imitates a thresholded model: per (video, agent, target) each bout is
predicted with p = 0.8 with jittered ends (partial overlaps), the wrong (pair) action with p = 0.1,
plus false-positive bouts (30 % as many), painted on one frame-owner array so that a pair never
has two actions on a frame; 5 % of the runs are split into two adjacent rows, 1 % duplicated,
plus rows of unlabelled actions and of a video missing from the solution (both ignored).

Implementations, each in a fresh subprocess (so no allocator state or import is shared):
- ``ours``: :func:`kagglekit.metrics.mabe.mabe_score` (intervals, numpy);
- ``reference``: ``reference_score`` of ``tests/test_metrics_mabe.py``, the official algorithm on
  Python sets of frames (pandas instead of polars), used as "official" when no file is given;
- ``official``: with ``--official``, the Kaggle metric file itself (``score(solution, submission,
  row_id_column_name)``; needs ``polars`` importable, e.g. via PYTHONPATH). It is not in the repo.
Per implementation: best wall time of ``--repeats`` calls; the peak-RSS increase of the first
call (``VmHWM`` after it minus ``VmRSS`` before it, the peak reset through /proc/self/clear_refs
once the data is loaded and one warm-up call on a single video has done the lazy imports: Linux
only); the tracemalloc peak of one more call
(Python and numpy allocations; polars' own Rust buffers are invisible to it). Prints the ratios
against the official (or reference) and the absolute score differences (exit 1 if > 1e-9).
Timings are indicative on a shared machine.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import pickle
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SOCIAL = ["sniff", "sniffgenital", "sniffface", "sniffbody", "attack", "mount", "chase", "approach",
          "avoid", "escape", "allogroom", "intromit", "attemptmount", "dominancemount"]
SELF = ["rear", "selfgroom", "dig", "climb", "rest", "freeze", "run"]
TOL = 1e-9


def lab_actions(rng: np.random.Generator, n_labs: int) -> list[tuple[list[str], list[str]]]:
    """Per lab: (social actions, self actions)."""
    return [(list(rng.choice(SOCIAL, int(rng.integers(3, 9)), replace=False)),
             list(rng.choice(SELF, int(rng.integers(1, 4)), replace=False))) for _ in range(n_labs)]


def bouts(rng: np.random.Generator, n_frames: int, density: float) -> np.ndarray:
    """(B, 2) [start, stop) int64 bouts covering about ``density`` of ``n_frames``, disjoint."""
    length = np.clip(np.round(rng.lognormal(np.log(25), 1.0, 4096)), 3, 3000).astype(np.int64)
    gap = np.ceil(rng.exponential(length.mean() / density, 4096)).astype(np.int64)
    start = np.cumsum(gap + np.concatenate([[0], length[:-1]]))
    keep = start + length <= n_frames
    return np.stack([start[keep], start[keep] + length[keep]], axis=1)


def video_keys(lab: tuple[list[str], list[str]], n_mice: int) -> list[tuple[str, str, str]]:
    """Every labelled (agent, target, action) of a video: social actions per ordered pair, self actions."""
    mice = [f"mouse{i}" for i in range(1, n_mice + 1)]
    keys = [(a, t, b) for a in mice for t in mice if a != t for b in lab[0]]
    return keys + [(a, "self", b) for a in mice for b in lab[1]]


def solution_frame(rng: np.random.Generator, target_frames: int, n_labs: int = 8) -> tuple[pd.DataFrame, dict]:
    """Solution rows until ``target_frames`` labelled frames, and per video (lab, n_frames, keys)."""
    labs, rows, videos, total = lab_actions(rng, n_labs), [], {}, 0
    while total < target_frames:
        vid, lab = 10_000 + len(videos), int(rng.integers(0, n_labs))
        n_frames, keys = int(rng.integers(10_000, 60_000)), video_keys(labs[lab], int(rng.integers(2, 5)))
        labeled = json.dumps([",".join(k) for k in keys])
        videos[vid] = (f"lab{lab}", n_frames, keys)
        for agent, target, action in keys:
            for s, e in bouts(rng, n_frames, float(rng.uniform(0.002, 0.03))):
                rows.append((vid, agent, target, action, int(s), int(e), f"lab{lab}", labeled))
                total += int(e - s)
    columns = ["video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame", "lab_id",
               "behaviors_labeled"]
    return pd.DataFrame(rows, columns=columns), videos


def paint_pair(rng: np.random.Generator, n_frames: int, actions: list[str], truth: list[np.ndarray]) -> np.ndarray:
    """(n_frames,) int16 owner (-1 = none) of one (video, agent, target): jittered true bouts,
    confusions and false positives painted in random order (later bouts overwrite earlier)."""
    owner = np.full(n_frames, -1, np.int16)
    events = [(k, s, e) for k, b in enumerate(truth) for s, e in b if rng.random() < 0.8]
    n_fp = int(0.3 * sum(len(b) for b in truth)) + 1
    fp_len = np.clip(np.round(rng.lognormal(np.log(15), 0.8, n_fp)), 2, 500).astype(int)
    fp_start = rng.integers(0, n_frames, n_fp)
    events += [(int(rng.integers(0, len(actions))), s, s + n) for s, n in zip(fp_start, fp_len)]
    for i in rng.permutation(len(events)):
        k, s, e = events[i]
        if rng.random() < 0.1:
            k = int(rng.integers(0, len(actions)))  # confused with another labelled action
        s, e = s + int(rng.normal(0, 6)), e + int(rng.normal(0, 6))
        owner[max(s, 0):max(min(e, n_frames), 0)] = k
    return owner


def runs(owner: np.ndarray) -> list[tuple[int, int, int]]:
    """(value, start, stop) of the runs of ``owner`` != -1."""
    edges = np.flatnonzero(np.diff(owner)) + 1
    starts, stops = np.concatenate([[0], edges]), np.concatenate([edges, [len(owner)]])
    return [(int(owner[s]), int(s), int(e)) for s, e in zip(starts, stops) if owner[s] >= 0]


def submission_frame(rng: np.random.Generator, sol: pd.DataFrame, videos: dict) -> pd.DataFrame:
    """Model-like submission rows (see the module docstring)."""
    truth = {k: g[["start_frame", "stop_frame"]].to_numpy() for k, g in
             sol.groupby(["video_id", "agent_id", "target_id", "action"], sort=False)}
    rows = []
    for vid, (_, n_frames, keys) in videos.items():
        pairs: dict[tuple[str, str], list[str]] = {}
        for agent, target, action in keys:
            pairs.setdefault((agent, target), []).append(action)
        for (agent, target), actions in pairs.items():
            owned = paint_pair(rng, n_frames, actions, [truth.get((vid, agent, target, a), np.empty((0, 2), int))
                                                        for a in actions])
            for k, s, e in runs(owned):
                cut = [s, int(rng.integers(s + 1, e)), e] if e - s > 1 and rng.random() < 0.05 else [s, e]
                rows += [(vid, agent, target, actions[k], a, b) for a, b in zip(cut[:-1], cut[1:])]
            rows.append((vid, agent, target, "moonwalk", 0, n_frames))  # not labelled: ignored
    rows += [rows[i] for i in rng.choice(len(rows), len(rows) // 100, replace=False)]  # duplicates count once
    rows.append((1, "mouse1", "mouse2", "sniff", 0, 1000))  # video not in the solution: dropped
    columns = ["video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame"]
    sub = pd.DataFrame(rows, columns=columns)
    sub.insert(0, "row_id", np.arange(len(sub)))
    return sub


def scorer(name: str, official: str | None) -> Callable[[pd.DataFrame, pd.DataFrame], float]:
    """The implementation ``name`` as ``f(solution, submission) -> score``."""
    if name == "ours":
        from kagglekit.metrics.mabe import mabe_score
        return mabe_score
    path = ROOT / "tests" / "test_metrics_mabe.py" if name == "reference" else Path(official or "")
    spec = importlib.util.spec_from_file_location(f"mabe_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if name == "reference":
        return module.reference_score
    return lambda sol, sub: module.score(sol, sub, "row_id")


def _status_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process from /proc/self/status, KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(name: str, data: Path, official: str | None, repeats: int) -> None:
    """Measure one implementation; print one JSON line."""
    fn = scorer(name, official)
    with open(data, "rb") as f:
        sol, sub = pickle.load(f)
    first = sol["video_id"].iloc[0]  # warm-up on one video: lazy imports and caches are not the metric's memory
    fn(sol[sol["video_id"] == first], sub[sub["video_id"] == first])
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS, proc(5)
    rss0 = _status_kib("VmRSS")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn(sol, sub)
        times.append(time.perf_counter() - start)
        if len(times) == 1:
            rss_kib = _status_kib("VmHWM") - rss0
    tracemalloc.start()
    fn(sol, sub)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"name": name, "score": value, "time": min(times), "rss_mib": rss_kib / 1024,
                      "traced_mib": peak / 2**20}))


def measure(name: str, data: Path, official: str | None, repeats: int) -> dict:
    """Run :func:`child` for ``name`` in a fresh interpreter; its JSON result."""
    cmd = [sys.executable, __file__, "--child", name, "--data", str(data), "--repeats", str(repeats)]
    cmd += ["--official", official] if official else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="labelled frames in the solution")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--official", help="the Kaggle metric .py (score(solution, submission, row_id_column_name))")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, Path(args.data), args.official, args.repeats)
    rng = np.random.default_rng(0)
    sol, videos = solution_frame(rng, args.frames)
    sub = submission_frame(rng, sol, videos)
    labelled = int((sol["stop_frame"] - sol["start_frame"]).sum())
    print(f"solution: {len(sol):,} rows, {labelled:,} labelled frames, {len(videos)} videos, "
          f"{sol['lab_id'].nunique()} labs; submission: {len(sub):,} rows, "
          f"{int((sub['stop_frame'] - sub['start_frame'])[sub['action'] != 'moonwalk'].sum()):,} predicted frames")
    names = ["ours", "reference"] + (["official"] if args.official else [])
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "case.pkl"
        with open(data, "wb") as f:
            pickle.dump((sol, sub), f)
        results = {n: measure(n, data, args.official, args.repeats) for n in names}
    base = results["official" if args.official else "reference"]
    for n, r in results.items():
        diff = abs(r["score"] - base["score"])
        print(f"{n:9s} score={r['score']:.15f} time={r['time']:8.3f}s peak_rss_increase={r['rss_mib']:8.1f} MiB "
              f"tracemalloc_peak={r['traced_mib']:8.1f} MiB |diff vs {base['name']}|={diff:.1e}")
    ours = results["ours"]
    print(f"mabe_metric_vs_{base['name']}: speedup={base['time'] / ours['time']:.1f}x "
          f"rss_ratio={ours['rss_mib'] / max(base['rss_mib'], 1e-9):.2f} "
          f"tracemalloc_ratio={ours['traced_mib'] / max(base['traced_mib'], 1e-9):.3f} (ours / {base['name']})")
    if max(abs(r["score"] - base["score"]) for r in results.values()) > TOL:
        sys.exit("scores differ by more than 1e-9")


if __name__ == "__main__":
    main()
