"""YOLO detection labels <-> COCO instances JSON, with validation that names the bad file and line.

YOLO layout (Ultralytics convention)::

    root/classes.txt                 one class name per line (or root/data.yaml with ``names:``)
    root/images/<split>/NAME.jpg     images (jpg/jpeg/png/bmp/webp, any case)
    root/labels/<split>/NAME.txt     one line per object: ``class cx cy w h`` (normalised to [0, 1])
    root/<split>.txt                 optional split file: one image path per line, relative to root

A missing label file, or an empty one, is an image without objects. COCO ``bbox`` is
``[x, y, w, h]`` in pixels of the image *as stored* (EXIF orientation is not applied, as in
``torchvision.io.decode_image`` and ``PIL.Image.open``). Boxes are never clipped or altered:
a box outside the image is an error, not a silent fix. Numbers are written with ``repr`` (the
shortest string that reads back to the same float64), so YOLO -> COCO -> YOLO is exact up to one
rounding of the pixel <-> normalised conversion (~1e-13 px).

Every bad input raises :class:`LabelError` (a ``ValueError``) whose message starts with the file
(``path:line`` for label/split files, the annotation or image id for COCO JSON) and says how to fix it.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from kagglekit.io import save_json, write_text

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
BOX_TOL = 1e-6  # tolerance on normalised coordinates (float rounding of exporters)
COCO_KEYS = ("images", "annotations", "categories")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_FIX_LINE = ("each line must be 'class cx cy w h' (class id = 0-based line in classes.txt, "
             "the rest normalised to [0, 1])")

PathLike = Union[str, "os.PathLike[str]"]
Names = Union[Sequence[str], str, "os.PathLike[str]"]


class LabelError(ValueError):
    """Bad label / annotation input; the message names the file (and line or id) and the fix."""


# ----------------------------------------------------------------------------------- class names
def read_class_names(path: PathLike) -> list[str]:
    """Class names in YOLO class-id order from ``classes.txt`` (one per line; trailing blank lines
    ignored) or a YOLO ``data.yaml`` (``names:`` as a list or an ``{id: name}`` mapping)."""
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        names = _names_from_yaml(text, path)
    else:
        lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        names = lines
    return _check_names(names, path)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise LabelError(f"{path}: file not found; check the path") from None
    except IsADirectoryError:
        raise LabelError(f"{path}: is a folder, expected a file") from None
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not UTF-8 text ({exc}); re-save it as UTF-8") from None


def _check_names(names: Sequence[Any], path: Path | str) -> list[str]:
    if not names:
        raise LabelError(f"{path}: no class names found; write one name per line")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        where = f"{path}:{i + 1}" if str(path).endswith(".txt") else f"{path}: class {i}"
        if not isinstance(name, str) or not name.strip():
            raise LabelError(f"{where}: empty class name {name!r}; every class id needs a non-empty name")
        if "\n" in name or "\r" in name:
            raise LabelError(f"{where}: class name {name!r} contains a line break; rename it")
        if name in seen:
            raise LabelError(f"{where}: duplicate class name {name!r} (also class {seen[name]}); "
                             f"names must be unique")
        seen[name] = i
    return list(names)


def _names_from_yaml(text: str, path: Path) -> list[str]:
    try:
        import yaml  # PyYAML comes with albumentations / huggingface_hub; optional here
    except ImportError:
        data: Any = {"names": _simple_yaml_names(text, path)}
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LabelError(f"{path}: not valid YAML ({exc}); fix the syntax") from None
    if not isinstance(data, dict) or "names" not in data:
        raise LabelError(f"{path}: no 'names:' key; add 'names: [name0, name1, ...]'")
    names = _names_value(data["names"], path)
    if isinstance(data.get("nc"), int) and data["nc"] != len(names):
        raise LabelError(f"{path}: nc: {data['nc']} but {len(names)} names; make them agree")
    return names


def _names_value(value: Any, path: Path) -> list[str]:
    if isinstance(value, list):
        return [str(v) if isinstance(v, (int, float)) else v for v in value]
    if isinstance(value, dict):
        keys = list(value)
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in keys) \
                or sorted(keys) != list(range(len(keys))):
            raise LabelError(f"{path}: names mapping keys {keys} must be the class ids 0..{len(keys) - 1}")
        return [str(value[k]) if isinstance(value[k], (int, float)) else value[k] for k in range(len(keys))]
    raise LabelError(f"{path}: 'names' must be a list or an {{id: name}} mapping, got {type(value).__name__}")


def _simple_yaml_names(text: str, path: Path) -> Any:
    """Minimal reader for ``names:`` (flow list, block list or block mapping) without PyYAML."""
    lines = text.replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("names:"):
            continue
        rest = line[len("names:"):].split(" #")[0].strip()
        if rest.startswith("["):
            if not rest.endswith("]"):
                raise LabelError(f"{path}:{i + 1}: write the names list on one line or install PyYAML")
            return [_unquote(v) for v in rest[1:-1].split(",") if v.strip()]
        items: list[str] = []
        mapping: dict[int, str] = {}
        for line2 in lines[i + 1:]:
            body = line2.split(" #")[0].strip()
            if not body:
                continue
            if not line2[:1].isspace() and not body.startswith("-"):
                break
            if body.startswith("-"):
                items.append(_unquote(body[1:]))
            elif ":" in body and body.split(":", 1)[0].strip().isdigit():
                key, val = body.split(":", 1)
                mapping[int(key)] = _unquote(val)
        return mapping if mapping else items
    raise LabelError(f"{path}: no 'names:' key; add 'names: [name0, name1, ...]'")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _resolve_names(class_names: Names) -> list[str]:
    if isinstance(class_names, (str, os.PathLike)):
        return read_class_names(class_names)
    return _check_names(list(class_names), "class_names argument")


# ----------------------------------------------------------------------------------- YOLO labels
def box_problem(cx: float, cy: float, w: float, h: float, tol: float = BOX_TOL) -> str | None:
    """Why the normalised YOLO box is invalid (``None`` if valid): centre in [0, 1], size in (0, 1],
    box inside [0, 1] -- every bound with tolerance ``tol``."""
    for name, v in (("cx", cx), ("cy", cy)):
        if not -tol <= v <= 1 + tol:
            return f"{name}={v!r} is outside [0, 1]"
    for name, v in (("w", w), ("h", h)):
        if not 0 < v <= 1 + tol:
            return f"{name}={v!r} is outside (0, 1]"
    for axis, c, s in (("x", cx, w), ("y", cy, h)):
        lo, hi = c - s / 2, c + s / 2
        if lo < -tol or hi > 1 + tol:
            return f"box spans {axis} in [{lo!r}, {hi!r}], outside the image [0, 1]"
    return None


def format_yolo_line(class_id: int, cx: float, cy: float, w: float, h: float) -> str:
    """``'class cx cy w h'`` with floats written by ``repr`` (reads back to the identical float64)."""
    return " ".join([str(int(class_id))] + [repr(float(v)) for v in (cx, cy, w, h)])


def parse_yolo_label(path: PathLike, n_classes: int) -> np.ndarray:
    """Read and validate one YOLO detection label file.

    Returns float64 array (n, 5): ``[class, cx, cy, w, h]``; an empty file -> shape (0, 5).
    Blank lines are skipped. Raises :class:`LabelError` naming ``path:line`` for any bad line.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
    path = Path(path)
    text = _read_text(path)
    rows = []
    for lineno, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        fields = line.split()
        if fields:
            rows.append(_parse_line(fields, f"{path}:{lineno}", int(n_classes)))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def _parse_line(fields: list[str], where: str, n_classes: int) -> list[float]:
    if len(fields) != 5:
        if len(fields) > 5:
            raise LabelError(f"{where}: {len(fields)} fields, expected 5; this converter reads YOLO "
                             f"detection labels 'class cx cy w h' -- YOLO-seg polygon or pose keypoint "
                             f"lines must be converted to boxes first")
        raise LabelError(f"{where}: {len(fields)} fields {' '.join(fields)[:80]!r}, expected 5; {_FIX_LINE}")
    values = []
    for name, field in zip(("class", "cx", "cy", "w", "h"), fields):
        finite = _NUMBER.fullmatch(field) is not None
        if not finite and field.lower().lstrip("+-") not in ("nan", "inf", "infinity"):
            raise LabelError(f"{where}: {name} {field[:40]!r} is not a number; {_FIX_LINE}")
        value = float(field)
        if not finite or not math.isfinite(value):
            raise LabelError(f"{where}: {name} {field[:40]!r} is not a finite number; {_FIX_LINE}")
        values.append(value)
    cls = values[0]
    if not cls.is_integer() or not 0 <= cls < n_classes:
        raise LabelError(f"{where}: class id {fields[0]!r} is not an integer in [0, {n_classes}) "
                         f"({n_classes} class names); fix the id or add the class to the names file")
    problem = box_problem(*values[1:])
    if problem:
        raise LabelError(f"{where}: {problem}; {_FIX_LINE}")
    return values


