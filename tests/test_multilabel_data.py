"""Multi-label data: label CSV loading/errors, StateMap, cam_erase, sample weights, dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import require_shared
from kagglekit.tasks.multilabel.data import (IMAGENET_MEAN, IMAGENET_STD, CamErase, LabelError,
                                             MultiLabelDataset, StateMap, build_transforms,
                                             cam_erase, load_labels, sample_weights)

ATTRS = ["front_right", "front_left", "rear_right", "rear_left", "hood"]
DOOR = StateMap(("open", "closed"),
                {(1, 0): "open", (0, 1): "closed", (1, 1): "mixed", (0, 0): "unknown"})


def _images(root: Path, names: list[str], size: tuple[int, int] = (40, 20)) -> None:
    """Write small RGB JPEGs (w, h) = size under root."""
    rng = np.random.default_rng(0)
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / n)


def _csv(root: Path, text: str) -> Path:
    path = root / "labels.csv"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------- real data
def test_real_car_doors_labels():
    root = require_shared("car_doors")
    df = load_labels(root / "labels.csv", root)
    assert list(df.columns) == ["image", *ATTRS] and len(df) == 365
    assert (df[ATTRS] == 1).sum().tolist() == [171, 173, 162, 167, 180]  # README statistics
    assert all(df[a].dtype == np.int8 for a in ATTRS) and (df[ATTRS] >= 0).all().all()
    split = load_labels(root / "splits" / "train.csv", root, attributes=["hood", "front_left"])
    assert list(split.columns) == ["image_path", "hood", "front_left"] and len(split) == 255
    w = sample_weights(df[ATTRS].to_numpy())
    once = df[ATTRS].astype(str).agg("".join, axis=1) == "11110"  # the README's single image
    assert once.sum() == 1 and w[once.to_numpy()][0] == w.max()


def test_real_dataset_items():
    root = require_shared("car_doors")
    df = load_labels(root / "labels.csv", root).iloc[:4]
    ds = MultiLabelDataset(df, root, ATTRS, transform=build_transforms(128, train=True, seed=0))
    item = ds[1]
    assert item["image"].shape == (3, 128, 128) and item["image"].dtype == torch.float32
    assert item["target"].tolist() == df.loc[1, ATTRS].astype(float).tolist()
    assert item["id"] == "images/1.jpg"
    plain = MultiLabelDataset(df, root, ATTRS)[0]["image"]
    assert plain.shape == (3, 221, 512)


# ---------------------------------------------------------------------------- CSV errors
def test_missing_labels_become_minus_one(tmp_path):
    _images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    path = _csv(tmp_path, "image_path,x,y\na.jpg,1,\nb.jpg,-1,0\nc.jpg,NaN,1.0\n")
    df = load_labels(path, tmp_path)
    assert df["x"].tolist() == [1, -1, -1] and df["y"].tolist() == [-1, 0, 1]
    assert df["x"].dtype == np.int8


def test_unknown_column_named(tmp_path):
    _images(tmp_path, ["a.jpg"])
    path = _csv(tmp_path, "image,x\na.jpg,1\n")
    with pytest.raises(LabelError, match=r"labels\.csv.*\['hood', 'door'\]"):
        load_labels(path, tmp_path, attributes=["x", "hood", "door"])


def test_value_two_names_row_and_column(tmp_path):
    _images(tmp_path, ["a.jpg", "b.jpg"])
    path = _csv(tmp_path, "image,x,y\na.jpg,1,0\nb.jpg,0,2\n")
    with pytest.raises(LabelError, match=r"labels\.csv: row 2 \(line 3\), column 'y': value '2'"):
        load_labels(path, tmp_path)


def test_missing_image_named(tmp_path):
    _images(tmp_path, ["a.jpg"])
    path = _csv(tmp_path, "image,x\na.jpg,1\ngone.jpg,0\n")
    with pytest.raises(LabelError, match=r"labels\.csv.*not found.*\(2, 'gone\.jpg'\)"):
        load_labels(path, tmp_path)


def test_duplicates_and_empty(tmp_path):
    _images(tmp_path, ["a.jpg"])
    with pytest.raises(LabelError, match=r"duplicate.*'a\.jpg'.*rows \[2\]"):
        load_labels(_csv(tmp_path, "image,x\na.jpg,1\na.jpg,0\n"), tmp_path)
    with pytest.raises(LabelError, match="no rows"):
        load_labels(_csv(tmp_path, "image,x\n"), tmp_path)
    with pytest.raises(LabelError, match="no image column"):
        load_labels(_csv(tmp_path, "file,x\na.jpg,1\n"), tmp_path)


# ---------------------------------------------------------------------------- StateMap
def test_state_map_and_filter():
    assert DOOR.state_of([1, 0]) == "open" and DOOR.state_of(np.array([1, 1])) == "mixed"
    assert DOOR.state_of([0, -1]) == "?" and DOOR.state_of([0, 0]) == "unknown"
    partial = StateMap(("a",), {(1,): "on"})
    assert partial.state_of([0]) == "?"
    frame = pd.DataFrame({"image": list("pqrst"), "open": [1, 0, 0, 1, -1],
                          "closed": [0, 1, 0, 1, 0]})
    kept = DOOR.filter_rows(frame)
    assert kept["image"].tolist() == ["p", "q", "s", "t"] and kept.index.tolist() == [0, 1, 2, 3]
    assert DOOR.filter_rows(frame, drop_states=("unknown", "?"))["image"].tolist() == list("pqs")
    data = json.loads(json.dumps(DOOR.to_dict()))
    assert data["states"]["1,0"] == "open" and StateMap.from_dict(data) == DOOR
    with pytest.raises(ValueError, match="2 values"):
        StateMap(("open", "closed"), {(1,): "x"})


def test_state_map_survives_weights_only_load(tmp_path):
    torch.save({"state_map": DOOR.to_dict()}, tmp_path / "m.pt")
    back = torch.load(tmp_path / "m.pt", weights_only=True)
    assert StateMap.from_dict(back["state_map"]) == DOOR


# ---------------------------------------------------------------------------- cam_erase
def _edge_changed(before: np.ndarray, after: np.ndarray) -> bool:
    """True if the changed pixels form a box touching the top or bottom edge (incl. a corner)."""
    ys, xs = np.nonzero((before != after).any(axis=2))
    if ys.size == 0:
        return False
    return ys.min() == 0 or ys.max() == before.shape[0] - 1


def test_cam_erase_changes_an_edge_region_and_is_reproducible():
    img = np.full((100, 200, 3), 128, np.uint8)
    touched = np.zeros((100, 200), bool)
    for seed in range(40):
        out = cam_erase(img, np.random.default_rng(seed), max_frac=0.25, p=1.0)
        diff = (out != img).any(axis=2)
        assert diff.any() and _edge_changed(img, out)
        assert diff[40:60].sum() == 0  # the middle band is never erased (height <= 25 %)
        assert diff.mean() <= 0.25 + 1e-9
        touched |= diff
        again = cam_erase(img, np.random.default_rng(seed), max_frac=0.25, p=1.0)
        np.testing.assert_array_equal(out, again)
    assert touched[0, 0] and touched[-1, -1] and touched[0, -1] and touched[-1, 0]
    assert (img == 128).all()  # input untouched
    skip = cam_erase(img, np.random.default_rng(0), p=0.0)
    np.testing.assert_array_equal(skip, img)


def test_cam_erase_transform_seeded():
    import albumentations as A
    img = np.full((64, 64, 3), 100, np.uint8)
    outs = []
    for seed in (7, 7, 8):
        pipe = A.Compose([CamErase(p=1.0)], seed=seed)
        outs.append([pipe(image=img)["image"] for _ in range(2)])
    np.testing.assert_array_equal(outs[0][0], outs[1][0])  # same seed -> same erase
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    assert not np.array_equal(outs[0][0], outs[0][1])      # successive calls differ
    assert not np.array_equal(outs[0][0], outs[2][0])      # other seed differs
    assert all(_edge_changed(img, o) for o in outs[0])


def test_build_transforms_shapes_and_hflip_flag():
    import albumentations as A
    img = np.random.default_rng(0).integers(0, 256, (221, 512, 3), dtype=np.uint8)
    for train in (True, False):
        assert build_transforms(96, train=train, seed=0)(image=img)["image"].shape == (96, 96, 3)
    names = lambda t: [type(x).__name__ for x in t.transforms]  # noqa: E731
    assert "HorizontalFlip" not in names(build_transforms(96, True))
    assert "HorizontalFlip" in names(build_transforms(96, True, hflip_p=0.5))
    assert isinstance(build_transforms(96, True).transforms[-1], CamErase)
    assert names(build_transforms(96, False)) == ["Resize"]
    assert isinstance(build_transforms(96, False), A.Compose)


# ---------------------------------------------------------------------------- weights
def test_sample_weights_inverse_frequency():
    t = np.array([[1, 0]] * 6 + [[0, 1]] * 3 + [[1, -1]] * 1)
    w = sample_weights(t)
    assert w.shape == (10,) and w.mean() == pytest.approx(1.0)
    assert w[9] == pytest.approx(6 * w[0]) and w[6] == pytest.approx(2 * w[0])
    assert w[:6].sum() == pytest.approx(w[6:9].sum()) == pytest.approx(w[9])  # equal per combo
    with pytest.raises(ValueError, match="missing"):
        sample_weights(np.array([[2, 0]]))


# ---------------------------------------------------------------------------- dataset
def test_dataset_normalisation_and_missing_target(tmp_path):
    (tmp_path / "a.png").parent.mkdir(exist_ok=True)
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[..., 0] = 255
    Image.fromarray(arr).save(tmp_path / "a.png")
    frame = pd.DataFrame({"image": ["a.png"], "x": np.int8([1]), "y": np.int8([-1])})
    item = MultiLabelDataset(frame, tmp_path, ["x", "y"], image_size=16)[0]
    assert item["image"].shape == (3, 16, 16) and item["target"].tolist() == [1.0, -1.0]
    expect = (np.array([1.0, 0.0, 0.0], np.float32) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(item["image"][:, 5, 5].numpy(), expect, atol=1e-5)


def test_dataset_corrupt_image_error(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    frame = pd.DataFrame({"image_path": ["bad.jpg", "gone.jpg"], "x": np.int8([1, 0])})
    ds = MultiLabelDataset(frame, tmp_path, ["x"])
    with pytest.raises(LabelError, match=r"bad\.jpg.*fix the file or remove its row"):
        ds[0]
    with pytest.raises(LabelError, match=r"gone\.jpg"):
        ds[1]
    with pytest.raises(LabelError, match="'z'"):
        MultiLabelDataset(frame, tmp_path, ["z"])
