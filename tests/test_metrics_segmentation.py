"""Segmentation metrics vs reference implementations (torchmetrics, sklearn, plain np.bincount)
on the real NYUv2 13-class label maps with perturbed predictions."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from torchmetrics.classification import MulticlassJaccardIndex

from kagglekit.metrics.segmentation import (
    ConfusionMatrix,
    argmax_confusion_uint8,
    confusion_matrix,
    iou_from_confusion,
    metrics_from_confusion,
    miou,
)

SUBSET = 40  # images used in the per-case loops (the full 654 are checked once, cheaply)


@functools.lru_cache(maxsize=1)
def _load_all(root: str) -> np.ndarray:
    files = sorted((Path(root) / "labels").glob("new_nyu_class13_*.png"))
    return np.stack([np.asarray(Image.open(f)) for f in files])


@pytest.fixture
def labels(nyuv2_labels13) -> np.ndarray:
    """(654, 480, 640) uint8, 0 = void, 1..13 classes (read-only: shared between tests)."""
    arr = _load_all(str(nyuv2_labels13))
    arr.flags.writeable = False
    return arr


def _perturb(labels: np.ndarray, kind: str, rng: np.random.Generator, num_ids: int = 14) -> np.ndarray:
    """Predictions with realistic errors: random flips at a rate, shifts, class swaps."""
    if kind.startswith("flip"):
        rate = float(kind[4:])
        pred = labels.copy()
        mask = rng.random(labels.shape, dtype=np.float32) < rate
        pred[mask] = rng.integers(0, num_ids, int(mask.sum()), dtype=np.uint8)
        return pred
    if kind == "shift":
        return np.roll(labels, shift=(7, -11), axis=(1, 2))
    if kind == "swap":
        perm = np.arange(num_ids, dtype=np.uint8)
        perm[[1, 9, 4, 6]] = perm[[9, 1, 6, 4]]  # bed<->sofa, chair<->furniture
        return perm[labels]
    if kind == "random":
        return rng.integers(0, num_ids, labels.shape, dtype=np.uint8)
    raise AssertionError(kind)


def _reference_cm(pred: np.ndarray, target: np.ndarray, c: int, ignore: int | None) -> np.ndarray:
    """Plain int64 bincount on the non-ignored pixels."""
    t, p = target.astype(np.int64).ravel(), pred.astype(np.int64).ravel()
    if ignore is not None:
        keep = t != ignore
        t, p = t[keep], p[keep]
    return np.bincount(c * t + p, minlength=c * c).reshape(c, c)


def _torchmetrics_iou(pred: np.ndarray, target: np.ndarray, c: int, ignore: int | None, average: str) -> np.ndarray:
    metric = MulticlassJaccardIndex(num_classes=c, average=average, ignore_index=ignore, validate_args=False)
    return metric(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(target.astype(np.int64))).numpy()


@pytest.mark.parametrize("kind", ["flip0.02", "flip0.3", "shift", "swap"])
def test_14_classes_ignore_void_matches_torchmetrics(labels, kind):
    """Path 1: ids 0..13 as 14 classes, ignore_index=0 (void)."""
    rng = np.random.default_rng(1)
    target = labels[:SUBSET]
    pred = _perturb(target, kind, rng)
    cm = confusion_matrix(pred, target, 14, ignore_index=0)
    np.testing.assert_array_equal(cm, _reference_cm(pred, target, 14, 0))

    mean, iou = miou(pred, target, 14, ignore_index=0)
    tm_iou = _torchmetrics_iou(pred, target, 14, 0, "none")  # absent classes -> 0 (zero_division)
    valid = target != 0
    present = np.union1d(np.unique(target[valid]), np.unique(pred[valid]))
    expected_nan = np.setdiff1d(np.arange(14), present)
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(iou)), expected_nan)
    np.testing.assert_allclose(iou[present], tm_iou[present], rtol=1e-5, atol=1e-7)
    assert mean == pytest.approx(float(np.mean(tm_iou[present].astype(np.float64))), rel=1e-5)
    assert 0.0 < mean < 1.0


@pytest.mark.parametrize("kind", ["flip0.1", "shift", "swap", "random"])
def test_13_classes_ignore_255_matches_torchmetrics_and_sklearn(labels, kind):
    """Path 2: classes 1..13 mapped to 0..12, void -> 255 = ignore_index (ignore >= num_classes)."""
    rng = np.random.default_rng(2)
    target = labels[:SUBSET] - np.uint8(1)  # void 0 wraps to 255
    pred = _perturb(labels[:SUBSET], kind, rng, num_ids=14)
    pred = np.where(pred == 0, rng.integers(1, 14, pred.shape, dtype=np.uint8), pred) - np.uint8(1)
    cm = confusion_matrix(pred, target, 13, ignore_index=255)
    np.testing.assert_array_equal(cm, _reference_cm(pred, target, 13, 255))

    mean, iou = miou(pred, target, 13, ignore_index=255)
    tm_none = _torchmetrics_iou(pred, target, 13, 255, "none")
    tm_macro = _torchmetrics_iou(pred, target, 13, 255, "macro")
    present = ~np.isnan(iou)
    np.testing.assert_allclose(iou[present], tm_none[present], rtol=1e-5, atol=1e-7)
    assert mean == pytest.approx(float(tm_macro), rel=1e-5)

    few = slice(0, 3)  # sklearn is slow on millions of pixels
    t3, p3 = target[few].ravel(), pred[few].ravel()
    keep = t3 != 255
    sk = sk_confusion_matrix(t3[keep], p3[keep], labels=np.arange(13))
    np.testing.assert_array_equal(confusion_matrix(pred[few], target[few], 13, ignore_index=255), sk)


def test_all_654_images_one_shot_equals_per_image_reference(labels):
    """The whole test split at once (multi-chunk, multi-thread, both counting paths) vs per-image bincount."""
    rng = np.random.default_rng(3)
    pred = labels.copy()
    pred[::2] = _perturb(labels[::2], "flip0.25", rng)  # noisy images -> pair path
    pred[1::2] = _perturb(labels[1::2], "shift", rng)  # smooth images -> run-length path
    expected = np.zeros((14, 14), np.int64)
    for p, t in zip(pred, labels):
        expected += np.bincount(14 * t.astype(np.int64).ravel() + p.ravel(), minlength=196).reshape(14, 14)
    for threads in (1, 2):
        np.testing.assert_array_equal(confusion_matrix(pred, labels, 14, num_threads=threads), expected)
    with_ignore = expected.copy()
    with_ignore[0] = 0
    np.testing.assert_array_equal(confusion_matrix(pred, labels, 14, ignore_index=0), with_ignore)


@pytest.mark.parametrize("size", [1, 2, 7, 8, 1001, (1 << 18) + 3])
def test_odd_sizes_and_dtypes(size):
    """Chunk tails, odd lengths and non-uint8 dtypes (generic path) agree with the reference."""
    rng = np.random.default_rng(size)
    target = rng.integers(0, 5, size).astype(np.uint8)
    target[rng.random(size) < 0.2] = 255
    pred = rng.integers(0, 5, size).astype(np.uint8)
    expected = _reference_cm(pred, target, 5, 255)
    np.testing.assert_array_equal(confusion_matrix(pred, target, 5, ignore_index=255), expected)
    np.testing.assert_array_equal(
        confusion_matrix(pred.astype(np.int64), target.astype(np.int32), 5, ignore_index=255), expected
    )


def test_many_classes_generic_path():
    rng = np.random.default_rng(4)
    target = rng.integers(0, 40, (3, 64, 64)).astype(np.uint8)  # 40 * 40 > 256: generic path
    pred = rng.integers(0, 40, target.shape).astype(np.uint8)
    sk = sk_confusion_matrix(target.ravel(), pred.ravel(), labels=np.arange(40))
    np.testing.assert_array_equal(confusion_matrix(pred, target, 40), sk)


def test_nan_for_absent_classes_and_metric_values():
    target = np.array([[0, 0, 1], [1, 3, 3]], np.uint8)
    pred = np.array([[0, 1, 1], [1, 3, 0]], np.uint8)
    mean, iou = miou(pred, target, 5)
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 3: TP 1, FN 1 -> 1/2
    np.testing.assert_allclose(iou[[0, 1, 3]], [1 / 3, 2 / 3, 1 / 2])
    assert np.isnan(iou[2]) and np.isnan(iou[4])
    assert mean == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    m = metrics_from_confusion(confusion_matrix(pred, target, 5))
    assert m["pixel_acc"] == pytest.approx(4 / 6)
    assert m["class_acc"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    empty_mean, empty_iou = iou_from_confusion(np.zeros((3, 3), np.int64))
    assert np.isnan(empty_mean) and np.isnan(empty_iou).all()


def test_streaming_equals_one_shot_and_merge(labels):
    rng = np.random.default_rng(5)
    target = labels[:SUBSET]
    pred = _perturb(target, "flip0.1", rng)
    one_shot = ConfusionMatrix(14, ignore_index=0).update(pred, target)
    a, b = ConfusionMatrix(14, ignore_index=0), ConfusionMatrix(14, ignore_index=0)
    for i in range(0, SUBSET, 7):
        (a if i % 2 else b).update(pred[i : i + 7], target[i : i + 7])
    a.merge(b)
    np.testing.assert_array_equal(a.matrix, one_shot.matrix)
    ra, rs = a.compute(), one_shot.compute()
    assert ra["miou"] == rs["miou"] and ra["pixel_acc"] == rs["pixel_acc"]
    np.testing.assert_array_equal(ra["iou"], rs["iou"])
    assert ra["miou"] == pytest.approx(miou(pred, target, 14, 0)[0])
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(ConfusionMatrix(14, ignore_index=255))


def _quantised_probs(target: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    """(N, C, H, W) uint8 noisy probabilities peaked at ``target`` (many exact ties on purpose)."""
    probs = rng.integers(0, 40, (target.shape[0], c) + target.shape[1:], dtype=np.uint8)
    n, h, w = np.indices(target.shape, sparse=True)
    probs[n, np.minimum(target, c - 1), h, w] += 25
    return probs


def test_argmax_confusion_uint8_equals_np_argmax(labels, tmp_path):
    rng = np.random.default_rng(6)
    target = labels[:24, ::4, ::4] - np.uint8(1)  # (24, 120, 160), void -> 255
    probs = _quantised_probs(target, 13, rng)
    pred = np.argmax(probs, axis=1)
    expected = _reference_cm(pred, target, 13, 255)
    np.testing.assert_array_equal(argmax_confusion_uint8(probs, target, 13, ignore_index=255, chunk=5), expected)
    # memmap input (as stored OOF probabilities) and torch's tie-breaking give the same answer
    np.save(tmp_path / "probs.npy", probs)
    mm = np.load(tmp_path / "probs.npy", mmap_mode="r")
    torch_pred = torch.argmax(torch.from_numpy(probs).float(), dim=1).numpy()
    np.testing.assert_array_equal(torch_pred, pred)
    np.testing.assert_array_equal(argmax_confusion_uint8(mm, target, 13, 255, num_threads=2), expected)


@pytest.mark.parametrize(
    ("pred_val", "target_val", "ignore", "match"),
    [
        (13, 1, 255, "pred contains class id 13"),
        (1, 14, 255, "target contains value 14 .* not ignore_index=255"),
        (1, 200, None, "target contains value 200 .*no ignore_index"),
        (1, 255, 0, "target contains value 255"),
    ],
)
def test_out_of_range_values_raise(pred_val, target_val, ignore, match):
    target = np.full((4, 300, 300), 2, np.uint8)  # > one chunk
    pred = target.copy()
    target[3, 299, 5] = target_val
    pred[2, 7, 7] = pred_val
    with pytest.raises(ValueError, match=match):
        confusion_matrix(pred, target, 13, ignore_index=ignore)
    with pytest.raises(ValueError, match=match):  # generic path says the same
        confusion_matrix(pred.astype(np.int32), target.astype(np.int32), 13, ignore_index=ignore)


def test_bad_arguments_raise():
    a = np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(a, np.zeros((3, 2), np.uint8), 3)
    with pytest.raises(ValueError, match="integer class ids"):
        confusion_matrix(a.astype(np.float32), a, 3)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(a, a, 0)
    with pytest.raises(ValueError, match="pred contains class id -1"):
        confusion_matrix(np.full((2, 3), -1, np.int64), a, 3)
    with pytest.raises(ValueError, match="uint8"):
        argmax_confusion_uint8(np.zeros((1, 3, 2, 2), np.float32), np.zeros((1, 2, 2), np.uint8), 3)
    with pytest.raises(ValueError, match="num_classes=4"):
        argmax_confusion_uint8(np.zeros((1, 3, 2, 2), np.uint8), np.zeros((1, 2, 2), np.uint8), 4)