# ----------------------------------------------------------------------------------- YOLO -> COCO
def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)  # .DS_Store, ._x.jpg (macOS), temp files


def list_images(images_dir: PathLike) -> list[tuple[str, Path]]:
    """``(file_name relative to images_dir as posix, path)`` of every image below ``images_dir``,
    sorted by file name; hidden files/folders are skipped."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise LabelError(f"{images_dir}: image folder not found; check the path")
    found = []
    for p in images_dir.rglob("*"):
        rel = p.relative_to(images_dir)
        if p.suffix.lower() in IMAGE_EXTENSIONS and not _is_hidden(rel) and p.is_file():
            found.append((rel.as_posix(), p))
    return sorted(found)


def image_size(path: PathLike) -> tuple[int, int]:
    """``(width, height)`` of the image as stored, from its header (no full decode)."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as exc:  # PIL raises several types for truncated / non-image files
        raise LabelError(f"{path}: cannot read as an image ({type(exc).__name__}: {exc}); "
                         f"replace or remove the file") from None


def _label_pairs(images_dir: Path, labels_dir: Path) -> list[tuple[str, Path, Path | None]]:
    """``(file_name, image path, label path or None)`` per image; checks orphan labels."""
    if not labels_dir.is_dir():
        raise LabelError(f"{labels_dir}: label folder not found; create it (empty = no objects)")
    images = list_images(images_dir)
    if not images:
        raise LabelError(f"{images_dir}: no images ({'/'.join(IMAGE_EXTENSIONS)}) found")
    by_label: dict[Path, str] = {}
    for rel, _ in images:
        key = Path(rel).with_suffix(".txt")
        if key in by_label:
            raise LabelError(f"{images_dir}: {by_label[key]} and {rel} share the label file "
                             f"{labels_dir / key}; rename one of them")
        by_label[key] = rel
    for label in sorted(labels_dir.rglob("*.txt")):
        rel = label.relative_to(labels_dir)
        if _is_hidden(rel) or rel in by_label or rel == Path("classes.txt"):  # LabelImg puts classes.txt here
            continue
        raise LabelError(f"{label}: label file without an image (no {rel.with_suffix('.*')} with "
                         f"extension {'/'.join(IMAGE_EXTENSIONS)} in {images_dir}); add the image or "
                         f"delete the label")
    return [(rel, p, (labels_dir / Path(rel).with_suffix(".txt"))) for rel, p in images]


