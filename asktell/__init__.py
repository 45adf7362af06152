"""asktell: evolution strategies that scale.

Strategies ``ask()`` for seeds and are ``tell()``-ed returns (maximised); evaluators turn
seeds into returns wherever the compute is. See ``docs/`` for the guide.
"""

from asktell._version import __version__
from asktell.distribution import Distribution
from asktell.errors import (
    AsktellError,
    AskTellOrderError,
    CandidateFailedError,
    CheckpointError,
    ConfigError,
    EvaluationError,
    MissingDependencyError,
    ReturnsError,
)
from asktell.minimize import MinimizeResult, minimize
from asktell.noise import CounterNoise, NoiseTable
from asktell.protocol import Evaluation, Evaluator, Failure, Strategy, Task, TaskResult
from asktell.stats import RunningStat
from asktell.tasks import FunctionTask

__all__ = [
    "__version__",
    "AskTellOrderError",
    "AsktellError",
    "CandidateFailedError",
    "CheckpointError",
    "ConfigError",
    "CounterNoise",
    "Distribution",
    "Evaluation",
    "EvaluationError",
    "Evaluator",
    "Failure",
    "FunctionTask",
    "MinimizeResult",
    "MissingDependencyError",
    "NoiseTable",
    "ReturnsError",
    "RunningStat",
    "Strategy",
    "Task",
    "TaskResult",
    "minimize",
]
