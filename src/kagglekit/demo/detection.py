"""Demo data for the detection track: COCO128 read in place (split 80/24/24 by image order, the
JSON subsets written under input/) when ../shared/data/coco128 exists, else generated shapes in
YOLO format (which also exercises the YOLO → COCO converter)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kagglekit.io import save_json
from kagglekit.paths import shared_data

log = logging.getLogger("kagglekit.demo")


def split_of(position: int) -> str:
    """Image at ``position`` (sorted by id) → train (10 of 16), val (3 of 16) or test (3 of 16)."""
    r = position % 16
    return "train" if r < 10 else "val" if r < 13 else "test"


def write_coco128_splits(src_json: Path, out_dir: Path) -> dict[str, Path]:
    """``out_dir/annotations/instances_{train,val,test}.json`` from one COCO JSON (written once)."""
    from kagglekit.tasks.detection.convert import load_coco
    from kagglekit.tasks.detection.data import select_images
    out = {s: out_dir / "annotations" / f"instances_{s}.json" for s in ("train", "val", "test")}
    if all(p.exists() for p in out.values()):
        return out
    coco = load_coco(src_json)
    ids = sorted(im["id"] for im in coco["images"])
    for split, path in out.items():
        subset: dict[str, Any] = select_images(coco, [i for k, i in enumerate(ids) if split_of(k) == split])
        save_json(path, subset)
    log.info("demo: COCO128 split 80/24/24 written to %s", out_dir / "annotations")
    return out


def prepare_detection_demo(cfg: Any, root: Path) -> None:
    if cfg.data_format == "coco":
        write_coco128_splits(shared_data("coco128") / "annotations" / "instances_train2017.json", root)
        return
    from kagglekit.demo.shapes import make_shapes_dataset
    log.info("demo: generating the shapes detection set (YOLO format) into %s", root)
    make_shapes_dataset(root)
