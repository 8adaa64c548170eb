"""Kaggle box submissions: one row per test image, ``image_id,PredictionString`` with
``class_id score x_min y_min x_max y_max`` repeated per box (the VinBigData / Open Images style;
``image_id`` is the image file's stem, class ids are the competition's own category ids), and a
validator that lists every problem. Empty PredictionString = no boxes on that image."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from kagglekit.io import save_csv
from kagglekit.submission.rle import SubmissionError
from kagglekit.submission.validate import id_coverage_problems

COLUMNS = ("image_id", "PredictionString")
TOKENS_PER_BOX = 6


def image_key(image: dict[str, Any]) -> str:
    """The submission id of a COCO image record: its file name's stem."""
    return Path(image["file_name"]).stem


def boxes_frame(results: Sequence[dict[str, Any]], images: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """COCO results (``bbox`` xywh, ``category_id``, ``score``) → one row per image of ``images``."""
    strings: dict[int, list[str]] = {int(im["id"]): [] for im in images}
    for r in sorted(results, key=lambda r: -float(r["score"])):
        x, y, w, h = (float(v) for v in r["bbox"])
        strings[int(r["image_id"])].append(f"{int(r['category_id'])} {float(r['score']):.5f} "
                                           f"{x:.1f} {y:.1f} {x + w:.1f} {y + h:.1f}")
    return pd.DataFrame({"image_id": [image_key(im) for im in images],
                         "PredictionString": [" ".join(strings[int(im["id"])]) for im in images]})


def _row_problems(row: int, text: str, cat_ids: set[int]) -> list[str]:
    tokens = text.split()
    if len(tokens) % TOKENS_PER_BOX:
        return [f"row {row}: {len(tokens)} tokens, not a multiple of {TOKENS_PER_BOX} (class score x_min y_min x_max y_max)"]
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return [f"row {row}: a token is not a number"]
    problems = []
    for b in range(0, len(values), TOKENS_PER_BOX):
        cls, score, x1, y1, x2, y2 = values[b:b + TOKENS_PER_BOX]
        if not all(math.isfinite(v) for v in values[b:b + TOKENS_PER_BOX]):
            problems.append(f"row {row} box {b // TOKENS_PER_BOX + 1}: NaN/inf")
        elif int(cls) != cls or int(cls) not in cat_ids:
            problems.append(f"row {row} box {b // TOKENS_PER_BOX + 1}: class {cls:g} not in {sorted(cat_ids)}")
        elif not 0 <= score <= 1:
            problems.append(f"row {row} box {b // TOKENS_PER_BOX + 1}: score {score:g} outside [0, 1]")
        elif x2 <= x1 or y2 <= y1:
            problems.append(f"row {row} box {b // TOKENS_PER_BOX + 1}: x_max/y_max must exceed x_min/y_min")
    return problems


def box_submission_problems(frame: pd.DataFrame, image_ids: Sequence[str], cat_ids: Sequence[int]) -> list[str]:
    """Every problem: columns, each test image exactly once, each box's six tokens."""
    if tuple(frame.columns) != COLUMNS:
        return [f"columns are {list(frame.columns)}; expected {list(COLUMNS)}"]
    problems = id_coverage_problems(frame["image_id"], image_ids, "image_id")
    for i, text in enumerate(frame["PredictionString"].fillna("").astype(str), start=1):
        problems += _row_problems(i, text, set(int(c) for c in cat_ids))
        if len(problems) > 50:
            problems.append("… (more problems not listed)")
            break
    return problems


def write_box_submission(results: Sequence[dict[str, Any]], images: Sequence[dict[str, Any]],
                         cat_ids: Sequence[int], path: Path) -> Path:
    """Validate, then write atomically (nothing is written when a problem is found)."""
    frame = boxes_frame(results, images)
    problems = box_submission_problems(frame, [image_key(im) for im in images], cat_ids)
    if problems:
        raise SubmissionError("\n".join([f"{path} would have {len(problems)} problem(s):", *problems]), problems)
    return save_csv(path, frame)


def read_box_submission(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"image_id": str}, keep_default_na=False)
