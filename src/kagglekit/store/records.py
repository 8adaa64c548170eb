"""The COCO-style records store: detection boxes and keypoint instances, one folder per
experiment / fold / kind, beside the array store (:mod:`kagglekit.store.arrays`).

Layout of one store (e.g. ``output/<exp>/fold<k>/oof/``, ``fold<k>/evaluation/<split>/``)::

    coco_instances_results.json   record_type "bbox": [{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]
    keypoint_results.json         record_type "keypoints": [{..., "keypoints": [x1, y1, v1, ...], "bbox", "score"}]
    manifest.json                 experiment, fold (-1: experiment level / ensemble), kind, record_type,
                                  image_ids (EVERY image predicted, also those without a record),
                                  categories, n_records, tta_views, metric name/value

The file names are the COCO / detectron2 ones the tasks wrote before this store existed, so an
older ``output/`` folder (results file, no manifest) still reads, with manifest None. As in the
array store the manifest is written last, atomically, and is the commit marker: records are
validated before anything is written, an existing store's manifest is removed before its results
are replaced, so a manifest present always describes the results beside it. ``image_ids`` is what
a bare results list cannot say: which images were predicted and simply have no detection, as
opposed to images never predicted (a crash, the wrong split).
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Sequence

from kagglekit.io import _fsync_dir, load_json, save_json

RECORD_FILES = {"bbox": "coco_instances_results.json", "keypoints": "keypoint_results.json"}
# names written before the records store, read when the store's own file is absent
LEGACY_FILES = {"bbox": ("detections.json",), "keypoints": ()}
MANIFEST = "manifest.json"
REQUIRED_FIELDS = {"bbox": ("bbox",), "keypoints": ("keypoints",)}  # beyond image_id, category_id, score


@dataclass
class RecordsManifest:
    experiment: str
    fold: int  # -1: experiment-level (merged folds, fused folds) or ensemble outputs
    kind: str  # "oof" | "val" | "val_plain" | "test" | ...
    record_type: str  # "bbox" | "keypoints"
    image_ids: list[int]  # every image predicted, including those with no records
    categories: list[int]
    n_records: int = 0  # filled in by write_records
    tta_views: list[str] = field(default_factory=list)
    metric_name: str = ""
    metric: float | None = None


def records_path(directory: Path, record_type: str) -> Path:
    """The results file of a ``record_type`` store in ``directory``."""
    if record_type not in RECORD_FILES:
        raise ValueError(f"record_type {record_type!r} unknown; use one of {sorted(RECORD_FILES)}")
    return Path(directory) / RECORD_FILES[record_type]


def has_records(directory: Path, record_type: str) -> bool:
    """Whether ``directory`` holds ``record_type`` results (this store's file or a legacy one)."""
    return _results_file(Path(directory), record_type) is not None


def _results_file(directory: Path, record_type: str) -> Path | None:
    for path in (records_path(directory, record_type), *(directory / n for n in LEGACY_FILES[record_type])):
        if path.is_file():
            return path
    return None


def _finite(values: Any, n: int | None = None) -> bool:
    if not isinstance(values, (list, tuple)) or (n is not None and len(values) != n):
        return False
    return all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def record_problem(record: Any, record_type: str, image_ids: set[int], categories: set[int]) -> str | None:
    """Why ``record`` does not belong in a ``record_type`` store of those images, or None."""
    if not isinstance(record, dict):
        return "not a dict"
    image_id = record.get("image_id")
    if isinstance(image_id, bool) or not isinstance(image_id, Integral) or int(image_id) not in image_ids:
        return f"image_id {image_id!r} is not one of the manifest's {len(image_ids)} image_ids"
    if categories and record.get("category_id") not in categories:
        return f"category_id {record.get('category_id')!r} is not one of the manifest's categories {sorted(categories)}"
    if not _finite([record.get("score")]):
        return f"score {record.get('score')!r} is not a finite number"
    missing = [name for name in REQUIRED_FIELDS[record_type] if name not in record]
    if missing:
        return f"{missing[0]} missing"
    if "bbox" in record and not _finite(record["bbox"], 4):
        return "bbox must be 4 finite numbers [x, y, w, h]"
    kpts = record.get("keypoints")
    if kpts is not None and (not _finite(kpts) or not kpts or len(kpts) % 3):
        return "keypoints must be a non-empty list of finite numbers, a multiple of 3 long (x, y, v per keypoint)"
    return None


def write_records(directory: Path, records: Sequence[dict[str, Any]], manifest: RecordsManifest) -> Path:
    """Validate ``records`` against ``manifest``, then write the results file and ``manifest.json``
    (last, the commit marker) into ``directory``, each atomically; returns ``directory``.

    A bad record → ValueError naming ``directory`` and the first bad record, nothing written (an
    existing store is left as it was). ``manifest.n_records`` is filled in (on a copy)."""
    directory = Path(directory)
    path = records_path(directory, manifest.record_type)
    image_ids = {int(i) for i in manifest.image_ids}
    categories = {int(c) for c in manifest.categories}
    for i, record in enumerate(records):
        problem = record_problem(record, manifest.record_type, image_ids, categories)
        if problem:
            raise ValueError(f"{directory}: record {i} {record!r}: {problem}; nothing written")
    manifest = replace(manifest, image_ids=[int(i) for i in manifest.image_ids],
                       categories=[int(c) for c in manifest.categories], n_records=len(records))
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / MANIFEST).exists():  # a crash below must not leave it describing other results
        os.unlink(directory / MANIFEST)
        _fsync_dir(directory)
    save_json(path, list(records))
    save_json(directory / MANIFEST, asdict(manifest))
    for name in LEGACY_FILES[manifest.record_type]:  # superseded by the store's own file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / name)
    return directory


