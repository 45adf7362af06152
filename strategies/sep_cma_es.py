"""sep-CMA-ES: Ros & Hansen 2008, "A Simple Modification in CMA-ES Achieving Linear Time
and Space Complexity" (PPSN X, LNCS 5199).

CMA-ES (Hansen's tutorial, arXiv:1604.00772) restricted to a diagonal covariance
``C = diag(c)``: the same paths, step-size control and (active) weights, with the
covariance learning rates multiplied by ``(d + 2) / 3`` as the paper prescribes, because a
diagonal has only ``d`` entries to learn. Time and memory are linear in the dimension, so
it runs on problems of any size; it learns per-parameter scales, not correlations.

A candidate is ``x = m + (sigma * sqrt(c)) * z`` with ``z = sign * eps(key)``: the
per-parameter step sizes travel in the :class:`~asktell.distribution.Distribution`'s
``sigma`` vector, with no factor matrix.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from asktell.config_base import declare_options
from asktell.distribution import Distribution
from asktell.noise import split_seeds
from asktell.registry import STRATEGIES
from asktell.state_schema import Entry

from ._base import BaseStrategy
from ._common import noise_moments, row_sq_norms
from ._options import initial_steps
from ._cma_stopping import covariance_stops
from ._options import integer_setup
from ._cma_parameters import CMAConfig, cma_rank_weights

__all__ = ["SepCMAES", "SepCMAESConfig"]


class SepCMAESConfig(CMAConfig):
    """Run-file settings of :class:`SepCMAES` (``kind = "sep_cma_es"``)."""

    kind: Literal["sep_cma_es"] = "sep_cma_es"


@STRATEGIES.register("sep_cma_es")
@declare_options(SepCMAESConfig, positional=("population_size", "sigma"))
class SepCMAES(BaseStrategy):
    """sep-CMA-ES (Ros & Hansen 2008): CMA-ES with a diagonal covariance, linear cost.

    Use it for separable or nearly separable problems, badly scaled parameters, and any
    problem too large for :class:`~asktell.strategies.CMAES`.

    Args:
        num_params, seed, x0, noise: see :class:`~asktell.strategies.BaseStrategy`.

    Example:
        >>> import numpy as np
        >>> from asktell.functions import ellipsoid
        >>> es = SepCMAES(num_params=6, sigma=0.5, seed=0)
        >>> for _ in range(500):
        ...     X = es.distribution.decode(es.ask())
        ...     _ = es.tell(-ellipsoid(X))
        >>> bool(ellipsoid(es.center) < 1e-8)
        True
    """

    name = "sep_cma_es"
    capabilities = frozenset({"per_parameter_sigma", "inject"})
    suite_options = {"sigma": 0.5}
    stops_by_default = True

    def _setup(self, cfg: SepCMAESConfig) -> None:
        self.sigma, steps = initial_steps(cfg.sigma, self.num_params)
        self.sigma0 = self.sigma  # for tolupsigma (from the config, not state)
        self.active = cfg.active
        d = self.num_params
        self.params = cfg.cma_parameters(
            d, self.population_size, cov_scale=(d + 2.0) / 3.0, separable=True
        )
        self.C = steps**2  # a vector sigma: pycma's CMA_stds as the initial diagonal
        self.path_sigma = np.zeros(d)
        self.path_c = np.zeros(d)
        self.integer, self.step_floor = integer_setup(self, cfg)
        if self.integer.size:
            _floor_integer_steps(self.integer, self.step_floor, self.sigma, self.C, self.path_c)

    def _default_population_size(self) -> int:
        # one per recombination weight when those are given
        return self.config.population_for(self.num_params)

    def _sample(self, count: int) -> np.ndarray:
        return self.noise.sample_keys(self.rng, count, self.num_params)

    def _make_distribution(self) -> Distribution:
        return Distribution(self._center, self.sigma * np.sqrt(self.C), self.noise, self.generation)

    def _update(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        p, d = self.params, self.num_params
        w_all, w_pos = cma_rank_weights(returns, p.weights, seeds)
        dist = self.distribution
        # Injected points (seeds INJECT_BASE + i) are explicit steps, the rest noise rows.
        inj = np.zeros(seeds.size, bool) if dist.injected is None else dist.injected_index(seeds) >= 0
        z_inj = self._unit_steps(seeds[inj], dist) if inj.any() else np.zeros((0, d))
        keys, signs = split_seeds(seeds[~inj])
        # Only weighted sums of z and z**2 are needed (y = sqrt(C) z), so the noise rows are
        # read in bounded-memory chunks and never held for the whole population.
        w_cov = w_all
        if np.any(w_all < 0):
            # Negative weights are rescaled by d / |C^{-1/2} y|^2 = d / |z|^2.
            norms = np.empty(seeds.size)
            norms[~inj] = row_sq_norms(self.noise, keys, d)
            norms[inj] = np.sum(z_inj**2, axis=1)
            w_cov = np.where(w_all < 0, w_all * d / np.maximum(norms, 1e-300), w_all)
        if inj.any():
            z_w, zz_w = noise_moments(self.noise, keys, w_pos[~inj] * signs, w_cov[~inj], d)
            z_w = z_w + w_pos[inj] @ z_inj
            zz_w = zz_w + w_cov[inj] @ z_inj**2
        else:
            z_w, zz_w = noise_moments(self.noise, keys, w_pos * signs, w_cov, d)
        sd = np.sqrt(self.C)
        y_w = sd * z_w
        center = self._center + self.sigma * y_w
        ps = (1 - p.c_sigma) * self.path_sigma + math.sqrt(
            p.c_sigma * (2 - p.c_sigma) * p.mu_eff
        ) * z_w
        ps_norm = float(np.linalg.norm(ps))
        g = self.generation + 1
        h_sigma = not p.stalls(ps_norm, g)
        pc = (1 - p.c_c) * self.path_c + h_sigma * math.sqrt(
            p.c_c * (2 - p.c_c) * p.mu_eff
        ) * y_w
        delta_h = (1 - h_sigma) * p.c_c * (2 - p.c_c)
        decay = 1 + p.c_1 * delta_h - p.c_1 - p.c_mu * float(w_all.sum())
        C = decay * self.C + p.c_1 * pc * pc + p.c_mu * self.C * zz_w
        # Keep the diagonal positive and bounded away from zero relative to its largest entry.
        C = np.maximum(C, max(float(C.max()), 1e-300) * 1e-20)
        sigma = self.sigma * math.exp(min(1.0, p.c_sigma / p.d_sigma * (ps_norm / p.chi_n - 1)))
        if self.integer.size:
            _floor_integer_steps(self.integer, self.step_floor, sigma, C, pc)
        self._center, self.sigma, self.path_sigma, self.path_c, self.C = center, sigma, ps, pc, C
        sd = np.sqrt(C)
        return {"sigma": sigma, "axis_ratio": float(sd.max() / sd.min())}

    def _tolx_path(self) -> np.ndarray:
        return self.sigma * self.path_c

    def _stop_extra(self) -> dict[str, str]:
        return covariance_stops(
            self.config, self._center, self.sigma, np.sqrt(self.C), None, self.generation,
            self.sigma0,
        )

    def _state(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "C": self.C.copy(),
            "path_sigma": self.path_sigma.copy(),
            "path_c": self.path_c.copy(),
        }

    def _state_schema(self) -> dict[str, Entry]:
        return {
            "sigma": Entry("float", positive=True),
            "C": Entry("array", shape=("n",), positive=True),  # the diagonal covariance
            "path_sigma": Entry("array", shape=("n",)),
            "path_c": Entry("array", shape=("n",)),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.sigma = float(state["sigma"])
        self.C = np.array(state["C"], dtype=np.float64)
        self.path_sigma = np.array(state["path_sigma"], dtype=np.float64)
        self.path_c = np.array(state["path_c"], dtype=np.float64)


def _floor_integer_steps(
    index: np.ndarray, floor: float, sigma: float, C: np.ndarray, path_c: np.ndarray
) -> None:
    """pycma's ``minstd`` on the integer coordinates, in place: ``sigma sqrt(c_i) >= floor``,
    the rank-one path scaled with the step (as pycma scales its path)."""
    scale = np.maximum(1.0, floor / (sigma * np.sqrt(C[index])))
    C[index] = np.where(scale > 1.0, (floor / sigma) ** 2, C[index])
    path_c[index] *= scale
