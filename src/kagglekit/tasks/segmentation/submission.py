"""Segmentation predictions ↔ the competition's file: the NYUv2 preset or any configured mask RLE
format (:mod:`kagglekit.submission.masks`), each image at its own original size, classes written
as the competition's ids (the class table); the validator and the local scorer
(``kagglekit score``) read the same format back.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kagglekit.formats.images import files_by_stem, image_hw, read_mask
from kagglekit.io import save_csv
from kagglekit.submission import nyuv2 as nyu
from kagglekit.submission.masks import MaskFormat, decode_mask_submission, mask_submission, mask_submission_problems
from kagglekit.submission.rle import SubmissionError
from kagglekit.tasks.segmentation.classes import IGNORE_INDEX, ClassTable
from kagglekit.tasks.segmentation.source import SplitFiles


def mask_format(cfg: Any) -> MaskFormat:
    """Adapter at the edge: the config's ``rle_*`` fields → a :class:`MaskFormat`."""
    return MaskFormat(layout=cfg.rle_layout, id_column=cfg.rle_id_column, class_column=cfg.rle_class_column,
                      combined_id=cfg.rle_combined_id, rle_column=cfg.rle_column, order=cfg.rle_order,
                      start=int(cfg.rle_start), empty=cfg.rle_empty)


def image_sizes(files: SplitFiles) -> dict[str, tuple[int, int]]:
    """id → (H, W) of each image (headers only)."""
    from kagglekit.experiment.preflight import parallel_map
    return dict(zip(files.ids, parallel_map(lambda i: image_hw(files.images[i]), files.ids)))


def read_rle_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def rle_labels(files: SplitFiles, cfg: Any, fmt: MaskFormat) -> Callable[[str], np.ndarray]:
    """id → (H, W) competition-id mask decoded from ``files.masks_csv`` (rows in ``fmt``; the
    CSV is parsed and checked once, on first use)."""
    @lru_cache(maxsize=1)
    def decoded() -> dict[str, np.ndarray]:
        frame = read_rle_csv(files.masks_csv)
        try:
            return decode_mask_submission(frame, image_sizes(files), fmt, background=0)
        except SubmissionError as exc:
            raise ValueError(f"{files.masks_csv}: masks CSV does not match the rle_* format: {exc}") from None

    def label(frame_id: str) -> np.ndarray:
        return decoded()[frame_id]
    return label


def upsampled_labels(chunks: Iterable[tuple[list[str], np.ndarray]], sizes: Mapping[str, tuple[int, int]],
                     table: ClassTable) -> Iterator[tuple[str, np.ndarray]]:
    """(ids, probs (B, C, h, w)) chunks → (id, competition-id label map (H_i, W_i) int32), each
    image's probabilities resized (bilinear) to its own original size before the argmax."""
    for ids, probs in chunks:
        p = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32))
        for i, frame_id in enumerate(ids):
            hw = tuple(sizes[frame_id])
            one = p[i:i + 1] if tuple(p.shape[-2:]) == hw else F.interpolate(p[i:i + 1], size=hw, mode="bilinear",
                                                                             align_corners=False)
            yield frame_id, table.to_ids(one.argmax(1)[0].to(torch.uint8).numpy())


def submission_frame(pairs: Sequence[tuple[str, np.ndarray]], table: ClassTable, cfg: Any) -> pd.DataFrame:
    ids, maps = [i for i, _ in pairs], [m for _, m in pairs]
    if cfg.submission_format == "nyuv2":
        shapes = {m.shape for m in maps}
        return nyu.nyuv2_submission(ids, maps, shape=shapes.pop() if len(shapes) == 1 else None)
    return mask_submission(ids, maps, table.ids, mask_format(cfg), background=table.background)


def format_problems(frame: pd.DataFrame, sizes: Mapping[str, tuple[int, int]], table: ClassTable, cfg: Any,
                    sample: Path | None) -> list[str]:
    """Every problem of a submission frame in the configured format: the format's own checks at
    each image's own size, plus the sample submission's columns when one is given."""
    fmt = mask_format(cfg)
    problems = mask_submission_problems(frame, fmt, sizes, table.ids)
    if sample is not None and sample.is_file():
        columns = list(read_rle_csv(sample).columns)
        if list(frame.columns) != columns:
            problems.insert(0, f"columns {list(frame.columns)} differ from {sample.name}'s {columns}")
    return problems


def write_rle_submission(frame: pd.DataFrame, sizes: Mapping[str, tuple[int, int]], table: ClassTable, cfg: Any,
                         sample: Path | None, path: Path) -> Path:
    """Validate, then write atomically (nothing written when a problem is found)."""
    problems = format_problems(frame, sizes, table, cfg, sample)
    if problems:
        raise SubmissionError(f"submission for {path} is invalid: {len(problems)} problem(s): " + "; ".join(problems[:5]),
                              problems)
    return save_csv(path, frame)


def truth_masks(solution: Path, ids: Sequence[str], sizes: Mapping[str, tuple[int, int]], cfg: Any) -> dict[str, np.ndarray]:
    """Held-out labels: a mask folder (files by stem, pixel = competition id) or a CSV in the
    configured RLE format → id → (H, W) competition-id mask."""
    if solution.is_dir():
        found = files_by_stem(solution)
        if missing := [i for i in ids if i not in found]:
            raise FileNotFoundError(f"{solution}: no mask for ids {missing[:10]}" + (" ..." if len(missing) > 10 else ""))
        return {i: read_mask(found[i]) for i in ids}
    decoded = decode_mask_submission(read_rle_csv(solution), {i: sizes[i] for i in ids}, mask_format(cfg), background=0)
    return {i: decoded[i] for i in ids}


def score_label_maps(predicted: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray], table: ClassTable) -> dict[str, Any]:
    """mIoU of competition-id label maps against truth masks over the class table: void truth
    pixels are not scored; a predicted pixel outside the table (background) counts as a miss
    of its true class. Equal to :func:`~kagglekit.metrics.segmentation.iou_from_confusion` when
    every pixel is predicted as a class."""
    c = table.num_classes
    cm = np.zeros((c, c + 1), np.int64)  # column c: predicted as no class
    for frame_id, true_ids in truth.items():
        target = table.to_target(true_ids, frame_id).astype(np.int64).ravel()
        pred = table.to_target(np.where(np.isin(predicted[frame_id], table.ids), predicted[frame_id], table.background),
                               frame_id).astype(np.int64).ravel()
        pred[pred == IGNORE_INDEX] = c
        keep = target != IGNORE_INDEX
        cm += np.bincount(target[keep] * (c + 1) + pred[keep], minlength=c * (c + 1)).reshape(c, c + 1)
    tp = np.diag(cm[:, :c]).astype(np.float64)
    denom = cm.sum(1) + cm[:, :c].sum(0) - tp
    iou = np.full(c, np.nan)
    np.divide(tp, denom, out=iou, where=denom > 0)
    present = ~np.isnan(iou)
    return {"mIoU": float(iou[present].mean()) if present.any() else float("nan"),
            "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(table.names, iou)},
            "images": len(truth)}
