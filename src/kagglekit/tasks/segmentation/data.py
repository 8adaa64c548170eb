"""NYUv2 13-class RGB-D segmentation data: readers, validation, dataset and transforms.

On-disk layout (written by :mod:`kagglekit.demo.nyuv2` and :mod:`kagglekit.tasks.segmentation.convert`)::

    <root>/{train,test}/image/<id>.png   RGB uint8 (H, W, 3)
    <root>/{train,test}/depth/<id>.png   16-bit greyscale, millimetres, 0 = missing
    <root>/{train,test}/label/<id>.png   8-bit greyscale, 0 = void, 1..13 = NYUV2_CLASSES
    <root>/train.csv, <root>/test.csv     column ``id`` (zero-padded strings such as ``0001``)

Label conventions: on disk 0 = void and k = class k (``nyuv2_labels13/classes.txt``); the model
sees ``k - 1`` (0..12) and ``IGNORE_INDEX`` for void (:func:`label_to_target`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image

from kagglekit.formats.images import FormatError, UnreadableImage, decode_image, read_mask_ids, read_rgb
from kagglekit.tasks.segmentation.classes import ClassTable, class_table
from kagglekit.tasks.segmentation.source import SplitFiles

# id 1..13 order of nyuv2_labels13/classes.txt (= class13Mapping.mat:classNames).
NYUV2_CLASSES: list[str] = ["bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
                            "picture", "sofa", "table", "tv", "wall", "window"]
NUM_CLASSES = len(NYUV2_CLASSES)
IGNORE_INDEX = 255
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
NEAR_DEPTH_M = 0.5  # Kinect v1 minimum range; inverse_depth maps it to 1
SPLITS = ("train", "test")
_FIX_HINT = ("regenerate it (python -m kagglekit.demo.nyuv2 --out <root>) or re-run the converter "
             "(python -m kagglekit.tasks.segmentation.convert --mat ... --mapping-dir ... --out <root>)")


class DataError(FormatError):
    """Bad input data; the message names the file and says how to fix it."""


# ------------------------------------------------------------------------------------------------
# Readers
# ------------------------------------------------------------------------------------------------


def _nyuv2_read(path: str | Path, what: str, opencv_keys: frozenset, rgb: bool, from_pil) -> np.ndarray:
    """:func:`~kagglekit.formats.images.decode_image` with the seed layout's error lines
    (DataError naming the file, the fix: regenerate / re-convert)."""
    try:
        return decode_image(Path(path), what, opencv_keys, rgb, from_pil)
    except UnreadableImage as exc:
        if exc.cause is None:
            raise DataError(f"{path}: {what} file not found; {_FIX_HINT}") from None
        raise DataError(f"{path}: cannot decode {what} PNG ({exc.cause}); the file is corrupt or "
                        f"truncated, {_FIX_HINT}") from None


# Header keys (formats.images.header_key, subsets of its OPENCV_*_KEYS) that are exactly the PIL
# modes each reader accepts, so the OpenCV path needs no mode check; any other file goes to PIL,
# whose mode check refuses it as before.
_RGB_KEYS = frozenset({("png", 8, 2), ("png", 16, 2), ("jpeg", 8, 3)})  # PIL mode RGB
_DEPTH_KEYS = frozenset({("png", 16, 0)})  # I;16
_LABEL_KEYS = frozenset({("png", 8, 0)})  # L (palette P goes to PIL: its indices, not colours)


def _pil_image(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode != "RGB":
        raise DataError(f"{path}: image must be 8-bit RGB, got PIL mode {img.mode!r}; convert it "
                        f"with PIL `Image.open(p).convert('RGB').save(p)` or {_FIX_HINT}")
    return np.asarray(img, dtype=np.uint8).copy()


def _pil_depth(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode not in ("I;16", "I;16B", "I;16L"):
        raise DataError(f"{path}: depth must be a 16-bit greyscale PNG in millimetres, got PIL mode "
                        f"{img.mode!r} (8-bit depth loses all precision); {_FIX_HINT}")
    return np.asarray(img)


def _pil_label(img: Image.Image, path: Path, num_classes: int) -> np.ndarray:
    if img.mode not in ("L", "P"):
        raise DataError(f"{path}: label must be an 8-bit greyscale PNG (0 = void, 1..{num_classes}), "
                        f"got PIL mode {img.mode!r}; {_FIX_HINT}")
    return np.asarray(img, dtype=np.uint8).copy()


def read_image(path: str | Path) -> np.ndarray:
    """RGB image as (H, W, 3) uint8. Raises DataError unless the file is an 8-bit RGB image."""
    return _nyuv2_read(path, "image", _RGB_KEYS, True, _pil_image)


def read_depth(path: str | Path) -> np.ndarray:
    """Depth as (H, W) float32 metres (0 = missing) from a 16-bit PNG in millimetres."""
    depth_mm = _nyuv2_read(path, "depth", _DEPTH_KEYS, False, _pil_depth)
    # one pass: the float32 cast and the division of the old ``astype(float32) / 1000.0``, same bits
    return np.divide(depth_mm, 1000.0, dtype=np.float32)


def read_label(path: str | Path, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Label map as (H, W) uint8 with values in 0..num_classes (0 = void)."""
    label = _nyuv2_read(path, "label", _LABEL_KEYS, False, partial(_pil_label, num_classes=num_classes))
    if int(label.max(initial=0)) <= num_classes:  # one vectorised max; the values only for the message
        return label
    bad = np.unique(label[label > num_classes])
    raise DataError(
        f"{path}: label values {bad.tolist()} are outside 0..{num_classes} (0 = void, 1..{num_classes} "
        f"= classes.txt of nyuv2_labels13). Raw NYUv2 ids (894 classes) or 40-class ids must be "
        f"mapped to 13 classes first: re-run kagglekit.tasks.segmentation.convert, or check "
        f"whether 255 was written for void (use 0).")


