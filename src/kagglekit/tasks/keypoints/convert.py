"""COCO person-keypoints JSON <-> YOLO-pose labels, keypoint-convention mapping tables and
left/right flip pairs.

YOLO-pose line (Ultralytics, ``kpt_shape: [K, 3]``)::

    class cx cy w h x1 y1 v1 ... xK yK vK

box and point coordinates normalised by the image width/height; ``v`` in {0, 1, 2} with the COCO
meaning (0 = not labelled, 1 = labelled but occluded, 2 = labelled and visible). An unlabelled
point is written ``0 0 0`` (Ultralytics convention), and read back as COCO ``[0, 0, 0]`` (COCO
convention) whatever coordinates another exporter may have put there. ``kpt_shape: [K, 2]``
files (no visibility) are rejected with a message saying how to fix them.

**Where the box comes from must be explicit** (``box_source``): the annotation's ``bbox`` (the
object's extent, as the annotator drew it) or the tight box of the labelled keypoints. They are
different boxes: a car's keypoint box ends at the wheel centres while its object box ends at the
tyre bottoms; a person's keypoint box stops at the eyes / ankles. A model trained on one and
evaluated or mixed with the other learns a systematic offset -- the lesson of the synthetic-cars
keypoint run.

Coordinates are never clipped: a point or box outside the image is an error (:class:`LabelError`
naming the annotation id or ``file:line``), except that ``box_source="keypoints"`` clips the
*padded* box to the image. Numbers are written with ``repr`` (shortest float64 round-trip), so
COCO -> YOLO-pose -> COCO is exact up to one rounding of pixel <-> normalised (~1e-13 px).
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kagglekit.io import write_text
from kagglekit.tasks.detection.convert import (
    _NUMBER,
    BOX_TOL,
    LabelError,
    Names,
    PathLike,
    _category_ids,
    _label_pairs,
    _label_targets,
    _read_text,
    _resolve_names,
    box_problem,
    image_size,
    validate_coco,
)

__all__ = [
    "BOX_SOURCES",
    "CARFUSION14_NAMES",
    "COCO_KEYPOINT_NAMES",
    "COCO_SKELETON",
    "KeypointMapping",
    "LabelError",
    "MAPPINGS",
    "SYNTH24_TO_REAL14",
    "SYNTH24_TO_REAL14_TYRE_BOTTOM",
    "SYNTH_CAR24_NAMES",
    "coco_kpts_to_yolo_pose",
    "flip_idx_from_names",
    "flip_pairs_from_names",
    "format_yolo_pose_line",
    "parse_yolo_pose_label",
    "parse_yolo_pose_line",
    "yolo_pose_to_coco",
]

BOX_SOURCES = ("bbox", "keypoints")
VISIBILITY = (0, 1, 2)

COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
#: The COCO person skeleton, 1-based keypoint indices (as in ``person_keypoints_*.json``).
COCO_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)

#: The 24-point convention of the synthetic car generator (:mod:`kagglekit.demo.keypoints`).
#: ``left``/``right`` are the car's own sides (driver's view), so in a front view the car's left
#: is on the image's right. Wheel *centres* and tyre *bottoms* (ground contact) are separate points.
SYNTH_CAR24_NAMES = (
    "front_left_wheel_centre", "front_right_wheel_centre", "rear_left_wheel_centre", "rear_right_wheel_centre",
    "front_left_tyre_bottom", "front_right_tyre_bottom", "rear_left_tyre_bottom", "rear_right_tyre_bottom",
    "left_headlight", "right_headlight", "left_fog_light", "right_fog_light",
    "left_taillight", "right_taillight", "left_mirror", "right_mirror",
    "front_logo", "front_plate", "rear_logo", "rear_plate",
    "roof_front_left", "roof_front_right", "roof_rear_left", "roof_rear_right",
)

#: The 14 CarFusion car keypoints, in CarFusion order.
CARFUSION14_NAMES = (
    "front_right_wheel", "front_left_wheel", "rear_right_wheel", "rear_left_wheel",
    "right_fog_light", "left_fog_light", "right_headlight", "left_headlight",
    "front_auto_logo", "front_license_plate", "left_rear_view_mirror", "right_rear_view_mirror",
    "right_taillight", "left_taillight",
)


# ----------------------------------------------------------------------------------- flip pairs
_TOKEN = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^A-Za-z\d]+")
_SWAP = {"left": "right", "right": "left"}


def _swap_side(name: str) -> str:
    """``name`` with every ``left``/``right`` word swapped (words split at ``_ - . space``, digits
    and camelCase; the case style of the word is kept). ``leftover`` is not a side word."""
    out = []
    for tok in _TOKEN.findall(name):
        low = tok.lower()
        if low in _SWAP:
            new = _SWAP[low]
            tok = new.upper() if tok.isupper() else new.capitalize() if tok[0].isupper() else new
        out.append(tok)
    return "".join(out)


def flip_pairs_from_names(names: Sequence[str]) -> list[tuple[int, int]]:
    """``(i, j)``, ``i < j``, sorted, for every two names that differ only by the words ``left`` <->
    ``right`` (``left_eye``/``right_eye``, ``eye_left``/``eye_right``, ``front_left_wheel``/
    ``front_right_wheel``, ``LeftEye``/``RightEye``). A side name without its partner is not paired
    (it then maps to itself under a flip, which is wrong if it really has a mirror twin: check
    ``len(pairs)``). Abbreviations (``l_``/``r_``) are deliberately not recognised."""
    names = [str(n) for n in names]
    index = {}
    for i, n in enumerate(names):
        if n in index:
            raise ValueError(f"duplicate keypoint name {n!r} (positions {index[n]} and {i})")
        index[n] = i
    pairs = []
    for i, n in enumerate(names):
        j = index.get(_swap_side(n))
        if j is not None and j > i:
            pairs.append((i, j))
    return pairs


def flip_idx_from_names(names: Sequence[str]) -> list[int]:
    """Ultralytics ``flip_idx``: for each keypoint the index of its mirror twin (itself if none)."""
    idx = list(range(len(names)))
    for i, j in flip_pairs_from_names(names):
        idx[i], idx[j] = j, i
    return idx


# ----------------------------------------------------------------------------------- COCO -> YOLO-pose
def format_yolo_pose_line(class_id: int, box: Sequence[float], kpts: np.ndarray) -> str:
    """``'class cx cy w h x1 y1 v1 ...'``; floats by ``repr``, ``v`` as an int, v=0 points as ``0 0 0``."""
    parts = [str(int(class_id))] + [repr(float(v)) for v in box]
    for x, y, v in np.asarray(kpts, dtype=np.float64).reshape(-1, 3).tolist():
        parts += ["0", "0", "0"] if v == 0 else [repr(float(x)), repr(float(y)), str(int(v))]
    return " ".join(parts)


def _keypoint_categories(coco: dict[str, Any], category_ids: Sequence[int] | None) -> tuple[list[int], list[str]]:
    cats = {c["id"]: c for c in coco["categories"]}
    if category_ids is None:
        ids = sorted(cid for cid, c in cats.items() if isinstance(c.get("keypoints"), list))
        if not ids:
            raise LabelError("COCO dict: no category has a 'keypoints' list of names; this is not a "
                             "person-keypoints style file")
    else:
        ids = list(category_ids)
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"category_ids must be distinct category ids, got {ids}")
        unknown = [i for i in ids if i not in cats]
        if unknown:
            raise ValueError(f"category_ids {unknown} not in the COCO categories {sorted(cats)}")
    names = None
    for cid in ids:
        kn = cats[cid].get("keypoints")
        if not isinstance(kn, list) or not kn or not all(isinstance(n, str) for n in kn):
            raise LabelError(f"COCO dict: category id {cid} ({cats[cid].get('name')!r}) has no 'keypoints' "
                             f"list of names")
        if names is None:
            names = kn
        elif len(kn) != len(names):
            raise LabelError(f"COCO dict: category id {cid} has {len(kn)} keypoints but category {ids[0]} has "
                             f"{len(names)}; YOLO-pose needs one kpt_shape for all classes -- export them "
                             f"separately (category_ids=...)")
    return ids, list(names)


def _annotation_keypoints(ann: dict[str, Any], k: int, image: dict[str, Any]) -> np.ndarray:
    where = f"annotation id {ann['id']} (image {image['file_name']})"
    kps = ann.get("keypoints")
    if not isinstance(kps, list) or len(kps) != 3 * k:
        n = len(kps) if isinstance(kps, list) else None
        raise LabelError(f"{where}: 'keypoints' must be a list of {3 * k} numbers [x, y, v] * {k}, got "
                         f"{n if n is not None else type(kps).__name__}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in kps):
        raise LabelError(f"{where}: 'keypoints' must hold only finite numbers")
    arr = np.asarray(kps, dtype=np.float64).reshape(k, 3)
    bad_v = [i for i, v in enumerate(arr[:, 2]) if v not in VISIBILITY]
    if bad_v:
        raise LabelError(f"{where}: keypoint(s) {bad_v} have visibility {arr[bad_v, 2].tolist()}; "
                         f"v must be 0 (not labelled), 1 (occluded) or 2 (visible)")
    w, h = float(image["width"]), float(image["height"])
    lab = arr[:, 2] > 0
    out = lab & ((arr[:, 0] < -BOX_TOL * w) | (arr[:, 0] > w * (1 + BOX_TOL))
                 | (arr[:, 1] < -BOX_TOL * h) | (arr[:, 1] > h * (1 + BOX_TOL)))
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise LabelError(f"{where}: labelled keypoint {i} at ({arr[i, 0]!r}, {arr[i, 1]!r}) is outside the "
                         f"{image['width']}x{image['height']} image; points are not clipped -- fix it or set v=0")
    return arr


def _keypoint_box(kps: np.ndarray, pad: float, width: float, height: float) -> list[float] | None:
    """Tight ``[x, y, w, h]`` of the labelled points, padded by ``pad`` * size each side, clipped to
    the image; None without labelled points."""
    lab = kps[kps[:, 2] > 0]
    if not len(lab):
        return None
    x0, y0 = lab[:, 0].min(), lab[:, 1].min()
    x1, y1 = lab[:, 0].max(), lab[:, 1].max()
    px, py = pad * (x1 - x0), pad * (y1 - y0)
    x0, x1 = max(0.0, x0 - px), min(width, x1 + px)
    y0, y1 = max(0.0, y0 - py), min(height, y1 + py)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def coco_kpts_to_yolo_pose(coco: dict[str, Any], labels_dir: PathLike, *, box_source: str = "bbox",
                           pad: float = 0.0, category_ids: Sequence[int] | None = None,
                           include_crowd: bool = False) -> dict[str, Any]:
    """Write one ``<file_name stem>.txt`` YOLO-pose label per image below ``labels_dir`` (empty for
    images without exported objects). Everything is validated before any file is written.

    ``category_ids``: the categories to export, YOLO class ``i`` = ``category_ids[i]`` (default: every
    category with a ``keypoints`` name list, sorted by id); all must have the same K. Other categories
    are skipped (counted). ``box_source``:

    * ``"bbox"`` -- the annotation's ``bbox`` (must lie inside the image); annotations without
      labelled keypoints are kept (a box with K ``0 0 0`` points).
    * ``"keypoints"`` -- the tight box of the labelled (``v > 0``) points, grown by ``pad`` times its
      width/height on each side and clipped to the image. Annotations without labelled points, or
      whose box has zero width or height (one point, or all points on a line), are skipped (counted).

    ``iscrowd=1`` annotations are skipped unless ``include_crowd``. Returns ``{"images", "instances",
    "no_keypoints_skipped", "degenerate_skipped", "crowd_skipped", "other_category_skipped",
    "category_ids", "names", "keypoint_names", "kpt_shape", "flip_idx"}`` -- the last four are what an
    Ultralytics ``data.yaml`` needs.
    """
    if box_source not in BOX_SOURCES:
        raise ValueError(f"box_source must be one of {BOX_SOURCES} (say where the box comes from), got {box_source!r}")
    if isinstance(pad, bool) or not isinstance(pad, (int, float)) or not math.isfinite(pad) or pad < 0:
        raise ValueError(f"pad must be a finite number >= 0 (fraction of the keypoint box per side), got {pad!r}")
    validate_coco(coco)
    ids, kpt_names = _keypoint_categories(coco, category_ids)
    k = len(kpt_names)
    index = {cid: i for i, cid in enumerate(ids)}
    images = {im["id"]: im for im in coco["images"]}
    targets = _label_targets(coco["images"], Path(labels_dir))
    lines: dict[int, list[str]] = {iid: [] for iid in images}
    counts = {"no_keypoints_skipped": 0, "degenerate_skipped": 0, "crowd_skipped": 0, "other_category_skipped": 0}
    for ann in coco["annotations"]:
        if ann["category_id"] not in index:
            counts["other_category_skipped"] += 1
            continue
        if ann.get("iscrowd", 0) and not include_crowd:
            counts["crowd_skipped"] += 1
            continue
        image = images[ann["image_id"]]
        line = _pose_line(ann, image, k, box_source, float(pad), index[ann["category_id"]])
        if line in counts:  # a skip reason
            counts[line] += 1
            continue
        lines[image["id"]].append(line)
    for iid, target in targets.items():
        write_text(target, "".join(line + "\n" for line in lines[iid]))
    cats = {c["id"]: c for c in coco["categories"]}
    return {"images": len(images), "instances": sum(len(v) for v in lines.values()), **counts,
            "category_ids": ids, "names": [cats[i]["name"] for i in ids], "keypoint_names": kpt_names,
            "kpt_shape": [k, 3], "flip_idx": flip_idx_from_names(kpt_names)}


def _pose_line(ann: dict[str, Any], image: dict[str, Any], k: int, box_source: str, pad: float,
               class_index: int) -> str:
    """One annotation's YOLO-pose line, or the name of the counter that skips it."""
    width, height = float(image["width"]), float(image["height"])
    kps = _annotation_keypoints(ann, k, image)
    if box_source == "bbox":
        box = [float(v) for v in ann["bbox"]]
    else:
        box = _keypoint_box(kps, pad, width, height)
        if box is None:
            return "no_keypoints_skipped"
        if box[2] <= 0 or box[3] <= 0:
            return "degenerate_skipped"
    x, y, w, h = box
    norm = ((x + w / 2) / width, (y + h / 2) / height, w / width, h / height)
    problem = box_problem(*norm)
    if problem:
        raise LabelError(f"annotation id {ann['id']} (image {image['file_name']}, {image['width']}x"
                         f"{image['height']}): {box_source} box {box} -> {problem}; boxes are not clipped, "
                         f"fix or drop the annotation")
    nk = kps.copy()
    nk[:, 0] /= width
    nk[:, 1] /= height
    return format_yolo_pose_line(class_index, norm, nk)


