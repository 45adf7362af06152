"""CMA-ES's strategy parameters, shared by full CMA-ES (:mod:`.cma_es`) and sep-CMA-ES
(:mod:`.sep_cma_es`): the two presets (Hansen's tutorial and pycma 4.x's values) as formulas
of ``(d, lambda, mu_eff)``, the recombination weights with the active rule, and the run-file
options both strategies declare (:class:`CMAConfig`: the preset and per-rate overrides).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from asktell.config_base import Bool, Float
from asktell.errors import ConfigError
from asktell.shaping import rank_weights

from ._options import IntegerVariablesConfig, PerCoordinateSigmaConfig, SelfAdaptingConfig
from ._cma_stopping import CMAStoppingConfig

__all__ = ["CMAConfig", "CMAParameters", "PRESETS", "cma_parameters", "cma_rank_weights"]


@dataclasses.dataclass(frozen=True)
class CMAParameters:
    """The strategy parameters of CMA-ES for one ``(d, lambda)``.

    ``weights`` are indexed best-first and sum to 1 over the positive part. ``h_sigma``
    names the stall test of the rank-one path (``"tutorial"``: ``|p_s| / sqrt(1 - (1 -
    c_s)**(2g)) < (1.4 + 2 / (d + 1)) E|N(0, I)|``; ``"pycma"``: ``|p_s|**2 / (1 - (1 -
    c_s)**(2g)) / d < 2 + 4 / (d + 1)``).
    """

    num_params: int
    population_size: int
    mu: int
    weights: np.ndarray
    mu_eff: float
    c_sigma: float
    d_sigma: float
    c_c: float
    c_1: float
    c_mu: float
    chi_n: float
    h_sigma: str = "tutorial"

    def stalls(self, ps_norm: float, generation: int) -> bool:
        """``True`` when the rank-one path must stall (h_sigma = 0) after ``generation``."""
        d = self.num_params
        correction = 1.0 - (1.0 - self.c_sigma) ** (2 * generation)
        if self.h_sigma == "pycma":
            return not ps_norm**2 / correction / d < 2.0 + 4.0 / (d + 1)
        return not ps_norm / math.sqrt(correction) < (1.4 + 2.0 / (d + 1)) * self.chi_n


#: The presets of :func:`cma_parameters`, per covariance model. Formulas, not numbers:
#: ``tutorial``: Hansen's tutorial (arXiv:1604.00772, Table 1; sep-CMA: Ros & Hansen 2008's
#: ``(d + 2) / 3`` factor on both covariance rates); ``pycma``: the values pycma 4.x computes
#: (``c_sigma = min(1/2, (mu_eff + 2) / (d + mu_eff + 3))``, a rank-mu offset of 1/4, ``c_1``
#: scaled by ``min(1, lambda / 6)``, a damping ``d_sigma`` whose ``mu_eff`` term grows with
#: the dimension, pycma's stall test and, for sep-CMA, pycma's diagonal learning rates).
PRESETS = ("tutorial", "pycma")


def cma_parameters(
    num_params: int,
    population_size: int,
    *,
    active: bool = True,
    cov_scale: float = 1.0,
    preset: str = "tutorial",
    separable: bool = False,
    overrides: dict[str, float | None] | None = None,
    recombination_weights: Any = None,
) -> CMAParameters:
    """CMA-ES parameters of ``preset`` (see :data:`PRESETS`), with ``overrides``.

    ``overrides`` maps ``rank_mu_offset``, ``c_sigma``, ``d_sigma``, ``c_c``, ``c_1``,
    ``c_mu`` to a value, or ``None`` for the preset's. ``cov_scale`` multiplies ``c1``
    and ``cmu`` of the tutorial preset (sep-CMA's factor); ``separable`` selects pycma's
    diagonal rates in the pycma preset. The negative weights are bounded after the rates are
    final, so the positive-definiteness rule (``alpha_posdef``) holds for the rates used.
    ``recombination_weights``: raw weights best-first (default ``ln((lambda + 1) / 2) -
    ln(i)``); the positive ones are normalised to sum 1.
    """
    if preset not in PRESETS:
        raise ValueError(f"parameters must be one of {PRESETS}; got {preset!r}")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    n = float(num_params)
    lam = int(population_size)
    if recombination_weights is None:
        raw = math.log((lam + 1) / 2.0) - np.log(np.arange(1, lam + 1))
    else:
        raw = np.asarray(recombination_weights, dtype=np.float64)
    pos = raw[raw > 0]
    mu = int(pos.size)
    mu_eff = float(pos.sum() ** 2 / np.sum(pos**2))
    pycma = preset == "pycma"
    c_sigma, d_sigma = _step_size_rates(n, mu_eff, pycma, given)
    c_c, c_1, c_mu = _covariance_rates(n, lam, mu_eff, pycma, separable, cov_scale, given)
    weights = _signed_weights(raw, mu_eff, c_1, c_mu, n, active)
    chi_n = math.sqrt(n) * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n * n))
    return CMAParameters(
        num_params=num_params,
        population_size=lam,
        mu=mu,
        weights=weights,
        mu_eff=mu_eff,
        c_sigma=c_sigma,
        d_sigma=d_sigma,
        c_c=c_c,
        c_1=c_1,
        c_mu=c_mu,
        chi_n=chi_n,
        h_sigma="pycma" if pycma else "tutorial",
    )


def _step_size_rates(n: float, mu_eff: float, pycma: bool, given: dict) -> tuple[float, float]:
    """``(c_sigma, d_sigma)``: the step-size path's rate and damping."""
    if pycma:
        c_sigma = min(0.5, (mu_eff + 2.0) / (n + mu_eff + 3.0))
    else:
        c_sigma = (mu_eff + 2.0) / (n + mu_eff + 5.0)
    c_sigma = given.get("c_sigma", c_sigma)
    # pycma multiplies the mu_eff term of the damping by max(1, 3 (1 - 2**(-d / 9))).
    grow = max(1.0, 3.0 * (1.0 - 0.5 ** (n / 9.0))) if pycma else 1.0
    d_sigma = 1.0 + 2.0 * max(0.0, grow * math.sqrt((mu_eff - 1.0) / (n + 1.0)) - 1.0) + c_sigma
    return c_sigma, given.get("d_sigma", d_sigma)


def _covariance_rates(
    n: float, lam: int, mu_eff: float, pycma: bool, separable: bool, cov_scale: float,
    given: dict,
) -> tuple[float, float, float]:
    """``(c_c, c_1, c_mu)``: the covariance path's rate and the rank-one and rank-mu rates
    (pycma's diagonal rates for sep-CMA with the pycma preset)."""
    offset = given.get("rank_mu_offset", 0.25 if pycma else 0.0)
    if pycma and separable:
        c_c = (1.0 + 1.0 / n + mu_eff / n) / (math.sqrt(n) + 1.0 / n + 2.0 * mu_eff / n)
        c_1 = 1.0 / (n + 2.0 * math.sqrt(n) + mu_eff / n)
        c_1 = given.get("c_1", c_1)
        c_mu = (offset + mu_eff + 1.0 / mu_eff - 2.0) / (n + 4.0 * math.sqrt(n) + mu_eff / 2.0)
    else:
        c_c = (4.0 + mu_eff / n) / (n + 4.0 + 2.0 * mu_eff / n)
        alpha_cov = 2.0
        c_1 = alpha_cov / ((n + 1.3) ** 2 + mu_eff)
        if pycma:
            c_1 *= min(1.0, lam / 6.0)
        c_mu = min(
            1.0 - c_1,
            alpha_cov * (offset + mu_eff - 2.0 + 1.0 / mu_eff)
            / ((n + 2.0) ** 2 + alpha_cov * mu_eff / 2.0),
        )
        if cov_scale != 1.0 and not pycma:
            c_1 = min(1.0, c_1 * cov_scale)
            c_mu = min(1.0 - c_1, c_mu * cov_scale)
        c_1 = given.get("c_1", c_1)
    c_c = given.get("c_c", c_c)
    return c_c, c_1, given.get("c_mu", max(0.0, min(1.0 - c_1, c_mu)))


def _signed_weights(
    raw: np.ndarray, mu_eff: float, c_1: float, c_mu: float, n: float, active: bool
) -> np.ndarray:
    """Positive weights summing to 1; with ``active``, the negative ones bounded once the
    rates are final, so the positive-definiteness rule (``alpha_posdef``) holds."""
    pos, neg = raw[raw > 0], raw[raw < 0]
    weights = np.where(raw > 0, raw / pos.sum(), 0.0)
    if active and neg.size and c_mu > 0:
        mu_eff_neg = float(neg.sum() ** 2 / np.sum(neg**2))
        alpha_mu = 1.0 + c_1 / c_mu
        alpha_mu_eff = 1.0 + 2.0 * mu_eff_neg / (mu_eff + 2.0)
        alpha_posdef = (1.0 - c_1 - c_mu) / (n * c_mu)
        scale = min(alpha_mu, alpha_mu_eff, alpha_posdef) / np.abs(neg).sum()
        weights = np.where(raw < 0, raw * scale, weights)
    return weights


def cma_rank_weights(
    returns: np.ndarray, weights: np.ndarray, keys: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-candidate recombination weights (all, and positive part) from returns (maximised).

    Tied returns are ordered by the candidates' noise keys (``keys``: the told seeds). A key
    is drawn independently of the step it names, so ties are broken at random, as pycma's
    arbitrary order of equal values breaks them, and the weights still do not depend on the
    order the candidates arrived in. On a plateau (every return equal) the selection is then
    blind and CSA leaves sigma to a random walk, as pycma's does. Sharing the tied ranks'
    mean weight instead would recombine the average of all steps, shorten the evolution path
    and shrink sigma geometrically (population 8: from 1 to about 2e-6 in 100 flat
    generations). Without ``keys``, tied returns share the mean of the weights of the ranks
    they span. Without ties both give the same weights, bit for bit. An injected point's
    key (``INJECT_BASE + i``) is above every noise key, so it ranks above the sampled
    candidates it ties with.
    """
    ascending = weights[::-1]
    if keys is not None and returns.size > 1:
        ordered = np.sort(returns)
        if (ordered[1:] == ordered[:-1]).any():
            order = np.lexsort((keys, returns))  # by return, ties by key
            w_all, w_pos = np.empty(returns.size), np.empty(returns.size)
            w_all[order] = ascending
            w_pos[order] = np.maximum(ascending, 0.0)
            return w_all, w_pos
    return rank_weights(returns, ascending), rank_weights(returns, np.maximum(ascending, 0.0))


_RATE_HELP = "; default (null) from the `parameters` preset."


class CMAConfig(CMAStoppingConfig, IntegerVariablesConfig, PerCoordinateSigmaConfig,
                SelfAdaptingConfig):
    """Options of both CMA-ES strategies: the preset of strategy parameters and per-parameter
    overrides (``None``: the preset's value)."""

    active: Bool = Field(
        True,
        description="Negative recombination weights in the covariance update (active CMA, "
        "the tutorial's and pycma's default).",
    )
    parameters: Literal["tutorial", "pycma"] = Field(
        "pycma",
        description="Preset of the strategy parameters: 'pycma' (the values pycma 4.x "
        "computes: c_sigma = min(1/2, (mu_eff + 2) / (d + mu_eff + 3)), rank-mu offset 1/4, "
        "pycma's stall test and diagonal rates; fewer evaluations in small dimensions, see "
        "docs/strategies.md) or 'tutorial' (Hansen's tutorial, arXiv:1604.00772, Table 1).",
    )
    rank_mu_offset: Float | None = Field(
        None, ge=0, le=1,
        description="Offset in the numerator of c_mu, alpha (offset + mu_eff - 2 + 1/mu_eff) "
        "(tutorial 0, pycma 0.25)" + _RATE_HELP,
    )
    c_sigma: Float | None = Field(
        None, gt=0, le=1,
        description="Learning rate of the step-size path (cumulation for sigma)" + _RATE_HELP,
    )
    d_sigma: Float | None = Field(
        None, gt=0, description="Damping of the step-size update" + _RATE_HELP,
    )
    c_c: Float | None = Field(
        None, gt=0, le=1, description="Learning rate of the rank-one path" + _RATE_HELP,
    )
    c_1: Float | None = Field(
        None, ge=0, lt=1, description="Learning rate of the rank-one update" + _RATE_HELP,
    )
    c_mu: Float | None = Field(
        None, ge=0, lt=1, description="Learning rate of the rank-mu update" + _RATE_HELP,
    )
    recombination_weights: list[Float] | None = Field(
        None,
        description="Raw recombination weights, best first, one per candidate (this fixes "
        "population_size to their number): the positive ones are normalised to sum 1, the "
        "negative ones scaled by the active rule (zeroed when active = false). Default "
        "(null): ln((lambda + 1) / 2) - ln(i).",
    )

    @model_validator(mode="after")
    def _rates_fit(self) -> Any:
        """`recombination_weights` must be non-increasing with a positive first weight and,
        with `population_size` set, one per candidate; `c_1 + c_mu` must be at most 1 (with
        either from the preset when not given)."""
        w = self.recombination_weights
        if w is not None:
            if not w or w[0] <= 0 or any(a < b for a, b in zip(w, w[1:])):
                raise ValueError(
                    "recombination_weights must be non-increasing (best first) with a "
                    f"positive first weight; got {w}"
                )
            if self.population_size is not None and self.population_size != len(w):
                raise ValueError(
                    f"recombination_weights has {len(w)} weights, one per candidate, but "
                    f"population_size is {self.population_size}"
                )
            if len(w) < 2:
                raise ValueError(f"recombination_weights needs at least 2 weights; got {w}")
        if self.c_1 is not None and self.c_mu is not None and self.c_1 + self.c_mu > 1:
            raise ValueError(
                f"c_1 + c_mu must be <= 1; got c_1={self.c_1} + c_mu={self.c_mu}"
            )
        return self

    def population_for(self, num_params: int) -> int:
        if self.recombination_weights is not None:
            return len(self.recombination_weights)
        return super().population_for(num_params)

    def cma_parameters(self, num_params: int, population_size: int, **kw: Any) -> CMAParameters:
        """The :class:`CMAParameters` these options give for ``(num_params, lambda)``."""
        overrides = {
            k: getattr(self, k)
            for k in ("rank_mu_offset", "c_sigma", "d_sigma", "c_c", "c_1", "c_mu")
        }
        try:
            return cma_parameters(
                num_params, population_size, active=self.active, preset=self.parameters,
                overrides=overrides, recombination_weights=self.recombination_weights, **kw,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
