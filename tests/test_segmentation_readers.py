"""Segmentation readers and dataset items after the OpenCV decode path: pixel-equal to the PIL
readers they replaced (each format, the shared real files), one-line errors naming a bad file,
and items equal to those of the old ``__getitem__`` (frozen below as ``_old_item``).

What is expected of JPEGs: exact equality with PIL. Both wheels here bundle libjpeg-turbo (PIL's
and OpenCV's) with the default islow IDCT and fancy upsampling, and all 497 shared JPEGs decode to
the same bytes; a build whose decoder differs by ±1 fails these tests on purpose (then route
JPEGs to PIL again or accept the difference explicitly).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from kagglekit.demo.nyuv2 import generate_nyuv2
from kagglekit.formats.images import (
    OPENCV_RGB_KEYS, OPENCV_SINGLE_KEYS, FormatError, header_key, read_mask, read_mask_ids, read_rgb)
from kagglekit.paths import shared_data
from kagglekit.tasks.segmentation import data as D
from kagglekit.tasks.segmentation.classes import ClassTable, class_table
from kagglekit.tasks.segmentation.source import SplitFiles

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (23, 31, 3), dtype=np.uint8)
SMOOTH = cv2.GaussianBlur(RGB, (7, 7), 3)  # JPEG-friendly content
GREY = SMOOTH[..., 1].copy()
IDS = RNG.integers(0, 14, (23, 31), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------
# The old (PIL) readers, frozen: what every reader must still return
# ------------------------------------------------------------------------------------------------


def _old_rgb(path: Path) -> np.ndarray:
    img = Image.open(path)
    img.load()
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = (np.asarray(img, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _old_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int64)


def _save(path: Path, array: np.ndarray, mode: str | None = None, **kwargs) -> Path:
    Image.fromarray(array, mode).save(path, **kwargs) if mode else Image.fromarray(array).save(path, **kwargs)
    return path


def _palette(path: Path, ids: np.ndarray) -> Path:
    pal = Image.fromarray(ids, mode="P")
    pal.putpalette([v for k in range(256) for v in ((k * 37) % 256, 255 - k, 7)])
    pal.save(path)
    return path


def _rgb_files(d: Path) -> dict[str, tuple[Path, bool]]:
    """name -> (file, decoded by OpenCV?) for every image type competitions ship."""
    exif = Image.fromarray(SMOOTH).getexif()
    exif[0x0112] = 6  # orientation "rotate 90": PIL ignores it, so must the reader
    cv2.imwrite(str(d / "rgb16.png"), RNG.integers(0, 65536, (23, 31, 3), dtype=np.uint16))
    cv2.imwrite(str(d / "rgba16.png"), RNG.integers(0, 65536, (23, 31, 4), dtype=np.uint16))
    Image.fromarray(SMOOTH).convert("CMYK").save(d / "cmyk.jpg", quality=90)
    files = {
        "rgb.png": (_save(d / "rgb.png", RGB), True),
        "rgb16.png": (d / "rgb16.png", True),
        "rgba.png": (_save(d / "rgba.png", np.dstack([RGB, IDS * 9])), True),
        "rgba16.png": (d / "rgba16.png", True),
        "la.png": (_save(d / "la.png", np.dstack([GREY, IDS]), "LA"), True),
        "grey.png": (_save(d / "grey.png", GREY), True),
        "grey16.png": (_save(d / "grey16.png", RNG.integers(0, 65536, (23, 31)).astype(np.uint16)), True),
        "palette.png": (_palette(d / "palette.png", IDS), False),
        "bit1.png": (_save(d / "bit1.png", GREY > 128), False),
        "rgb.jpg": (_save(d / "rgb.jpg", SMOOTH, quality=90), True),
        "rgb444.jpg": (_save(d / "rgb444.jpg", SMOOTH, quality=75, subsampling=0), True),
        "progressive.jpg": (_save(d / "progressive.jpg", SMOOTH, quality=85, progressive=True), True),
        "grey.jpg": (_save(d / "grey.jpg", GREY, quality=90), True),
        "exif6.jpg": (_save(d / "exif6.jpg", SMOOTH, quality=90, exif=exif), True),
        "cmyk.jpg": (d / "cmyk.jpg", False),
        "rgb.tif": (_save(d / "rgb.tif", RGB), False),
        "rgb_lzw.tif": (_save(d / "rgb_lzw.tif", RGB, compression="tiff_lzw"), False),
        "grey16.tif": (_save(d / "grey16.tif", RNG.integers(0, 65536, (23, 31)).astype(np.uint16)), False),
        "rgb.bmp": (_save(d / "rgb.bmp", RGB), False),
        "rgb.webp": (_save(d / "rgb.webp", SMOOTH, quality=80), False),
        "lossless.webp": (_save(d / "lossless.webp", RGB, lossless=True), False),
    }
    return files


@pytest.fixture(scope="module")
def rgb_files(tmp_path_factory) -> dict[str, tuple[Path, bool]]:
    return _rgb_files(tmp_path_factory.mktemp("rgb"))


@pytest.mark.parametrize("name", ["rgb.png", "rgb16.png", "rgba.png", "rgba16.png", "la.png", "grey.png", "grey16.png",
                                  "palette.png", "bit1.png", "rgb.jpg", "rgb444.jpg", "progressive.jpg", "grey.jpg",
                                  "exif6.jpg", "cmyk.jpg", "rgb.tif", "rgb_lzw.tif", "grey16.tif", "rgb.bmp",
                                  "rgb.webp", "lossless.webp"])
def test_read_rgb_equals_pil(rgb_files, name: str) -> None:
    path, opencv = rgb_files[name]
    assert (header_key(path.read_bytes()) in OPENCV_RGB_KEYS) == opencv  # the route this file takes
    out, expected = read_rgb(path), _old_rgb(path)
    assert out.dtype == np.uint8 and out.shape == expected.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


def _mask_files(d: Path) -> dict[str, tuple[Path, bool]]:
    grey_trns = d / "grey_trns.png"  # a tRNS chunk: OpenCV would add an alpha channel, PIL does not
    Image.fromarray(IDS).save(grey_trns, transparency=3)
    return {
        "ids.png": (_save(d / "ids.png", IDS), True),
        "ids16.png": (_save(d / "ids16.png", IDS.astype(np.uint16) * 300), True),
        "palette.png": (_palette(d / "palette.png", IDS), False),  # indices, not colours
        "bit1.png": (_save(d / "bit1.png", IDS > 6), False),
        "grey_trns.png": (grey_trns, True),
        "ids.tif": (_save(d / "ids.tif", IDS), False),
        "ids16.tif": (_save(d / "ids16.tif", IDS.astype(np.uint16) * 300), False),
    }


@pytest.mark.parametrize("name", ["ids.png", "ids16.png", "palette.png", "bit1.png", "grey_trns.png", "ids.tif",
                                  "ids16.tif"])
def test_read_mask_equals_pil(tmp_path: Path, name: str) -> None:
    path, opencv = _mask_files(tmp_path)[name]
    assert (header_key(path.read_bytes()) in OPENCV_SINGLE_KEYS) == opencv
    expected = _old_mask(path)
    ids = read_mask_ids(path)
    assert ids.ndim == 2 and np.issubdtype(ids.dtype, np.integer) and ids.flags.writeable
    np.testing.assert_array_equal(ids.astype(np.int64), expected)
    out = read_mask(path)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, expected)
    if name == "palette.png":
        np.testing.assert_array_equal(out, IDS)


def test_colour_masks_still_refused(tmp_path: Path) -> None:
    for name, array in (("rgb.png", RGB), ("la.png", np.dstack([IDS, IDS]))):
        path = _save(tmp_path / name, array, "LA" if name == "la.png" else None)
        with pytest.raises(FormatError, match=rf"{name}: mask has PIL mode '(RGB|LA)'; expected a single-channel"):
            read_mask(path)


# ------------------------------------------------------------------------------------------------
# The seed layout's strict readers
# ------------------------------------------------------------------------------------------------


def test_nyuv2_readers_equal_pil(rgb_files, tmp_path: Path) -> None:
    assert D._RGB_KEYS <= OPENCV_RGB_KEYS and D._DEPTH_KEYS | D._LABEL_KEYS <= OPENCV_SINGLE_KEYS
    for name in ("rgb.png", "rgb16.png", "rgb.jpg"):  # PIL mode RGB: accepted
        np.testing.assert_array_equal(D.read_image(rgb_files[name][0]), _old_rgb(rgb_files[name][0]))
    depth_mm = RNG.integers(0, 65536, (23, 31)).astype(np.uint16)
    depth_mm[0, :4] = 0
    for name in ("depth.png", "depth.tif"):
        path = _save(tmp_path / name, depth_mm)
        old = np.asarray(Image.open(path)).astype(np.float32) / 1000.0
        depth = D.read_depth(path)
        assert depth.dtype == np.float32 and np.array_equal(depth.view(np.uint32), old.view(np.uint32))  # same bits
    for path in (_save(tmp_path / "label.png", IDS), _palette(tmp_path / "label_p.png", IDS)):
        label = D.read_label(path)
        assert label.dtype == np.uint8 and np.array_equal(label, IDS)


@pytest.mark.parametrize("name", ["palette.png", "rgba.png", "grey.png", "grey.jpg", "cmyk.jpg"])
def test_nyuv2_image_mode_still_refused(rgb_files, name: str) -> None:
    """OpenCV would expand a palette / greyscale file to RGB; the header routes it to PIL's check."""
    with pytest.raises(D.DataError, match=rf"{name}: image must be 8-bit RGB, got PIL mode"):
        D.read_image(rgb_files[name][0])


