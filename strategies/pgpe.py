"""PGPE: Sehnke, Osendorfer, Rückstieß, Graves, Peters & Schmidhuber 2010,
"Parameter-exploring policy gradients" (Neural Networks 23(4):551-559), with symmetric
sampling and per-parameter step sizes, and the centre moved by ClipUp (Toklu, Liskowski &
Srivastava 2020, "ClipUp: A Simple and Powerful Optimizer for Distribution-based Policy
Evolution"), the configuration EvoTorch and EvoJAX use by default.

Each generation asks ``population_size / 2`` symmetric pairs ``center +- eps_i`` with
``eps_i = sigma * z_i``, shapes the returns (centred ranks by default) into ``r+_i, r-_i``
and estimates, with ``n`` pairs and the baseline ``b`` (the mean shaped return)::

    g_center = 1/n sum_i (r+_i - r-_i) / 2 * eps_i
    g_sigma  = 1/n sum_i ((r+_i + r-_i) / 2 - b) * (eps_i**2 - sigma**2) / sigma

The centre takes an optimiser step on ``g_center`` (ClipUp normalises it, so its learning
rate is a distance per generation); ``sigma`` takes a plain step on ``g_sigma``, bounded to
a relative change of ``max_sigma_change`` per generation (as EvoTorch and EvoJAX do).
Memory and time are linear in the dimension.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from asktell.config_base import Float, Int, declare_options
from asktell.distribution import Distribution
from asktell.noise import mirrored
from asktell.optim import OptimizerChoice, make_optimizer
from asktell.registry import STRATEGIES
from asktell.shaping import get_shaping
from asktell.state_schema import Entry

from ._base import BaseStrategy
from ._common import fold_by_key, noise_moments
from ._options import GradientConfig, PairedConfig, PerCoordinateSigmaConfig, per_coordinate as _per_coordinate

__all__ = ["PGPE", "PGPEConfig"]


class PGPEConfig(PerCoordinateSigmaConfig, GradientConfig, PairedConfig):
    """Run-file settings of :class:`PGPE` (``kind = "pgpe"``)."""

    kind: Literal["pgpe"] = "pgpe"
    population_size: Int = Field(
        100, ge=2, description="Candidates per generation: population_size / 2 symmetric pairs."
    )
    center_learning_rate: Float = Field(
        0.075,
        gt=0,
        description="Learning rate of the centre's optimiser (with ClipUp: the step length "
        "per generation; its max_speed defaults to twice this).",
    )
    sigma_learning_rate: Float = Field(
        0.1, gt=0, description="Learning rate of the per-parameter step sizes."
    )
    max_sigma_change: Float = Field(
        0.2, gt=0, lt=1, description="Largest relative change of each sigma per generation."
    )
    optimizer: OptimizerChoice = Field(
        "clipup",
        description="Optimiser of the centre (ClipUp, as EvoTorch and EvoJAX); in Python "
        "also an asktell.optim.Optimizer instance.",
    )


@STRATEGIES.register("pgpe")
@declare_options(PGPEConfig, positional=("population_size", "sigma"))
class PGPE(BaseStrategy):
    """PGPE (Sehnke et al. 2010) with symmetric sampling, adaptive per-parameter sigma and
    ClipUp (Toklu et al. 2020).

    A strong default for neural-network policies (EvoTorch's and EvoJAX's recommendation):
    step sizes adapt per parameter at linear cost, and ClipUp's normalised, speed-limited
    steps make the centre's learning rate easy to choose.

    Args:
        num_params, seed, x0, noise: see :class:`~asktell.strategies.BaseStrategy`.

    Example:
        >>> import numpy as np
        >>> es = PGPE(num_params=5, population_size=20, sigma=0.3, center_learning_rate=0.05)
        >>> for _ in range(200):
        ...     X = es.distribution.decode(es.ask())
        ...     _ = es.tell(-np.sum((X - 1.0) ** 2, axis=1))
        >>> bool(np.sum((es.center - 1.0) ** 2) < 0.05)
        True
    """

    name = "pgpe"
    capabilities = frozenset({"antithetic", "per_parameter_sigma"})
    suite_options = {"sigma": 0.3, "center_learning_rate": 0.05}

    def _setup(self, cfg: PGPEConfig) -> None:
        self.sigma = _per_coordinate(cfg.sigma, self.num_params)
        self.center_learning_rate = cfg.center_learning_rate
        self.sigma_learning_rate = cfg.sigma_learning_rate
        self.max_sigma_change = cfg.max_sigma_change
        self.shaping = cfg.shaping
        self._shape = get_shaping(cfg.shaping)
        self.optimizer = make_optimizer(
            cfg.optimizer, self.num_params, self.center_learning_rate, **cfg.optimizer_options
        )

    def _sample(self, count: int) -> np.ndarray:
        return mirrored(self.noise.sample_keys(self.rng, count // 2, self.num_params))

    def _make_distribution(self) -> Distribution:
        return Distribution(self._center, self.sigma, self.noise, self.generation)

    def _update(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        w = self._shape(returns)
        num_pairs = returns.size // 2
        # Per key: (r+ - r-) / 2 from the signed fold, (r+ + r-) / 2 - b from the unsigned one.
        keys, diff, total = fold_by_key(seeds, 0.5 * w, 0.5 * (w - w.mean()))
        sum_z, sum_z2 = noise_moments(self.noise, keys, diff, total, self.num_params)
        # With eps = sigma * z: g_center = sigma * sum(diff z) / n and
        # g_sigma = sigma * sum(total (z**2 - 1)) / n.
        grad_center = self.sigma * sum_z / num_pairs
        grad_sigma = self.sigma * (sum_z2 - total.sum()) / num_pairs
        update = self.optimizer.step(grad_center)
        self._center = self._center + update
        lo = self.sigma * (1.0 - self.max_sigma_change)
        hi = self.sigma * (1.0 + self.max_sigma_change)
        self.sigma = np.clip(self.sigma + self.sigma_learning_rate * grad_sigma, lo, hi)
        return {
            "grad_norm": float(np.linalg.norm(grad_center)),
            "update_norm": float(np.linalg.norm(update)),
            "sigma_mean": float(self.sigma.mean()),
        }

    def _state(self) -> dict[str, Any]:
        state = {"sigma": self.sigma.copy()}
        state.update(self._prefixed("optimizer", self.optimizer.state_dict()))
        return state

    def _state_schema(self) -> dict[str, Entry]:
        schema = {"sigma": Entry("array", shape=("n",), positive=True)}
        schema.update(self._prefixed("optimizer", self.optimizer.state_schema()))
        return schema

    def _load_state(self, state: dict[str, Any]) -> None:
        self.sigma = np.array(state["sigma"], dtype=np.float64)
        self.optimizer._assign(self._unprefixed("optimizer", state))
