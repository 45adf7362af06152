"""Deferring Ctrl-C (and SIGTERM, SIGHUP) while a run's state changes, so a checkpoint never
captures half an update.

SIGTERM (``timeout``, SLURM's time limit, ``kill``) and SIGHUP (a closed terminal) are
handled like Ctrl-C: they raise :class:`Interrupted`, a :class:`KeyboardInterrupt`, at the next
point where the state is consistent, so the runner writes a checkpoint and says how to resume.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["DeferredInterrupts", "Interrupted", "HANDLED_SIGNALS"]

#: The signals a run stops cleanly on (those this platform has).
HANDLED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupted(KeyboardInterrupt):
    """A stop asked by a signal; ``signum`` says which (``exit_code`` is ``128 + signum``)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class DeferredInterrupts:
    """Defers SIGINT/SIGTERM/SIGHUP while the run's state is being changed.

    Outside :meth:`critical` sections a signal raises :class:`Interrupted` at once; inside,
    it is remembered and raised when the outermost section ends.
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        self.depth = 0
        self.pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> DeferredInterrupts:
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED_SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            if previous is None:  # installed from C: restore the default
                previous = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:
            # A forked child (an async vector env's worker) inherited this handler: the
            # run's state is not its to save. Behave as the signal's default (a SIGTERM from
            # the env's close ends it quietly, not with a traceback).
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.depth:
            self.pending = signum
        else:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending is not None:
            signum, self.pending = self.pending, None
            raise Interrupted(signum)
