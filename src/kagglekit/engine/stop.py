"""Clean stops on SIGINT / SIGTERM.

While the training loop runs (:func:`kagglekit.engine.fit.fit`), :class:`StopRequest` replaces
the SIGINT and SIGTERM handlers with one that only records the signal; the loop calls
:meth:`StopRequest.check` at step boundaries (every training micro-batch, every validation batch,
between epochs) and raises :class:`Interrupted` there. Checkpoints are written in the background
while the next epoch trains (:mod:`kagglekit.engine.background`); ``fit`` waits for a pending
write before the interruption leaves it, so a signal that arrives during a write lets the write
finish: ``last.pt`` stays the complete old or new file. A second signal stops at once (atomic writes still leave every file old-or-new). The previous
handlers are restored when the loop returns or raises.

Outside the loop, :func:`sigterm_as_interrupt` (the experiment CLI) makes SIGTERM behave like
SIGINT (an exception, so ``finally`` blocks and temp-file cleanups run) instead of ending the
process on the spot. ``Interrupted`` is a :class:`KeyboardInterrupt`: ``except Exception`` never
swallows it; the CLI turns it into one line and exit code 128 + signal (130 / 143).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal; ``epoch`` (1-based) and ``step`` (optimiser steps done) when
    it was raised inside the training loop, else None."""

    def __init__(self, signum: int, epoch: int | None = None, step: int | None = None) -> None:
        self.signum, self.epoch, self.step = int(signum), epoch, step
        super().__init__(self.where())

    def __reduce__(self):  # picklable with its fields (run_on_main / main_first send errors to other ranks)
        return (type(self), (self.signum, self.epoch, self.step))

    @property
    def exit_code(self) -> int:
        """The shell's convention for death by a signal: 128 + signal number (SIGINT 130, SIGTERM 143)."""
        return 128 + self.signum

    def where(self) -> str:
        if self.epoch is None:
            return f"interrupted ({signal.Signals(self.signum).name}) outside the training loop"
        return f"interrupted at epoch {self.epoch} step {self.step}"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class StopRequest:
    """Context manager: while active, SIGINT / SIGTERM set :attr:`signum` (the one flag) and
    :meth:`check` raises :class:`Interrupted` at the caller's next step boundary. ``position``
    gives (epoch, step) for the message. Outside the main thread (signals cannot be handled
    there) it installs nothing and never stops."""

    def __init__(self, position: Callable[[], tuple[int, int]]) -> None:
        self.position = position
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if _main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # asked twice: stop now
            raise self.interrupted()
        self.signum = signum

    def interrupted(self) -> Interrupted:
        return Interrupted(self.signum if self.signum is not None else signal.SIGINT, *self.position())

    def check(self) -> None:
        """Raise :class:`Interrupted` when a signal arrived since the loop started."""
        if self.signum is not None:
            raise self.interrupted()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Interrupted` (like SIGINT raises KeyboardInterrupt) for the duration;
    the previous handler is restored afterwards. No-op outside the main thread."""
    if not _main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)
    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
