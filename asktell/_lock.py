"""An exclusive lock on a run directory, so two processes never write one run.

``run`` and ``resume`` hold the lock for the whole run. It is an advisory ``flock`` on
``<run_dir>/.lock``, so the operating system releases it when its holder dies (a stale lock
from a killed process is simply taken over); the file also records the holder's PID and
host for the message a second process gets.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from asktell.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: O_EXCL with a PID check instead
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock", "LOCK_FILE", "RunDirectoryBusy"]

LOCK_FILE = ".lock"


class RunDirectoryBusy(ConfigError):
    """Another live process holds the run directory's lock."""


class RunLock:
    """``with RunLock(run_dir): ...`` holds the run directory exclusively, or raises
    :class:`RunDirectoryBusy` naming the holder's PID."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the lock file says of its holder (empty when unreadable)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise self._busy() from None
            elif self._held_by_live_process():  # pragma: no cover - no flock
                raise self._busy()
            record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(record).encode("utf-8"))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no holder recorded once released
        except OSError:
            pass
        os.close(fd)  # closing the descriptor releases the flock

    def _busy(self) -> RunDirectoryBusy:
        who = self.holder()
        pid = who.get("pid", "unknown")
        host = who.get("host")
        where = f" on {host}" if host and host != socket.gethostname() else ""
        return RunDirectoryBusy(
            f"run directory {str(self.path.parent)!r} is in use by process {pid}{where}; wait "
            "for that run to finish (or stop it) before running or resuming it again"
        )

    def _held_by_live_process(self) -> bool:  # pragma: no cover - used only without flock
        pid = self.holder().get("pid")
        if not isinstance(pid, int):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
