"""The logger contract: what a logger is opened with, what it receives, how it is closed.

A logger mirrors ``log.jsonl`` into a tool people already watch runs in (a CSV file,
TensorBoard, MLflow, Weights & Biases). ``log.jsonl`` stays the record a run is resumed and
checked against; a logger is a copy of its rows, written after each row is committed.
"""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from asktell._extras import require
from asktell.config_base import PluginConfig

__all__ = ["Logger", "LoggerConfig", "Resume", "metric_name", "numeric_fields", "flat_config"]


@dataclasses.dataclass(frozen=True)
class Resume:
    """Where a resumed run continues: the checkpoint's generation and environment steps.

    Rows the logger received for later generations (written before an interruption) are
    redone by the run; a logger drops them, or keeps them and skips the repeats, so no step
    appears twice.
    """

    generation: int
    env_steps: int


@runtime_checkable
class Logger(Protocol):
    """What the runner calls, in order: ``open`` once, ``log`` per generation, ``close`` once.

    ``log`` receives the generation's row exactly as written to ``log.jsonl`` (JSON-ready
    values; ``None`` where a field is undefined); a logger must not modify it. ``close`` is
    called on every exit path with why the run ended.
    """

    def open(self, run_dir: Path, config: Any, resume: Resume | None) -> None: ...

    def log(self, row: dict[str, Any]) -> None: ...

    def close(self, reason: str) -> None: ...


class LoggerConfig(PluginConfig):
    """Base of a logger's Config: ``kind`` plus the logger's options.

    ``build()`` makes the logger; ``requires`` names the optional modules the logger imports
    (checked before the run directory is created, so a missing extra costs nothing).
    """

    requires: ClassVar[tuple[str, ...]] = ()

    def check_available(self) -> None:
        """Raise :class:`~asktell.errors.MissingDependencyError` (with the install command)
        when a module this logger needs is missing."""
        for module in self.requires:
            require(module, f"the {self.kind!r} logger")  # type: ignore[attr-defined]

    def build(self) -> Logger:
        return self.plugin(**self.options())  # type: ignore[misc]


# Which panel a log field goes to in the dashboards (TensorBoard, MLflow, W&B group metric
# names by the part before the slash). Fields not named here are the strategy's own metrics.
_GROUPS = {
    "population": (
        "return_mean", "return_std", "return_max", "return_min", "best_return",
        "episode_length_mean", "num_failed", "num_nonfinite", "fraction_truncated",
    ),
    "center": (
        "center_return_mean", "center_return_std", "center_rank", "target_check_episodes",
        "target_check_return", "target_confirm_return",
    ),
    "progress": (
        "generation", "env_steps", "episodes", "generation_steps", "generation_episodes",
        "obs_count", "wall_seconds",
    ),
}
_GROUP_OF = {field: group for group, fields in _GROUPS.items() for field in fields}


def metric_name(field: str) -> str:
    """``return_mean`` -> ``population/return_mean``; timings under ``timing/``, the
    strategy's metrics (``grad_norm``, ``sigma``, ...) under ``strategy/``."""
    if field.startswith("seconds_"):
        return f"timing/{field}"
    return f"{_GROUP_OF.get(field, 'strategy')}/{field}"


def numeric_fields(row: dict[str, Any]) -> dict[str, float]:
    """The row's numbers by metric name: ``None`` (undefined this generation), strings
    (``target_check``) and ``time`` (the row's timestamp, used as the event time) left out.
    Floats are passed as they are, so a backend that keeps float64 keeps them bitwise."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key == "time" or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        out[metric_name(key)] = value
    return out


def flat_config(config: Any) -> dict[str, str]:
    """The resolved run config as ``{"strategy.sigma": "0.02", ...}`` (parameters for
    MLflow and W&B)."""
    data = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
    out: dict[str, str] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = str(value)

    walk(data, "")
    return out
