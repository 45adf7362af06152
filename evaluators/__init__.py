"""Evaluators turn seeds into returns wherever the compute is.

Each module registers its evaluator with ``@EVALUATORS.register("name")``;
:data:`asktell.registry.EVALUATORS` imports this package on its first lookup. Back-ends with optional dependencies (Dask, Gymnasium
vector environments) import those dependencies only when constructed.
"""

from .dask import DaskEvaluator, DaskEvaluatorConfig
from .serial import SerialEvaluator, SerialEvaluatorConfig
from .vector import VectorEnvEvaluator, VectorEnvEvaluatorConfig

__all__ = [
    "DaskEvaluator",
    "DaskEvaluatorConfig",
    "SerialEvaluator",
    "SerialEvaluatorConfig",
    "VectorEnvEvaluator",
    "VectorEnvEvaluatorConfig",
]
