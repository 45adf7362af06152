"""Evaluators turn seeds into returns wherever the compute is.

Importing this package registers the built-in evaluators in
:data:`asktell.registry.EVALUATORS`. Back-ends with optional dependencies (Dask, Gymnasium
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
