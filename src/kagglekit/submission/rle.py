"""Kaggle run-length encoding (RLE) of binary masks.

Format (e.g. Kaggle "Airbus Ship Detection", "Severstal", "SIIM-ACR" evaluation pages): pixels are
numbered 1..H*W **column-major** (top to bottom, then left to right, i.e. Fortran order), and a mask
is written as space-separated pairs ``start length``: ``"1 3 10 5"`` marks pixels 1,2,3 and 10..14.
Runs are strictly increasing and do not overlap; an empty mask is ``""``.

Encoding follows the widely used Kaggle kernel "RLE functions - Run Length Encode & Decode"
(paulorzp): pad the flattened mask with zeros, find value changes with ``np.flatnonzero``, and turn
every second change position into a length.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["SubmissionError", "parse_rle", "rle_decode", "rle_encode", "runs_from_flat"]

_MAX_VALUE = 2**53  # far above any image size; np.fromstring saturates overflowing tokens at int64 max


class SubmissionError(ValueError):
    """A submission (or one of its RLE strings) breaks the competition format.

    ``problems`` holds one human-readable line per problem found.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


def rle_encode(mask: np.ndarray) -> str:
    """Kaggle RLE of a 2-D binary mask.

    Args:
        mask: (H, W) bool (or 0/1 integers).
    Returns:
        ``"start length ..."`` with 1-based column-major starts; ``""`` for an empty mask.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode expects a 2-D (H, W) mask, got shape {mask.shape}")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iub" or (mask.size and not np.isin(np.unique(mask), (0, 1)).all()):
            raise ValueError(f"rle_encode expects a boolean mask (or 0/1 integers), got dtype {mask.dtype}")
        mask = mask.astype(bool)
    flat = mask.ravel(order="F")  # column-major pixel numbering
    return " ".join(map(str, runs_from_flat(flat).ravel().tolist()))


def runs_from_flat(flat: np.ndarray) -> np.ndarray:
    """Runs of True in a 1-D bool array as a (R, 2) int64 array of (1-based start, length)."""
    padded = np.concatenate(([False], flat, [False]))
    change = np.flatnonzero(padded[1:] != padded[:-1]) + 1  # 1-based positions where runs start/end
    runs = change.reshape(-1, 2)
    runs[:, 1] -= runs[:, 0]
    return runs


def _bad_token(text: str) -> str:
    """Describe the first token of ``text`` that is not a plain non-negative integer (error path)."""
    for token in text.split():
        if not (token.isascii() and token.isdigit()) or int(token) > _MAX_VALUE:
            return repr(token)
    return "a separator other than spaces"


def parse_rle(rle: Any, num_pixels: int | None = None) -> np.ndarray:
    """Parse and validate a Kaggle RLE string into (R, 2) int64 ``(start, length)`` runs.

    ``None``/NaN/empty/whitespace means an empty mask. With ``num_pixels`` (H*W) runs must end
    inside the image. Raises :class:`SubmissionError` saying what is wrong otherwise.
    """
    if rle is None or (isinstance(rle, float) and math.isnan(rle)):
        return np.zeros((0, 2), np.int64)
    if not isinstance(rle, str):
        raise SubmissionError(f"RLE must be a string of integers, got {type(rle).__name__} {rle!r}")
    body = rle.strip()
    if not body:
        return np.zeros((0, 2), np.int64)
    if not (body.isascii() and body.replace(" ", "").isdigit()):
        raise SubmissionError(f"RLE contains {_bad_token(body)}, expected non-negative integers "
                              "separated by spaces ('start length start length ...')")
    values = np.fromstring(body, dtype=np.int64, sep=" ")  # text mode: fast C parser
    if values.size and values.max() > _MAX_VALUE:
        raise SubmissionError(f"RLE value {_bad_token(body)} is too large to be a pixel number")
    if values.size % 2:
        raise SubmissionError(f"RLE has an odd number of values ({values.size}); it must be 'start length' pairs")
    runs = values.reshape(-1, 2)
    _check_runs(runs, num_pixels)
    return runs


def _check_runs(runs: np.ndarray, num_pixels: int | None) -> None:
    """Raise SubmissionError unless runs are 1-based, positive-length, increasing and in bounds."""
    starts, lengths = runs[:, 0], runs[:, 1]
    if (starts < 1).any():
        raise SubmissionError(f"RLE start {int(starts[starts < 1][0])} < 1 (starts are 1-based pixel numbers)")
    if (lengths < 1).any():
        i = int(np.flatnonzero(lengths < 1)[0])
        raise SubmissionError(f"RLE run {i} (start {int(starts[i])}) has length {int(lengths[i])}; lengths must be >= 1")
    ends = starts + lengths - 1  # inclusive, 1-based
    bad = np.flatnonzero(starts[1:] <= ends[:-1])
    if bad.size:
        i = int(bad[0])
        raise SubmissionError(
            f"RLE runs are not strictly increasing / overlap: run {i + 1} starts at {int(starts[i + 1])} "
            f"but run {i} covers {int(starts[i])}..{int(ends[i])}"
        )
    if num_pixels is not None and ends.size and ends[-1] > num_pixels:
        raise SubmissionError(
            f"RLE run {ends.size - 1} ends at pixel {int(ends[-1])} past the image ({num_pixels} pixels)"
        )


def rle_decode(rle: Any, shape: tuple[int, int]) -> np.ndarray:
    """Decode a Kaggle RLE string into an (H, W) bool mask (column-major numbering, 1-based).

    Raises :class:`SubmissionError` for malformed strings (odd count, non-integers, start < 1,
    length < 1, overlapping / unordered runs, runs past H*W).
    """
    height, width = (int(v) for v in shape)
    runs = parse_rle(rle, height * width)
    flat = np.zeros(height * width + 1, np.int8)
    # +1 at each run start, -1 after each run end; a cumulative sum marks the covered pixels.
    flat[runs[:, 0] - 1] += 1
    flat[runs[:, 0] - 1 + runs[:, 1]] -= 1  # ends are unique too (runs are strictly increasing)
    return np.cumsum(flat[:-1], dtype=np.int8).astype(bool).reshape((height, width), order="F")
