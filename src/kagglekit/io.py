"""Atomic file writes: every artefact (checkpoint, OOF array, manifest, report, submission) goes
through here, so a killed process leaves either the old complete file or the new complete file.

Recipe: write to a temp file in the same directory, flush + fsync, then ``os.replace`` (atomic on
POSIX within one filesystem), then fsync the directory so the rename itself is durable.

A full disk (``ENOSPC``/``EDQUOT``) while writing raises :class:`DiskFullError` naming the path;
the temp file is removed and the previous file (if any) is left as it was.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import numpy as np


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems do not allow opening a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class DiskFullError(OSError):
    """No space left (``ENOSPC``) or quota exceeded (``EDQUOT``) while writing a file; the message
    names the file, the temp file is gone and the previous version of the file is unchanged."""


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _disk_full(path: Path, existed: bool, code: int) -> DiskFullError:
    kept = "the previous file is unchanged" if existed else "no file was written"
    return DiskFullError(code, f"while writing {path}: disk full ({errno.errorcode.get(code, code)}); "
                               f"free space and retry; {kept}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb",
                before_replace: Callable[[], None] | None = None, exclusive: bool = False) -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path`` atomically.

    ``exclusive=True`` creates ``path`` only if it does not exist yet (a hard link of the complete
    temp file, atomic on POSIX and NFS): when another process got there first, FileExistsError
    is raised and its file is left as it was. This is how write-once files (folds.csv, a fold's
    config.json) are claimed by exactly one of several processes sharing one folder.

    On any exception (or a kill) the temp file is removed (or left as ``.<name>.*.tmp`` for
    :func:`remove_stale_temps`) and ``path`` is left untouched. ``before_replace`` runs once the
    temp file is complete and fsynced, just before the rename (checkpoints write their manifest
    there). A full disk raises :class:`DiskFullError` naming ``path``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise _disk_full(path, existed, exc.errno) from exc
        raise
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if mode == "w" else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace()
        _publish(tmp, path, exclusive)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, DiskFullError) and exc.errno in _DISK_FULL:
            raise _disk_full(path, existed, exc.errno) from exc
        raise


def _publish(tmp: str, path: Path, exclusive: bool) -> None:
    if not exclusive:
        os.replace(tmp, path)
        return
    os.link(tmp, path)  # FileExistsError when another writer created path first
    os.unlink(tmp)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if missing) for the body: processes that
    read-modify-write one shared file (the ledger) or run a once-only step (demo data, the
    experiment epilogue) take turns instead of losing each other's work."""
    import fcntl
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete temp files left by writers that were killed mid-write (``.<name>.*.tmp`` from
    :func:`atomic_open` and the OOF array writers). Call only when no writer is active there
    (e.g. when a run resumes its own fold folder). Returns what was removed."""
    removed = []
    for path in Path(directory).rglob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def write_text(path: str | os.PathLike, text: str, exclusive: bool = False) -> Path:
    with atomic_open(path, "w", exclusive=exclusive) as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_json(path: str | os.PathLike, obj: Any, exclusive: bool = False) -> Path:
    """``exclusive``: see :func:`atomic_open` (FileExistsError when ``path`` already exists)."""
    return write_text(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n", exclusive)


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete or regenerate it") from None


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an ``.npy`` atomically (loadable later with ``np.load(..., mmap_mode='r')``)."""
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
    return Path(path)


def save_csv(path: str | os.PathLike, frame: "Any", exclusive: bool = False, **to_csv_kwargs: Any) -> Path:
    """Write a pandas DataFrame as CSV atomically (``index=False`` unless told otherwise);
    ``exclusive``: see :func:`atomic_open`."""
    to_csv_kwargs.setdefault("index", False)
    with atomic_open(path, "w", exclusive=exclusive) as fh:
        frame.to_csv(fh, **to_csv_kwargs)
    return Path(path)
