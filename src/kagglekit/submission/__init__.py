"""Submissions: Kaggle RLE, validation against the sample submission, NYUv2 format writer."""
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
    "SubmissionError",
    "decode_nyuv2_submission",
    "nyuv2_image_id",
    "nyuv2_rows",
    "nyuv2_sample_submission",
    "nyuv2_submission",
    "rle_decode",
    "rle_encode",
    "validate",
    "write_submission",
]
