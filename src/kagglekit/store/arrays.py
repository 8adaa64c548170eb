"""The OOF / test prediction store.

Layout per experiment and fold (``output/<exp>/fold<k>/``)::

    oof/probs.npy      (N, C, *S) uint8 (p·255 rounded) or float16 — memory-mappable; S = (h, w)
                       for segmentation, () for per-row classification or per-frame outputs
    oof/targets.npy    (N, *S) uint8 labels at the same scale (255 = ignore), when known
    oof/ids.json       the N image ids, row order of the arrays
    oof/manifest.json  experiment, fold, kind, classes, scale, dtype, shape, orig_hw, tta_views,
                       temperature (best T), metric name/value, orig_sizes (each row's original
                       (H, W) when images differ in size: the arrays then hold every image at one
                       working size, and readers resize each back to its own size)
    test/...           the same for the test set (no targets)

Arrays are written row-chunk by row-chunk into a temp ``.npy`` memmap beside the final path and
renamed when complete, so a crash never leaves a half-written store. Readers open them with
``mmap_mode='r'``; :func:`merged_oof` lays an experiment's folds out in ``folds.csv`` order in one
cached store (``oof_merged/``, its manifest recording a hash of the fold stores it came from, so a
re-run fold or an edited ``ids.json`` rebuilds it) so every experiment's OOF aligns row for row.
Ids are text end to end (``"0001"`` stays ``"0001"``).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from kagglekit.io import _fsync_dir, file_lock, load_json, save_json

DTYPES = {"uint8": np.uint8, "float16": np.float16}


class OOFError(ValueError):
    """Missing folds, misaligned ids or shapes in the prediction store."""


@dataclass
class Manifest:
    experiment: str
    fold: int
    kind: str  # "oof" | "test"
    classes: list[str]
    scale: float
    dtype: str
    shape: list[int]
    orig_hw: list[int]
    tta_views: list[str] = field(default_factory=list)
    temperature: float = 1.0
    metric_name: str = ""
    metric: float | None = None
    orig_sizes: list[list[int]] = field(default_factory=list)  # (H, W) of each row's image when sizes vary; [] = all orig_hw
    sources_sha256: str = ""  # merged stores only: hash of the fold stores it was built from (see merged_oof)

    def sizes_by_id(self, ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Each row's original (H, W): ``orig_sizes`` when recorded, else ``orig_hw`` for all."""
        sizes = self.orig_sizes or [self.orig_hw] * len(ids)
        return {str(i): (int(s[0]), int(s[1])) for i, s in zip(ids, sizes)}


def quantise(probs: np.ndarray, dtype: str) -> np.ndarray:
    """float probabilities → stored dtype (uint8: round(p·255), max error 1/510)."""
    if dtype == "uint8":
        return np.clip(np.rint(probs * 255.0), 0, 255).astype(np.uint8)
    if dtype == "float16":
        return probs.astype(np.float16)
    raise OOFError(f"oof dtype {dtype!r} unknown; use one of {sorted(DTYPES)}")


def dequantise(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float32) / 255.0 if stored.dtype == np.uint8 else stored.astype(np.float32)


