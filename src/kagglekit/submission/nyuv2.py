"""NYUv2 13-class semantic segmentation: Kaggle-style submission format.

Format
------
CSV with columns ``ImageId,ClassId,EncodedPixels``:

- ``ImageId``: the test image id, a string, e.g. ``0001`` (the ``NNNN`` of
  ``new_nyu_class13_NNNN.png``: the 1-based index among the 1449 labelled NYUv2 frames; keep the
  leading zeros).
- ``ClassId``: an integer 1..13 (1 bed, 2 books, 3 ceiling, 4 chair, 5 floor, 6 furniture,
  7 objects, 8 picture, 9 sofa, 10 table, 11 tv, 12 wall, 13 window). Void (0) is never written.
- ``EncodedPixels``: Kaggle RLE (see :mod:`kagglekit.submission.rle`) of the mask of that class
  in the predicted label map at the **original 480x640 resolution**: pixels numbered 1..307200
  top-to-bottom then left-to-right (column-major), ``start length`` pairs.

One row per test image **and** class present in its predicted label map (so an image has as many
rows as predicted classes). Every test image must appear; (ImageId, ClassId) pairs are unique and
the masks of one image's classes do not overlap. Pixels covered by no row count as void.

``sample_submission.csv`` has the same columns and one row per test image predicting everything as
wall: ``0001,12,1 307200``.

Example::

    ImageId,ClassId,EncodedPixels
    0001,5,"5 12 486 14 ..."
    0001,12,"1 4 481 5 ..."
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from kagglekit.submission.rle import SubmissionError, rle_decode
from kagglekit.submission.validate import NYUV2_COLUMNS, NYUV2_NUM_CLASSES, NYUV2_SHAPE

__all__ = [
    "NYUV2_CLASSES",
    "NYUV2_SHAPE",
    "decode_nyuv2_submission",
    "nyuv2_image_id",
    "nyuv2_rows",
    "nyuv2_sample_submission",
    "nyuv2_submission",
]

# Order verified against class13Mapping.mat:classNames (see the dataset README); index 0 = void.
NYUV2_CLASSES = ("void", "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
                 "picture", "sofa", "table", "tv", "wall", "window")
WALL = 12

_ID_FROM_NAME = re.compile(r"(\d+)\.png$")


def nyuv2_image_id(path: str | Path) -> str:
    """``.../new_nyu_class13_0001.png`` -> ``"0001"`` (the digits before ``.png``)."""
    match = _ID_FROM_NAME.search(Path(path).name)
    if match is None:
        raise ValueError(f"{path}: expected a file name ending in digits + .png, e.g. new_nyu_class13_0001.png")
    return match.group(1)


def _check_label_map(image_id: str, label_map: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    label_map = np.asarray(label_map)
    if label_map.ndim != 2 or label_map.dtype.kind not in "iu":
        raise ValueError(f"ImageId={image_id}: label map must be a 2-D integer array, got {label_map.dtype} {label_map.shape}")
    if shape is not None and label_map.shape != tuple(shape):
        raise ValueError(f"ImageId={image_id}: label map has shape {label_map.shape}, expected {tuple(shape)}; "
                         "resize predictions to the original resolution (nearest neighbour) first")
    if label_map.size and (label_map.min() < 0 or label_map.max() > NYUV2_NUM_CLASSES):
        raise ValueError(f"ImageId={image_id}: label values must be in 0..{NYUV2_NUM_CLASSES}, "
                         f"got range {label_map.min()}..{label_map.max()}")
    return label_map


def nyuv2_rows(image_id: str, label_map: np.ndarray, *,
               shape: tuple[int, int] | None = NYUV2_SHAPE) -> list[dict]:
    """Submission rows of one image: one dict per class 1..13 present in ``label_map``.

    Args:
        image_id: e.g. ``"0001"``.
        label_map: (H, W) integer label map, values 0..13 (0 = void, not written).
        shape: required (H, W) (default 480x640; None skips the check).
    Returns:
        ``[{"ImageId", "ClassId", "EncodedPixels"}, ...]`` sorted by ClassId.
    """
    label_map = _check_label_map(image_id, label_map, shape)
    flat = np.ascontiguousarray(label_map.T).reshape(-1)  # column-major pixel order
    # Split the flat map into maximal runs of one value; each class's runs are then its RLE
    # (neighbouring runs always differ in value, so no two runs of one class touch).
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    lengths = np.diff(np.append(starts, flat.size))
    values = flat[starts]
    rows = []
    for cls in np.unique(values):
        if cls == 0:
            continue
        sel = values == cls
        pairs = np.column_stack((starts[sel] + 1, lengths[sel])).ravel()
        rows.append({"ImageId": str(image_id), "ClassId": int(cls),
                     "EncodedPixels": " ".join(map(str, pairs.tolist()))})
    return rows


def nyuv2_submission(image_ids: list[str], label_maps: Iterable[np.ndarray], *,
                     shape: tuple[int, int] | None = NYUV2_SHAPE) -> pd.DataFrame:
    """Submission frame from predicted label maps ((H, W) each, values 0..13), in image order."""
    image_ids = [str(i) for i in image_ids]
    if len(set(image_ids)) != len(image_ids):
        dup = sorted({i for i in image_ids if image_ids.count(i) > 1})
        raise ValueError(f"image_ids must be unique; duplicated: {dup[:20]}")
    rows: list[dict] = []
    count = 0
    for image_id, label_map in zip(image_ids, label_maps):
        rows.extend(nyuv2_rows(image_id, label_map, shape=shape))
        count += 1
    if count != len(image_ids):
        raise ValueError(f"got {len(image_ids)} image_ids but only {count} label maps")
    frame = pd.DataFrame(rows, columns=list(NYUV2_COLUMNS))
    return frame.astype({"ImageId": str, "ClassId": np.int64, "EncodedPixels": str})


def nyuv2_sample_submission(image_ids: Iterable[str], *, shape: tuple[int, int] = NYUV2_SHAPE) -> pd.DataFrame:
    """Sample submission: one row per image predicting all pixels as wall (``ClassId 12, "1 307200"``)."""
    ids = [str(i) for i in image_ids]
    rle = f"1 {int(shape[0]) * int(shape[1])}"
    return pd.DataFrame({"ImageId": ids, "ClassId": np.full(len(ids), WALL, np.int64),
                         "EncodedPixels": [rle] * len(ids)})


def decode_nyuv2_submission(df: pd.DataFrame, image_id: str,
                            shape: tuple[int, int] = NYUV2_SHAPE) -> np.ndarray:
    """(H, W) uint8 label map of ``image_id`` rebuilt from a submission frame (0 where no class).

    Raises SubmissionError when the id has no rows, a ClassId is outside 1..13, an RLE is
    malformed, or two classes overlap.
    """
    rows = df[df["ImageId"].astype(str) == str(image_id)]
    if rows.empty:
        raise SubmissionError(f"no rows with ImageId={image_id!r} (ids are strings: keep leading zeros)")
    label = np.zeros(tuple(shape), np.uint8)
    for cls, rle in zip(rows["ClassId"].tolist(), rows["EncodedPixels"].tolist()):
        if not (float(cls).is_integer() and 1 <= int(cls) <= NYUV2_NUM_CLASSES):
            raise SubmissionError(f"ImageId={image_id}: ClassId {cls!r} is not an integer in 1..{NYUV2_NUM_CLASSES}")
        mask = rle_decode(rle, shape)
        if label[mask].any():
            other = int(label[mask][label[mask] > 0][0])
            raise SubmissionError(f"ImageId={image_id}: masks of ClassId {other} and {int(cls)} overlap")
        label[mask] = int(cls)
    return label
