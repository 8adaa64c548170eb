"""A procedural detection set in the YOLO layout -- circles, squares and triangles of random size
(12-70 px), colour and position on a noisy, textured background; some images have no objects.
Used as a stand-in for a real YOLO dataset (e.g. the insect set) in demos and tests::

    root/classes.txt                          circle, square, triangle  (written last = complete)
    root/data.yaml                            Ultralytics-style: path, train/val/test, names
    root/shapes.json                          the generation parameters
    root/images/{train,val,test}/shape_NNNNN.png
    root/labels/{train,val,test}/shape_NNNNN.txt   'class cx cy w h' normalised, empty = no objects

Boxes are tight around the drawn pixels (a shape drawn over pixels x0..x0+s-1 has box
[x0, x0 + s)). Every image is generated from its own RNG seeded by (seed, split, index), so the
set is deterministic for a seed. Convert to COCO with
:func:`kagglekit.tasks.detection.convert.export_coco_splits`.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from kagglekit.io import save_json, write_bytes, write_text
from kagglekit.tasks.detection.convert import format_yolo_line

CLASSES = ("circle", "square", "triangle")
SPLITS = ("train", "val", "test")
MIN_SIZE, MAX_SIZE = 12, 70
MAX_OVERLAP = 0.2  # at most this fraction of the smaller of two objects may be covered


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float texture: smooth, mildly coloured blobs + a stripe pattern + pixel noise."""
    grid = (h // 24 + 2, w // 24 + 2)
    coarse = (rng.uniform(70, 180, grid)[..., None] + rng.uniform(-25, 25, (*grid, 3))).astype(np.uint8)
    blobs = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 20)
    stripes = 12 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    return blobs + stripes[..., None] + rng.normal(0, 6, (h, w, 3))


def _colour(rng: np.random.Generator, local_mean: float) -> tuple[int, int, int]:
    """A colour that stands out from the background (saturated, or far from its brightness)."""
    for _ in range(50):
        c = rng.integers(0, 256, 3)
        if c.max() - c.min() > 110 or abs(float(c.mean()) - local_mean) > 70:
            break
    return tuple(int(v) for v in c)


def _overlap(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """Intersection over the smaller box's area (1 = one square inside the other)."""
    (ax, ay, asz), (bx, by, bsz) = a, b
    iw = max(0, min(ax + asz, bx + bsz) - max(ax, bx))
    ih = max(0, min(ay + asz, by + bsz) - max(ay, by))
    return iw * ih / min(asz, bsz) ** 2


def _place(rng: np.random.Generator, n: int, h: int, w: int) -> list[tuple[int, int, int, int]]:
    """Up to n ``(class, x0, y0, size)`` squares inside the image overlapping <= MAX_OVERLAP."""
    hi = min(MAX_SIZE, h, w)
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(n):
        for _attempt in range(30):
            s = int(rng.integers(MIN_SIZE, hi + 1))
            x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
            if all(_overlap((x0, y0, s), p[1:]) <= MAX_OVERLAP for p in placed):
                placed.append((int(rng.integers(len(CLASSES))), x0, y0, s))
                break
    return placed


def draw_shapes_image(rng: np.random.Generator, size: tuple[int, int], n_objects: int
                      ) -> tuple[Image.Image, np.ndarray]:
    """One RGB image of ``size`` (h, w) and its YOLO boxes, float64 (n, 5) ``[class, cx, cy, w, h]``."""
    h, w = size
    bg = _background(rng, h, w)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    objects = _place(rng, n_objects, h, w)
    for cls, x0, y0, s in objects:
        fill = _colour(rng, float(bg[y0:y0 + s, x0:x0 + s].mean()))
        x1, y1 = x0 + s - 1, y0 + s - 1  # PIL shapes cover x0..x1 inclusive
        if CLASSES[cls] == "circle":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        elif CLASSES[cls] == "square":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill)
    noisy = np.asarray(img, np.float32) + rng.normal(0, 5, (h, w, 3))
    image = Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    boxes = np.array([[cls, (x0 + s / 2) / w, (y0 + s / 2) / h, s / w, s / h] for cls, x0, y0, s in objects],
                     np.float64).reshape(-1, 5)
    return image, boxes


def _params(counts: dict[str, int], size: tuple[int, int], seed: int, max_objects: int, ext: str) -> dict[str, Any]:
    return {"classes": list(CLASSES), "counts": counts, "size": list(size), "seed": seed,
            "max_objects": max_objects, "ext": ext, "version": 1}


def _is_complete(root: Path, params: dict[str, Any]) -> bool:
    if not (root / "classes.txt").is_file():
        return False
    try:
        existing = json.loads((root / "shapes.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        existing = None
    if existing != params:
        raise ValueError(f"{root} already holds a dataset made with other parameters ({existing}); "
                         f"use another folder or delete it")
    for split, n in params["counts"].items():
        n_img = len(list((root / "images" / split).glob(f"*.{params['ext']}"))) if n else 0
        n_lab = len(list((root / "labels" / split).glob("*.txt"))) if n else 0
        if n_img != n or n_lab != n:
            return False
    return True


def _write_image(path: Path, image: Image.Image, ext: str) -> None:
    buf = io.BytesIO()
    if ext == "png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format="JPEG", quality=95)
    write_bytes(path, buf.getvalue())


def make_shapes_dataset(root: str | Path, n_train: int = 48, n_val: int = 16, n_test: int = 16,
                        size: tuple[int, int] = (160, 224), seed: int = 0, max_objects: int = 4,
                        ext: str = "png") -> Path:
    """Write (or reuse, if already complete with the same parameters) the shapes set under ``root``.

    ``size`` is (h, w); each image holds 0..``max_objects`` objects (about 15 % and the last image of
    every split hold none); ``ext`` is ``"png"`` or ``"jpg"`` (JPEG quality 95). Returns ``root``.
    """
    root = Path(root)
    if ext not in ("png", "jpg"):
        raise ValueError(f"ext must be 'png' or 'jpg', got {ext!r}")
    if min(size) < MIN_SIZE or max_objects < 0:
        raise ValueError(f"size {size} must be at least {MIN_SIZE} px and max_objects >= 0")
    counts = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
    params = _params(counts, tuple(int(v) for v in size), int(seed), int(max_objects), ext)
    if _is_complete(root, params):
        return root
    save_json(root / "shapes.json", params)
    for split_index, split in enumerate(SPLITS):
        for i in range(counts[split]):
            rng = np.random.default_rng([int(seed), split_index, i])
            empty = i == counts[split] - 1 or rng.random() < 0.15 or max_objects == 0
            n_obj = 0 if empty else int(rng.integers(1, max_objects + 1))
            image, boxes = draw_shapes_image(rng, params["size"], n_obj)
            _write_image(root / "images" / split / f"shape_{i:05d}.{ext}", image, ext)
            write_text(root / "labels" / split / f"shape_{i:05d}.txt",
                       "".join(format_yolo_line(*row) + "\n" for row in boxes.tolist()))
    present = [s for s in SPLITS if counts[s]]
    yaml_lines = ["path: .", *(f"{s}: images/{s}" for s in present), "names:",
                  *(f"  {i}: {name}" for i, name in enumerate(CLASSES))]
    write_text(root / "data.yaml", "\n".join(yaml_lines) + "\n")
    write_text(root / "classes.txt", "".join(name + "\n" for name in CLASSES))
    return root