def test_shared_real_files_decode_like_pil() -> None:
    """Every real JPEG of the shared data (coco128, car_doors, coco_keypoints_sample) and every
    nyuv2_labels13 label PNG: the readers give PIL's pixels."""
    root = shared_data("")
    jpegs = sorted(root.glob("*/**/*.jpg"))
    labels = sorted((root / "nyuv2_labels13" / "labels").glob("*.png"))
    if not jpegs or not labels:
        pytest.skip(f"shared data under {root} not found (set KAGGLEKIT_SHARED to the shared folder)")
    for path in jpegs:
        np.testing.assert_array_equal(read_rgb(path), _old_rgb(path), err_msg=str(path))
    for path in labels:
        np.testing.assert_array_equal(D.read_label(path), np.asarray(Image.open(path)), err_msg=str(path))
    assert len(jpegs) >= 400 and len(labels) == 654


# ------------------------------------------------------------------------------------------------
# Bad files: one line naming the file
# ------------------------------------------------------------------------------------------------


def _bad_files(d: Path, good_png: Path, good_jpg: Path) -> dict[str, Path]:
    png, jpg = good_png.read_bytes(), good_jpg.read_bytes()
    files = {"garbage.png": b"this is not a png" * 10, "header_only.png": b"\x89PNG\r\n\x1a\n" + b"not really an image",
             "truncated.png": png[: len(png) // 2], "truncated.jpg": jpg[: len(jpg) // 2],
             "corrupt_idat.png": png[:60] + bytes(b ^ 0x5A for b in png[60:-12]) + png[-12:], "empty.png": b""}
    for name, data in files.items():
        (d / name).write_bytes(data)
    return {name: d / name for name in files} | {"missing.png": d / "missing.png"}


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    img = np.add.outer(np.arange(120), np.arange(160)).astype(np.uint8)  # big enough to cut
    good_png = _save(tmp_path / "good.png", np.dstack([img, img[::-1], img]))
    good_jpg = _save(tmp_path / "good.jpg", np.dstack([img] * 3), quality=90)
    return _bad_files(tmp_path, good_png, good_jpg)


READERS = {"read_rgb": read_rgb, "read_mask": read_mask, "read_image": D.read_image, "read_depth": D.read_depth,
           "read_label": D.read_label}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_bad_file_is_one_line_naming_it(bad_files: dict[str, Path], reader: str) -> None:
    for name, path in bad_files.items():
        with pytest.raises(FormatError) as err:
            READERS[reader](path)
        message = str(err.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, (reader, name, message)
        assert ("not found" in message) == (name == "missing.png"), message
        if reader in ("read_image", "read_depth", "read_label"):  # the seed layout's wording
            assert isinstance(err.value, D.DataError) and "regenerate it" in message
            assert name == "missing.png" or "corrupt or truncated" in message


def test_png_without_iend_reads_as_pil_did(tmp_path: Path) -> None:
    """OpenCV refuses a PNG cut just before its IEND chunk; PIL read it, so the readers still do."""
    full = _save(tmp_path / "full.png", RGB).read_bytes()
    (tmp_path / "no_iend.png").write_bytes(full[:-12])
    np.testing.assert_array_equal(read_rgb(tmp_path / "no_iend.png"), RGB)
    np.testing.assert_array_equal(D.read_image(tmp_path / "no_iend.png"), RGB)


# ------------------------------------------------------------------------------------------------
# Dataset items equal the old __getitem__'s
# ------------------------------------------------------------------------------------------------


def _old_apply_transform(transform, image, depth_m, label):
    if transform is None:
        return image, depth_m, label
    depth_in = depth_m if depth_m is not None else np.zeros(image.shape[:2], np.float32)
    kwargs = {"image": image, "depth": -depth_in}
    if label is not None:
        kwargs["mask"] = label
    out = transform(**kwargs)
    depth = -np.asarray(out["depth"], dtype=np.float32)
    depth[depth < 0] = 0.0
    return out["image"], (depth if depth_m is not None else None), (out["mask"] if label is not None else None)


def _old_inverse_depth(depth_m: np.ndarray) -> np.ndarray:
    depth_m = np.asarray(depth_m, dtype=np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(depth_m > 0, D.NEAR_DEPTH_M / depth_m, 0.0)
    return np.clip(inv, 0.0, 1.0).astype(np.float32)


def _old_item(ds: D.SegmentationDataset, index: int) -> dict:
    """The pre-OpenCV ``SegmentationDataset.__getitem__``: PIL readers, ``table.to_target``,
    float HWC normalisation, concatenate."""
    frame_id, files = ds.ids[index], ds.files
    image = _old_rgb(files.images[frame_id])
    depth = None
    if files.depth is not None:
        depth = np.asarray(Image.open(files.depth[frame_id])).astype(np.float32) / 1000.0
    target = ds.table.to_target(_old_mask(files.masks[frame_id])) if ds.with_labels else None
    orig_size = torch.tensor(image.shape[:2], dtype=torch.int64)
    image, depth, target = _old_apply_transform(ds.transform, image, depth, target)
    rgb = (image.astype(np.float32) / 255.0 - D.IMAGENET_MEAN) / D.IMAGENET_STD
    channels = [rgb.transpose(2, 0, 1)] + ([_old_inverse_depth(depth)[None]] if ds.use_depth_input else [])
    item = {"image": torch.from_numpy(np.ascontiguousarray(np.concatenate(channels, 0))), "id": frame_id,
            "orig_size": orig_size}
    if depth is not None:
        item["depth"] = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)[None])
    if target is not None:
        item["mask"] = torch.from_numpy(np.asarray(target).astype(np.int64))
    return item


def _assert_same_item(ds: D.SegmentationDataset, index: int, seed: int) -> None:
    if ds.transform is not None:
        ds.transform.set_random_seed(seed)
    new = ds[index]
    if ds.transform is not None:
        ds.transform.set_random_seed(seed)
    old = _old_item(ds, index)
    assert new.keys() == old.keys() and new["id"] == old["id"] and torch.equal(new["orig_size"], old["orig_size"])
    for key in ("image", "depth", "mask"):
        if key in old:
            assert new[key].dtype == old[key].dtype and new[key].is_contiguous(), key
            assert torch.equal(new[key], old[key]), key  # the same bits, images included (table look-up)


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory) -> Path:
    return generate_nyuv2(tmp_path_factory.mktemp("nyu") / "nyuv2", n_train=4, n_test=0, height=48, width=64)


