"""ARS: Mania, Guy & Recht 2018, "Simple random search provides a competitive approach to
reinforcement learning" (NeurIPS; arXiv:1803.07055), Algorithm 1 (V1, V2 and their
top-b forms V1-t, V2-t).

Each generation asks ``N = population_size / 2`` mirrored directions ``delta_k`` (the
``sigma`` here is the paper's exploration noise ``nu``), ranks the directions by
``max(r+_k, r-_k)``, keeps the best ``b = top_directions`` and moves::

    center += learning_rate / (b * sigma_R) * sum_{k in top b} (r+_k - r-_k) * delta_k

where ``sigma_R`` is the standard deviation of the ``2b`` returns used (reward-std
scaling). No fitness shaping, no optimiser state: the strongest simple baseline for
linear MuJoCo policies.

V2 differs from V1 only by normalising the policy's observations with running
statistics. In asktell that is the task's job (its observation normaliser, frozen per
generation in ``Distribution.context``), so ``version="v2"`` records that the run expects
it (:attr:`ARS.observation_normalization`) and the update is the same.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from asktell.config_base import StrictModel
from asktell.errors import ConfigError
from asktell.noise import CounterNoise, NoiseTable, mirrored, split_seeds
from asktell.registry import STRATEGIES

from ._common import check_even_population
from ._base import BaseStrategy, check_int, check_positive

__all__ = ["ARS", "ARSConfig"]


class ARSConfig(StrictModel):
    """Run-file settings of :class:`ARS` (``kind = "ars"``).

    The population is ``2 * num_directions`` (each direction is evaluated both ways).
    """

    kind: Literal["ars"] = "ars"
    num_directions: int = Field(8, ge=1, description="N: directions per generation (2N candidates).")
    top_directions: int | None = Field(
        None, ge=1, description="b: directions used in the update, best by max(r+, r-); "
        "null uses all N (V1/V2), fewer gives V1-t/V2-t. Must be <= num_directions."
    )
    learning_rate: float = Field(0.02, gt=0, description="alpha, the step size.")
    sigma: float = Field(0.03, gt=0, description="nu, the standard deviation of the exploration noise.")
    version: Literal["v1", "v2"] = Field(
        "v1", description="v2 expects the task to normalise observations (the strategy's "
        "update is the same)."
    )
    nonfinite: Literal["worst", "raise"] = Field(
        "worst", description="NaN/inf returns: rank them below every finite return, or raise."
    )

    @model_validator(mode="after")
    def _top_fits(self) -> "ARSConfig":
        """`top_directions` must be at most `num_directions`."""
        if self.top_directions is not None and self.top_directions > self.num_directions:
            raise ValueError(
                f"top_directions must be <= num_directions={self.num_directions}; "
                f"got {self.top_directions}"
            )
        return self

    def build(self, *, num_params: int, seed: int, noise=None, x0=None) -> "ARS":
        options = self.model_dump(exclude={"kind", "num_directions"})
        return ARS(num_params=num_params, population_size=2 * self.num_directions, seed=seed,
                   noise=noise, x0=x0, **options)


@STRATEGIES.register("ars")
class ARS(BaseStrategy):
    """Augmented Random Search (Mania et al. 2018): top-b mirrored directions, steps scaled
    by the standard deviation of the returns used.

    Args:
        num_params: dimension of the search space.
        population_size: ``2 * N`` candidates for ``N`` directions (even, >= 2).
        learning_rate: the paper's step size ``alpha`` (> 0).
        sigma: the paper's exploration noise ``nu`` (> 0).
        top_directions: the paper's ``b`` (``1 <= b <= N``); ``None``: all ``N``.
        version: ``"v1"`` or ``"v2"`` (V2 expects the task to normalise observations).
        seed, x0, noise, nonfinite: see :class:`~asktell.strategies.BaseStrategy`.

    Example:
        >>> import numpy as np
        >>> es = ARS(num_params=5, population_size=16, learning_rate=0.05, sigma=0.05,
        ...          top_directions=4)
        >>> for _ in range(100):
        ...     X = es.distribution.decode(es.ask())
        ...     _ = es.tell(-np.sum((X - 1.0) ** 2, axis=1))
        >>> bool(np.sum((es.center - 1.0) ** 2) < 0.05)
        True
    """

    name = "ars"
    capabilities = frozenset({"antithetic"})
    min_population_size = 2
    config_class = ARSConfig
    suite_options = {"learning_rate": 0.05, "sigma": 0.05}

    def __init__(
        self,
        num_params: int,
        population_size: int = 16,
        learning_rate: float = 0.02,
        sigma: float = 0.03,
        *,
        top_directions: int | None = None,
        version: str = "v1",
        seed: int = 0,
        x0: Any = None,
        noise: NoiseTable | CounterNoise | None = None,
        nonfinite: str = "worst",
    ):
        super().__init__(
            num_params, population_size, seed=seed, x0=x0, noise=noise, nonfinite=nonfinite
        )
        check_even_population("ARS", self.population_size, "(2 candidates per direction)")
        self.num_directions = self.population_size // 2
        self.learning_rate = check_positive("ARS", "learning_rate", learning_rate)
        self.sigma = check_positive("ARS", "sigma", sigma)
        if top_directions is None:
            self.top_directions = self.num_directions
        else:
            self.top_directions = check_int("ARS", "top_directions", top_directions, 1)
            if self.top_directions > self.num_directions:
                raise ConfigError(
                    f"ARS 'top_directions' must be <= the number of directions "
                    f"(population_size / 2 = {self.num_directions}); got {top_directions}"
                )
        if version not in ("v1", "v2"):
            raise ConfigError(f"ARS 'version' must be 'v1' or 'v2'; got {version!r}")
        self.version = version

    @property
    def observation_normalization(self) -> bool:
        """Whether this run expects the task to normalise observations (ARS V2)."""
        return self.version == "v2"

    def _sample(self, count: int) -> np.ndarray:
        return mirrored(self.noise.sample_keys(self.rng, count // 2, self.num_params))

    def _update(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        keys, _ = split_seeds(seeds[0::2])
        r_plus, r_minus = returns[0::2], returns[1::2]
        b = self.top_directions
        # Best directions first; a stable sort keeps ties in asked order (deterministic).
        order = np.argsort(-np.maximum(r_plus, r_minus), kind="stable")[:b]
        used = np.concatenate([r_plus[order], r_minus[order]])
        reward_std = float(used.std())
        if not reward_std > 0:
            # Every return used is equal: the step has no direction.
            return {"reward_std": 0.0, "update_norm": 0.0}
        coef = (r_plus[order] - r_minus[order]) * (self.learning_rate / (b * reward_std))
        step = self.noise.weighted_sum(coef, keys[order], self.num_params)
        self._center = self._center + step
        return {"reward_std": reward_std, "update_norm": float(np.linalg.norm(step))}