def read_ids(csv_path: str | Path) -> list[str]:
    """Ids of a split csv (column ``id``) as strings, keeping the zero padding (``0001``)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: split file not found; {_FIX_HINT}")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if "id" not in frame.columns:
        raise DataError(f"{csv_path}: needs a column 'id', found {list(frame.columns)}; {_FIX_HINT}")
    return frame["id"].tolist()


# ------------------------------------------------------------------------------------------------
# Label / depth encodings
# ------------------------------------------------------------------------------------------------


def label_to_target(label: np.ndarray) -> np.ndarray:
    """On-disk label (H, W) in 0..13 -> model target (H, W) int64: 0 -> IGNORE_INDEX, k -> k-1."""
    label = np.asarray(label)
    target = label.astype(np.int64) - 1
    target[label == 0] = IGNORE_INDEX
    return target


def target_to_label(target: np.ndarray) -> np.ndarray:
    """Inverse of :func:`label_to_target`: model classes (H, W) 0..12 -> 1..13, IGNORE_INDEX -> 0."""
    target = np.asarray(target).astype(np.int64)
    valid = ((target >= 0) & (target < NUM_CLASSES)) | (target == IGNORE_INDEX)
    if not valid.all():
        raise ValueError(f"target values must be 0..{NUM_CLASSES - 1} or {IGNORE_INDEX}, found "
                         f"{np.unique(target[~valid])[:10].tolist()}")
    return np.where(target == IGNORE_INDEX, 0, target + 1).astype(np.uint8)


def inverse_depth(depth_m: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Input channel from depth (H, W) metres -> (H, W) float32 in [0, 1]: ``NEAR_DEPTH_M / d``
    clipped to [0, 1]; missing depth (0) -> 0. ``out``: an (H, W) float32 buffer to write into
    (e.g. the 4th plane of the model input), returned.

    Why inverse depth: it is proportional to disparity, which is what a structured-light sensor
    measures (Kinect v1), it is bounded (0.5 m -> 1, 5 m -> 0.1) without per-image statistics,
    it gives near geometry (where depth is accurate) the most resolution, and missing depth = 0
    reads as "infinitely far / no signal" rather than as a plausible close surface.
    """
    depth_m = np.asarray(depth_m, dtype=np.float32)
    out = np.empty(depth_m.shape, np.float32) if out is None else out
    out.fill(0.0)
    np.divide(np.float32(NEAR_DEPTH_M), depth_m, out=out, where=depth_m > 0)  # > 0 only: d > 0 -> no lower clip
    return np.minimum(out, 1.0, out=out)