def _category_ids(category_ids: Sequence[int] | None, n: int) -> list[int]:
    if category_ids is None:
        return list(range(1, n + 1))
    ids = list(category_ids)
    if len(ids) != n or len(set(ids)) != n or \
            not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"category_ids must be {n} distinct ints (one per class name), got {ids}")
    return [int(i) for i in ids]


def _coco_from_pairs(pairs: Iterable[tuple[str, Path, Path | None]], names: list[str],
                     cat_ids: list[int], info: dict[str, Any]) -> dict[str, Any]:
    images, annotations = [], []
    for image_id, (file_name, image_path, label_path) in enumerate(pairs, 1):
        width, height = image_size(image_path)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        boxes = parse_yolo_label(label_path, len(names)) if label_path is not None and label_path.is_file() \
            else np.zeros((0, 5))
        for cls, cx, cy, w, h in boxes.tolist():
            bw, bh = w * width, h * height
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": cat_ids[int(cls)],
                                "bbox": [(cx - w / 2) * width, (cy - h / 2) * height, bw, bh],
                                "area": bw * bh, "iscrowd": 0})
    categories = [{"id": cid, "name": name} for cid, name in zip(cat_ids, names)]
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def pairs_to_coco(pairs: Iterable[tuple[str, Path, Path | None]], class_names: Sequence[str],
                  info: dict[str, Any]) -> dict[str, Any]:
    """COCO dict from ``(file_name, image path, YOLO label path or None)`` triples (darknet /
    Ultralytics descriptors): image ids 1..N in the given order, YOLO class i → category i + 1,
    every label line validated (:class:`LabelError` naming ``file:line``)."""
    names = _check_names(list(class_names), "class names")
    return _coco_from_pairs(pairs, names, _category_ids(None, len(names)), info)


