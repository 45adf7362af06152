"""CMA-ES: the (mu/mu_w, lambda)-CMA-ES as in Hansen, "The CMA Evolution Strategy: A
Tutorial" (arXiv:1604.00772, 2016/2023), with its default parameters (Table 1), including
the negative ("active") recombination weights.

The black-box workhorse inside the same ask/tell and evaluator machinery. The search
distribution is ``N(m, sigma**2 C)`` with ``C = B D**2 B^T``; a seed names the standard
normal ``z = sign * eps(key)`` and the candidate is ``x = m + sigma * (B D) z``, so the
factor ``B D`` travels in the :class:`~asktell.distribution.Distribution` and candidates
travel as seeds like every other strategy's. ``tell`` recomputes ``z`` and ``y = B D z``
from the seeds (noise rows), never from decoded candidates.

The eigendecomposition is refreshed lazily (every ``lambda / ((c1 + cmu) d 10)``
generations, as the tutorial suggests), so one generation costs ``O(lambda d**2)`` and the
``O(d**3)`` work is amortised. Sensible up to about a thousand parameters; the ``d x d``
matrices are refused past ``max_factor_bytes``. For larger problems use
:class:`~asktell.strategies.SepCMAES` (Ros & Hansen 2008, diagonal covariance).

The strategy parameters (the ``tutorial`` and ``pycma`` presets, the recombination weights
and the options both CMA strategies declare) live in :mod:`._cma_parameters`, shared with
sep-CMA-ES.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from asktell.config_base import declare_options
from asktell.distribution import Distribution
from asktell.registry import STRATEGIES
from asktell.state_schema import Entry

from ._base import BaseStrategy
from ._cma_parameters import (
    PRESETS, CMAConfig, CMAParameters, cma_parameters, cma_rank_weights,
)
from ._options import FactorMemoryConfig, initial_steps, integer_setup
from ._cma_stopping import covariance_stops

__all__ = ["CMAES", "CMAESConfig", "CMAConfig", "CMAParameters", "PRESETS", "cma_parameters",
           "cma_rank_weights"]


class CMAESConfig(FactorMemoryConfig, CMAConfig):
    """Run-file settings of :class:`CMAES` (``kind = "cma_es"``)."""

    kind: Literal["cma_es"] = "cma_es"


@STRATEGIES.register("cma_es")
@declare_options(CMAESConfig, positional=("population_size", "sigma"))
class CMAES(BaseStrategy):
    """CMA-ES (Hansen's tutorial, arXiv:1604.00772) with full covariance and active weights.

    Learns a full covariance matrix, so it solves ill-conditioned, non-separable problems
    (rotated ellipsoids, Rosenbrock) with few evaluations. Memory and time per generation
    grow as ``num_params**2``; use it up to about a thousand parameters.

    Args:
        num_params: dimension (``8 * num_params**2 <= max_factor_bytes``).
        seed, x0, noise: see :class:`~asktell.strategies.BaseStrategy`.

    Example:
        >>> import numpy as np
        >>> from asktell.functions import rosenbrock
        >>> es = CMAES(num_params=4, sigma=0.5, seed=1)
        >>> for _ in range(400):
        ...     X = es.distribution.decode(es.ask())
        ...     _ = es.tell(-rosenbrock(X))
        >>> bool(rosenbrock(es.center) < 1e-8)
        True
    """

    name = "cma_es"
    capabilities = frozenset({"full_covariance", "inject"})
    suite_options = {"sigma": 0.5}
    stops_by_default = True

    def _setup(self, cfg: CMAESConfig) -> None:
        # A vector sigma is a diagonal initial covariance (pycma's CMA_stds), scaled so
        # that sigma is the largest initial step.
        self.sigma, steps = initial_steps(cfg.sigma, self.num_params)
        self.sigma0 = self.sigma  # for tolupsigma (from the config, so not part of the state)
        self.active = cfg.active
        self.max_factor_bytes = cfg.max_factor_bytes
        self.params = cfg.cma_parameters(self.num_params, self.population_size)
        d = self.num_params
        self.C = np.diag(steps**2)
        self.B = np.eye(d)
        self.D = steps.copy()
        self.path_sigma = np.zeros(d)
        self.path_c = np.zeros(d)
        self.eigen_generation = 0
        p = self.params
        self._eigen_gap = max(1, int(p.population_size / ((p.c_1 + p.c_mu) * d * 10.0)))
        # At most half of C renewed between decompositions: the active update normalises its
        # negative steps with the last decomposition, and a staler one can leave C indefinite
        # (large populations, where c_1 + c_mu nears 1).
        self._eigen_gap = min(self._eigen_gap, max(1, int(0.5 / (p.c_1 + p.c_mu))))
        self.integer, self.step_floor = integer_setup(self, cfg)
        if self.integer.size:
            self._floor_integer_steps(0)

    def _default_population_size(self) -> int:
        # one per recombination weight when those are given
        return self.config.population_for(self.num_params)

    def _sample(self, count: int) -> np.ndarray:
        return self.noise.sample_keys(self.rng, count, self.num_params)

    def _make_distribution(self) -> Distribution:
        return Distribution(
            self._center, self.sigma, self.noise, self.generation, factor=self.B * self.D
        )

    def _update(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        p, d = self.params, self.num_params
        w_all, w_pos = cma_rank_weights(returns, p.weights, seeds)
        # Injected points come back as their (clipped) steps in z (see _unit_steps).
        z = self._unit_steps(seeds, self.distribution)
        # y_k = B D z_k, the step that was evaluated (B D: this generation's factor).
        y = z @ self.distribution.factor.T
        y_w, z_w = w_pos @ y, w_pos @ z
        center = self._center + self.sigma * y_w
        # C^{-1/2} y = B D^-1 B^T B D z = B z (with the factor the candidates were drawn from).
        ps = (1 - p.c_sigma) * self.path_sigma + math.sqrt(
            p.c_sigma * (2 - p.c_sigma) * p.mu_eff
        ) * (self.B @ z_w)
        ps_norm = float(np.linalg.norm(ps))
        g = self.generation + 1
        h_sigma = not p.stalls(ps_norm, g)
        pc = (1 - p.c_c) * self.path_c + h_sigma * math.sqrt(
            p.c_c * (2 - p.c_c) * p.mu_eff
        ) * y_w
        # Negative weights are rescaled by d / |C^{-1/2} y|^2 = d / |z|^2 (tutorial eq. 46).
        w_cov = np.where(w_all < 0, w_all * d / np.maximum(np.sum(z * z, axis=1), 1e-300), w_all)
        delta_h = (1 - h_sigma) * p.c_c * (2 - p.c_c)
        decay = 1 + p.c_1 * delta_h - p.c_1 - p.c_mu * float(w_all.sum())
        # Rank-one and rank-mu updates as one product: rows y_k weighted c_mu w_k, and p_c
        # weighted c_1 (one pass over the d x d matrix instead of three).
        rows = np.vstack([y, pc])
        coef = np.append(p.c_mu * w_cov, p.c_1)
        C = self.C * decay
        C += (rows.T * coef) @ rows
        # Bound one generation's change of sigma to a factor e (a guard against overflow
        # after a degenerate generation; inactive in normal operation).
        sigma = self.sigma * math.exp(min(1.0, p.c_sigma / p.d_sigma * (ps_norm / p.chi_n - 1)))
        self._center, self.sigma, self.path_sigma, self.path_c, self.C = center, sigma, ps, pc, C
        if self.integer.size:
            self._floor_integer_steps(g)
        if g - self.eigen_generation >= self._eigen_gap:
            self._decompose(g)
        return {"sigma": sigma, "axis_ratio": float(self.D.max() / self.D.min())}

    def _floor_integer_steps(self, generation: int) -> None:
        """Keep ``sigma * sqrt(C_ii) >= step_floor`` on the integer coordinates (pycma's
        ``minstd``): ``C <- S C S`` and ``p_c <- S p_c`` with ``S = diag(max(1, floor /
        std_i))`` (pycma scales those coordinates and their path likewise), and a fresh
        eigendecomposition when a step was raised or the factor candidates are drawn from
        (refreshed lazily) still gives a step below the floor."""
        i, floor = self.integer, self.step_floor
        std = self.sigma * np.sqrt(np.diag(self.C)[i])
        scale = np.ones(self.num_params)
        scale[i] = np.maximum(1.0, floor / std)
        raised = bool((scale > 1.0).any())
        if raised:
            self.C = self.C * np.outer(scale, scale)
            self.path_c = self.path_c * scale
        drawn = self.sigma * np.linalg.norm((self.B * self.D)[i], axis=1)
        # A relative slack, so rounding in the decomposition does not force one each time.
        if raised or bool((drawn < floor * (1.0 - 1e-9)).any()):
            self._decompose(generation)

    def _decompose(self, generation: int) -> None:
        C = np.triu(self.C) + np.triu(self.C, 1).T
        eigvals, B = np.linalg.eigh(C)
        # Rounding can push tiny eigenvalues to or below zero; floor them relative to the
        # largest so that D stays real and positive.
        floor = max(float(eigvals.max()), 1e-300) * 1e-20
        eigvals = np.maximum(eigvals, floor)
        self.C, self.B, self.D = C, B, np.sqrt(eigvals)
        self.eigen_generation = generation

    def _stop_extra(self) -> dict[str, str]:
        return covariance_stops(self.config, self._center, self.sigma, self.D, self.B,
                                self.generation, self.sigma0, np.sqrt(np.diag(self.C)))

    def _coordinate_stds(self) -> np.ndarray:
        # pycma's tolx reads the current C's diagonal (B and D lag between decompositions).
        return self.sigma * np.sqrt(np.diag(self.C))

    def _tolx_path(self) -> np.ndarray:
        return self.sigma * self.path_c

    def _state(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "C": self.C.copy(),
            "B": self.B.copy(),
            "D": self.D.copy(),
            "path_sigma": self.path_sigma.copy(),
            "path_c": self.path_c.copy(),
            "eigen_generation": self.eigen_generation,
        }

    def _state_schema(self) -> dict[str, Entry]:
        return {
            "sigma": Entry("float", positive=True),
            "C": Entry("array", shape=("n", "n"), check=_covariance_problem),
            "B": Entry("array", shape=("n", "n")),
            "D": Entry("array", shape=("n",), positive=True),
            "path_sigma": Entry("array", shape=("n",)),
            "path_c": Entry("array", shape=("n",)),
            "eigen_generation": Entry("int", low=0),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.sigma = float(state["sigma"])
        self.C = np.array(state["C"], dtype=np.float64)
        self.B = np.array(state["B"], dtype=np.float64)
        self.D = np.array(state["D"], dtype=np.float64)
        self.path_sigma = np.array(state["path_sigma"], dtype=np.float64)
        self.path_c = np.array(state["path_c"], dtype=np.float64)
        self.eigen_generation = int(state["eigen_generation"])


def _covariance_problem(c: np.ndarray, sizes: Any) -> str | None:
    """A covariance must be symmetric with a positive diagonal (cheap; the eigen-
    decomposition after the next update would fail or mislead on anything else)."""
    if not np.allclose(c, c.T, rtol=1e-12, atol=0.0):
        return "not symmetric"
    if not (np.diag(c) > 0).all():
        return "not positive-definite (a diagonal entry <= 0)"
    return None