class ArrayWriter:
    """Fill an (N, ...) ``.npy`` chunk by chunk; :meth:`commit` renames it into place."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=dtype, shape=shape)
        self.filled = 0

    def write(self, rows: np.ndarray) -> None:
        n = rows.shape[0]
        if self.filled + n > self.array.shape[0]:
            raise OOFError(f"{self.path}: more rows than the declared {self.array.shape[0]}")
        self.array[self.filled:self.filled + n] = rows
        self.filled += n

    def commit(self) -> Path:
        if self.filled != self.array.shape[0]:
            raise OOFError(f"{self.path}: {self.filled} rows written, {self.array.shape[0]} declared")
        self.array.flush()
        del self.array
        with open(self.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


class PredictionWriter:
    """Streams one fold's predictions (and optional targets) into ``<dir>/{probs,targets}.npy``."""

    def __init__(self, directory: Path, manifest: Manifest, with_targets: bool,
                 target_shape: tuple[int, ...] | None = None) -> None:
        """``target_shape`` defaults to (N, *S); multi-label stores pass (N, C) (255 = not labelled)."""
        self.dir = Path(directory)
        self.manifest = manifest
        if manifest.dtype not in DTYPES:
            raise OOFError(f"oof dtype {manifest.dtype!r} unknown; use one of {sorted(DTYPES)}")
        n, _, *spatial = manifest.shape
        self.probs = ArrayWriter(self.dir / "probs.npy", tuple(manifest.shape), DTYPES[manifest.dtype])
        shape = tuple(target_shape) if target_shape is not None else (n, *spatial)
        self.targets = ArrayWriter(self.dir / "targets.npy", shape, np.uint8) if with_targets else None
        self.ids: list[str] = []

    def write(self, ids: Sequence[str], probs: np.ndarray, targets: np.ndarray | None = None) -> None:
        """probs (B, C, *S) float in [0, 1]; targets (B, *S) uint8 with 255 = ignore."""
        self.probs.write(quantise(probs, self.manifest.dtype))
        if self.targets is not None:
            self.targets.write(targets)
        self.ids.extend(str(i) for i in ids)

    def commit(self) -> Path:
        """Arrays first, then ids, then the manifest: a manifest present means a complete store."""
        self.probs.commit()
        if self.targets is not None:
            self.targets.commit()
        save_json(self.dir / "ids.json", self.ids)
        save_json(self.dir / "manifest.json", asdict(self.manifest))
        return self.dir

    def abort(self) -> None:
        self.probs.abort()
        if self.targets is not None:
            self.targets.abort()

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Commit when the block finished, discard the temp files when it (or the commit) raised."""
        if exc_type is not None:
            self.abort()
            return
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise


@dataclass
class StoredPredictions:
    ids: list[str]
    probs: np.ndarray  # memmap (N, C, *S)
    targets: np.ndarray | None  # memmap (N, *S)
    manifest: Manifest


def read_manifest(directory: Path) -> Manifest:
    """``directory/manifest.json`` (keys this version does not know are ignored)."""
    data = load_json(Path(directory) / "manifest.json")
    known = {f.name for f in fields(Manifest)}
    return Manifest(**{k: v for k, v in data.items() if k in known})


def read_predictions(directory: Path) -> StoredPredictions:
    directory = Path(directory)
    if not (directory / "manifest.json").exists():
        raise OOFError(f"{directory}: no manifest.json — predictions missing or incomplete; (re)run that fold")
    manifest = read_manifest(directory)
    ids = [str(i) for i in load_json(directory / "ids.json")]
    probs = np.load(directory / "probs.npy", mmap_mode="r")
    targets_path = directory / "targets.npy"
    targets = np.load(targets_path, mmap_mode="r") if targets_path.exists() else None
    if probs.shape[0] != len(ids) or list(probs.shape) != list(manifest.shape):
        raise OOFError(f"{directory}: probs.npy shape {probs.shape} does not match ids ({len(ids)}) / manifest {manifest.shape}")
    return StoredPredictions(ids, probs, targets, manifest)


def fold_dir(exp_dir: Path, fold: int) -> Path:
    return Path(exp_dir) / f"fold{fold}"


def missing_stores(exp_dir: Path, n_folds: int, kind: str) -> list[int]:
    """Folds of ``exp_dir`` without a complete ``kind`` ('oof' / 'test') store."""
    return [k for k in range(n_folds) if not (fold_dir(exp_dir, k) / kind / "manifest.json").exists()]


def require_folds(exp_dir: Path, n_folds: int, kind: str) -> list[StoredPredictions]:
    """Every fold's ``kind`` store, or one error naming each missing fold and how to produce it."""
    missing = missing_stores(exp_dir, n_folds, kind)
    if missing:
        name = Path(exp_dir).name
        raise OOFError(f"{exp_dir}: {kind} predictions missing for folds {missing}; run "
                       + "; ".join(f"python exp/{name}.py --fold {k}" for k in missing))
    return [read_predictions(fold_dir(exp_dir, k) / kind) for k in range(n_folds)]


