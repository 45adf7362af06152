"""The rollout plan of a batch: what every evaluator of a Gym task must do, declared once.

:meth:`GymTask.plan <asktell.gym.GymTask.plan>` turns a generation's distribution and the
candidates' seeds into a :class:`RolloutPlan`; the serial rollouts (``GymTask.evaluate``,
which Dask workers run too) and the slot engine (:mod:`asktell.gym.slots`) both follow it,
so episode seeds, observation recording, caps and normalisation cannot drift apart.

A *centre plan* (see :meth:`GymTask.center_plan <asktell.gym.GymTask.center_plan>`) is a
distribution of sigma 0 whose context carries :data:`CENTER_EPISODES`: its seeds
``0, 1, ...`` name the centre's evaluation episodes, one episode each, reset with seeds
of their own stream, full length, nothing recorded.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .normalizer import ObsNormalizer

__all__ = ["RolloutPlan", "CENTER_EPISODES"]

#: The context key of a centre plan (its value: ``True``).
CENTER_EPISODES = "center_episodes"


@dataclasses.dataclass(frozen=True, eq=False)
class RolloutPlan:
    """The episodes of a batch of ``n`` candidates.

    Attributes:
        generation: the generation the batch belongs to.
        episode_seeds: int64 ``(n, episodes)`` reset seed of every episode.
        record: bool ``(n,)`` candidates whose observations feed the statistics.
        cap: the step cap below the environment's time limit (``None``: none; at least 1).
        normalize: the generation's frozen observation normaliser.
        seeded: every episode must start from its own seed (a centre plan): an engine
            whose environments reset themselves cannot run it and must fall back to
            single environments.
        run_seed: the task's run seed (seeds whole-environment resets, see
            :meth:`vector_reset_seed`).
    """

    generation: int
    episode_seeds: np.ndarray
    record: np.ndarray
    cap: int | None
    normalize: ObsNormalizer
    seeded: bool = False
    run_seed: int = 0

    @property
    def n(self) -> int:
        return int(self.episode_seeds.shape[0])

    @property
    def episodes(self) -> int:
        """Episodes per candidate."""
        return int(self.episode_seeds.shape[1])

    @property
    def recording(self) -> bool:
        return bool(self.record.any())

    def vector_reset_seed(self, worker: int) -> int:
        """The seed of a whole-environment reset in process ``worker`` (vector envs that
        reset themselves cannot take episode seeds)."""
        from .seeding import vector_reset_seed

        return vector_reset_seed(self.run_seed, self.generation, worker)
