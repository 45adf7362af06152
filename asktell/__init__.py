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
from asktell.noise import CounterNoise, NoiseSource, NoiseTable
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
    "NoiseSource",
    "NoiseTable",
    "ReturnsError",
    "RunningStat",
    "Strategy",
    "Task",
    "TaskResult",
    "minimize",
    # loaded on first use (they import every registered plugin): see __getattr__
    "RunConfig",
    "RunResult",
    "load_config",
    "run",
    "resume",
    "load_policy",
]

_LAZY = {
    "RunConfig": "asktell.config",
    "load_config": "asktell.config",
    "RunResult": "asktell.runner",
    "run": "asktell.runner",
    "resume": "asktell.runner",
    "load_policy": "asktell.export",
}


def __getattr__(name: str):
    # The run-config layer assembles its unions from every registered plugin, so importing
    # it eagerly here would import every plugin (and let a plugin that imports
    # asktell.config recurse). Load it when first asked for.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asktell' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
