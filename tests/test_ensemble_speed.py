"""Exactness of the fast ensemble objective (kagglekit.ensemble.search).

The compiled full-data kernel and the pruned subsample view must reproduce, bit for bit, the
straightforward blend: weighted sum of the uint8 codes, argmax with the lowest index on ties,
``np.bincount`` confusion without the ``ignore_index`` pixels.  Two references:

* ``_ref_float64``: float64 weighted sum.  Exact for integer-valued weight ratios (uniform,
  greedy counts, one-hot) and, for generic random weights, equal in practice (a real near-tie
  within float32 rounding is improbable); it is the independent check.
* ``_ref_float32``: the rule the library has always used and keeps (module docstring of
  ``search``): weights rescaled to ``max = 1`` in float32, ``fl32(acc + fl32(q * w))`` member by
  member, zero-weight members skipped.  It decides near-ties that float64 would not call ties
  (``test_float32_tie_rule_kept``), so it is the reference for every weight vector.
"""
from __future__ import annotations

import numpy as np
import pytest

from kagglekit.ensemble.search import (
    SegmentationBlendObjective,
    _sample_indices,
    blend_argmax_confusion,
    search_weights,
)
from kagglekit.metrics.segmentation import iou_from_confusion

C, IGNORE = 7, 255
PALETTE = np.array([0, 1, 2, 3, 50, 100, 101, 127, 128, 254, 255], np.uint8)


def _ref_float64(members, weights, labels, ignore=IGNORE) -> np.ndarray:
    """(C, C): float64 blend of (N, C, ...) members, np.argmax, bincount of non-ignored pixels."""
    blend = sum(float(w) * np.asarray(m, np.float64) for m, w in zip(members, weights))
    return _confusion(np.argmax(blend, axis=1), labels, ignore)


def _ref_float32(members, weights, labels, ignore=IGNORE) -> np.ndarray:
    """(C, C): the float32 rule (max-rescaled float32 weights, member-ordered float32 sums)."""
    w = np.asarray(weights, np.float64)
    w32 = (w / w.max()).astype(np.float32)
    acc = None
    for m, wm in zip(members, w32):
        if wm == 0:
            continue
        t = np.asarray(m).astype(np.float32) * wm  # float32 product, rounded once
        acc = t if acc is None else acc + t
    return _confusion(np.argmax(acc, axis=1), labels, ignore)


def _confusion(pred: np.ndarray, labels: np.ndarray, ignore) -> np.ndarray:
    lab = np.asarray(labels).astype(np.int64)
    keep = lab != ignore if ignore is not None else np.ones(lab.shape, bool)
    return np.bincount(lab[keep] * C + pred[keep], minlength=C * C).reshape(C, C)


def _tie_members(rng: np.random.Generator, n_members: int, n: int, h: int, w: int):
    """uint8 (N, C, h, w) members on a small palette: many exact ties between classes, pixels
    where some members are copies of member 0, and a true-class bump so members mostly agree."""
    labels = rng.integers(0, C, (n, h, w)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.1] = IGNORE
    onehot = labels[:, None] == np.arange(C)[None, :, None, None]
    members = []
    for i in range(n_members):
        q = PALETTE[rng.integers(0, 6, (n, C, h, w))]  # mostly small values
        q[onehot & (rng.random(onehot.shape) < 0.8)] = PALETTE[rng.integers(7, 11)]
        if i:
            same = rng.random((n, 1, h, w)) < 0.3
            q = np.where(same, members[0], q)
        members.append(q)
    return members, labels