def yolo_to_coco(images_dir: PathLike, labels_dir: PathLike, class_names: Names, *,
                 category_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """COCO instances dict from an image folder and its YOLO label folder.

    Images sorted by file name get ids 1..N (``file_name`` relative to ``images_dir``, width/height
    from the image header); annotations get ids 1..M with ``bbox`` ``[x, y, w, h]`` in pixels,
    ``area = w * h`` and ``iscrowd = 0``. YOLO class i -> ``category_ids[i]`` (default ``i + 1``).
    ``class_names`` is a list or a path to ``classes.txt`` / ``data.yaml``.
    """
    names = _resolve_names(class_names)
    cat_ids = _category_ids(category_ids, len(names))
    pairs = _label_pairs(Path(images_dir), Path(labels_dir))
    return _coco_from_pairs(pairs, names, cat_ids, {"description": "converted from YOLO labels"})


# ----------------------------------------------------------------------------------- COCO checks
def load_coco(path: PathLike) -> dict[str, Any]:
    """Read and validate a COCO instances JSON (see :func:`validate_coco`)."""
    path = Path(path)
    text = _read_text(path)
    try:
        coco = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}: not valid JSON ({exc}); re-export or fix the file") from None
    return validate_coco(coco, str(path))


def validate_coco(coco: Any, source: str = "COCO dict") -> dict[str, Any]:
    """Check structure and references: keys present, unique image / annotation / category ids,
    every annotation pointing at a known image and category, bbox = 4 finite numbers.
    Returns ``coco`` unchanged; raises :class:`LabelError` naming ``source`` and the id."""
    if not isinstance(coco, dict):
        raise LabelError(f"{source}: top level must be a JSON object with {list(COCO_KEYS)}")
    missing = [k for k in COCO_KEYS if k not in coco]
    if missing:
        raise LabelError(f"{source}: missing key(s) {missing}; a COCO instances file needs {list(COCO_KEYS)}")
    for key in COCO_KEYS:
        if not isinstance(coco[key], list):
            raise LabelError(f"{source}: '{key}' must be a list, got {type(coco[key]).__name__}")
    image_ids = _unique_ids(coco["images"], "images", source)
    category_ids = _unique_ids(coco["categories"], "categories", source)
    _unique_ids(coco["annotations"], "annotations", source)
    for image in coco["images"]:
        _check_image(image, source)
    for cat in coco["categories"]:
        if not isinstance(cat.get("name"), str):
            raise LabelError(f"{source}: category id {cat['id']} has no string 'name'")
    for ann in coco["annotations"]:
        _check_annotation(ann, image_ids, category_ids, source)
    return coco


def _unique_ids(items: list[Any], key: str, source: str) -> set[int]:
    seen: set[int] = set()
    singular = key[:-1].replace("categorie", "category")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item:
            raise LabelError(f"{source}: {key}[{i}] has no 'id'; every {singular} needs a unique integer id")
        iid = item["id"]
        if not _is_int(iid):
            raise LabelError(f"{source}: {key}[{i}] id {iid!r} is not an integer")
        if iid in seen:
            raise LabelError(f"{source}: duplicate {singular} id {iid} ({key}[{i}]); ids must be unique")
        seen.add(iid)
    return seen


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_image(image: dict[str, Any], source: str) -> None:
    where = f"{source}: image id {image['id']}"
    name = image.get("file_name")
    if not isinstance(name, str) or not name:
        raise LabelError(f"{where} has no 'file_name'")
    for key in ("width", "height"):
        v = image.get(key)
        if not _is_number(v) or v <= 0 or not float(v).is_integer():
            raise LabelError(f"{where} ({name}): '{key}' {v!r} is not a positive integer; "
                             f"set it to the image size in pixels")