# ImageNet normalisation of every uint8 value, per channel: (256, 3) float32 computed with the same
# float32 operations as ``(x.astype(float32) / 255 - mean) / std``, so a table look-up gives the
# same bits in one pass per plane (no float HWC temporaries, no transposing copy).
_NORMALISE_LUT = [np.ascontiguousarray(column) for column in
                  ((np.arange(256, dtype=np.float32)[:, None] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).T]


def model_input(image: np.ndarray, depth_m: np.ndarray | None = None) -> np.ndarray:
    """(C, H, W) float32 C-contiguous model input from image (H, W, 3) RGB: the ImageNet-normalised
    RGB planes, plus :func:`inverse_depth` of ``depth_m`` (H, W) metres as a 4th plane when given.
    uint8 images (the readers' output) go through a 256-entry table per channel (cv2.LUT, exact);
    other dtypes through the same arithmetic, in place."""
    h, w = image.shape[:2]
    out = np.empty((3 if depth_m is None else 4, h, w), np.float32)
    if image.dtype == np.uint8:
        for c, plane in enumerate(cv2.split(image)):  # contiguous uint8 planes, SIMD split
            written = cv2.LUT(plane, _NORMALISE_LUT[c], dst=out[c])
            if written.ctypes.data != out[c].ctypes.data:  # OpenCV reallocated instead of writing in place
                out[c] = written
    else:
        for c in range(3):
            np.divide(image[..., c], 255.0, out=out[c], dtype=np.float32)
            out[c] -= IMAGENET_MEAN[c]
            out[c] /= IMAGENET_STD[c]
    if depth_m is not None:
        inverse_depth(depth_m, out=out[3])
    return out


# ------------------------------------------------------------------------------------------------
# Transforms
# ------------------------------------------------------------------------------------------------

# Depth travels through albumentations as an extra *mask* target: it gets the same geometry as
# image and label, is resized with nearest neighbour (no interpolation across depth edges, no
# blending of valid depth with 0 = missing) and padded with the mask fill value.
ADDITIONAL_TARGETS = {"depth": "mask"}


def build_train_transform(input_hw: tuple[int, int] = (720, 960), crop_hw: tuple[int, int] = (576, 768),
                          scale_limit: tuple[float, float] = (-0.25, 0.25), hflip_p: float = 0.5) -> A.Compose:
    """Resize to ``input_hw``, random scale by 1 + U(scale_limit), pad to at least ``crop_hw``
    (image 0, mask IGNORE_INDEX), random crop ``crop_hw``, horizontal flip. Masks: nearest."""
    h, w = crop_hw
    return A.Compose([
        A.Resize(*input_hw, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST),
        A.RandomScale(scale_limit=scale_limit, interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0),
        A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0,
                      fill_mask=IGNORE_INDEX),
        A.RandomCrop(height=h, width=w),
        A.HorizontalFlip(p=hflip_p),
    ], additional_targets=ADDITIONAL_TARGETS)


def build_valid_transform(input_hw: tuple[int, int] = (720, 960)) -> A.Compose:
    """Resize only (image linear, masks and depth nearest)."""
    return A.Compose([A.Resize(*input_hw, interpolation=cv2.INTER_LINEAR,
                               mask_interpolation=cv2.INTER_NEAREST)],
                     additional_targets=ADDITIONAL_TARGETS)


