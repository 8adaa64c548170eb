"""Reports shaped like seed 001 (MABe V6): configuration, overall metrics, per-class table, the
prediction-vs-truth ("bias") table, training history, confusion-matrix PNG.

The competition view's fold report also gets an error analysis (:func:`pairs_analysis_section`):
every validation video scored alone with the official MABe metric, ethograms (truth vs predicted
intervals over time, one row per action, colour = action) of the lowest-scoring videos, and the
frame-level action confusion."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from kagglekit.io import write_text
from kagglekit.report.gallery import new_figure, plot_titled_confusion, save_report_figure
from kagglekit.report.markdown import markdown_kv, markdown_table
from kagglekit.report.plots import class_color, figure_title, plot_confusion, plot_history, plot_style
from kagglekit.tasks.behavior.config import BehaviorConfig
from kagglekit.tasks.behavior.groups import GROUP_NAMES


def configuration(cfg: BehaviorConfig) -> dict[str, Any]:
    arch = (f"Conv1DBiLSTM (conv {list(cfg.conv_channels)}, LSTM hidden {cfg.lstm_hidden} × {cfg.lstm_layers}, dropout {cfg.dropout:g})"
            if cfg.arch == "conv_bilstm" else f"Transformer encoder (d_model {cfg.d_model}, {cfg.n_heads} heads, {cfg.n_layers} layers)")
    return {"Script": f"`exp/{cfg.name}.py`", "Model": arch,
            "Features": "coordinates + speed + acceleration" if cfg.motion else "coordinates only",
            "Sequence Length": f"{cfg.window} frames (train stride {cfg.stride}, inference stride {cfg.infer_stride})",
            "Optimizer": f"AdamW (lr={cfg.lr:g}, weight_decay={cfg.weight_decay:g}), gradient clipping {cfg.grad_clip:g}",
            "Scheduler": f"{cfg.scheduler} (patience {cfg.plateau_patience}, factor {cfg.plateau_factor:g}, min lr {cfg.min_lr:g}), "
                         f"warmup {cfg.warmup_epochs:g} epochs",
            "Loss": f"{cfg.loss} (class weights {list(cfg.class_weights)})" + (f", gamma {cfg.focal_gamma:g}" if cfg.loss == "focal" else ""),
            "Batch Size": cfg.batch_size, "Early Stopping Patience": cfg.early_stopping_patience,
            "Folds": f"{cfg.n_folds} ({cfg.fold_strategy}: grouped by video, stratified by lab)"}


def tables(metrics: dict[str, Any]) -> str:
    per_class = pd.DataFrame(metrics["per_class"])
    perf = pd.DataFrame({"Class": per_class["class"], "Precision": per_class["precision"], "Recall": per_class["recall"],
                         "F1-Score": per_class["f1"], "Support": per_class["support"],
                         "% of Data": [f"{100 * v:.1f}%" for v in per_class["share"]]})
    bias = pd.DataFrame({"Class": per_class["class"],
                         "Predicted": [f"{100 * v:.2f}%" for v in per_class["predicted_share"]],
                         "Ground Truth": [f"{100 * v:.2f}%" for v in per_class["share"]],
                         "Bias": [f"{100 * (p - t):+.2f}%" for p, t in zip(per_class["predicted_share"], per_class["share"])]})
    return ("### Per-Class Performance\n" + markdown_table(perf) +
            "\n### Prediction Distribution vs Ground Truth\n" + markdown_table(bias))


def history_table(history: pd.DataFrame) -> str:
    cols = {"epoch": "Epoch", "train_loss": "Train Loss", "valid_loss": "Val Loss", "valid_f1_macro": "Val F1",
            "valid_accuracy": "Val Acc"}
    frame = history[[c for c in cols if c in history]].rename(columns=cols)
    frame["Epoch"] = frame["Epoch"].astype(int)
    best = int(np.argmax(frame["Val F1"].to_numpy())) if "Val F1" in frame else None
    return "## Training History\n" + markdown_table(frame, bold_row=best) + "\n![history](history.png)"


def write_report(cfg: BehaviorConfig, out_dir: Path, metrics: dict[str, Any], history: pd.DataFrame | None, title: str) -> Path:
    fold = metrics.get("fold")  # None: the experiment's merged OOF
    plot_confusion(np.asarray(metrics["confusion"]), list(GROUP_NAMES), out_dir / "confusion.png", normalize=True,
                   experiment=cfg.name, fold=fold)
    overall = {"Frames": metrics["frames"], "Accuracy": metrics["accuracy"], "F1 Macro": f"**{metrics['f1_macro']:.4f}**",
               "F1 Weighted": metrics["f1_weighted"], "Precision Macro": metrics["precision_macro"],
               "Recall Macro": metrics["recall_macro"]}
    parts = [f"# {title} Report", "## Model Configuration\n" + markdown_kv(configuration(cfg)),
             "## Overall Metrics (OOF, per frame)\n" + markdown_kv(overall), tables(metrics),
             "### Confusion Matrix\n![confusion](confusion.png)"]
    if history is not None and len(history):
        plot_history(history, out_dir / "history.png", loss_cols=("train_loss", "valid_loss"),
                     metric_cols=("valid_f1_macro", "valid_accuracy"), experiment=cfg.name, fold=fold)
        parts.append(history_table(history))
    parts.append("## Notes\n- Classes are the seed's 4 groups (Background/Social/Mating/Aggressive); the action → group "
                 "mapping is documented in `kagglekit/tasks/behavior/groups.py`.\n- OOF predictions are per-frame "
                 "probabilities (windows overlap-averaged) in `oof/` of each fold.")
    return write_text(out_dir / "report.md", "\n\n".join(parts) + "\n")


# ---- competition view (pairs): per-video scores, ethograms of the worst videos, action confusion ----
WORST_VIDEOS = 4  # ethograms drawn
MAX_PAIRS_SHOWN = 6  # (agent, target) panels per ethogram
NO_ACTION = "none"
ROW_INCHES = 0.42


@dataclass
class PairTrack:
    """One (video, agent, target) sequence of a fold's validation videos over its T frames:
    ``truth`` (T, A) bool (action annotated on the frame), ``prediction`` (T, A) bool (frame inside
    a predicted interval of the action: at most one per frame), ``allowed`` (A,) bool (the actions
    the video labels for this pair)."""
    video_id: str
    lab_id: str
    pair: str
    truth: np.ndarray
    prediction: np.ndarray
    allowed: np.ndarray


def prediction_mask(intervals: Sequence[tuple[str, int, int]], actions: Sequence[str], n_frames: int) -> np.ndarray:
    """(T, A) bool of ``[start, stop)`` intervals ``(action, start, stop)``."""
    index = {a: j for j, a in enumerate(actions)}
    mask = np.zeros((n_frames, len(actions)), bool)
    for action, start, stop in intervals:
        mask[max(0, int(start)):max(0, int(stop)), index[action]] = True
    return mask


def frame_classes(mask: np.ndarray) -> np.ndarray:
    """(T,) int: 0 = no action on the frame, else 1 + the index of its first (lowest-index) action."""
    mask = np.asarray(mask, bool)
    return np.where(mask.any(1), mask.argmax(1) + 1, 0) if mask.shape[1] else np.zeros(len(mask), np.int64)


def action_confusion(tracks: Sequence[PairTrack], n_actions: int) -> np.ndarray:
    """(A + 1, A + 1) frame counts over every frame of every track, rows = truth class, columns =
    predicted class (:func:`frame_classes`: 0 = none, j + 1 = action j)."""
    n = n_actions + 1
    cm = np.zeros(n * n, np.int64)
    for t in tracks:
        cm += np.bincount(frame_classes(t.truth) * n + frame_classes(t.prediction), minlength=n * n)
    return cm.reshape(n, n)


def per_video_scores(solution: pd.DataFrame, submission: pd.DataFrame) -> dict[str, float]:
    """Per video of ``solution``: the official MABe score of that video alone (its solution rows vs
    its submission rows); 0.0 when nothing was submitted for it (every labelled action F1 0)."""
    from kagglekit.metrics.mabe import mabe_score
    sol_ids, sub_ids = solution["video_id"].astype(str), submission["video_id"].astype(str)
    scores = {}
    for video in dict.fromkeys(sol_ids):
        sub = submission[sub_ids == video]
        scores[video] = mabe_score(solution[sol_ids == video], sub) if len(sub) else 0.0
    return scores


def worst_videos(scores: dict[str, float], n: int = WORST_VIDEOS) -> list[str]:
    """The ``n`` videos of lowest score, lowest first (a stable argsort: ties keep ``scores`` order;
    NaN scores left out)."""
    ids = [v for v, s in scores.items() if np.isfinite(s)]
    values = np.array([scores[v] for v in ids], dtype=np.float64)
    return [ids[i] for i in np.argsort(values, kind="stable")[:n]]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True frames in (T,) ``mask``."""
    edges = np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), (stops - starts).tolist()))


