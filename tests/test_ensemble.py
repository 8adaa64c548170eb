"""Tests for kagglekit.ensemble.search: blended-argmax confusion, objective, weight searches."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import softmax

from kagglekit.ensemble.search import (
    SearchResult,
    SegmentationBlendObjective,
    blend_argmax_confusion,
    greedy_weights,
    search_weights,
    slsqp_weights,
)
from kagglekit.metrics.segmentation import iou_from_confusion

N, H, W, C, IGNORE = 40, 48, 64, 13, 255
DEFAULT_SLSQP_EPS = float(np.sqrt(np.finfo(float).eps))  # scipy's default step, ~1.49e-8


def _member(rng: np.random.Generator, onehot: np.ndarray, signal: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 (N, C, H, W) quantised softmax of ``signal_c * onehot + sigma * noise``."""
    z = signal.reshape(1, -1, 1, 1).astype(np.float32) * onehot
    z += sigma * rng.standard_normal(onehot.shape, dtype=np.float32)
    return np.round(softmax(z, axis=1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def problem() -> tuple[list[np.ndarray], np.ndarray]:
    """Labels (N, H, W) in 8x8 blocks with ~10% ignore; members good / bad / complementary."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.repeat(rng.integers(0, C, (N, H // 8, W // 8)), 8, 1), 8, 2).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.1] = IGNORE
    onehot = (labels[:, None] == np.arange(C)[None, :, None, None]).astype(np.float32)
    good = _member(rng, onehot, np.full(C, 2.0), 1.0)  # true class + moderate noise
    bad = _member(rng, onehot, np.full(C, 0.7), 1.5)  # heavy noise
    comp = _member(rng, onehot, np.where(np.arange(C) < 6, 4.0, 0.0), 1.0)  # good on 0..5 only
    return [good, bad, comp], labels


@pytest.fixture
def objective(problem) -> SegmentationBlendObjective:
    members, labels = problem
    return SegmentationBlendObjective(members, labels, C, ignore_index=IGNORE)


def _naive_confusion(members, weights, labels) -> np.ndarray:
    """float64 full-array reference: argmax of the weighted dequantised sum + bincount."""
    blend = sum(w * (np.asarray(m, dtype=np.float64) / 255.0) for m, w in zip(members, weights))
    pred = np.argmax(blend, axis=1)
    lab = np.asarray(labels).astype(np.int64)
    valid = lab != IGNORE
    return np.bincount(lab[valid] * C + pred[valid], minlength=C * C).reshape(C, C)


def test_slsqp_leaves_start_only_with_large_eps(objective):
    uniform = objective(np.full(3, 1 / 3))
    singles = [objective(np.eye(3)[i]) for i in range(3)]
    anchors = max(uniform, *singles)
    # From uniform: the blend beats uniform and every single member by a clear margin.
    res = slsqp_weights(objective, 3, n_starts=1)
    assert res.score > anchors + 0.05
    assert int(np.argmax(res.weights)) == 0 and res.weights[0] > 0.5
    assert res.score == pytest.approx(objective(res.weights), abs=0)
    # Plain SLSQP (default eps) from a generic start sees a zero gradient and stays put ...
    x0 = np.random.default_rng(1).dirichlet(np.ones(3))
    cons = ({"type": "eq", "fun": lambda x: np.sum(x) - 1.0},)
    plain = minimize(lambda x: -objective(x), x0, method="SLSQP", bounds=[(0, 1)] * 3, constraints=cons)
    np.testing.assert_allclose(plain.x, x0, atol=1e-9)
    assert -plain.fun == objective(x0)
    # ... so our search with the default step finds nothing beyond its anchor evaluations,
    stuck = slsqp_weights(objective, 3, x0=x0, n_starts=1, eps=DEFAULT_SLSQP_EPS)
    assert stuck.score == max(anchors, objective(x0))
    # while the large step moves from the same start to a strictly better blend.
    moved = slsqp_weights(objective, 3, x0=x0, n_starts=1)
    assert moved.score > max(anchors, objective(x0)) + 0.05
    assert moved.weights[0] > 0.5


def test_greedy_at_least_best_single(objective):
    res = greedy_weights(objective, 3, n_iter=20)
    assert res.score >= max(res.member_scores)
    assert res.score > max(res.member_scores) + 0.05  # the blend really helps here
    assert res.score == objective(res.weights)
    # weights are counts / total with total <= n_iter + 1
    assert any(np.allclose(res.weights * k, np.round(res.weights * k)) for k in range(1, 22))
    once = greedy_weights(objective, 3, with_replacement=False)
    nz = once.weights[once.weights > 0]
    np.testing.assert_allclose(nz, 1.0 / nz.size)


@pytest.mark.parametrize("method", ["slsqp", "greedy"])
def test_weights_on_simplex_and_score_consistent(objective, method):
    res = search_weights(objective, 3, method=method)
    assert isinstance(res, SearchResult) and res.method == method
    assert np.all(res.weights >= 0)
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert res.score == objective(res.weights)
    assert res.member_scores == [objective(np.eye(3)[i]) for i in range(3)]
    assert res.n_evals >= 3 and len(res.history) >= 1


def test_search_is_generic_over_score_fn():
    target = np.array([0.1, 0.6, 0.3, 0.0])

    def score(w: np.ndarray) -> float:  # smooth concave toy metric, optimum at target
        return -float(np.sum((w - target) ** 2))

    res = slsqp_weights(score, 4, eps=1e-6)
    np.testing.assert_allclose(res.weights, target, atol=1e-3)
    gr = greedy_weights(score, 4, n_iter=30)
    assert gr.score >= max(gr.member_scores) and np.abs(gr.weights - target).max() < 0.1


def test_blend_confusion_matches_naive_on_memmaps(problem, tmp_path):
    members, labels = problem
    paths = []
    for i, m in enumerate(members):
        np.save(tmp_path / f"m{i}.npy", m)
        paths.append(tmp_path / f"m{i}.npy")
    np.save(tmp_path / "labels.npy", labels)
    mm = [np.load(p, mmap_mode="r") for p in paths]
    lab = np.load(tmp_path / "labels.npy", mmap_mode="r")
    assert isinstance(mm[0], np.memmap)
    rng = np.random.default_rng(3)
    w_zero = np.r_[rng.dirichlet(np.ones(2)), 0.0][[0, 2, 1]]  # a zero-weight member is skipped
    # Generic weights: no class ties in exact arithmetic except identical inputs, so float32
    # chunked accumulation must reproduce the float64 full-array argmax exactly.
    for w in (rng.dirichlet(np.ones(3)), w_zero):
        ref = _naive_confusion(mm, w, lab)
        assert ref.sum() == int((labels != IGNORE).sum())
        for chunk in (1, 7, 16, 64):
            got = blend_argmax_confusion(mm, w, lab, C, ignore_index=IGNORE, chunk=chunk)
            assert got.dtype == np.int64 and got.shape == (C, C)
            np.testing.assert_array_equal(got, ref)
    # Uniform weights create many exact ties; they must go to the lowest class, which an exact
    # integer reference (sum of raw uint8 codes) decides without rounding noise.
    exact = np.argmax(sum(np.asarray(m, dtype=np.int64) for m in mm), axis=1)
    valid = labels != IGNORE
    ref = np.bincount(labels[valid].astype(np.int64) * C + exact[valid], minlength=C * C)
    got = blend_argmax_confusion(mm, np.full(3, 1 / 3), lab, C, ignore_index=IGNORE, chunk=5)
    np.testing.assert_array_equal(got, ref.reshape(C, C))


def test_objective_cache_and_subsample(problem):
    members, labels = problem
    obj = SegmentationBlendObjective(members, labels, C, max_pixels_per_image=500, seed=0)
    w = np.array([0.5, 0.2, 0.3])
    s1 = obj(w)
    assert obj(w) == s1 and obj(2 * w) == s1  # scale-invariant key: one real evaluation
    assert (obj.n_calls, obj.n_evals) == (3, 1)
    full = obj.full_score(w)
    assert obj.n_evals == 2  # full data is a different view, never served from the sub cache
    ref = iou_from_confusion(blend_argmax_confusion(members, w, labels, C))[0]
    assert full == ref and s1 != full
    assert abs(s1 - full) < 0.05
    n_valid = (labels != IGNORE).reshape(N, -1).sum(1)
    assert obj.confusion(w, full=False).sum() == np.minimum(n_valid, 500).sum()
    again = SegmentationBlendObjective(members, labels, C, max_pixels_per_image=500, seed=0)
    assert again(w) == s1  # the subsample is fixed by the seed


def test_search_weights_final_score_on_full_data(problem):
    members, labels = problem
    obj = SegmentationBlendObjective(members, labels, C, max_pixels_per_image=300, seed=1)
    res = search_weights(obj, 3, "greedy", final_score_fn=obj.full_score)
    assert res.score == obj.full_score(res.weights)
    assert res.search_score == obj(res.weights)
    full_anchors = [obj.full_score(np.full(3, 1 / 3))] + [obj.full_score(e) for e in np.eye(3)]
    assert res.score >= max(full_anchors)
    assert res.member_scores == full_anchors[1:]


def test_unknown_method_and_bad_inputs(problem, objective):
    with pytest.raises(ValueError, match="unknown weight search method 'nelder'"):
        search_weights(objective, 3, method="nelder")
    members, labels = problem
    with pytest.raises(ValueError, match=">= 0"):
        blend_argmax_confusion(members, np.array([0.5, -0.1, 0.6]), labels, C)
    with pytest.raises(ValueError, match="3 members"):
        blend_argmax_confusion(members, np.ones(2), labels, C)
    with pytest.raises(ValueError, match="shape"):
        blend_argmax_confusion([members[0], members[1][:-1]], np.ones(2), labels, C)
    bad = labels.copy()
    bad[0, 0, 0] = C  # not ignore_index, out of range
    with pytest.raises(ValueError, match="labels outside"):
        blend_argmax_confusion(members, np.ones(3), bad, C)


def _rss_file_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise RuntimeError("no RssFile")


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_release_pages_keeps_memmap_rss_small(problem, tmp_path):
    members, labels = problem
    big = [np.concatenate([m] * 4) for m in members]  # 160 images, ~6.4 MB per member
    lab = np.concatenate([labels] * 4)
    for i, m in enumerate(big):
        np.save(tmp_path / f"m{i}.npy", m)
    total_kib = sum(m.nbytes for m in big) / 1024
    w = np.array([0.5, 0.2, 0.3])
    results, growth = [], []
    for release in (False, True):
        mm = [np.load(tmp_path / f"m{i}.npy", mmap_mode="r") for i in range(3)]
        before = _rss_file_kib()
        results.append(blend_argmax_confusion(mm, w, lab, C, chunk=8, release_pages=release))
        growth.append(_rss_file_kib() - before)
        del mm
    np.testing.assert_array_equal(results[0], results[1])
    assert growth[0] > 0.8 * total_kib  # without release every page stays mapped
    assert growth[1] < 0.2 * total_kib
