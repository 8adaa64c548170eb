"""Image and mask files as competitions ship them: a folder of JPEG / PNG / TIFF / BMP / WebP
files named by id, RGB or greyscale (8- or 16-bit), masks as single-channel integer PNG / TIFF
(palette PNGs read as their indices, the usual VOC / ADE20K convention).

Every reader raises :class:`FormatError` with one line naming the file and the expected format.

Decoding: every reader returns PIL's pixels (``np.asarray(Image.open(p))`` and its mode handling).
PNG and JPEG files whose header puts them in a class where OpenCV's decode was checked equal to
PIL's (``OPENCV_RGB_KEYS`` / ``OPENCV_SINGLE_KEYS``: 8/16-bit greyscale, RGB, RGBA PNGs; 8-bit
greyscale / YCbCr JPEGs) are decoded with ``cv2.imdecode`` (libpng / libjpeg-turbo), which is
faster and skips PIL's per-file object set-up; palette and sub-8-bit PNGs (PIL gives indices /
bools), CMYK JPEGs (the two convert CMYK to RGB differently, by ±1), files without their end
marker, TIFF / BMP / WebP and anything OpenCV refuses are read by PIL as before.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

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


class UnreadableImage(FormatError):
    """A listed file that is missing (``cause`` None) or does not decode (``cause``: PIL's
    exception); the message is one line naming the file. Constructible from the message alone, so
    a DataLoader worker can re-raise it in the main process with its type."""

    def __init__(self, message: str, path: Path | None = None, what: str = "",
                 cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.path, self.what, self.cause = path, what, cause

    @classmethod
    def of(cls, path: Path, what: str, cause: BaseException | None = None) -> "UnreadableImage":
        if cause is None:
            return cls(f"{path}: {what} file not found", path, what)
        return cls(f"{path}: cannot decode the {what} ({type(cause).__name__}); expected a "
                   f"{'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} file", path, what, cause)


def _open(path: Path, what: str) -> Image.Image:
    """PIL image, fully decoded (``load()``: truncated files fail here, not mid-epoch)."""
    if not path.is_file():
        raise UnreadableImage.of(path, what)
    try:
        img = Image.open(path)
        img.load()
    except DECODE_ERRORS as exc:
        raise UnreadableImage.of(path, what, exc) from None
    return img


# ------------------------------------------------------------------------------------------------
# Header-routed decoding: OpenCV where it equals PIL, else PIL
# ------------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk with its fixed CRC (PNG spec 11.2.5)
_JPEG_EOI = b"\xff\xd9"
# Start-of-frame markers (ITU-T T.81 table B.1): C0..CF except C4 (DHT), C8 (JPG), CC (DAC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RST0..7, SOI: no length field (T.81 B.1.1.3)
HeaderKey = tuple[str, int, int]

# (format, bit depth, colour type / components) whose OpenCV decode equals PIL's, pixel for pixel:
# checked by tests/test_segmentation_readers.py for each key and on the shared coco128 / car_doors
# JPEGs and nyuv2_labels13 PNGs (both wheels bundle libjpeg-turbo with the default islow IDCT and fancy
# upsampling; a libjpeg build that differs by ±1 would fail those tests). PNG colour types: 0 grey,
# 2 RGB, 4 grey + alpha, 6 RGBA (PNG spec 11.2.2); RGB reads drop alpha and keep the top 8 bits of
# 16-bit samples, as PIL's ``convert("RGB")`` / ``>> 8`` do. 16-bit grey + alpha is left to PIL
# (it reads it as RGBA).
OPENCV_RGB_KEYS = frozenset({("png", 8, 0), ("png", 16, 0), ("png", 8, 2), ("png", 16, 2), ("png", 8, 4),
                             ("png", 8, 6), ("png", 16, 6), ("jpeg", 8, 1), ("jpeg", 8, 3)})
# Single-channel reads (masks, depth) with IMREAD_UNCHANGED: uint8 / uint16 values as stored.
OPENCV_SINGLE_KEYS = frozenset({("png", 8, 0), ("png", 16, 0)})


def header_key(data: bytes) -> HeaderKey | None:
    """``("png", bit depth, colour type)`` from a PNG's IHDR, ``("jpeg", bits, components)`` from a
    JPEG's frame header; None for other formats, a header that does not parse, or a file that
    does not end with its end marker (cut short, or trailing bytes): PIL decides those."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 33:
        return ("png", data[24], data[25]) if data.endswith(_PNG_END) else None
    if data[:2] == b"\xff\xd8" and data.endswith(_JPEG_EOI):
        return _jpeg_key(data)
    return None


