"""Running statistics that merge exactly across workers (counts, sums, sums of squares)."""

from __future__ import annotations

import numpy as np

__all__ = ["RunningStat"]


class RunningStat:
    """Mean and standard deviation of vectors, mergeable across processes.

    Keeps ``count``, ``sum`` and ``sumsq`` in float64 (as the OpenAI implementation does), so
    merging the statistics of several workers in any order gives the same totals.

    Args:
        shape: shape of one observation.
        std_floor: the smallest standard deviation reported (avoids dividing by ~0).
    """

    def __init__(self, shape: tuple[int, ...], std_floor: float = 1e-2):
        self.shape = tuple(shape)
        self.std_floor = float(std_floor)
        self.count = 0.0
        self.sum = np.zeros(self.shape, dtype=np.float64)
        self.sumsq = np.zeros(self.shape, dtype=np.float64)

    def push(self, x: np.ndarray) -> None:
        """Add one observation, or a batch whose leading axis is the batch."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape == self.shape:
            x = x[None]
        self.sum += x.sum(axis=0)
        self.sumsq += np.square(x).sum(axis=0)
        self.count += x.shape[0]

    def merge(self, other: RunningStat) -> None:
        """Add another worker's statistics to these."""
        self.sum += other.sum
        self.sumsq += other.sumsq
        self.count += other.count

    @property
    def mean(self) -> np.ndarray:
        return self.sum / max(self.count, 1.0)

    @property
    def std(self) -> np.ndarray:
        var = self.sumsq / max(self.count, 1.0) - np.square(self.mean)
        return np.sqrt(np.maximum(var, self.std_floor**2))

    def state_dict(self) -> dict[str, np.ndarray | float]:
        return {"count": self.count, "sum": self.sum.copy(), "sumsq": self.sumsq.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.count = float(state["count"])
        self.sum = np.array(state["sum"], dtype=np.float64).reshape(self.shape)
        self.sumsq = np.array(state["sumsq"], dtype=np.float64).reshape(self.shape)