@pytest.mark.parametrize("use_depth", [False, True])
@pytest.mark.parametrize("transform", ["none", "valid", "train", "train_pad"])
def test_nyuv2_item_equals_old_getitem(nyu_root: Path, use_depth: bool, transform: str) -> None:
    tf = {"none": None, "valid": D.build_valid_transform((36, 52)),
          "train": D.build_train_transform((72, 96), (56, 80)),
          "train_pad": D.build_train_transform((48, 64), (64, 80))}[transform]  # crops larger than the image: padding
    ds = D.NYUv2Dataset(nyu_root, D.read_ids(nyu_root / "train.csv"), transform=tf, use_depth_input=use_depth)
    for index in range(len(ds)):
        _assert_same_item(ds, index, seed=index)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, nyu_root: Path) -> tuple[SplitFiles, ClassTable]:
    """The demo frames as a generic layout: JPEG images, palette masks of sparse competition ids
    (0 and 255 void), 16-bit depth; one uint16 mask."""
    root = tmp_path_factory.mktemp("folders")
    ids = D.read_ids(nyu_root / "train.csv")
    comp_ids = np.array([0, 3, 7, 11, 20, 31, 40, 52, 60, 71, 80, 99, 150, 200], np.uint8)
    images, masks, depth = {}, {}, {}
    for k, i in enumerate(ids):
        images[i] = root / f"{i}.jpg"
        Image.open(nyu_root / "train/image" / f"{i}.png").save(images[i], quality=90)
        label = comp_ids[np.asarray(Image.open(nyu_root / "train/label" / f"{i}.png"))]
        label[:2] = 255
        path = root / f"{i}_mask.png"
        masks[i] = _palette(path, label) if k else _save(path, label.astype(np.uint16))  # frame 0: 16-bit ids
        depth[i] = nyu_root / "train/depth" / f"{i}.png"
    table = class_table(13, class_ids=comp_ids[1:].tolist(), ignore_ids=(0, 255))
    return SplitFiles("train", tuple(ids), images, masks, depth), table