def _jpeg_key(data: bytes) -> HeaderKey | None:
    """(bits, components) of the first start-of-frame segment, walking the marker segments."""
    i, n = 2, len(data)
    while i + 10 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF or marker in _JPEG_STANDALONE:  # fill byte (T.81 B.1.1.2) / no length
            i += 1 if marker == 0xFF else 2
        elif marker in _JPEG_SOF:
            return ("jpeg", data[i + 4], data[i + 9])  # Lf(2) P(1) Y(2) X(2) Nf(1) after the marker
        elif marker == 0xDA:  # a scan before any frame header: not a JPEG PIL would read either
            return None
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def read_bytes(path: Path, what: str) -> bytes:
    """The file's bytes; :class:`UnreadableImage` (one line naming it) when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UnreadableImage.of(path, what) from None
    except OSError as exc:
        raise UnreadableImage.of(path, what, exc) from None


def _imdecode(data: bytes, rgb: bool) -> np.ndarray | None:
    """OpenCV decode: RGB (H, W, 3) uint8 (EXIF orientation ignored, as PIL does) or, with
    ``rgb`` False, the stored samples (IMREAD_UNCHANGED). None when OpenCV refuses the file."""
    import cv2  # here, not at the top: the light modules that import FormatError skip OpenCV

    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB
    flags = cv2.IMREAD_UNCHANGED  # -1: never applies EXIF orientation
    if rgb:
        flags = (cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag) | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
    if array is not None and rgb and rgb_flag is None:
        cv2.cvtColor(array, cv2.COLOR_BGR2RGB, dst=array)
    return array


def decode_image(path: Path, what: str, opencv_keys: frozenset, rgb: bool,
                 from_pil: Callable[[Image.Image, Path], np.ndarray]) -> np.ndarray:
    """Pixels of ``path``: OpenCV when the header key is in ``opencv_keys`` (RGB (H, W, 3) uint8
    with ``rgb``, else the single channel (H, W) as stored), otherwise, or when OpenCV refuses the
    file (a PNG without IEND PIL still reads, a corrupt file), ``from_pil(image, path)`` on PIL's
    fully decoded image: the old reader, which checks the mode and names the file in its error.
    Raises :class:`UnreadableImage` for a missing or undecodable file."""
    data = read_bytes(path, what)
    if header_key(data) in opencv_keys:
        array = _imdecode(data, rgb)
        if array is not None and array.ndim == (3 if rgb else 2):  # e.g. tRNS → alpha: PIL decides
            return array
    return from_pil(_open(Path(path), what), Path(path))


def image_hw(path: Path) -> tuple[int, int]:
    """(H, W) from the file header (pixels are not decoded)."""
    try:
        with Image.open(path) as img:
            return int(img.height), int(img.width)
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except DECODE_ERRORS as exc:
        raise FormatError(f"{path}: not a readable image ({type(exc).__name__})") from None


def _pil_rgb(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = (np.asarray(img, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode == "F":
        raise FormatError(f"{path}: a float image; expected 8/16-bit RGB or greyscale")
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_rgb(path: Path) -> np.ndarray:
    """Any 8/16-bit RGB(A), greyscale or palette image → (H, W, 3) uint8. Greyscale is repeated
    into 3 channels (ImageNet-pretrained encoders expect RGB); 16-bit values keep their top 8
    bits; alpha is dropped."""
    return decode_image(path, "image", OPENCV_RGB_KEYS, True, _pil_rgb)


def _pil_mask(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode not in _MASK_MODES:
        raise FormatError(f"{path}: mask has PIL mode {img.mode!r}; expected a single-channel integer PNG/TIFF "
                          "(pixel value = class id; colour-coded RGB masks must be mapped to ids first)")
    array = np.asarray(img)
    # mode "1" → 0 / 1 (astype: PIL's bool arrays hold 255 for True); else a writeable copy, as OpenCV's are
    return array.astype(np.uint8) if array.dtype == bool else array.copy()


def read_mask_ids(path: Path) -> np.ndarray:
    """A single-channel integer mask → (H, W) of the values stored, in the file's own integer
    dtype (uint8 for 8-bit PNGs, uint16, int32; palette PNG: indices); see :func:`read_mask`."""
    return decode_image(path, "mask", OPENCV_SINGLE_KEYS, False, _pil_mask)


def read_mask(path: Path) -> np.ndarray:
    """A single-channel integer mask → (H, W) int64 of the values stored (palette PNG: indices).
    Colour-coded RGB masks are refused: map colours to class ids first."""
    return read_mask_ids(path).astype(np.int64)
