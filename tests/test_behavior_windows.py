from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from kagglekit.tasks.behavior.windows import (WindowDataset, make_windows, reassemble, window_starts,
                                              window_weights)


@pytest.mark.parametrize("n,length,stride,expected", [
    (250, 100, 50, [0, 50, 100, 150]), (230, 100, 50, [0, 50, 100, 130]), (100, 100, 50, [0]),
    (40, 100, 50, [0]), (301, 100, 100, [0, 100, 200, 201])])
def test_window_starts_cover_and_end_aligned(n, length, stride, expected):
    starts = window_starts(n, length, stride)
    assert starts.tolist() == expected
    covered = np.zeros(n, dtype=bool)
    for s in starts:
        covered[s:s + length] = True
    assert covered.all()


def test_make_windows_pads_short_sequences():
    feats = np.arange(30, dtype=np.float32).reshape(15, 2)
    labels = np.arange(15)
    x, y, valid = make_windows(feats, labels, length=20, stride=10)
    assert x.shape == (1, 20, 2) and y.shape == (1, 20) and valid.shape == (1, 20)
    assert valid[0, :15].all() and not valid[0, 15:].any()
    assert np.all(x[0, 15:] == 0) and np.all(y[0, 15:] == -1) and np.array_equal(y[0, :15], labels)
    x, y, valid = make_windows(feats, None, length=6, stride=4)
    assert y is None and x.shape == (4, 6, 2) and valid.all()
    assert np.array_equal(x[-1], feats[-6:])


@pytest.mark.parametrize("weighting", ["triangular", "uniform"])
@pytest.mark.parametrize("n,length,stride", [(257, 100, 50), (257, 100, 33), (257, 100, 1), (257, 100, 100),
                                             (60, 100, 50), (1000, 64, 17)])
def test_reassemble_recovers_signal(n, length, stride, weighting):
    signal = np.random.default_rng(n + stride).normal(size=(n, 3)).astype(np.float32)
    x, _, _ = make_windows(signal, None, length, stride)
    out = reassemble(x, window_starts(n, length, stride), n, weighting)
    assert out.shape == (n, 3)
    np.testing.assert_allclose(out, signal, rtol=1e-6, atol=1e-6)


def test_window_weights_positive():
    for length in (1, 2, 5, 100):
        assert (window_weights(length) > 0).all()
    with pytest.raises(ValueError):
        window_weights(4, "gaussian")


def _max_jump(values: np.ndarray) -> float:
    return float(np.abs(np.diff(values)).max())


def test_triangular_damps_seams_of_edge_biased_outputs():
    """A model whose outputs are off by +1 on the first/last 10 frames of each window (no context).
    Inside the sequence (the true ends have no second window, so they keep the bias), uniform
    averaging leaves steps of 0.5 where windows meet; triangular weights cut the steps to ~0.2
    (10/51) and the mean error to about a fifth."""
    n, length, stride = 400, 100, 50
    starts = window_starts(n, length, stride)
    bias = np.zeros(length)
    bias[:10] = bias[-10:] = 1.0
    outputs = np.broadcast_to(bias[None, :, None], (len(starts), length, 1))
    uniform = reassemble(outputs, starts, n, "uniform")[10:-10, 0]
    triangular = reassemble(outputs, starts, n, "triangular")[10:-10, 0]
    assert np.isclose(_max_jump(uniform), 0.5, atol=1e-6)
    assert _max_jump(triangular) < 0.5 * _max_jump(uniform)
    assert np.abs(triangular).mean() < 0.25 * np.abs(uniform).mean()


def test_window_dataset_items_and_reassembly():
    rng = np.random.default_rng(0)
    videos = [
        {"features": rng.normal(size=(130, 5)), "mask": rng.random((130, 5)) > 0.2,
         "labels": rng.integers(0, 4, 130)},
        {"features": rng.normal(size=(30, 5)), "labels": rng.integers(-1, 2, (30, 3)).astype(np.float32)},
    ]
    ds = WindowDataset(videos, length=50, stride=25)
    assert len(ds) == 5 + 1
    item = ds[0]
    assert item["x"].dtype == torch.float32 and item["x"].shape == (50, 5)
    assert item["mask"].dtype == torch.float32 and item["y"].dtype == torch.int64 and item["y"].shape == (50,)
    assert torch.equal(item["mask"].bool(), torch.from_numpy(videos[0]["mask"][:50]))
    last = ds[5]
    assert last["video_index"] == 1 and last["start"] == 0 and last["y"].shape == (50, 3)
    assert last["valid"][:30].all() and not last["valid"][30:].any() and (last["y"][30:] == -1).all()
    assert last["mask"][:30].all() and not last["mask"][30:].any()
    batch = next(iter(DataLoader(ds, batch_size=5)))
    assert batch["x"].shape == (5, 50, 5) and batch["start"].tolist() == [0, 25, 50, 75, 80]
    back = reassemble(batch["x"].numpy(), ds.starts_of(0), 130)
    np.testing.assert_allclose(back, videos[0]["features"], rtol=1e-5, atol=1e-6)


def test_window_dataset_without_labels_has_no_y():
    ds = WindowDataset([{"features": np.zeros((10, 2))}], length=4, stride=4)
    assert "y" not in ds[0] and len(ds) == 3
