"""Image and mask files as competitions ship them: a folder of JPEG / PNG / TIFF / BMP / WebP
files named by id, RGB or greyscale (8- or 16-bit), masks as single-channel integer PNG / TIFF
(palette PNGs read as their indices, the usual VOC / ADE20K convention).

Every reader raises :class:`FormatError` with one line naming the file and the expected format.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)
_MASK_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I", "1")


class FormatError(ValueError):
    """A file is missing or not in the expected format; the message names it and says what was expected."""


def files_by_stem(folder: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> dict[str, Path]:
    """``{stem: path}`` of the image files directly inside ``folder`` (sorted by stem). Two files
    with one stem (``a.jpg`` and ``a.png``) are ambiguous: an error naming both."""
    if not folder.is_dir():
        raise FormatError(f"{folder}: folder not found; set the config path to the folder holding the images / masks")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in extensions or path.name.startswith("."):
            continue
        if path.stem in found:
            raise FormatError(f"{folder}: {found[path.stem].name} and {path.name} share the id {path.stem!r}; keep one")
        found[path.stem] = path
    return found


def _open(path: Path, what: str) -> Image.Image:
    if not path.is_file():
        raise FormatError(f"{path}: {what} file not found")
    try:
        img = Image.open(path)
        img.load()  # decode fully: truncated files fail here, not mid-epoch
    except DECODE_ERRORS as exc:
        raise FormatError(f"{path}: cannot decode the {what} ({type(exc).__name__}); expected a "
                          f"{'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} file") from None
    return img


def image_hw(path: Path) -> tuple[int, int]:
    """(H, W) from the file header (pixels are not decoded)."""
    try:
        with Image.open(path) as img:
            return int(img.height), int(img.width)
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except DECODE_ERRORS as exc:
        raise FormatError(f"{path}: not a readable image ({type(exc).__name__})") from None


def read_rgb(path: Path) -> np.ndarray:
    """Any 8/16-bit RGB(A), greyscale or palette image → (H, W, 3) uint8. Greyscale is repeated
    into 3 channels (ImageNet-pretrained encoders expect RGB); 16-bit values keep their top 8
    bits; alpha is dropped."""
    img = _open(Path(path), "image")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = (np.asarray(img, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode == "F":
        raise FormatError(f"{path}: a float image; expected 8/16-bit RGB or greyscale")
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_mask(path: Path) -> np.ndarray:
    """A single-channel integer mask → (H, W) int64 of the values stored (palette PNG: indices).
    Colour-coded RGB masks are refused: map colours to class ids first."""
    img = _open(Path(path), "mask")
    if img.mode not in _MASK_MODES:
        raise FormatError(f"{path}: mask has PIL mode {img.mode!r}; expected a single-channel integer PNG/TIFF "
                          "(pixel value = class id; colour-coded RGB masks must be mapped to ids first)")
    return np.asarray(img, dtype=np.int64)
