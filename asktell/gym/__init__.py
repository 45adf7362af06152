"""Gymnasium tasks: any environment, learned through numpy policies by any strategy.

Importing this package does not import gymnasium; environments are built on first use.

* :class:`GymTask` / :class:`GymTaskConfig`: the task (``kind = "gym"`` in run files).
* :class:`MLPPolicy`, :class:`LinearPolicy`: batched numpy policies.
* :class:`ObsNormalizer`: the frozen per-generation observation normaliser.
* :func:`train`: a minimal ask -> evaluate -> tell loop for scripts and benchmarks.

The vectorised evaluator is :class:`asktell.evaluators.VectorEnvEvaluator`.
"""

from .normalizer import ObsNormalizer
from .policies import ActionSpec, LinearPolicy, MLPPolicy, ObservationSpec, batched_matvec
from .task import STEP_CAPS, GymTask, GymTaskConfig
from .train import TrainResult, train

__all__ = [
    "ActionSpec",
    "GymTask",
    "GymTaskConfig",
    "LinearPolicy",
    "MLPPolicy",
    "ObsNormalizer",
    "ObservationSpec",
    "STEP_CAPS",
    "TrainResult",
    "batched_matvec",
    "train",
]
