"""The best evaluated centre of a run, kept with what `asktell eval --best` needs to evaluate
it again as it was evaluated: its generation (which keys its episodes), its number of
episodes and the task's state then (the observation normaliser it was evaluated with).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["BestCenter"]


@dataclasses.dataclass
class BestCenter:
    """The centre whose evaluation scored best so far (``None`` fields: none evaluated)."""

    value: float | None = None
    center: np.ndarray | None = None
    generation: int | None = None
    episodes: int | None = None
    task: dict[str, Any] | None = None

    def offer(self, returns: np.ndarray, center: np.ndarray, generation: int, task: Any) -> None:
        """Keep this centre if its mean return beats the best so far (``task``: the task's
        state dict now, copied)."""
        mean = float(np.mean(returns))
        if self.value is None or mean > self.value:
            self.value = mean
            self.center = np.asarray(center, dtype=np.float64)
            self.generation = int(generation)
            self.episodes = int(np.size(returns))
            self.task = _copied(task)

    def state(self) -> dict[str, Any]:
        """The runner-state keys checkpoints have always used."""
        return {
            "best_center_return": self.value,
            "best_center": self.center,
            "best_center_generation": self.generation,
            "best_center_episodes": self.episodes,
            "best_center_task": self.task,
        }

    @classmethod
    def from_state(cls, r: dict[str, Any]) -> BestCenter:
        center = r.get("best_center")
        return cls(
            r.get("best_center_return"),
            None if center is None else np.asarray(center, dtype=np.float64),
            r.get("best_center_generation"),
            r.get("best_center_episodes"),
            r.get("best_center_task"),
        )


def _copied(state: Any) -> Any:
    """A snapshot of a state dict (its arrays may be the task's live buffers)."""
    if isinstance(state, dict):
        return {k: _copied(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return state.copy()
    return state
