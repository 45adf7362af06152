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
generation in ``Distribution.context``), so V1 and V2 are the same strategy here with
different task settings.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from asktell.config_base import Float, Int, declare_options
from asktell.noise import mirrored, split_seeds
from asktell.registry import STRATEGIES
from asktell.shaping import tame

from ._base import BaseStrategy
from ._options import PairedConfig
from ._parts import PARTS_CAPABILITY, GradientPartsConfig, parted_sum

__all__ = ["ARS", "ARSConfig"]


class ARSConfig(PairedConfig, GradientPartsConfig):
    """Run-file settings of :class:`ARS` (``kind = "ars"``)."""

    kind: Literal["ars"] = "ars"
    population_size: Int = Field(
        16, ge=2, description="2N candidates for N directions (each is evaluated both ways)."
    )
    top_directions: Int | None = Field(
        None,
        ge=1,
        description="b: directions used in the update, best by max(r+, r-); null uses all N "
        "(V1/V2), fewer gives V1-t/V2-t.",
    )
    learning_rate: Float = Field(0.02, gt=0, description="alpha, the step size.")
    sigma: Float = Field(
        0.03, gt=0, description="nu, the standard deviation of the exploration noise."
    )

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        """Older files' keys still load, with a DeprecationWarning: `num_directions = N` means
        `population_size = 2N`; `version` ("v1"/"v2") is ignored (V2's observation
        normalisation is a task setting; the update is the same)."""
        if not isinstance(data, dict) or not {"num_directions", "version"} & data.keys():
            return data
        data = dict(data)
        if "version" in data:
            version = data.pop("version")
            if version not in ("v1", "v2"):
                raise ValueError(f"version must be 'v1' or 'v2' (and is ignored); got {version!r}")
            warnings.warn(
                "ARS 'version' is ignored and will be removed: V2's observation normalisation "
                "is a task setting",
                DeprecationWarning,
                stacklevel=2,
            )
        if "num_directions" in data:
            n = data.pop("num_directions")
            if "population_size" in data:
                raise ValueError("give population_size or num_directions (deprecated), not both")
            warnings.warn(
                "ARS 'num_directions' is deprecated; write population_size = 2 * num_directions",
                DeprecationWarning,
                stacklevel=2,
            )
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"num_directions must be an integer >= 1; got {n!r}")
            data["population_size"] = 2 * int(n)
        return data

    @model_validator(mode="after")
    def _top_fits(self) -> "ARSConfig":
        """`top_directions` must be at most the number of directions, `population_size / 2`."""
        if self.top_directions is not None and self.top_directions > self.population_size // 2:
            raise ValueError(
                "top_directions must be <= the number of directions (population_size / 2 = "
                f"{self.population_size // 2}); got {self.top_directions}"
            )
        return self


@STRATEGIES.register("ars")
@declare_options(ARSConfig, positional=("population_size", "learning_rate", "sigma"))
class ARS(BaseStrategy):
    """Augmented Random Search (Mania et al. 2018): top-b mirrored directions, steps scaled
    by the standard deviation of the returns used.

    Args:
        num_params, seed, x0, noise: see :class:`~asktell.strategies.BaseStrategy`.

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
    capabilities = frozenset({"antithetic", PARTS_CAPABILITY})
    #: The step's noise sum computed elsewhere (see :attr:`OpenAIES.noise_sum
    #: <asktell.strategies.OpenAIES.noise_sum>`); ``None``: summed here.
    noise_sum: Any = None
    suite_options = {"learning_rate": 0.05, "sigma": 0.05}

    def _setup(self, cfg: ARSConfig) -> None:
        self.num_directions = self.population_size // 2
        self.gradient_parts = cfg.gradient_parts
        self.learning_rate = cfg.learning_rate
        self.sigma = cfg.sigma
        self.top_directions = (
            self.num_directions if cfg.top_directions is None else cfg.top_directions
        )

    def _sample(self, count: int) -> np.ndarray:
        return mirrored(self.noise.sample_keys(self.rng, count // 2, self.num_params))

    def _update(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        keys, _ = split_seeds(seeds[0::2])
        returns = tame(returns)  # the step below is scale-free; huge returns must not overflow
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
        step = parted_sum(self, coef, keys[order])
        self._center = self._center + step
        return {"reward_std": reward_std, "update_norm": float(np.linalg.norm(step))}
