"""The contracts between strategies, evaluators and tasks.

Strategies never know which evaluator runs; evaluators never know which strategy asked.
Only seeds (int64), a :class:`~asktell.distribution.Distribution` snapshot and returns cross.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import numpy as np

from asktell.distribution import Distribution
from asktell.stats import RunningStat

__all__ = ["Strategy", "Evaluator", "Task", "TaskResult", "Evaluation", "Failure"]


@runtime_checkable
class Strategy(Protocol):
    """An evolution strategy that asks for seeds and is told returns (maximised)."""

    num_params: int
    population_size: int
    generation: int

    def ask(self) -> np.ndarray:
        """int64 seeds, shape ``(population_size,)``."""

    def tell(self, returns: Any) -> dict:
        """One return per asked seed, same order; returns a dict of metrics."""

    @property
    def distribution(self) -> Distribution: ...

    @property
    def center(self) -> np.ndarray: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclasses.dataclass
class TaskResult:
    """What a task reports for a batch of candidates."""

    returns: np.ndarray  # float64 (n,)
    steps: np.ndarray  # int64 (n,): environment steps (1 per call for functions)
    obs_stats: RunningStat | None = None
    episodes: np.ndarray | None = None  # int64 (n,) episodes run per candidate
    truncated: np.ndarray | None = None  # int64 (n,) episodes ended by the step cap


@runtime_checkable
class Task(Protocol):
    """The thing being optimised. Picklable, so it can travel to workers.

    Required: ``evaluate`` and a ``num_params`` attribute (``None`` when the task accepts any
    dimension). Optional hooks, used by the runner when present (a task without them is
    stateless):

    * ``context() -> dict``: per-generation facts every evaluator must apply identically
      (e.g. frozen observation-normalisation statistics, the current episode step cap); the
      runner stores them in ``Distribution.context`` before evaluating.
    * ``observe(evaluation) -> None``: fold an evaluation's statistics (``obs_stats``,
      episode lengths) into the task's running state, in the runner's process only.
    * ``evaluate_center(distribution, episodes) -> np.ndarray``: returns of the noise-free
      centre, one per episode, for periodic evaluation.
    * ``state_dict() -> dict`` / ``load_state_dict(state)``: arrays and scalars, for
      checkpoints.
    """

    num_params: int | None

    def evaluate(
        self, params: np.ndarray, seeds: np.ndarray, distribution: Distribution
    ) -> TaskResult:
        """Evaluate candidates ``params`` (``(n, num_params)``) named by ``seeds``."""


@dataclasses.dataclass(frozen=True)
class Failure:
    """A candidate whose evaluation raised."""

    index: int
    seed: int
    error: str
    generation: int = 0


@dataclasses.dataclass
class Evaluation:
    """Per-candidate results of one evaluated batch, in seed order.

    Attributes:
        returns: float64 ``(n,)``; NaN for failed candidates.
        steps: int64 ``(n,)`` environment steps (function evaluations for functions).
        failures: the candidates whose evaluation raised (index, seed, error).
        obs_stats: merged observation statistics gathered during the batch, if any.
        episodes: int64 ``(n,)`` episodes per candidate, if the task reports them.
        truncated: int64 ``(n,)`` episodes ended by the step cap, if reported.
    """

    returns: np.ndarray
    steps: np.ndarray
    failures: list[Failure] = dataclasses.field(default_factory=list)
    obs_stats: RunningStat | None = None
    episodes: np.ndarray | None = None
    truncated: np.ndarray | None = None

    @property
    def total_steps(self) -> int:
        return int(np.sum(self.steps))

    @property
    def failed_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.returns), dtype=bool)
        for f in self.failures:
            mask[f.index] = True
        return mask


@runtime_checkable
class Evaluator(Protocol):
    """Turns seeds into returns for one task, wherever the compute is."""

    def evaluate(self, distribution: Distribution, seeds: np.ndarray) -> Evaluation: ...

    def close(self) -> None:
        """Release resources; idempotent."""


def as_returns(returns: Any, *, expected: int, generation: int) -> np.ndarray:
    """Validate what was passed to ``tell`` and return it as a float64 ``(expected,)`` array.

    Accepts an :class:`Evaluation`, a sequence or a 1-D array of real numbers. Raises
    :class:`~asktell.errors.ReturnsError` naming what was expected and what came.
    """
    from asktell.errors import ReturnsError

    if isinstance(returns, Evaluation):
        returns = returns.returns
    try:
        arr = np.asarray(returns)
    except (ValueError, TypeError) as exc:  # ragged nested sequences
        raise ReturnsError(
            f"tell() expects {expected} numeric returns (generation {generation}); "
            f"could not read them as an array: {exc}"
        ) from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ReturnsError(
            f"tell() expects {expected} real numbers (generation {generation}); got an "
            f"array of dtype {arr.dtype}"
        )
    if arr.ndim != 1:
        raise ReturnsError(
            f"tell() expects a 1-D array of {expected} returns (generation {generation}); "
            f"got shape {arr.shape}"
        )
    if arr.size != expected:
        raise ReturnsError(
            f"tell() got {arr.size} returns for {expected} asked seeds (generation {generation})"
        )
    return arr.astype(np.float64)