def id_difference(name_a: str, ids_a: Sequence[str], name_b: str, ids_b: Sequence[str], limit: int = 5) -> str | None:
    """None when the two id lists are equal; else one line: counts, the first ``limit`` ids only
    on each side, or (same ids) the first row where the order differs."""
    ids_a, ids_b = [str(i) for i in ids_a], [str(i) for i in ids_b]
    if ids_a == ids_b:
        return None
    set_a, set_b = set(ids_a), set(ids_b)
    only_a, only_b = [i for i in ids_a if i not in set_b], [i for i in ids_b if i not in set_a]
    if only_a or only_b:
        return (f"{name_a} has {len(ids_a)} ids, {name_b} {len(ids_b)}: {len(only_a)} only in {name_a} "
                f"(first {min(limit, len(only_a))}: {only_a[:limit]}), {len(only_b)} only in {name_b} "
                f"(first {min(limit, len(only_b))}: {only_b[:limit]})")
    if len(ids_a) != len(ids_b):
        return f"{name_a} has {len(ids_a)} ids, {name_b} {len(ids_b)} (the same ids, some repeated)"
    row = next(k for k, (a, b) in enumerate(zip(ids_a, ids_b)) if a != b)
    return (f"{name_a} and {name_b} hold the same {len(ids_a)} ids in another order "
            f"(first difference at row {row}: {ids_a[row]!r} vs {ids_b[row]!r})")


def require_same_ids(names: Sequence[str], id_lists: Sequence[Sequence[str]], what: str, fix: str) -> None:
    """OOFError naming the first member whose ids differ from the first member's (see
    :func:`id_difference`), e.g. ``what="OOF ids"``, ``fix="train them on the same folds.csv"``."""
    for name, ids in zip(names[1:], id_lists[1:]):
        reason = id_difference(names[0], id_lists[0], name, ids)
        if reason is not None:
            raise OOFError(f"members' {what} differ: {reason}; {fix}")


def _file_stamp(path: Path) -> list[int] | None:
    """(size, mtime_ns) of a large array file: cheap, and changed by any rewrite (a fold re-run)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def sources_sha256(exp_dir: Path, n_folds: int, order_ids: Sequence[str]) -> str:
    """Hash of what a merged store is built from: the row order (folds.csv ids) and, per fold,
    its manifest and ids.json (content: small files) and probs / targets (size + mtime: large
    ones). Any edited ids.json, re-run fold or changed folds.csv changes it."""
    digest = hashlib.sha256("\n".join(map(str, order_ids)).encode())
    for k in range(n_folds):
        d = fold_dir(exp_dir, k) / "oof"
        for name in ("manifest.json", "ids.json"):
            digest.update(f"|{k}/{name}|".encode() + (d / name).read_bytes())
        stamps = {name: _file_stamp(d / name) for name in ("probs.npy", "targets.npy")}
        digest.update(f"|{k}/arrays|{stamps}".encode())
    return digest.hexdigest()


def _cached_merge(out: Path, sha: str) -> StoredPredictions | None:
    """The merged store at ``out`` when it was built from sources hashing to ``sha`` (older
    caches recorded no hash: rebuilt)."""
    if not (out / "manifest.json").exists():
        return None
    try:
        if read_manifest(out).sources_sha256 == sha:
            return read_predictions(out)
    except (OOFError, ValueError, TypeError, OSError):
        pass  # an unreadable cache is rebuilt
    return None


@contextlib.contextmanager
def _merge_lock(exp_dir: Path) -> Iterator[None]:
    """``<exp>/.oof_merged.lock`` held for the body; none on a read-only output (a valid cache
    is still read there, and a rebuild fails with the file system's own error)."""
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):
            stack.enter_context(file_lock(exp_dir / ".oof_merged.lock"))
        yield


def merged_oof(exp_dir: Path, order_ids: Sequence[str], n_folds: int, chunk: int = 32) -> StoredPredictions:
    """The experiment's OOF in ``order_ids`` order (folds.csv order), as memmaps (N, C, *S).

    Built into ``<exp>/oof_merged/`` chunk by chunk (memory: one chunk) and reused while the
    hash of its sources (:func:`sources_sha256`, recorded as the merged manifest's
    ``sources_sha256``) is unchanged: an edited ``ids.json`` or a re-run fold rebuilds it.
    """
    out = Path(exp_dir) / "oof_merged"
    with _merge_lock(Path(exp_dir)):  # two readers (ensembles) build it once
        stores = require_folds(exp_dir, n_folds, "oof")
        sha = sources_sha256(exp_dir, n_folds, order_ids)
        cached = _cached_merge(out, sha)
        if cached is not None:
            return cached
        with contextlib.suppress(FileNotFoundError):  # a half-rebuilt cache must never read as complete
            (out / "manifest.json").unlink()
        with contextlib.suppress(FileNotFoundError):
            (out / "source.json").unlink()  # older caches' signature file
        _build_merged(exp_dir, out, stores, order_ids, sha, chunk)
    return read_predictions(out)