def _check_annotation(ann: dict[str, Any], image_ids: set[int], category_ids: set[int], source: str) -> None:
    where = f"{source}: annotation id {ann['id']}"
    if not _is_int(ann.get("image_id")) or ann["image_id"] not in image_ids:
        raise LabelError(f"{where} refers to unknown image_id {ann.get('image_id')!r}; "
                         f"add the image or drop the annotation")
    if not _is_int(ann.get("category_id")) or ann["category_id"] not in category_ids:
        raise LabelError(f"{where} refers to unknown category_id {ann.get('category_id')!r} "
                         f"(known: {sorted(category_ids)}); add the category or fix the id")
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise LabelError(f"{where}: bbox {bbox!r} must be [x, y, w, h], 4 finite numbers in pixels")
    if ann.get("iscrowd", 0) not in (0, 1):
        raise LabelError(f"{where}: iscrowd {ann.get('iscrowd')!r} must be 0 or 1")


# ----------------------------------------------------------------------------------- COCO -> YOLO
def _label_targets(images: list[dict[str, Any]], labels_dir: Path) -> dict[int, Path]:
    targets: dict[int, Path] = {}
    owner: dict[Path, str] = {}
    for image in images:
        rel = Path(image["file_name"])
        if rel.is_absolute() or ".." in rel.parts:
            raise LabelError(f"image id {image['id']}: file_name {image['file_name']!r} must be a "
                             f"relative path inside the image folder")
        target = labels_dir / rel.with_suffix(".txt")
        if target in owner:
            raise LabelError(f"image id {image['id']}: file_name {image['file_name']!r} and "
                             f"{owner[target]!r} map to the same label file {target}; rename one")
        owner[target] = image["file_name"]
        targets[image["id"]] = target
    return targets


def _yolo_line(ann: dict[str, Any], image: dict[str, Any], class_index: int) -> str:
    x, y, w, h = (float(v) for v in ann["bbox"])
    width, height = float(image["width"]), float(image["height"])
    cx, cy, nw, nh = (x + w / 2) / width, (y + h / 2) / height, w / width, h / height
    problem = box_problem(cx, cy, nw, nh)
    if problem:
        raise LabelError(f"annotation id {ann['id']} (image {image['file_name']}, {image['width']}x"
                         f"{image['height']}): bbox {ann['bbox']} -> {problem}; boxes are not clipped, "
                         f"fix or drop the annotation")
    return format_yolo_line(class_index, cx, cy, nw, nh)


def coco_to_yolo(coco: dict[str, Any], labels_dir: PathLike, *, names_path: PathLike | None = None,
                 include_crowd: bool = False) -> dict[str, Any]:
    """Write one ``<file_name stem>.txt`` per image below ``labels_dir`` (empty for images without
    objects; sub-folders of ``file_name`` are kept). YOLO class = position of the category id in the
    sorted category ids; ``names_path`` gets those names in that order (``classes.txt``).
    ``iscrowd=1`` annotations are skipped unless ``include_crowd``. Everything is validated before
    any file is written. Returns ``{"images", "boxes", "crowd_skipped", "category_ids"}``.
    """
    validate_coco(coco)
    labels_dir = Path(labels_dir)
    cat_ids = sorted(c["id"] for c in coco["categories"])
    index = {cid: i for i, cid in enumerate(cat_ids)}
    images = {im["id"]: im for im in coco["images"]}
    targets = _label_targets(coco["images"], labels_dir)
    lines: dict[int, list[str]] = {iid: [] for iid in images}
    crowd = 0
    for ann in coco["annotations"]:
        if ann.get("iscrowd", 0) and not include_crowd:
            crowd += 1
            continue
        image = images[ann["image_id"]]
        lines[image["id"]].append(_yolo_line(ann, image, index[ann["category_id"]]))
    names = [next(c["name"] for c in coco["categories"] if c["id"] == cid) for cid in cat_ids]
    if names_path is not None:
        _check_names(names, "COCO categories")
    for iid, target in targets.items():
        write_text(target, "".join(line + "\n" for line in lines[iid]))
    if names_path is not None:
        write_text(names_path, "".join(name + "\n" for name in names))
    return {"images": len(images), "boxes": sum(len(v) for v in lines.values()),
            "crowd_skipped": crowd, "category_ids": cat_ids}


