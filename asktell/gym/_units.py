"""The bookkeeping of one batch in the slot engine: the queue of units (one per candidate
and episode, in candidate order) and what each unit produced."""

from __future__ import annotations

import numpy as np

from asktell.errors import ConfigError
from asktell.protocol import Failure

from .envs import nonfinite_error
from .plan import RolloutPlan

__all__ = ["UnitQueue", "PENDING", "FAILED", "ISOLATED"]

PENDING, FAILED, ISOLATED = 0, 1, 2


class UnitQueue:
    """The units of a batch of candidates following ``plan``, and their results.

    Args:
        plan: the task's rollout plan of the batch (seeds, record mask, cap, normaliser).
        params: the candidates' parameters ``(n, num_params)``.
        env_id: named in the error of a non-finite observation or reward.
    """

    def __init__(self, plan: RolloutPlan, params: np.ndarray, env_id: str):
        self.plan = plan
        self.env_id = env_id
        self.n = n = plan.n
        self.E = E = plan.episodes
        self.params = params
        self.ep_seeds = plan.episode_seeds
        self.record = plan.record
        self.recording = plan.recording
        self.num_failed = 0
        self.ep_ret = np.zeros((n, E))
        self.ep_steps = np.zeros((n, E), dtype=np.int64)
        self.ep_trunc = np.zeros((n, E), dtype=np.int64)
        self.status = np.full(n, PENDING, dtype=np.int64)
        self.errors: dict[int, str] = {}
        self.recorded: dict[tuple[int, int], list] = {}
        self._next = 0  # position in the (candidate, episode) queue
        self._units = n * E

    @classmethod
    def checked(cls, plan: RolloutPlan, params: np.ndarray, task) -> UnitQueue:
        """The queue of ``task``'s candidates ``params``, refused if they are not the task's
        size (the words of ``GymTask.evaluate``)."""
        if params.shape[1] != task.num_params:
            raise ConfigError(
                f"GymTask {task.env_id} expects num_params={task.num_params}; got candidates "
                f"with {params.shape[1]} parameters"
            )
        return cls(plan, params, task.env_id)

    def has_work(self) -> bool:
        self._skip()
        return self._next < self._units

    def _skip(self) -> None:
        E = self.E
        while self._next < self._units and self.status[self._next // E] != PENDING:
            self._next += 1

    def next_unit(self) -> tuple[int, int] | None:
        self._skip()
        if self._next >= self._units:
            return None
        c, e = divmod(self._next, self.E)
        self._next += 1
        return c, e

    def unit_seed(self, c: int, e: int) -> int:
        return int(self.ep_seeds[c, e])

    def record_slot(self, slot_c: np.ndarray) -> np.ndarray:
        return (slot_c >= 0) & self.record[np.maximum(slot_c, 0)]

    def failed_slot(self, slot_c: np.ndarray) -> np.ndarray:
        return (slot_c >= 0) & (self.status[np.maximum(slot_c, 0)] != PENDING)

    def finish(self, c: int, e: int, value: float, steps: int, truncated: bool) -> None:
        self.ep_ret[c, e] = value
        self.ep_steps[c, e] = steps
        self.ep_trunc[c, e] = int(truncated)

    def fail(self, c: int, what: str, value, step: int, e: int) -> None:
        if self.status[c] != PENDING:
            return
        self.status[c] = FAILED
        self.num_failed += 1
        exc = nonfinite_error(self.env_id, what, value, step, e, int(self.ep_seeds[c, e]))
        self.errors[c] = Failure.describe(exc)

    def isolate(self, c: int) -> None:
        # Its finished episodes and recorded observations are ignored; it is re-run alone.
        if self.status[c] == PENDING:
            self.status[c] = ISOLATED
