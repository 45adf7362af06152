"""Gymnasium tasks: any environment, learned through numpy policies by any strategy.

Importing this package does not import gymnasium; environments are built on first use.

* :class:`GymTask` / :class:`GymTaskConfig`: the task (``kind = "gym"`` in run files).
* :class:`RolloutPlan`: the episodes of a batch, declared by ``GymTask.plan`` and followed by
  the serial rollouts and the slot engine (:mod:`asktell.gym.slots`) alike.
* :class:`MLPPolicy`, :class:`LinearPolicy`: batched numpy policies.
* :class:`ObsNormalizer`: the frozen per-generation observation normaliser.
* :func:`train`: a minimal ask -> evaluate -> tell loop for scripts and benchmarks.

The vectorised evaluator, :class:`asktell.evaluators.VectorEnvEvaluator`, runs the task's
slot engine (:class:`asktell.gym.slots.SlotEngine`).
"""

from .normalizer import ObsNormalizer
from .policies import ActionSpec, LinearPolicy, MLPPolicy, ObservationSpec, batched_matvec
from .options import STEP_CAPS, GymTaskConfig
from .plan import RolloutPlan
from .task import GymTask
from .train import TrainResult, train

__all__ = [
    "ActionSpec",
    "GymTask",
    "GymTaskConfig",
    "LinearPolicy",
    "MLPPolicy",
    "ObsNormalizer",
    "ObservationSpec",
    "RolloutPlan",
    "STEP_CAPS",
    "TrainResult",
    "batched_matvec",
    "train",
]
