"""Reports shaped like seed 000 (door_state): the version comparison table (best vs SWA-N),
per-attribute metrics, training history, sample inference per state, an FP audit of the most
confident errors with the images tiled into a PNG, and the run config JSON with the seed's fields."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from kagglekit.io import save_json, write_bytes, write_text
from kagglekit.report.markdown import markdown_table


def version_table(cfg, metrics: dict[str, Any], others: dict[str, dict[str, Any]] | None = None) -> str:
    """Columns: earlier experiments (``compare_to``, their best), then this run's best.pt and SWA-N."""
    rows: dict[str, list[Any]] = {"schema": [], "OOF accuracy": [], "OOF mAP (active heads)": [], "OOF macro F1": [],
                                  "ckpt thresholds": []}
    columns = [(name, r) for name, r in (others or {}).items()]
    columns += [(f"{cfg.name} {'best.pt' if n == 'best' else f'SWA-{cfg.swa_n}'}", r) for n, r in metrics["versions"].items()]
    for _, r in columns:
        softmax = "per_class" in r
        rows["schema"].append(f"{len(r['per_class'])}-class softmax" if softmax else f"{len(r['per_attr'])} binary heads")
        rows["OOF accuracy"].append(r.get("accuracy", float("nan")))
        rows["OOF mAP (active heads)"].append(r.get("mAP", float("nan")))
        rows["OOF macro F1"].append(f"{r['macro_f1']:.4f}* ({r['macro_f1_active']:.4f} active)" if softmax else r["macro_f1"])
        rows["ckpt thresholds"].append("none (argmax)" if softmax else "per-attr val-best F1")
    table = pd.DataFrame(rows, index=[name for name, _ in columns]).T
    note = "\n\n\\* macro F1 over all classes incl. zero-support ones; in brackets: classes with support only." \
        if any("per_class" in r for _, r in columns) else ""
    return "## Version comparison\n" + markdown_table(table.reset_index().rename(columns={"index": ""})) + note


def per_attribute_table(metrics: dict[str, Any]) -> str:
    rows = []
    for version, r in metrics["versions"].items():
        for attr, m in r.get("per_attr", {}).items():
            rows.append({"version": version, "attr": attr, "AP": m["ap"], "F1": m["f1"], "P": m["p"], "R": m["r"],
                         "thr": m["thr"], "n": m["n"], "valid": m["valid"], "tp": m["tp"], "fp": m["fp"], "fn": m["fn"]})
        for cls, m in r.get("per_class", {}).items():
            rows.append({"version": version, "class": cls, "P": m["precision"], "R": m["recall"], "F1": m["f1"],
                         "support": m["support"]})
    return "## Per-attribute metrics (OOF)\n" + markdown_table(rows)


def history_table(history: pd.DataFrame) -> str:
    keep = [c for c in ("epoch", "train_loss", "valid_loss", "valid_mAP", "valid_macro_f1", "valid_accuracy") if c in history]
    frame = history[keep].copy()
    frame["epoch"] = frame["epoch"].astype(int)
    return "## Training history\n" + markdown_table(frame) + "\n![history](history.png)"


def sample_lines(states_true: Sequence[str], states_pred: Sequence[str], probs: np.ndarray, names: Sequence[str],
                 thresholds: Sequence[float], k: int = 4) -> list[str]:
    lines = []
    for state in sorted(set(states_true)):
        for i in [j for j, s in enumerate(states_true) if s == state][:k]:
            p = " ".join(f"{n}={100 * probs[i, a]:.0f}%" for a, n in enumerate(names))
            t = " ".join(f"thr_{n}={thr:.2f}" for n, thr in zip(names, thresholds))
            lines.append(f"truth={state} pred={states_pred[i]} {p} {t}".strip())
    return lines


def tile_images(paths: Sequence[Path], captions: Sequence[str], out: Path, thumb: int = 160, cols: int = 4) -> Path:
    """Thumbnails in a grid with a caption strip under each; written atomically as PNG."""
    rows = max(1, -(-len(paths) // cols))
    canvas = Image.new("RGB", (cols * thumb, rows * (thumb + 28)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (path, caption) in enumerate(zip(paths, captions)):
        img = Image.open(path).convert("RGB")
        img.thumbnail((thumb, thumb))
        x, y = (i % cols) * thumb, (i // cols) * (thumb + 28)
        canvas.paste(img, (x, y))
        draw.text((x + 2, y + thumb + 2), caption[:40], fill="black")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return write_bytes(out, buf.getvalue())


def run_config(cfg, metrics: dict[str, Any], history: pd.DataFrame, params_m: float) -> dict[str, Any]:
    best = metrics["versions"].get("best", {})
    return {"version": cfg.name, "backbone_name": cfg.backbone,
            "arch": f"{cfg.backbone} {len(best.get('per_attr', best.get('per_class', {})))} heads ({cfg.kind}), loss {cfg.loss}"
                    + (f", SWA-{cfg.swa_n}" if cfg.swa_n else ""),
            "params_M": params_m, "attrs": list(best.get("per_attr", best.get("per_class", {}))), "img_size": cfg.image_size,
            "best_val_metric": metrics.get(f"best_{cfg.monitor}"), "best_epoch": metrics.get("best_epoch"),
            "epochs_run": int(len(history)), "oof_metrics_best": best, "oof_metrics_swa": metrics["versions"].get("swa"),
            "swa_n": cfg.swa_n, "swa_source_ckpts": metrics.get("swa_sources", []),
            "hyperparams": {"batch": cfg.batch_size, "epochs": cfg.epochs, "lr": cfg.lr, "wd": cfg.weight_decay,
                            "img_size": cfg.image_size, "loss": cfg.loss, "weighted_sampler": cfg.weighted_sampler,
                            "cam_erase_p": cfg.cam_erase_p}}


def write_fold_report(cfg, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any], samples: list[str],
                      audit: list[str], params_m: float, others: dict[str, dict[str, Any]] | None = None) -> Path:
    save_json(fold_dir / "run_config.json", run_config(cfg, metrics, history, params_m))
    parts = [f"# {cfg.name} fold {metrics['fold']}", version_table(cfg, metrics, others), per_attribute_table(metrics),
             history_table(history),
             f"## Sample inference (OOF, {metrics['final']} + val thresholds)\n```\n" + "\n".join(samples) + "\n```",
             "## FP audit — most confident errors\n```\n" + "\n".join(audit) + "\n```\n![fp audit](fp_audit.png)",
             "## Config\nSee `run_config.json` (same fields as the seed's run config)."]
    return write_text(fold_dir / "report.md", "\n\n".join(parts) + "\n")
