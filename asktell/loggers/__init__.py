"""Loggers: each generation's log row mirrored into CSV, TensorBoard, MLflow or W&B.

Configured in a run file as a list of tables, ``[[output.loggers]] kind = "csv"``; built-in
kinds are registered with ``@LOGGERS.register(...)`` and third-party ones through the
entry-point group ``asktell.loggers``. See docs/loggers.md.
"""

from asktell.loggers._base import Logger, LoggerConfig, Resume, metric_name, numeric_fields
from asktell.loggers._set import LoggerSet, check_loggers

__all__ = [
    "Logger", "LoggerConfig", "Resume", "LoggerSet", "check_loggers", "metric_name",
    "numeric_fields",
]