def _build_merged(exp_dir: Path, out: Path, stores: list[StoredPredictions], order_ids: Sequence[str],
                  sha: str, chunk: int) -> None:
    where = {i: (f, r) for f, s in enumerate(stores) for r, i in enumerate(s.ids)}
    missing = [i for i in order_ids if i not in where]
    if missing:
        extra = sorted(set(where) - set(map(str, order_ids)))
        raise OOFError(f"{exp_dir}: {len(missing)} ids of folds.csv have no OOF row (first 5: {missing[:5]}); "
                       f"{len(extra)} OOF ids are not in folds.csv (first 5: {extra[:5]}); folds.csv changed after "
                       "training? rerun the experiment's folds")
    first = stores[0].manifest
    sizes = [s.manifest.sizes_by_id(s.ids) for s in stores] if any(s.manifest.orig_sizes for s in stores) else None
    merged_sizes = [list(sizes[where[i][0]][i]) for i in order_ids] if sizes else []
    manifest = Manifest(**{**asdict(first), "fold": -1, "shape": [len(order_ids), *first.shape[1:]],
                           "orig_sizes": merged_sizes, "sources_sha256": sha})
    with_targets = all(s.targets is not None for s in stores)
    target_shape = (len(order_ids), *stores[0].targets.shape[1:]) if with_targets else None
    writer = PredictionWriter(out, manifest, with_targets=with_targets, target_shape=target_shape)
    try:
        for start in range(0, len(order_ids), chunk):
            _copy_chunk(writer, stores, where, order_ids[start:start + chunk])
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def _copy_chunk(writer: PredictionWriter, stores, where, ids: Sequence[str]) -> None:
    rows = [where[i] for i in ids]
    probs = np.stack([stores[f].probs[r] for f, r in rows])
    writer.probs.write(probs)  # already quantised: copy verbatim
    if writer.targets is not None:
        writer.targets.write(np.stack([stores[f].targets[r] for f, r in rows]))
    writer.ids.extend(ids)


def iter_test_mean(exp_dir: Path, n_folds: int, chunk: int = 16) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yield (ids, mean over folds of the test probabilities (B, C, h, w) float32), chunk by chunk."""
    stores = require_folds(exp_dir, n_folds, "test")
    for k, s in enumerate(stores[1:], start=1):
        reason = id_difference("fold0", stores[0].ids, f"fold{k}", s.ids)
        if reason is not None or s.probs.shape != stores[0].probs.shape:
            raise OOFError(f"{exp_dir}: test predictions of fold{k} differ from fold0 "
                           f"({reason or f'shape {s.probs.shape} vs {stores[0].probs.shape}'}); rerun the odd fold")
    ids = stores[0].ids
    for start in range(0, len(ids), chunk):
        stop = start + chunk
        total = sum(dequantise(np.asarray(s.probs[start:stop])) for s in stores)
        yield ids[start:stop], total / len(stores)


def iter_blended_test_mean(member_dirs: Sequence[Path], n_folds: Sequence[int],
                           weights: Sequence[float] | np.ndarray) -> Iterator[tuple[list[str], np.ndarray]]:
    """Σ wᵢ · (member i's fold-mean test probabilities), chunk by chunk; members must list the
    same test ids in the same order."""
    require_same_ids([Path(d).name for d in member_dirs],
                     [require_folds(d, n, "test")[0].ids for d, n in zip(member_dirs, n_folds)],
                     "test ids", "re-run their test predictions on the same test split")
    for parts in zip(*[iter_test_mean(d, n) for d, n in zip(member_dirs, n_folds)]):
        yield parts[0][0], sum(w * p[1] for w, p in zip(weights, parts))
