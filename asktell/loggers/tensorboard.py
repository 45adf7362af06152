"""TensorBoard logger: event files written with the ``tensorboard`` package's own event
writer (no TensorFlow, no PyTorch needed).

Each numeric field of a row becomes a scalar (``population/return_mean``, ...) at step =
generation, stored as a float64 tensor with the scalars plugin's metadata, so TensorBoard
plots it and reading it back gives the log's number bitwise (``simple_value`` would round
to float32). The returns are also written against environment steps, in the ``env_steps``
sub-run (tags ``vs_env_steps/...``), because TensorBoard has one step axis per event.

Each session starts with a ``SessionLog.START`` event at its first step; on resume that is
the first redone generation, and TensorBoard discards what an interrupted session wrote from
there on (its purge of orphaned data), so no step appears twice.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from asktell.config_base import Float, declare_options
from asktell.loggers._base import LoggerConfig, Resume, numeric_fields
from asktell.registry import LOGGERS

__all__ = ["TensorBoardLogger", "TensorBoardLoggerConfig"]

#: Metrics also written against environment steps.
ENV_STEP_METRICS = (
    "population/return_mean", "population/return_max", "population/best_return",
    "center/center_return_mean",
)


class TensorBoardLoggerConfig(LoggerConfig):
    kind: Literal["tensorboard"] = "tensorboard"
    requires = ("tensorboard",)
    dir: str = Field(
        "tensorboard", min_length=1,
        description="The event-file folder, relative to the run directory (or absolute); "
        "view with `tensorboard --logdir RUN_DIR/tensorboard --load_fast=false` (the fast "
        "loader skips the float64 scalars).",
    )
    flush_seconds: Float = Field(
        5.0, gt=0, description="Write buffered events to disk at least this often (and at "
        "the end); TensorBoard shows a generation once its events are on disk.",
    )


def _after_existing_files(root: Path) -> None:
    """Wait (under a second) until the clock's second is past every event file's in ``root``.

    TensorBoard reads a run's files in name order, ``events.out.tfevents.<second>.<host>.
    <pid>.<counter>``; a resume within the same second in the same process could get a
    counter that sorts first (``.10`` before ``.9``), and the restart would be read before
    the events it must drop.
    """
    seconds = [
        int(p.name.split(".")[3]) for p in root.rglob("events.out.tfevents.*")
        if p.name.split(".")[3].isdigit()
    ]
    while seconds and int(time.time()) <= max(seconds):
        time.sleep(0.05)


@declare_options(TensorBoardLoggerConfig)
@LOGGERS.register("tensorboard")
class TensorBoardLogger:
    """Writes each log row as TensorBoard scalars."""

    def __init__(self, **options: Any):
        self.options = TensorBoardLoggerConfig.validate_options("TensorBoardLogger", options)
        self.writers: dict[str, Any] = {}

    def open(self, run_dir: Path, config: Any, resume: Resume | None) -> None:
        from asktell._extras import require

        require("tensorboard", "the 'tensorboard' logger")
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._pb = event_pb2
        root = Path(run_dir) / self.options.dir
        if resume is not None:
            _after_existing_files(root)
        self.writers = {
            "generation": EventFileWriter(str(root), flush_secs=self.options.flush_seconds),
            "env_steps": EventFileWriter(
                str(root / "env_steps"), flush_secs=self.options.flush_seconds
            ),
        }
        # Every session opens with SessionLog.START at its first step: TensorBoard takes
        # the first START as the run's beginning and a later one as a restart, dropping what
        # was written at or past its step (the generations the resumed run redoes).
        start = (
            {"generation": resume.generation + 1, "env_steps": resume.env_steps + 1}
            if resume is not None else {"generation": 1, "env_steps": 1}
        )
        for axis, writer in self.writers.items():
            writer.add_event(
                event_pb2.Event(
                    wall_time=time.time(), step=start[axis],
                    session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
                )
            )

    def _summary(self, values: dict[str, float], prefix: str = "") -> Any:
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, types_pb2

        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )
        return summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(
                tag=prefix + name,
                metadata=metadata,
                tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, double_val=[float(v)]),
            )
            for name, v in values.items()
        ])

    def log(self, row: dict[str, Any]) -> None:
        values = numeric_fields(row)
        wall = float(row.get("time") or 0.0)
        event = self._pb.Event(
            wall_time=wall, step=int(row["generation"]), summary=self._summary(values)
        )
        self.writers["generation"].add_event(event)
        by_steps = {k: values[k] for k in ENV_STEP_METRICS if k in values}
        if by_steps and row.get("env_steps") is not None:
            self.writers["env_steps"].add_event(self._pb.Event(
                wall_time=wall, step=int(row["env_steps"]),
                summary=self._summary(by_steps, "vs_env_steps/"),
            ))

    def close(self, reason: str) -> None:
        writers, self.writers = self.writers, {}
        for writer in writers.values():
            writer.close()
