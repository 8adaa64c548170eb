"""Checkpoints: atomic writes, integrity manifests, safe loads (``weights_only=True``), RNG state.

Everything saved is made of tensors, numbers, strings, lists and dicts, so the restricted
``weights_only`` unpickler can read it; a pickle that tries to run code is refused by torch.

Integrity: :func:`save_checkpoint` writes ``<name>.manifest.json`` beside each checkpoint with its
size and sha256; :func:`load_checkpoint` checks both when the manifest is there (torch itself loads a
file with flipped bytes inside a tensor without complaint). Checkpoints without a manifest (older
runs) load unverified. Crash safety of the pair: the manifest is written before the checkpoint is
renamed into place and, while the rename is pending, also accepts the file it replaces; so a kill
at any point leaves a checkpoint that verifies (the old one or the new one).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kagglekit.io import _fsync_dir, atomic_open, load_json, save_json

log = logging.getLogger("kagglekit.checkpoint")

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = "kagglekit-checkpoint-manifest/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted or not weights-only loadable."""


def manifest_path(path: str | Path) -> Path:
    """``<dir>/<name>.manifest.json``: size and sha256 of checkpoint ``<dir>/<name>``."""
    path = Path(path)
    return path.with_name(path.name + MANIFEST_SUFFIX)


class _HashingWriter:
    """File-object wrapper for ``torch.save`` that hashes and counts what goes through it."""

    def __init__(self, fh) -> None:
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            n = self.fh.write(data)
        except OSError as exc:  # torch's zip writer masks it with its own RuntimeError: keep it
            self.error = exc
            raise
        self.sha.update(data)
        self.size += memoryview(data).nbytes
        return n

    def flush(self) -> None:
        self.fh.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)

    def entry(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha.hexdigest()}


def _file_entry(path: Path) -> dict[str, Any]:
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": sha.hexdigest()}


def _read_manifest(path: Path) -> list[dict[str, Any]] | None:
    """The (size, sha256) entries the manifest of ``path`` accepts, or None when it has none."""
    mpath = manifest_path(path)
    if not mpath.exists():
        return None
    try:
        data = load_json(mpath)
        entries = [{"size": int(data["size"]), "sha256": str(data["sha256"])}]
        entries += [{"size": int(e["size"]), "sha256": str(e["sha256"])} for e in data.get("previous", [])]
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{mpath}: checkpoint manifest unreadable ({str(exc)[:200]}); "
                              f"delete it to load {path.name} unverified") from None
    return entries


def _write_manifest(path: Path, entry: dict[str, Any], previous: list[dict[str, Any]]) -> None:
    data = {"format": MANIFEST_FORMAT, "file": path.name, **entry}
    if previous:  # only while a rename of ``path`` is pending: the file it replaces is still valid
        data["previous"] = previous
    save_json(manifest_path(path), data)


def verify_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """Check ``path`` against its manifest: returns the matching (size, sha256) entry, None when the
    checkpoint has no manifest (older runs), and raises :class:`CheckpointError` on a mismatch."""
    path = Path(path)
    entries = _read_manifest(path)
    if entries is None:
        return None
    mpath = manifest_path(path)
    hint = (f"resume from another checkpoint or retrain; if you replaced the file on purpose, delete "
            f"{mpath.name} to load it unverified")
    size = path.stat().st_size
    same_size = [e for e in entries if e["size"] == size]
    if not same_size:
        raise CheckpointError(f"{path} is truncated/corrupted (size mismatch: {size} bytes on disk, "
                              f"{entries[0]['size']} in {mpath.name}); {hint}")
    actual = _file_entry(path)
    for entry in same_size:
        if entry["sha256"] == actual["sha256"]:
            return entry
    raise CheckpointError(f"{path} is truncated/corrupted (sha256 mismatch against {mpath.name}); {hint}")


def _entries_of_current(path: Path) -> list[dict[str, Any]]:
    """Manifest entries that describe the file now at ``path`` (to keep accepting it while its
    replacement is being renamed into place): none when absent or failing its manifest."""
    if not path.exists():
        return []
    try:
        entries = _read_manifest(path)
    except CheckpointError:
        entries = None
    if entries is None:  # no (readable) manifest: an older run's file; vouch for what is there
        return [_file_entry(path)]
    size = path.stat().st_size
    return [e for e in entries if e["size"] == size]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically, with its manifest (size, sha256) beside it."""
    path = Path(path)
    writer: _HashingWriter | None = None
    previous: list[dict[str, Any]] = []

    def manifest_first() -> None:
        nonlocal previous
        previous = _entries_of_current(path)
        _write_manifest(path, writer.entry(), previous)

    with atomic_open(path, "wb", before_replace=manifest_first) as fh:
        writer = _HashingWriter(fh)
        try:
            torch.save(state, writer)
        except Exception:
            if writer.error is not None:  # e.g. ENOSPC: report the cause, not torch's "unexpected pos"
                raise writer.error from None
            raise
    if previous:
        _write_manifest(path, writer.entry(), [])
    return path


def rotate_checkpoint(src: str | Path, dst: str | Path) -> bool:
    """Move a verified ``src`` to ``dst`` (with its manifest), replacing ``dst``: keeps the previous
    resume point while the next one is written. A ``src`` that is missing or fails verification is
    left alone (``dst`` keeps the older good one); returns whether it was moved."""
    src, dst = Path(src), Path(dst)
    if not src.exists():
        return False
    try:
        entry = verify_checkpoint(src)
        if entry is None:  # no manifest: check it loads before trusting it
            load_checkpoint(src, verify=False)
            entry = _file_entry(src)
    except CheckpointError as exc:
        log.warning("not keeping %s as %s: %s", src, dst, exc)
        return False
    previous = _entries_of_current(dst)
    _write_manifest(dst, entry, previous)
    os.replace(src, dst)
    _fsync_dir(dst.parent)
    if previous:
        _write_manifest(dst, entry, [])
    with contextlib.suppress(FileNotFoundError):
        manifest_path(src).unlink()
    return True


def remove_checkpoint(path: str | Path) -> None:
    """Delete a checkpoint and its manifest (the file first: a manifest alone is harmless)."""
    path = Path(path)
    for p in (path, manifest_path(path)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", verify: bool = True) -> dict[str, Any]:
    """Load with ``weights_only=True``; with ``verify`` (default) the size and sha256 are checked
    against ``<name>.manifest.json`` when present (absent for checkpoints of older runs)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if verify:
        verify_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / unsafe files
        raise CheckpointError(f"{path}: cannot load checkpoint safely ({type(exc).__name__}: {str(exc)[:200]}); "
                              "it may be truncated or contain arbitrary pickled objects — delete it or resume from another") from None


def capture_rng() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in weights-only-loadable form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(obj: Any) -> Any:
    return [_to_lists(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _to_tuples(obj: Any) -> Any:
    return tuple(_to_tuples(x) for x in obj) if isinstance(obj, list) else obj
