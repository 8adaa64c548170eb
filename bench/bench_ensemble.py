"""Benchmark of the ensemble objective (kagglekit.ensemble.search.blend_argmax_confusion).

1. Speed: one objective evaluation, 3 members x 654 images x 13 classes at 240x320 uint8,
   stored as .npy and opened with ``mmap_mode='r'`` like the OOF store; library vs a naive
   torch float32 version (dequantise all images at once, weighted sum, argmax, bincount).
   Each runs in its own child process so that its peak RSS can be reported.
2. Memory: a 4-member blend over 1449 images at 240x320 (~1.45 GB per member on disk) in a
   child process; its peak RSS (VmHWM) must stay under 20 GiB.

Files are written chunk by chunk (never a whole member in RAM) and deleted afterwards.
Usage: ``python bench/bench_ensemble.py [--workdir DIR] [--skip-memory]``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

C, H, W, IGNORE = 13, 240, 320, 255
GIB = 1024**3


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def _write_npy_chunked(path: Path, shape: tuple[int, ...], make_chunk, chunk: int = 16) -> None:
    """Write a uint8 .npy of ``shape`` with plain file writes, ``chunk`` rows at a time."""
    with open(path, "wb") as f:
        header = {"descr": "|u1", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        for s in range(0, shape[0], chunk):
            f.write(np.ascontiguousarray(make_chunk(s, min(shape[0], s + chunk)), np.uint8))


def _label_chunk(seed: int):
    """Block labels (n, H, W) in 16x16 blocks with ~5% ignore pixels."""
    def make(s: int, e: int) -> np.ndarray:
        rng = np.random.default_rng([seed, s])
        lab = np.repeat(np.repeat(rng.integers(0, C, (e - s, H // 16, W // 16)), 16, 1), 16, 2)
        lab[rng.random(lab.shape) < 0.05] = IGNORE
        return lab.astype(np.uint8)
    return make


def _member_chunk(seed: int, labels_make, noise: int, realistic: bool):
    """Quantised 'probabilities' (n, C, H, W): noise + a bump on the true class.

    ``realistic=False`` reuses one random block per chunk position modulo 8 (cheap; content
    does not matter for the memory measurement).
    """
    cache: dict[int, np.ndarray] = {}

    def make(s: int, e: int) -> np.ndarray:
        key = s if realistic else (s // 16) % 8
        if key in cache:
            return cache[key][: e - s]
        rng = np.random.default_rng([seed, key])
        q = rng.integers(0, noise, (e - s, C, H, W), dtype=np.uint8)
        lab = labels_make(s, e)
        hit = rng.random(lab.shape) < 0.7
        for c in range(C):
            q[:, c][(lab == c) & hit] += np.uint8(255 - noise)
        if not realistic:
            cache[key] = q
        return q
    return make


def write_problem(d: Path, n_members: int, n: int, realistic: bool) -> list[Path]:
    """labels.npy + m{i}.npy in ``d``; returns the member paths."""
    lab_make = _label_chunk(0)
    _write_npy_chunked(d / "labels.npy", (n, H, W), lab_make)
    paths = []
    for i in range(n_members):
        p = d / f"m{i}.npy"
        _write_npy_chunked(p, (n, C, H, W), _member_chunk(i + 1, lab_make, 40 + 20 * i, realistic))
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------------
# child-process measurements
# ---------------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM, RssAnon, RssFile)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class _AnonPeak:
    """Samples RssAnon every 10 ms in a thread (VmHWM also counts mapped file pages)."""

    def __init__(self) -> None:
        self.peak, self._stop = 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kib("RssAnon"))
            time.sleep(0.01)

    def __enter__(self) -> "_AnonPeak":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _status_kib("RssAnon"))


def naive_torch_confusion(members, weights, labels) -> np.ndarray:
    """Naive reference: all images at once in torch float32, argmax, bincount."""
    import torch

    acc = None
    for m, w in zip(members, weights):
        p = torch.from_numpy(np.array(m)).float().div_(255.0)  # whole member dequantised
        acc = p.mul_(float(w)) if acc is None else acc.add_(p, alpha=float(w))
    pred = acc.argmax(dim=1)
    lab = torch.from_numpy(np.array(labels)).long()
    valid = lab != IGNORE
    return torch.bincount(lab[valid] * C + pred[valid], minlength=C * C).reshape(C, C).numpy()


def child(kind: str, d: Path, n_members: int, chunk: int) -> dict:
    """Run one evaluation in this (child) process; return timing and memory numbers."""
    from kagglekit.ensemble.search import blend_argmax_confusion

    members = [np.load(d / f"m{i}.npy", mmap_mode="r") for i in range(n_members)]
    labels = np.load(d / "labels.npy", mmap_mode="r")
    weights = np.random.default_rng(0).dirichlet(np.ones(n_members))
    if kind == "naive":
        import torch  # noqa: F401  (import before the baseline so it is not counted as extra)
    base = _status_kib("VmRSS")
    with _AnonPeak() as anon:
        t0 = time.perf_counter()
        if kind == "naive":
            cm = naive_torch_confusion(members, weights, labels)
        else:
            cm = blend_argmax_confusion(members, weights, labels, C, IGNORE, chunk=chunk)
        sec = time.perf_counter() - t0
    return {
        "seconds": sec, "base_kib": base, "hwm_kib": _status_kib("VmHWM"),
        "anon_peak_kib": anon.peak, "cm": np.asarray(cm).tolist(),
    }


def run_child(kind: str, d: Path, n_members: int, chunk: int = 16) -> dict:
    """Run :func:`child` in a fresh interpreter and parse its JSON line."""
    cmd = [sys.executable, __file__, "--child", kind, "--dir", str(d),
           "--members", str(n_members), "--chunk", str(chunk)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# benchmarks
# ---------------------------------------------------------------------------------------------
def bench_speed(root: Path) -> None:
    """Library vs naive torch on 3 x 654 images, same data, same run."""
    d = root / "speed"
    d.mkdir()
    t0 = time.perf_counter()
    write_problem(d, 3, 654, realistic=True)
    print(f"# wrote 3 x 654 x {C} x {H} x {W} uint8 in {time.perf_counter() - t0:.1f}s")
    lib = run_child("lib", d, 3)
    naive = run_child("naive", d, 3)
    lib2 = run_child("lib", d, 3)  # second run: page cache equally warm as for naive
    lib_s = max(lib["seconds"], lib2["seconds"])  # conservative: the slower library run
    cm_l, cm_n = np.array(lib["cm"]), np.array(naive["cm"])
    diff = np.abs(cm_l - cm_n).sum() / 2 / cm_l.sum()
    extra = (naive["hwm_kib"] - naive["base_kib"]) / 2**20
    lib_extra = (lib2["hwm_kib"] - lib2["base_kib"]) / 2**20
    print(f"# library: {lib['seconds']:.2f}s / {lib2['seconds']:.2f}s, naive torch: "
          f"{naive['seconds']:.2f}s; confusion disagreement {diff:.2e} of pixels (tie/rounding)")
    print(f"ensemble_objective: speedup={naive['seconds'] / lib_s:.1f}x "
          f"(library {lib_s:.2f}s, naive torch {naive['seconds']:.2f}s)")
    print(f"ensemble_objective_memory: naive_extra_rss={extra:.2f} GiB "
          f"(anon peak {naive['anon_peak_kib'] / 2**20:.2f} GiB), library_extra_rss={lib_extra:.2f} GiB "
          f"(anon peak {lib2['anon_peak_kib'] / 2**20:.2f} GiB)")
    shutil.rmtree(d)


def bench_memory(root: Path) -> None:
    """4 members x 1449 images at 240x320 in a child; peak RSS must stay under 20 GiB."""
    d = root / "memory"
    d.mkdir()
    t0 = time.perf_counter()
    write_problem(d, 4, 1449, realistic=False)
    size = sum(p.stat().st_size for p in d.glob("m*.npy")) / GIB
    print(f"# wrote 4 x 1449 members ({size:.2f} GiB on disk) in {time.perf_counter() - t0:.1f}s")
    res = run_child("lib", d, 4)
    peak = res["hwm_kib"] / 2**20
    print(f"# 4x1449 evaluation took {res['seconds']:.1f}s")
    print(f"ensemble_memory_4x1449: peak_rss={peak:.2f} GiB (goal < 20 GiB) "
          f"anon_peak={res['anon_peak_kib'] / 2**20:.2f} GiB -> {'OK' if peak < 20 else 'FAIL'}")
    shutil.rmtree(d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="where temporary .npy files go")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--child", choices=["lib", "naive"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--members", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=16, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.dir), args.members, args.chunk)))
        return
    root = Path(tempfile.mkdtemp(prefix="bench_ensemble_", dir=args.workdir))
    try:
        bench_speed(root)
        if not args.skip_memory:
            bench_memory(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
