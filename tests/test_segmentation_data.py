"""NYUv2 segmentation data layer: demo generator, readers, dataset/transforms, converter."""
from __future__ import annotations

import shutil
from pathlib import Path

import albumentations as A
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import torch
from PIL import Image

from kagglekit.demo import nyuv2 as demo
from kagglekit.demo.nyuv2 import frame_rng, generate_nyuv2, sample_room
from kagglekit.tasks.segmentation.convert import convert_nyuv2_mat, load_label_mapping
from kagglekit.tasks.segmentation.data import (
    ADDITIONAL_TARGETS, IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, NYUV2_CLASSES, DataError,
    NYUv2Dataset, build_train_transform, build_valid_transform, check_dataset, inverse_depth,
    label_to_target, read_depth, read_ids, read_image, read_label, target_to_label)

H, W = 60, 80  # small frames keep the file fast; the generator is resolution independent


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return generate_nyuv2(tmp_path_factory.mktemp("nyu") / "nyuv2", n_train=6, n_test=3, height=H, width=W)


def _copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------------
# Generator
# ------------------------------------------------------------------------------------------------


def test_layout_complete(demo_root: Path) -> None:
    train, test = read_ids(demo_root / "train.csv"), read_ids(demo_root / "test.csv")
    assert train == ["0001", "0002", "0003", "0004", "0005", "0006"] and test == ["0007", "0008", "0009"]
    assert check_dataset(demo_root, "train") == train
    assert check_dataset(demo_root, "test", with_labels=True) == test
    for split, ids in (("train", train), ("test", test)):
        for i in ids:
            modes = {k: Image.open(demo_root / split / k / f"{i}.png").mode for k in ("image", "depth", "label")}
            assert modes == {"image": "RGB", "depth": "I;16", "label": "L"}
    sub = pd.read_csv(demo_root / "sample_submission.csv", dtype=str)
    assert list(sub.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert sub["ImageId"].tolist() == test
    assert (sub["ClassId"] == "12").all() and (sub["EncodedPixels"] == f"1 {H * W}").all()


def test_generator_deterministic(demo_root: Path, tmp_path: Path) -> None:
    again = generate_nyuv2(tmp_path / "a", n_train=2, n_test=1, height=H, width=W)
    other = generate_nyuv2(tmp_path / "b", n_train=2, n_test=1, height=H, width=W, seed=1)
    for kind in ("image", "depth", "label"):
        ref = np.asarray(Image.open(demo_root / "train" / kind / "0002.png"))
        assert np.array_equal(np.asarray(Image.open(again / "train" / kind / "0002.png")), ref)
        assert not np.array_equal(np.asarray(Image.open(other / "train" / kind / "0002.png")), ref)


def test_class_ids_match_data_module() -> None:
    names = {demo.BED: "bed", demo.BOOKS: "books", demo.CEILING: "ceiling", demo.CHAIR: "chair",
             demo.FLOOR: "floor", demo.FURNITURE: "furniture", demo.OBJECTS: "objects",
             demo.PICTURE: "picture", demo.SOFA: "sofa", demo.TABLE: "table", demo.TV: "tv",
             demo.WALL: "wall", demo.WINDOW: "window"}
    assert [names[k] for k in range(1, 14)] == NYUV2_CLASSES


@pytest.fixture(scope="module")
def rooms() -> list:
    return [sample_room(frame_rng(0, i), 120, 160) for i in range(1, 25)]


def test_classes_per_image(rooms: list) -> None:
    per_image = [len(set(np.unique(r.label).tolist()) - {0}) for r in rooms]
    assert np.mean(per_image) >= 5, per_image
    seen = set().union(*(np.unique(r.label).tolist() for r in rooms))
    assert set(range(1, 14)) <= seen, f"classes never generated: {set(range(1, 14)) - seen}"


def _backproject(room) -> np.ndarray:
    """World points (H, W, 3) of the written depth (z-depth in mm) through the room's camera."""
    cam, (h, w) = room.camera, room.depth_mm.shape
    v, u = np.mgrid[0:h, 0:w] + 0.5
    z = room.depth_mm / 1000.0
    d_cam = np.stack([(u - cam.cx) / cam.focal * z, (v - cam.cy) / cam.focal * z, z], -1)
    return cam.pos + d_cam @ cam.rot.T


def test_depth_label_geometry(rooms: list) -> None:
    """Back-projected floor pixels lie on z = 0, ceiling pixels on z = room height."""
    for room in rooms:
        pts, valid = _backproject(room), room.depth_mm > 0
        for label, plane_id, height in ((demo.FLOOR, 4, 0.0), (demo.CEILING, 5, room.scene.size[2])):
            sel = valid & (room.instance == plane_id)
            assert np.all(room.label[room.instance == plane_id] == label)
            if sel.sum() > 20:
                err = np.abs(pts[..., 2][sel] - height)
                assert np.quantile(err, 0.99) < 0.1, (label, np.quantile(err, 0.99))


def test_floor_depth_increases_towards_horizon(rooms: list) -> None:
    up_pairs = farther = 0
    for room in rooms:
        floor = (room.label == demo.FLOOR) & (room.depth_mm > 0)
        pair = floor[1:] & floor[:-1]  # vertically adjacent floor pixels (row r-1 above row r)
        farther += int((room.depth_mm[:-1][pair] > room.depth_mm[1:][pair]).sum())
        up_pairs += int(pair.sum())
    assert up_pairs > 1000 and farther / up_pairs > 0.95, farther / up_pairs


def test_boxes_depth_continuous(rooms: list) -> None:
    """Neighbouring pixels of one box have close depths; across box boundaries jumps are common."""
    inside, across = [], []
    for room in rooms:
        d, inst = room.depth_mm.astype(np.float64), room.instance
        for a, b, ia, ib in ((d[:, 1:], d[:, :-1], inst[:, 1:], inst[:, :-1]),
                             (d[1:], d[:-1], inst[1:], inst[:-1])):
            ok = (a > 0) & (b > 0) & (ia >= 6) & (ib >= 6)
            rel = np.abs(a - b)[ok] / np.minimum(a, b)[ok]
            inside.append(rel[(ia == ib)[ok]])
            across.append(rel[(ia != ib)[ok]])
    inside, across = np.concatenate(inside), np.concatenate(across)
    assert np.quantile(inside, 0.99) < 0.12, np.quantile(inside, 0.99)
    assert np.quantile(across, 0.9) > 0.1, np.quantile(across, 0.9)


# ------------------------------------------------------------------------------------------------
# Encodings, dataset, transforms
# ------------------------------------------------------------------------------------------------


def test_label_target_roundtrip() -> None:
    label = np.arange(14, dtype=np.uint8).reshape(2, 7)
    target = label_to_target(label)
    assert target.dtype == np.int64 and target[0, 0] == IGNORE_INDEX
    assert target.ravel()[1:].tolist() == list(range(13))
    back = target_to_label(target)
    assert back.dtype == np.uint8 and np.array_equal(back, label)
    with pytest.raises(ValueError, match=r"found \[13\]"):
        target_to_label(np.array([0, 13]))


def test_inverse_depth() -> None:
    inv = inverse_depth(np.array([0.0, 0.25, 0.5, 1.0, 5.0, 10.0], np.float32))
    assert inv.dtype == np.float32
    np.testing.assert_allclose(inv, [0.0, 1.0, 1.0, 0.5, 0.1, 0.05], rtol=1e-6)


def test_dataset_no_transform_matches_files(demo_root: Path) -> None:
    ds = NYUv2Dataset(demo_root, ["0003"])
    item = ds[0]
    rgb = item["image"].numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    np.testing.assert_allclose(rgb * 255, read_image(demo_root / "train/image/0003.png"), atol=1e-3)
    np.testing.assert_array_equal(item["depth"][0].numpy(), read_depth(demo_root / "train/depth/0003.png"))
    expected = label_to_target(read_label(demo_root / "train/label/0003.png"))
    np.testing.assert_array_equal(item["mask"].numpy(), expected)
    assert item["id"] == "0003" and item["orig_size"].tolist() == [H, W]


@pytest.mark.parametrize("use_depth", [False, True])
def test_dataset_train_transform_shapes(demo_root: Path, use_depth: bool) -> None:
    tf = build_train_transform(input_hw=(72, 96), crop_hw=(64, 80))
    ds = NYUv2Dataset(demo_root, read_ids(demo_root / "train.csv"), transform=tf, use_depth_input=use_depth)
    item = ds[1]
    assert item["image"].shape == (4 if use_depth else 3, 64, 80) and item["image"].dtype == torch.float32
    assert item["depth"].shape == (1, 64, 80) and item["depth"].dtype == torch.float32
    assert item["mask"].shape == (64, 80) and item["mask"].dtype == torch.int64
    assert set(item["mask"].unique().tolist()) <= set(range(13)) | {IGNORE_INDEX}
    assert item["orig_size"].tolist() == [H, W]
    if use_depth:
        assert torch.equal(item["image"][3], torch.from_numpy(inverse_depth(item["depth"][0].numpy())))


def test_test_split_without_labels(demo_root: Path, tmp_path: Path) -> None:
    root = _copy_root(demo_root, tmp_path / "r")
    shutil.rmtree(root / "test" / "label")
    ids = check_dataset(root, "test")
    item = NYUv2Dataset(root, ids, split="test", transform=build_valid_transform((30, 40)), with_labels=False)[0]
    assert "mask" not in item and item["image"].shape == (3, 30, 40) and item["depth"].shape == (1, 30, 40)


def _write_frame(root: Path, frame_id: str, image: np.ndarray, depth_mm: np.ndarray, label: np.ndarray) -> None:
    for kind, arr in (("image", image), ("depth", depth_mm), ("label", label)):
        (root / "train" / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / "train" / kind / f"{frame_id}.png")


@pytest.fixture
def asym_root(tmp_path: Path) -> Path:
    """One 20 x 30 frame whose image, depth and label all differ left to right."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    depth = (1000 + 100 * np.arange(30))[None, :].repeat(20, 0).astype(np.uint16)
    depth[:, 3] = 0  # a missing column
    label = (np.arange(30) % 14)[None, :].repeat(20, 0).astype(np.uint8)
    _write_frame(tmp_path, "0001", image, depth, label)
    return tmp_path


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_hflip_applies_to_image_depth_mask(asym_root: Path, flip: float) -> None:
    plain = NYUv2Dataset(asym_root, ["0001"], use_depth_input=True)[0]
    tf = build_train_transform(input_hw=(20, 30), crop_hw=(20, 30), scale_limit=(0.0, 0.0), hflip_p=flip)
    item = NYUv2Dataset(asym_root, ["0001"], transform=tf, use_depth_input=True)[0]
    for key in ("image", "depth", "mask"):
        expected = torch.flip(plain[key], dims=[-1]) if flip else plain[key]
        assert torch.allclose(item[key].float(), expected.float(), atol=1e-5), key


def test_padding_is_ignored_and_depth_missing(asym_root: Path) -> None:
    tf = build_train_transform(input_hw=(20, 30), crop_hw=(30, 40), scale_limit=(0.0, 0.0), hflip_p=0.0)
    plain = NYUv2Dataset(asym_root, ["0001"])[0]
    item = NYUv2Dataset(asym_root, ["0001"], transform=tf)[0]
    top, left = 5, 5  # PadIfNeeded centres: (30 - 20) // 2, (40 - 30) // 2
    pad = torch.ones(30, 40, dtype=torch.bool)
    pad[top:top + 20, left:left + 30] = False
    assert (item["mask"][pad] == IGNORE_INDEX).all() and (item["depth"][0][pad] == 0).all()
    black = torch.from_numpy(-IMAGENET_MEAN / IMAGENET_STD)
    assert torch.allclose(item["image"][:, pad], black[:, None].expand(3, int(pad.sum())))
    assert torch.equal(item["mask"][~pad].view(20, 30), plain["mask"])
    assert torch.equal(item["depth"][0][~pad].view(20, 30), plain["depth"][0])


def test_valid_transform_resizes_masks_nearest(asym_root: Path) -> None:
    item = NYUv2Dataset(asym_root, ["0001"], transform=build_valid_transform((40, 60)))[0]
    plain = NYUv2Dataset(asym_root, ["0001"])[0]
    assert set(item["mask"].unique().tolist()) <= set(plain["mask"].unique().tolist())
    assert set(item["depth"].unique().tolist()) <= set(plain["depth"].unique().tolist())
    assert "depth" in ADDITIONAL_TARGETS and isinstance(build_valid_transform((4, 4)), A.Compose)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


def test_missing_image_names_file(demo_root: Path, tmp_path: Path) -> None:
    root = _copy_root(demo_root, tmp_path / "r")
    victim = root / "train" / "image" / "0002.png"
    victim.unlink()
    with pytest.raises(DataError, match=str(victim)):
        NYUv2Dataset(root, ["0002"])[0]
    also = root / "train" / "label" / "0005.png"
    also.unlink()
    with pytest.raises(DataError) as err:
        check_dataset(root, "train")
    assert str(victim) in str(err.value) and str(also) in str(err.value) and "converter" in str(err.value)


def test_corrupt_and_truncated_png(demo_root: Path, tmp_path: Path) -> None:
    garbage, truncated = tmp_path / "garbage.png", tmp_path / "truncated.png"
    garbage.write_bytes(b"this is not a png" * 10)
    truncated.write_bytes((demo_root / "train/image/0001.png").read_bytes()[:300])
    for path in (garbage, truncated):
        with pytest.raises(DataError, match=f"{path}.*(corrupt|truncated)"):
            read_image(path)


def test_wrong_modes(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(tmp_path / "depth8.png")
    with pytest.raises(DataError, match=r"depth8\.png.*16-bit"):
        read_depth(tmp_path / "depth8.png")
    with pytest.raises(DataError, match=r"depth8\.png.*RGB"):
        read_image(tmp_path / "depth8.png")
    Image.fromarray(np.full((4, 4), 7, np.uint16)).save(tmp_path / "label16.png")
    with pytest.raises(DataError, match=r"label16\.png.*8-bit"):
        read_label(tmp_path / "label16.png")


def test_label_out_of_range(tmp_path: Path) -> None:
    label = np.zeros((5, 6), np.uint8)
    label[1, 2], label[3, 3] = 20, 13
    Image.fromarray(label).save(tmp_path / "bad.png")
    with pytest.raises(DataError, match=r"bad\.png: label values \[20\] are outside 0\.\.13"):
        read_label(tmp_path / "bad.png")
    assert read_label(tmp_path / "bad.png", num_classes=20)[1, 2] == 20


def test_size_mismatch(asym_root: Path) -> None:
    Image.fromarray(np.zeros((10, 30), np.uint8)).save(asym_root / "train/label/0001.png")
    with pytest.raises(DataError, match="sizes differ"):
        NYUv2Dataset(asym_root, ["0001"])[0]


# ------------------------------------------------------------------------------------------------
# Converter (tiny .mat with the official structure + the real mapping files)
# ------------------------------------------------------------------------------------------------

N_FRAMES, MH, MW = 6, 24, 32


def _write_tiny_mat(path: Path, images: np.ndarray, depths: np.ndarray, labels: np.ndarray,
                    drop: str | None = None) -> None:
    """Natural (N, H, W[, 3]) arrays stored the way MATLAB v7.3 lays them out for h5py."""
    stored = {"images": images.transpose(0, 3, 2, 1), "depths": depths.transpose(0, 2, 1),
              "labels": labels.transpose(0, 2, 1)}
    with h5py.File(path, "w", userblock_size=512) as f:  # v7.3 files carry a 512-byte header
        for key, arr in stored.items():
            if key != drop:
                f.create_dataset(key, data=arr)


@pytest.fixture
def tiny_mat(tmp_path: Path) -> tuple:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N_FRAMES, MH, MW, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 10.0, (N_FRAMES, MH, MW)).astype(np.float32)
    depths[0, 0, 0] = np.nan
    labels = rng.permutation(np.arange(N_FRAMES * MH * MW) % 895).reshape(N_FRAMES, MH, MW).astype(np.uint16)
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    _write_tiny_mat(mat, images, depths, labels)
    splits = tmp_path / "splits.mat"
    scipy.io.savemat(splits, {"trainNdxs": np.array([[1], [3], [4], [6]], np.uint16),
                              "testNdxs": np.array([[2], [5]], np.uint16)})
    return mat, splits, images, depths, labels


def _expected_13(raw: np.ndarray, mapping_dir: Path) -> np.ndarray:
    """Independent mapping: per-pixel loop through the two official tables."""
    map40 = scipy.io.loadmat(mapping_dir / "classMapping40.mat")["mapClass"][0]
    map13 = scipy.io.loadmat(mapping_dir / "class13Mapping.mat")["classMapping13"][0, 0]["labels13"][0]
    table = {0: 0, **{r: int(map13[int(map40[r - 1]) - 1]) for r in range(1, 895)}}
    return np.vectorize(table.__getitem__)(raw).astype(np.uint8)


def test_convert_tiny_mat(tiny_mat, nyuv2_labels13: Path, tmp_path: Path) -> None:
    mat, splits, images, depths, labels = tiny_mat
    out = tmp_path / "out"
    summary = convert_nyuv2_mat(mat, nyuv2_labels13, out, splits_mat=splits)
    assert summary["train"] == ["0001", "0003", "0004", "0006"] and summary["test"] == ["0002", "0005"]
    assert (summary["height"], summary["width"]) == (MH, MW)
    assert read_ids(out / "train.csv") == summary["train"] and check_dataset(out, "test", True) == summary["test"]
    sub = pd.read_csv(out / "sample_submission.csv", dtype=str)
    assert sub["ImageId"].tolist() == ["0002", "0005"] and (sub["EncodedPixels"] == f"1 {MH * MW}").all()
    for split, ids in (("train", summary["train"]), ("test", summary["test"])):
        for frame_id in ids:
            i = int(frame_id) - 1
            np.testing.assert_array_equal(read_image(out / split / "image" / f"{frame_id}.png"), images[i])
            expected_mm = np.round(np.nan_to_num(depths[i].astype(np.float64)) * 1000)
            depth = read_depth(out / split / "depth" / f"{frame_id}.png")
            np.testing.assert_array_equal(np.round(depth * 1000), expected_mm)
            label = read_label(out / split / "label" / f"{frame_id}.png")
            np.testing.assert_array_equal(label, _expected_13(labels[i], nyuv2_labels13))
    assert read_depth(out / "train/depth/0001.png")[0, 0] == 0  # NaN -> missing


def test_mapping_anchor_values(nyuv2_labels13: Path) -> None:
    """Hand-checked chain raw -> 40 -> 13 (raw names from classMapping40.mat:allClassName)."""
    lut = load_label_mapping(nyuv2_labels13)
    assert lut.shape == (895,) and lut[0] == 0 and set(np.unique(lut[1:]).tolist()) == set(range(1, 14))
    anchors = {3: "furniture", 4: "ceiling", 5: "chair", 11: "floor", 1: "objects"}  # 1 'book' -> otherprop
    for raw, name in anchors.items():
        assert NYUV2_CLASSES[lut[raw] - 1] == name, raw


def test_13_class_names_match_mat(nyuv2_labels13: Path) -> None:
    names = scipy.io.loadmat(nyuv2_labels13 / "class13Mapping.mat")["classMapping13"][0, 0]["classNames"][0]
    assert [str(n[0]) for n in names] == NYUV2_CLASSES
    lines = (nyuv2_labels13 / "classes.txt").read_text().split("\n")
    assert [ln.split()[1] for ln in lines if ln.strip()][1:] == NYUV2_CLASSES


@pytest.mark.parametrize("drop", ["labels", "depths"])
def test_convert_missing_key(tiny_mat, nyuv2_labels13: Path, tmp_path: Path, drop: str) -> None:
    mat, splits, images, depths, labels = tiny_mat
    bad = tmp_path / "bad.mat"
    _write_tiny_mat(bad, images, depths, labels, drop=drop)
    with pytest.raises(DataError, match=f"bad.mat: dataset '{drop}' not found"):
        convert_nyuv2_mat(bad, nyuv2_labels13, tmp_path / "o", splits_mat=splits)


def test_convert_wrong_shape(tiny_mat, nyuv2_labels13: Path, tmp_path: Path) -> None:
    mat, splits, images, depths, labels = tiny_mat
    bad = tmp_path / "bad.mat"
    _write_tiny_mat(bad, images, depths[:, :, :-1], labels)
    with pytest.raises(DataError, match="'depths' must have h5py shape"):
        convert_nyuv2_mat(bad, nyuv2_labels13, tmp_path / "o", splits_mat=splits)


def test_real_label_png_in_range(nyuv2_labels13: Path) -> None:
    label = read_label(nyuv2_labels13 / "labels" / "new_nyu_class13_0001.png")
    assert label.shape == (480, 640)
    assert np.unique(label).tolist() == [0, 3, 4, 5, 6, 7, 10, 12]  # README of the shared folder
