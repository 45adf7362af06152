"""What one round of a :class:`~asktell.evaluators._vector_pool.WorkerPool` has back: its
parts (``(offset, evaluation)``, in the order they came) and their tally (candidates,
episodes, environment steps) held against a straggler-tolerant round's share.

Plain records, no processes: the pool fills them, and the vector evaluator builds its
batch's result from :func:`empty_block`.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import numpy as np

from asktell.protocol import Evaluation

__all__ = ["Round", "empty_block"]


def empty_block(n: int) -> Evaluation:
    """A block of ``n`` candidates filled one at a time (Gym results carry episode counts)."""
    out = Evaluation.empty(n)
    out.episodes = np.zeros(n, dtype=np.int64)
    out.truncated = np.zeros(n, dtype=np.int64)
    return out


@dataclasses.dataclass
class Round:
    """One :meth:`WorkerPool.run <asktell.evaluators._vector_pool.WorkerPool.run>` call's
    bookkeeping."""

    id: int
    seeds: np.ndarray
    retries: int
    generation: int
    payload: bytes  # the distribution, pickled once
    queue: collections.deque  # (offset, size, alone) not started yet
    parts: list = dataclasses.field(default_factory=list)
    name: Any = None  # the caller's name for the round (node mode: its round key)
    done: int = 0
    episodes: int = 0
    steps: int = 0

    def take(self, offset: int, part: Evaluation) -> None:
        self.parts.append((offset, part))
        n = len(part.returns)
        self.done += n
        self.episodes += int(np.sum(part.episodes)) if part.episodes is not None else n
        self.steps += int(np.sum(part.steps))

    def share_met(self, share) -> bool:
        """Has this round done its ``share`` ``(candidates, episodes, steps)`` (``None``s
        are no rule)?"""
        c, e, s = share
        return (
            (c is None or self.done >= c)
            and (e is None or self.episodes >= e)
            and (s is None or self.steps >= s)
        )
