"""Reports shaped like seed 001 (MABe V6): configuration, overall metrics, per-class table, the
prediction-vs-truth ("bias") table, training history, confusion-matrix PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kagglekit.io import write_text
from kagglekit.report.markdown import markdown_kv, markdown_table
from kagglekit.report.plots import plot_confusion, plot_history
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
    plot_confusion(np.asarray(metrics["confusion"]), list(GROUP_NAMES), out_dir / "confusion.png", normalize=True)
    overall = {"Frames": metrics["frames"], "Accuracy": metrics["accuracy"], "F1 Macro": f"**{metrics['f1_macro']:.4f}**",
               "F1 Weighted": metrics["f1_weighted"], "Precision Macro": metrics["precision_macro"],
               "Recall Macro": metrics["recall_macro"]}
    parts = [f"# {title} Report", "## Model Configuration\n" + markdown_kv(configuration(cfg)),
             "## Overall Metrics (OOF, per frame)\n" + markdown_kv(overall), tables(metrics),
             "### Confusion Matrix\n![confusion](confusion.png)"]
    if history is not None and len(history):
        plot_history(history, out_dir / "history.png", loss_cols=("train_loss", "valid_loss"),
                     metric_cols=("valid_f1_macro", "valid_accuracy"))
        parts.append(history_table(history))
    parts.append("## Notes\n- Classes are the seed's 4 groups (Background/Social/Mating/Aggressive); the action → group "
                 "mapping is documented in `kagglekit/tasks/behavior/groups.py`.\n- OOF predictions are per-frame "
                 "probabilities (windows overlap-averaged) in `oof/` of each fold.")
    return write_text(out_dir / "report.md", "\n\n".join(parts) + "\n")
