"""Official NYU Depth V2 labelled set -> the competition layout of :mod:`.data`.

Input: ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5; Silberman et al., ECCV 2012). MATLAB is
column-major, so h5py sees every array with its axes reversed:

=========== ======================== =================== ==========================================
key         MATLAB size              h5py shape          meaning
=========== ======================== =================== ==========================================
``images``  480 x 640 x 3 x N uint8  (N, 3, 640, 480)    RGB
``depths``  480 x 640 x N single     (N, 640, 480)       inpainted depth, metres
``labels``  480 x 640 x N uint16     (N, 640, 480)       raw class ids 1..894, 0 = unlabelled
=========== ======================== =================== ==========================================

so frame i is ``images[i].transpose(2, 1, 0)`` -> (H, W, 3) and ``depths[i].T`` -> (H, W).

Class mapping (files of ankurhanda/nyuv2-meta-data, in ``/work/shared/data/nyuv2_labels13``):
raw id r (1..894) -> ``classMapping40.mat:mapClass[r-1]`` (1..40) -> ``class13Mapping.mat:
classMapping13.labels13[c-1]`` (1..13); 0 stays 0 (void). Split: ``splits.mat`` ``trainNdxs`` /
``testNdxs`` (1-based frame indices). Ids are the 4-digit 1-based frame index, matching the
published label files ``new_nyu_class13_NNNN.png``.

CLI: ``python -m kagglekit.tasks.segmentation.convert --mat nyu_depth_v2_labeled.mat
--mapping-dir /work/shared/data/nyuv2_labels13 --out input/nyuv2``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io

from kagglekit.demo.nyuv2 import write_png, write_split_csvs
from kagglekit.tasks.segmentation.data import NUM_CLASSES, DataError

N_RAW_CLASSES = 894
N_40_CLASSES = 40


def _loadmat(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: mapping file not found; pass --mapping-dir pointing at the folder "
                        f"with classMapping40.mat, class13Mapping.mat and splits.mat")
    try:
        return scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for non-.mat input
        raise DataError(f"{path}: cannot read as a MATLAB .mat file ({exc}); re-download it") from None


def _mat_key(mat: dict[str, Any], key: str, path: Path) -> np.ndarray:
    if key not in mat:
        found = [k for k in mat if not k.startswith("__")]
        raise DataError(f"{path}: key {key!r} not found (keys: {found}); is this the right file?")
    return mat[key]


def load_label_mapping(mapping_dir: str | Path) -> np.ndarray:
    """Look-up table (895,) uint8: raw NYUv2 class id 0..894 -> 13-class id 0..13 (0 = void)."""
    mapping_dir = Path(mapping_dir)
    path40, path13 = mapping_dir / "classMapping40.mat", mapping_dir / "class13Mapping.mat"
    map40 = np.asarray(_mat_key(_loadmat(path40), "mapClass", path40)).ravel().astype(np.int64)
    struct = _mat_key(_loadmat(path13), "classMapping13", path13)
    if struct.dtype.names is None or "labels13" not in struct.dtype.names:
        raise DataError(f"{path13}: 'classMapping13' has no field 'labels13' (fields: {struct.dtype.names})")
    map13 = np.asarray(struct["labels13"][0, 0]).ravel().astype(np.int64)
    if map40.size != N_RAW_CLASSES or map40.min() < 1 or map40.max() > N_40_CLASSES:
        raise DataError(f"{path40}: 'mapClass' must hold {N_RAW_CLASSES} values in 1..{N_40_CLASSES}, "
                        f"got {map40.size} values in {map40.min()}..{map40.max()}")
    if map13.size != N_40_CLASSES or map13.min() < 1 or map13.max() > NUM_CLASSES:
        raise DataError(f"{path13}: 'classMapping13.labels13' must hold {N_40_CLASSES} values in "
                        f"1..{NUM_CLASSES}, got {map13.size} values in {map13.min()}..{map13.max()}")
    lut = np.zeros(N_RAW_CLASSES + 1, np.uint8)
    lut[1:] = map13[map40 - 1]
    return lut


def load_splits(splits_mat: str | Path, n_frames: int) -> dict[str, np.ndarray]:
    """``{'train': idx, 'test': idx}`` 1-based frame indices (int64, sorted) from splits.mat."""
    splits_mat = Path(splits_mat)
    mat = _loadmat(splits_mat)
    out = {split: np.sort(np.asarray(_mat_key(mat, key, splits_mat)).ravel().astype(np.int64))
           for split, key in (("train", "trainNdxs"), ("test", "testNdxs"))}
    for split, idx in out.items():
        if idx.size and (idx.min() < 1 or idx.max() > n_frames):
            raise DataError(f"{splits_mat}: {split} indices must be 1-based in 1..{n_frames} (frames in "
                            f"the .mat), found {idx.min()}..{idx.max()}; do splits and .mat match?")
    overlap = np.intersect1d(out["train"], out["test"])
    if overlap.size:
        raise DataError(f"{splits_mat}: {overlap.size} frames are in both trainNdxs and testNdxs "
                        f"(e.g. {overlap[:5].tolist()})")
    return out


def _open_datasets(h5: h5py.File, mat_path: Path) -> tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset]:
    """images (N, 3, W, H), depths (N, W, H), labels (N, W, H) after checking keys and shapes."""
    for key in ("images", "depths", "labels"):
        if key not in h5 or not isinstance(h5[key], h5py.Dataset):
            raise DataError(f"{mat_path}: dataset {key!r} not found (top-level keys: {sorted(h5.keys())}); "
                            f"expected the official nyu_depth_v2_labeled.mat")
    images, depths, labels = h5["images"], h5["depths"], h5["labels"]
    if images.ndim != 4 or images.shape[1] != 3:
        raise DataError(f"{mat_path}: 'images' must have h5py shape (N, 3, W, H), got {images.shape}")
    n, _, w, h = images.shape
    for key, ds in (("depths", depths), ("labels", labels)):
        if ds.shape != (n, w, h):
            raise DataError(f"{mat_path}: {key!r} must have h5py shape (N, W, H) = {(n, w, h)} like "
                            f"'images', got {ds.shape}")
    if images.dtype != np.uint8:
        raise DataError(f"{mat_path}: 'images' must be uint8, got {images.dtype}")
    return images, depths, labels


def _frame(images: h5py.Dataset, depths: h5py.Dataset, labels: h5py.Dataset, i: int, lut: np.ndarray,
           mat_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame i (0-based): image (H, W, 3) uint8, depth (H, W) uint16 mm, label (H, W) uint8 0..13."""
    image = np.ascontiguousarray(images[i].transpose(2, 1, 0))
    depth_m = np.nan_to_num(np.asarray(depths[i], dtype=np.float64).T, nan=0.0, posinf=0.0, neginf=0.0)
    depth_mm = np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)
    raw = np.asarray(labels[i]).T.astype(np.int64)
    if raw.min() < 0 or raw.max() > N_RAW_CLASSES:
        raise DataError(f"{mat_path}: 'labels' frame {i + 1} has ids outside 0..{N_RAW_CLASSES} "
                        f"({raw.min()}..{raw.max()}); expected raw NYUv2 class ids")
    return image, depth_mm, lut[raw]