def _apply_transform(transform: A.Compose | None, image: np.ndarray, depth_m: np.ndarray | None,
                     label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Run ``transform`` on image (H, W, 3), depth (H, W) metres and target (H, W) together.

    albumentations pads every mask-type target with the same ``fill_mask`` (IGNORE_INDEX), so
    depth travels *negated* (valid depth <= 0): any value > 0 afterwards is padding and becomes
    0 = missing, whatever the fill value.
    """
    if transform is None:
        return image, depth_m, label
    # albumentations wants every additional target it was built with: a zero plane stands in
    # for a split without depth (nearest resize / padding of zeros cost next to nothing)
    depth_in = np.negative(depth_m) if depth_m is not None else np.zeros(image.shape[:2], np.float32)
    kwargs = {"image": image, "depth": depth_in}
    if label is not None:
        kwargs["mask"] = label
    out = transform(**kwargs)
    if depth_m is None:
        return out["image"], None, (out["mask"] if label is not None else None)
    depth = np.negative(out["depth"], dtype=np.float32)  # a new C-contiguous array (the crop is a view)
    np.maximum(depth, 0.0, out=depth)  # padding (now < 0) -> 0 = missing
    return out["image"], depth, (out["mask"] if label is not None else None)


@dataclass(frozen=True)
class Readers:
    """How one layout reads its files: image → (H, W, 3) uint8, mask → (H, W) int ids,
    depth → (H, W) float32 metres."""

    image: Callable[[Path], np.ndarray]
    mask: Callable[[Path], np.ndarray]
    depth: Callable[[Path], np.ndarray]


def nyuv2_readers(max_label: int = NUM_CLASSES) -> Readers:
    """The seed layout's strict readers (8-bit RGB PNG, 8-bit label PNG in 0..max_label)."""
    return Readers(read_image, partial(read_label, num_classes=max_label), read_depth)  # partial: picklable


# masks in their file's dtype: 8-bit masks stay uint8 for the class table's uint8 look-up
GENERIC_READERS = Readers(read_rgb, read_mask_ids, read_depth)
_UNKNOWN = 254  # target sentinel of ids outside the table: indices are 0..253 (< IGNORE_INDEX classes)


def _uint8_lut(table: ClassTable) -> np.ndarray:
    """(256,) uint8: competition id 0..255 -> model index, IGNORE_INDEX for void, _UNKNOWN for ids
    the table does not have (the table's own look-up, so targets are the same bits)."""
    lut = table._lut(256)[:256]
    return np.where(lut < 0, _UNKNOWN, lut).astype(np.uint8)


class SegmentationDataset(torch.utils.data.Dataset):
    """Frames of one split (:class:`~kagglekit.tasks.segmentation.source.SplitFiles`).

    Each item is a dict:
      - ``image``: float32 (C, H, W), RGB normalised with ImageNet mean/std; C = 4 with
        ``use_depth_input`` (4th channel = :func:`inverse_depth` of the transformed depth);
      - ``depth``: float32 (1, H, W) metres, 0 = missing (only when the split has depth files);
      - ``mask``: int64 (H, W), class indices of the class table, IGNORE_INDEX for void/padding
        (only with labels; masks hold competition ids, mapped through ``table``);
      - ``id``: str; ``orig_size``: int64 (2,) = (H0, W0) of the file before the transform.
    The transform must be geometry-only (built with ``additional_targets={'depth': 'mask'}``);
    normalisation happens here, after it. ``labels``: id → (H, W) competition ids for masks that
    come from an RLE CSV (overrides ``files.masks``).

    No per-item validation beyond what decoding does anyway: headers, modes, sizes and mask
    values are the pre-flight's job (:func:`preflight_dataset`). The header bytes the decoder reads
    route any file OpenCV would read differently to PIL (whose mode check then refuses a wrong
    mode, as before), a mask id outside the table still fails the table's look-up, and a file that
    turned bad since the pre-flight is one error line naming it.
    """

    def __init__(self, files: SplitFiles, table: ClassTable, transform: A.Compose | None = None,
                 use_depth_input: bool = False, with_labels: bool = True, readers: Readers = GENERIC_READERS,
                 labels: Callable[[str], np.ndarray] | None = None) -> None:
        if use_depth_input and files.depth is None:
            raise DataError(f"use_depth_input=true but split {files.name} has no depth files; set "
                            f"{files.name}_depth to the depth folder or use_depth_input=false")
        self.files, self.table, self.ids = files, table, list(files.ids)
        self.transform, self.use_depth_input, self.readers = transform, use_depth_input, readers
        self.with_labels = with_labels and (files.masks is not None or labels is not None)
        self.labels = labels
        self._target_lut = _uint8_lut(table)

    def __len__(self) -> int:
        return len(self.ids)

    def _mask(self, frame_id: str) -> tuple[np.ndarray, Path | str]:
        if self.labels is not None:
            return self.labels(frame_id), f"{self.files.masks_csv} ({frame_id})"
        path = self.files.masks[frame_id]
        return self.readers.mask(path), path

    def _target(self, mask: np.ndarray, where: Path | str) -> np.ndarray:
        """Mask (H, W) of competition ids -> target (H, W) uint8 = ``table.to_target(mask)``: 8-bit
        masks by the table's 256-entry look-up (cv2.LUT), others, and a mask with ids outside the
        table (for its error line naming ``where``), by ``to_target`` itself."""
        if mask.dtype == np.uint8 and mask.ndim == 2:
            target = cv2.LUT(mask, self._target_lut)
            if not (target == _UNKNOWN).any():
                return target
        return self.table.to_target(mask, where)

    def _load(self, frame_id: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """image (H, W, 3) uint8, depth (H, W) metres or None, target (H, W) uint8 or None."""
        image = self.readers.image(self.files.images[frame_id])
        depth = self.readers.depth(self.files.depth[frame_id]) if self.files.depth is not None else None
        target, shapes = None, {"image": image.shape[:2]}
        if depth is not None:
            shapes["depth"] = depth.shape
        if self.with_labels:
            mask, where = self._mask(frame_id)
            target, shapes["label"] = self._target(mask, where), mask.shape
        if len(set(shapes.values())) > 1:
            raise DataError(f"{self.files.images[frame_id]}: image, depth and label sizes differ {shapes} "
                            f"(id {frame_id}); {_FIX_HINT}")
        return image, depth, target

    def __getitem__(self, index: int) -> dict:
        frame_id = self.ids[index]
        image, depth, target = self._load(frame_id)
        orig_size = torch.tensor(image.shape[:2], dtype=torch.int64)
        image, depth, target = _apply_transform(self.transform, image, depth, target)
        # every array below is C-contiguous and owned by the item: torch.from_numpy copies nothing
        item = {"image": torch.from_numpy(model_input(image, depth if self.use_depth_input else None)),
                "id": frame_id, "orig_size": orig_size}
        if depth is not None:
            item["depth"] = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)[None])
        if target is not None:
            item["mask"] = torch.from_numpy(np.asarray(target).astype(np.int64))
        return item


