"""The errors asktell raises.

Every error derives from :class:`AsktellError` *and* from the builtin that fits it, so
``except ValueError`` keeps working for callers who do not know asktell, while
``except AsktellError`` catches everything the library raises on purpose.
"""

from __future__ import annotations

__all__ = [
    "AsktellError",
    "ConfigError",
    "AskTellOrderError",
    "ReturnsError",
    "EvaluationError",
    "CandidateFailedError",
    "MissingDependencyError",
    "CheckpointError",
]


class AsktellError(Exception):
    """Base class of every error raised on purpose by asktell."""


class ConfigError(AsktellError, ValueError):
    """An argument or configuration value breaks a rule (names the field, the rule, the value)."""


class AskTellOrderError(AsktellError, RuntimeError):
    """``tell`` was called without an outstanding ``ask`` (or twice for one ``ask``)."""


class ReturnsError(AsktellError, ValueError):
    """The returns given to ``tell`` have the wrong count, shape, type or non-finite values."""


class EvaluationError(AsktellError, RuntimeError):
    """An evaluator could not produce returns for a batch."""


class CandidateFailedError(EvaluationError):
    """A candidate's evaluation raised; names the generation, candidate index and seed."""

    def __init__(self, message: str, *, generation: int, index: int, seed: int, error: str):
        super().__init__(message)
        self.generation = generation
        self.index = index
        self.seed = seed
        self.error = error


class MissingDependencyError(AsktellError, ImportError):
    """An optional back-end is not installed; the message gives the pip command."""


class CheckpointError(AsktellError, ValueError):
    """A checkpoint is missing, corrupted, truncated, foreign or does not match the run."""