@pytest.mark.parametrize("use_depth", [False, True])
def test_generic_item_equals_old_getitem(folders, use_depth: bool) -> None:
    files, table = folders
    ds = D.SegmentationDataset(files, table, D.build_train_transform((72, 96), (56, 80)), use_depth)
    for index in range(len(ds)):
        _assert_same_item(ds, index, seed=10 + index)


def test_model_input_and_inverse_depth_same_bits() -> None:
    image = RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    depth = RNG.uniform(0, 6, (9, 13)).astype(np.float32)
    depth[0, :5] = [0.0, 0.2, 0.5, np.inf, 0.0]
    rgb = (image.astype(np.float32) / 255.0 - D.IMAGENET_MEAN) / D.IMAGENET_STD
    old = np.concatenate([rgb.transpose(2, 0, 1), _old_inverse_depth(depth)[None]])
    for x in (image, image[:, ::-1][:, ::-1], image.astype(np.float64)):  # uint8 (table), a view, float (arithmetic)
        out = D.model_input(x, depth)
        assert out.shape == (4, 9, 13) and out.dtype == np.float32 and out.flags.c_contiguous
        assert np.array_equal(out, old)
    assert np.array_equal(D.model_input(image), old[:3])
    assert np.array_equal(D.inverse_depth(depth), _old_inverse_depth(depth))