# ----------------------------------------------------------------------------------- YOLO-pose -> COCO
def _fix_line(k: int) -> str:
    return (f"each line must be 'class cx cy w h' + {k} x 'x y v' ({5 + 3 * k} fields; normalised to [0, 1], "
            f"v = 0/1/2, unlabelled points '0 0 0')")


def _number(field: str, name: str, where: str, k: int) -> float:
    finite = _NUMBER.fullmatch(field) is not None
    if not finite:
        kind = "a finite number" if field.lower().lstrip("+-") in ("nan", "inf", "infinity") else "a number"
        raise LabelError(f"{where}: {name} {field[:40]!r} is not {kind}; {_fix_line(k)}")
    value = float(field)
    if not math.isfinite(value):
        raise LabelError(f"{where}: {name} {field[:40]!r} is not a finite number; {_fix_line(k)}")
    return value


def parse_yolo_pose_line(line: str, n_classes: int, n_keypoints: int, where: str = "line"
                         ) -> tuple[int, np.ndarray, np.ndarray]:
    """Parse and validate one YOLO-pose line. Returns ``(class_id, box (4,) [cx, cy, w, h],
    keypoints (K, 3) [x, y, v])``, all normalised, v=0 points as ``0, 0, 0``. Any problem ->
    :class:`LabelError` starting with ``where`` (use ``path:line``)."""
    k = int(n_keypoints)
    if k < 1 or n_classes < 1:
        raise ValueError(f"n_classes and n_keypoints must be >= 1, got {n_classes}, {n_keypoints}")
    fields = line.split()
    n = len(fields)
    if n != 5 + 3 * k:
        if n == 5 + 2 * k:
            raise LabelError(f"{where}: {n} fields = 5 + 2 x {k}: the keypoints have no visibility flag "
                             f"(Ultralytics kpt_shape [{k}, 2]); this converter needs kpt_shape [{k}, 3] -- "
                             f"write 'x y 2' for each labelled point and '0 0 0' for each unlabelled one")
        if n == 5:
            hint = "a detection line without keypoints; every object needs its keypoints"
        elif n > 5 and (n - 5) % 3 == 0:
            hint = f"that is {(n - 5) // 3} keypoints, expected {k}; check the keypoint names list"
        else:
            hint = _fix_line(k)
        raise LabelError(f"{where}: {n} fields, expected 5 + 3 x {k} = {5 + 3 * k}; {hint}")
    names = ["class", "cx", "cy", "w", "h"] + [f"{c}{i}" for i in range(1, k + 1) for c in ("x", "y", "v")]
    values = [_number(f, name, where, k) for f, name in zip(fields, names)]
    cls = values[0]
    if not cls.is_integer() or not 0 <= cls < n_classes:
        raise LabelError(f"{where}: class id {fields[0]!r} is not an integer in [0, {n_classes}) "
                         f"({n_classes} class names); fix the id or add the class to the names")
    problem = box_problem(*values[1:5])
    if problem:
        raise LabelError(f"{where}: {problem}; {_fix_line(k)}")
    kps = np.asarray(values[5:], dtype=np.float64).reshape(k, 3)
    for i, (x, y, v) in enumerate(kps.tolist(), 1):
        if v not in VISIBILITY:
            raise LabelError(f"{where}: v{i} = {fields[4 + 3 * i]!r}; visibility must be 0 (not labelled), "
                             f"1 (occluded) or 2 (visible)")
        for name, c in ((f"x{i}", x), (f"y{i}", y)):
            if not -BOX_TOL <= c <= 1 + BOX_TOL:
                raise LabelError(f"{where}: {name} = {c!r} is outside [0, 1]; keypoints are normalised by the "
                                 f"image size and not clipped (unlabelled points: '0 0 0')")
    kps[kps[:, 2] == 0] = 0.0
    return int(cls), np.asarray(values[1:5], dtype=np.float64), kps


