"""Submissions: Kaggle RLE, validation against the sample submission, NYUv2 format writer,
configurable mask formats (per-class / binary RLE rows, presets: :data:`masks.PRESETS`)."""
from kagglekit.submission.masks import (
    PRESETS,
    MaskFormat,
    decode_mask_submission,
    encode_mask_rows,
    mask_submission,
    mask_submission_problems,
    sample_mask_submission,
)
from kagglekit.submission.nyuv2 import (
    NYUV2_CLASSES,
    decode_nyuv2_submission,
    nyuv2_image_id,
    nyuv2_rows,
    nyuv2_sample_submission,
    nyuv2_submission,
)
from kagglekit.submission.rle import SubmissionError, rle_decode, rle_encode
from kagglekit.submission.validate import validate, write_submission

__all__ = [
    "NYUV2_CLASSES",
    "PRESETS",
    "MaskFormat",
    "SubmissionError",
    "decode_mask_submission",
    "decode_nyuv2_submission",
    "encode_mask_rows",
    "mask_submission",
    "mask_submission_problems",
    "nyuv2_image_id",
    "nyuv2_rows",
    "nyuv2_sample_submission",
    "nyuv2_submission",
    "rle_decode",
    "rle_encode",
    "sample_mask_submission",
    "validate",
    "write_submission",
]