def read_manifest(directory: Path) -> RecordsManifest | None:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    data = load_json(path)
    names = {f.name for f in fields(RecordsManifest)}
    if not isinstance(data, dict) or not {"experiment", "fold", "kind", "record_type", "image_ids"} <= set(data):
        raise ValueError(f"{path}: not a records manifest (experiment, fold, kind, record_type, image_ids expected)")
    return RecordsManifest(**{k: v for k, v in data.items() if k in names})


def read_records(directory: Path, record_type: str,
                 require_manifest: bool = False) -> tuple[list[dict[str, Any]], RecordsManifest | None]:
    """(records, manifest) of the ``record_type`` store in ``directory``. A folder written before
    the store (results file, no manifest) reads with manifest None, unless ``require_manifest``
    (then ValueError). A manifest of another record type or whose ``n_records`` disagrees with the
    results file → ValueError naming the file (a torn or edited store)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    path = records_path(directory, record_type) if manifest is not None else _results_file(directory, record_type)
    if path is None or not path.is_file():
        where = path if path is not None else records_path(directory, record_type)
        raise FileNotFoundError(f"{where}: no {record_type} results" +
                                (" though manifest.json is there (torn store); rerun that prediction" if manifest else ""))
    if manifest is None and require_manifest:
        raise ValueError(f"{directory}: {path.name} without manifest.json (incomplete, or written before the "
                         "records store); rerun that prediction")
    records = load_json(path)
    if not isinstance(records, list):
        raise ValueError(f"{path}: not a COCO results list")
    if manifest is not None:
        if manifest.record_type != record_type:
            raise ValueError(f"{directory / MANIFEST}: record_type {manifest.record_type!r}, {record_type!r} expected")
        if manifest.n_records != len(records):
            raise ValueError(f"{path}: {len(records)} records but manifest.json says {manifest.n_records} "
                             "(torn or edited store); rerun that prediction")
    return records, manifest


def require_image_ids(directory: Path, manifest: RecordsManifest | None, image_ids: Sequence[int]) -> None:
    """ValueError naming the store when its manifest lists other images than ``image_ids`` (images
    never predicted — a crash, a partial run — or another split's); no check without a manifest."""
    if manifest is None:
        return
    got, expected = set(manifest.image_ids), {int(i) for i in image_ids}
    if got != expected:
        missing, extra = sorted(expected - got), sorted(got - expected)
        raise ValueError(f"{Path(directory) / MANIFEST}: predicted {len(got)} images, expected {len(expected)}: "
                         f"{len(missing)} never predicted (e.g. {missing[:3]}), {len(extra)} not expected "
                         f"(e.g. {extra[:3]}); the split changed since? rerun that prediction")