def _weight_sets(n_members: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Uniform, greedy-like counts, one-hot, a zero weight, tiny weights and random points."""
    m = n_members
    sets = [np.ones(m), np.eye(m)[m - 1], rng.dirichlet(np.ones(m)), rng.dirichlet(np.ones(m))]
    if m > 1:
        counts = np.arange(1, m + 1, dtype=float)[::-1].copy()
        counts[1] = 0.0  # a zero-weight member is skipped
        tiny = np.full(m, 1e-9)
        tiny[0] = 1.0
        sets += [counts, tiny, np.r_[1.0, np.full(m - 1, 1e-30)]]
    return sets


@pytest.mark.parametrize("n_members", [1, 2, 3, 5])
def test_full_confusion_equals_references(n_members):
    rng = np.random.default_rng(n_members)
    members, labels = _tie_members(rng, n_members, 9, 16, 24)
    for k, w in enumerate(_weight_sets(n_members, rng)):
        ref32 = _ref_float32(members, w, labels)
        for chunk in (1, 4, 100):
            np.testing.assert_array_equal(blend_argmax_confusion(members, w, labels, C, chunk=chunk), ref32)
        if k <= 4:  # uniform, one-hot, random, integer counts: float64 agrees
            np.testing.assert_array_equal(ref32, _ref_float64(members, w, labels))
        # the numpy path (float32 inputs, exact copies of the codes) follows the same rule
        as_float = [m.astype(np.float32) for m in members]
        np.testing.assert_array_equal(blend_argmax_confusion(as_float, w, labels, C), ref32)


def test_float32_tie_rule_kept():
    """A real near-tie that float32 rounding turns into a tie goes to the lower class, as it
    always did; a class dominated in every member is never predicted."""
    a = np.zeros((1, C, 1, 2), np.uint8)
    b = np.zeros((1, C, 1, 2), np.uint8)
    a[0, :2, 0, 0], b[0, :2, 0, 0] = (100, 100), (0, 1)  # s_1 - s_0 = 1e-9 > 0 in reals
    a[0, :2, 0, 1], b[0, :2, 0, 1] = (100, 101), (0, 1)  # class 1 dominates class 0
    labels = np.ones((1, 1, 2), np.uint8)
    w = np.array([1.0, 1e-9])
    expected = np.zeros((C, C), np.int64)
    expected[1, 0] = expected[1, 1] = 1  # pixel 0 -> class 0 (float32 tie), pixel 1 -> class 1
    np.testing.assert_array_equal(blend_argmax_confusion([a, b], w, labels, C), expected)
    assert _ref_float64([a, b], w, labels)[1, 1] == 2  # float64 would call pixel 0 class 1
    obj = SegmentationBlendObjective([a, b], labels, C, max_pixels_per_image=2)
    np.testing.assert_array_equal(obj.confusion(w, full=False), expected)


def _sampled(members, labels, max_pixels: int, seed: int, ignore=IGNORE):
    """The pixels the objective samples, as (1, C, T) members and (1, T) labels."""
    idx, count = _sample_indices(labels, max_pixels, ignore, seed)
    n = labels.shape[0]
    pix = [(i, j) for i in range(n) for j in idx[i, : count[i]]]
    img, flat = np.array([p[0] for p in pix]), np.array([p[1] for p in pix])
    subs = [m.reshape(n, C, -1)[img, :, flat].T[None] for m in members]
    return subs, labels.reshape(n, -1)[img, flat][None]


@pytest.mark.parametrize("n_members,max_pixels", [(1, 40), (2, 100), (3, 40), (5, 10_000)])
def test_subsample_objective_equals_reference_on_sampled_pixels(n_members, max_pixels):
    rng = np.random.default_rng(10 + n_members)
    members, labels = _tie_members(rng, n_members, 11, 16, 24)
    obj = SegmentationBlendObjective(members, labels, C, max_pixels_per_image=max_pixels, seed=3)
    subs, sub_lab = _sampled(members, labels, max_pixels, seed=3)
    rows, sampled = obj.search_pixels
    assert sampled == sub_lab.size
    if n_members > 1:
        assert rows < 0.9 * sampled * C  # the pruned view is what is being tested
    for k, w in enumerate(_weight_sets(n_members, rng)):
        ref32 = _ref_float32(subs, w, sub_lab)
        np.testing.assert_array_equal(obj.confusion(w, full=False), ref32)
        if k <= 4:
            np.testing.assert_array_equal(ref32, _ref_float64(subs, w, sub_lab))
        assert obj(w) == iou_from_confusion(ref32)[0]
        if max_pixels >= 16 * 24:  # every labelled pixel: the search view is the full data
            assert obj(w) == obj.full_score(w)


def test_subsample_view_without_ignore_and_for_float_members():
    rng = np.random.default_rng(5)
    members, labels = _tie_members(rng, 3, 6, 8, 8)
    labels[labels == IGNORE] = 0
    obj = SegmentationBlendObjective(members, labels, C, ignore_index=None, max_pixels_per_image=30, seed=1)
    subs, sub_lab = _sampled(members, labels, 30, seed=1, ignore=None)
    floats = [m.astype(np.float32) for m in members]  # not pruned: the numpy path on all classes
    obj_f = SegmentationBlendObjective(floats, labels, C, ignore_index=None, max_pixels_per_image=30, seed=1)
    for w in _weight_sets(3, rng):
        ref = _ref_float32(subs, w, sub_lab, ignore=None)
        np.testing.assert_array_equal(obj.confusion(w, full=False), ref)
        np.testing.assert_array_equal(obj_f.confusion(w, full=False), ref)


def test_bad_labels_raise_on_every_view():
    rng = np.random.default_rng(6)
    members, labels = _tie_members(rng, 3, 4, 8, 8)
    labels[labels == IGNORE] = 0
    labels[2, 3, 3] = C  # neither a class nor ignore_index
    obj = SegmentationBlendObjective(members, labels, C, max_pixels_per_image=64, seed=0)
    with pytest.raises(ValueError, match="labels outside"):
        obj(np.ones(3))
    with pytest.raises(ValueError, match="labels outside"):
        obj.full_score(np.ones(3))


def test_subsampled_search_scores_full_data_only_to_rescore():
    """The search runs on the subsample; full data is scored only by the final rescoring
    (found weights, uniform, each member), i.e. at most M + 2 full evaluations."""
    rng = np.random.default_rng(7)
    members, labels = _tie_members(rng, 4, 12, 16, 24)
    obj = SegmentationBlendObjective(members, labels, C, max_pixels_per_image=64, seed=0)
    full_calls = []

    def full(w: np.ndarray) -> float:
        full_calls.append(w)
        return obj.full_score(w)

    res = search_weights(obj, 4, "slsqp", final_score_fn=full)
    assert len(full_calls) <= 4 + 2 and obj.n_evals > 10 * len(full_calls)
    assert res.score == obj.full_score(res.weights)
