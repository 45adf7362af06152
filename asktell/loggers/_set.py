"""The runner's side of loggers: open, write and close them, and keep a failing one from
touching the run.

The rule (documented in docs/loggers.md): a logger that raises in ``open``, ``log`` or
``close`` is reported once, closed as far as it can be, and dropped; the run, ``log.jsonl``
and the checkpoints carry on unchanged. A missing optional package is found earlier, before
the run directory is created (:func:`check_loggers`), so a typo'd setup costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from asktell.loggers._base import Logger, LoggerConfig, Resume

__all__ = ["LoggerSet", "check_loggers"]


def check_loggers(configs: Sequence[LoggerConfig]) -> None:
    """Raise the install command for the first configured logger whose package is missing."""
    for config in configs:
        config.check_available()


class LoggerSet:
    """The run's loggers. ``report`` receives one message per failing logger."""

    def __init__(self, configs: Sequence[LoggerConfig], report: Callable[[str], None]):
        self.configs = list(configs)
        self.report = report
        self.active: list[tuple[str, Logger]] = []

    def open(self, run_dir: Path, config: Any, resume: Resume | None) -> None:
        for index, cfg in enumerate(self.configs):
            name = f"output.loggers[{index}] ({cfg.kind})"  # type: ignore[attr-defined]
            try:
                logger = cfg.build()
                logger.open(run_dir, config, resume)
            except Exception as exc:  # noqa: BLE001 - a logger never stops the run
                self._failed(name, "open", exc)
                continue
            self.active.append((name, logger))

    def log(self, row: dict[str, Any]) -> None:
        for name, logger in list(self.active):
            try:
                logger.log(row)
            except Exception as exc:  # noqa: BLE001
                self._drop(name, logger, "log", exc)

    def close(self, reason: str) -> None:
        active, self.active = self.active, []
        for name, logger in active:
            try:
                logger.close(reason)
            except Exception as exc:  # noqa: BLE001
                self._failed(name, "close", exc)

    def _drop(self, name: str, logger: Logger, phase: str, exc: BaseException) -> None:
        self.active = [(n, lg) for n, lg in self.active if lg is not logger]
        self._failed(name, phase, exc)
        try:
            logger.close("logger failed")
        except Exception:  # noqa: BLE001 - already reported; its own cleanup may fail too
            pass

    def _failed(self, name: str, phase: str, exc: BaseException) -> None:
        self.report(
            f"logger {name} failed in {phase}(): {type(exc).__name__}: {exc}; it is dropped, "
            "the run and log.jsonl continue"
        )
