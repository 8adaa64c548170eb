"""COCO-format detection data for torchvision detectors: dataset, collate, class subsets, repeat
factors (LVIS), and per-image class presence for k-fold stratification.

Items are ``{"image": (3, H, W) float in [0, 1] at the stored size, "boxes": (n, 4) xyxy px,
"labels": (n,) int64 in 1..C (0 is background), "image_id": int}``; the detector's transform
resizes (min size sampled per image in training) and maps predictions back to (H, W).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from kagglekit.tasks.detection.convert import LabelError


def subset_classes(coco: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Keep only the categories called ``names`` (and their annotations); images are all kept."""
    by_name = {c["name"]: c for c in coco["categories"]}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise LabelError(f"class_subset names {missing} are not categories of the data "
                         f"(have {sorted(by_name)[:20]}...); fix class_subset")
    keep = {by_name[n]["id"] for n in names}
    return {**coco, "categories": [c for c in coco["categories"] if c["id"] in keep],
            "annotations": [a for a in coco["annotations"] if a["category_id"] in keep]}


def select_images(coco: dict[str, Any], image_ids: Sequence[int]) -> dict[str, Any]:
    """The COCO dict restricted to ``image_ids`` (in that order), e.g. one fold's validation set."""
    wanted = set(int(i) for i in image_ids)
    by_id = {im["id"]: im for im in coco["images"]}
    return {**coco, "images": [by_id[int(i)] for i in image_ids],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in wanted]}


def class_presence(coco: dict[str, Any]) -> tuple[list[int], np.ndarray]:
    """(image ids, (n_images, C) 0/1 matrix: does image i contain category c) for stratified folds."""
    cat_index = {c["id"]: j for j, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
    row = {im["id"]: i for i, im in enumerate(coco["images"])}
    presence = np.zeros((len(row), len(cat_index)), dtype=np.int64)
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0):
            presence[row[a["image_id"]], cat_index[a["category_id"]]] = 1
    return [im["id"] for im in coco["images"]], presence


def repeat_factors(coco: dict[str, Any], threshold: float) -> np.ndarray:
    """LVIS repeat factors (Gupta et al. 2019; detectron2 ``repeat_factors_from_category_frequency``):
    f_c = share of images containing c, r_c = max(1, sqrt(t / f_c)), r_image = max over its classes
    (1 for images without objects). Returns (n_images,) in ``coco["images"]`` order."""
    _, presence = class_presence(coco)
    freq = presence.mean(axis=0)
    r_cat = np.where(freq > 0, np.maximum(1.0, np.sqrt(threshold / np.maximum(freq, 1e-12))), 1.0)
    return np.where(presence.any(axis=1), (presence * r_cat).max(axis=1), 1.0)


class DetectionDataset(Dataset):
    """Images + boxes of a COCO dict. Crowd boxes and boxes without area are left out of training
    targets (torchvision's detectors cannot use them; COCOeval still sees them as ignore regions).
    ``hflip_p``: flip probability (0.5 in the seeds), drawn from an RNG seeded by (seed, epoch,
    index), so a resumed run (even with workers, mid-pass) sees the same flips."""

    def __init__(self, coco: dict[str, Any], image_dir: Path, *, train: bool, hflip_p: float = 0.0,
                 seed: int = 0, filter_empty: bool = False) -> None:
        self.image_dir, self.train, self.hflip_p, self.seed, self.epoch = Path(image_dir), train, hflip_p, seed, 0
        self.cat_ids = sorted(c["id"] for c in coco["categories"])
        label_of = {cid: i + 1 for i, cid in enumerate(self.cat_ids)}
        boxes: dict[int, list[list[float]]] = {im["id"]: [] for im in coco["images"]}
        labels: dict[int, list[int]] = {im["id"]: [] for im in coco["images"]}
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            if a.get("iscrowd", 0) or w <= 0 or h <= 0:
                continue
            boxes[a["image_id"]].append([x, y, x + w, y + h])
            labels[a["image_id"]].append(label_of[a["category_id"]])
        images = [im for im in coco["images"] if not (filter_empty and not boxes[im["id"]])]
        self.images = images
        self.boxes = [np.asarray(boxes[im["id"]], dtype=np.float32).reshape(-1, 4) for im in images]
        self.labels = [np.asarray(labels[im["id"]], dtype=np.int64) for im in images]
        self.coco = select_images(coco, [im["id"] for im in images])

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load_image(self, i: int) -> torch.Tensor:
        """(3, H, W) float32 in [0, 1]; greyscale/RGBA converted to RGB."""
        path = self.image_dir / self.images[i]["file_name"]
        if not path.exists():
            raise LabelError(f"{path}: image listed in the annotations is missing; fix image_dir or the JSON")
        with Image.open(path) as im:
            array = np.array(im.convert("RGB"), dtype=np.uint8)  # writable copy
        return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self.load_image(i)
        boxes, labels = torch.from_numpy(self.boxes[i].copy()), torch.from_numpy(self.labels[i])
        flip_rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.train and self.hflip_p > 0 and flip_rng.random() < self.hflip_p:
            width = image.shape[-1]
            image = image.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        return {"image": image, "boxes": boxes, "labels": labels, "image_id": int(self.images[i]["id"])}

    @staticmethod
    def collate_fn(items: list[dict[str, Any]]) -> dict[str, Any]:
        """Images differ in size: lists of tensors plus an ``image_id`` (B,) tensor."""
        return {"images": [it["image"] for it in items],
                "targets": [{"boxes": it["boxes"], "labels": it["labels"]} for it in items],
                "image_id": torch.tensor([it["image_id"] for it in items], dtype=torch.int64)}



def coco_image_problems(coco: dict[str, Any], image_dir: Path, source: str) -> list[str]:
    """Pre-flight: every image of ``coco`` missing under ``image_dir`` or not decodable (header
    only), one line each (one line for the folder when none of many is there)."""
    from kagglekit.experiment.preflight import image_problems
    paths = [Path(image_dir) / im["file_name"] for im in coco["images"]]
    return image_problems(paths, "image", f"restore it, or fix image_dir (now {image_dir}) or its file_name in {source}",
                          source)