def parse_yolo_pose_label(path: PathLike, n_classes: int, n_keypoints: int) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one YOLO-pose label file: ``(boxes (n, 5) [class, cx, cy, w, h],
    keypoints (n, K, 3))``, float64, normalised; blank lines skipped; errors name ``path:line``."""
    path = Path(path)
    text = _read_text(path)
    boxes, kpts = [], []
    for lineno, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        if line.split():
            cls, box, kps = parse_yolo_pose_line(line, n_classes, n_keypoints, f"{path}:{lineno}")
            boxes.append([cls, *box.tolist()])
            kpts.append(kps)
    k = int(n_keypoints)
    return (np.asarray(boxes, dtype=np.float64).reshape(-1, 5),
            np.asarray(kpts, dtype=np.float64).reshape(-1, k, 3))


def _check_skeleton(skeleton: Any, k: int) -> list[list[int]]:
    if skeleton is None:
        return []
    out = []
    for edge in skeleton:
        e = list(edge) if isinstance(edge, (list, tuple)) else None
        if e is None or len(e) != 2 or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool)
                                               and 1 <= i <= k for i in e):
            raise ValueError(f"skeleton edge {edge!r} must be two 1-based keypoint indices in [1, {k}] "
                             f"(COCO convention)")
        out.append([int(e[0]), int(e[1])])
    return out


def _check_keypoint_names(names: Sequence[str], what: str) -> list[str]:
    if isinstance(names, str):
        raise ValueError(f"{what} must be a list of names, got the string {names!r}")
    names = list(names)
    if not names:
        raise ValueError(f"{what} is empty")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"{what}: names must be non-empty strings, got {bad}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{what}: duplicate names {dup}")
    return names


def yolo_pose_to_coco(images_dir: PathLike, labels_dir: PathLike, class_names: Names,
                      keypoint_names: Sequence[str], *, skeleton: Sequence[Sequence[int]] | None = None,
                      category_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """COCO person-keypoints style dict from an image folder and its YOLO-pose label folder.

    Images sorted by file name get ids 1..N (size from the header); annotations ids 1..M with
    ``bbox`` from the line (pixels), ``area = w * h`` (there is no segmentation), ``iscrowd = 0``,
    ``keypoints`` ``[x, y, v] * K`` in pixels (v=0 -> ``0, 0, 0``), ``num_keypoints`` = count of
    ``v > 0``. Categories carry ``keypoints`` (the names) and ``skeleton`` (1-based pairs, default
    none). YOLO class i -> ``category_ids[i]`` (default ``i + 1``). Every line is validated, see
    :func:`parse_yolo_pose_line`.
    """
    names = _resolve_names(class_names)
    kpt_names = _check_keypoint_names(keypoint_names, "keypoint_names")
    k = len(kpt_names)
    edges = _check_skeleton(skeleton, k)
    cat_ids = _category_ids(category_ids, len(names))
    images, annotations = [], []
    for image_id, (file_name, image_path, label_path) in enumerate(
            _label_pairs(Path(images_dir), Path(labels_dir)), 1):
        width, height = image_size(image_path)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        if label_path is None or not label_path.is_file():
            continue
        boxes, kpts = parse_yolo_pose_label(label_path, len(names), k)
        for (cls, cx, cy, w, h), kp in zip(boxes.tolist(), kpts):
            bw, bh = w * width, h * height
            px = kp.copy()
            px[:, 0] *= width
            px[:, 1] *= height
            px[px[:, 2] == 0] = 0.0
            flat = [float(x) for x in px[:, :2].reshape(-1)]
            keypoints: list[float | int] = []
            for i in range(k):
                keypoints += [flat[2 * i], flat[2 * i + 1], int(px[i, 2])]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": cat_ids[int(cls)],
                                "bbox": [(cx - w / 2) * width, (cy - h / 2) * height, bw, bh],
                                "area": bw * bh, "iscrowd": 0, "keypoints": keypoints,
                                "num_keypoints": int((px[:, 2] > 0).sum())})
    categories = [{"id": cid, "name": name, "supercategory": name, "keypoints": list(kpt_names),
                   "skeleton": [list(e) for e in edges]} for cid, name in zip(cat_ids, names)]
    return {"info": {"description": "converted from YOLO-pose labels"}, "images": images,
            "annotations": annotations, "categories": categories}


# ----------------------------------------------------------------------------------- mapping tables
class KeypointMapping:
    """A table from a source keypoint convention to a target one.

    ``pairs`` is ``{target_name: source_name}``; target points without a source become
    ``(0, 0, v=0)`` (not labelled). Unknown names on either side raise ``ValueError`` naming them.
    A source point may feed several targets; source points not named are dropped. Example:
    :data:`SYNTH24_TO_REAL14` (synthetic 24-point cars -> CarFusion's 14 points).

    ``target_skeleton`` (1-based pairs) is written into the mapped categories; without it the
    source skeleton edges whose two ends both map are translated.
    """

    def __init__(self, source_names: Sequence[str], target_names: Sequence[str],
                 pairs: Mapping[str, str], *, target_skeleton: Sequence[Sequence[int]] | None = None):
        self.source_names = tuple(_check_keypoint_names(source_names, "source_names"))
        self.target_names = tuple(_check_keypoint_names(target_names, "target_names"))
        if not isinstance(pairs, Mapping):
            raise ValueError(f"pairs must be a mapping {{target_name: source_name}}, got {type(pairs).__name__}")
        src_index = {n: i for i, n in enumerate(self.source_names)}
        bad_t = [t for t in pairs if t not in self.target_names]
        bad_s = [s for s in pairs.values() if s not in src_index]
        if bad_t or bad_s:
            msg = []
            if bad_t:
                msg.append(f"unknown target name(s) {bad_t} (targets: {list(self.target_names)})")
            if bad_s:
                msg.append(f"unknown source name(s) {bad_s} (sources: {list(self.source_names)})")
            raise ValueError("KeypointMapping: " + "; ".join(msg))
        self.pairs = {t: pairs[t] for t in self.target_names if t in pairs}
        #: (Kt,) source index of each target point, -1 where it has none
        self.index = np.array([src_index[self.pairs[t]] if t in self.pairs else -1 for t in self.target_names],
                              dtype=np.int64)
        self.target_skeleton = (None if target_skeleton is None
                                else _check_skeleton(target_skeleton, len(self.target_names)))

    def __repr__(self) -> str:
        return (f"KeypointMapping({len(self.source_names)} -> {len(self.target_names)} points, "
                f"{len(self.pairs)} mapped)")

    @property
    def unmapped_targets(self) -> list[str]:
        return [t for t in self.target_names if t not in self.pairs]

    def flip_problems(self) -> list[str]:
        """Entries that break left/right symmetry: if target ``T`` comes from source ``S``, the mirror
        twin of ``T`` must come from the mirror twin of ``S`` (else flip TTA / flip augmentation on
        the mapped labels swaps the wrong points). Empty list = consistent."""
        problems = []
        for t, s in self.pairs.items():
            t2, s2 = _swap_side(t), _swap_side(s)
            if t2 in self.target_names and self.pairs.get(t2) != (s2 if s2 in self.source_names else s):
                problems.append(f"{t} <- {s} but {t2} <- {self.pairs.get(t2)} (expected {s2})")
        return problems

    def apply(self, kpts: Any) -> Any:
        """``(..., Ks, 3)`` (numpy array or torch tensor) -> ``(..., Kt, 3)``, same type/dtype/device."""
        ks = len(self.source_names)
        shape = tuple(kpts.shape)
        if len(shape) < 2 or shape[-2] != ks or shape[-1] not in (2, 3):
            raise ValueError(f"keypoints must be (..., {ks}, 3) in the source convention, got {shape}")
        has = self.index >= 0
        src = np.where(has, self.index, 0)
        try:
            import torch
        except ImportError:  # pragma: no cover
            torch = None
        if torch is not None and isinstance(kpts, torch.Tensor):
            out = kpts[..., torch.as_tensor(src, device=kpts.device), :].clone()
            out[..., torch.as_tensor(~has, device=kpts.device), :] = 0
            return out
        arr = np.asarray(kpts)
        out = arr[..., src, :].copy()
        out[..., ~has, :] = 0
        return out

    def _target_skeleton_from(self, source_skeleton: Any) -> list[list[int]]:
        if self.target_skeleton is not None:
            return [list(e) for e in self.target_skeleton]
        edges = []
        for edge in source_skeleton or []:
            a, b = int(edge[0]) - 1, int(edge[1]) - 1
            for ta in np.flatnonzero(self.index == a):
                for tb in np.flatnonzero(self.index == b):
                    e = [int(ta) + 1, int(tb) + 1]
                    if e not in edges:
                        edges.append(e)
        return edges

    def apply_coco(self, coco: dict[str, Any]) -> dict[str, Any]:
        """A deep copy of ``coco`` in which every category whose ``keypoints`` names equal the source
        names gets the target names and skeleton, and its annotations' ``keypoints`` /
        ``num_keypoints`` are remapped. ``bbox`` / ``area`` are left as they are -- if your boxes were
        derived from keypoints, re-derive them (see ``box_source``). No matching category -> ValueError."""
        out = copy.deepcopy(coco)
        cats = [c for c in out.get("categories", []) if list(c.get("keypoints") or []) == list(self.source_names)]
        if not cats:
            raise ValueError(f"no category has the source keypoint names ({len(self.source_names)} points "
                             f"starting {list(self.source_names[:3])})")
        ids = {c["id"] for c in cats}
        for c in cats:
            c["skeleton"] = self._target_skeleton_from(c.get("skeleton"))
            c["keypoints"] = list(self.target_names)
        ks = len(self.source_names)
        for ann in out.get("annotations", []):
            if ann.get("category_id") not in ids:
                continue
            kps = ann.get("keypoints")
            if not isinstance(kps, list) or len(kps) != 3 * ks:
                raise LabelError(f"annotation id {ann.get('id')}: 'keypoints' must be {3 * ks} numbers "
                                 f"[x, y, v] * {ks} (source convention)")
            mapped = self.apply(np.asarray(kps, dtype=np.float64).reshape(ks, 3))
            flat: list[float | int] = []
            for x, y, v in mapped.tolist():
                flat += [x, y, int(v)] if float(v).is_integer() else [x, y, v]
            ann["keypoints"] = flat
            ann["num_keypoints"] = int((mapped[:, 2] > 0).sum())
        return out


#: The synthetic -> CarFusion table. **Wheels map to the wheel centres** -- check that this is what
#: the real labels mark; if they mark the tyre-ground contact use
#: :data:`SYNTH24_TO_REAL14_TYRE_BOTTOM`. The two differ by a wheel radius, which is exactly the
#: wheel-centre vs tyre-bottom mismatch the seed run hit. Unmapped synthetic points: the 4 tyre
#: bottoms (or centres), the 4 roof corners, rear_logo, rear_plate.
SYNTH24_TO_REAL14 = KeypointMapping(SYNTH_CAR24_NAMES, CARFUSION14_NAMES, {
    "front_right_wheel": "front_right_wheel_centre",
    "front_left_wheel": "front_left_wheel_centre",
    "rear_right_wheel": "rear_right_wheel_centre",
    "rear_left_wheel": "rear_left_wheel_centre",
    "right_fog_light": "right_fog_light",
    "left_fog_light": "left_fog_light",
    "right_headlight": "right_headlight",
    "left_headlight": "left_headlight",
    "front_auto_logo": "front_logo",
    "front_license_plate": "front_plate",
    "left_rear_view_mirror": "left_mirror",
    "right_rear_view_mirror": "right_mirror",
    "right_taillight": "right_taillight",
    "left_taillight": "left_taillight",
})

#: As :data:`SYNTH24_TO_REAL14` but the four wheel points come from the tyre bottoms.
SYNTH24_TO_REAL14_TYRE_BOTTOM = KeypointMapping(SYNTH_CAR24_NAMES, CARFUSION14_NAMES, {
    **SYNTH24_TO_REAL14.pairs,
    "front_right_wheel": "front_right_tyre_bottom",
    "front_left_wheel": "front_left_tyre_bottom",
    "rear_right_wheel": "rear_right_tyre_bottom",
    "rear_left_wheel": "rear_left_tyre_bottom",
})

#: Mapping tables by name (the keypoint task's ``synthetic_mapping`` setting).
MAPPINGS: dict[str, KeypointMapping] = {
    "synth24_to_real14": SYNTH24_TO_REAL14,
    "synth24_to_real14_tyre_bottom": SYNTH24_TO_REAL14_TYRE_BOTTOM,
}