# ------------------------------------------------------------------------------------------------
# A file that turns bad after the pre-flight
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["image", "depth", "label"])
def test_file_corrupted_after_preflight_is_one_line(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "r"
    generate_nyuv2(root, n_train=2, n_test=0, height=24, width=32)
    ds = D.NYUv2Dataset(root, ["0001", "0002"], transform=D.build_train_transform((24, 32), (16, 24)))
    assert D.preflight_split(root, "train") == []
    victim = root / "train" / kind / "0002.png"
    victim.write_bytes(victim.read_bytes()[:100])
    ds[0]
    with pytest.raises(D.DataError) as err:
        ds[1]
    message = str(err.value)
    assert message.startswith(f"{victim}: cannot decode {kind} PNG") and "\n" not in message


def test_mask_id_outside_the_table_is_one_line(folders, tmp_path: Path) -> None:
    files, table = folders
    bad = tmp_path / "bad_mask.png"
    label = np.asarray(Image.open(files.masks[files.ids[1]])).copy()
    label[3, 3] = 17  # not a competition id of the table
    _save(bad, label)
    ds = D.SegmentationDataset(SplitFiles("train", files.ids, files.images, {**files.masks, files.ids[1]: bad}), table)
    with pytest.raises(FormatError, match=rf"^{bad}: mask values \[17\] are not in the class table"):
        ds[1]
    assert set(ds[0]["mask"].unique().tolist()) <= set(range(13)) | {D.IGNORE_INDEX}


def test_dataset_pickles(nyu_root: Path) -> None:
    """DataLoader workers started with spawn receive the dataset pickled (readers included)."""
    ds = D.NYUv2Dataset(nyu_root, ["0001"], transform=D.build_valid_transform((24, 32)), num_classes=20)
    again = pickle.loads(pickle.dumps(ds))
    assert torch.equal(again[0]["mask"], ds[0]["mask"])
