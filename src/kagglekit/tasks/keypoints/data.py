"""COCO keypoint data for torchvision's Keypoint R-CNN, and source mixing with oversampling.

Items: ``{"image": (3, H, W) float [0, 1], "boxes": (n, 4) xyxy, "labels": (n,) ones,
"keypoints": (n, K, 3) [x, y, v] px, "image_id": int}``. A horizontal flip mirrors x (W - x) and
swaps every left/right pair, seeded by (seed, epoch, index) so resume stays exact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from kagglekit.tasks.detection.data import DetectionDataset
from kagglekit.tta.keypoints import hflip_keypoints


def keypoint_names(coco: dict[str, Any]) -> list[str]:
    """Keypoint names of the (single) category that has them."""
    cats = [c for c in coco["categories"] if c.get("keypoints")]
    if len(cats) != 1:
        raise ValueError(f"expected one category with 'keypoints' names, found {len(cats)}; "
                         "a keypoint dataset needs exactly one (e.g. person or car)")
    return list(cats[0]["keypoints"])


class KeypointDataset(Dataset):
    """One COCO keypoints source; crowd and keypoint-free boxes stay out of training targets."""

    def __init__(self, coco: dict[str, Any], image_dir: Path, *, train: bool, hflip_p: float = 0.0,
                 flip_pairs: Sequence[tuple[int, int]] = (), seed: int = 0) -> None:
        self.k = len(keypoint_names(coco))
        self.base = DetectionDataset(coco, image_dir, train=False)  # image loading + the COCO subset
        self.coco, self.images = self.base.coco, self.base.images
        self.train, self.hflip_p, self.flip_pairs, self.seed, self.epoch = train, hflip_p, list(flip_pairs), seed, 0
        anns: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in self.images}
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            if not a.get("iscrowd", 0) and w > 0 and h > 0 and a["image_id"] in anns:
                anns[a["image_id"]].append(a)
        self.anns = [anns[im["id"]] for im in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load_image(self, i: int) -> torch.Tensor:
        return self.base.load_image(i)

    def targets(self, i: int) -> dict[str, torch.Tensor]:
        anns = self.anns[i]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32).reshape(-1, 4)
        kpts = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float32).reshape(-1, self.k, 3)
        return {"boxes": boxes, "labels": torch.ones(len(anns), dtype=torch.int64), "keypoints": kpts}

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, target = self.load_image(i), self.targets(i)
        if self.train and self.hflip_p > 0 and np.random.default_rng([self.seed, self.epoch, i]).random() < self.hflip_p:
            width = image.shape[-1]
            image = image.flip(-1)
            b = target["boxes"]
            target["boxes"] = torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], dim=1)
            target["keypoints"] = hflip_keypoints(target["keypoints"], width, self.flip_pairs)
        return {"image": image, **target, "image_id": int(self.images[i]["id"])}

    @staticmethod
    def collate_fn(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"images": [it["image"] for it in items],
                "targets": [{k: it[k] for k in ("boxes", "labels", "keypoints")} for it in items],
                "image_id": torch.tensor([it["image_id"] for it in items], dtype=torch.int64)}


class MixedDataset(Dataset):
    """Sources concatenated; ``repeat_factors`` (the engine's repeat-factor sampler) makes each
    pass draw every item of source s exactly ``factors[s]`` times (integer factors: no rounding),
    e.g. real ×8 so the real domain is not outvoted by synthetic frames (seed 002)."""

    def __init__(self, sources: Sequence[KeypointDataset], factors: Sequence[int]) -> None:
        if len(sources) != len(factors) or any(int(f) != f or f < 1 for f in factors):
            raise ValueError(f"oversampling factors {list(factors)} must be integers >= 1, one per source")
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(s) for s in sources])
        self.repeat_factors = np.concatenate([np.full(len(s), float(f)) for s, f in zip(sources, factors)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        for source in self.sources:
            source.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.sources[s][i - int(self.offsets[s])]

    collate_fn = staticmethod(KeypointDataset.collate_fn)


def dataset_problems(dataset: KeypointDataset, source: str) -> list[str]:
    """Pre-flight of one source: every image missing or not decodable, and every annotation whose
    ``keypoints`` is not 3 × K numbers (it would fail in the middle of an epoch)."""
    from kagglekit.tasks.detection.data import coco_image_problems
    problems = coco_image_problems(dataset.coco, dataset.base.image_dir, source)
    width = 3 * dataset.k
    problems += [f"{source}: annotation id {a.get('id')} (image {a['image_id']}) has {len(a.get('keypoints') or [])} "
                 f"keypoint values, expected {width} (x, y, v for {dataset.k} keypoints); fix or drop it"
                 for anns in dataset.anns for a in anns if len(a.get("keypoints") or []) != width]
    return problems