# ----------------------------------------------------------------------------------- splits
def write_split_file(path: PathLike, image_paths: Iterable[PathLike], *, root: PathLike | None = None) -> Path:
    """Write a YOLO split file: one image path per line, relative (made relative to ``root`` if given)."""
    lines = []
    for p in image_paths:
        p = Path(p)
        if root is not None and p.is_absolute():
            p = p.relative_to(Path(root))
        text = p.as_posix()
        if p.is_absolute() or "\n" in text or "\r" in text or not text.strip() or text != text.strip():
            raise ValueError(f"split file entries must be relative single-line paths, got {text!r}")
        lines.append(text + "\n")
    return write_text(path, "".join(lines))


def read_split_file(path: PathLike) -> list[str]:
    """Image paths listed in a split file (one per line, blank lines skipped), as written."""
    text = _read_text(Path(path))
    return [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line.strip()]


def _labels_path_for(image: Path) -> Path:
    """Ultralytics rule: the last ``images`` folder in the path becomes ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _split_file_pairs(root: Path, split_file: Path) -> list[tuple[str, Path, Path | None]]:
    pairs = []
    for lineno, entry in enumerate(read_split_file(split_file), 1):
        rel = Path(entry)
        if rel.is_absolute() or ".." in rel.parts or rel.suffix.lower() not in IMAGE_EXTENSIONS:
            raise LabelError(f"{split_file}:{lineno}: {entry!r} must be a relative image path "
                             f"({'/'.join(IMAGE_EXTENSIONS)}) under {root}")
        if not (root / rel).is_file():
            raise LabelError(f"{split_file}:{lineno}: image {root / rel} not found; fix or remove the line")
        pairs.append((rel.as_posix(), root / rel, root / _labels_path_for(rel)))
    if not pairs:
        raise LabelError(f"{split_file}: no image paths listed")
    return sorted(pairs, key=lambda t: t[0])


def yolo_dataset_to_coco(root: PathLike, split: str, class_names: Names, *,
                         category_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """COCO dict for one split of a YOLO dataset: ``root/images/<split>`` + ``root/labels/<split>``
    (``file_name`` relative to ``root/images/<split>``), or else the split file ``root/<split>.txt``
    (``file_name`` relative to ``root``). ``info["image_dir"]`` says which, relative to ``root``."""
    root = Path(root)
    names = _resolve_names(class_names)
    cat_ids = _category_ids(category_ids, len(names))
    if (root / "images" / split).is_dir():
        pairs = _label_pairs(root / "images" / split, root / "labels" / split)
        image_dir = f"images/{split}"
    elif (root / f"{split}.txt").is_file():
        pairs = _split_file_pairs(root, root / f"{split}.txt")
        image_dir = "."
    else:
        raise LabelError(f"{root}: split {split!r} not found (neither images/{split}/ nor {split}.txt)")
    info = {"description": f"YOLO dataset split {split}", "image_dir": image_dir}
    return _coco_from_pairs(pairs, names, cat_ids, info)


def export_coco_splits(root: PathLike, class_names: Names, splits: Sequence[str] = ("train", "val", "test"),
                       out_dir: PathLike | None = None) -> dict[str, Path]:
    """Write ``<out_dir>/instances_<split>.json`` (atomic; default ``root/annotations``) for every
    split present in ``root``; returns ``{split: path}``. No split present -> :class:`LabelError`."""
    root = Path(root)
    out = Path(out_dir) if out_dir is not None else root / "annotations"
    names = _resolve_names(class_names)
    written: dict[str, Path] = {}
    for split in splits:
        if (root / "images" / split).is_dir() or (root / f"{split}.txt").is_file():
            coco = yolo_dataset_to_coco(root, split, names)
            written[split] = save_json(out / f"instances_{split}.json", coco)
    if not written:
        raise LabelError(f"{root}: none of the splits {list(splits)} found (images/<split>/ or <split>.txt)")
    return written
