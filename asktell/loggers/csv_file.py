"""CSV logger: the log rows as a spreadsheet-ready table (no extra dependency).

The header is the first row's fields; a later row with new fields (the centre's return on the
first evaluation generation, say) rewrites the file once with the wider header, earlier rows
blank in the new columns. Floats are written with ``repr``, so they read back bitwise.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from asktell.config_base import declare_options
from asktell.loggers._base import LoggerConfig, Resume
from asktell.registry import LOGGERS
from asktell.runlog import LOG_FILE, RUN_FILES

__all__ = ["CSVLogger", "CSVLoggerConfig"]


_RUN_FOLDERS = ("checkpoints",)


def _run_file_named(run_dir: Path, path: Path) -> str | None:
    """The run file or folder ``path`` (inside ``run_dir``) would overwrite, if any."""
    base = Path(os.path.abspath(run_dir))
    target = Path(os.path.abspath(base / path))
    if target == base or target in base.parents:
        return "directory"
    if target.parent == base and (
        target.name in RUN_FILES or target.name.startswith(f"{LOG_FILE}.damaged")
    ):
        return target.name
    for folder in _RUN_FOLDERS:
        if target == base / folder or base / folder in target.parents:
            return f"{folder}/"
    return None


class CSVLoggerConfig(LoggerConfig):
    kind: Literal["csv"] = "csv"
    path: str = Field(
        "log.csv", min_length=1,
        description="The CSV file, relative to the run directory (or absolute); not one of "
        "the run's own files (log.jsonl, config.toml, warnings.log, checkpoints/).",
    )

    @field_validator("path")
    @classmethod
    def _not_a_run_file(cls, value: str) -> str:
        if not os.path.isabs(value):
            clash = _run_file_named(Path("/run"), Path(value))
            if clash is not None:
                raise ValueError(f"names the run's own {clash}, which it would overwrite; "
                                 f"choose another file (e.g. 'log.csv'); got {value!r}")
        return value


@declare_options(CSVLoggerConfig)
@LOGGERS.register("csv")
class CSVLogger:
    """Writes each log row as a line of a CSV file in the run directory."""

    def __init__(self, **options: Any):
        self.options = CSVLoggerConfig.validate_options("CSVLogger", options)
        self.path: Path | None = None
        self.header: list[str] = []
        self._fh: Any = None
        self._writer: Any = None

    def open(self, run_dir: Path, config: Any, resume: Resume | None) -> None:
        clash = _run_file_named(Path(run_dir), Path(self.options.path))
        if clash is not None:  # an absolute path into the run directory
            raise ValueError(f"path {self.options.path!r} names the run's own {clash}, which "
                             "it would overwrite; choose another file")
        self.path = Path(run_dir) / self.options.path
        if self.path.is_dir():
            raise ValueError(f"path {self.options.path!r} is a directory; name a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)  # path = "sub/log.csv"
        rows: list[dict[str, str]] = []
        if resume is not None and self.path.exists():
            # Keep the rows up to the checkpoint; later ones are redone by the run.
            with open(self.path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                self.header = list(reader.fieldnames or [])
                rows = [r for r in reader if int(r["generation"]) <= resume.generation]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        if self._fh is not None:
            self._fh.close()
        tmp = self.path.with_name(self.path.name + ".tmp")  # type: ignore[union-attr]
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            if self.header:
                writer = csv.DictWriter(fh, self.header)
                writer.writeheader()
                writer.writerows(rows)
        os.replace(tmp, self.path)
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, self.header) if self.header else None

    def log(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.header]
        if new:
            self._fh.flush()
            with open(self.path, newline="", encoding="utf-8") as fh:  # type: ignore[arg-type]
                old = list(csv.DictReader(fh)) if self.header else []
            self.header = self.header + new
            self._rewrite(old)
        self._writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        self._fh.flush()

    def close(self, reason: str) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
