"""The life cycle checks of a run directory, before anything runs in it: is ``--out`` a place
a run can live (not under a file, not in a system folder, not inside another run), does it
already hold a run (and how should it be continued), and does its log match the checkpoint
it will continue from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from asktell.checkpoint import list_checkpoints
from asktell.errors import CheckpointError, ConfigError
from asktell.runlog import LOG_FILE, LogChain, verify_log

__all__ = ["CONFIG_FILE", "check_out", "checked_log", "refuse_held"]

CONFIG_FILE = "config.toml"
_SYSTEM_DIRS = ("/proc", "/sys", "/dev")


def _is_run_dir(path: Path) -> bool:
    """A directory some run has written (its config plus a log or checkpoints)."""
    return (path / CONFIG_FILE).is_file() and (
        (path / LOG_FILE).is_file() or bool(list_checkpoints(path))
    )


def check_out(run_dir: Path) -> None:
    """Refuse a run directory that cannot be one before anything is created."""
    named = f"run directory {str(run_dir)!r} (--out)"
    path = Path(os.path.abspath(run_dir))
    real = Path(os.path.realpath(path))
    for system in _SYSTEM_DIRS:
        if real == Path(system) or Path(system) in real.parents:
            raise ConfigError(f"{named} is inside {system}, a system folder; choose a folder on a disk")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{named} is a file, not a directory")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{named} is under {str(parent)!r}, which is a file, not a directory")
        if parent.is_dir() and _is_run_dir(parent):
            raise ConfigError(
                f"{named} is inside the run directory {str(parent)!r} of another run; "
                "choose a folder outside it"
            )
    if not path.exists():
        nearest = next(p for p in path.parents if p.exists())
        if not os.access(nearest, os.W_OK | os.X_OK):
            raise ConfigError(f"{named} cannot be created: {str(nearest)!r} is not writable")


def refuse_held(run_dir: Path) -> None:
    found = list_checkpoints(run_dir)
    if found:
        raise ConfigError(
            f"run directory {str(run_dir)!r} already holds a run; continue it with "
            f"`asktell resume {run_dir}` (newest checkpoint {found[-1].name}) or choose "
            "another directory (--out)"
        )
    if (run_dir / CONFIG_FILE).exists() or (run_dir / LOG_FILE).exists():
        raise ConfigError(
            f"run directory {str(run_dir)!r} already holds a run that stopped before its first "
            f"checkpoint; `asktell resume {run_dir}` starts it again at generation 0 with its "
            f"saved {CONFIG_FILE}, or choose another directory (--out)"
        )


def checked_log(run_dir: Path, ckpt: Any, repair: bool) -> tuple[LogChain, str | None]:
    """The log record to continue from, and a note when the log is to be moved aside."""
    if ckpt is None:
        return LogChain(), None  # rows of a run that never checkpointed are redone
    r = ckpt.state["runner"]
    expected = LogChain(int(r.get("log_rows", -1)), int(r["log_bytes"]), r.get("log_sha256"))
    try:
        verify_log(run_dir / LOG_FILE, expected, ckpt.generation)
    except CheckpointError as exc:
        if not repair:
            raise CheckpointError(
                f"{exc}. Restore the log, or resume with --repair-log to move it aside to "
                f"{LOG_FILE}.damaged and start a new log after generation {ckpt.generation}"
            ) from None
        return LogChain(), f"{exc}; moved it aside to {LOG_FILE}.damaged"
    return expected, None
