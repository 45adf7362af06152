"""Natural Evolution Strategies: Wierstra, Schaul, Glasmachers, Sun, Peters & Schmidhuber
2014, "Natural Evolution Strategies" (JMLR 15:949-980).

Both strategies follow the natural gradient of the expected (utility-shaped) return with
respect to the parameters of a Gaussian, using the paper's NES utilities
(:func:`asktell.shaping.nes_utilities`) and its default learning rates.

* :class:`SNES` (separable NES, paper Algorithm 6): a centre and one step size per
  parameter; memory and time linear in the dimension, so it scales to large problems.
* :class:`XNES` (exponential NES, paper Algorithm 5): a full covariance ``sigma**2 B B^T``
  with ``det B = 1``, updated through the exponential map. The factor ``B`` travels in the
  :class:`~asktell.distribution.Distribution`, so seeds decode through it and evaluators
  stay unchanged. Each generation costs an ``O(d**3)`` eigendecomposition and the learning
  rate of the shape shrinks like ``d**-1.5``: xNES is for small problems (up to a few
  hundred parameters); :class:`XNES` refuses dimensions whose factor would not fit in
  ``max_factor_bytes``.

A candidate named by a seed is ``x = center + sigma * (B @ s)`` with ``s = sign * eps(key)``
(``B`` omitted for SNES, ``sigma`` per parameter). The update recomputes ``s`` from the
seeds, never from decoded candidates.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from asktell.config_base import Float, declare_options
from asktell.distribution import Distribution
from asktell.registry import STRATEGIES
from asktell.shaping import nes_utilities
from asktell.state_schema import Entry

from ._base import BaseStrategy
from ._common import expm_sym, fold_by_key, noise_moments, signed_rows
from ._options import FactorMemoryConfig, PerCoordinateSigmaConfig, SelfAdaptingConfig, per_coordinate as _per_coordinate

__all__ = [
    "NESConfig",
    "SNES",
    "SNESConfig",
    "XNES",
    "XNESConfig",
    "snes_sigma_rate",
    "xnes_rates",
]


def snes_sigma_rate(num_params: int) -> float:
    """SNES step-size learning rate ``(3 + ln d) / (5 sqrt(d))`` (paper, Table 1)."""
    return (3.0 + math.log(num_params)) / (5.0 * math.sqrt(num_params))


def xnes_rates(num_params: int) -> float:
    """xNES learning rate of sigma and B, ``3 (3 + ln d) / (5 d sqrt(d))`` (paper, Table 1)."""
    d = float(num_params)
    return 3.0 * (3.0 + math.log(d)) / (5.0 * d * math.sqrt(d))


class NESConfig(SelfAdaptingConfig):
    """Options of both NES strategies (learning rates of the paper, Table 1)."""

    center_learning_rate: Float = Field(
        1.0, gt=0, description="Learning rate of the centre (paper: 1)."
    )
    sigma_learning_rate: Float | None = Field(
        None,
        gt=0,
        description="Learning rate of the step size(s); default (null) the paper's: "
        "(3 + ln d) / (5 sqrt d) for SNES, 3 (3 + ln d) / (5 d sqrt d) for xNES.",
    )


class SNESConfig(PerCoordinateSigmaConfig, NESConfig):
    """Run-file settings of :class:`SNES` (``kind = "snes"``)."""

    kind: Literal["snes"] = "snes"


@STRATEGIES.register("snes")
@declare_options(SNESConfig, positional=("population_size", "sigma"))
class SNES(BaseStrategy):
    """Separable NES (Wierstra et al. 2014): a centre and a step size per parameter.

    Per generation, with NES utilities ``u_k`` and ``s_k = sign * eps(key_k)``::

        center += center_learning_rate * sigma * sum_k u_k s_k
        sigma  *= exp(sigma_learning_rate / 2 * sum_k u_k (s_k**2 - 1))

    Use it when parameters have different natural scales and the problem is too large for
    a full covariance; memory is ``O(num_params)``.

    Args:
        num_params, seed, x0, noise: see :class:`~asktell.strategies.BaseStrategy`.

    Example:
        >>> import numpy as np
        >>> es = SNES(num_params=4, sigma=0.5, seed=0)
        >>> for _ in range(200):
        ...     X = es.distribution.decode(es.ask())
        ...     _ = es.tell(-np.sum((X - 1.0) ** 2, axis=1))
        >>> bool(np.allclose(es.center, 1.0, atol=1e-3))
        True
    """

    name = "snes"
    capabilities = frozenset({"per_parameter_sigma", "partial_tell"})
    suite_options = {"sigma": 0.5}
    stops_by_default = True

    def _setup(self, cfg: SNESConfig) -> None:
        self.sigma = _per_coordinate(cfg.sigma, self.num_params)
        self.center_learning_rate = cfg.center_learning_rate
        self.sigma_learning_rate = (
            snes_sigma_rate(self.num_params)
            if cfg.sigma_learning_rate is None
            else cfg.sigma_learning_rate
        )

    def _sample(self, count: int) -> np.ndarray:
        return self.noise.sample_keys(self.rng, count, self.num_params)

    def _make_distribution(self) -> Distribution:
        return Distribution(self._center, self.sigma, self.noise, self.generation)

    def _update(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        u = nes_utilities(returns)
        keys, a, b = fold_by_key(seeds, u, u)
        grad_center, squares = noise_moments(self.noise, keys, a, b, self.num_params)
        grad_sigma = squares - b.sum()
        self._center = self._center + self.center_learning_rate * self.sigma * grad_center
        self.sigma = self.sigma * np.exp(0.5 * self.sigma_learning_rate * grad_sigma)
        return {"sigma_mean": float(self.sigma.mean()), "sigma_max": float(self.sigma.max())}

    def _state(self) -> dict[str, Any]:
        return {"sigma": self.sigma.copy()}

    def _state_schema(self) -> dict[str, Entry]:
        return {"sigma": Entry("array", shape=("n",), positive=True)}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.sigma = np.array(state["sigma"], dtype=np.float64)


class XNESConfig(FactorMemoryConfig, NESConfig):
    """Run-file settings of :class:`XNES` (``kind = "xnes"``)."""

    kind: Literal["xnes"] = "xnes"
    shape_learning_rate: Float | None = Field(
        None,
        gt=0,
        description="Learning rate of the factor B; default (null) the paper's "
        "3 (3 + ln d) / (5 d sqrt d).",
    )


@STRATEGIES.register("xnes")
@declare_options(XNESConfig, positional=("population_size", "sigma"))
class XNES(BaseStrategy):
    """Exponential NES (Wierstra et al. 2014): full covariance through ``A = sigma * B``.

    Per generation, with NES utilities ``u_k`` and ``s_k = sign * eps(key_k)``::

        G_M     = sum_k u_k (s_k s_k^T - I);   G_sigma = tr(G_M) / d;   G_B = G_M - G_sigma I
        center += center_learning_rate * sigma * B @ sum_k u_k s_k
        sigma  *= exp(sigma_learning_rate / 2 * G_sigma)
        B       = B @ expm(shape_learning_rate / 2 * G_B)

    For small problems only: each generation costs an ``O(d**3)`` eigendecomposition, every
    generation ships the ``d x d`` factor to evaluators, and the default shape learning
    rate falls like ``d**-1.5`` (about 0.002 at d = 100, 2e-4 at d = 1000), so beyond a few
    hundred parameters the shape barely adapts within any practical budget. Use
    :class:`SNES` or :class:`~asktell.strategies.SepCMAES` there. Dimensions whose factor
    exceeds ``max_factor_bytes`` are rejected.

    Args:
        num_params: dimension of the search space (``8 * num_params**2 <= max_factor_bytes``).
        seed, x0, noise: see :class:`~asktell.strategies.BaseStrategy`.

    Example:
        >>> import numpy as np
        >>> es = XNES(num_params=3, sigma=0.5, seed=0)
        >>> for _ in range(300):
        ...     X = es.distribution.decode(es.ask())
        ...     _ = es.tell(-np.sum((X - 1.0) ** 2, axis=1))
        >>> bool(np.allclose(es.center, 1.0, atol=1e-3))
        True
    """

    name = "xnes"
    capabilities = frozenset({"full_covariance", "partial_tell"})
    suite_options = {"sigma": 0.5}
    stops_by_default = True

    def _setup(self, cfg: XNESConfig) -> None:
        self.sigma = cfg.sigma
        self.center_learning_rate = cfg.center_learning_rate
        default_rate = xnes_rates(self.num_params)
        self.sigma_learning_rate = (
            default_rate if cfg.sigma_learning_rate is None else cfg.sigma_learning_rate
        )
        self.shape_learning_rate = (
            default_rate if cfg.shape_learning_rate is None else cfg.shape_learning_rate
        )
        self.max_factor_bytes = cfg.max_factor_bytes
        self.B = np.eye(self.num_params)

    def _sample(self, count: int) -> np.ndarray:
        return self.noise.sample_keys(self.rng, count, self.num_params)

    def _make_distribution(self) -> Distribution:
        return Distribution(self._center, self.sigma, self.noise, self.generation, factor=self.B)

    def _update(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        d = self.num_params
        u = nes_utilities(returns)
        s = signed_rows(self.noise, seeds, d)
        grad_delta = u @ s
        grad_m = (s.T * u) @ s - u.sum() * np.eye(d)
        grad_sigma = float(np.trace(grad_m)) / d
        grad_b = grad_m - grad_sigma * np.eye(d)
        center = self._center + self.center_learning_rate * self.sigma * (self.B @ grad_delta)
        sigma = self.sigma * math.exp(0.5 * self.sigma_learning_rate * grad_sigma)
        b = self.B @ expm_sym(0.5 * self.shape_learning_rate * grad_b)
        # expm of a trace-free matrix has determinant 1; renormalise the rounding drift so
        # sigma keeps meaning the overall scale.
        sign, logdet = np.linalg.slogdet(b)
        if sign > 0 and math.isfinite(logdet):
            b *= math.exp(-logdet / d)
        self._center, self.sigma, self.B = center, sigma, b
        return {"sigma": sigma}

    def _state(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "B": self.B.copy()}

    def _state_schema(self) -> dict[str, Entry]:
        return {"sigma": Entry("float", positive=True), "B": Entry("array", shape=("n", "n"))}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.sigma = float(state["sigma"])
        self.B = np.array(state["B"], dtype=np.float64)
