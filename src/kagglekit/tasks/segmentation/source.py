"""Where a split's images, masks and (optional) depth maps are: one :class:`SplitFiles` per split,
whatever the on-disk layout.

Layouts (config ``layout``):

- ``nyuv2`` (the seed's): ``<root>/<split>.csv`` (column ``id``), ``<root>/<split>/image/<id>.png``,
  ``label/<id>.png``, ``depth/<id>.png`` (16-bit millimetres).
- ``folders`` (most Kaggle segmentation data): an image folder and a mask folder per split,
  files matched by stem (``images/abc.jpg`` ↔ ``masks/abc.png``), any of JPEG / PNG / TIFF / BMP /
  WebP; ids are the file stems, or the ``id_column`` of an ids CSV; optional depth folder; masks
  may instead come from an RLE CSV in the competition's submission format (``train_masks_csv``).
  Paths in the config are relative to the data root (absolute ones are used as they are).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from kagglekit.formats.images import FormatError, files_by_stem


@dataclass(frozen=True)
class SplitFiles:
    """One split: ``ids`` in order, the image file of each id, its mask file (None: no labels
    here, or labels in ``masks_csv``) and depth file (None: no depth)."""

    name: str
    ids: tuple[str, ...]
    images: dict[str, Path]
    masks: dict[str, Path] | None = None
    depth: dict[str, Path] | None = None
    masks_csv: Path | None = None

    @property
    def has_labels(self) -> bool:
        return self.masks is not None or self.masks_csv is not None

    def subset(self, ids: Sequence[str]) -> "SplitFiles":
        missing = [i for i in ids if i not in self.images]
        if missing:
            raise FormatError(f"split {self.name}: ids {missing[:10]} have no image file (folds.csv from other data?)")
        return SplitFiles(self.name, tuple(str(i) for i in ids), self.images, self.masks, self.depth, self.masks_csv)


def _ids_from_csv(path: Path, id_column: str) -> tuple[str, ...]:
    if not path.is_file():
        raise FormatError(f"{path}: ids file not found; give the CSV listing the split's ids (column {id_column!r})")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if id_column not in frame.columns:
        raise FormatError(f"{path}: needs a column {id_column!r} (set id_column), found {list(frame.columns)}")
    return tuple(dict.fromkeys(frame[id_column].astype(str)))  # unique, file order (RLE CSVs repeat ids)


def nyuv2_split(root: Path, split: str, labels: bool, depth: bool) -> SplitFiles:
    """The seed layout; file existence is checked by the pre-flight, not here."""
    ids = _ids_from_csv(root / f"{split}.csv", "id")
    folder = root / split

    def files(kind: str) -> dict[str, Path]:
        return {i: folder / kind / f"{i}.png" for i in ids}
    return SplitFiles(split, ids, files("image"), files("label") if labels else None, files("depth") if depth else None)


def _resolve(root: Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else root / path


def folder_split(root: Path, split: str, images: str, masks: str = "", depth: str = "", ids_csv: str = "",
                 id_column: str = "id", masks_csv: str = "") -> SplitFiles:
    """Image folder (+ mask / depth folders, or an RLE ``masks_csv``) → the split's files.
    Ids: the ids CSV's ``id_column`` when given, else every image stem. An id without an image
    file is an error; one without a mask file is reported by the pre-flight."""
    image_files = files_by_stem(_resolve(root, images))
    ids = _ids_from_csv(_resolve(root, ids_csv), id_column) if ids_csv else tuple(image_files)
    if not ids:
        raise FormatError(f"{_resolve(root, images)}: no image files ({', '.join(('png', 'jpg', 'tif'))} ...) for split {split}")
    if missing := [i for i in ids if i not in image_files]:
        raise FormatError(f"{_resolve(root, images)}: no image for ids {missing[:10]}"
                          + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "") + f" listed by {ids_csv}")
    mask_files = _by_id(root, masks, ids) if masks else None
    depth_files = _by_id(root, depth, ids) if depth else None
    return SplitFiles(split, ids, image_files, mask_files, depth_files,
                      _resolve(root, masks_csv) if masks_csv else None)


def _by_id(root: Path, folder: str, ids: Sequence[str]) -> dict[str, Path]:
    """Files of ``folder`` by stem; ids without one map to ``<folder>/<id>.png`` (the pre-flight names it)."""
    found = files_by_stem(_resolve(root, folder))
    return {i: found.get(i, _resolve(root, folder) / f"{i}.png") for i in ids}


def split_marker(cfg, root: Path, split: str) -> Path:
    """The file / folder whose presence means the data has ``split`` (nyuv2: ``<split>.csv``;
    folders: the split's image folder)."""
    if cfg.layout == "nyuv2":
        return root / f"{split}.csv"
    return _resolve(root, cfg.train_images if split == "train" else cfg.test_images)


def has_split(cfg, root: Path, split: str) -> bool:
    return split_marker(cfg, root, split).exists()


def split_files_for(cfg, root: Path, split: str) -> SplitFiles:
    """Adapter at the edge: the config's layout fields → :class:`SplitFiles` of ``split``. Depth
    is read only when the model uses it (``use_depth_input``; for training also the ``depth_aux``
    target) and, for ``folders``, a depth folder is configured."""
    wants_depth = cfg.use_depth_input or (cfg.depth_aux and split == "train")
    if cfg.layout == "nyuv2":
        return nyuv2_split(root, split, labels=split == "train", depth=wants_depth)
    if split == "train":
        return folder_split(root, split, cfg.train_images, "" if cfg.train_masks_csv else cfg.train_masks,
                            cfg.train_depth if wants_depth else "", cfg.train_ids_csv, cfg.id_column, cfg.train_masks_csv)
    return folder_split(root, split, cfg.test_images, cfg.test_masks, cfg.test_depth if wants_depth else "",
                        cfg.test_ids_csv, cfg.id_column)
