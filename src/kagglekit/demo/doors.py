"""A synthetic multi-label set in the car_doors layout (``labels.csv`` + ``images/N.jpg``): a grey
"car" body with five panels (front_right, front_left, rear_right, rear_left, hood) drawn open (a
bright slanted flap) or closed, on a dark background with noise — used by ``--demo`` when the real
../shared/data/car_doors is absent."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from kagglekit.io import save_csv, write_bytes

ATTRIBUTES = ("front_right", "front_left", "rear_right", "rear_left", "hood")
PANELS = {"front_right": (0.55, 0.55, 0.7, 0.8), "front_left": (0.55, 0.2, 0.7, 0.45),
          "rear_right": (0.3, 0.55, 0.45, 0.8), "rear_left": (0.3, 0.2, 0.45, 0.45), "hood": (0.75, 0.3, 0.95, 0.7)}


def draw_car(labels: np.ndarray, rng: np.random.Generator, size: tuple[int, int] = (221, 512)) -> Image.Image:
    h, w = size
    img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(40, 70, 3)))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0.2 * w, 0.15 * h, 0.97 * w, 0.85 * h], fill=(200, 200, 205))
    for attr, is_open in zip(ATTRIBUTES, labels):
        x0, y0, x1, y1 = PANELS[attr]
        box = [x0 * w, y0 * h, x1 * w, y1 * h]
        if is_open:
            draw.polygon([(box[0], box[1]), (box[2] + 0.05 * w, box[1] - 0.08 * h), (box[2] + 0.05 * w, box[3] + 0.08 * h),
                          (box[0], box[3])], fill=(250, 250, 255), outline=(20, 20, 20))
        else:
            draw.rectangle(box, outline=(90, 90, 95), width=2)
    noisy = np.asarray(img, np.int16) + rng.integers(-12, 13, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def generate_doors(root: Path, n: int = 160, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        labels = rng.integers(0, 2, len(ATTRIBUTES))
        buf = io.BytesIO()
        draw_car(labels, rng).save(buf, format="JPEG", quality=90)
        write_bytes(Path(root) / "images" / f"{i}.jpg", buf.getvalue())
        rows.append({"image": f"images/{i}.jpg", **dict(zip(ATTRIBUTES, labels.tolist()))})
    save_csv(Path(root) / "labels.csv", pd.DataFrame(rows))
    return Path(root)


def generate_door_test(csv_path: Path, n: int = 16, seed: int = 1) -> Path:
    """Unlabelled test images beside ``csv_path`` and the CSV listing them (absolute paths, so the
    list works whatever ``data_dir`` the training images come from)."""
    rng = np.random.default_rng(seed)
    folder = Path(csv_path).resolve().parent / "test_images"
    rows = []
    for i in range(n):
        buf = io.BytesIO()
        draw_car(rng.integers(0, 2, len(ATTRIBUTES)), rng).save(buf, format="JPEG", quality=90)
        write_bytes(folder / f"t{i}.jpg", buf.getvalue())
        rows.append({"image": str(folder / f"t{i}.jpg")})
    return save_csv(Path(csv_path), pd.DataFrame(rows))
