"""Multi-label image data (e.g. car door / hood open states): labels, state map, augmentation.

Label CSV layout (``shared/data/car_doors``)::

    image,front_right,front_left,rear_right,rear_left,hood      (or first column ``image_path``)
    images/0.jpg,0,0,1,0,0

Values: ``1`` positive, ``0`` negative, missing (empty cell / NaN / ``-1``) -> stored as ``-1``.
Missing entries are masked out of the partial-label BCE (seed ``door_state``: N binary heads
trained with masked BCE) and of the metrics (:mod:`kagglekit.metrics.classification`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "MISSING", "CamErase", "LabelError", "MultiLabelDataset",
    "StateMap", "build_transforms", "cam_erase", "load_labels", "sample_weights",
]

MISSING = -1
IMAGE_COLUMNS = ("image", "image_path")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_MISSING_TOKENS = {"", "nan", "na", "n/a", "none", "null", "-1", "-1.0"}
_MAX_LISTED = 5


class LabelError(ValueError):
    """Bad label / image input; the message names the file, row and column and how to fix it."""


# ----------------------------------------------------------------------------------------------
# Label CSV
# ----------------------------------------------------------------------------------------------
def _image_column(columns: Sequence[str], source: str, image_column: str | None) -> str:
    """The image column: ``image_column`` if given, else the first of ``image`` / ``image_path``."""
    if image_column is not None:
        if image_column not in columns:
            raise LabelError(f"{source}: image column {image_column!r} not found; columns are "
                             f"{list(columns)} (pass image_column=<name of the image column>)")
        return image_column
    for name in IMAGE_COLUMNS:
        if name in columns:
            return name
    raise LabelError(f"{source}: no image column (expected one of {list(IMAGE_COLUMNS)}); columns "
                     f"are {list(columns)} (rename it or pass image_column=...)")


def _parse_cell(raw: str) -> int | None:
    """'1'/'1.0' -> 1, '0'/'0.0' -> 0, missing tokens -> -1, anything else -> None (invalid)."""
    s = raw.strip().lower()
    if s in _MISSING_TOKENS:
        return MISSING
    try:
        v = float(s)
    except ValueError:
        return None
    return int(v) if v in (0.0, 1.0) else None


def _parse_column(values: pd.Series, column: str, source: str) -> np.ndarray:
    """(N,) int8 in {1, 0, -1}; LabelError naming the first bad row (1-based; CSV line = row + 1)."""
    out = np.empty(len(values), np.int8)
    for i, raw in enumerate(values.tolist()):
        v = _parse_cell(str(raw))
        if v is None:
            raise LabelError(f"{source}: row {i + 1} (line {i + 2}), column {column!r}: value "
                             f"{raw!r} is not 1, 0 or missing (empty / NaN / -1); fix the cell")
        out[i] = v
    return out


def _check_images(frame: pd.DataFrame, image_col: str, image_root: Path, source: str) -> None:
    """Duplicate image names and missing image files -> LabelError listing the first few."""
    names = frame[image_col].astype(str)
    dup = names[names.duplicated(keep="first")]
    if len(dup):
        rows = [int(i) + 1 for i in dup.index[:_MAX_LISTED]]
        raise LabelError(f"{source}: column {image_col!r}: {len(dup)} duplicate image(s), e.g. "
                         f"{dup.tolist()[:_MAX_LISTED]} at rows {rows}; keep one row per image")
    missing = [(i + 1, n) for i, n in enumerate(names) if not (image_root / n).is_file()]
    if missing:
        raise LabelError(f"{source}: {len(missing)} image file(s) not found under {image_root}, "
                         f"e.g. (row, {image_col}) {missing[:_MAX_LISTED]}; fix the paths or "
                         "remove those rows")


def load_labels(csv_path: str | Path, image_root: str | Path,
                attributes: Sequence[str] | None = None,
                image_column: str | None = None) -> pd.DataFrame:
    """Read and validate a multi-label CSV.

    Args:
        csv_path: CSV with an image column (``image`` or ``image_path``, auto-detected) and
            one column per attribute holding 1, 0 or missing (empty / NaN / -1).
        image_root: folder the image paths are relative to (every file must exist).
        attributes: columns to keep, in this order (default: every non-image column).
        image_column: name of the image column (default: auto-detect).

    Returns:
        DataFrame (N, 1 + K): the image column (str), then the K attributes as int8 with
        -1 = missing; index 0..N-1 in file order.

    Raises:
        LabelError: no rows, unknown columns, values outside {0, 1, missing}, duplicate images,
            missing image files -- each naming the file, row and column.
    """
    source = str(csv_path)
    raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    col = _image_column(list(raw.columns), source, image_column)
    if len(raw) == 0:
        raise LabelError(f"{source}: no rows (only a header?); add labelled images")
    others = [c for c in raw.columns if c != col]
    attrs = list(others if attributes is None else attributes)
    unknown = [a for a in attrs if a not in others]
    if unknown:
        raise LabelError(f"{source}: unknown attribute column(s) {unknown}; the file has {others} "
                         "(fix `attributes` or the CSV header)")
    if not attrs:
        raise LabelError(f"{source}: no attribute columns besides {col!r}; add label columns")
    out = pd.DataFrame({col: raw[col].astype(str).str.strip()})
    for a in attrs:
        out[a] = _parse_column(raw[a], a, source)
    _check_images(out, col, Path(image_root), source)
    return out


# ----------------------------------------------------------------------------------------------
# Attribute vector -> state name
# ----------------------------------------------------------------------------------------------
def _key_to_str(key: tuple[int, ...]) -> str:
    return ",".join(str(int(v)) for v in key)


def _str_to_key(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


@dataclass(frozen=True)
class StateMap:
    """Maps a binary attribute vector to a state name (seed ``door_state``).

    Example (door heads ``("open", "closed")``)::

        StateMap(("open", "closed"),
                 {(1, 0): "open", (0, 1): "closed", (1, 1): "mixed", (0, 0): "unknown"})

    ``state_of`` returns ``"?"`` for a vector with a missing (-1) entry or not in ``states``.
    """

    attributes: tuple[str, ...]
    states: dict[tuple[int, ...], str] = field(hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", tuple(self.attributes))
        k = len(self.attributes)
        clean: dict[tuple[int, ...], str] = {}
        for key, name in self.states.items():
            key = tuple(int(v) for v in key)
            if len(key) != k or any(v not in (0, 1) for v in key):
                raise ValueError(f"StateMap key {key} must be {k} values in {{0, 1}} "
                                 f"(one per attribute {self.attributes})")
            clean[key] = str(name)
        object.__setattr__(self, "states", clean)

    def state_of(self, vector: Sequence[int] | np.ndarray) -> str:
        """State name of one (K,) vector; ``"?"`` if it has a missing entry or is unmapped."""
        key = tuple(int(v) for v in np.asarray(vector).ravel())
        if len(key) != len(self.attributes) or any(v < 0 for v in key):
            return "?"
        return self.states.get(key, "?")

    def states_of(self, frame: pd.DataFrame) -> pd.Series:
        """(N,) state names of ``frame[attributes]`` rows (index kept)."""
        missing = [a for a in self.attributes if a not in frame.columns]
        if missing:
            raise LabelError(f"StateMap attributes {missing} not in the frame's columns "
                             f"{list(frame.columns)}")
        values = frame[list(self.attributes)].to_numpy()
        return pd.Series([self.state_of(v) for v in values], index=frame.index, dtype=object)

    def filter_rows(self, frame: pd.DataFrame,
                    drop_states: Sequence[str] = ("unknown",)) -> pd.DataFrame:
        """Rows whose state is not in ``drop_states`` (seed: "unknown" dropped at manifest build).

        Rows with state ``"?"`` are kept unless ``"?"`` is listed. Index is reset to 0..M-1.
        """
        keep = ~self.states_of(frame).isin(list(drop_states))
        return frame.loc[keep.to_numpy()].reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON / ``torch.load(weights_only=True)``-safe: only str, list and dict of str."""
        return {"attributes": list(self.attributes),
                "states": {_key_to_str(k): v for k, v in self.states.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StateMap:
        """Inverse of :meth:`to_dict` (keys ``"1,0"`` -> ``(1, 0)``)."""
        return cls(tuple(data["attributes"]),
                   {_str_to_key(k): v for k, v in dict(data["states"]).items()})


# ----------------------------------------------------------------------------------------------
# Camera-overlay erase
# ----------------------------------------------------------------------------------------------
_ANCHORS = ("top_left", "top_right", "bottom_left", "bottom_right", "top", "bottom")
_MIN_FRAC = 0.05


def _erase_box(h: int, w: int, rng: np.random.Generator,
               max_frac: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the rectangle; see :func:`cam_erase` for the definition."""
    anchor = _ANCHORS[int(rng.integers(len(_ANCHORS)))]
    lo = min(_MIN_FRAC, max_frac)
    bh = max(1, int(round(rng.uniform(lo, max_frac) * h)))
    if anchor in ("top", "bottom"):  # a strip: timestamp / ticker along the edge
        bw = max(1, int(round(rng.uniform(max_frac, 1.0) * w)))
        x0 = int(rng.integers(0, w - bw + 1))
    else:
        bw = max(1, int(round(rng.uniform(lo, max_frac) * w)))
        x0 = 0 if anchor.endswith("left") else w - bw
    y0 = 0 if anchor.startswith("top") else h - bh
    return y0, y0 + bh, x0, x0 + bw


def cam_erase(image: np.ndarray, rng: np.random.Generator, max_frac: float = 0.25,
              p: float = 0.5) -> np.ndarray:
    """Camera-overlay erase: blank a rectangle where camera overlays sit.

    Definition (the seed's "cam_erase" names the augmentation only; this is our reading of it):
    with probability ``p`` one of six anchors is drawn uniformly -- the four corners (logos,
    channel bugs) or a strip along the top / bottom edge (timestamps, HUD / ticker bars).
    Rectangle height = U(0.05, max_frac) * H. Corner boxes: width = U(0.05, max_frac) * W,
    flush with the corner. Strips: width = U(max_frac, 1) * W at a uniform horizontal offset.
    So the erased area is at most ``max_frac`` of the image. Fill: with probability 1/2 a
    constant random RGB colour, otherwise uniform uint8 noise. All randomness comes from ``rng``.

    Args:
        image: (H, W, 3) uint8. Not modified.
        rng: numpy Generator (seed it for reproducibility).
        max_frac: in (0, 1]; largest fraction of the image height (and corner width) erased.
        p: probability of erasing anything.

    Returns:
        (H, W, 3) uint8 copy.
    """
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"cam_erase needs an (H, W, C) uint8 image, got {image.shape} {image.dtype}")
    if not 0.0 < max_frac <= 1.0:
        raise ValueError(f"max_frac must be in (0, 1], got {max_frac}")
    out = image.copy()
    if rng.random() >= p:
        return out
    h, w, c = image.shape
    y0, y1, x0, x1 = _erase_box(h, w, rng, max_frac)
    if rng.random() < 0.5:
        out[y0:y1, x0:x1] = rng.integers(0, 256, size=c, dtype=np.uint8)
    else:
        out[y0:y1, x0:x1] = rng.integers(0, 256, size=(y1 - y0, x1 - x0, c), dtype=np.uint8)
    return out


class CamErase(A.ImageOnlyTransform):
    """albumentations wrapper of :func:`cam_erase` (``p`` = the transform's probability).

    The per-call seed is drawn from the transform's own ``self.random_generator``, which
    albumentations 2.x seeds from ``A.Compose(..., seed=...)``: same seed -> same erases.
    """

    class InitSchema(A.ImageOnlyTransform.InitSchema):
        max_frac: float = 0.25

    def __init__(self, max_frac: float = 0.25, p: float = 0.5) -> None:
        super().__init__(p=p)
        if not 0.0 < max_frac <= 1.0:
            raise ValueError(f"max_frac must be in (0, 1], got {max_frac}")
        self.max_frac = float(max_frac)

    def get_params(self) -> dict[str, Any]:
        return {"erase_seed": int(self.random_generator.integers(0, 2**63 - 1))}

    def apply(self, img: np.ndarray, erase_seed: int = 0, **params: Any) -> np.ndarray:
        return cam_erase(img, np.random.default_rng(erase_seed), self.max_frac, p=1.0)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_frac",)


# ----------------------------------------------------------------------------------------------
# Sampling weights
# ----------------------------------------------------------------------------------------------
def sample_weights(targets: np.ndarray) -> np.ndarray:
    """Inverse frequency of each row's label combination, normalised to mean 1.

    Args:
        targets: (N, K) int with 1 / 0 / -1 (missing; treated as its own value).

    Returns:
        (N,) float64 weights for ``torch.utils.data.WeightedRandomSampler``: every distinct
        combination gets the same total weight, so rare combinations are drawn as often as
        common ones.
    """
    t = np.asarray(targets)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"targets must be (N, K) with N > 0, got {t.shape}")
    if not np.isin(t, (-1, 0, 1)).all():
        raise ValueError("targets must be 1, 0 or -1 (missing)")
    _, inverse, counts = np.unique(t, axis=0, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse.ravel()].astype(np.float64)
    return w / w.mean()


# ----------------------------------------------------------------------------------------------
# Dataset and transforms
# ----------------------------------------------------------------------------------------------
def _read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8; LabelError naming the file when missing or unreadable."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise LabelError(f"image {path} cannot be read ({type(exc).__name__}: {exc}); fix the "
                         "file or remove its row from the label CSV") from exc


class MultiLabelDataset(torch.utils.data.Dataset):
    """Images + multi-label targets.

    Items: ``{"image": float32 (3, H, W) ImageNet-normalised, "target": float32 (K,) with
    -1 = missing, "id": str (the image column value)}``. ``transform`` (albumentations) runs
    on the uint8 image first; then, if ``image_size`` is set and the result is not square of
    that size, it is resized to (image_size, image_size); normalisation comes last.
    """

    def __init__(self, frame: pd.DataFrame, image_root: str | Path, attributes: Sequence[str],
                 transform: A.Compose | None = None, image_size: int | None = None,
                 image_column: str | None = None) -> None:
        self.image_column = _image_column(list(frame.columns), "frame", image_column)
        attrs = list(attributes)
        unknown = [a for a in attrs if a not in frame.columns]
        if unknown:
            raise LabelError(f"frame: attribute column(s) {unknown} not found; columns are "
                             f"{list(frame.columns)}")
        targets = frame[attrs].to_numpy()
        if not np.isin(targets, (-1, 0, 1)).all():
            raise LabelError("frame: attribute values must be 1, 0 or -1 (missing); "
                             "load the CSV with load_labels")
        self.ids = frame[self.image_column].astype(str).tolist()
        self.targets = targets.astype(np.float32)
        self.image_root = Path(image_root)
        self.attributes = tuple(attrs)
        self.transform = transform
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = _read_rgb(self.image_root / self.ids[index])
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        s = self.image_size
        if s is not None and image.shape[:2] != (s, s):
            image = cv2.resize(image, (s, s), interpolation=cv2.INTER_AREA)
        x = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return {"image": torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))),
                "target": torch.from_numpy(self.targets[index].copy()),
                "id": self.ids[index]}


def build_transforms(image_size: int, train: bool, cam_erase_p: float = 0.5,
                     hflip_p: float = 0.0, seed: int | None = None) -> A.Compose:
    """albumentations pipeline on uint8 (H, W, 3) -> (image_size, image_size, 3) uint8.

    Train: squash-resize to a square, RandomResizedCrop (scale 0.7-1, ratio 3/4-4/3), optional
    horizontal flip, colour jitter, :class:`CamErase`. Valid: squash-resize only.

    ``hflip_p`` (flip probability) is 0 by default: mirroring an image swaps the car's left and
    right sides, so with side-specific attributes (front_left / front_right, ...) a flip without
    swapping the labels teaches wrong targets. Set it only for side-symmetric attribute sets.
    The resize comes first because RandomResizedCrop with ratio ~1 and scale 0.7 cannot fit in
    a wide 512x221 frame (it would fall back to a centre crop every time).
    """
    resize = A.Resize(image_size, image_size, interpolation=cv2.INTER_AREA)
    if not train:
        return A.Compose([resize], seed=seed)
    ops: list[A.BasicTransform] = [
        resize,
        A.RandomResizedCrop(size=(image_size, image_size), scale=(0.7, 1.0),
                            ratio=(3 / 4, 4 / 3), p=1.0),
    ]
    if hflip_p > 0:
        ops.append(A.HorizontalFlip(p=hflip_p))
    ops += [A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.8),
            CamErase(max_frac=0.25, p=cam_erase_p)]
    return A.Compose(ops, seed=seed)


# ----------------------------------------------------------------------------------------------
# Pre-flight
# ----------------------------------------------------------------------------------------------
def preflight_labels(csv_path: str | Path, image_root: str | Path, attributes: Sequence[str] | None = None,
                     image_column: str | None = None) -> list[str]:
    """Every problem :func:`load_labels` would stop at, all at once, plus each listed image's
    header (exists, decodes): bad cells, duplicate images, missing / corrupt image files. Empty:
    the CSV loads and every image opens."""
    from kagglekit.experiment.preflight import image_problems
    csv_path, source = Path(csv_path), str(csv_path)
    if not csv_path.is_file():
        return [f"{source}: label CSV not found; set data_dir / labels_csv to the folder holding it (or run with --demo)"]
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        return [f"{source}: cannot parse the label CSV ({type(exc).__name__}: {exc}); fix the file"]
    try:
        col = _image_column(list(raw.columns), source, image_column)
    except LabelError as exc:
        return [str(exc)]
    if len(raw) == 0:
        return [f"{source}: no rows (only a header?); add labelled images"]
    others = [c for c in raw.columns if c != col]
    attrs = list(others if attributes is None else attributes)
    unknown = [a for a in attrs if a not in others]
    if unknown or not attrs:
        return [f"{source}: unknown attribute column(s) {unknown}; the file has {others} (fix `attributes` or the CSV header)"
                if unknown else f"{source}: no attribute columns besides {col!r}; add label columns"]
    problems = [f"{source}: row {i + 1} (line {i + 2}), column {a!r}: value {value!r} is not 1, 0 or missing "
                "(empty / NaN / -1); fix the cell"
                for a in attrs for i, value in enumerate(raw[a].tolist()) if _parse_cell(str(value)) is None]
    names = raw[col].astype(str).str.strip()
    problems += [f"{source}: row {i + 1} (line {i + 2}), column {col!r}: image {name!r} is listed again; keep one row per image"
                 for i, name in names[names.duplicated(keep="first")].items()]
    problems += image_problems([Path(image_root) / n for n in names], "image",
                               f"restore the file or remove its row from {source}", source)
    return problems
