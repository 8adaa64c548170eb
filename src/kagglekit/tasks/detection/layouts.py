"""Detection data in the layouts competitors bring, turned into the COCO dicts the task reads.

- ``data_format=darknet``: ``obj.data`` / ``obj.names`` (or the flat ``images/`` + ``labels/`` +
  ``obj.names`` without any split), read by :func:`kagglekit.formats.yolo.read_darknet`;
  ``data_format=ultralytics``: a ``data.yaml`` (:func:`kagglekit.formats.yolo.read_ultralytics`).
  Every split present becomes ``<work>/annotations/instances_<split>.json`` once (YOLO class i →
  COCO category id i + 1, as the ``yolo`` converter does; the class id the label files use is
  therefore ``category_id - 1``); ``file_name`` is relative to the dataset root.
- ``test_images``: a folder (or list file) of unlabelled test images → a test split without
  annotations (Kaggle's ``test/`` folder).
- :func:`holdout_ids`: the seeded ``val_fraction`` hold-out of a train split without a val split,
  recorded once in ``<work>/holdout.csv`` (``id,file_name,split``) so every run and every
  ensemble member validates on the same images.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from kagglekit.formats.images import FormatError
from kagglekit.formats.yolo import YoloDataset, list_image_files, read_darknet, read_list_file, read_ultralytics
from kagglekit.io import file_lock, save_csv, save_json
from kagglekit.tasks.detection import convert as C

log = logging.getLogger("kagglekit.detection")
DESCRIPTOR_DEFAULTS = {"darknet": "", "ultralytics": "data.yaml"}


def read_descriptor(data_format: str, root: Path, data_file: str = "") -> YoloDataset:
    """The darknet / Ultralytics descriptor of the data in ``root`` (``data_file`` relative to it)."""
    if data_format == "darknet":
        return read_darknet(root, data_file)
    path = Path(data_file or DESCRIPTOR_DEFAULTS["ultralytics"])
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise FormatError(f"{path}: Ultralytics data.yaml not found; set data_file=<the dataset YAML>")
    return read_ultralytics(path)


def _image_dir(dataset_root: Path, root: Path) -> str:
    """Where ``file_name``s are relative to, as the task records it (relative to ``root`` when inside)."""
    try:
        return dataset_root.resolve().relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        return str(dataset_root.resolve())


def descriptor_coco(dataset: YoloDataset, split: str, root: Path) -> dict[str, Any]:
    """COCO dict of one split (labels validated line by line: ``file:line`` errors)."""
    pairs = [(im.file_name, im.path, im.label) for im in dataset.images(split)]
    info = {"description": f"{dataset.descriptor.name} split {split}", "image_dir": _image_dir(dataset.root, root),
            "source": str(dataset.descriptor)}
    return C.pairs_to_coco(pairs, dataset.names, info)


def export_descriptor_splits(dataset: YoloDataset, root: Path, out_dir: Path) -> dict[str, Path]:
    """``out_dir/instances_<split>.json`` for every split of ``dataset`` (atomic writes)."""
    written = {}
    for split in dataset.splits:
        written[split] = save_json(out_dir / f"instances_{split}.json", descriptor_coco(dataset, split, root))
    log.info("converted %s (%s) to COCO JSON in %s", dataset.descriptor, ", ".join(written), out_dir)
    return written


def test_images_coco(source: Path, root: Path, categories: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """An unlabelled test split from a folder (recursive) or a list file of image paths."""
    if not source.exists():
        raise FormatError(f"{source}: test_images not found; expected a folder of images or a list file")
    paths = list_image_files(source) if source.is_dir() else read_list_file(source, [source.parent, root])
    if not paths:
        raise FormatError(f"{source}: no test images found")
    base = source if source.is_dir() else root
    pairs = sorted((p.relative_to(base).as_posix() if p.is_relative_to(base) else p.as_posix(), p) for p in paths)
    images = []
    for image_id, (file_name, path) in enumerate(pairs, 1):
        width, height = C.image_size(path)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
    return {"info": {"description": f"test images of {source}", "image_dir": _image_dir(base, root)},
            "images": images, "annotations": [], "categories": [dict(c) for c in categories]}


# ----------------------------------------------------------------------------------- hold-out
def _holdout_frame(train: dict[str, Any], fraction: float, seed: int) -> pd.DataFrame:
    images = sorted(train["images"], key=lambda im: im["id"])
    n_val = max(1, int(round(fraction * len(images))))
    if n_val >= len(images):
        raise ValueError(f"val_fraction={fraction} of {len(images)} train images leaves none to train on; lower it")
    chosen = set(np.random.default_rng(seed).permutation(len(images))[:n_val].tolist())
    return pd.DataFrame({"id": [im["id"] for im in images], "file_name": [im["file_name"] for im in images],
                         "split": ["val" if i in chosen else "train" for i in range(len(images))]})


def holdout_ids(train: dict[str, Any], fraction: float, seed: int, path: Path) -> tuple[list[int], list[int]]:
    """(train ids, val ids): a seeded ``fraction`` of the train images held out for validation,
    made once and read from ``path`` afterwards (it must list exactly these images, with the
    count ``fraction`` gives; else ValueError saying to delete it)."""
    wanted = _holdout_frame(train, fraction, seed)
    with file_lock(path.with_name(f".{path.name}.lock")):
        if not path.exists():
            save_csv(path, wanted)
            log.info("val_fraction=%g: %d of %d train images held out for validation (%s)",
                     fraction, int((wanted["split"] == "val").sum()), len(wanted), path)
        saved = pd.read_csv(path, dtype={"file_name": str, "split": str})
    if set(saved.columns) != {"id", "file_name", "split"} or not set(saved["split"]) <= {"train", "val"}:
        raise ValueError(f"{path}: expected columns id,file_name,split with split train/val; delete it to regenerate")
    same_images = sorted(zip(saved["id"], saved["file_name"])) == sorted(zip(wanted["id"], wanted["file_name"]))
    if not same_images or int((saved["split"] == "val").sum()) != int((wanted["split"] == "val").sum()):
        raise ValueError(f"{path} was made for other train images or another val_fraction "
                         f"(wanted {int((wanted['split'] == 'val').sum())} val of {len(wanted)}); "
                         "delete it to regenerate (runs made with it then no longer compare)")
    return ([int(i) for i in saved.loc[saved["split"] == "train", "id"]],
            [int(i) for i in saved.loc[saved["split"] == "val", "id"]])