def _rows(track: PairTrack) -> list[int]:
    """Action indices shown for a track: the labelled ones, plus any with truth or prediction."""
    return np.flatnonzero(track.allowed | track.truth.any(0) | track.prediction.any(0)).tolist()


def _ethogram_panel(ax: Axes, track: PairTrack, actions: Sequence[str]) -> None:
    """One row per action: truth in the row's upper half (solid), prediction in its lower half (hatched)."""
    rows = _rows(track)
    for r, j in enumerate(rows):
        colour = class_color(j)
        ax.broken_barh(_runs(track.truth[:, j]), (r - 0.44, 0.4), facecolors=colour)
        ax.broken_barh(_runs(track.prediction[:, j]), (r + 0.04, 0.4), facecolors=colour, alpha=0.45,
                       hatch="///", edgecolor=colour)
    ax.set_yticks(range(len(rows)), [actions[j] for j in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, len(track.truth))
    for r in range(len(rows) - 1):
        ax.axhline(r + 0.5, color="0.85", linewidth=0.8)
    ax.set_ylabel("action")
    ax.set_title(f"{track.pair}: {int(track.truth.any(1).sum())} frames with a labelled action, "
                 f"{int(track.prediction.any(1).sum())} predicted")


def ethogram_figure(tracks: Sequence[PairTrack], actions: Sequence[str], title: str) -> Figure:
    """One panel per (agent, target) of a video (those with any labelled or predicted frame, at
    most :data:`MAX_PAIRS_SHOWN`), frames along x, one row per action, colour = action."""
    shown = [t for t in tracks if t.truth.any() or t.prediction.any()] or list(tracks)
    hidden = max(0, len(shown) - MAX_PAIRS_SHOWN)
    shown = shown[:MAX_PAIRS_SHOWN]
    heights = [max(1, len(_rows(t))) * ROW_INCHES + 0.7 for t in shown]
    fig = new_figure(12.0, sum(heights) + 1.3)
    with plot_style():
        axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
        for ax, track in zip(axes, shown):
            _ethogram_panel(ax, track, actions)
        axes[-1].set_xlabel("frame")
        fig.suptitle(title + (f" ({hidden} more pair(s) not shown)" if hidden else ""))
        fig.legend(handles=[Patch(facecolor="0.45", label="truth (upper half of a row)"),
                            Patch(facecolor="0.45", alpha=0.45, hatch="///", label="prediction (lower half of a row)")],
                   loc="outside lower center", ncols=2, frameon=False)
    return fig


def _worst_video_part(tracks: Sequence[PairTrack], actions: Sequence[str], scores: dict[str, float],
                      fold_dir: Path, title: Callable[[str], str]) -> str:
    """Table of the lowest-scoring videos + one ethogram PNG each (markdown)."""
    worst = worst_videos(scores)
    if not worst:
        return "### Worst videos\nNo validation video has labelled intervals: nothing to rank.\n"
    rows, pictures = [], []
    for rank, video in enumerate(worst, start=1):
        mine = [t for t in tracks if t.video_id == video]
        rows.append({"Rank": rank, "Video": video, "Lab": mine[0].lab_id if mine else "", "MABe score": scores[video],
                     "Pairs": len(mine), "Labelled action frames": int(sum(t.truth.any(1).sum() for t in mine)),
                     "Predicted action frames": int(sum(t.prediction.any(1).sum() for t in mine))})
        if mine:
            name = f"ethogram_worst{rank}.png"
            what = f"video {video} (lab {mine[0].lab_id}), MABe score {scores[video]:.3f}, rank {rank} from the lowest"
            save_report_figure(ethogram_figure(mine, actions, title(what)), fold_dir / name)
            pictures.append(f"![ethogram of video {video}]({name})")
    return (f"### Worst videos (lowest MABe score of the video alone, {len(scores)} ranked)\n{markdown_table(rows)}\n"
            + "\n".join(pictures) + "\n")


def pairs_analysis_section(fold_dir: Path, experiment: str, fold: int, tracks: Sequence[PairTrack],
                           actions: Sequence[str], solution: pd.DataFrame, submission: pd.DataFrame) -> str:
    """The pairs fold report's error analysis (markdown): the validation videos ranked by their own
    MABe score (``solution`` vs ``submission``, the fold's intervals), ethograms of the worst
    (``ethogram_worst<k>.png``) and the frame-level action confusion (``action_confusion.png``)."""
    head = "## Error analysis (validation videos, intervals at the in-fold thresholds)"
    if not tracks:
        return f"{head}\nNo validation sequence: nothing to analyse.\n"
    title = partial(figure_title, experiment, fold)  # what → "<experiment> fold <k>: <what>"
    scores = per_video_scores(solution, submission) if len(solution) else {}
    cm = action_confusion(tracks, len(actions))
    names = np.array([NO_ACTION, *actions])
    keep = np.flatnonzero((cm.sum(0) + cm.sum(1)) > 0)
    plot_titled_confusion(cm[np.ix_(keep, keep)], names[keep].tolist(), fold_dir / "action_confusion.png",
                          title("frame-level action confusion (rows normalised)"), "predicted action", "true action",
                          "share of the true action's frames")
    overlap = int(sum((t.truth.sum(1) > 1).sum() for t in tracks))
    how = (f"Confusion over every frame of every (agent, target) sequence: truth = the annotated action ({NO_ACTION} "
           f"when none; {overlap} frame(s) with several annotated actions count as their first), prediction = the "
           f"action of the predicted interval covering the frame; classes without any frame are left out.")
    return "\n".join([head, _worst_video_part(tracks, actions, scores, fold_dir, title),
                      "### Frame-level action confusion", how, "", "![action confusion](action_confusion.png)"]) + "\n"
