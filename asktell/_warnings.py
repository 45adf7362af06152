"""Warnings raised during a run go to the run's ``warnings.log``, not into the display.

Simulators warn a lot (MuJoCo 4 says ``compiler attribute 'settotalmass' is deprecated``
once per model it compiles: 33 lines in a HalfCheetah run with 32 environments), and each
warning printed to the terminal tears the live display. :class:`WarningCapture` records
every Python warning raised while it is active (``warnings.showwarning``, with the filter
set to ``always`` so the counts are true), once per distinct message with a count, and
writes them to ``warnings.log`` in the run directory when it is bound to one.

MuJoCo's own warnings do not pass through Python: its C library prints them to the
console and appends them to ``MUJOCO_LOG.TXT`` **in the current directory**. While a
capture is active and MuJoCo is in use, its user-warning hook
(``mujoco.set_mju_user_warning``) turns each one into a :class:`MujocoWarning` (so it lands
in the same log and nothing is printed), and its log file (``mujoco.MjLogConfig.logfile``)
points into the run directory, so an error MuJoCo logs itself does not litter the cwd
either. Both are restored on exit.

Only the process that runs the loop is covered: a simulator in a worker process (the
vector evaluator's pool, Dask workers) warns in that process.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["WARNINGS_FILE", "MujocoWarning", "WarningCapture", "uses_mujoco"]

WARNINGS_FILE = "warnings.log"


class MujocoWarning(UserWarning):
    """A warning from MuJoCo's C library (its ``mju_warning``)."""


def uses_mujoco(config: Any) -> bool:
    """Whether a run of ``config`` steps MuJoCo in this process (its Gym env's entry point
    is in ``gymnasium.envs.mujoco``, or MuJoCo is already imported)."""
    if "mujoco" in sys.modules:
        return True
    env_id = getattr(getattr(config, "task", None), "env_id", None)
    if not isinstance(env_id, str) or ":" in env_id:
        return False  # a user's module: not loaded here just to look
    try:
        import gymnasium

        entry = gymnasium.spec(env_id).entry_point
    except Exception:  # noqa: BLE001 - an unknown id is the task's error to report, not ours
        return False
    return "mujoco" in str(entry)


class WarningCapture:
    """Collect the warnings raised while active; write them to ``path`` once bound.

    Use as a context manager around building and running; :meth:`bind` names the file
    (the run directory exists only after the run is built).
    """

    def __init__(self, *, mujoco: bool = False, min_interval: float = 1.0):
        self.counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.path: Path | None = None
        self._mujoco = mujoco
        self._interval = min_interval
        self._written = 0.0
        self._lock = threading.Lock()
        self._mujoco_saved: tuple[Any, Any] | None = None  # (warning hook, log file) before

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str | None:
        """The one line a person sees, or ``None`` when nothing was caught."""
        if not self.counts or self.path is None:
            return None
        n, k = self.total, len(self.counts)
        what = "warning" if n == 1 else "warnings"
        distinct = "" if n == k else f" ({k} distinct)"
        return f"{n} {what}{distinct} from the run written to {self.path}"

    def bind(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / WARNINGS_FILE
        if self._mujoco:
            self._mujoco_logfile(self.path.with_name("MUJOCO_LOG.TXT"))
        self.write()

    def write(self) -> None:
        """(Re)write the log: one block per distinct warning, most frequent first."""
        if self.path is None or not self.counts:
            return
        with self._lock:
            items = self.counts.most_common()
        lines = [f"{count} x {where}: {category}: {message}" for (category, message, where), count in items]
        self.path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._written = time.monotonic()

    # ------------------------------------------------------------------ hooks
    def _show(self, message: Any, category: type, filename: str, lineno: int,
              file: Any = None, line: Any = None) -> None:
        key = (category.__name__, str(message).strip(), f"{filename}:{lineno}")
        with self._lock:
            self.counts[key] += 1
        if time.monotonic() - self._written >= self._interval:
            self.write()

    def _mujoco_warning(self, text: str) -> None:
        warnings.warn(str(text).strip(), MujocoWarning, stacklevel=2)

    @staticmethod
    def _mujoco_logfile(path: str | Path | None) -> None:
        import mujoco

        if path is None or not hasattr(mujoco, "MjLogConfig"):  # MuJoCo 3 has no log config
            return
        cfg = mujoco.MjLogConfig.get()
        cfg.logfile = str(path)
        cfg.set()

    def __enter__(self) -> WarningCapture:
        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = self._show
        if self._mujoco:
            import mujoco

            log = getattr(mujoco, "MjLogConfig", None)
            self._mujoco_saved = (mujoco.get_mju_user_warning(), log and log.get().logfile)
            mujoco.set_mju_user_warning(self._mujoco_warning)
            # until bound (the run directory is made after the build), an error MuJoCo logs
            # is the exception the bindings raise, not a file in the cwd
            self._mujoco_logfile(os.devnull)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.write()
        finally:
            if self._mujoco_saved is not None:
                import mujoco

                hook, logfile = self._mujoco_saved
                mujoco.set_mju_user_warning(hook)
                self._mujoco_logfile(logfile)
            self._catch.__exit__(*exc)
