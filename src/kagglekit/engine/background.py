"""Checkpoint writes off the training path: CPU snapshots + one writer thread.

The training thread pays only :func:`snapshot_to_cpu` (a copy of the state, needed anyway because
the live model and optimiser keep changing in place); hashing, ``torch.save``, fsync, manifests
and renames run on :class:`BackgroundWriter`'s thread while training goes on.

Ordering and errors: :meth:`BackgroundWriter.submit` first waits for the previous job, so jobs run
in submission order and never overlap (the crash-safety argument of a job's ordered writes is the
synchronous one), at most one job's snapshot is held in memory besides the one being submitted,
and a failed job re-raises its own exception (e.g. :class:`~kagglekit.io.DiskFullError`) on the
training thread at the next ``submit`` / ``wait`` / ``check`` / ``close``.

The worker is a daemon thread: a process that stops without draining it (a second Ctrl-C while
waiting, a kill) leaves what a kill mid-write leaves, the old complete file or the new complete
file (writes are atomic), plus possibly a temp file that ``remove_stale_temps`` clears.
"""
from __future__ import annotations

import copy
import logging
import queue
import threading
from types import TracebackType
from typing import Any, Callable

import torch

log = logging.getLogger("kagglekit.background")

Job = Callable[[], None]


class BackgroundWriter:
    """One worker thread running submitted jobs one at a time, in order. A context manager:
    leaving the block drains the pending job; its error propagates unless another exception is
    already leaving the block (that one wins; the write error is logged and added as a note)."""

    def __init__(self, name: str = "kagglekit-writer") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, job: Job) -> None:
        """Run ``job`` on the worker once the previous job is done (waits for it here and
        re-raises its error instead of queueing ``job``)."""
        self.wait()
        if self._closed:
            raise RuntimeError(f"{self.name}: submit after close")
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
        self._idle.clear()
        self._jobs.put(job)

    def wait(self) -> None:
        """Block until the pending job (if any) is done; re-raise its exception once."""
        self._idle.wait()  # lock waits are interruptible: signal handlers still run meanwhile
        self.check()

    def check(self) -> None:
        """Non-blocking: re-raise the error of a job that has already failed (once)."""
        if self._idle.is_set() and self._error is not None:
            error, self._error = self._error, None
            raise error

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def close(self) -> None:
        """Drain (re-raising a failed job's error) and stop the worker. Idempotent."""
        try:
            self.wait()
        finally:
            if self._idle.is_set():  # else interrupted while waiting (a second signal): leave the daemon
                self._stop_worker()

    def _stop_worker(self) -> None:
        self._closed = True
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 -- handed to the training thread, not lost
                self._error = exc
            finally:
                job = None  # drop the job's snapshot before signalling idle (peak memory)
                self._idle.set()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except Exception as write_error:  # the in-flight exception explains the run's end better
            log.error("%s: a background write failed while %s propagated: %r", self.name,
                      type(exc).__name__, write_error)
            if hasattr(exc, "add_note"):  # Python >= 3.11
                exc.add_note(f"while this propagated, a background write failed too: {write_error!r}")


def snapshot_to_cpu(state: Any) -> Any:
    """A deep copy of a nested state (dicts, lists, tuples, tensors, numbers, strings) whose tensors
    are detached CPU copies, safe from later in-place updates of the live tensors.

    CPU tensors are cloned (same shape, dtype and strides); CUDA tensors are copied into pinned
    host memory with ``non_blocking=True`` and synchronised once at the end (one wait for all of
    them instead of one per tensor). Tensors viewing exactly the same memory (tied weights, the
    same state_dict reached twice) become one copy, so ``torch.save`` still stores them once.
    Dict types and attributes (``OrderedDict._metadata`` of state dicts) are kept."""
    memo: dict[tuple, torch.Tensor] = {}
    devices: set[torch.device] = set()
    out = _copy(state, memo, devices)
    for device in devices:
        torch.cuda.synchronize(device)
    return out


def _copy(obj: Any, memo: dict[tuple, torch.Tensor], devices: set[torch.device]) -> Any:
    if isinstance(obj, torch.Tensor):
        return _copy_tensor(obj.detach(), memo, devices)
    if isinstance(obj, dict):
        out = copy.copy(obj)  # same type and instance attributes; values replaced below
        for key, value in obj.items():
            out[key] = _copy(value, memo, devices)
        return out
    if isinstance(obj, list):
        return [_copy(x, memo, devices) for x in obj]
    if isinstance(obj, tuple):
        items = [_copy(x, memo, devices) for x in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, torch.dtype, torch.device)):
        return obj
    return copy.deepcopy(obj)


def _copy_tensor(t: torch.Tensor, memo: dict[tuple, torch.Tensor], devices: set[torch.device]) -> torch.Tensor:
    key = None
    if t.layout == torch.strided:
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype)
        if key in memo:
            return memo[key]
    if t.device.type == "cpu":
        copied = t.clone()  # preserve_format: dense tensors keep their strides (channels_last too)
    elif t.device.type == "cuda" and t.layout == torch.strided:
        copied = torch.empty_like(t, device="cpu", pin_memory=True)
        copied.copy_(t, non_blocking=True)  # complete only after the synchronize in snapshot_to_cpu
        devices.add(t.device)
    else:
        copied = t.to("cpu")
    if key is not None:
        memo[key] = copied
    return copied
