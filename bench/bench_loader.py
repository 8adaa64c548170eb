"""Segmentation training loader vs a plain cv2 loop, per core: items/s of ``dataset[i]``.

    python bench/bench_loader.py [--n 64] [--repeats 5] [--size 480 640] [--data DIR]

Data (written to a temp folder, or reused from ``--data``): ``--n`` procedural NYUv2 rooms of
``--size`` from :mod:`kagglekit.demo.nyuv2` in the seed layout (RGB PNG, 16-bit depth PNG in mm,
8-bit label PNG), plus the same frames as a ``folders`` layout with JPEG images (quality 90).

Settings: the seed exp093 transform from :class:`SegmentationConfig`'s defaults (resize to
720×960, random scale ±25 %, pad, 576×768 crop, flip 0.5), with depth read for the depth head;
``rgbd`` = exp093_5 (inverse depth as a 4th input channel), ``rgb`` = exp093_2.

Baseline ("plain", measured in the same run): per item ``cv2.imread`` of image (BGR→RGB), label
and depth, label → target by a numpy look-up table, depth mm → m, the same albumentations
transform (depth negated through it, as the library does, so padding becomes missing), in-place
normalisation of one float32 buffer, a C-contiguous (C, H, W) input and ``torch.from_numpy``.
It builds the same item as the library (checked once, before timing: masks and depth equal,
images within 1e-5, the float32 rounding of its multiply-by-reciprocal normalisation).

Timing: best of ``--repeats`` interleaved rounds (library, plain, library, plain, ...), each over
all items with the transform reseeded identically, so both draw the same crops; torch and OpenCV
on one thread (a per-core figure, as one DataLoader worker). ``worker batch`` adds the work a
DataLoader worker does per batch of 4 (items + ``default_collate``), against a plain loop that
returns ``ToTensorV2``-style non-contiguous (C, H, W) views and leaves the copy to the collate.
Ratios are library time / plain time: <= 1.0 means the library is at least as fast.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations' import-time version check is a network call

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402

from kagglekit.demo.nyuv2 import generate_nyuv2  # noqa: E402
from kagglekit.tasks.segmentation import data as D  # noqa: E402
from kagglekit.tasks.segmentation.classes import class_table  # noqa: E402
from kagglekit.tasks.segmentation.config import SegmentationConfig  # noqa: E402
from kagglekit.tasks.segmentation.source import SplitFiles  # noqa: E402

MEAN255 = D.IMAGENET_MEAN * 255.0
INV_STD255 = 1.0 / (D.IMAGENET_STD * 255.0)
BATCH = 4  # the seed's batch_size


def make_data(root: Path, n: int, hw: tuple[int, int]) -> tuple[Path, Path]:
    """(nyuv2 root, folders root): the demo rooms, and the same frames with JPEG images."""
    nyu = root / "nyuv2"
    if not (nyu / "train.csv").exists():
        generate_nyuv2(nyu, n_train=n, n_test=0, height=hw[0], width=hw[1], seed=0)
    folders = root / "folders"
    if not (folders / "masks").is_dir():
        for kind in ("images", "masks", "depth"):
            (folders / kind).mkdir(parents=True, exist_ok=True)
        for i in D.read_ids(nyu / "train.csv"):
            Image.open(nyu / "train/image" / f"{i}.png").save(folders / "images" / f"{i}.jpg", quality=90)
            shutil.copy(nyu / "train/label" / f"{i}.png", folders / "masks" / f"{i}.png")
            shutil.copy(nyu / "train/depth" / f"{i}.png", folders / "depth" / f"{i}.png")
    return nyu, folders


def seed_transform():
    c = SegmentationConfig()
    return D.build_train_transform((c.input_h, c.input_w), (c.crop_h, c.crop_w), (c.scale_min, c.scale_max), c.hflip_p)


def library_dataset(layout: str, root: Path, use_depth: bool) -> D.SegmentationDataset:
    """The dataset the task builds for training (nyuv2: the seed preset; folders: generic readers)."""
    if layout == "nyuv2":
        ids = D.read_ids(root / "train.csv")
        return D.NYUv2Dataset(root, ids, transform=seed_transform(), use_depth_input=use_depth)
    ids = tuple(sorted(p.stem for p in (root / "images").iterdir()))
    files = SplitFiles("train", ids, {i: root / "images" / f"{i}.jpg" for i in ids},
                       {i: root / "masks" / f"{i}.png" for i in ids}, {i: root / "depth" / f"{i}.png" for i in ids})
    return D.SegmentationDataset(files, class_table(13), seed_transform(), use_depth, True, D.GENERIC_READERS)


class Plain:
    """The hand-written loop over the same files (see the module docstring)."""

    def __init__(self, ds: D.SegmentationDataset, use_depth: bool, contiguous: bool = True) -> None:
        self.files, self.ids, self.use_depth, self.contiguous = ds.files, ds.ids, use_depth, contiguous
        self.transform = seed_transform()
        self.lut = np.full(256, 254, np.uint8)  # 0 → void, k → k - 1 (the 13-class table)
        self.lut[0], self.lut[1:14] = D.IGNORE_INDEX, np.arange(13)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        i = self.ids[index]
        image = cv2.cvtColor(cv2.imread(str(self.files.images[i]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        label = cv2.imread(str(self.files.masks[i]), cv2.IMREAD_UNCHANGED)
        depth = cv2.imread(str(self.files.depth[i]), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0
        out = self.transform(image=image, mask=self.lut[label], depth=-depth)
        depth = -out["depth"]
        depth[depth < 0] = 0.0
        x = out["image"].astype(np.float32)
        x -= MEAN255
        x *= INV_STD255
        planes = x.transpose(2, 0, 1)
        if self.use_depth:
            planes = np.concatenate([planes, D.inverse_depth(depth)[None]])  # a contiguous copy
        elif self.contiguous:
            planes = np.ascontiguousarray(planes)
        return {"image": torch.from_numpy(planes), "id": i, "orig_size": torch.tensor(image.shape[:2]),
                "depth": torch.from_numpy(depth[None]), "mask": torch.from_numpy(out["mask"].astype(np.int64))}


def check_same(ds: D.SegmentationDataset, plain: Plain) -> None:
    for index in (0, len(ds) - 1):
        ds.transform.set_random_seed(index)
        plain.transform.set_random_seed(index)
        a, b = ds[index], plain[index]
        assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["depth"], b["depth"]), "masks / depth differ"
        assert a["image"].shape == b["image"].shape, "image shapes differ"
        assert torch.allclose(a["image"], b["image"], atol=1e-5), "images differ"
        assert a["image"].is_contiguous() and a["depth"].is_contiguous() and a["mask"].is_contiguous()


def run_items(ds, seed: int) -> float:
    ds.transform.set_random_seed(seed)
    start = time.perf_counter()
    for index in range(len(ds)):
        ds[index]
    return time.perf_counter() - start


def run_batches(ds, seed: int) -> float:
    ds.transform.set_random_seed(seed)
    start = time.perf_counter()
    for first in range(0, len(ds) - BATCH + 1, BATCH):
        default_collate([ds[index] for index in range(first, first + BATCH)])
    return time.perf_counter() - start


def compare(name: str, lib, plain, run: Callable, repeats: int) -> float:
    """Best-of-``repeats`` seconds of each, interleaved; prints items/s and the ratio."""
    best = {"library": float("inf"), "plain": float("inf")}
    run(lib, 0), run(plain, 0)  # warm-up: page cache, albumentations' lazy set-up
    for r in range(repeats):
        for key, ds in (("library", lib), ("plain", plain)):
            best[key] = min(best[key], run(ds, r + 1))
    n = len(lib) if run is run_items else (len(lib) // BATCH) * BATCH
    ratio = best["library"] / best["plain"]
    print(f"{name:34s} library {n / best['library']:6.1f} items/s   plain {n / best['plain']:6.1f} items/s   "
          f"ratio {ratio:.3f}  ({1000 * best['library'] / n:.1f} vs {1000 * best['plain'] / n:.1f} ms/item)")
    return ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", nargs=2, type=int, default=[480, 640])
    p.add_argument("--data", type=Path, default=None, help="reuse / keep the generated data here")
    args = p.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    tmp = None if args.data else tempfile.TemporaryDirectory(prefix="bench_loader_")
    root = args.data or Path(tmp.name)
    start = time.perf_counter()
    nyu, folders = make_data(root, args.n, tuple(args.size))
    print(f"data: {args.n} frames {args.size[0]}x{args.size[1]} in {root} ({time.perf_counter() - start:.0f}s); "
          f"transform {SegmentationConfig().input_h}x{SegmentationConfig().input_w} -> crop "
          f"{SegmentationConfig().crop_h}x{SegmentationConfig().crop_w}; 1 thread; best of {args.repeats}")
    ratios = []
    for layout, layout_root, use_depth in (("nyuv2", nyu, True), ("nyuv2", nyu, False), ("folders", folders, True)):
        lib = library_dataset(layout, layout_root, use_depth)
        plain = Plain(lib, use_depth)
        check_same(lib, plain)
        setting = "rgbd (exp093_5)" if use_depth else "rgb (exp093_2)"
        label = f"{layout} {'PNG' if layout == 'nyuv2' else 'JPEG'} {setting}"
        ratios.append(compare(f"items  {label}", lib, plain, run_items, args.repeats))
    lib = library_dataset("nyuv2", nyu, True)
    compare("worker batch (4 + collate) nyuv2 rgbd", lib, Plain(lib, True, contiguous=False), run_batches, args.repeats)
    lib = library_dataset("nyuv2", nyu, False)
    compare("worker batch (4 + collate) nyuv2 rgb", lib, Plain(lib, False, contiguous=False), run_batches, args.repeats)
    print(f"loader per item: worst ratio {max(ratios):.3f} (goal <= 1.0)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"bench_loader: {time.perf_counter() - t0:.0f}s", file=sys.stderr)