def convert_nyuv2_mat(mat_path: str | Path, mapping_dir: str | Path, out_root: str | Path, *,
                      splits_mat: str | Path | None = None) -> dict[str, Any]:
    """Convert the official labelled NYUv2 .mat to ``out_root`` (layout of :mod:`.data`).

    ``splits_mat`` defaults to ``<mapping_dir>/splits.mat``. Frames in neither split are skipped.
    Returns ``{'out_root', 'n_frames', 'height', 'width', 'train': [ids], 'test': [ids]}``.
    """
    mat_path, out_root = Path(mat_path), Path(out_root)
    lut = load_label_mapping(mapping_dir)
    if not mat_path.is_file():
        raise DataError(f"{mat_path}: not found; download nyu_depth_v2_labeled.mat from the NYU Depth V2 page")
    if not h5py.is_hdf5(mat_path):
        raise DataError(f"{mat_path}: not an HDF5 file (MATLAB v7.3); expected the official "
                        f"nyu_depth_v2_labeled.mat (re-download it if truncated)")
    with h5py.File(mat_path, "r") as h5:
        images, depths, labels = _open_datasets(h5, mat_path)
        n, _, width, height = images.shape
        splits = load_splits(Path(splits_mat) if splits_mat else Path(mapping_dir) / "splits.mat", n)
        ids: dict[str, list[str]] = {}
        for split, idx in splits.items():
            ids[split] = [f"{k:04d}" for k in idx]
            for k, frame_id in zip(idx, ids[split]):
                image, depth_mm, label = _frame(images, depths, labels, int(k) - 1, lut, mat_path)
                for kind, array in (("image", image), ("depth", depth_mm), ("label", label)):
                    write_png(out_root / split / kind / f"{frame_id}.png", array)
    write_split_csvs(out_root, ids["train"], ids["test"], height, width)
    return {"out_root": str(out_root), "n_frames": int(n), "height": int(height), "width": int(width),
            "train": ids["train"], "test": ids["test"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert nyu_depth_v2_labeled.mat to the kagglekit layout.")
    parser.add_argument("--mat", type=Path, required=True, help="nyu_depth_v2_labeled.mat (v7.3 / HDF5)")
    parser.add_argument("--mapping-dir", type=Path, required=True,
                        help="folder with classMapping40.mat, class13Mapping.mat, splits.mat")
    parser.add_argument("--splits", type=Path, default=None, help="splits.mat (default: in --mapping-dir)")
    parser.add_argument("--out", type=Path, required=True, help="output root, e.g. input/nyuv2")
    args = parser.parse_args(argv)
    summary = convert_nyuv2_mat(args.mat, args.mapping_dir, args.out, splits_mat=args.splits)
    print(f"wrote {len(summary['train'])} train + {len(summary['test'])} test frames "
          f"({summary['height']}x{summary['width']}) to {summary['out_root']}")


if __name__ == "__main__":
    main()