class NYUv2Dataset(SegmentationDataset):
    """The seed preset: ``<root>/<split>/{image,depth,label}/<id>.png`` with the strict NYUv2
    readers, depth always read, labels 0 = void / k = class k of the 13 (or ``num_classes``)."""

    def __init__(self, root: str | Path, ids: Sequence[str], split: str = "train",
                 transform: A.Compose | None = None, use_depth_input: bool = False,
                 with_labels: bool = True, num_classes: int = NUM_CLASSES) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.split = Path(root), split
        ids = tuple(str(i) for i in ids)
        files = SplitFiles(split, ids, *(({i: self.root / split / k / f"{i}.png" for i in ids})
                                         for k in ("image", "label", "depth")))
        super().__init__(files, class_table(num_classes), transform, use_depth_input, with_labels,
                         nyuv2_readers(num_classes))

    def path(self, kind: str, frame_id: str) -> Path:
        """``<root>/<split>/<kind>/<id>.png`` for kind in image, depth, label."""
        return self.root / self.split / kind / f"{frame_id}.png"


def check_dataset(root: str | Path, split: str = "train", with_labels: bool | None = None) -> list[str]:
    """Ids of ``<root>/<split>.csv`` after checking every image/depth(/label) file exists.

    Labels are required for train; for test only when ``with_labels`` is True (default: labels
    are checked for train only, since a real competition's test split has none). All missing
    files are named in one DataError.
    """
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    ids = read_ids(root / f"{split}.csv")
    if not ids:
        raise DataError(f"{root / f'{split}.csv'}: lists no ids; {_FIX_HINT}")
    kinds = ["image", "depth"] + (["label"] if (split == "train" if with_labels is None else with_labels) else [])
    missing = [str(root / split / k / f"{i}.png") for i in ids for k in kinds
               if not (root / split / k / f"{i}.png").is_file()]
    if missing:
        shown = "\n  ".join(missing[:50]) + (f"\n  ... and {len(missing) - 50} more" if len(missing) > 50 else "")
        raise DataError(f"{root}: {len(missing)} file(s) listed by {split}.csv are missing:\n  {shown}\n"
                        f"Fix: {_FIX_HINT}")
    return ids


