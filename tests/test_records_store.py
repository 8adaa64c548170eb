"""The COCO-style records store (kagglekit.store.records): round trips, every predicted image listed
(also those without records), bad records refused before anything is written, folders written
before the store still read, torn stores detected, a crash before the manifest leaves none."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from kagglekit.store import records as R
from kagglekit.store.records import RecordsManifest, read_records, records_path, require_image_ids, write_records


def _boxes():
    return [{"image_id": 1, "category_id": 3, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.9},
            {"image_id": 1, "category_id": 5, "bbox": [5.0, 5.0, 4.0, 4.0], "score": 0.4},
            {"image_id": 2, "category_id": 3, "bbox": [0.0, 0.0, 8.0, 8.0], "score": 0.7}]


def _bbox_manifest(**kw):
    base = dict(experiment="det_a", fold=0, kind="oof", record_type="bbox", image_ids=[1, 2, 7],
                categories=[3, 5], tta_views=["m160", "m160-flip"], metric_name="bbox mAP (%)", metric=41.5)
    return RecordsManifest(**{**base, **kw})


def _kpts():
    return [{"image_id": 10, "category_id": 1, "score": 0.8, "keypoints": [1.0, 2.0, 1.0, 3.0, 4.0, 1.0],
             "bbox": [0.0, 0.0, 5.0, 5.0]}]


def test_bbox_round_trip_lists_images_without_records(tmp_path):
    write_records(tmp_path, _boxes(), _bbox_manifest())
    assert records_path(tmp_path, "bbox") == tmp_path / "coco_instances_results.json"
    assert (tmp_path / "coco_instances_results.json").is_file() and (tmp_path / "manifest.json").is_file()
    results, manifest = read_records(tmp_path, "bbox", require_manifest=True)
    assert results == _boxes()
    assert manifest == _bbox_manifest(n_records=3)  # n_records filled in
    assert 7 in manifest.image_ids and 7 not in {r["image_id"] for r in results}  # predicted, nothing found
    require_image_ids(tmp_path, manifest, [1, 2, 7])
    with pytest.raises(ValueError, match="never predicted"):
        require_image_ids(tmp_path, manifest, [1, 2, 7, 8])  # image 8 was never predicted


def test_keypoints_round_trip_and_empty_store(tmp_path):
    m = RecordsManifest("kp_a", 0, "val", "keypoints", [10, 11], [1], tta_views=["original", "flipped"])
    write_records(tmp_path / "val", _kpts(), m)
    assert (tmp_path / "val" / "keypoint_results.json").is_file()
    results, manifest = read_records(tmp_path / "val", "keypoints")
    assert results == _kpts() and manifest.n_records == 1 and manifest.image_ids == [10, 11]
    write_records(tmp_path / "empty", [], replace(m, kind="test"))  # every image predicted, none found
    results, manifest = read_records(tmp_path / "empty", "keypoints", require_manifest=True)
    assert results == [] and manifest.n_records == 0 and manifest.image_ids == [10, 11]


@pytest.mark.parametrize("record_type, bad, message", [
    ("bbox", {"image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}, "image_id 99"),
    ("bbox", {"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": math.nan}, "score"),
    ("bbox", {"image_id": 1, "category_id": 3, "bbox": [0, 0, math.nan, 1], "score": 0.5}, "bbox"),
    ("bbox", {"image_id": 1, "category_id": 3, "bbox": [0, 0, 1], "score": 0.5}, "bbox"),
    ("bbox", {"image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1], "score": 0.5}, "category_id"),
    ("keypoints", {"image_id": 1, "category_id": 1, "score": 0.5, "keypoints": [1.0, 2.0]}, "multiple of 3"),
    ("keypoints", {"image_id": 1, "category_id": 1, "score": 0.5, "keypoints": [1.0, math.inf, 1.0]}, "keypoints"),
])
def test_bad_record_refused_nothing_written(tmp_path, record_type, bad, message):
    cats = [3, 5] if record_type == "bbox" else [1]
    m = RecordsManifest("e", 0, "val", record_type, [1, 2], cats)
    good = _boxes()[:1] if record_type == "bbox" else [{**_kpts()[0], "image_id": 1}]
    fresh = tmp_path / "fresh"
    with pytest.raises(ValueError, match=message) as err:
        write_records(fresh, [*good, bad], m)
    assert str(fresh) in str(err.value) and "record 1" in str(err.value)  # the directory and the first bad record
    assert not fresh.exists() or not any(fresh.iterdir())
    # an existing store is left as it was
    existing = tmp_path / "existing"
    write_records(existing, good, m)
    before = {p.name: p.read_bytes() for p in existing.iterdir()}
    with pytest.raises(ValueError):
        write_records(existing, [bad], m)
    assert {p.name: p.read_bytes() for p in existing.iterdir()} == before


def test_folder_written_before_the_store_reads_without_manifest(tmp_path):
    (tmp_path / "evaluation/test").mkdir(parents=True)
    (tmp_path / "evaluation/test/coco_instances_results.json").write_text(json.dumps(_boxes()))
    results, manifest = read_records(tmp_path / "evaluation/test", "bbox")
    assert results == _boxes() and manifest is None
    require_image_ids(tmp_path, None, [1, 2, 3])  # nothing to check without a manifest
    with pytest.raises(ValueError, match="without manifest.json"):
        read_records(tmp_path / "evaluation/test", "bbox", require_manifest=True)
    # the fold OOF of older detection outputs: oof/detections.json
    (tmp_path / "oof").mkdir()
    (tmp_path / "oof/detections.json").write_text(json.dumps(_boxes()[:2]))
    assert R.has_records(tmp_path / "oof", "bbox")
    assert read_records(tmp_path / "oof", "bbox") == (_boxes()[:2], None)
    write_records(tmp_path / "oof", _boxes(), _bbox_manifest())  # rerun: the store supersedes the old file
    assert not (tmp_path / "oof/detections.json").exists()
    assert read_records(tmp_path / "oof", "bbox")[0] == _boxes()
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "nothing", "bbox")


def test_n_records_mismatch_is_a_torn_store(tmp_path):
    write_records(tmp_path, _boxes(), _bbox_manifest())
    path = tmp_path / "coco_instances_results.json"
    path.write_text(json.dumps(_boxes()[:2]))  # edited / torn after the manifest
    with pytest.raises(ValueError, match="coco_instances_results.json") as err:
        read_records(tmp_path, "bbox")
    assert "manifest.json says 3" in str(err.value)
    with pytest.raises(ValueError, match="record_type"):
        write_records(tmp_path / "k", _kpts(), RecordsManifest("e", 0, "val", "keypoints", [10], [1]))
        (tmp_path / "k" / "coco_instances_results.json").write_text("[]")
        read_records(tmp_path / "k", "bbox")


def test_crash_before_the_manifest_leaves_none(tmp_path, monkeypatch):
    write_records(tmp_path, _boxes(), _bbox_manifest())  # an existing, complete store
    real = R.save_json

    def crash_on_manifest(path, obj, *args, **kwargs):
        if str(path).endswith("manifest.json"):
            raise OSError("killed before the manifest")
        return real(path, obj, *args, **kwargs)

    monkeypatch.setattr(R, "save_json", crash_on_manifest)
    with pytest.raises(OSError, match="killed"):
        write_records(tmp_path, _boxes()[:1], _bbox_manifest(fold=1))
    assert not (tmp_path / "manifest.json").exists()  # no manifest describing other results
    results, manifest = read_records(tmp_path, "bbox")
    assert manifest is None and results == _boxes()[:1]
    with pytest.raises(ValueError, match="without manifest.json"):
        read_records(tmp_path, "bbox", require_manifest=True)


def test_task_readers_take_old_outputs_and_catch_images_never_predicted(tmp_path):
    """Detection fold OOF and keypoint split readers: an old folder (bare list) reads; a store whose
    manifest misses a validation image (a crash, another split) is refused, naming the store."""
    from kagglekit.tasks.detection.task import DetectionTask
    from kagglekit.tasks.keypoints.lifecycle import read_fold_results
    images = [{"id": 1}, {"id": 2}, {"id": 7}]
    old = tmp_path / "old/fold0"
    (old / "oof").mkdir(parents=True)
    (old / "oof/detections.json").write_text(json.dumps(_boxes()))
    assert DetectionTask.read_fold_oof(old, images) == _boxes()
    new = tmp_path / "new/fold0"
    write_records(new / "oof", _boxes(), _bbox_manifest(image_ids=[1, 2]))
    with pytest.raises(ValueError, match=r"new/fold0/oof/manifest.json.*1 never predicted"):
        DetectionTask.read_fold_oof(new, images)
    (old / "evaluation/val").mkdir(parents=True)
    (old / "evaluation/val/keypoint_results.json").write_text(json.dumps(_kpts()))
    assert read_fold_results(old, "val", [{"id": 10}]) == _kpts()
    write_records(new / "evaluation/val", _kpts(), RecordsManifest("kp", 0, "val", "keypoints", [10], [1]))
    assert read_fold_results(new, "val", [{"id": 10}]) == _kpts()
    with pytest.raises(ValueError, match="never predicted"):
        read_fold_results(new, "val", [{"id": 10}, {"id": 11}])
