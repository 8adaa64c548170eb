"""The class table: the competition's class ids ↔ the model's contiguous indices.

A competition labels masks with its own ids (COCO category ids 1..90 with gaps, ADE20K 1..150,
NYUv2 1..13) and marks unlabelled pixels with void ids (0, 255). The model predicts indices
0..C-1. The table maps masks to targets (void → ``IGNORE_INDEX``, an id outside the table is an
error naming the values), gives the reports their class names and maps predictions back to the
competition's ids for the submission.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from kagglekit.formats.images import FormatError

IGNORE_INDEX = 255
NYUV2_CLASSES = ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa",
                 "table", "tv", "wall", "window")


@dataclass(frozen=True)
class ClassTable:
    """``ids[k]`` is the competition id of model index k, ``names[k]`` its name; pixels whose id
    is in ``ignore_ids`` are void (not scored, not trained on)."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    ignore_ids: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not 0 < len(self.ids) < IGNORE_INDEX:
            raise ValueError(f"the class table needs 1..{IGNORE_INDEX - 1} classes, got {len(self.ids)}")
        if len(set(self.ids)) != len(self.ids) or len(self.names) != len(self.ids):
            raise ValueError(f"class ids must be unique with one name each (ids {list(self.ids)[:20]}, "
                             f"{len(self.names)} names)")
        if clash := set(self.ids) & set(self.ignore_ids):
            raise ValueError(f"class ids {sorted(clash)} are also ignore ids; an id is a class or void, not both")
        if min(self.ids + self.ignore_ids) < 0:
            raise ValueError("class and ignore ids must be >= 0")

    @property
    def num_classes(self) -> int:
        return len(self.ids)

    @property
    def background(self) -> int:
        """The id unlabelled pixels get in a written label map (the first ignore id, else 0)."""
        return self.ignore_ids[0] if self.ignore_ids else 0

    def _lut(self, size: int) -> np.ndarray:
        """Id → index lookup; -1 marks ids that are neither a class nor void."""
        lut = np.full(max(size, max(self.ids + self.ignore_ids) + 1), -1, np.int64)
        lut[list(self.ids)] = np.arange(len(self.ids))
        lut[list(self.ignore_ids)] = IGNORE_INDEX
        return lut

    def unknown_values(self, mask: np.ndarray) -> list[int]:
        """Values of ``mask`` that are neither a class id nor an ignore id (sorted)."""
        values = np.unique(mask)
        known = set(self.ids) | set(self.ignore_ids)
        return [int(v) for v in values if int(v) not in known]

    def to_target(self, mask: np.ndarray, path: Path | str = "mask") -> np.ndarray:
        """Mask (H, W) of competition ids → target (H, W) uint8 indices, void = IGNORE_INDEX."""
        mask = np.asarray(mask)
        if mask.size and mask.min() < 0:
            raise FormatError(f"{path}: negative mask values; expected class ids >= 0")
        lut = self._lut(int(mask.max()) + 1 if mask.size else 1)
        target = lut[mask]
        if (target < 0).any():
            raise FormatError(f"{path}: mask values {self.unknown_values(mask)[:20]} are not in the class table "
                              f"(class ids {_short(self.ids)}, ignore ids {list(self.ignore_ids)}); add them to "
                              "class_ids / classes_csv or to ignore_ids")
        return target.astype(np.uint8)

    def to_ids(self, indices: np.ndarray) -> np.ndarray:
        """Predicted indices (H, W) 0..C-1 (IGNORE_INDEX → background) → competition ids (H, W) int32."""
        lut = np.full(256, self.background, np.int32)
        lut[: self.num_classes] = self.ids
        return lut[np.asarray(indices, dtype=np.uint8)]


def _short(ids: Sequence[int]) -> str:
    ids = list(ids)
    return str(ids) if len(ids) <= 20 else f"{ids[:20]}... ({len(ids)} ids)"


def read_classes_csv(path: Path) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """``id,name`` rows (any extra columns ignored) → (ids, names) in file order."""
    if not path.is_file():
        raise FormatError(f"{path}: classes file not found; expected a CSV with columns id,name")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"id", "name"} <= set(frame.columns):
        raise FormatError(f"{path}: expected columns id,name (one row per class), found {list(frame.columns)}")
    try:
        ids = tuple(int(v) for v in frame["id"])
    except ValueError:
        raise FormatError(f"{path}: column id must hold integers") from None
    return ids, tuple(frame["name"])


def class_table(num_classes: int, class_ids: Sequence[int] = (), class_names: Sequence[str] = (),
                ignore_ids: Sequence[int] = (0,), classes_csv: str | Path = "") -> ClassTable:
    """The table from the config's fields: ``classes_csv`` (id,name rows) or ``class_ids`` (+
    ``class_names``), else ids 1..num_classes (NYUv2's convention: 0 = void, k = class k; NYUv2
    names up to 13 classes, ``class<k>`` beyond). ``num_classes`` must match the table's size."""
    if classes_csv:
        class_ids, class_names = read_classes_csv(Path(classes_csv))
    ids = tuple(int(i) for i in class_ids) or tuple(range(1, num_classes + 1))
    if len(ids) != num_classes:
        source = f"classes_csv {classes_csv}" if classes_csv else "class_ids"
        raise ValueError(f"num_classes={num_classes} but {source} lists {len(ids)} classes; set num_classes={len(ids)}")
    names = tuple(class_names) or (NYUV2_CLASSES[:num_classes] if num_classes <= len(NYUV2_CLASSES) and not class_ids
                                   else tuple(f"class{i}" for i in ids))
    return ClassTable(ids, tuple(str(n) for n in names), tuple(int(i) for i in ignore_ids))