# ------------------------------------------------------------------------------------------------
# Pre-flight
# ------------------------------------------------------------------------------------------------

_NYUV2_MODES = {"image": (("RGB",), "8-bit RGB"), "depth": (("I;16", "I;16B", "I;16L"), "16-bit greyscale in millimetres")}
_ANY_MODES = {"image": (None, "an RGB or greyscale image"), "depth": (("I;16", "I;16B", "I;16L"), "16-bit greyscale in millimetres")}


def _header_problem(path: Path, kind: str, modes: dict, fix: str) -> tuple[str | None, tuple[int, int] | None]:
    """(problem, (H, W)) of an image / depth file from its header (pixels not decoded)."""
    from kagglekit.experiment.preflight import IMAGE_ERRORS, image_header
    if not path.is_file():
        return f"{path}: {kind} file not found; {fix}", None
    try:
        (w, h), mode = image_header(path)
    except IMAGE_ERRORS as exc:
        return f"{path}: cannot decode {kind} ({type(exc).__name__}: {exc}); the file is corrupt or truncated, {fix}", None
    allowed, wanted = modes[kind]
    if allowed is not None and mode not in allowed:
        return f"{path}: {kind} must be {wanted}, got PIL mode {mode!r}; {fix}", None
    return None, (h, w)


def _frame_problems(dataset: SegmentationDataset, frame_id: str, modes: dict, fix: str) -> list[str]:
    """Problems of one frame: image and depth headers (exists, decodes, mode), the mask fully
    decoded and mapped through the class table, and equal sizes."""
    files, problems, sizes = dataset.files, [], {}
    kinds = [("image", files.images)] + ([("depth", files.depth)] if files.depth is not None else [])
    for kind, paths in kinds:
        problem, hw = _header_problem(paths[frame_id], kind, modes, fix)
        problems += [problem] if problem else []
        if hw:
            sizes[kind] = hw
    if dataset.with_labels:
        try:
            mask, where = dataset._mask(frame_id)
            dataset.table.to_target(mask, where)
            sizes["label"] = mask.shape
        except FormatError as exc:
            problems.append(str(exc) if "not found" not in str(exc) else f"{exc}; {fix}")
    if len(set(sizes.values())) > 1:
        problems.append(f"{files.images[frame_id]}: image, depth and label sizes differ {sizes} (id {frame_id}); {fix}")
    return problems


def preflight_dataset(dataset: SegmentationDataset, strict_nyuv2: bool = False) -> list[str]:
    """Every problem of the files ``dataset`` reads (empty: all readable). Fast: image and depth
    headers only; masks are decoded (their values must be in the class table)."""
    from kagglekit.experiment.preflight import parallel_map
    modes, fix = (_NYUV2_MODES, _FIX_HINT) if strict_nyuv2 else (_ANY_MODES, "check the file or the config path")
    per_frame = parallel_map(lambda i: _frame_problems(dataset, i, modes, fix), dataset.ids)
    return [p for problems in per_frame for p in problems]


def preflight_split(root: str | Path, split: str, num_classes: int = NUM_CLASSES, with_labels: bool = True,
                    depth: bool = True) -> list[str]:
    """The seed layout's pre-flight: ``<root>/<split>.csv`` itself, then per id image / depth
    (headers), label (values in 0..num_classes) and matching sizes."""
    root = Path(root)
    try:
        ids = read_ids(root / f"{split}.csv")
    except DataError as exc:
        return [str(exc)]
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        return [f"{root / f'{split}.csv'}: cannot parse the split file ({exc}); {_FIX_HINT}"]
    if not ids:
        return [f"{root / f'{split}.csv'}: lists no ids; {_FIX_HINT}"]
    dataset = NYUv2Dataset(root, ids, split, with_labels=with_labels, num_classes=num_classes)
    if not depth:
        dataset.files = SplitFiles(split, dataset.files.ids, dataset.files.images, dataset.files.masks)
    return preflight_dataset(dataset, strict_nyuv2=True)
