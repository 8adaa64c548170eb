"""Benchmark: kagglekit confusion matrix / mIoU vs plain baselines on the 654 real NYUv2 label maps.

Run: ``.venv/bin/python bench/bench_miou.py [--images-argmax 200] [--threads N]``.

1. ``confusion_matrix`` on (654, 480, 640) uint8 labels (14 ids, 0..13) with three kinds of
   perturbed predictions (see :func:`predictions`) vs
   ``np.bincount((C * target.astype(int64) + pred).ravel(), minlength=C*C)``, same run, best of 3.
2. ``argmax_confusion_uint8`` on quantised uint8 probabilities (N, 13, 240, 320) vs
   ``torch.argmax`` on the NCHW float32 tensor (conversion not timed) + int64 bincount confusion.
Both checks assert equality with the baseline before printing the speed-up.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from kagglekit.metrics.segmentation import argmax_confusion_uint8, confusion_matrix
from kagglekit.paths import shared_data


def best_of(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """(best wall time in seconds, last result)."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def load_labels(root: Path) -> np.ndarray:
    """(654, 480, 640) uint8 label maps, sorted by file name."""
    files = sorted((root / "labels").glob("new_nyu_class13_*.png"))
    if not files:
        sys.exit(f"no label PNGs under {root / 'labels'}; set KAGGLEKIT_SHARED to the shared folder")
    return np.stack([np.asarray(Image.open(f)) for f in files])


def swap_classes(labels: np.ndarray, num_ids: int) -> np.ndarray:
    """Shift by a few pixels and swap chair <-> furniture (a plausible systematic error)."""
    swap = np.arange(num_ids, dtype=np.uint8)
    swap[[4, 6]] = swap[[6, 4]]
    return swap[np.roll(labels, shift=(3, -5), axis=(1, 2))]


def predictions(labels: np.ndarray, rng: np.random.Generator, num_ids: int) -> dict[str, np.ndarray]:
    """Three prediction styles for the same labels.

    - ``noisy``: shift + class swap + 5% of pixels flipped to a random id (salt and pepper);
    - ``blobs``: shift + class swap + 30 random rectangles per image painted with a random id
      (spatially coherent errors, like a real model's);
    - ``random``: uniform random ids (worst case for the run-length path).
    """
    base = swap_classes(labels, num_ids)
    noisy = base.copy()
    flip = rng.random(labels.shape, dtype=np.float32) < 0.05
    noisy[flip] = rng.integers(0, num_ids, int(flip.sum()), dtype=np.uint8)
    blobs = base
    _, h, w = labels.shape
    for img in blobs:
        for y, x, dy, dx, c in zip(rng.integers(0, h, 30), rng.integers(0, w, 30), rng.integers(5, 80, 30),
                                   rng.integers(5, 80, 30), rng.integers(0, num_ids, 30)):
            img[y : y + dy, x : x + dx] = c
    rand = rng.integers(0, num_ids, labels.shape, dtype=np.uint8)
    return {"noisy": noisy, "blobs": blobs, "random": rand}


def bench_confusion(labels: np.ndarray, pred: np.ndarray, kind: str, threads: int | None) -> None:
    c = 14  # ids 0..13 (void kept as a class so the baseline needs no masking)
    t_base, ref = best_of(lambda: np.bincount((c * labels.astype(np.int64) + pred).ravel(), minlength=c * c))
    t_lib, cm = best_of(lambda: confusion_matrix(pred, labels, c, num_threads=threads))
    assert np.array_equal(cm, ref.reshape(c, c)), "confusion_matrix != bincount baseline"
    t_1, cm1 = best_of(lambda: confusion_matrix(pred, labels, c, num_threads=1))
    assert np.array_equal(cm1, cm)
    name = "miou_vs_bincount" if kind == "noisy" else f"miou_vs_bincount_{kind}"
    print(f"[{kind}] pixels={labels.size:,} baseline_int64_bincount={t_base:.3f}s library={t_lib:.3f}s "
          f"library_1thread={t_1:.3f}s")
    print(f"{name}: speedup={t_base / t_lib:.1f}x (goal >= 6x); single-thread {t_base / t_1:.1f}x")
    if kind == "noisy":
        t_ign, cm_ign = best_of(lambda: confusion_matrix(pred, labels, c, ignore_index=0, num_threads=threads))
        expected = ref.reshape(c, c).copy()
        expected[0] = 0
        assert np.array_equal(cm_ign, expected)
        print(f"[{kind}] with ignore_index=0: library={t_ign:.3f}s")


def make_probs(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 13, 240, 320) uint8 noisy probabilities peaked at the (void -> random) 2x-downsampled label."""
    small = labels[:, ::2, ::2].astype(np.int64) - 1  # classes 1..13 -> 0..12, void -> -1
    small[small < 0] = rng.integers(0, 13, int((small < 0).sum()))
    probs = rng.integers(0, 120, (labels.shape[0], 13) + small.shape[1:], dtype=np.uint8)
    n, h, w = np.indices(small.shape, sparse=True)
    probs[n, small, h, w] += 100  # noise can still overturn the label: realistic errors and ties
    return probs


def bench_argmax(labels: np.ndarray, n_images: int, threads: int | None, rng: np.random.Generator) -> None:
    probs = make_probs(labels[:n_images], rng)
    target = labels[:n_images, ::2, ::2]  # (N, 240, 320), 0 = void -> ignore
    c = probs.shape[1]
    tgt = target.astype(np.int64) - 1  # 13 classes, void -> -1 = ignore
    probs_f = torch.from_numpy(probs).float().div_(255.0)  # NCHW float32, not timed

    def baseline() -> np.ndarray:
        pred = torch.argmax(probs_f, dim=1).numpy()
        keep = tgt != -1
        return np.bincount(c * tgt[keep] + pred[keep], minlength=c * c).reshape(c, c)

    t_base, ref = best_of(baseline)
    t_lib, cm = best_of(lambda: argmax_confusion_uint8(probs, tgt.astype(np.int16), c, ignore_index=-1,
                                                      num_threads=threads))
    assert np.array_equal(cm, ref), "argmax_confusion_uint8 != torch.argmax + bincount"
    t_u8, cm_u8 = best_of(lambda: argmax_confusion_uint8(probs, target - np.uint8(1), c, ignore_index=255,
                                                        num_threads=threads))
    assert np.array_equal(cm_u8, ref)
    print(f"probs={probs.shape} baseline_torch_argmax_float={t_base:.3f}s library={t_lib:.3f}s "
          f"library_uint8_target={t_u8:.3f}s (torch threads={torch.get_num_threads()})")
    print(f"argmax_confusion_vs_torch: speedup={t_base / t_u8:.1f}x (goal >= 5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-argmax", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="library threads (default min(4, cpus))")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    labels = load_labels(shared_data("nyuv2_labels13"))
    for kind, pred in predictions(labels, rng, 14).items():
        bench_confusion(labels, pred, kind, args.threads)
    bench_argmax(labels, args.images_argmax, args.threads, rng)


if __name__ == "__main__":
    main()
